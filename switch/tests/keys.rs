//! Goal (issue 24, acceptance 3): a wrong PAN token key and a wrong KEK each stop
//! `lsw-switch serve` and `lsw-switch import` with a message naming the key, and change
//! nothing. (`lsw-settle`: `settlement/tests/keys.rs`.)
//!
//! Method: the real binary on a temporary SQLite file provisioned by `import` with the right
//! keys (which records their check values); then each command with one key wrong, its exit
//! status and stderr, and every row of the database before and after.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;

const WRONG: &str = "3333333333333333333333333333333333333333333333333333333333333333";

/// Every row of every table, as text: equal before and after means nothing changed.
async fn dump(db: &Path) -> String {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut out = String::new();
    for table in tables {
        let columns: Vec<String> =
            sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                .fetch_all(&pool)
                .await
                .unwrap();
        let row = columns
            .iter()
            .map(|c| format!("quote(\"{c}\")"))
            .collect::<Vec<_>>()
            .join(" || ',' || ");
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT {row} FROM \"{table}\" ORDER BY rowid"))
                .fetch_all(&pool)
                .await
                .unwrap();
        out.push_str(&format!("{table}: {rows:?}\n"));
    }
    pool.close().await;
    out
}

/// Runs `lsw-switch ARGS` with `variable` set to the wrong key, waiting at most 30 s.
fn run_wrong(db: &Path, variable: &str, args: &[&std::ffi::OsStr]) -> (Output, Duration) {
    let (listen, admin) = (free_port(), free_port());
    let started = Instant::now();
    let output = switch_command(db, listen, admin)
        .env(variable, WRONG)
        .stderr(std::process::Stdio::piped())
        .args(args)
        .output()
        .unwrap();
    (output, started.elapsed())
}

async fn wrong_key_stops_serve_and_import(variable: &str, other: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsw.db");
    let network = dir.path().join("network.json");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &network, listen, admin);
    #[cfg(unix)]
    {
        // The database `import` created is its owner's only.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the database's mode");
    }
    let before = dump(&db).await;
    assert!(before.contains("'LSW_KEK'") && before.contains("'LSW_PAN_TOKEN_KEY'"));

    for args in [
        vec!["serve".as_ref()],
        vec!["import".as_ref(), network.as_os_str()],
    ] {
        let (output, took) = run_wrong(&db, variable, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("{args:?} with a wrong {variable}: {took:?}\n{stderr}");
        assert!(
            !output.status.success(),
            "{args:?} started with a wrong {variable}"
        );
        assert!(
            stderr.contains(&format!(
                "{variable} is not the key this database was set up with"
            )),
            "{args:?}: the message does not name {variable}: {stderr}"
        );
        assert!(!stderr.contains(&format!("{other} is not")), "{stderr}");
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
        assert_eq!(dump(&db).await, before, "{args:?} changed the database");
    }
    // With the right keys the same database serves.
    let mut child = serve(&db, listen, admin);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pan_token_key_stops_serve_and_import() {
    wrong_key_stops_serve_and_import("LSW_PAN_TOKEN_KEY", "LSW_KEK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kek_stops_serve_and_import() {
    wrong_key_stops_serve_and_import("LSW_KEK", "LSW_PAN_TOKEN_KEY").await;
}
