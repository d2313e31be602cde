//! Goal: terminals do not wait for operators. An operator's change reads only the records it
//! names and is applied to the live snapshot as a delta, so card blocks and unblocks at ten a
//! second leave the terminals' worst latency where it is without them.
//!
//! Method: a switch in process on the system clock, with a network of 20,000 cards (where a
//! change that read the whole reference data, as changes did before, held the database's
//! write turn, and so the group commit, for a large part of a second in a debug build);
//! `lsw-sim load`'s library drives purchases and confirms at a fixed rate, first quiet, then
//! while a task blocks and unblocks cards over the operator API ten times a second. The bound
//! is generous (busy worst ≤ 1.5 × quiet worst + 250 ms) so that a shared machine's noise does
//! not fail it; `benches/scripts/operator_api.sh terminals` measures the figures at a million
//! cards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use switch::api::auth::{self, Role};
use switch::clock::{Clock, SystemClock};
use terminal_sim::fixture::Fixture;
use terminal_sim::load::{self, LoadConfig, LoadReport};

const CARDS: usize = 20_000;

async fn post(admin: std::net::SocketAddr, token: &str, path: &str) -> u16 {
    admin_request(admin, "POST", path, token, None, None)
        .await
        .0
}

/// Blocks and unblocks cards at `per_second` for `seconds`; returns how many were answered 200.
async fn churn(admin: std::net::SocketAddr, token: String, seconds: u64, per_second: u32) -> usize {
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second);
    let mut done = 0;
    let mut n = 0_usize;
    while Instant::now() < end {
        tick.tick().await;
        let card = format!("C-{:07}", (n / 2 * 7919) % CARDS);
        let action = if n % 2 == 0 { "block" } else { "unblock" };
        if post(admin, &token, &format!("/api/v1/cards/{card}/{action}")).await == 200 {
            done += 1;
        }
        n += 1;
    }
    done
}

fn worst(report: &LoadReport) -> u64 {
    report.latency.values().map(|p| p.max_us).max().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_changes_do_not_stall_purchases() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("lsw.db"));
    let size = terminal_sim::network::Size {
        merchants: 8,
        terminals_per_merchant: 1,
        cards: CARDS,
    };
    let network = terminal_sim::network::generate(7, size).to_string();
    let secrets = secrets();
    let pool = switch::store::open(&config.database_url).await.unwrap();
    let now = SystemClock.now();
    switch::import::import_text(&pool, &network, &secrets.kek, &secrets.pan_key, now)
        .await
        .unwrap();
    let token = auth::add_token(&pool, "ops", Role::Write, now)
        .await
        .unwrap();
    pool.close().await;
    let running = switch::app::start(&config, &secrets, Arc::new(SystemClock), None)
        .await
        .unwrap();
    let fixture = Arc::new(Fixture::parse(&network).unwrap());
    let settings = |seed| LoadConfig {
        addr: running.addr,
        connections: 4,
        depth: 1,
        duration: Duration::from_secs(4),
        reversal_percent: 0,
        abandon_percent: 0,
        inquiry_percent: 0,
        seed,
        rate: 100,
    };
    let quiet = load::run(settings(1), fixture.clone(), false).await;
    let changes = tokio::spawn(churn(running.admin_addr, token, 4, 10));
    let busy = load::run(settings(2), fixture, false).await;
    let changed = changes.await.unwrap();
    for report in [&quiet, &busy] {
        assert_eq!(report.errors, 0, "{report:?}");
        assert!(report.pairs > 100, "{report:?}");
    }
    assert!(changed >= 30, "only {changed} changes answered 200");
    let (quiet_worst, busy_worst) = (worst(&quiet), worst(&busy));
    eprintln!("worst latency: quiet {quiet_worst} µs, with {changed} changes {busy_worst} µs");
    assert!(
        busy_worst <= quiet_worst * 3 / 2 + 250_000,
        "terminals waited for operators: worst {busy_worst} µs against {quiet_worst} µs quiet"
    );
    running.stop().await;
}
