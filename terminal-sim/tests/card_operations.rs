//! Goal: `POST /api/v1/card-operations` blocks, unblocks and renews a list of cards from a
//! file, reports each line done, unchanged or refused (with its line number), makes the
//! changes live for the next purchase over TCP, audits each card, and is idempotent by its key:
//! the same key and file answer the stored report and change nothing, another file under the
//! same key is refused.
//!
//! Method: the in-process switch of `common::Harness`, a write token made with the library call
//! `lsw-switch token add` uses, and plain HTTP/1.1 over TCP with a text body; purchases go
//! through `terminal_sim::client` as a terminal's would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::Value;
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;

/// One POST of the file `body`: status, the `idempotent-replayed` header, and the JSON body.
async fn post(
    harness: &Harness,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, bool, Value) {
    let admin = harness.running().admin_addr;
    admin_request(admin, "POST", path, token, key, Some(body)).await
}

fn check(report: &Value, done: u64, unchanged: u64, refusals: &[(u64, &str, &str)]) {
    assert_eq!(report["done"], done, "{report}");
    assert_eq!(report["unchanged"], unchanged, "{report}");
    assert_eq!(
        report["refused"],
        u64::try_from(refusals.len()).unwrap(),
        "{report}"
    );
    let listed: Vec<(u64, String, String)> = report["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let wanted: Vec<(u64, String, String)> = refusals
        .iter()
        .map(|(line, code, reason)| (*line, (*code).to_owned(), (*reason).to_owned()))
        .collect();
    assert_eq!(listed, wanted, "{report}");
}

#[tokio::test]
async fn a_file_of_cards_is_blocked_renewed_and_reported_once() {
    let harness = Harness::start().await;
    let pool = harness.pool().await;
    let token = auth::add_token(pool, "ops-alice", Role::Write, UnixMillis::new(START_MS))
        .await
        .unwrap();
    let block = "/api/v1/card-operations?action=block";
    let file = "# stolen cards, batch 7\nC-RICH\n\nC-BLOCKED\nC-NONE\nC-RICH\n6037991111111112\nC-POOR,2030-01\n";
    let (status, replayed, report) = post(&harness, &token, block, Some("batch-7"), file).await;
    assert_eq!(status, 201, "{report}");
    assert!(!replayed);
    check(
        &report,
        1,
        1,
        &[
            (5, "C-NONE", "no card has this code"),
            (6, "C-RICH", "the card is named on an earlier line"),
            (7, "", "looks like a card number; give the card's code"),
            (8, "C-POOR", "only a code is expected"),
        ],
    );
    assert!(
        !report.to_string().contains("6037991111111112"),
        "a card number is never echoed: {report}"
    );

    // Live for the next purchase.
    let mut client = harness.client().await;
    let mut counter = counter();
    let at = harness.now_seconds();
    let (_, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::CardBlocked);
    assert_eq!(
        harness
            .scalar(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'block' AND resource_code = 'C-RICH'"
            )
            .await,
        1
    );

    // The same key and file: the same report, nothing more changed or audited.
    let (status, replayed, again) = post(&harness, &token, block, Some("batch-7"), file).await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, report);
    assert_eq!(
        harness
            .scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'block'")
            .await,
        1
    );
    // The same key with another file or action is refused and changes nothing.
    let (status, _, _) = post(&harness, &token, block, Some("batch-7"), "C-POOR\n").await;
    assert_eq!(status, 409);
    let unblock = "/api/v1/card-operations?action=unblock";
    let (status, _, _) = post(&harness, &token, unblock, Some("batch-7"), file).await;
    assert_eq!(status, 409);
    assert_eq!(
        harness
            .scalar("SELECT COUNT(*) FROM cards WHERE status = 'blocked'")
            .await,
        2
    );

    // Unblock under a new key: the purchase is approved again.
    let (status, _, report) = post(&harness, &token, unblock, Some("batch-8"), "C-RICH\n").await;
    assert_eq!(status, 201, "{report}");
    check(&report, 1, 0, &[]);
    let (_, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved);

    // Renewals: later, the same, earlier, malformed, missing.
    let renew = "/api/v1/card-operations?action=renew";
    let file = "C-POOR,2101-01\nC-RICH,2099-12\nC-BLOCKED,2098-01\nC-EXPIRED,soon\nC-RICH\n";
    let (status, _, report) = post(&harness, &token, renew, Some("renew-1"), file).await;
    assert_eq!(status, 201, "{report}");
    check(
        &report,
        1,
        1,
        &[
            (3, "C-BLOCKED", "must be after the current expiry"),
            (4, "C-EXPIRED", "expiry must be a month YYYY-MM"),
            (5, "C-RICH", "a renewal needs code,YYYY-MM"),
        ],
    );
    assert_eq!(
        harness
            .scalar("SELECT expiry_year FROM cards WHERE code = 'C-POOR'")
            .await,
        2101
    );
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let harness = Harness::start().await;
    let pool = harness.pool().await;
    let now = UnixMillis::new(START_MS);
    let writer = auth::add_token(pool, "ops-alice", Role::Write, now)
        .await
        .unwrap();
    let reader = auth::add_token(pool, "finance-bob", Role::Read, now)
        .await
        .unwrap();
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        (
            &writer,
            "/api/v1/card-operations?action=burn",
            Some("k1"),
            422,
        ),
        (&writer, "/api/v1/card-operations", Some("k2"), 422),
        (&writer, "/api/v1/card-operations?action=block", None, 422),
        (
            &reader,
            "/api/v1/card-operations?action=block",
            Some("k3"),
            403,
        ),
    ];
    for (token, path, key, expected) in cases {
        let (status, _, body) = post(&harness, token, path, *key, "C-RICH\n").await;
        assert_eq!(status, *expected, "{path} {key:?}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, _, body) = post(
        &harness,
        &writer,
        "/api/v1/card-operations?action=block",
        Some("k5"),
        "\n  \n",
    )
    .await;
    assert_eq!(status, 422, "an empty file: {body}");
    let (status, _, body) = post(
        &harness,
        &writer,
        "/api/v1/card-operations?action=block&action=unblock",
        Some("k6"),
        "C-RICH\n",
    )
    .await;
    assert_eq!(status, 422, "action twice: {body}");
    let lines = "C-RICH\n".repeat(100_001);
    let (status, _, body) = post(
        &harness,
        &writer,
        "/api/v1/card-operations?action=block",
        Some("k4"),
        &lines,
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        harness
            .scalar("SELECT COUNT(*) FROM cards WHERE status = 'blocked'")
            .await,
        1,
        "only the network's own blocked card"
    );
}
