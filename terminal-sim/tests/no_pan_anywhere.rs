//! Goal: no card number of a run appears in clear in any log line, database table or file the
//! switch wrote, and no key or operator token is logged (docs/design.md section 8, docs/style.md section
//! 8). And the demo's summary tells the truth: its loyalty section (tier promotions, cashback,
//! coupons, messages) is not zero and agrees with the database it was read from, and so does
//! its member-engagement section (a survey SMS answered once, its duplicate ignored).
//!
//! Method: run the demo (generated network, in-process switch, coupons issued over the
//! operator API, seconds of mixed traffic) with every log line at TRACE level captured, then
//! search the captured logs, the database file and its WAL, and every other file in the run's
//! folder, for each PAN of the network (as digits, and as its hex), for the TMKs, for the
//! key-encryption and PAN-token keys, and the logs for anything shaped like an operator token.
//! The network file itself is the operator's input and holds the PANs by design; it is the one
//! file skipped. Then count the loyalty and survey tables again with queries of their own and
//! compare.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use terminal_sim::demo::{self, DemoConfig};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every needle found in `haystack`, by sliding one window per distinct needle length: linear
/// in the haystack for any number of needles.
fn found<'n>(haystack: &[u8], needles: &'n HashMap<Vec<u8>, String>) -> Vec<&'n String> {
    let lengths: HashSet<usize> = needles.keys().map(Vec::len).collect();
    let mut hits = Vec::new();
    for length in lengths {
        for window in haystack.windows(length) {
            if let Some(what) = needles.get(window) {
                hits.push(what);
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pan_or_key_in_logs_database_or_files() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let outcome = demo::run(DemoConfig {
        seconds: 2,
        connections: 4,
        dir: dir.path().to_path_buf(),
        seed: 7,
    })
    .await
    .unwrap();
    assert!(outcome.load.pairs > 0, "the run did some work");
    assert!(
        outcome.failed_checks.is_empty(),
        "{:?}",
        outcome.failed_checks
    );

    let network: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("network.json")).unwrap())
            .unwrap();
    let pans: Vec<String> = network["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["pan"].as_str().unwrap().to_string())
        .collect();
    let tmks: Vec<Vec<u8>> = network["terminals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| hex::decode(t["tmk_hex"].as_str().unwrap()).unwrap())
        .collect();
    let keys = [hex::encode([0x5a_u8; 32]), hex::encode([0xa5_u8; 32])];

    let logs = capture.0.lock().unwrap().clone();
    assert!(
        logs.len() > 1000,
        "logs were captured ({} bytes)",
        logs.len()
    );
    let mut files: Vec<(String, Vec<u8>)> = vec![("captured logs".into(), logs)];
    let mut folders = vec![dir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.file_name().is_none_or(|name| name != "network.json") {
                // Journal segments are written with zeros before use: the zeros after the last
                // byte written hold nothing and would only slow the search.
                let mut bytes = std::fs::read(&path).unwrap();
                let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |at| at + 1);
                bytes.truncate(used);
                files.push((path.display().to_string(), bytes));
            }
        }
    }
    assert!(
        files.iter().any(|(name, _)| name.ends_with("lsw.db")),
        "the database was scanned"
    );
    assert!(
        files
            .iter()
            .any(|(name, bytes)| name.ends_with(".seg") && !bytes.is_empty()),
        "the journal was scanned"
    );
    assert!(
        files.iter().any(|(name, _)| name.ends_with("payout.csv")),
        "the settlement files were scanned"
    );
    let mut needles: HashMap<Vec<u8>, String> = HashMap::new();
    for (index, pan) in pans.iter().enumerate() {
        needles.insert(pan.as_bytes().to_vec(), format!("PAN #{index} in clear"));
        needles.insert(
            hex::encode(pan).into_bytes(),
            format!("PAN #{index} in hex"),
        );
    }
    for (index, tmk) in tmks.iter().enumerate() {
        needles.insert(tmk.clone(), format!("TMK #{index}"));
        needles.insert(
            hex::encode(tmk).into_bytes(),
            format!("TMK #{index} in hex"),
        );
    }
    for key in &keys {
        needles.insert(key.clone().into_bytes(), "a switch key".to_string());
    }
    for (name, bytes) in &files {
        let hits = found(bytes, &needles);
        assert!(hits.is_empty(), "{name} holds {hits:?}");
    }
    // The scan itself finds what it looks for.
    let planted = format!("xx{}yy", pans[0]);
    assert_eq!(found(planted.as_bytes(), &needles).len(), 1);
    assert_eq!(tokens(&files[0].1), 0, "an operator token was logged");
    assert_eq!(tokens(format!("a lsw_{} b", "0f".repeat(32)).as_bytes()), 1);

    summary_agrees_with_the_database(&outcome, &dir.path().join("lsw.db")).await;
}

/// Operator tokens (`lsw_` and 64 hex digits) in `bytes`.
fn tokens(bytes: &[u8]) -> usize {
    bytes
        .windows(4 + 64)
        .filter(|w| w.starts_with(b"lsw_") && w[4..].iter().all(u8::is_ascii_hexdigit))
        .count()
}

async fn summary_agrees_with_the_database(outcome: &demo::DemoOutcome, db: &std::path::Path) {
    let loyalty = &outcome.loyalty;
    assert!(loyalty.promotions > 0, "{loyalty:?}");
    assert!(loyalty.cashback_lots > 0, "{loyalty:?}");
    assert!(loyalty.coupons_used > 0, "{loyalty:?}");
    assert!(loyalty.coupon_rials > 0, "{loyalty:?}");
    assert!(loyalty.tier_messages > 0, "{loyalty:?}");
    // The operator API's coupons and the campaign's.
    assert_eq!(
        i64::try_from(outcome.coupons_created).unwrap() + outcome.campaign.coupons,
        loyalty.coupons_issued
    );
    let pool = switch::store::connect(&format!("sqlite://{}", db.display()), 1, "")
        .await
        .unwrap();
    let scalar = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let sum = |counts: &[(String, i64)]| counts.iter().map(|(_, n)| n).sum::<i64>();
    let table = [
        (
            "tier changes",
            loyalty.promotions + loyalty.demotions,
            scalar("SELECT count(*) FROM tier_changes").await,
        ),
        (
            "promotions by tier",
            loyalty.promotions,
            sum(&loyalty.promoted_to),
        ),
        (
            "members by tier",
            sum(&loyalty.members_by_tier),
            scalar("SELECT count(*) FROM members").await,
        ),
        (
            "cashback lots",
            loyalty.cashback_lots,
            scalar("SELECT count(*) FROM transactions WHERE state = 'confirmed' AND cashback_rials > 0").await,
        ),
        // No confirmed purchase is reversed in the demo, so every lot is a confirmed purchase's.
        (
            "cashback rials",
            loyalty.cashback_rials,
            scalar("SELECT CAST(SUM(cashback_rials) AS BIGINT) FROM transactions WHERE state = 'confirmed'").await,
        ),
        (
            "coupons used",
            loyalty.coupons_used,
            scalar("SELECT count(*) FROM coupons WHERE state = 'used'").await,
        ),
        (
            "coupons by state",
            loyalty.coupons_issued,
            loyalty.coupons_used + loyalty.coupons_held + loyalty.coupons_available,
        ),
        (
            "tier messages",
            loyalty.tier_messages,
            scalar("SELECT count(*) FROM tier_changes c JOIN members m ON m.id = c.member_id WHERE m.phone IS NOT NULL").await,
        ),
        (
            "coupon messages",
            loyalty.coupon_messages,
            // The campaign's own SMS, not a coupon notice, is its members' message.
            scalar("SELECT count(*) FROM coupons c JOIN members m ON m.id = c.member_id WHERE m.phone IS NOT NULL AND c.idempotency_key NOT LIKE 'campaign:%'").await,
        ),
    ];
    for (what, summary, database) in table {
        assert_eq!(summary, database, "{what}");
    }
    // Member engagement: one survey answered, once, with the score the reply gave; the
    // repeated reply stored nothing more; every survey SMS the gateway received was queued
    // by the scheduler.
    let survey = &outcome.survey;
    assert_eq!(survey.outcome, "answered", "{survey:?}");
    assert!(survey.duplicate_ignored, "{survey:?}");
    assert!(survey.sent > 0, "{survey:?}");
    assert_eq!(scalar("SELECT count(*) FROM sms_inbound").await, 1);
    assert_eq!(
        scalar("SELECT count(*) FROM survey_responses WHERE score = 5").await,
        1
    );
    assert_eq!(
        scalar("SELECT count(*) FROM survey_requests WHERE state = 'answered'").await,
        1
    );
    let queued = scalar("SELECT count(*) FROM notifications WHERE kind = 'survey'").await;
    assert!(
        i64::try_from(survey.sent).unwrap() <= queued,
        "{survey:?}, {queued} queued"
    );
    assert!(outcome.sms_received >= survey.sent);
    // The online top-up: the forged callback refused, the signed one credited once, the repeat
    // a duplicate; the card's club movements show the credit once.
    let top_up = &outcome.top_up;
    assert_eq!(
        (
            top_up.forged_status,
            top_up.outcome.as_str(),
            top_up.repeat_outcome.as_str()
        ),
        (401, "accepted", "duplicate"),
        "{top_up:?}"
    );
    let engagement = [
        ("paid orders", 1, scalar("SELECT count(*) FROM top_up_orders WHERE state = 'paid'").await),
        (
            "top-up movements",
            top_up.amount_rials,
            scalar("SELECT CAST(SUM(delta_rials) AS BIGINT) FROM balance_movements WHERE kind = 'top_up'").await,
        ),
        ("callbacks recorded", 3, scalar("SELECT count(*) FROM top_up_callbacks").await),
        // The campaign: every member the preview counted reached once, with one coupon and one
        // SMS each (members without a phone get none); the second run reached nobody.
        ("campaign reached", outcome.campaign.previewed, outcome.campaign.reached),
        ("campaign rerun", 0, outcome.campaign.rerun_reached),
        (
            "campaign members",
            outcome.campaign.reached,
            scalar("SELECT count(*) FROM campaign_members").await,
        ),
        (
            "campaign coupons",
            outcome.campaign.coupons,
            scalar("SELECT count(*) FROM coupons WHERE idempotency_key LIKE 'campaign:DEMO-WEEK:%'").await,
        ),
        (
            "campaign SMS",
            outcome.campaign.messages,
            scalar("SELECT count(*) FROM notifications WHERE idempotency_key LIKE 'campaign:DEMO-WEEK:%'").await,
        ),
        (
            "campaign SMS to members with a phone",
            outcome.campaign.messages,
            scalar("SELECT count(*) FROM campaign_members c JOIN members m ON m.id = c.member_id WHERE m.phone IS NOT NULL").await,
        ),
        (
            "campaign coupons redeemed",
            outcome.campaign.redeemed,
            scalar("SELECT count(*) FROM coupons k JOIN transactions t ON t.id = k.txn_id WHERE k.idempotency_key LIKE 'campaign:%' AND k.state = 'used' AND t.state = 'confirmed'").await,
        ),
    ];
    for (what, summary, database) in engagement {
        assert_eq!(summary, database, "{what}");
    }
    assert!(outcome.campaign.reached > 0 && outcome.campaign.coupons == outcome.campaign.reached);
    pool.close().await;
}
