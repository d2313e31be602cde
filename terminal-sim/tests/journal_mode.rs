//! Goal: journal mode's promises, seen from outside the journal (docs/config.md, "Commit
//! point"): settlement never closes over a cutoff the database has not caught up with, and
//! closes the same cycle, byte for byte, right after a load as after a quiet hour; a reversal
//! after settlement's fence is refused as a settled one's is; a journal that cannot be written
//! answers `96` and changes nothing; PostgreSQL runs in journal mode as SQLite does.
//!
//! Method: the in-process switch on a manual clock, driven over TCP; the database's projection
//! held back where needed by a trigger that refuses it; settlement's own `close::run`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use protocol::ProcessingCode::{ClubPurchase, StoreCreditPurchase};
use protocol::ResponseCode;
use switch::domain::UnixMillis;

/// 23:30 Tehran on the harness's first day (a Sunday, a working day): 1.5 h after START_MS.
const CUTOFF_MS: i64 = START_MS + 90 * 60_000;
/// When settlement runs: an hour after the cutoff.
const SETTLE_MS: i64 = CUTOFF_MS + 3_600_000;

fn fast(config: &mut switch::config::Config) {
    // The sweeper's tick carries the projection's freshness and settlement's fence.
    config.sweep_every_ms = 20;
}

/// Purchases, confirms and a reversal before the cutoff.
async fn trade(harness: &Harness) {
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    for (i, amount) in [10_000_u64, 20_000, 30_000, 40_000, 50_000]
        .iter()
        .enumerate()
    {
        let code = if i % 2 == 0 {
            ClubPurchase
        } else {
            StoreCreditPurchase
        };
        let (out, response) = purchase(&mut client, &mut t, code, *amount, RICH, now).await;
        assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
        let confirm = t.confirm(&out, response.rrn.unwrap(), now).unwrap();
        assert_eq!(
            exchange(&mut client, &t, &confirm).await.code,
            ResponseCode::Approved
        );
        if i == 3 {
            let reversal = t.reversal(&out, response.rrn, now).unwrap();
            assert_eq!(
                exchange(&mut client, &t, &reversal).await.code,
                ResponseCode::Approved
            );
        }
    }
}

fn settings(dir: PathBuf) -> settlement::close::Settings {
    settlement::close::Settings {
        cutoff: settlement::cycle::Cutoff::DEFAULT,
        calendar: settlement::calendar::Calendar::fridays_only(),
        out_dir: dir,
        projection_wait: Duration::from_secs(30),
    }
}

const REFUSE: &str =
    "CREATE TRIGGER refuse BEFORE INSERT ON captures BEGIN SELECT RAISE(ABORT, 'held back'); END";

/// Trades, moves the switch's clock an hour past the cutoff and settles; with `hold_back` the
/// database refuses the projection until settlement has been seen waiting. Returns the files.
async fn settle_after_trading(hold_back: bool) -> Vec<(String, Vec<u8>)> {
    let harness = Harness::start_with(Db::Sqlite, fast).await;
    let pool = harness.running().pool.clone();
    if hold_back {
        sqlx::query(REFUSE).execute(&pool).await.unwrap();
    }
    trade(&harness).await;
    harness.clock.set(UnixMillis::new(SETTLE_MS));
    if !hold_back {
        // A quiet hour: everything answered is in the database before settlement starts.
        harness.running().wait_projected().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = harness.dir.path().join("settlement");
    let close = {
        let (pool, settings) = (pool.clone(), settings(out.clone()));
        tokio::spawn(async move {
            settlement::close::run(&pool, &settings, UnixMillis::new(SETTLE_MS)).await
        })
    };
    if hold_back {
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            !close.is_finished(),
            "settlement closed while the database lacked answered work"
        );
        let cycles: i64 = sqlx::query_scalar("SELECT count(*) FROM settlement_cycles")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            cycles, 0,
            "nothing is closed while the projection is behind"
        );
        sqlx::query("DROP TRIGGER refuse")
            .execute(&pool)
            .await
            .unwrap();
    }
    let closed = close.await.unwrap().unwrap();
    assert_eq!(closed.len(), 1, "one cycle closes");
    let mut files = Vec::new();
    for path in &closed[0].files {
        files.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            std::fs::read(path).unwrap(),
        ));
    }
    files.sort();
    let captured: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transactions WHERE cycle_id IS NOT NULL AND state = 'confirmed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        captured, 4,
        "the four confirmed, unreversed purchases are in the cycle"
    );
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_right_after_a_load_closes_as_after_a_quiet_hour() {
    let loaded = settle_after_trading(true).await;
    let quiet = settle_after_trading(false).await;
    assert!(!loaded.is_empty());
    assert_eq!(
        loaded.iter().map(|(name, _)| name).collect::<Vec<_>>(),
        quiet.iter().map(|(name, _)| name).collect::<Vec<_>>()
    );
    for ((name, a), (_, b)) in loaded.iter().zip(&quiet) {
        assert!(
            a == b,
            "{name} differs:\n{}\n---\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_after_settlements_fence_is_refused_and_recorded() {
    let harness = Harness::start_with(Db::Sqlite, fast).await;
    let pool = harness.running().pool.clone();
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let (out, response) = purchase(&mut client, &mut t, ClubPurchase, 10_000, RICH, now).await;
    let rrn = response.rrn.unwrap();
    let confirm = t.confirm(&out, rrn, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    harness.clock.set(UnixMillis::new(SETTLE_MS));
    // Settlement asks for its fence and waits until the switch holds it.
    switch::store::projection::ask_fence(&pool, CUTOFF_MS)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while switch::store::projection::progress(&pool)
        .await
        .unwrap()
        .fence_held_ms
        < CUTOFF_MS
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the switch never held the fence"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The purchase was confirmed before the cutoff and is not settled yet, but the close that
    // is coming assigns it: its reversal is refused as a settled one's is.
    let reversal = t.reversal(&out, Some(rrn), harness.now_seconds()).unwrap();
    let answer = exchange(&mut client, &t, &reversal).await;
    assert_eq!(answer.code, ResponseCode::InvalidTransaction, "{answer:?}");
    // A refusal leaves at once; the late reversal it records follows with the batch.
    harness
        .wait_for(
            "SELECT count(*) FROM exceptions WHERE kind = 'late_reversal'",
            1,
        )
        .await;
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM transactions WHERE state = 'confirmed'")
            .await,
        1,
        "the transaction stays confirmed"
    );
    let closed = settlement::close::run(
        &pool,
        &settings(harness.dir.path().join("out")),
        UnixMillis::new(SETTLE_MS),
    )
    .await
    .unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM transactions WHERE cycle_id IS NOT NULL")
            .await,
        1,
        "the close took it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_cannot_be_written_answers_96_and_changes_nothing() {
    // Small segments, so the journal starts a new one within a few dozen records; a directory
    // where each of the next segment files would go makes that start fail, as a full or
    // broken disk would.
    let harness = Harness::start_with(Db::Sqlite, |config| {
        config.journal_segment_bytes = switch::journal::SEGMENT_BYTES_MIN;
    })
    .await;
    let journal_dir = harness.config.journal().unwrap().dir;
    let journal = harness.running().journal.clone().unwrap();
    let next = journal.appended() + 1;
    let blockers: Vec<PathBuf> = (next..next + 2_000)
        .map(|seq| journal_dir.join(format!("{seq:020}.seg")))
        .filter(|path| !path.exists())
        .collect();
    for path in &blockers {
        std::fs::create_dir(path).unwrap();
    }
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let mut refused = None;
    for _ in 0..500 {
        let before = harness.state().await;
        let (_, response) = purchase(&mut client, &mut t, ClubPurchase, 1_000, RICH, now).await;
        if response.code == ResponseCode::SystemError {
            refused = Some(before);
            break;
        }
        assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
    }
    let before = refused.expect("the journal filled its segment and could not start another");
    assert_eq!(harness.state().await, before, "a 96 changes nothing");
    // The disk is back: service resumes by itself.
    for path in &blockers {
        std::fs::remove_dir(path).unwrap();
    }
    let (_, response) = purchase(&mut client, &mut t, ClubPurchase, 1_000, RICH, now).await;
    assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
    assert_ne!(harness.state().await, before);
}

/// PostgreSQL with `journal_dir` set: the journal is the commit point there too; a restart
/// projects and answers retransmissions identically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_mode_on_postgres() {
    let Some(db) = Db::postgres().await else {
        return;
    };
    let journal = tempfile::tempdir().unwrap();
    let dir = journal.path().to_path_buf();
    let mut harness = Harness::start_with(db, move |config| {
        config.journal_dir = Some(dir);
    })
    .await;
    assert!(
        harness.running().journal.is_some(),
        "journal mode on PostgreSQL"
    );
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let (out, response) = purchase(&mut client, &mut t, ClubPurchase, 10_000, RICH, now).await;
    assert_eq!(response.code, ResponseCode::Approved);
    let confirm = t.confirm(&out, response.rrn.unwrap(), now).unwrap();
    let (confirmed, first) = client
        .exchange(&confirm.bytes, confirm.mti, confirm.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(confirmed.code, ResponseCode::Approved);
    assert_eq!(harness.scalar("SELECT count(*) FROM captures").await, 1);
    let applied = harness
        .scalar("SELECT applied_seq FROM journal_progress")
        .await;
    assert!(
        applied >= 2,
        "the projection recorded its records ({applied})"
    );
    assert!(
        std::fs::read_dir(journal.path()).unwrap().any(|e| e
            .unwrap()
            .path()
            .extension()
            .is_some_and(|x| x == "seg")),
        "the journal is where it was configured"
    );
    harness.restart().await;
    let mut client = harness.client().await;
    let (_, again) = client
        .exchange(&confirm.bytes, confirm.mti, confirm.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(
        again, first,
        "a retransmission after a restart gets the same answer"
    );
    assert_eq!(harness.scalar("SELECT count(*) FROM captures").await, 1);
}
