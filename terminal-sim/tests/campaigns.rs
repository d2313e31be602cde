//! Goal: tags, segments, occasions, campaigns and repurchase reminders (docs/campaigns.md).
//! Tags are given by hand, by file (all or nothing, each bad line named; the same file again
//! adds nothing) and by rule; a segment's preview counts exactly its members; a campaign runs
//! only in its window, reaches each member of its audience once, with one coupon and at most
//! one message, however often it is run, resumed after a cut-short run, or run by the job; its
//! report follows the coupon into a confirmed purchase. A merchant's reminder reaches a lapsed
//! member once per period.
//!
//! Method: the in-process switch over real TCP and HTTP with a manual clock, a small HTTP SMS
//! gateway started in the test that records each message by its idempotency key, the operator
//! API over raw HTTP, and the database read directly to count what was written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::{json, Value};
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;

const DAY_MS: i64 = 86_400_000;

/// The test network plus four members with phones (MB-4 has a card, a birthday on 24 November
/// and Persian messages; MB-5 joined on 25 November 2020).
fn network() -> String {
    let mut network: Value = serde_json::from_str(NETWORK).unwrap();
    let members = network["members"].as_array_mut().unwrap();
    members.push(json!({"code": "MB-3", "phone": "+989120000003", "locale": "en"}));
    members.push(json!({"code": "MB-4", "phone": "+989120000004", "birth_date": "1990-11-24"}));
    members.push(json!({"code": "MB-5", "phone": "+989120000005", "joined_on": "2020-11-25"}));
    members.push(json!({"code": "MB-6", "phone": "+989120000006"}));
    network["cards"].as_array_mut().unwrap().push(json!({
        "code": "C-MB4", "pan": "6037995555555551", "member": "MB-4", "expiry": "2099-12",
        "status": "active"
    }));
    network.to_string()
}

fn with_gateway(
    url: String,
    every_ms: u64,
    calendar: std::path::PathBuf,
) -> impl FnOnce(&mut switch::config::Config) {
    move |config| {
        config.sms_gateway_url = Some(url);
        config.sms_request_timeout_ms = 300;
        config.sms_poll_every_ms = 10;
        config.sms_backoff_ms_min = 50;
        config.sms_backoff_ms_max = 200;
        config.engagement_every_ms = every_ms;
        config.holiday_calendar = Some(calendar);
    }
}

fn calendar_file() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calendar.txt");
    std::fs::write(
        &path,
        "# test holidays\n2026-11-26  Test Day\n2026-12-21  Yalda\n",
    )
    .unwrap();
    (dir, path)
}

struct Api<'h> {
    harness: &'h Harness,
    token: String,
}

impl Api<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let (status, _, value) = admin_request(
            self.harness.running().admin_addr,
            method,
            path,
            &self.token,
            None,
            body,
        )
        .await;
        (status, value)
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call("PUT", path, Some(&body.to_string())).await
    }
}

fn fields(value: &Value) -> Vec<String> {
    value["problems"]
        .as_array()
        .map(|problems| {
            problems
                .iter()
                .map(|p| p["field"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What a campaign run may write, as text: equal before and after means it wrote nothing.
async fn reach(harness: &Harness) -> String {
    rows_text(
        harness.pool().await,
        &[
            "SELECT idempotency_key || ':' || member_id || ':' || state FROM coupons ORDER BY idempotency_key",
            "SELECT idempotency_key || ':' || member_id FROM notifications ORDER BY idempotency_key",
            "SELECT campaign_id || ':' || member_id FROM campaign_members ORDER BY campaign_id, member_id",
        ],
    )
    .await
}

/// The switch with the SMS gateway, the job every `every_ms`, and an operator with a write
/// token.
async fn start(db: Db, every_ms: u64) -> (Harness, Seen, tempfile::TempDir, String) {
    let (url, seen) = sms_gateway().await;
    let (calendar_dir, calendar) = calendar_file();
    let harness = Harness::start_full(db, &network(), with_gateway(url, every_ms, calendar)).await;
    let now = UnixMillis::new(START_MS);
    let token = auth::add_token(harness.pool().await, "ops", Role::Write, now)
        .await
        .unwrap();
    (harness, seen, calendar_dir, token)
}

/// A purchase by RICH at `terminal`, approved and confirmed.
async fn buy(
    harness: &Harness,
    client: &mut terminal_sim::client::Client,
    terminal: &mut protocol::terminal::Terminal,
    code: ProcessingCode,
    amount: u64,
) {
    let at = harness.now_seconds();
    let (out, r) = purchase(client, terminal, code, amount, RICH, at).await;
    assert_eq!(r.code, ResponseCode::Approved);
    let confirm = terminal.confirm(&out, r.rrn.unwrap(), at).unwrap();
    assert_eq!(
        exchange(client, terminal, &confirm).await.code,
        ResponseCode::Approved
    );
}

async fn member_id(harness: &Harness, code: &str) -> i64 {
    harness
        .scalar(&format!("SELECT id FROM members WHERE code = '{code}'"))
        .await
}

async fn campaigns_end_to_end(db: Db) {
    // The job runs once at start-up (nothing to do yet) and not again during the test.
    let (harness, seen, _calendar, token) = start(db, 3_600_000).await;
    let now = UnixMillis::new(START_MS);
    let pool = harness.pool().await;
    let api = Api {
        harness: &harness,
        token,
    };
    let reader = Api {
        harness: &harness,
        token: auth::add_token(pool, "finance", Role::Read, now)
            .await
            .unwrap(),
    };

    // Tags: a bad one is refused whole; VIP by hand and by file, BUYER-A by rule.
    let (status, value) = api
        .put(
            "/api/v1/tags/BUYER-A",
            json!({"name": "", "rule": {"bought_at": {"merchant": "M-NONE", "days": 0}}}),
        )
        .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(fields(&value), ["name", "rule.bought_at.days"]);
    let (status, value) = api
        .put("/api/v1/tags/BUYER-A", json!({"name": "Bought at M-A", "rule": {"bought_at": {"merchant": "M-NONE", "days": 30}}}))
        .await;
    assert_eq!(
        (status, fields(&value)),
        (422, vec!["rule.bought_at.merchant".to_owned()])
    );
    assert_eq!(harness.scalar("SELECT count(*) FROM tags").await, 0);
    let (status, _) = api
        .put("/api/v1/tags/BUYER-A", json!({"name": "Bought at M-A", "rule": {"bought_at": {"merchant": "M-A", "days": 30}}}))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        api.put("/api/v1/tags/VIP", json!({"name": "VIP event guest"}))
            .await
            .0,
        201
    );
    assert_eq!(
        api.put("/api/v1/tags/VIP", json!({"name": "VIP guests"}))
            .await
            .0,
        200
    );
    assert_eq!(
        reader.put("/api/v1/tags/X", json!({"name": "x"})).await.0,
        403
    );
    let (status, value) = api
        .call(
            "POST",
            "/api/v1/tags/VIP/members",
            Some(r#"{"add": ["MB-1", "MB-9"]}"#),
        )
        .await;
    assert_eq!((status, fields(&value)), (422, vec!["add[1]".to_owned()]));
    assert_eq!(harness.scalar("SELECT count(*) FROM member_tags").await, 0);
    let (status, value) = api
        .call(
            "POST",
            "/api/v1/tags/VIP/members",
            Some(r#"{"add": ["MB-1", "MB-3"]}"#),
        )
        .await;
    assert_eq!((status, value["added"].as_i64()), (200, Some(2)));
    let (status, value) = api
        .call(
            "POST",
            "/api/v1/tags/VIP/import",
            Some("member\nMB-4\n\nMB-9\n"),
        )
        .await;
    assert_eq!((status, fields(&value)), (422, vec!["line 4".to_owned()]));
    assert_eq!(harness.scalar("SELECT count(*) FROM member_tags").await, 2);
    let file = "member\n# guests of the opening\nMB-4\nMB-5\n";
    let (_, value) = api
        .call("POST", "/api/v1/tags/VIP/import", Some(file))
        .await;
    assert_eq!(value["added"], 2);
    let (_, value) = api
        .call("POST", "/api/v1/tags/VIP/import", Some(file))
        .await;
    assert_eq!(value["added"], 0);
    assert_eq!(
        api.call("POST", "/api/v1/tags/VIP/apply", None).await.0,
        409
    );

    // MB-1 buys at M-A: the rule gives BUYER-A to MB-1 only.
    let mut client = harness.client().await;
    let mut terminal = counter();
    buy(
        &harness,
        &mut client,
        &mut terminal,
        ProcessingCode::BankPurchase,
        300_000,
    )
    .await;
    let (_, value) = api.call("POST", "/api/v1/tags/BUYER-A/apply", None).await;
    assert_eq!(
        (value["added"].as_i64(), value["removed"].as_i64()),
        (Some(1), Some(0))
    );
    let (_, value) = reader.call("GET", "/api/v1/tags/BUYER-A", None).await;
    assert_eq!(
        (value["members"].as_i64(), value["members_by_rule"].as_i64()),
        (Some(1), Some(1))
    );

    // Segments: unknown names are refused by path; the preview counts exactly.
    let (status, value) = api
        .put(
            "/api/v1/segments/GUESTS",
            json!({"name": "Guests", "expression": {"all": [{"tag": "NOPE"}, {"tier": "gold"}]}}),
        )
        .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(
        fields(&value),
        ["expression.all[0].tag", "expression.all[1].tier"]
    );
    let guests =
        json!({"name": "Guests", "expression": {"any": [{"tag": "VIP"}, {"tag": "BUYER-A"}]}});
    assert_eq!(api.put("/api/v1/segments/GUESTS", guests).await.0, 201);
    let (_, value) = reader
        .call("GET", "/api/v1/segments/GUESTS/preview", None)
        .await;
    assert_eq!(value["members"], 4, "{value}");
    assert_eq!(value["sample"], json!(["MB-1", "MB-3", "MB-4", "MB-5"]));
    assert_eq!(value["spend_365_days_rials"], 300_000);
    let silver = json!({"name": "Silver buyers", "expression": {"all": [{"tier": "silver"}, {"not": {"tag": "VIP"}}]}});
    assert_eq!(api.put("/api/v1/segments/SILVER", silver).await.0, 201);
    let (_, value) = reader
        .call("GET", "/api/v1/segments/SILVER/preview", None)
        .await;
    assert_eq!(value["members"], 0, "MB-1 is silver but a VIP: {value}");
    let everyone = json!({"name": "Everyone", "expression": {"all": []}});
    assert_eq!(api.put("/api/v1/segments/ALL", everyone).await.0, 201);

    // Occasions: the calendar shows the holidays, the operator's event, the birthdays.
    let week = json!({"name": "Opening week", "starts_on": "2026-11-22", "ends_on": "2026-11-30"});
    assert_eq!(api.put("/api/v1/occasions/OPENING", week).await.0, 201);
    let (status, value) = reader
        .call(
            "GET",
            "/api/v1/occasions?from=2026-11-22&to=2026-12-31",
            None,
        )
        .await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["holidays"].as_array().unwrap().len(), 2);
    assert_eq!(value["events"][0]["code"], "OPENING");
    assert_eq!(
        value["members"],
        json!([
            {"date": "2026-11-24", "birthdays": 1, "anniversaries": 0},
            {"date": "2026-11-25", "birthdays": 0, "anniversaries": 1},
        ])
    );

    // A campaign: refused whole when wrong; previewed; run only in its window.
    let (status, value) = api
        .put(
            "/api/v1/campaigns/OPEN",
            json!({"name": "Opening", "segment": "NOPE",
              "occasion": {"kind": "holiday", "date": "2026-11-27"},
              "coupon": {"percent": "10", "valid_days": 30}}),
        )
        .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(
        fields(&value),
        ["segment", "occasion", "coupon.discount_rials_max"]
    );
    let open = json!({"name": "Opening", "segment": "GUESTS",
                      "occasion": {"kind": "event", "code": "OPENING"},
                      "coupon": {"fixed_rials": 50000, "valid_days": 30},
                      "sms_fa": "هفته افتتاح: ۵۰٬۰۰۰ ریال تخفیف خرید بعدی شما.",
                      "sms_en": "Opening week: 50,000 rials off your next purchase."});
    let (status, value) = api.put("/api/v1/campaigns/OPEN", open.clone()).await;
    assert_eq!(status, 201, "{value}");
    assert_eq!(
        (value["starts_on"].as_str(), value["ends_on"].as_str()),
        (Some("2026-11-22"), Some("2026-11-30"))
    );
    let yalda = json!({"name": "Yalda", "segment": "ALL", "occasion": {"kind": "holiday", "date": "2026-12-21"},
                       "sms_en": "Happy Yalda!"});
    assert_eq!(api.put("/api/v1/campaigns/YALDA", yalda).await.0, 201);
    let (status, value) = api.call("POST", "/api/v1/campaigns/YALDA/run", None).await;
    assert_eq!(status, 409, "{value}");
    let (_, preview) = reader
        .call("GET", "/api/v1/campaigns/OPEN/preview", None)
        .await;
    assert_eq!(preview["members"], 4, "{preview}");
    assert_eq!(preview["with_phone"], 4);
    assert_eq!(preview["messages"], 4);
    assert_eq!(preview["coupons"], 4);
    assert_eq!(preview["cost_ceiling_rials"], 200_000);
    assert_eq!(
        harness.scalar("SELECT count(*) FROM coupons").await,
        0,
        "a preview issues nothing"
    );

    // Run once: four members, four coupons, four messages (MB-1 is in both tags: once).
    let before = reach(&harness).await;
    let (status, value) = api.call("POST", "/api/v1/campaigns/OPEN/run", None).await;
    assert_eq!(status, 200, "{value}");
    assert_eq!(
        (
            value["reached"].as_i64(),
            value["coupons_issued"].as_i64(),
            value["messages_queued"].as_i64()
        ),
        (Some(4), Some(4), Some(4))
    );
    let after = reach(&harness).await;
    assert_ne!(before, after);
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM coupons WHERE idempotency_key LIKE 'campaign:OPEN:%'")
            .await,
        4
    );
    // Again, by hand: nothing more.
    let (_, value) = api.call("POST", "/api/v1/campaigns/OPEN/run", None).await;
    assert_eq!(
        (value["reached"].as_i64(), value["already_reached"].as_i64()),
        (Some(0), Some(4))
    );
    assert_eq!(reach(&harness).await, after);
    // A run cut short after its members and coupons: resumed, it writes nothing twice.
    sqlx::query("UPDATE campaigns SET state = 'running', done_at_ms = NULL WHERE code = 'OPEN'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE campaign_members SET coupon_id = NULL, notification_id = NULL")
        .execute(pool)
        .await
        .unwrap();
    let (_, value) = api.call("POST", "/api/v1/campaigns/OPEN/run", None).await;
    assert_eq!(
        (
            value["reached"].as_i64(),
            value["coupons_issued"].as_i64(),
            value["messages_queued"].as_i64()
        ),
        (Some(0), Some(0), Some(0)),
        "{value}"
    );
    assert_eq!(reach(&harness).await, after);
    assert_eq!(
        value["report"]["coupons_issued"], 4,
        "the resumed run relinked the coupons"
    );
    // A campaign that ran cannot be changed.
    assert_eq!(api.put("/api/v1/campaigns/OPEN", open).await.0, 409);

    // Each member's phone got exactly one message of the campaign, in their language.
    harness
        .wait_for(
            "SELECT count(*) FROM notifications WHERE delivered_at_ms IS NULL",
            0,
        )
        .await;
    let messages: Vec<(String, Value)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(key, _)| key.starts_with("campaign:OPEN:"))
        .map(|(key, (count, body))| {
            assert_eq!(*count, 1, "{key} sent {count} times");
            (key.clone(), body.clone())
        })
        .collect();
    assert_eq!(messages.len(), 4);
    let mb3 = format!("campaign:OPEN:{}", member_id(&harness, "MB-3").await);
    let body = &messages.iter().find(|(key, _)| *key == mb3).unwrap().1;
    assert!(body.to_string().contains("Opening week"), "{body}");

    // A birthday campaign with a coupon only: the coupon's own notice is the one message.
    let birthday = json!({"name": "Birthdays this week", "segment": "ALL", "occasion": {"kind": "birthday"},
                          "starts_on": "2026-11-22", "ends_on": "2026-11-28",
                          "coupon": {"percent": "20", "discount_rials_max": 100000, "valid_days": 14}});
    assert_eq!(api.put("/api/v1/campaigns/BDAY", birthday).await.0, 201);
    let (_, preview) = reader
        .call("GET", "/api/v1/campaigns/BDAY/preview", None)
        .await;
    assert_eq!(
        (
            preview["members"].as_i64(),
            preview["cost_ceiling_rials"].as_i64()
        ),
        (Some(1), Some(100_000))
    );
    assert_eq!(preview["sample"], json!(["MB-4"]));
    for _ in 0..2 {
        api.call("POST", "/api/v1/campaigns/BDAY/run", None).await;
    }
    let (_, report) = reader
        .call("GET", "/api/v1/campaigns/BDAY/report", None)
        .await;
    assert_eq!(
        (
            report["members"].as_i64(),
            report["coupons_issued"].as_i64(),
            report["messages_queued"].as_i64()
        ),
        (Some(1), Some(1), Some(1)),
        "{report}"
    );
    let mb4 = member_id(&harness, "MB-4").await;
    assert_eq!(
        harness
            .scalar(&format!(
                "SELECT count(*) FROM notifications WHERE member_id = {mb4}"
            ))
            .await,
        2,
        "one per campaign"
    );

    // The report follows MB-1's coupon into a confirmed purchase.
    buy(
        &harness,
        &mut client,
        &mut terminal,
        ProcessingCode::BankPurchase,
        1_000_000,
    )
    .await;
    let (_, report) = reader
        .call("GET", "/api/v1/campaigns/OPEN/report", None)
        .await;
    assert_eq!(report["coupons_redeemed"], 1, "{report}");
    assert_eq!(report["revenue_rials"], 1_000_000);
    assert_eq!(report["coupon_discount_rials"], 50_000);
    assert_eq!(report["messages_delivered"], 4);
}

/// The engagement job: it applies rules, runs a campaign when its window comes (once), and
/// sends a merchant's reminder once per period to a member who stopped buying there.
async fn the_job_runs_campaigns_and_reminders(db: Db) {
    let (harness, _seen, _calendar, token) = start(db, 20).await;
    let api = Api {
        harness: &harness,
        token,
    };
    let (status, value) = api
        .put(
            "/api/v1/merchants/M-A/reminder",
            json!({"days": 0, "period_days": 30}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(fields(&value), ["days", "text_fa"]);
    let reminder = json!({"days": 7, "period_days": 30, "text_fa": "دلمان برایتان تنگ شده", "text_en": "We miss you at M-A"});
    assert_eq!(
        api.put("/api/v1/merchants/M-A/reminder", reminder).await.0,
        201
    );
    assert_eq!(
        api.put(
            "/api/v1/tags/CREDIT",
            json!({"name": "Store credit users", "rule": {"used_store_credit": {"days": 30}}})
        )
        .await
        .0,
        201
    );
    assert_eq!(
        api.put(
            "/api/v1/segments/CREDIT",
            json!({"name": "Credit", "expression": {"tag": "CREDIT"}})
        )
        .await
        .0,
        201
    );
    let later = json!({"name": "December", "segment": "CREDIT", "starts_on": "2026-12-01", "ends_on": "2026-12-05",
                       "sms_en": "December news"});
    assert_eq!(api.put("/api/v1/campaigns/DEC", later).await.0, 201);

    // MB-1 pays with store credit at M-A: the job tags them.
    let mut client = harness.client().await;
    let mut terminal = counter();
    buy(
        &harness,
        &mut client,
        &mut terminal,
        ProcessingCode::StoreCreditPurchase,
        50_000,
    )
    .await;
    harness
        .wait_for("SELECT count(*) FROM member_tags WHERE source = 'rule'", 1)
        .await;
    assert_eq!(
        harness.scalar("SELECT count(*) FROM reminders_sent").await,
        0,
        "not lapsed yet"
    );

    // Eight days on: one reminder, and only one however often the job runs.
    harness.clock.advance(8 * DAY_MS);
    harness
        .wait_for("SELECT count(*) FROM reminders_sent", 1)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        harness.scalar("SELECT count(*) FROM reminders_sent").await,
        1
    );
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM notifications WHERE kind = 'reminder'")
            .await,
        1
    );
    // The campaign's window comes: the job runs it once.
    harness.clock.set(UnixMillis::new(START_MS + 9 * DAY_MS));
    harness
        .wait_for(
            "SELECT count(*) FROM campaigns WHERE code = 'DEC' AND state = 'done'",
            1,
        )
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        harness
            .scalar(
                "SELECT count(*) FROM notifications WHERE idempotency_key LIKE 'campaign:DEC:%'"
            )
            .await,
        1
    );
    // The rule's window passes: the tag goes. A new period: a second reminder.
    harness.clock.set(UnixMillis::new(START_MS + 40 * DAY_MS));
    harness
        .wait_for("SELECT count(*) FROM member_tags WHERE source = 'rule'", 0)
        .await;
    harness
        .wait_for("SELECT count(*) FROM reminders_sent", 2)
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        harness.scalar("SELECT count(*) FROM reminders_sent").await,
        2
    );
}

on_both!(campaigns_end_to_end, the_job_runs_campaigns_and_reminders);
