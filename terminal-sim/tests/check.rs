//! Goal: `check` (run by `lsw-sim check` and by the simulator after every commit) reports each
//! broken invariant under its own name, with the rows that break it, and nothing on a clean
//! database, on both backends.
//!
//! Method: the test network is imported through the operators' import path; each case breaks
//! one thing behind the switch's back with one SQL statement and names the one invariant it
//! expects to break.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Db, NETWORK, START_MS};
use switch::domain::{Kek, PanTokenKey, UnixMillis};
use switch::store::Pool;

on_both!(breaks_one_invariant_at_a_time);

async fn breaks_one_invariant_at_a_time(db: Db) {
    // (statement that breaks the database, invariant name starts with, rows that break it)
    let cases: &[(&str, &str, usize)] = &[
        (
            "UPDATE club_balances SET ledger_rials = ledger_rials + 1 \
             WHERE card_id = (SELECT MIN(card_id) FROM club_balances)",
            "club: movements sum to the ledger",
            1,
        ),
        (
            "UPDATE store_credit_lots SET remaining_rials = remaining_rials + 5",
            "store credit: lots sum to the ledger",
            store_credit_accounts_with_lots(&db).await,
        ),
        (
            "UPDATE club_balances SET held_rials = 1 WHERE card_id = \
             (SELECT card_id FROM club_balances ORDER BY ledger_rials DESC LIMIT 1)",
            "club holds are exactly the pending transactions' club amounts",
            1,
        ),
    ];
    for (breaking, name, rows) in cases {
        let (pool, _dir) = imported(&db).await;
        let findings = terminal_sim::check::run(&pool).await.unwrap();
        assert!(terminal_sim::check::all_hold(&findings), "{findings:?}");
        sqlx::query(breaking).execute(&pool).await.unwrap();
        let findings = terminal_sim::check::run(&pool).await.unwrap();
        for finding in &findings {
            let expected = if finding.name.starts_with(name) {
                *rows
            } else {
                0
            };
            assert_eq!(finding.count, expected, "{breaking}: {finding:?}");
            assert_eq!(finding.breaches.len(), expected.min(10), "{finding:?}");
        }
        assert!(findings.iter().any(|f| f.name.starts_with(name)), "{name}");
        pool.close().await;
    }
}

/// How many (card, merchant) accounts of the test network have a lot.
async fn store_credit_accounts_with_lots(db: &Db) -> usize {
    let (pool, _dir) = imported(db).await;
    let count: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT DISTINCT card_id, merchant_id \
         FROM store_credit_lots) accounts",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert!(count > 0, "the test network has no store credit");
    usize::try_from(count).unwrap()
}

/// The test network imported into a new database (for SQLite, a file in the returned
/// directory).
async fn imported(db: &Db) -> (Pool, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match db {
        Db::Sqlite => dir.path().join("switch.db").display().to_string(),
        Db::Postgres(server) => switch::store::create_database(server, "lsw_check")
            .await
            .unwrap(),
    };
    let pool = switch::store::open(&url).await.unwrap();
    let (kek, pan_key) = (
        Kek::from_bytes([0x11; 32]),
        PanTokenKey::from_bytes([0x22; 32]),
    );
    switch::import::import_text(&pool, NETWORK, &kek, &pan_key, UnixMillis::new(START_MS))
        .await
        .unwrap();
    (pool, dir)
}
