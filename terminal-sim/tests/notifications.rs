//! Goal: the SMS outbox (docs/notifications.md): a confirm writes its member's notifications
//! in the same transaction, once however often it is retransmitted; the dispatcher delivers
//! every row at least once to a gateway that fails, stalls and drops connections, with the
//! idempotency key that lets the gateway drop duplicates, and loses nothing across a restart.
//!
//! Method: the in-process switch over real TCP with a manual clock, and a small HTTP server
//! started in the test that answers each key's first attempt by the key's turn (500, a stall
//! past the request timeout, a connection closed after reading, or 200) and every later
//! attempt with 200. The test moves the manual clock forward while it waits, so backoff and
//! leases pass without waiting for them in real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;

/// What the gateway saw: every key it read a whole request for, with how often.
#[derive(Default)]
struct Seen {
    /// Requests read, per key (any answer).
    requests: BTreeMap<String, usize>,
    /// Keys answered 200 or read and then dropped (the gateway would have sent both).
    accepted: BTreeMap<String, usize>,
    /// Bodies by key, as received.
    bodies: BTreeMap<String, serde_json::Value>,
}

async fn gateway() -> (String, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shared = seen.clone();
    tokio::spawn(async move {
        let turn = Arc::new(Mutex::new(0_usize));
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = shared.clone();
            let turn = turn.clone();
            tokio::spawn(async move {
                let Some((key, body)) = read_request(&mut stream).await else {
                    return;
                };
                let behaviour = {
                    let mut seen = seen.lock().unwrap();
                    let count = seen.requests.entry(key.clone()).or_insert(0);
                    *count += 1;
                    let first = *count == 1;
                    seen.bodies.insert(key.clone(), body);
                    let mut turn = turn.lock().unwrap();
                    let behaviour = if first { *turn % 4 } else { 3 };
                    if first {
                        *turn += 1;
                    }
                    behaviour
                };
                match behaviour {
                    0 => {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                            )
                            .await;
                    }
                    1 => tokio::time::sleep(Duration::from_millis(1_500)).await,
                    2 => {
                        *seen.lock().unwrap().accepted.entry(key).or_insert(0) += 1;
                    }
                    _ => {
                        *seen.lock().unwrap().accepted.entry(key).or_insert(0) += 1;
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (url, seen)
}

fn with_gateway(url: String) -> impl FnOnce(&mut switch::config::Config) {
    move |config| {
        config.sms_gateway_url = Some(url);
        config.sms_request_timeout_ms = 300;
        config.sms_poll_every_ms = 10;
        config.sms_batch_max = 4;
        config.sms_backoff_ms_min = 50;
        config.sms_backoff_ms_max = 200;
    }
}

/// Approves and confirms `count` club purchases of RICH (whose member has a phone).
async fn confirmed_purchases(harness: &Harness, count: usize) {
    let mut client = harness.client().await;
    let mut t = counter();
    for _ in 0..count {
        let now = harness.now_seconds();
        let (out, r) = purchase(
            &mut client,
            &mut t,
            ProcessingCode::ClubPurchase,
            100_000,
            RICH,
            now,
        )
        .await;
        assert_eq!(r.code, ResponseCode::Approved);
        let confirm = t.confirm(&out, r.rrn.unwrap(), now).unwrap();
        assert_eq!(
            exchange(&mut client, &t, &confirm).await.code,
            ResponseCode::Approved
        );
    }
}

async fn outbox_keys(harness: &Harness) -> BTreeSet<String> {
    sqlx::query_scalar::<_, String>("SELECT idempotency_key FROM notifications")
        .fetch_all(harness.pool().await)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

/// Waits until every outbox row is delivered, moving the clock 100 ms per 10 ms.
async fn wait_delivered(harness: &Harness) {
    for _ in 0..1_000 {
        let pending = harness
            .scalar("SELECT count(*) FROM notifications WHERE delivered_at_ms IS NULL")
            .await;
        if pending == 0 {
            return;
        }
        harness.clock.advance(100);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("notifications still undelivered");
}

async fn a_confirm_writes_its_notifications_once(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let (mixed, r) = purchase(
        &mut client,
        &mut t,
        ProcessingCode::MixedPurchase,
        500_000,
        RICH,
        now,
    )
    .await;
    assert_eq!(r.code, ResponseCode::Approved);
    assert_eq!(
        harness.scalar("SELECT count(*) FROM notifications").await,
        0
    );
    let confirm = t.confirm(&mixed, r.rrn.unwrap(), now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "SELECT idempotency_key, kind, locale, phone, body FROM notifications ORDER BY idempotency_key",
    )
    .fetch_all(harness.pool().await)
    .await
    .unwrap();
    let txn = harness.scalar("SELECT max(id) FROM transactions").await;
    let expected = vec![
        (
            format!("capture:{txn}"),
            "purchase".to_owned(),
            "fa".to_owned(),
            "+989121234567".to_owned(),
            "خرید ۵۰۰٬۰۰۰ ریالی شما تأیید شد. تخفیف: ۵۰٬۰۰۰ ریال. \
             از موجودی باشگاه: ۳۵۰٬۰۰۰ ریال. از اعتبار فروشگاه: ۱۰۰٬۰۰۰ ریال."
                .to_owned(),
        ),
        (
            format!("cashback:{txn}"),
            "cashback".to_owned(),
            "fa".to_owned(),
            "+989121234567".to_owned(),
            "۷٬۰۰۰ ریال بازگشت خرید به اعتبار فروشگاهی شما افزوده شد.".to_owned(),
        ),
    ];
    assert_eq!(rows, expected);
    // The retransmitted confirm is answered from the idempotency window: no new row.
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        harness.scalar("SELECT count(*) FROM notifications").await,
        2
    );
    // A member without a phone gets none.
    let (by_poor, r) = purchase(
        &mut client,
        &mut t,
        ProcessingCode::ClubPurchase,
        10_000,
        POOR,
        now,
    )
    .await;
    if r.code == ResponseCode::Approved {
        let confirm = t.confirm(&by_poor, r.rrn.unwrap(), now).unwrap();
        assert_eq!(
            exchange(&mut client, &t, &confirm).await.code,
            ResponseCode::Approved
        );
    }
    assert_eq!(
        harness.scalar("SELECT count(*) FROM notifications").await,
        2
    );
}

async fn every_notification_is_delivered_despite_failures_and_a_restart(db: Db) {
    let (url, seen) = gateway().await;
    let mut harness = Harness::start_with(db, with_gateway(url)).await;
    confirmed_purchases(&harness, 4).await;
    // Mid-way: once something was delivered, restart with rows still in backoff or leased.
    for _ in 0..500 {
        if harness
            .scalar("SELECT count(*) FROM notifications WHERE delivered_at_ms IS NOT NULL")
            .await
            > 0
        {
            break;
        }
        harness.clock.advance(20);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    harness.restart().await;
    confirmed_purchases(&harness, 4).await;
    wait_delivered(&harness).await;

    let keys = outbox_keys(&harness).await;
    assert_eq!(keys.len(), 8, "one per confirmed purchase");
    {
        let seen = seen.lock().unwrap();
        let accepted: BTreeSet<String> = seen.accepted.keys().cloned().collect();
        assert_eq!(
            accepted, keys,
            "every row reached the gateway, under its own key"
        );
        assert!(
            seen.accepted.values().any(|count| *count > 1),
            "a dropped answer made the dispatcher send a key again"
        );
        assert!(seen.requests.values().all(|count| *count <= 3));
        let body = &seen.bodies[&keys
            .iter()
            .find(|k| k.starts_with("capture:"))
            .unwrap()
            .clone()];
        assert_eq!(body["to"], "+989121234567");
        assert!(body["text"]
            .as_str()
            .unwrap()
            .starts_with("خرید ۱۰۰٬۰۰۰ ریالی"));
    }
    let failed = harness
        .scalar("SELECT count(*) FROM notifications WHERE attempts > 1")
        .await;
    assert!(failed > 0, "some rows needed a retry");
}

on_both!(
    a_confirm_writes_its_notifications_once,
    every_notification_is_delivered_despite_failures_and_a_restart,
);
