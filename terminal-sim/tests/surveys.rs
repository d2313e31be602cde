//! Goal: SMS surveys after a purchase (docs/surveys.md). A confirm at a merchant with an
//! active survey gets exactly one survey SMS, only after the survey's delay, and not when the
//! purchase was reversed first or the member reached the cap; the SMS gateway's reply webhook
//! takes each signed message once: forged, unsigned, duplicate, reordered (before any survey)
//! and late messages change nothing, a score is stored once against member, merchant and
//! transaction, an unparseable reply gets one clarifying SMS and the next is stored
//! unparsed; the report's numbers follow exactly.
//!
//! Method: the in-process switch over real TCP with a manual clock, a small HTTP SMS gateway
//! started in the test that answers 200 and records every key and body, and raw HTTP
//! requests to the webhook, signed in the test with its own HMAC-SHA256. The clock is moved
//! past the delay and the reply window; the scheduler and dispatcher poll every 10 ms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::*;
use hmac::{Hmac, Mac};
use protocol::terminal::{Outgoing, Terminal};
use protocol::{ProcessingCode, ResponseCode, Rrn};
use serde_json::{json, Value};
use sha2::Sha256;
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;
use terminal_sim::client::Client;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SECRET: &str = "test-inbound-secret-0123456789";
const PHONE: &str = "+989121234567";
const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 86_400_000;

fn sign(body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Posts `body` to the webhook with `signature` (none: no header); status and JSON body.
async fn post_inbound(harness: &Harness, body: &str, signature: Option<&str>) -> (u16, Value) {
    let addr = harness.running().admin_addr;
    post_signed(addr, "/api/v1/sms/inbound", signature, body).await
}

/// A signed reply from `from`.
async fn reply(harness: &Harness, id: &str, from: &str, text: &str) -> (u16, Value) {
    let body = json!({"message_id": id, "from": from, "text": text, "received_at": "2026-11-23T10:00:00Z"})
        .to_string();
    post_inbound(harness, &body, Some(&sign(&body))).await
}

fn with_gateway(url: String, secret: bool) -> impl FnOnce(&mut switch::config::Config) {
    move |config| {
        config.sms_gateway_url = Some(url);
        config.sms_request_timeout_ms = 300;
        config.sms_poll_every_ms = 10;
        config.sms_backoff_ms_min = 50;
        config.sms_backoff_ms_max = 200;
        config.survey_every_ms = 10;
        config.survey_reply_days = 3;
        config.sms_inbound_secret =
            secret.then(|| switch::survey::InboundSecret::new(SECRET).unwrap());
    }
}

/// An approved and confirmed bank purchase by RICH (member MB-1, who has a phone).
async fn confirmed(harness: &Harness, client: &mut Client, t: &mut Terminal) -> (Outgoing, Rrn) {
    let now = harness.now_seconds();
    let (out, r) = purchase(client, t, ProcessingCode::BankPurchase, 200_000, RICH, now).await;
    assert_eq!(r.code, ResponseCode::Approved);
    let rrn = r.rrn.unwrap();
    let confirm = t.confirm(&out, rrn, now).unwrap();
    assert_eq!(
        exchange(client, t, &confirm).await.code,
        ResponseCode::Approved
    );
    (out, rrn)
}

/// Lets the scheduler and the dispatcher run for a while without moving the clock.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Waits until `sql` counts `wanted`, without moving the clock.
const UNDELIVERED: &str = "SELECT count(*) FROM notifications WHERE delivered_at_ms IS NULL";

/// What a webhook may change, as text: equal before and after means it changed nothing.
async fn survey_state(harness: &Harness) -> String {
    rows_text(
        harness.pool().await,
        &[
            "SELECT id || ':' || state || ':' || COALESCE(closed_at_ms, -1) FROM survey_requests ORDER BY id",
            "SELECT request_id || ':' || COALESCE(score, -1) || ':' || COALESCE(comment, '') || ':' || COALESCE(unparsed_text, '') FROM survey_responses ORDER BY request_id",
            "SELECT message_id || ':' || outcome || ':' || COALESCE(request_id, -1) FROM sms_inbound ORDER BY message_id",
            "SELECT idempotency_key FROM notifications ORDER BY idempotency_key",
        ],
    )
    .await
}

async fn call(
    harness: &Harness,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let (status, _, value) = admin_request(
        harness.running().admin_addr,
        method,
        path,
        token,
        None,
        body,
    )
    .await;
    (status, value)
}

async fn surveys_end_to_end(db: Db) {
    let (url, seen) = sms_gateway().await;
    let harness = Harness::start_with(db, with_gateway(url, true)).await;
    let now = UnixMillis::new(START_MS);
    let pool = harness.pool().await;
    let writer = auth::add_token(pool, "ops", Role::Write, now)
        .await
        .unwrap();
    let reader = auth::add_token(pool, "finance", Role::Read, now)
        .await
        .unwrap();

    // The survey: a bad one is refused whole, then M-A gets one (two per member per 30 days).
    let (status, value) = call(
        &harness,
        &writer,
        "PUT",
        "/api/v1/merchants/M-A/survey",
        Some(r#"{"scale_min": 5, "scale_max": 3}"#),
    )
    .await;
    assert_eq!(status, 422, "{value}");
    let fields: Vec<&str> = value["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["question_fa", "scale_max"]);
    let (status, _) = call(
        &harness,
        &reader,
        "GET",
        "/api/v1/merchants/M-A/survey",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let survey = json!({
        "question_fa": "از خرید خود راضی بودید؟",
        "question_en": "How was your visit?",
        "comment_prompt_fa": "نظرتان را هم بنویسید.",
        "scale_min": 1, "scale_max": 5, "delay_minutes": 30,
        "surveys_max": 2, "period_days": 30
    });
    let (status, value) = call(
        &harness,
        &writer,
        "PUT",
        "/api/v1/merchants/M-A/survey",
        Some(&survey.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{value}");
    assert_eq!(value["active"], true);
    let (status, _) = call(
        &harness,
        &reader,
        "PUT",
        "/api/v1/merchants/M-A/survey",
        Some(&survey.to_string()),
    )
    .await;
    assert_eq!(status, 403);
    let (status, value) = call(
        &harness,
        &reader,
        "GET",
        "/api/v1/merchants/M-A/survey",
        None,
    )
    .await;
    assert_eq!(
        (status, &value["delay_minutes"], &value["surveys_max"]),
        (200, &json!(30), &json!(2))
    );

    // Forged and unsigned posts: 401, nothing stored.
    let body = json!({"message_id": "gw-0", "from": PHONE, "text": "5"}).to_string();
    assert_eq!(post_inbound(&harness, &body, None).await.0, 401);
    assert_eq!(
        post_inbound(&harness, &body, Some(&"0".repeat(64))).await.0,
        401
    );
    let forged = json!({"message_id": "gw-0", "from": PHONE, "text": "1"}).to_string();
    assert_eq!(
        post_inbound(&harness, &forged, Some(&sign(&body))).await.0,
        401
    );
    assert_eq!(harness.scalar("SELECT count(*) FROM sms_inbound").await, 0);
    // A malformed but signed one: 422, nothing stored.
    let bad = json!({"message_id": "gw-0", "from": "09121234567", "text": "5"}).to_string();
    assert_eq!(post_inbound(&harness, &bad, Some(&sign(&bad))).await.0, 422);
    assert_eq!(harness.scalar("SELECT count(*) FROM sms_inbound").await, 0);

    // Reordered: a reply before any survey is unmatched and changes nothing else.
    let (status, value) = reply(&harness, "gw-early", PHONE, "5").await;
    assert_eq!(
        (status, &value["outcome"], &value["accepted"]),
        (200, &json!("unmatched"), &json!(false))
    );
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM survey_responses")
            .await,
        0
    );

    let mut client = harness.client().await;
    let mut t = counter();
    // A purchase reversed before its survey is due gets none.
    let (reversed, rrn) = confirmed(&harness, &mut client, &mut t).await;
    let reversal = t
        .reversal(&reversed, Some(rrn), harness.now_seconds())
        .unwrap();
    assert_eq!(
        exchange(&mut client, &t, &reversal).await.code,
        ResponseCode::Approved
    );
    // Three more: two surveys under the cap of two, the third capped.
    confirmed(&harness, &mut client, &mut t).await;
    confirmed(&harness, &mut client, &mut t).await;
    confirmed(&harness, &mut client, &mut t).await;
    let first = harness.scalar("SELECT min(id) FROM transactions").await;

    // Not before the delay.
    harness.clock.advance(29 * MINUTE_MS);
    settle().await;
    assert_eq!(
        harness.scalar("SELECT count(*) FROM survey_requests").await,
        0
    );
    assert!(seen
        .lock()
        .unwrap()
        .keys()
        .all(|k| !k.starts_with("survey")));
    // After it: exactly two survey SMS, one capped request, nothing for the reversed one.
    harness.clock.advance(2 * MINUTE_MS);
    harness
        .wait_for("SELECT count(*) FROM survey_requests", 3)
        .await;
    harness.wait_for(UNDELIVERED, 0).await;
    settle().await;
    assert_eq!(
        harness.scalar("SELECT count(*) FROM survey_requests").await,
        3
    );
    let requests: Vec<(i64, String)> =
        sqlx::query_as("SELECT txn_id, state FROM survey_requests ORDER BY txn_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        requests,
        vec![
            (first + 1, "sent".to_owned()),
            (first + 2, "sent".to_owned()),
            (first + 3, "capped".to_owned()),
        ]
    );
    {
        let seen = seen.lock().unwrap();
        let surveys: Vec<_> = seen
            .iter()
            .filter(|(k, _)| k.starts_with("survey"))
            .collect();
        assert_eq!(surveys.len(), 2);
        for (key, (count, body)) in &surveys {
            assert!(
                *key == &format!("survey:{}", first + 1)
                    || *key == &format!("survey:{}", first + 2)
            );
            assert_eq!(*count, 1);
            assert_eq!(body["to"], PHONE);
            assert_eq!(
                body["text"],
                "از خرید خود راضی بودید؟ لطفاً با عددی از ۱ تا ۵ پاسخ دهید. نظرتان را هم بنویسید."
            );
        }
    }
    let (a, b): (i64, i64) =
        sqlx::query_as("SELECT min(id), max(id) FROM survey_requests WHERE state = 'sent'")
            .fetch_one(pool)
            .await
            .unwrap();

    // A score with a comment, in Persian digits: the latest survey (B) takes it, once.
    let (status, value) = reply(&harness, "gw-1", PHONE, "۴ قهوه عالی بود").await;
    assert_eq!(
        (status, &value["outcome"], &value["duplicate"]),
        (200, &json!("answered"), &json!(false))
    );
    let stored: (i64, i64, i64, i64, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT s.request_id, s.member_id, s.merchant_id, s.txn_id, s.score, s.comment FROM survey_responses s")
        .fetch_one(pool).await.unwrap();
    let member = harness
        .scalar("SELECT id FROM members WHERE code = 'MB-1'")
        .await;
    let merchant = harness
        .scalar("SELECT id FROM merchants WHERE code = 'M-A'")
        .await;
    assert_eq!(
        stored,
        (
            b,
            member,
            merchant,
            first + 2,
            Some(4),
            Some("قهوه عالی بود".to_owned())
        )
    );
    // The same message again: 200, a duplicate, nothing changes.
    let before = survey_state(&harness).await;
    let (status, value) = reply(&harness, "gw-1", PHONE, "۴ قهوه عالی بود").await;
    assert_eq!(
        (status, &value["outcome"], &value["duplicate"]),
        (200, &json!("answered"), &json!(true))
    );
    // Even with another text under the same id.
    let (status, value) = reply(&harness, "gw-1", PHONE, "1").await;
    assert_eq!((status, &value["duplicate"]), (200, &json!(true)));
    assert_eq!(survey_state(&harness).await, before);

    // An unparseable reply goes to the other open survey (A): one clarifying SMS.
    let (_, value) = reply(&harness, "gw-2", PHONE, "great").await;
    assert_eq!(
        (&value["outcome"], &value["accepted"]),
        (&json!("clarify"), &json!(true))
    );
    let clarify = format!("survey-clarify:{a}");
    harness.wait_for(UNDELIVERED, 0).await;
    assert_eq!(seen.lock().unwrap()[&clarify].1["text"],
        "متأسفیم، پاسخ شما را متوجه نشدیم. لطفاً با عددی از ۱ تا ۵ پاسخ دهید. می‌توانید پس از عدد، نظرتان را هم بنویسید.");
    let before = survey_state(&harness).await;
    assert_eq!(
        reply(&harness, "gw-2", PHONE, "great").await.1["duplicate"],
        true
    );
    assert_eq!(survey_state(&harness).await, before);
    // The second unparseable one is stored as unparsed; no second clarifying SMS.
    let (_, value) = reply(&harness, "gw-3", PHONE, "7 stars").await;
    assert_eq!(value["outcome"], "unparsed");
    let unparsed: (i64, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT request_id, score, unparsed_text FROM survey_responses WHERE score IS NULL",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(unparsed, (a, None, Some("7 stars".to_owned())));
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM notifications WHERE kind = 'survey_clarify'")
            .await,
        1
    );
    // Nothing is open now: a further reply, or one from another phone, is unmatched.
    let before = survey_state(&harness).await;
    let (_, value) = reply(&harness, "gw-4", PHONE, "5").await;
    assert_eq!(value["outcome"], "unmatched");
    let (_, value) = reply(&harness, "gw-5", "+989350000000", "5").await;
    assert_eq!(value["outcome"], "unmatched");
    let after = survey_state(&harness).await;
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("gw-4") && !l.starts_with("gw-5"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        strip(&after),
        strip(&before),
        "only the unmatched messages were recorded"
    );
    assert_eq!(
        harness
            .scalar(
                "SELECT count(*) FROM sms_inbound WHERE body IS NOT NULL AND outcome = 'unmatched'"
            )
            .await,
        0
    );
    let masked: String =
        sqlx::query_scalar("SELECT phone_masked FROM sms_inbound WHERE message_id = 'gw-5'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(masked, "+98********00");

    // A month later the cap has room again: a new survey (C), answered too late.
    harness.clock.advance(31 * DAY_MS);
    confirmed(&harness, &mut client, &mut t).await;
    harness.clock.advance(31 * MINUTE_MS);
    harness
        .wait_for(
            "SELECT count(*) FROM survey_requests WHERE state = 'sent'",
            1,
        )
        .await;
    harness.wait_for(UNDELIVERED, 0).await;
    harness.clock.advance(3 * DAY_MS + MINUTE_MS);
    let before = survey_state(&harness).await;
    let (status, value) = reply(&harness, "gw-6", PHONE, "5").await;
    assert_eq!(
        (status, &value["outcome"], &value["accepted"]),
        (200, &json!("late"), &json!(false))
    );
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with("gw-6"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&survey_state(&harness).await), strip(&before));

    // The report: the first day has A and B sent (and the capped one), one answered, one
    // unparsed; the whole period adds C, sent and unanswered.
    let (status, value) = call(
        &harness,
        &reader,
        "GET",
        "/api/v1/reports/surveys?merchant=M-A&from=2026-11-22&to=2026-11-22",
        None,
    )
    .await;
    assert_eq!(status, 200, "{value}");
    let report = &value["survey_report"];
    assert_eq!(report["sent"], 2);
    assert_eq!(report["answered"], 1);
    assert_eq!(report["unparsed"], 1);
    assert_eq!(report["capped"], 1);
    assert_eq!(report["response_rate"], "0.5000");
    assert_eq!(report["average_score"], "4.00");
    assert_eq!(
        report["distribution"],
        json!([
            {"score": 1, "count": 0}, {"score": 2, "count": 0}, {"score": 3, "count": 0},
            {"score": 4, "count": 1}, {"score": 5, "count": 0}
        ])
    );
    assert_eq!(report["recent_comments"].as_array().unwrap().len(), 1);
    assert_eq!(report["recent_comments"][0]["score"], 4);
    assert_eq!(report["recent_comments"][0]["comment"], "قهوه عالی بود");
    let (_, value) = call(
        &harness,
        &reader,
        "GET",
        "/api/v1/reports/surveys?merchant=M-A",
        None,
    )
    .await;
    let report = &value["survey_report"];
    assert_eq!(
        (
            &report["sent"],
            &report["answered"],
            &report["response_rate"]
        ),
        (&json!(3), &json!(1), &json!("0.3333"))
    );
    let (_, value) = call(
        &harness,
        &reader,
        "GET",
        "/api/v1/reports/surveys?merchant=M-A&from=2026-12-01",
        None,
    )
    .await;
    let report = &value["survey_report"];
    assert_eq!(
        (
            &report["sent"],
            &report["response_rate"],
            &report["average_score"]
        ),
        (&json!(1), &json!("0.0000"), &Value::Null)
    );
    // CSV: the same numbers.
    let csv = raw_get(
        &harness,
        &reader,
        "/api/v1/reports/surveys?merchant=M-A&from=2026-11-22&to=2026-11-22&format=csv",
    )
    .await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "section,name,value,comment");
    assert!(lines.contains(&"summary,sent,2,"), "{csv}");
    assert!(lines.contains(&"summary,response_rate,0.5000,"), "{csv}");
    assert!(lines.contains(&"summary,average_score,4.00,"), "{csv}");
    assert!(lines.contains(&"distribution,4,1,"), "{csv}");
    assert!(
        lines.last().unwrap().starts_with("comment,2026-11-2"),
        "{csv}"
    );
    assert!(lines.last().unwrap().ends_with(",4,قهوه عالی بود"), "{csv}");
    // Bad queries are refused.
    for query in [
        "",
        "merchant=M-NONE",
        "merchant=M-A&from=2026-13-01",
        "merchant=M-A&format=xml",
        "merchant=M-A&from=2026-11-23&to=2026-11-22",
    ] {
        let (status, _) = call(
            &harness,
            &reader,
            "GET",
            &format!("/api/v1/reports/surveys?{query}"),
            None,
        )
        .await;
        assert!(status == 422 || status == 404, "{query}: {status}");
    }
    // Each survey SMS went out once.
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("survey"))
        .all(|(_, (n, _))| *n == 1));
}

async fn raw_get(harness: &Harness, token: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(harness.running().admin_addr)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/csv"),
        "{head}"
    );
    body.to_owned()
}

/// Without a configured secret the webhook answers 503 and stores nothing, signed or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_unavailable_without_its_secret() {
    let (url, _) = sms_gateway().await;
    let harness = Harness::start_with(Db::Sqlite, with_gateway(url, false)).await;
    let body = json!({"message_id": "gw-1", "from": PHONE, "text": "5"}).to_string();
    let (status, value) = post_inbound(&harness, &body, Some(&sign(&body))).await;
    assert_eq!(status, 503);
    assert!(value["error"].is_string());
    assert_eq!(harness.scalar("SELECT count(*) FROM sms_inbound").await, 0);
}

on_both!(surveys_end_to_end);
