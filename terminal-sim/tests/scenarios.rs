//! Goal: every fault-injection scenario (`lsw-sim scenario`) holds its claim against a live
//! switch, and the scenarios do not disturb one another when run in sequence on one switch.
//!
//! Method: the in-process switch of `common::Harness` (temporary SQLite provisioned through
//! the import path, manual clock). `check` runs a list of scenarios in order on one switch and
//! fails with every broken claim; time-dependent scenarios move the harness's clock past the
//! hold timeout. One more case runs those on the machine's clock with a short hold timeout,
//! the way the command line drives an external switch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use switch::clock::{Clock, SystemClock};
use terminal_sim::fixture::Fixture;
use terminal_sim::scenario::{self, Freshness, Scenario, ScenarioContext};

/// Runs `scenarios` in order against one switch and fails with every claim broken.
async fn check(context: &ScenarioContext, scenarios: &[Scenario]) {
    let mut broken = Vec::new();
    for scenario in scenarios {
        if let Err(error) = scenario::run(*scenario, context).await {
            broken.push(format!("{}: {error}", scenario.name()));
        }
    }
    assert!(broken.is_empty(), "broken claims:\n{}", broken.join("\n"));
}

fn freshness(harness: &Harness) -> Freshness {
    harness
        .running()
        .journal
        .clone()
        .map_or(Freshness::Immediate, Freshness::InProcess)
}

fn context(harness_addr: std::net::SocketAddr, pool: switch::store::Pool) -> ScenarioContext {
    ScenarioContext {
        addr: harness_addr,
        fixture: Arc::new(Fixture::parse(NETWORK).unwrap()),
        db: pool,
        clock: None,
        hold_timeout: Duration::from_millis(120_000),
        stan_base: 0,
        freshness: Freshness::Immediate,
    }
}

#[tokio::test]
async fn every_scenario_holds_in_sequence_on_one_switch() {
    let harness = Harness::start().await;
    let context = ScenarioContext {
        clock: Some(harness.clock.clone()),
        hold_timeout: Duration::from_millis(harness.config.hold_timeout_ms),
        freshness: freshness(&harness),
        ..context(harness.running().addr, harness.pool().await.clone())
    };
    check(&context, &Scenario::ALL).await;
    // Once more, from another STAN block, after everything the first pass left behind.
    let again = ScenarioContext {
        stan_base: 500_000,
        ..context
    };
    check(&again, &Scenario::ALL).await;
}

#[tokio::test]
async fn time_dependent_scenarios_hold_on_the_machine_clock() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("lsw.db"));
    config.hold_timeout_ms = 400;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let pool = switch::store::open(&config.database_url).await.unwrap();
    let secrets = secrets();
    switch::import::import_text(&pool, NETWORK, &secrets.kek, &secrets.pan_key, clock.now())
        .await
        .unwrap();
    pool.close().await;
    let running = switch::app::start(&config, &secrets, clock, None)
        .await
        .unwrap();
    let context = ScenarioContext {
        hold_timeout: Duration::from_millis(config.hold_timeout_ms),
        freshness: running
            .journal
            .clone()
            .map_or(Freshness::Immediate, Freshness::InProcess),
        ..context(running.addr, running.pool.clone())
    };
    check(
        &context,
        &[
            Scenario::ConfirmsLost,
            Scenario::ConfirmsLate,
            Scenario::ClockSkew,
        ],
    )
    .await;
    running.stop().await;
}
