//! The two dialects of the migrations are one schema (docs/design.md section 2).
//!
//! Goal: `migrations/sqlite` and `migrations/postgres`, each applied to an empty database, give
//! the same tables; per table the same columns in the same order, with compatible types, the
//! same nullability and defaults; the same primary and unique keys, foreign keys, named indexes
//! and triggers; and a state-transition trigger that allows and refuses the same transitions.
//! Method: apply each directory from empty (a temporary SQLite file; a fresh schema of its own in
//! the PostgreSQL named by `LSW_TEST_DATABASE_URL`, so runs can go in parallel), read the shape
//! back from each catalog into one `Shape` value and compare the two; then run one table of
//! transitions against each database. Without `LSW_TEST_DATABASE_URL` the PostgreSQL half is
//! skipped, and the test says so on stderr.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool, SqlitePool};
use switch::store;

/// The PostgreSQL server the PostgreSQL half runs against; unset means skip that half.
const DATABASE_URL: &str = "LSW_TEST_DATABASE_URL";

/// Declared types and the kind of value each holds. SQLite's INTEGER is 64-bit and the store
/// reads every integer column as `i64`, which PostgreSQL's driver decodes only from `bigint`;
/// so `integer` (32-bit) is deliberately not a match.
const TYPES: &[(Dialect, &str, Kind)] = &[
    (Dialect::Sqlite, "INTEGER", Kind::Integer),
    (Dialect::Sqlite, "TEXT", Kind::Text),
    (Dialect::Sqlite, "BLOB", Kind::Bytes),
    (Dialect::Postgres, "bigint", Kind::Integer),
    (Dialect::Postgres, "text", Kind::Text),
    (Dialect::Postgres, "bytea", Kind::Bytes),
];

/// The transitions of docs/design.md section 5, one per line: state before, state after, whether
/// the transaction was settled (cycle_id set), and what the trigger must do.
const TRANSITIONS: &[(&str, &str, Cycle, Outcome)] = &[
    ("pending", "confirmed", Cycle::Open, Outcome::Allowed),
    ("pending", "reversed", Cycle::Open, Outcome::Allowed),
    ("pending", "expired", Cycle::Open, Outcome::Allowed),
    ("pending", "pending", Cycle::Open, Outcome::Refused),
    ("expired", "confirmed", Cycle::Open, Outcome::Allowed),
    ("expired", "reversed", Cycle::Open, Outcome::Allowed),
    ("expired", "pending", Cycle::Open, Outcome::Refused),
    ("expired", "expired", Cycle::Open, Outcome::Refused),
    ("confirmed", "reversed", Cycle::Open, Outcome::Allowed),
    ("confirmed", "reversed", Cycle::Settled, Outcome::Refused),
    ("confirmed", "confirmed", Cycle::Open, Outcome::Refused),
    ("confirmed", "pending", Cycle::Open, Outcome::Refused),
    ("confirmed", "expired", Cycle::Open, Outcome::Refused),
    ("reversed", "confirmed", Cycle::Open, Outcome::Refused),
    ("reversed", "pending", Cycle::Open, Outcome::Refused),
    ("reversed", "expired", Cycle::Open, Outcome::Refused),
    ("reversed", "reversed", Cycle::Open, Outcome::Refused),
];

/// The trigger's message, the same in both dialects.
const REFUSED_MESSAGE: &str = "transaction state transition not allowed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Text,
    Bytes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    Open,
    Settled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Refused,
}

/// Tables by name, without the migration bookkeeping and the engine's own tables.
type Shape = BTreeMap<String, Table>;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Table {
    columns: Vec<Column>,
    keys: BTreeSet<Key>,
    foreign_keys: BTreeSet<ForeignKey>,
    indexes: BTreeSet<Index>,
    triggers: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Column {
    name: String,
    kind: Kind,
    required: bool,
    default: Option<String>,
}

/// A primary key or a unique constraint (not a named index).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    primary: bool,
    columns: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ForeignKey {
    columns: Vec<String>,
    target: String,
    target_columns: Vec<String>,
}

/// An index made by `CREATE INDEX`; its predicate's text differs by dialect, so only whether
/// it has one is compared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Index {
    name: String,
    unique: bool,
    partial: bool,
    columns: Vec<String>,
}

/// Why a run in a schema of its own failed.
enum Failure {
    Migrate(sqlx::migrate::MigrateError),
    Body(Box<dyn Any + Send>),
}

/// A database in either dialect, for the statements both speak.
enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[tokio::test]
async fn migrations_apply_from_empty_and_agree() {
    let (_dir, sqlite) = sqlite().await;
    let expected = sqlite_shape(&sqlite).await;
    assert!(expected.contains_key("transactions"));
    assert!(expected.values().all(|table| !table.columns.is_empty()));
    let Some(url) = database_url() else {
        return;
    };
    let actual = with_schema(&url, "shape", |pool, schema| async move {
        postgres_shape(&pool, &schema).await
    })
    .await;
    let names = |shape: &Shape| shape.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&actual),
        names(&expected),
        "tables (postgres, sqlite)"
    );
    for (name, sqlite) in &expected {
        let mut postgres = actual[name].clone();
        // Only PostgreSQL, by design (migrations 0008): the trigger that stamps each row with
        // the batch that wrote it, and the index other processes read those stamps by. On
        // SQLite one process runs and nothing reads them. Pinned here, then set aside.
        let stamped = sqlite.columns.iter().any(|c| c.name == "change_seq");
        let stamp_trigger = format!("{name}_stamp");
        let stamp_index = format!("{name}_change_seq");
        assert_eq!(
            postgres.triggers.remove(&stamp_trigger),
            stamped,
            "{name}: the change_seq stamp trigger exactly where the column is"
        );
        let indexes_before = postgres.indexes.len();
        postgres.indexes.retain(|index| index.name != stamp_index);
        assert_eq!(
            indexes_before - postgres.indexes.len(),
            usize::from(stamped),
            "{name}: the change_seq index exactly where the column is"
        );
        let postgres = &postgres;
        assert_eq!(
            postgres.columns, sqlite.columns,
            "{name}: columns (postgres, sqlite)"
        );
        assert_eq!(
            postgres.keys, sqlite.keys,
            "{name}: keys (postgres, sqlite)"
        );
        assert_eq!(
            postgres.foreign_keys, sqlite.foreign_keys,
            "{name}: foreign keys (postgres, sqlite)"
        );
        assert_eq!(
            postgres.indexes, sqlite.indexes,
            "{name}: indexes (postgres, sqlite)"
        );
        assert_eq!(
            postgres.triggers, sqlite.triggers,
            "{name}: triggers (postgres, sqlite)"
        );
    }
}

/// The embedded lists (`store::migrations`) name every file of each dialect's directory, in
/// version order, with the description its file name gives, and the same SQL.
#[test]
fn embedded_lists_match_the_directories() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for (dialect, list) in [
        ("sqlite", store::migrations::SQLITE),
        ("postgres", store::migrations::POSTGRES),
    ] {
        let mut files: Vec<String> = std::fs::read_dir(root.join(dialect))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let listed: Vec<String> = list
            .iter()
            .map(|(version, description, _)| format!("{version:04}_{description}.sql"))
            .collect();
        assert_eq!(
            listed, files,
            "{dialect}: the embedded list differs from the directory"
        );
        for ((_, _, sql), file) in list.iter().zip(&files) {
            let on_disk = std::fs::read_to_string(root.join(dialect).join(file)).unwrap();
            assert_eq!(*sql, on_disk, "{dialect}/{file}: embedded SQL differs");
        }
    }
}

#[tokio::test]
async fn state_transitions_agree() {
    let (_dir, sqlite) = sqlite().await;
    check_transitions(&Db::Sqlite(sqlite)).await;
    let Some(url) = database_url() else {
        return;
    };
    with_schema(&url, "transitions", |pool, _schema| async move {
        check_transitions(&Db::Postgres(pool)).await;
    })
    .await;
}

/// Runs every line of [`TRANSITIONS`] on its own transaction row and fails listing each line
/// whose outcome differs.
async fn check_transitions(db: &Db) {
    let mut wrong = Vec::new();
    for (id, &(before, after, cycle, expected)) in (1_i64..).zip(TRANSITIONS) {
        let actual = transition(db, id, before, after, cycle).await;
        if actual != expected {
            wrong.push(format!(
                "{before} -> {after} ({cycle:?}): {actual:?}, expected {expected:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}:\n{}", db.name(), wrong.join("\n"));
}

async fn transition(db: &Db, id: i64, before: &str, after: &str, cycle: Cycle) -> Outcome {
    let cycle_id = match cycle {
        Cycle::Open => "NULL",
        Cycle::Settled => "1",
    };
    // The smallest row the constraints accept: gross is all bank rest.
    let insert = format!(
        "INSERT INTO transactions (id, ksi, mti, stan, transmitted, terminal_id, merchant_id, \
         card_id, processing_code, gross_rials, discount_rials, fee_rials, store_credit_rials, \
         club_rials, bank_rest_rials, cashback_rials, snapshot_version, rrn, state, \
         created_at_ms, hold_expires_at_ms, cycle_id) \
         VALUES ({id}, 'FFFF0000000000{id:02}', '0200', {id}, '0101120000', 1, 1, 1, '000000', \
         100, 0, 0, 0, 0, 100, 0, 1, '0000000000{id:02}', '{before}', 1, 2, {cycle_id})"
    );
    db.execute(&insert).await.unwrap();
    let update = format!("UPDATE transactions SET state = '{after}' WHERE id = {id}");
    match db.execute(&update).await {
        Ok(()) => Outcome::Allowed,
        Err(error) => {
            let message = error.as_database_error().map(|e| e.message().to_owned());
            assert_eq!(
                message.as_deref(),
                Some(REFUSED_MESSAGE),
                "{}: {error}",
                db.name()
            );
            Outcome::Refused
        }
    }
}

impl Db {
    fn name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
    }
}

fn kind(dialect: Dialect, declared: &str) -> Kind {
    let found = TYPES
        .iter()
        .find(|(d, name, _)| *d == dialect && *name == declared);
    match found {
        Some(&(_, _, kind)) => kind,
        None => panic!("{dialect:?} type {declared} has no mapping in TYPES"),
    }
}

/// The URL of the PostgreSQL half, or `None` after saying on stderr that it is skipped. Written
/// to the stderr handle, not through `eprintln!`, so the test harness does not capture it.
fn database_url() -> Option<String> {
    match std::env::var(DATABASE_URL) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let mut stderr = std::io::stderr().lock();
            writeln!(stderr, "skipped: {DATABASE_URL} is not set").unwrap();
            None
        }
    }
}

async fn sqlite() -> (tempfile::TempDir, SqlitePool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switch.db");
    store::open(path.to_str().unwrap()).await.unwrap();
    let pool = SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    (dir, pool)
}

async fn sqlite_shape(pool: &SqlitePool) -> Shape {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut shape = Shape::new();
    for name in names {
        let table = sqlite_table(pool, &name).await;
        shape.insert(name, table);
    }
    shape
}

async fn sqlite_table(pool: &SqlitePool, table: &str) -> Table {
    let rows: Vec<(String, String, i64, Option<String>, i64)> = sqlx::query_as(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1) ORDER BY cid",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let primary: Vec<(i64, String)> = rows
        .iter()
        .filter(|row| row.4 > 0)
        .map(|row| (row.4, row.0.clone()))
        .collect();
    // A lone INTEGER PRIMARY KEY is the rowid: never NULL, though not declared NOT NULL.
    let rowid = match primary.as_slice() {
        [(_, name)] => rows.iter().any(|row| &row.0 == name && row.1 == "INTEGER"),
        _ => false,
    };
    let columns = rows
        .iter()
        .map(|(name, declared, not_null, default, pk)| Column {
            name: name.clone(),
            kind: kind(Dialect::Sqlite, declared),
            required: *not_null == 1 || (rowid && *pk == 1),
            default: default.clone(),
        })
        .collect();
    let mut primary = primary;
    primary.sort();
    let mut keys = BTreeSet::new();
    if !primary.is_empty() {
        let columns = primary.into_iter().map(|(_, name)| name).collect();
        keys.insert(Key {
            primary: true,
            columns,
        });
    }
    let mut indexes = BTreeSet::new();
    let listed: Vec<(String, i64, String, i64)> = sqlx::query_as(
        "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1) ORDER BY name",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    for (name, unique, origin, partial) in listed {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info($1) ORDER BY seqno")
                .bind(&name)
                .fetch_all(pool)
                .await
                .unwrap();
        match origin.as_str() {
            "u" => {
                keys.insert(Key {
                    primary: false,
                    columns,
                });
            }
            "c" => {
                let (unique, partial) = (unique == 1, partial == 1);
                indexes.insert(Index {
                    name,
                    unique,
                    partial,
                    columns,
                });
            }
            // The primary key's index: the key is read from the columns above.
            _ => {}
        }
    }
    Table {
        columns,
        keys,
        foreign_keys: sqlite_foreign_keys(pool, table).await,
        indexes,
        triggers: sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1",
        )
        .bind(table)
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect(),
    }
}

async fn sqlite_foreign_keys(pool: &SqlitePool, table: &str) -> BTreeSet<ForeignKey> {
    let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list($1) ORDER BY id, seq",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut by_id: BTreeMap<i64, ForeignKey> = BTreeMap::new();
    for (id, target, column, target_column) in rows {
        let key = by_id.entry(id).or_insert_with(|| ForeignKey {
            columns: Vec::new(),
            target,
            target_columns: Vec::new(),
        });
        key.columns.push(column);
        key.target_columns.push(target_column);
    }
    by_id.into_values().collect()
}

/// Creates a schema of its own, runs `body` with a pool whose every connection works in it,
/// drops the schema (even when `body` failed), then passes on `body`'s failure.
async fn with_schema<F, Fut, T>(url: &str, label: &str, body: F) -> T
where
    F: FnOnce(PgPool, String) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("lsw_test_{label}_{}_{nanos}", std::process::id());
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    admin
        .execute(format!("CREATE SCHEMA \"{schema}\"").as_str())
        .await
        .unwrap();
    let search_path = format!("SET search_path TO \"{schema}\"");
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .after_connect(move |conn, _meta| {
            let search_path = search_path.clone();
            Box::pin(async move {
                conn.execute(search_path.as_str()).await?;
                Ok(())
            })
        })
        .connect(url)
        .await
        .unwrap();
    // The body runs as its own task so that its panic comes back here as a value, after which
    // the schema is dropped and the panic resumed.
    let outcome = match switch::store::migrations::migrator(switch::store::migrations::POSTGRES)
        .run(&pool)
        .await
    {
        Ok(()) => tokio::spawn(body(pool.clone(), schema.clone()))
            .await
            .map_err(|error| Failure::Body(error.into_panic())),
        Err(error) => Err(Failure::Migrate(error)),
    };
    pool.close().await;
    admin
        .execute(format!("DROP SCHEMA \"{schema}\" CASCADE").as_str())
        .await
        .unwrap();
    admin.close().await;
    match outcome {
        Ok(value) => value,
        Err(Failure::Migrate(error)) => panic!("postgres migrations failed: {error}"),
        Err(Failure::Body(payload)) => std::panic::resume_unwind(payload),
    }
}

async fn postgres_shape(pool: &PgPool, schema: &str) -> Shape {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 AND table_type = 'BASE TABLE' \
         AND table_name <> '_sqlx_migrations' ORDER BY table_name",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut shape = Shape::new();
    for name in names {
        let table = postgres_table(pool, schema, &name).await;
        shape.insert(name, table);
    }
    shape
}

async fn postgres_table(pool: &PgPool, schema: &str, table: &str) -> Table {
    let rows: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text, column_default::text \
         FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2 \
         ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let columns = rows
        .into_iter()
        .map(|(name, declared, nullable, default)| Column {
            name,
            kind: kind(Dialect::Postgres, &declared),
            required: nullable == "NO",
            // PostgreSQL spells a text literal default with its cast (`'fa'::text`).
            default: default.map(|d| d.strip_suffix("::text").map(str::to_owned).unwrap_or(d)),
        })
        .collect();
    let keys: Vec<(bool, Vec<String>)> = sqlx::query_as(
        "SELECT c.contype = 'p', array(SELECT a.attname::text \
             FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             ORDER BY k.position) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND c.contype IN ('p', 'u')",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let foreign_keys: Vec<(String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT r.relname::text, array(SELECT a.attname::text \
             FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum \
             ORDER BY k.position), array(SELECT a.attname::text \
             FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum \
             ORDER BY k.position) \
         FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid \
         JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND c.contype = 'f'",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    // Indexes that back a primary key or unique constraint are keys, read above.
    let indexes: Vec<(String, bool, bool, Vec<String>)> = sqlx::query_as(
        "SELECT x.relname::text, i.indisunique, i.indpred IS NOT NULL, array(SELECT a.attname::text \
             FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position) \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
             ORDER BY k.position) \
         FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid \
         JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u'))",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT trigger_name::text FROM information_schema.triggers \
         WHERE event_object_schema = $1 AND event_object_table = $2",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    Table {
        columns,
        keys: keys
            .into_iter()
            .map(|(primary, columns)| Key { primary, columns })
            .collect(),
        foreign_keys: foreign_keys
            .into_iter()
            .map(|(target, columns, target_columns)| ForeignKey {
                columns,
                target,
                target_columns,
            })
            .collect(),
        indexes: indexes
            .into_iter()
            .map(|(name, unique, partial, columns)| Index {
                name,
                unique,
                partial,
                columns,
            })
            .collect(),
        triggers: triggers.into_iter().collect(),
    }
}
