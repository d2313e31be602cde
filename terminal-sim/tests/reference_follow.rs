//! Goal: a running switch follows reference data changed by another process (an operator's
//! `lsw-switch import` while it serves, on SQLite as on PostgreSQL): a re-import that changes a
//! few records reaches the next purchase within a couple of seconds, applied as a delta of just
//! those records (the snapshot keeps its base and grows an overlay), while a large change is
//! logged as "rebuild whole" and still reaches it.
//!
//! Method: the in-process switch of `common::Harness`; the import is the library call
//! `lsw-switch import` makes, on the same database, as another process's would be; purchases
//! go through `terminal_sim::client`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::Value;

/// Waits until the live snapshot reaches `version`.
async fn wait_version(harness: &Harness, version: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while harness.running().snapshots.borrow().version() < version {
        assert!(
            Instant::now() < deadline,
            "the switch never reached version {version}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn import(harness: &Harness, network: &Value) {
    use switch::clock::Clock as _;
    let secrets = secrets();
    switch::import::import_text(
        harness.pool().await,
        &network.to_string(),
        &secrets.kek,
        &secrets.pan_key,
        harness.clock.now(),
    )
    .await
    .unwrap();
}

/// A purchase from the counter terminal (one terminal throughout, so each has a new STAN).
async fn buy(harness: &Harness, counter: &mut protocol::terminal::Terminal) -> ResponseCode {
    let mut client = harness.client().await;
    let at = harness.now_seconds();
    let (_, response) = purchase(
        &mut client,
        counter,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    response.code
}

#[tokio::test]
async fn a_reimport_reaches_the_next_purchase_as_a_delta() {
    let harness = Harness::start().await;
    let before = harness.running().snapshots.borrow().version();
    let mut counter = counter();
    assert_eq!(buy(&harness, &mut counter).await, ResponseCode::Approved);

    let mut network: Value = serde_json::from_str(NETWORK).unwrap();
    for card in network["cards"].as_array_mut().unwrap() {
        if card["code"] == "C-RICH" {
            card["status"] = Value::from("blocked");
        }
    }
    import(&harness, &network).await;
    wait_version(&harness, before + 1).await;
    let live = harness.running().snapshots.borrow().clone();
    assert!(live.overlay_len() > 0, "a rebuild would have no overlay");
    assert_eq!(buy(&harness, &mut counter).await, ResponseCode::CardBlocked);

    // Nothing changed: no new version, nothing to follow.
    import(&harness, &network).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(harness.running().snapshots.borrow().version(), before + 1);

    // A change of more records than the log lists is rebuilt whole, and still followed.
    let cards = network["cards"].as_array_mut().unwrap();
    for card in cards.iter_mut() {
        if card["code"] == "C-RICH" {
            card["status"] = Value::from("active");
        }
    }
    let template = cards.first().unwrap().clone();
    for n in 0..switch::store::reference::CHANGES_LOGGED_MAX {
        let mut card = template.clone();
        card["code"] = Value::from(format!("C-BULK-{n}"));
        let serial = u64::try_from(n).unwrap();
        card["pan"] = Value::from(terminal_sim::network::luhn_pan("999999", serial));
        card["status"] = Value::from("active");
        cards.push(card);
    }
    import(&harness, &network).await;
    wait_version(&harness, before + 2).await;
    let live = harness.running().snapshots.borrow().clone();
    assert_eq!(live.overlay_len(), 0, "rebuilt whole");
    assert!(live.card_count() > switch::store::reference::CHANGES_LOGGED_MAX);
    assert_eq!(buy(&harness, &mut counter).await, ResponseCode::Approved);
}
