//! Goal: a crash loses nothing that was answered `00` (docs/design.md section 6). Every approved
//! hold survives `kill -9`, its confirm succeeds after the restart, a retransmitted approved
//! request gets the identical response, and the balances are exactly what the approved work
//! implies.
//!
//! Method: the real `lsw-switch` binary as a child process on a temporary SQLite file,
//! provisioned with `lsw-switch import`; a blocking terminal built from the `protocol` crate;
//! SIGKILL while requests are in flight; a restart on the same file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use protocol::terminal::Outgoing;
use protocol::{Pan, ProcessingCode, ResponseCode};
use sqlx::Row;

async fn scalar(db: &Path, sql: &str) -> i64 {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let value = sqlx::query(sql)
        .fetch_one(&pool)
        .await
        .unwrap()
        .get::<i64, _>(0);
    pool.close().await;
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_work_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsw.db");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &dir.path().join("network.json"), listen, admin);

    let mut terminal = counter();
    let keys = terminal.keys().clone();
    let pan = Pan::parse(RICH.as_bytes()).unwrap();

    let mut child = serve(&db, listen, admin);
    let mut wire = Wire::connect(listen);
    // Pipeline 200 club purchases of 1 000 rials each, read what comes back, and kill the
    // switch while the rest are still in flight.
    let mut sent: Vec<Outgoing> = Vec::new();
    for i in 0..200_u8 {
        let out = terminal
            .purchase(
                ProcessingCode::ClubPurchase,
                Some(1_000),
                &pan,
                now_seconds(),
                [i; 12],
            )
            .unwrap();
        wire.send(&out.bytes).unwrap();
        sent.push(out);
    }
    let mut approved: Vec<(Outgoing, Bytes)> = Vec::new();
    for _ in 0..60 {
        let bytes = wire.receive().unwrap();
        let response = parse(&bytes, &keys);
        assert_eq!(response.code, ResponseCode::Approved);
        let out = sent
            .iter()
            .find(|o| o.stan == response.stan)
            .unwrap()
            .clone();
        approved.push((out, bytes));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Responses already on their way may still arrive; each of them was approved too.
    while let Ok(bytes) = wire.receive() {
        let response = parse(&bytes, &keys);
        let out = sent
            .iter()
            .find(|o| o.stan == response.stan)
            .unwrap()
            .clone();
        approved.push((out, bytes));
    }

    // Restart on the same file.
    let mut child = serve(&db, listen, admin);
    let held = scalar(&db, "SELECT held_rials FROM club_balances b JOIN cards c ON c.id = b.card_id WHERE c.last4 = '1112'").await;
    let pending = scalar(
        &db,
        "SELECT count(*) FROM transactions WHERE state = 'pending'",
    )
    .await;
    // Every answered approval is held (9 000 = 10% discount, club pays the 900 rest each);
    // at most the unanswered ones add to it.
    assert!(
        pending >= i64::try_from(approved.len()).unwrap(),
        "{pending} pending < {} approved",
        approved.len()
    );
    assert_eq!(
        held,
        pending * 900,
        "holds are exactly the pending requests"
    );

    let mut wire = Wire::connect(listen);
    for (out, first) in &approved {
        // A retransmitted approved request gets the identical response.
        wire.send(&out.bytes).unwrap();
        let again = wire.receive().unwrap();
        assert_eq!(&again, first, "stan {}", out.stan);
        // Its confirm succeeds.
        let rrn = parse(first, &keys).rrn.unwrap();
        let confirm = terminal.confirm(out, rrn, now_seconds()).unwrap();
        wire.send(&confirm.bytes).unwrap();
        let response = parse(&wire.receive().unwrap(), &keys);
        assert_eq!(response.code, ResponseCode::Approved);
    }
    // The database is written behind the answers (journal mode).
    wait_projected(admin);
    let captured = scalar(
        &db,
        "SELECT COALESCE(CAST(SUM(club_rials) AS BIGINT), 0) FROM captures",
    )
    .await;
    assert_eq!(captured, i64::try_from(approved.len()).unwrap() * 900);
    let ledger = scalar(&db, "SELECT ledger_rials FROM club_balances b JOIN cards c ON c.id = b.card_id WHERE c.last4 = '1112'").await;
    assert_eq!(
        ledger,
        2_000_000 - captured,
        "the ledger moved by exactly what was captured"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsw.db");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &dir.path().join("network.json"), listen, admin);
    let mut child = serve(&db, listen, admin);
    let mut terminal = counter();
    let keys = terminal.keys().clone();
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let mut wire = Wire::connect(listen);
    for i in 0..50_u8 {
        let out = terminal
            .purchase(
                ProcessingCode::ClubPurchase,
                Some(1_000),
                &pan,
                now_seconds(),
                [i; 12],
            )
            .unwrap();
        wire.send(&out.bytes).unwrap();
    }
    let term = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(term.success());
    // Everything already read is answered before the connection closes.
    let mut answered = 0;
    while let Ok(bytes) = wire.receive() {
        assert_eq!(parse(&bytes, &keys).code, ResponseCode::Approved);
        answered += 1;
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    let stored = scalar(&db, "SELECT count(*) FROM transactions").await;
    assert_eq!(
        stored, answered,
        "every answer is durable and nothing unanswered was kept"
    );
    assert!(TcpStream::connect(listen).is_err(), "no longer accepting");
}
