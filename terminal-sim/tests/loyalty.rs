//! Goal: the loyalty programme's rules (docs/loyalty.md) over real TCP, with an injected
//! clock: tiers earned by rolling 12-month confirmed spend or purchase count, recomputed on
//! each confirm and each reversal of a confirmed purchase, recorded and notified; the card's
//! given tier as a floor; pricing (rules limited to a tier, cashback rate) by the tier held.
//! Member coupons issued through the operator API (idempotently, singly and to the win-back
//! list), applied to the next eligible purchase, held while it is pending, used by its
//! confirm, given back by a reversal or a timeout, and expired.
//!
//! Method: the in-process switch on `data/loyalty.json` (silver earned at 1 000 000 rials of
//! spend, gold at 5 000 000 rials or 10 purchases, a 20 % rule for gold members only, fee
//! 1.5 %), driven by a terminal; field 54 of each approval shows the tier the switch priced
//! with, and the tables `member_tiers`, `tier_changes` and `notifications` show what was
//! recorded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use protocol::terminal::Terminal;
use protocol::{ProcessingCode, ResponseCode};
use switch::config::CouponConfig;
use terminal_sim::client::Client;

const LOYALTY: &str = include_str!("data/loyalty.json");
const DAY_MS: i64 = 86_400_000;

/// A bank-card purchase of `gross` by `card`, with its expected field 54
/// (discount, fee, store, club, bank, cashback); returns what a confirm or reversal needs.
async fn buy(
    harness: &Harness,
    client: &mut Client,
    t: &mut Terminal,
    card: &str,
    gross: u64,
    expected: [u64; 6],
) -> (protocol::terminal::Outgoing, protocol::Rrn) {
    let now = harness.now_seconds();
    let (out, response) = purchase(client, t, ProcessingCode::BankPurchase, gross, card, now).await;
    check_split(&response, gross, expected);
    (out, response.rrn.unwrap())
}

async fn confirm(
    harness: &Harness,
    client: &mut Client,
    t: &mut Terminal,
    original: &(protocol::terminal::Outgoing, protocol::Rrn),
) {
    let message = t
        .confirm(&original.0, original.1, harness.now_seconds())
        .unwrap();
    assert_eq!(
        exchange(client, t, &message).await.code,
        ResponseCode::Approved
    );
}

async fn reverse(
    harness: &Harness,
    client: &mut Client,
    t: &mut Terminal,
    original: &(protocol::terminal::Outgoing, protocol::Rrn),
) {
    let message = t
        .reversal(&original.0, Some(original.1), harness.now_seconds())
        .unwrap();
    assert_eq!(
        exchange(client, t, &message).await.code,
        ResponseCode::Approved
    );
}

/// Every tier change, oldest first: "member: from -> to (cause)".
async fn tier_changes(harness: &Harness) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT m.code || ': ' || COALESCE(f.code, '-') || ' -> ' || COALESCE(t.code, '-') || \
         ' (' || c.cause || ')' FROM tier_changes c JOIN members m ON m.id = c.member_id \
         LEFT JOIN tiers f ON f.id = c.from_tier_id LEFT JOIN tiers t ON t.id = c.to_tier_id \
         ORDER BY c.id",
    )
    .fetch_all(harness.pool().await)
    .await
    .unwrap()
}

/// The tier messages in the outbox, oldest first: "member: body".
async fn tier_messages(harness: &Harness) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT m.code || ': ' || n.body FROM notifications n JOIN members m ON m.id = n.member_id \
         WHERE n.kind = 'tier' ORDER BY n.id",
    )
    .fetch_all(harness.pool().await)
    .await
    .unwrap()
}

/// The tier each member's activity earned at the last recompute ("-" none; absent: never).
async fn earned(harness: &Harness, member: &str) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT COALESCE(t.code, '-') FROM member_tiers e JOIN members m ON m.id = e.member_id \
         LEFT JOIN tiers t ON t.id = e.tier_id WHERE m.code = $1",
    )
    .bind(member)
    .fetch_optional(harness.pool().await)
    .await
    .unwrap()
}

async fn tiers_follow_rolling_activity(db: Db) {
    let mut harness = Harness::start_network(db, LOYALTY).await;
    let mut client = harness.client().await;
    let mut t = counter();

    // No tier yet: no cashback, no gold discount. The first confirm recomputes: nothing earned.
    let first = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        600_000,
        [0, 9_000, 0, 0, 600_000, 0],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &first).await;
    assert_eq!(earned(&harness, "MB-1").await.as_deref(), Some("-"));
    assert!(tier_changes(&harness).await.is_empty());

    // 1 100 000 rials confirmed in the window: silver, recorded and notified.
    let second = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        500_000,
        [0, 7_500, 0, 0, 500_000, 0],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &second).await;
    assert_eq!(
        tier_changes(&harness).await,
        ["MB-1: - -> silver (confirm)"]
    );
    assert_eq!(
        tier_messages(&harness).await,
        ["MB-1: Congratulations! You are now a Silver member."]
    );

    // Silver's cashback rate prices the next purchase: 2 % of 1 000 000.
    let third = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        1_000_000,
        [0, 15_000, 0, 0, 1_000_000, 20_000],
    )
    .await;

    // Reversing a confirmed purchase recomputes too: 600 000 left, silver lost.
    reverse(&harness, &mut client, &mut t, &second).await;
    assert_eq!(
        tier_changes(&harness).await,
        [
            "MB-1: - -> silver (confirm)",
            "MB-1: silver -> - (reversal)"
        ]
    );
    assert_eq!(earned(&harness, "MB-1").await.as_deref(), Some("-"));
    // The pending purchase was priced at silver; its confirm earns silver back (1 600 000).
    confirm(&harness, &mut client, &mut t, &third).await;
    assert_eq!(earned(&harness, "MB-1").await.as_deref(), Some("silver"));
    assert_eq!(tier_changes(&harness).await.len(), 3);

    // The earned tier survives a restart: the next purchase is still priced at silver.
    harness.restart().await;
    let mut client = harness.client().await;
    let priced = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        100_000,
        [0, 1_500, 0, 0, 100_000, 2_000],
    )
    .await;
    reverse(&harness, &mut client, &mut t, &priced).await;
    assert_eq!(
        tier_changes(&harness).await.len(),
        3,
        "a pending reversal recomputes nothing"
    );

    // A year and a day later the old purchases have left the window. The tier holds until the
    // next recompute, which is this purchase's confirm: 100 000 in the window, silver lost.
    harness.clock.advance(366 * DAY_MS);
    let late = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        100_000,
        [0, 1_500, 0, 0, 100_000, 2_000],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &late).await;
    assert_eq!(
        tier_changes(&harness).await.last().map(String::as_str),
        Some("MB-1: silver -> - (confirm)")
    );

    // Gold by count: nine more confirmed purchases make ten in the window (gold needs ten),
    // straight past silver. Gold members get the gold-only 20 % rule and 5 % cashback.
    for _ in 0..9 {
        let small = buy(
            &harness,
            &mut client,
            &mut t,
            RICH,
            10_000,
            [0, 1_000, 0, 0, 10_000, 0],
        )
        .await;
        confirm(&harness, &mut client, &mut t, &small).await;
    }
    assert_eq!(
        tier_changes(&harness).await.last().map(String::as_str),
        Some("MB-1: - -> gold (confirm)")
    );
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        100_000,
        [20_000, 1_500, 0, 0, 80_000, 4_000],
    )
    .await;
    assert_eq!(
        tier_messages(&harness).await,
        [
            "MB-1: Congratulations! You are now a Silver member.",
            "MB-1: Your membership tier has ended.",
            "MB-1: Congratulations! You are now a Silver member.",
            "MB-1: Your membership tier has ended.",
            "MB-1: Congratulations! You are now a Gold member.",
        ]
    );
}

async fn given_tier_is_a_floor(db: Db) {
    let harness = Harness::start_network(db, LOYALTY).await;
    let mut client = harness.client().await;
    let mut t = counter();
    // The card was given gold: it prices at gold, and activity that earns nothing keeps it.
    let bought = buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [20_000, 1_500, 0, 0, 80_000, 4_000],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &bought).await;
    assert_eq!(earned(&harness, "MB-2").await.as_deref(), Some("-"));
    assert!(
        tier_changes(&harness).await.is_empty(),
        "no change seen by the member"
    );
    assert!(tier_messages(&harness).await.is_empty());
    buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [20_000, 1_500, 0, 0, 80_000, 4_000],
    )
    .await;
}

/// The coupon's state as the operator API lists it (the member's newest coupon first).
async fn coupon_states(harness: &Harness, token: &str) -> Vec<String> {
    let addr = harness.running().admin_addr;
    let path = "/api/v1/members/MB-1/coupons";
    let (status, _, body) = admin_request(addr, "GET", path, token, None, None).await;
    assert_eq!(status, 200, "{body}");
    body["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|coupon| coupon["state"].as_str().unwrap().to_owned())
        .collect()
}

async fn coupons_are_held_used_and_given_back(db: Db) {
    let mut harness = Harness::start_network(db, LOYALTY).await;
    let pool = harness.pool().await.clone();
    let now = switch::domain::UnixMillis::new(START_MS);
    let token = switch::api::auth::add_token(&pool, "ops", switch::api::auth::Role::Write, now)
        .await
        .unwrap();
    let addr = harness.running().admin_addr;
    let path = "/api/v1/members/MB-1/coupons";
    let body =
        r#"{"kind": "manual", "fixed_rials": 50000, "basket_rials_min": 200000, "valid_days": 30}"#;
    let (status, replayed, answer) =
        admin_request(addr, "POST", path, &token, Some("c-1"), Some(body)).await;
    assert_eq!((status, replayed), (201, false), "{answer}");
    // A retry is a repeat; the same key for other terms is refused; bad terms name the field.
    let (status, replayed, _) =
        admin_request(addr, "POST", path, &token, Some("c-1"), Some(body)).await;
    assert_eq!((status, replayed), (200, true));
    let other = r#"{"kind": "manual", "fixed_rials": 60000, "valid_days": 30}"#;
    let (status, _, _) = admin_request(addr, "POST", path, &token, Some("c-1"), Some(other)).await;
    assert_eq!(status, 409);
    let both = r#"{"kind": "gift", "percent": "10", "fixed_rials": 1, "valid_days": 0}"#;
    let (status, _, answer) =
        admin_request(addr, "POST", path, &token, Some("c-2"), Some(both)).await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = answer["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["kind", "percent", "valid_days"], "{answer}");
    assert_eq!(coupon_states(&harness, &token).await, ["available"]);
    let message: String =
        sqlx::query_scalar("SELECT body FROM notifications WHERE kind = 'coupon'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        message,
        "A coupon for 50,000 rials off your next purchase is waiting for you, valid until \
         2026-12-22."
    );

    let mut client = harness.client().await;
    let mut t = counter();
    // Below its minimum basket the coupon stays; from it up, the purchase holds it.
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        100_000,
        [0, 1_500, 0, 0, 100_000, 0],
    )
    .await;
    let held = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [50_000, 4_500, 0, 0, 250_000, 0],
    )
    .await;
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [0, 4_500, 0, 0, 300_000, 0],
    )
    .await;
    assert_eq!(coupon_states(&harness, &token).await, ["held"]);

    // Held across a restart; a reversal of the pending purchase gives it back.
    harness.restart().await;
    let mut client = harness.client().await;
    let addr = harness.running().admin_addr;
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [0, 4_500, 0, 0, 300_000, 0],
    )
    .await;
    reverse(&harness, &mut client, &mut t, &held).await;
    assert_eq!(coupon_states(&harness, &token).await, ["available"]);

    // A confirm uses it; a reversal of the confirmed purchase restores it.
    let used = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [50_000, 4_500, 0, 0, 250_000, 0],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &used).await;
    assert_eq!(coupon_states(&harness, &token).await, ["used"]);
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [0, 4_500, 0, 0, 300_000, 0],
    )
    .await;
    reverse(&harness, &mut client, &mut t, &used).await;
    assert_eq!(coupon_states(&harness, &token).await, ["available"]);

    // A purchase left unconfirmed gives it back when its hold times out.
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [50_000, 4_500, 0, 0, 250_000, 0],
    )
    .await;
    harness.clock.advance(121_000);
    let expired = "SELECT count(*) FROM coupons WHERE state = 'available'";
    for _ in 0..200 {
        if harness.scalar(expired).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(coupon_states(&harness, &token).await, ["available"]);

    // Confirm one purchase, then 31 days pass: the coupon has expired and gives nothing.
    let last = buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [50_000, 4_500, 0, 0, 250_000, 0],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &last).await;
    let spare =
        r#"{"kind": "campaign", "percent": "10", "discount_rials_max": 20000, "valid_days": 30}"#;
    let (status, _, _) = admin_request(addr, "POST", path, &token, Some("c-3"), Some(spare)).await;
    assert_eq!(status, 201);
    harness.clock.advance(31 * DAY_MS);
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [0, 4_500, 0, 0, 300_000, 0],
    )
    .await;

    // MB-1 has not bought for 31 days: the win-back list (30 days) gets a coupon, once.
    let win_back = r#"{"days": 30, "kind": "win_back", "percent": "10", "valid_days": 14}"#;
    let bulk = "/api/v1/coupons/win-back";
    let (status, _, answer) =
        admin_request(addr, "POST", bulk, &token, Some("wb-1"), Some(win_back)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (answer["issued"].as_u64(), answer["repeated"].as_u64()),
        (Some(1), Some(0))
    );
    let (status, _, answer) =
        admin_request(addr, "POST", bulk, &token, Some("wb-1"), Some(win_back)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (answer["issued"].as_u64(), answer["repeated"].as_u64()),
        (Some(0), Some(1))
    );
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [30_000, 4_500, 0, 0, 270_000, 0],
    )
    .await;
    assert_eq!(
        coupon_states(&harness, &token).await,
        ["held", "available", "used"],
        "the win-back coupon held, the campaign one expired, the first used"
    );

    // An RFM segment as a target: MB-1 is the only member with confirmed purchases (scores
    // 5, 5, 5); a minimum no one reaches issues nothing; a second run issues nothing new.
    let rfm = "/api/v1/coupons/rfm";
    let body = r#"{"r_min": 5, "f_min": 5, "m_min": 5, "kind": "campaign", "fixed_rials": 1000, "valid_days": 7}"#;
    let (status, _, answer) =
        admin_request(addr, "POST", rfm, &token, Some("rfm-1"), Some(body)).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(
        (answer["issued"].as_u64(), answer["repeated"].as_u64()),
        (Some(1), Some(0))
    );
    let (_, _, answer) = admin_request(addr, "POST", rfm, &token, Some("rfm-1"), Some(body)).await;
    assert_eq!(
        (answer["issued"].as_u64(), answer["repeated"].as_u64()),
        (Some(0), Some(1))
    );
    let bad = r#"{"r_min": 6, "kind": "campaign", "fixed_rials": 1000, "valid_days": 7}"#;
    let (status, _, _) = admin_request(addr, "POST", rfm, &token, Some("rfm-2"), Some(bad)).await;
    assert_eq!(status, 422);
    assert_eq!(coupon_states(&harness, &token).await.len(), 4);
}

fn coupon(percent: Option<&str>, fixed: Option<i64>, valid_days: i64) -> CouponConfig {
    CouponConfig {
        percent: percent.map(str::to_owned),
        fixed_rials: fixed,
        basket_rials_min: 0,
        discount_rials_max: None,
        valid_days,
    }
}

/// Every coupon: "member kind state", by id.
async fn coupons(harness: &Harness) -> Vec<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT m.code || ' ' || k.kind || ' ' || k.state FROM coupons k \
         JOIN members m ON m.id = k.member_id ORDER BY k.id",
    )
    .fetch_all(harness.pool().await)
    .await
    .unwrap()
}

async fn referral_rewards_both_once_and_reversal_withdraws(db: Db) {
    let harness = Harness::start_full(db, LOYALTY, |config| {
        config.referral_coupon = Some(coupon(None, Some(20_000), 30));
    })
    .await;
    let mut client = harness.client().await;
    let mut t = counter();
    // MB-2 (referred by MB-1, card given gold: the 20 % rule) confirms a first purchase.
    let first = buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [20_000, 1_500, 0, 0, 80_000, 4_000],
    )
    .await;
    assert!(coupons(&harness).await.is_empty());
    confirm(&harness, &mut client, &mut t, &first).await;
    assert_eq!(
        coupons(&harness).await,
        ["MB-2 referral available", "MB-1 referral available"]
    );
    // MB-2's next purchase takes its coupon on top of the rule: 20 000 + 20 000.
    let second = buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [40_000, 1_500, 0, 0, 60_000, 3_000],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &second).await;
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM referral_rewards")
            .await,
        1
    );
    // Reversing the purchase that earned the reward withdraws the coupon not used yet.
    reverse(&harness, &mut client, &mut t, &first).await;
    assert_eq!(
        coupons(&harness).await,
        ["MB-2 referral used", "MB-1 referral withdrawn"]
    );
    let reversed = "SELECT count(*) FROM referral_rewards WHERE reversed_at_ms IS NOT NULL";
    assert_eq!(harness.scalar(reversed).await, 1);
    buy(
        &harness,
        &mut client,
        &mut t,
        RICH,
        300_000,
        [0, 4_500, 0, 0, 300_000, 0],
    )
    .await;
    // Once: a later first-looking purchase earns nothing more.
    let third = buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [20_000, 1_500, 0, 0, 80_000, 4_000],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &third).await;
    assert_eq!(coupons(&harness).await.len(), 2);
}

/// Waits (moving nothing) until `sql` counts `wanted`, for the loyalty job's next runs.
async fn eventually(harness: &Harness, sql: &str, wanted: i64) {
    for _ in 0..300 {
        if harness.scalar(sql).await == wanted {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(harness.scalar(sql).await, wanted, "{sql}");
}

async fn occasion_coupons_and_expiry_notices(db: Db) {
    let mut harness = Harness::start_full(db, LOYALTY, |config| {
        config.loyalty_every_ms = 20;
        config.birthday_coupon = Some(coupon(Some("10"), None, 2));
        config.anniversary_coupon = Some(coupon(None, Some(30_000), 30));
    })
    .await;
    // 2026-11-22 in Tehran: MB-1's birthday (born 1990-11-22), MB-2's second anniversary.
    let all = "SELECT count(*) FROM coupons";
    eventually(&harness, all, 2).await;
    assert_eq!(
        coupons(&harness)
            .await
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .len(),
        2
    );
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT m.code || ' ' || k.idempotency_key FROM coupons k \
         JOIN members m ON m.id = k.member_id ORDER BY m.code",
    )
    .fetch_all(harness.pool().await)
    .await
    .unwrap();
    assert!(
        kinds[0].starts_with("MB-1 birthday:") && kinds[0].ends_with(":2026"),
        "{kinds:?}"
    );
    assert!(
        kinds[1].starts_with("MB-2 anniversary:") && kinds[1].ends_with(":2026"),
        "{kinds:?}"
    );
    // The birthday coupon (2 days) expires within the 3 days the notices look ahead.
    let coupon_notice =
        "SELECT count(*) FROM notifications WHERE idempotency_key LIKE 'coupon-expiry:%'";
    eventually(&harness, coupon_notice, 1).await;

    // A cashback lot of MB-2 (gold: 5 %), expiring after the merchant's 90 credit days.
    let mut client = harness.client().await;
    let mut t = counter();
    let bought = buy(
        &harness,
        &mut client,
        &mut t,
        POOR,
        100_000,
        [50_000, 1_500, 0, 0, 50_000, 2_500],
    )
    .await;
    confirm(&harness, &mut client, &mut t, &bought).await;

    // Runs after a restart and on later days issue nothing twice.
    harness.restart().await;
    harness.clock.advance(DAY_MS);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        harness.scalar(all).await,
        2,
        "the day's coupons were issued once"
    );
    // 88 days later the lot is 2 days from expiry: one notice, in the member's language.
    harness.clock.advance(87 * DAY_MS);
    let lot_notice = "SELECT count(*) FROM notifications WHERE idempotency_key LIKE 'lot-expiry:%'";
    eventually(&harness, lot_notice, 1).await;
    let body: String = sqlx::query_scalar(
        "SELECT body FROM notifications WHERE idempotency_key LIKE 'lot-expiry:%'",
    )
    .fetch_one(harness.pool().await)
    .await
    .unwrap();
    assert!(
        body.starts_with("2,500 rials of your store credit expire after "),
        "{body}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(harness.scalar(lot_notice).await, 1, "notified once");
    // Three days on the lot has expired: the ledger still shows it, available does not.
    harness.clock.advance(3 * DAY_MS);
    let mut client = harness.client().await;
    let now = harness.now_seconds();
    let [_, _, store_ledger, store_available] = balances(&mut client, &mut t, POOR, now).await;
    assert_eq!((store_ledger, store_available), (2_500, 0));
}

on_both!(
    tiers_follow_rolling_activity,
    given_tier_is_a_floor,
    coupons_are_held_used_and_given_back,
    referral_rewards_both_once_and_reversal_withdraws,
    occasion_coupons_and_expiry_notices
);
