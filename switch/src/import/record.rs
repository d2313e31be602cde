//! Reading the fields of one record, reporting each problem with its path.

use std::fmt;

use serde_json::Value;

use crate::domain::{Code, Invalid, Percent, Rials};
use crate::import::{ImportError, Problem, PROBLEMS_MAX};

/// The problems found so far, capped at [`PROBLEMS_MAX`] with a count of the rest.
#[derive(Debug, Default)]
pub struct Problems {
    list: Vec<Problem>,
    more: usize,
}

impl Problems {
    /// Records a problem at `path`.
    pub fn report(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        if self.list.len() < PROBLEMS_MAX {
            self.list.push(Problem {
                path: path.to_string(),
                message: message.to_string(),
            });
        } else {
            self.more += 1;
        }
    }

    /// Whether nothing was reported.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty() && self.more == 0
    }

    /// The problems as an [`ImportError::Invalid`].
    pub fn into_error(self) -> ImportError {
        ImportError::Invalid {
            problems: self.list,
            more: self.more,
        }
    }
}

/// One record being read: its path (`merchants[3]`) and the problem list.
pub struct Record<'p> {
    path: String,
    problems: &'p mut Problems,
    failed: bool,
}

impl<'p> Record<'p> {
    /// Starts reading the record at `section[index]`.
    pub fn new(section: &str, index: usize, problems: &'p mut Problems) -> Record<'p> {
        Record {
            path: format!("{section}[{index}]"),
            problems,
            failed: false,
        }
    }

    /// The record's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Whether any field of this record had a problem.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Reports a problem with `field` of this record.
    pub fn report(&mut self, field: &str, message: impl fmt::Display) {
        self.failed = true;
        self.problems
            .report(format_args!("{}.{field}", self.path), message);
    }

    /// A required field, read by `read`. `None` when missing or wrong (already reported).
    pub fn required<'v, T>(
        &mut self,
        field: &str,
        value: &'v Value,
        read: impl FnOnce(&'v Value) -> Result<T, Invalid>,
    ) -> Option<T> {
        if value.is_null() {
            self.report(field, "is required");
            return None;
        }
        self.check(field, read(value))
    }

    /// An optional field: `fallback` when missing, `None` when wrong (already reported).
    pub fn optional<'v, T>(
        &mut self,
        field: &str,
        value: &'v Value,
        fallback: T,
        read: impl FnOnce(&'v Value) -> Result<T, Invalid>,
    ) -> Option<T> {
        if value.is_null() {
            return Some(fallback);
        }
        self.check(field, read(value))
    }

    fn check<T>(&mut self, field: &str, result: Result<T, Invalid>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(invalid) => {
                self.report(field, invalid);
                None
            }
        }
    }
}

/// A JSON string.
///
/// # Errors
/// [`Invalid`] for any other JSON type.
pub fn text(value: &Value) -> Result<&str, Invalid> {
    value.as_str().ok_or(Invalid::new("must be a string"))
}

/// A non-empty display name of at most 200 characters.
///
/// # Errors
/// [`Invalid`] when not a string, empty or too long.
pub fn name(value: &Value) -> Result<String, Invalid> {
    let name = text(value)?;
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(Invalid::new("must be 1..=200 characters"));
    }
    Ok(name.to_string())
}

/// A [`Code`].
///
/// # Errors
/// [`Invalid`] when not a string or not a valid code.
pub fn code(value: &Value) -> Result<Code, Invalid> {
    Code::parse(text(value)?)
}

/// An array of codes, returned sorted.
///
/// # Errors
/// [`Invalid`] when not an array of valid codes, or a code repeats.
pub fn codes(value: &Value) -> Result<Vec<Code>, Invalid> {
    let items = value
        .as_array()
        .ok_or(Invalid::new("must be an array of codes"))?;
    let mut codes = items.iter().map(code).collect::<Result<Vec<_>, _>>()?;
    codes.sort_unstable();
    let count = codes.len();
    codes.dedup();
    if codes.len() != count {
        return Err(Invalid::new("lists a code twice"));
    }
    Ok(codes)
}

/// An amount: a JSON integer `0..=999999999999`.
///
/// # Errors
/// [`Invalid`] for another type or a value out of range.
pub fn amount(value: &Value) -> Result<Rials, Invalid> {
    value.as_i64().and_then(Rials::new).ok_or(Invalid::new(
        "must be an integer number of rials 0..=999999999999",
    ))
}

/// A rate in percent: a JSON string (`"1.5"`, preferred: exact) or number.
///
/// # Errors
/// [`Invalid`] for another type or a rate outside 0..=100 or with more than 6 decimals.
pub fn percent(value: &Value) -> Result<Percent, Invalid> {
    match value {
        Value::String(text) => Percent::parse(text),
        Value::Number(number) => Percent::parse(&number.to_string()),
        _ => Err(Invalid::new("must be a decimal string such as \"1.5\"")),
    }
}

/// A JSON boolean.
///
/// # Errors
/// [`Invalid`] for any other type.
pub fn flag(value: &Value) -> Result<bool, Invalid> {
    value.as_bool().ok_or(Invalid::new("must be true or false"))
}

/// A JSON integer within `min..=max`.
///
/// # Errors
/// [`Invalid`] with `message` for another type or a value out of range.
pub fn integer(value: &Value, min: i64, max: i64, message: &'static str) -> Result<i64, Invalid> {
    value
        .as_i64()
        .filter(|n| (min..=max).contains(n))
        .ok_or(Invalid::new(message))
}
