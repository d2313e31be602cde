//! Persistence (docs/design.md section 6): the database, its schema, and the reference data and
//! balances kept in it. One implementation runs on both backends through sqlx's `Any` driver:
//! SQLite (the embedded default, one switch process) and PostgreSQL (several processes on one
//! database), chosen by the database URL. Every statement is written once, in the SQL both
//! dialects share, with `$N` placeholders.
//!
//! Layout:
//! - [`reference`]: saving an import in one transaction and loading the reference data back.
//! - [`ledger`]: transactions, holds, idempotency and effects.
//! - [`views`]: the operator API's indexed reads (transaction search, card and member views).

pub mod audit;
pub mod batch;
pub mod console;
pub mod direct;
pub mod explain;
pub mod ledger;
pub mod migrations;
pub mod packed;
pub mod projection;
pub mod reference;
pub mod shared;
pub mod sql;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::Executor as _;

use crate::domain::SealError;
use crate::import::Problem;

/// The database driver the store runs on: sqlx's `Any`, SQLite or PostgreSQL by URL.
pub type Db = sqlx::Any;
/// A pool of connections to the switch's database.
pub type Pool = sqlx::AnyPool;
/// One connection (or an open transaction, by deref).
pub type Conn = sqlx::AnyConnection;
/// A row read from the database.
pub type DbRow = sqlx::any::AnyRow;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file: one switch process.
    Sqlite,
    /// A PostgreSQL database: several switch processes may share it.
    Postgres,
}

impl Backend {
    /// The backend of `url_or_path`: `postgres://` or `postgresql://` URLs are PostgreSQL;
    /// `sqlite:` URLs and plain file paths are SQLite.
    pub fn of(url_or_path: &str) -> Backend {
        if url_or_path.starts_with("postgres:") || url_or_path.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The backend a connection runs on.
    pub fn of_conn(conn: &Conn) -> Backend {
        if conn.backend_name() == "PostgreSQL" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The backend a pool runs on.
    pub fn of_pool(pool: &Pool) -> Backend {
        if pool
            .connect_options()
            .database_url
            .scheme()
            .starts_with("postgres")
        {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

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
    /// A table read in packed chunks failed ([`packed`]).
    #[error("{0}")]
    Packed(#[from] packed::PackedError),
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

/// Opens the database at `url_or_path` and applies the migrations of its dialect.
///
/// - SQLite (a `sqlite:` URL or a file path; created if missing): WAL, `synchronous=FULL` (an
///   answered `00` survives a power cut), foreign keys on, a busy timeout, a larger page cache.
/// - PostgreSQL (a `postgres://` URL): see [`PgSettings`] for the pool and timeouts.
///
/// # Errors
/// [`StoreError`] when the database cannot be reached or a migration fails.
pub async fn open(url_or_path: &str) -> Result<Pool, StoreError> {
    open_with(url_or_path, &PgSettings::default()).await
}

/// PostgreSQL connection settings (`docs/config.md`).
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Connections in the pool.
    pub pool_max: u32,
    /// How long one statement may run before the server cancels it.
    pub statement_timeout: Duration,
    /// How long to wait for a free pooled connection or a new one.
    pub acquire_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> PgSettings {
        PgSettings {
            pool_max: 8,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(1),
        }
    }
}

/// [`open`] with explicit PostgreSQL settings.
///
/// # Errors
/// [`StoreError`] when the database cannot be reached or a migration fails.
pub async fn open_with(url_or_path: &str, pg: &PgSettings) -> Result<Pool, StoreError> {
    sqlx::any::install_default_drivers();
    let pool = match Backend::of(url_or_path) {
        Backend::Postgres => {
            let timeout_ms = pg.statement_timeout.as_millis();
            AnyPoolOptions::new()
                .max_connections(pg.pool_max)
                .acquire_timeout(pg.acquire_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        conn.execute(format!("SET statement_timeout = {timeout_ms}").as_str())
                            .await?;
                        Ok(())
                    })
                })
                .connect(url_or_path)
                .await?
        }
        Backend::Sqlite => {
            let url = sqlite_url(url_or_path);
            let url = if url.contains('?') {
                url
            } else {
                format!("{url}?mode=rwc")
            };
            AnyPoolOptions::new()
                .max_connections(POOL_CONNECTIONS_MAX)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // The group commit touches many pages per batch: a larger page cache
                        // and memory-mapped reads save a read syscall and a copy per page
                        // (SQLite's defaults are 2 MiB and none).
                        conn.execute(SQLITE_PRAGMAS.as_str()).await?;
                        Ok(())
                    })
                })
                .connect(&url)
                .await?
        }
    };
    let dialect = match Backend::of_pool(&pool) {
        Backend::Sqlite => migrations::SQLITE,
        Backend::Postgres => migrations::POSTGRES,
    };
    migrations::migrator(dialect).run(&pool).await?;
    Ok(pool)
}

/// A `sqlite:` URL as given, or a plain file path made into one.
fn sqlite_url(url_or_path: &str) -> String {
    if url_or_path.starts_with("sqlite:") {
        url_or_path.to_owned()
    } else {
        format!("sqlite://{url_or_path}")
    }
}

static SQLITE_PRAGMAS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA busy_timeout = {}; PRAGMA cache_size = {CACHE_KIB}; PRAGMA mmap_size = {MMAP_BYTES}; \
         PRAGMA temp_store = memory;",
        BUSY_TIMEOUT.as_millis()
    )
});

/// Connects to an existing database without migrating it: for tools that inspect or drive a
/// switch's database (`check`, the simulator, tests). For SQLite, `sqlite_pragmas` run on every
/// new connection (for example `PRAGMA synchronous = OFF;` for a throw-away copy), and the
/// pool keeps its connections for its whole life without testing them before each use: a
/// connection to a local file does not go stale (the test is a round trip to the connection's
/// thread per statement), and an in-memory database lives only while a connection has it
/// open.
///
/// # Errors
/// [`sqlx::Error`] when the database cannot be reached.
pub async fn connect(
    url_or_path: &str,
    max_connections: u32,
    sqlite_pragmas: &'static str,
) -> Result<Pool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let is_sqlite = Backend::of(url_or_path) == Backend::Sqlite;
    let url = if is_sqlite {
        sqlite_url(url_or_path)
    } else {
        url_or_path.to_owned()
    };
    let options = AnyPoolOptions::new().max_connections(max_connections);
    let options = if is_sqlite {
        options
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options
    };
    options
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if is_sqlite {
                    conn.execute(format!("PRAGMA foreign_keys = ON; {sqlite_pragmas}").as_str())
                        .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
}

/// Creates an empty PostgreSQL database on the server `server_url` names and returns the URL
/// of the new one: tests (and the benchmark) give each run its own database, so they can run
/// in parallel and leave nothing shared behind. The name is `prefix` with the process id, the
/// time and a counter, so two calls never collide.
///
/// # Errors
/// [`StoreError`] when the server refuses or `server_url` is not a PostgreSQL URL.
pub async fn create_database(server_url: &str, prefix: &str) -> Result<String, StoreError> {
    use sqlx::Connection as _;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if Backend::of(server_url) != Backend::Postgres {
        return Err(StoreError::Unsupported {
            what: "create_database needs a postgres:// URL",
        });
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = format!("{prefix}_{}_{nanos}_{n}", std::process::id())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    let mut conn = sqlx::postgres::PgConnection::connect(server_url).await?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    conn.close().await?;
    // postgres://user@host:port/database?params: replace the database part.
    let (head, query) = match server_url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (server_url, None),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let base = head
        .get(authority_start..)
        .and_then(|rest| rest.find('/'))
        .and_then(|slash| head.get(..authority_start + slash))
        .unwrap_or(head);
    Ok(match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    })
}

/// A transaction that reads and then writes: on SQLite it takes this process's write turn
/// ([`write_turn`]) and then the write lock at its start (`BEGIN IMMEDIATE`, waiting up to the
/// busy timeout), so a write after its reads cannot fail because another connection wrote in
/// between; on PostgreSQL a plain `BEGIN`.
///
/// # Errors
/// [`sqlx::Error`] when no connection or lock is had.
pub async fn begin_write(pool: &Pool) -> Result<WriteTx, sqlx::Error> {
    let began = std::time::Instant::now();
    let turn = write_turn(pool).await;
    let tx = match Backend::of_pool(pool) {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    Ok(WriteTx {
        tx,
        _turn: turn,
        began,
    })
}

/// A transaction of [`begin_write`]: used as the connection it runs on, ended by
/// [`WriteTx::commit`]; dropped, it rolls back. It holds the write turn until it ends.
pub struct WriteTx {
    // Declared first, so it is dropped (rolled back) before the turn is given up.
    tx: sqlx::Transaction<'static, Db>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    began: std::time::Instant,
}

impl WriteTx {
    /// When [`begin_write`] was called (before waiting for the turn).
    pub fn began(&self) -> std::time::Instant {
        self.began
    }

    /// Commits, then gives the write turn up.
    ///
    /// # Errors
    /// [`sqlx::Error`] when the commit fails; nothing of the transaction is kept.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        let WriteTx { tx, _turn, .. } = self;
        tx.commit().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// This process's turn to write to a SQLite database, first come, first served.
///
/// SQLite has one writer at a time. A connection that finds the write lock taken sleeps in
/// SQLite's busy handler (1, 2, 5, 10 … up to 100 ms between tries), and one that asks the
/// moment the lock is free wins: measured under load, the engagement job's short
/// transactions, one after another, kept the group commit waiting up to 370 ms. Every write
/// transaction this process opens on a SQLite database (the group commit, [`begin_write`])
/// first takes its turn here, and is woken as soon as the one before it ends, so they queue
/// instead of meeting at SQLite's lock. `None` on PostgreSQL, which locks rows, not the file.
/// One queue per database URL, so pools of different databases in one process never wait for
/// each other.
pub async fn write_turn(pool: &Pool) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    if Backend::of_pool(pool) != Backend::Sqlite {
        return None;
    }
    let key = pool.connect_options().database_url.to_string();
    let queue = {
        let mut queues = WRITE_QUEUES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(queues.entry(key).or_default())
    };
    Some(queue.lock_owned().await)
}

/// The write queues of [`write_turn`], by database URL.
type WriteQueues = std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>;
static WRITE_QUEUES: std::sync::LazyLock<std::sync::Mutex<WriteQueues>> =
    std::sync::LazyLock::new(Default::default);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[tokio::test]
    async fn write_transactions_of_one_sqlite_database_take_turns_and_others_do_not_wait() {
        let dir = tempfile::tempdir().unwrap();
        let one = open(dir.path().join("one.db").to_str().unwrap())
            .await
            .unwrap();
        let other = open(dir.path().join("other.db").to_str().unwrap())
            .await
            .unwrap();
        let mut first = begin_write(&one).await.unwrap();
        sqlx::query("INSERT INTO members (code) VALUES ('MB-1')")
            .execute(&mut *first)
            .await
            .unwrap();
        // The same database: the group commit's turn waits for the open transaction...
        let one_again = one.clone();
        let mut waiting = tokio::spawn(async move { write_turn(&one_again).await.is_some() });
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(200), &mut waiting).await;
        assert!(
            waited.is_err(),
            "a second writer got its turn while the first held it"
        );
        // ...but another database's does not.
        assert!(write_turn(&other).await.is_some());
        // Once the first commits, the waiting turn is given at once.
        first.commit().await.unwrap();
        assert!(waiting.await.unwrap());
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM members")
            .fetch_one(&one)
            .await
            .unwrap();
        assert_eq!(count, 1);
    }
}
