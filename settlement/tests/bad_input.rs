//! Goal: bad input (a date that does not exist, a date whose cutoff is still ahead, a day
//! that is not a working day, cycles out of order, a calendar file with an error, an unknown
//! cycle) gets a clear message naming the problem and a non-zero exit, and changes nothing:
//! the database dump is identical and no file is written.
//!
//! Method: `lsw-settle` run as a process against a temporary database with transactions made
//! by the real engine; library calls with an injected clock for the cases that need one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use common::*;
use protocol::ProcessingCode::ClubPurchase;

/// Runs `lsw-settle` with `args` after the global options; checks the exit code and that
/// stderr contains `message`.
async fn check(net: &Net, calendar: Option<&str>, args: &[&str], code: i32, message: &str) {
    let out = net.dir.path().join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lsw-settle"));
    command.args(["--db", &net.url, "--out"]).arg(&out);
    if let Some(text) = calendar {
        let path = net.dir.path().join("calendar.txt");
        std::fs::write(&path, text).unwrap();
        command.arg("--calendar").arg(path);
    }
    let before = net.dump().await;
    let output = command.args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(stderr.contains(message), "{args:?}: {stderr}");
    assert_eq!(net.dump().await, before, "{args:?} changed the database");
    assert!(files(&out).is_empty(), "{args:?} wrote files");
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let mut net = Net::new(at("2026-11-01", 8, 0, 0)).await;
    net.sale(0, ClubPurchase, 350_000, RICH, at("2026-11-01", 9, 0, 0))
        .await;
    let good_calendar = "2026-11-04 Holiday\n";
    for (calendar, args, message) in [
        (None, &["close", "--date", "2026-02-30"][..], "--date \"2026-02-30\": day does not exist in that month"),
        (None, &["close", "--date", "yesterday"][..], "--date \"yesterday\": must be a date YYYY-MM-DD"),
        (None, &["close", "--date", "2099-01-04"][..], "the cycle of 2099-01-04 closes at 2099-01-04T23:30:00.000+03:30, which is later than now"),
        (None, &["close", "--date", "2026-11-06"][..], "2026-11-06 is not a working day (weekend): no cycle closes on it"),
        (Some(good_calendar), &["close", "--date", "2026-11-04"][..], "2026-11-04 is not a working day (holiday (Holiday))"),
        (Some("2026-11-04 Holiday\n2026-11-31 Bad\n"), &["close", "--date", "2026-11-01"][..], "calendar.txt line 2: date: \"2026-11-31\" day does not exist in that month"),
        (Some("2026-11-04\n"), &["run"][..], "calendar.txt line 1: name: missing"),
        (Some("covers 2026-01-01 2026-06-30\n"), &["close", "--date", "2026-11-01"][..], "the calendar covers 2026-01-01 to 2026-06-30; 2026-11-01 is outside it"),
        (None, &["--cutoff", "25:00", "run"][..], "cutoff \"25:00\" must be HH:MM"),
        (None, &["show", "2026-11-01"][..], "no cycle 2026-11-01"),
        (None, &["reconcile", "42"][..], "no cycle 42"),
        (None, &["reconcile", "soon"][..], "no cycle soon:"),
        (None, &["adjust", "--merchant", "M-X", "--amount", "-5", "--reason", "x"][..], "no merchant with code \"M-X\""),
        (None, &["adjust", "--merchant", "M-A", "--amount", "0", "--reason", "x"][..], "adjustment refused: the amount is zero"),
    ] {
        check(&net, calendar, args, 1, message).await;
    }
}

#[tokio::test]
async fn cycles_close_in_order() {
    let mut net = Net::new(at("2026-11-01", 8, 0, 0)).await;
    net.sale(0, ClubPurchase, 350_000, RICH, at("2026-11-01", 9, 0, 0))
        .await;
    let settings = settings(net.dir.path().join("out"), "");
    let now = at("2026-11-05", 9, 0, 0);
    settlement::close(&net.pool, &settings, day("2026-11-02"), now)
        .await
        .unwrap();
    let before = net.dump().await;
    for (date, message) in [
        ("2026-11-04", "the cycle of 2026-11-03 is not closed yet: close it before 2026-11-04, or use `run`"),
        ("2026-11-01", "2026-11-01 was never closed and is before the last closed cycle (2026-11-02): its transactions are already in later cycles"),
        ("2026-11-05", "the cycle of 2026-11-05 closes at 2026-11-05T23:30:00.000+03:30, which is later than now (2026-11-05T09:00:00.000+03:30)"),
    ] {
        let error = settlement::close(&net.pool, &settings, day(date), now).await.unwrap_err();
        assert_eq!(error.to_string(), message);
    }
    assert_eq!(net.dump().await, before);
}
