//! Goal: closing a cycle twice, or twice at the same time, gives one cycle, changes nothing
//! the second time, and writes byte-identical files; reconciliation proves the cycle and
//! fails loudly (exit code 3) when a stored amount is altered.
//!
//! Method: transactions through the real engine on a temporary SQLite file; two concurrent
//! closes run on two separate connection pools (as two processes would) and also as two
//! `lsw-settle` processes; the whole database is dumped before and after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use protocol::ProcessingCode::{BankPurchase, ClubPurchase, MixedPurchase};
use settlement::CycleRef;

/// A network with a day of sales at both merchants, on 2026-11-02 (a Monday).
async fn busy_day() -> Net {
    let mut net = Net::new(at("2026-11-02", 8, 0, 0)).await;
    for (hour, terminal, code, amount, card) in [
        (9, 0, ClubPurchase, 350_000, RICH),
        (10, 1, ClubPurchase, 120_000, RICH),
        (11, 0, MixedPurchase, 80_000, POOR),
        (12, 1, BankPurchase, 10_000, POOR),
        (13, 0, BankPurchase, 1_000_000, RICH),
    ] {
        net.sale(terminal, code, amount, card, at("2026-11-02", hour, 0, 0))
            .await;
    }
    net
}

#[tokio::test]
async fn close_twice_changes_nothing() {
    let net = busy_day().await;
    let out = net.dir.path().join("out");
    let settings = settings(out.clone(), "");
    let date = day("2026-11-02");
    let first = settlement::close(&net.pool, &settings, date, at("2026-11-03", 1, 0, 0))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.cycle.totals.txn_count, 5);
    let files_before = files(&out);
    let dump_before = net.dump().await;
    // Later, with the clock moved on: still the same cycle and the same bytes.
    let again = settlement::close(&net.pool, &settings, date, at("2026-11-05", 9, 0, 0))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.cycle, first.cycle);
    assert_eq!(net.dump().await, dump_before);
    assert_eq!(files(&out), files_before);
    assert_eq!(files_before.len(), 3);

    let payout = String::from_utf8(files_before[1].1.clone()).unwrap();
    assert_eq!(files_before[1].0, "cycle-2026-11-02-payout.csv");
    let rows: Vec<&str> = payout.lines().collect();
    assert!(rows[0].starts_with(
        "cycle_id,business_date,due_date,merchant_code,merchant_name,iban,txn_count,"
    ));
    assert!(
        rows[1].starts_with("1,2026-11-02,2026-11-03,M-A,Test Cafe,IR270170000000100324200001,3,")
    );
    assert!(rows[2].starts_with(
        "1,2026-11-02,2026-11-03,M-B,\"Book Shop, Central\",IR380550000000000123456789,2,"
    ));
    assert!(rows[3].starts_with("TOTAL,2,5,"));
    assert_eq!(rows.len(), 4);
    assert!(!payout.contains('\r'));

    let reconciliation = settlement::reconcile(&net.pool, &CycleRef::Date(date))
        .await
        .unwrap();
    assert!(reconciliation.is_balanced(), "{reconciliation}");
    let text = reconciliation.to_string();
    assert!(
        text.contains("ok   club captured: cycle total 457000 = −Σ club capture movements 457000"),
        "{text}"
    );
}

#[tokio::test]
async fn concurrent_closes_make_one_cycle() {
    let net = busy_day().await;
    let date = day("2026-11-02");
    let now = at("2026-11-03", 1, 0, 0);
    let left_pool = switch::store::open(&net.url).await.unwrap();
    let right_pool = switch::store::open(&net.url).await.unwrap();
    let left_out = net.dir.path().join("left");
    let right_out = net.dir.path().join("right");
    let left_settings = settings(left_out.clone(), "");
    let right_settings = settings(right_out.clone(), "");
    let (left, right) = tokio::join!(
        settlement::close(&left_pool, &left_settings, date, now),
        settlement::close(&right_pool, &right_settings, date, now),
    );
    let (left, right) = (left.unwrap(), right.unwrap());
    assert!(
        left.created != right.created,
        "exactly one close creates the cycle"
    );
    assert_eq!(left.cycle, right.cycle);
    assert_eq!(
        net.scalar("SELECT count(*) FROM settlement_cycles").await,
        1
    );
    assert_eq!(
        net.scalar("SELECT count(*) FROM transactions WHERE cycle_id = 1")
            .await,
        5
    );
    assert_eq!(files(&left_out), files(&right_out));
}

#[tokio::test]
async fn concurrent_processes_make_one_cycle() {
    let net = busy_day().await;
    let out = net.dir.path().join("out");
    let spawn = |out: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_lsw-settle"))
            .args(["--db", &net.url, "--out"])
            .arg(out)
            .args(["close", "--date", "2026-11-02"])
            .spawn()
            .unwrap()
    };
    let other = net.dir.path().join("other");
    let (mut first, mut second) = (spawn(&out), spawn(&other));
    assert!(first.wait().unwrap().success());
    assert!(second.wait().unwrap().success());
    assert_eq!(
        net.scalar("SELECT count(*) FROM settlement_cycles").await,
        1
    );
    assert_eq!(files(&out), files(&other));
    let dump = net.dump().await;
    let status = Command::new(env!("CARGO_BIN_EXE_lsw-settle"))
        .args(["--db", &net.url, "--out"])
        .arg(&out)
        .args(["close", "--date", "2026-11-02"])
        .output()
        .unwrap();
    assert!(status.status.success());
    assert_eq!(net.dump().await, dump);
    assert_eq!(files(&out), files(&other));
}

#[tokio::test]
async fn reconcile_finds_a_difference() {
    let net = busy_day().await;
    let settings = settings(net.dir.path().join("out"), "");
    settlement::close(
        &net.pool,
        &settings,
        day("2026-11-02"),
        at("2026-11-03", 1, 0, 0),
    )
    .await
    .unwrap();
    let reconcile = || {
        Command::new(env!("CARGO_BIN_EXE_lsw-settle"))
            .args(["--db", &net.url, "reconcile", "2026-11-02"])
            .output()
            .unwrap()
    };
    let good = reconcile();
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stdout)
    );
    sqlx::query(
        "UPDATE settlement_lines SET payout_rials = payout_rials + 1 WHERE merchant_id = 1",
    )
    .execute(&net.pool)
    .await
    .unwrap();
    let bad = reconcile();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("DIFF payout_rials: cycle total"),
        "{stdout}"
    );
    assert!(stdout.contains("NOT BALANCED"), "{stdout}");
}
