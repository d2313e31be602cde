//! Files that hold secrets or card data (a network file with PANs and TMKs, a database, a log
//! of the switch) are created readable by their owner only: 0600, their directories 0700.
//! A file that already exists is narrowed to 0600 when it is written again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

/// Creates `dir` and its missing parents as 0700 (existing directories are left as they are).
///
/// # Errors
/// The file system's.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates or truncates `path` as a 0600 file.
///
/// # Errors
/// The file system's.
pub fn create(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    narrow(&file)?;
    Ok(file)
}

/// Writes `contents` to `path` as a 0600 file.
///
/// # Errors
/// The file system's.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    create(path)?.write_all(contents)
}

/// Makes sure the SQLite database a URL names exists as a 0600 file before SQLite opens it
/// (SQLite gives its `-wal` and `-shm` files the database file's mode). PostgreSQL URLs and
/// in-memory databases are left alone.
///
/// # Errors
/// The file system's.
pub fn prepare_sqlite(url_or_path: &str) -> std::io::Result<()> {
    if url_or_path.starts_with("postgres:") || url_or_path.starts_with("postgresql:") {
        return Ok(());
    }
    let path = url_or_path
        .strip_prefix("sqlite://")
        .or_else(|| url_or_path.strip_prefix("sqlite:"))
        .unwrap_or(url_or_path);
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") || url_or_path.contains("mode=memory") {
        return Ok(());
    }
    let path = Path::new(path);
    if path.exists() {
        return Ok(());
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error),
    }
}

fn narrow(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn secret_files_and_folders_are_the_owners_only() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&root.path().join("a")), 0o700);
        let file = dir.join("network.json");
        std::fs::write(&file, b"old").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        write(&file, b"{}").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"{}");
        let db = dir.join("lsw.db");
        prepare_sqlite(&format!("sqlite://{}?mode=rwc", db.display())).unwrap();
        assert_eq!(mode(&db), 0o600);
        prepare_sqlite("sqlite::memory:").unwrap();
    }
}
