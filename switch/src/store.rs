//! Persistence in SQLite (DESIGN.md section 6): the database file, its schema, and the
//! reference data and balances kept in it.
//!
//! Layout:
//! - [`reference`]: saving an import in one transaction and loading the reference data back.
//! - [`ledger`]: transactions, holds, idempotency and effects.

pub mod batch;
pub mod ledger;
pub mod migrations;
pub mod reference;

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::domain::SealError;
use crate::import::Problem;

/// Connections in the pool. SQLite serializes writers anyway; a few connections let reads
/// (health checks, the admin API) proceed beside the committer's write transaction.
pub const POOL_CONNECTIONS_MAX: u32 = 4;
/// How long a connection waits for another's write lock before failing: long enough to ride
/// out a large import's commit, short enough to surface a stuck writer.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the store failed or refused.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database URL names a backend this store does not run on.
    #[error("unsupported database: {what}")]
    Unsupported {
        /// Which, and why.
        what: &'static str,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored row does not make a valid record (the database was changed outside the switch).
    #[error("{table} row {id} is invalid: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The row id.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// A sealed TMK does not open: wrong key-encryption key, or the row was altered or moved.
    #[error("terminal row {id}: {source}")]
    Sealed {
        /// The terminal's row id.
        id: i64,
        /// Why it does not open.
        source: SealError,
    },
    /// The import conflicts with what is stored (an opening balance for an account that
    /// already has another); nothing was changed.
    #[error("{}", crate::import::Report(.problems, 0))]
    Rejected {
        /// Every conflict, with the path of its record in the file.
        problems: Vec<Problem>,
    },
}

/// SQLite page cache per connection, in KiB (negative in the pragma means KiB): 32 MiB.
pub const CACHE_KIB: i64 = -32_768;
/// Bytes of the database file SQLite may memory-map for reads: 256 MiB.
pub const MMAP_BYTES: i64 = 256 * 1024 * 1024;

/// Opens (creating it if missing) the SQLite database at `url_or_path` (a `sqlite:` URL or a
/// file path), with WAL, `synchronous=FULL` (an answered `00` survives a power cut), foreign
/// keys on and a busy timeout, and applies the migrations.
///
/// # Errors
/// [`StoreError`] when the file cannot be opened or a migration fails.
pub async fn open_sqlite(url_or_path: &str) -> Result<SqlitePool, StoreError> {
    if url_or_path.starts_with("postgres:") || url_or_path.starts_with("postgresql:") {
        return Err(StoreError::Unsupported {
            what: "PostgreSQL: the schema exists (migrations/postgres) but the store runs on SQLite only so far",
        });
    }
    let options = if url_or_path.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url_or_path)?
    } else {
        SqliteConnectOptions::new().filename(url_or_path)
    };
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        // The group commit touches many pages per batch: a larger page cache and memory-mapped
        // reads save a read syscall and a copy per page (SQLite's defaults are 2 MiB and none).
        .pragma("cache_size", CACHE_KIB.to_string())
        .pragma("mmap_size", MMAP_BYTES.to_string())
        .pragma("temp_store", "memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(POOL_CONNECTIONS_MAX)
        .connect_with(options)
        .await?;
    migrations::migrator(migrations::SQLITE).run(&pool).await?;
    Ok(pool)
}
