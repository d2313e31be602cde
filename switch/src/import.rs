//! The import file: one versioned JSON document of reference data (`docs/import-format.md`).
//!
//! [`parse`] turns the file into [`ReferenceData`] or reports every problem it finds, each with
//! its JSON path and field (`merchants[3].iban: checksum fails`); a file with any problem
//! yields nothing. PANs become token, BIN and last 4 as soon as they are read, and are never
//! kept. [`import_text`] parses and then saves in one database transaction, so a refused file
//! changes nothing.
//!
//! Layout:
//! - [`dto`]: the serde shapes of the file, with `deny_unknown_fields`.
//! - [`record`]: reading one record's fields, reporting each problem with its path.
//! - [`sections`]: turning each section into records and checking codes and references.

pub mod dto;
pub mod record;
pub mod sections;

use std::fmt;

use crate::store::Pool;
use sha2::{Digest, Sha256};

use crate::domain::{Kek, PanTokenKey, ReferenceData, RowIds, UnixMillis};
use crate::store::reference::{self, ImportOutcome};
use crate::store::StoreError;

/// The `format` every import file declares.
pub const FORMAT: &str = "lsw-import";
/// The only `version` this switch reads. Any change to the shape of the file, even an added
/// optional field, is a new version (the DTOs deny unknown fields).
pub const VERSION: u64 = 1;
/// Largest file accepted: 1 GiB holds several million cards, and bounds the memory an import
/// may take.
pub const IMPORT_BYTES_MAX: usize = 1 << 30;
/// Most problems reported for one file; past it only a count is given, so a wholly wrong file
/// does not produce a report larger than itself.
pub const PROBLEMS_MAX: usize = 1_000;

/// One problem in the file: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path of the record and field, e.g. `merchants[3].iban`.
    pub path: String,
    /// What is wrong, lowercase, never echoing a PAN or key.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a file was not imported. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// The file is larger than [`IMPORT_BYTES_MAX`].
    #[error("file is {len} bytes, over the limit of 1073741824")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The file is not JSON, or its top level is not the import object.
    #[error("file is not an import document: {message}")]
    Syntax {
        /// The parser's message (line and column, never the content).
        message: String,
    },
    /// Records are wrong: every problem, up to [`PROBLEMS_MAX`].
    #[error("{}", Report(.problems, *.more))]
    Invalid {
        /// The problems found, in file order within each section.
        problems: Vec<Problem>,
        /// How many more were found past [`PROBLEMS_MAX`].
        more: usize,
    },
}

/// A parsed import: the reference data and the SHA-256 of the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The records.
    pub data: ReferenceData,
    /// SHA-256 of the file's bytes, recorded in `reference_meta`.
    pub file_sha256: [u8; 32],
}

/// Parses and validates an import file.
///
/// # Errors
/// [`ImportError`] when the file is too large, not JSON, or has any problem.
pub fn parse(bytes: &[u8], pan_key: &PanTokenKey) -> Result<Imported, ImportError> {
    if bytes.len() > IMPORT_BYTES_MAX {
        return Err(ImportError::TooLarge { len: bytes.len() });
    }
    let file_sha256: [u8; 32] = Sha256::digest(bytes).into();
    let header: dto::Header = serde_json::from_slice(bytes).map_err(syntax)?;
    let mut problems = record::Problems::default();
    if header.format.as_deref() != Some(FORMAT) {
        problems.report("format", "must be \"lsw-import\"");
    }
    if header.version != Some(VERSION) {
        problems.report("version", "must be 1, the only version this switch reads");
        return Err(problems.into_error());
    }
    let file: dto::File = serde_json::from_slice(bytes).map_err(syntax)?;
    let data = sections::convert(file, pan_key, &mut problems);
    if !problems.is_empty() {
        return Err(problems.into_error());
    }
    Ok(Imported { data, file_sha256 })
}

/// Validates one section's records, given as a JSON object of import-format sections (for
/// example `{"merchants": [{...}]}`), against the stored reference data: the operator API's
/// way in. The records go through every check of an import; a reference may name a record of
/// the document or one already stored. The result is to be saved with
/// [`reference::save`], which changes only the records it names.
///
/// # Errors
/// [`ImportError`] when the sections are not the import's shape or any record is wrong;
/// problems name the section, index and field (`merchants[0].iban`).
pub fn parse_over(
    sections: serde_json::Value,
    pan_key: &PanTokenKey,
    stored: &RowIds,
) -> Result<ReferenceData, ImportError> {
    let mut document = match sections {
        serde_json::Value::Object(map) => map,
        _ => {
            return Err(ImportError::Syntax {
                message: "expected an object".to_owned(),
            })
        }
    };
    document.insert("format".to_owned(), serde_json::Value::from(FORMAT));
    document.insert("version".to_owned(), serde_json::Value::from(VERSION));
    let file: dto::File =
        serde_json::from_value(serde_json::Value::Object(document)).map_err(syntax)?;
    let mut problems = record::Problems::default();
    let data = sections::convert_over(file, pan_key, stored, &mut problems);
    if !problems.is_empty() {
        return Err(problems.into_error());
    }
    Ok(data)
}

/// Why [`import_text`] imported nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportFailure {
    /// The file is wrong.
    #[error(transparent)]
    File(#[from] ImportError),
    /// The store refused or failed; its transaction was rolled back.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Parses `text` and saves it in one database transaction.
///
/// # Errors
/// [`ImportFailure`] when the file has a problem or the store refuses it (an opening balance
/// that differs from the stored one) or fails. Nothing changes in either case.
pub async fn import_text(
    pool: &Pool,
    text: &str,
    kek: &Kek,
    pan_key: &PanTokenKey,
    now: UnixMillis,
) -> Result<ImportOutcome, ImportFailure> {
    let imported = parse(text.as_bytes(), pan_key)?;
    let outcome = reference::save(pool, &imported.data, &imported.file_sha256, kek, now).await?;
    Ok(outcome)
}

fn syntax(error: serde_json::Error) -> ImportError {
    // serde_json's messages name a position and a type, not the content (the DTOs read every
    // field as a JSON value, so no field value is quoted).
    ImportError::Syntax {
        message: error.to_string(),
    }
}

/// Displays problems one per line.
pub(crate) struct Report<'a>(pub &'a [Problem], pub usize);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Report(problems, more) = self;
        write!(f, "{} problem(s):", problems.len() + more)?;
        for problem in problems.iter() {
            write!(f, "\n  {problem}")?;
        }
        if *more > 0 {
            write!(f, "\n  … and {more} more")?;
        }
        Ok(())
    }
}
