//! The files of a cycle (formats in docs/settlement.md): the payout CSV, the JSON summary and
//! the exceptions CSV, rendered by [`switch::settlement::files`] (a pure function of the stored
//! cycle, so a re-run writes the same bytes) and written here atomically (a temporary file in
//! the same directory, synced, then renamed).

use std::io::Write;
use std::path::{Path, PathBuf};

pub use switch::settlement::files::{
    exceptions_csv, names, payout_csv, summary_json, SUMMARY_FORMAT, SUMMARY_VERSION,
};

use crate::error::SettleError;
use crate::store::CycleRecord;

/// Writes the three files of `cycle` into `dir` (created if missing) and returns their paths.
///
/// # Errors
/// [`SettleError::Io`] naming the file or directory; [`SettleError::Json`].
pub fn write_all(dir: &Path, cycle: &CycleRecord) -> Result<Vec<PathBuf>, SettleError> {
    std::fs::create_dir_all(dir).map_err(|source| SettleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let contents = [
        payout_csv(cycle),
        summary_json(cycle)?,
        exceptions_csv(cycle),
    ];
    let mut paths = Vec::with_capacity(contents.len());
    for (name, content) in names(cycle.business_date).into_iter().zip(contents) {
        let path = dir.join(name);
        write_atomic(dir, &path, content.as_bytes()).map_err(|source| SettleError::Io {
            path: path.clone(),
            source,
        })?;
        paths.push(path);
    }
    Ok(paths)
}

fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut temp = tempfile::Builder::new()
        .prefix(".cycle-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|error| error.error)?;
    // The rename itself is durable only once the directory is synced (POSIX).
    if let Ok(handle) = std::fs::File::open(dir) {
        handle.sync_all().ok();
    }
    Ok(())
}
