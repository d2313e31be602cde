//! Goal: online club-card top-ups (docs/top-up.md). An order is created once per idempotency
//! key; the payment gateway's callback credits the card's club balance exactly once, in the
//! transaction that marks the order paid; forged, unsigned, malformed, unknown, duplicate,
//! reordered, late, mismatched and failed callbacks change nothing but their own row in the
//! callback log, and the report counts each. Concurrent copies of one callback credit once,
//! and a restart remembers what was paid.
//!
//! Method: the in-process switch over real TCP and HTTP with a manual clock. The payment
//! gateway is played by the test: a client with its own HMAC-SHA256 signer that posts its
//! callbacks over real HTTP to the switch's admin port, as the real one does. Balances are read
//! both by a terminal's balance inquiry and from the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;

const SECRET: &str = "test-payment-secret-0123456789";
const TIMEOUT_MS: i64 = 600_000;

/// The payment gateway: signs its callbacks and posts them to the switch.
struct Gateway {
    addr: std::net::SocketAddr,
    secret: &'static str,
}

impl Gateway {
    fn sign(&self, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).unwrap();
        mac.update(body.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Posts `body` with `signature` (`None`: no header): status and JSON answer.
    async fn post_signed(&self, body: &str, signature: Option<&str>) -> (u16, Value) {
        post_signed(self.addr, "/api/v1/payments/callback", signature, body).await
    }

    /// A callback, signed.
    async fn post(&self, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        self.post_signed(&body, Some(&self.sign(&body))).await
    }
}

fn paid(payment: &str, order: &str, amount: i64) -> Value {
    json!({"payment_reference": payment, "order_reference": order, "amount_rials": amount,
           "currency": "IRR", "status": "paid", "gateway_fee": 0})
}

fn with_secret(secret: bool) -> impl FnOnce(&mut switch::config::Config) {
    move |config| {
        config.top_up_order_timeout_ms = u64::try_from(TIMEOUT_MS).unwrap();
        config.payment_gateway_secret =
            secret.then(|| switch::survey::InboundSecret::new(SECRET).unwrap());
    }
}

/// Everything a callback may change: balances and transactions (the harness's state), the
/// orders and the credits. Equal before and after means the callback changed nothing.
async fn money(harness: &Harness) -> String {
    let mut out = harness.state().await;
    let queries = [
        "SELECT reference || ':' || state || ':' || COALESCE(payment_reference, '-') FROM top_up_orders ORDER BY id",
        "SELECT idempotency_key || ':' || amount_rials FROM balance_credits ORDER BY idempotency_key",
        "SELECT idempotency_key FROM notifications ORDER BY idempotency_key",
    ];
    out.push_str(&rows_text(harness.pool().await, &queries).await);
    out
}

async fn club(harness: &Harness, card: &str) -> i64 {
    harness
        .scalar(&format!(
            "SELECT b.ledger_rials FROM club_balances b JOIN cards c ON c.id = b.card_id \
             WHERE c.code = '{card}'"
        ))
        .await
}

async fn outcomes(harness: &Harness, outcome: &str) -> i64 {
    harness
        .scalar(&format!(
            "SELECT count(*) FROM top_up_callbacks WHERE outcome = '{outcome}'"
        ))
        .await
}

async fn order(
    harness: &Harness,
    token: &str,
    card: &str,
    key: &str,
    body: &str,
) -> (u16, bool, Value) {
    admin_request(
        harness.running().admin_addr,
        "POST",
        &format!("/api/v1/cards/{card}/top-up-orders"),
        token,
        Some(key),
        Some(body),
    )
    .await
}

async fn top_ups_end_to_end(db: Db) {
    let mut harness = Harness::start_with(db, with_secret(true)).await;
    let now = UnixMillis::new(START_MS);
    let pool = harness.pool().await;
    let writer = auth::add_token(pool, "ops", Role::Write, now)
        .await
        .unwrap();
    let reader = auth::add_token(pool, "finance", Role::Read, now)
        .await
        .unwrap();
    let gateway = Gateway {
        addr: harness.running().admin_addr,
        secret: SECRET,
    };

    // Orders: bad ones are refused and make nothing; one per key.
    let before = money(&harness).await;
    let body = r#"{"amount_rials": 250000}"#;
    assert_eq!(order(&harness, &reader, "C-RICH", "o-1", body).await.0, 403);
    assert_eq!(order(&harness, &writer, "C-NONE", "o-1", body).await.0, 404);
    assert_eq!(
        order(&harness, &writer, "C-BLOCKED", "o-1", body).await.0,
        409
    );
    let (status, _, value) = order(
        &harness,
        &writer,
        "C-RICH",
        "o-1",
        r#"{"amount_rials": 250000, "currency": "USD"}"#,
    )
    .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(
        order(&harness, &writer, "C-RICH", "o-1", r#"{"amount_rials": 0}"#)
            .await
            .0,
        422
    );
    assert_eq!(
        harness.scalar("SELECT count(*) FROM top_up_orders").await,
        0
    );
    let (status, replayed, created) = order(&harness, &writer, "C-RICH", "o-1", body).await;
    assert_eq!((status, replayed), (201, false), "{created}");
    assert_eq!(created["state"], "created");
    assert_eq!(created["amount_rials"], 250_000);
    assert_eq!(created["currency"], "IRR");
    let reference = created["reference"].as_str().unwrap().to_owned();
    let (status, replayed, again) = order(&harness, &writer, "C-RICH", "o-1", body).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again["reference"], reference.as_str());
    let (status, _, _) = order(&harness, &writer, "C-RICH", "o-1", r#"{"amount_rials": 9}"#).await;
    assert_eq!(status, 409);
    assert_eq!(
        harness.scalar("SELECT count(*) FROM top_up_orders").await,
        1
    );
    // An operator's own top-up cannot take an online top-up's key.
    let (status, _, _) = admin_request(
        harness.running().admin_addr,
        "POST",
        "/api/v1/cards/C-RICH/top-ups",
        &writer,
        Some(&format!("top-up:{reference}")),
        Some(body),
    )
    .await;
    assert_eq!(status, 422);
    // Creating orders moved no money.
    let orders_only = money(&harness).await;
    assert_eq!(
        before
            .lines()
            .filter(|l| !l.starts_with("TU"))
            .collect::<Vec<_>>(),
        orders_only
            .lines()
            .filter(|l| !l.starts_with("TU"))
            .collect::<Vec<_>>()
    );

    // Every callback that must change nothing, before the good one.
    let balance = club(&harness, "C-RICH").await;
    let before = money(&harness).await;
    let good = paid("PG-1", &reference, 250_000);
    let text = good.to_string();
    let forged = Gateway {
        addr: gateway.addr,
        secret: "another-secret-entirely-0000",
    };
    assert_eq!(forged.post(&good).await.0, 401);
    assert_eq!(gateway.post_signed(&text, None).await.0, 401);
    let tampered = text.replace("250000", "2500000");
    assert_eq!(
        gateway
            .post_signed(&tampered, Some(&gateway.sign(&text)))
            .await
            .0,
        401
    );
    let (status, value) = gateway.post(&json!({"payment_reference": "PG-1"})).await;
    assert_eq!(status, 400, "{value}");
    assert_eq!(
        gateway
            .post_signed("{not json", Some(&gateway.sign("{not json")))
            .await
            .0,
        400
    );
    for (body, outcome) in [
        (paid("PG-2", "TU-NO-SUCH-ORDER", 250_000), "unknown_order"),
        (paid("PG-3", &reference, 250_001), "amount_mismatch"),
        (
            json!({"payment_reference": "PG-4", "order_reference": reference, "amount_rials": 250_000,
                   "currency": "EUR", "status": "paid"}),
            "currency_mismatch",
        ),
        (
            json!({"payment_reference": "PG-5", "order_reference": reference, "amount_rials": 250_000,
                   "currency": "IRR", "status": "failed"}),
            "not_paid",
        ),
    ] {
        let (status, value) = gateway.post(&body).await;
        assert_eq!(status, 200, "{value}");
        assert_eq!(value["outcome"], outcome);
        assert_eq!(value["credited"], false);
    }
    assert_eq!(
        money(&harness).await,
        before,
        "a refused callback changed something"
    );
    assert_eq!(club(&harness, "C-RICH").await, balance);

    // The good one credits once; the same payment again, reordered or not, does nothing more.
    let mut client = harness.client().await;
    let mut terminal = counter();
    let at = harness.now_seconds();
    let [ledger, available, _, _] = balances(&mut client, &mut terminal, RICH, at).await;
    let (status, value) = gateway.post(&good).await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["outcome"], "accepted");
    assert_eq!(value["credited"], true);
    assert_eq!(club(&harness, "C-RICH").await, balance + 250_000);
    let [ledger_after, available_after, _, _] =
        balances(&mut client, &mut terminal, RICH, at).await;
    assert_eq!(ledger_after, ledger + 250_000);
    assert_eq!(available_after, available + 250_000);
    let after = money(&harness).await;
    let failed_later = json!({"payment_reference": "PG-1", "order_reference": reference,
                              "amount_rials": 250_000, "currency": "IRR", "status": "failed"});
    for (body, outcome) in [
        (good.clone(), "duplicate"),
        (failed_later, "duplicate"),
        (paid("PG-6", &reference, 250_000), "already_paid"),
    ] {
        let (status, value) = gateway.post(&body).await;
        assert_eq!(
            (status, value["outcome"].as_str()),
            (200, Some(outcome)),
            "{value}"
        );
        assert_eq!(value["credited"], false);
    }
    assert_eq!(money(&harness).await, after);
    let (status, _, shown) = admin_request(
        harness.running().admin_addr,
        "GET",
        &format!("/api/v1/top-up-orders/{reference}"),
        &reader,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(shown["state"], "paid");
    assert_eq!(shown["payment_reference"], "PG-1");
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM balance_movements WHERE kind = 'top_up'")
            .await,
        1
    );

    // Concurrent copies of one callback for a second order: one credit.
    let (_, _, second) = order(
        &harness,
        &writer,
        "C-POOR",
        "o-2",
        r#"{"amount_rials": 70000}"#,
    )
    .await;
    let second = second["reference"].as_str().unwrap().to_owned();
    let poor = club(&harness, "C-POOR").await;
    let copies = (0..8).map(|n| {
        let body = paid(if n % 2 == 0 { "PG-7" } else { "PG-8" }, &second, 70_000);
        let gateway = Gateway {
            addr: gateway.addr,
            secret: SECRET,
        };
        tokio::spawn(async move { gateway.post(&body).await })
    });
    let mut accepted = 0;
    for copy in copies {
        let (status, value) = copy.await.unwrap();
        assert_eq!(status, 200, "{value}");
        accepted += i32::from(value["credited"] == true);
    }
    assert_eq!(accepted, 1);
    assert_eq!(club(&harness, "C-POOR").await, poor + 70_000);

    // Late: an order whose time passed is not paid.
    let (_, _, third) = order(
        &harness,
        &writer,
        "C-POOR",
        "o-3",
        r#"{"amount_rials": 5000}"#,
    )
    .await;
    let third = third["reference"].as_str().unwrap().to_owned();
    harness.clock.advance(TIMEOUT_MS + 1);
    let before = money(&harness).await;
    let (_, value) = gateway.post(&paid("PG-9", &third, 5_000)).await;
    assert_eq!(value["outcome"], "late");
    assert_eq!(money(&harness).await, before);

    // A restart remembers: the paid order stays paid and its payment stays a duplicate.
    harness.restart().await;
    let gateway = Gateway {
        addr: harness.running().admin_addr,
        secret: SECRET,
    };
    let before = money(&harness).await;
    assert_eq!(gateway.post(&good).await.1["outcome"], "duplicate");
    assert_eq!(money(&harness).await, before);
    assert_eq!(club(&harness, "C-RICH").await, balance + 250_000);

    // The log and the report: every callback once, by outcome.
    assert_eq!(outcomes(&harness, "accepted").await, 2);
    assert_eq!(outcomes(&harness, "bad_signature").await, 3);
    assert_eq!(outcomes(&harness, "malformed").await, 2);
    let (status, _, report) = admin_request(
        harness.running().admin_addr,
        "GET",
        "/api/v1/reports/top-up-callbacks",
        &reader,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{report}");
    let counted = &report["outcomes"];
    assert_eq!(counted["accepted"], 2);
    assert_eq!(counted["unknown_order"], 1);
    assert_eq!(counted["amount_mismatch"], 1);
    assert_eq!(counted["currency_mismatch"], 1);
    assert_eq!(counted["not_paid"], 1);
    assert_eq!(counted["late"], 1);
    assert_eq!(counted["bad_signature"], 3);
    assert_eq!(counted["malformed"], 2);
    // Four repeats above, and the 7 losing copies: duplicates of their payment or of the order.
    let duplicate = counted["duplicate"].as_i64().unwrap();
    let already = counted["already_paid"].as_i64().unwrap();
    assert_eq!(duplicate + already, 4 + 7);
    assert_eq!(report["credited_rials"], 320_000);
    let total: i64 = counted
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(
        total,
        harness
            .scalar("SELECT count(*) FROM top_up_callbacks")
            .await
    );
    assert_eq!(report["recent"][0]["outcome"], "duplicate");
}

/// Without a configured secret the callback answers 503 and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callback_is_unavailable_without_its_secret() {
    let harness = Harness::start_with(Db::Sqlite, with_secret(false)).await;
    let gateway = Gateway {
        addr: harness.running().admin_addr,
        secret: SECRET,
    };
    let (status, value) = gateway.post(&paid("PG-1", "TU00", 1000)).await;
    assert_eq!(status, 503);
    assert!(value["error"].is_string());
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM top_up_callbacks")
            .await,
        0
    );
}

on_both!(top_ups_end_to_end);
