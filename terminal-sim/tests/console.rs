//! The operator console (docs/console.md).
//!
//! `explanations_add_up_after_the_rule_is_edited`: purchases priced over TCP, the rule that
//! priced them then edited through the API; every transaction's explanation still names the
//! terms that priced it and adds up to the amounts answered on the wire.
//!
//! `console_in_a_browser`: a real headless Chromium driven by Playwright
//! (`tests/browser/console.py`) signs in, finds a purchase the simulator made over TCP by its
//! RRN and checks the explanation against the amounts on the wire, blocks the card (the next
//! purchase over TCP is declined `62`), and checks the read role, CSRF, the merchant role and
//! the Persian dashboard. Screenshots go to `$CARGO_TARGET_TMPDIR/console-browser/`. It needs
//! `python3` with `playwright` and `/usr/bin/chromium` (`.ci/run` installs them); without
//! them it says so and passes, unless `LSW_BROWSER_TESTS=required`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use protocol::field54::AmountKind;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::{json, Value};
use switch::clock::Clock as _;
use switch::console::i18n::Locale;

/// The six amounts of field 54 as the explanation names them.
fn wire(response: &protocol::response::Response, gross: u64) -> Value {
    let a = |kind| i64::try_from(amount(response, kind)).unwrap();
    json!({
        "gross_rials": gross,
        "discount_rials": a(AmountKind::Discount),
        "fee_rials": a(AmountKind::MerchantFee),
        "store_credit_rials": a(AmountKind::StoreCreditUsed),
        "club_rials": a(AmountKind::ClubUsed),
        "bank_rest_rials": a(AmountKind::BankRest),
        "cashback_rials": a(AmountKind::Cashback),
    })
}

async fn add(
    h: &Harness,
    name: &str,
    role: &str,
    merchant: Option<&str>,
    locale: Locale,
) -> String {
    switch::console::session::add_operator(
        &h.running().pool,
        name,
        role,
        merchant,
        locale,
        Some("correct horse battery"),
        switch::domain::UnixMillis::new(START_MS),
    )
    .await
    .unwrap()
}

async fn explanation(h: &Harness, token: &str, id: i64) -> Value {
    let path = format!("/api/v1/transactions/{id}/explanation");
    let (status, _, body) =
        admin_request(h.running().admin_addr, "GET", &path, token, None, None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn txn_id(h: &Harness, rrn: &str) -> i64 {
    h.scalar(&format!("SELECT id FROM transactions WHERE rrn = '{rrn}'"))
        .await
}

on_both!(explanations_add_up_after_the_rule_is_edited);

async fn explanations_add_up_after_the_rule_is_edited(db: Db) {
    let h = Harness::start_on(db).await;
    let token = add(&h, "ops", "write", None, Locale::En).await;
    let mut client = h.client().await;
    let mut counter = counter();
    let at = h.now_seconds();
    let mut priced = Vec::new();
    for (code, gross) in [
        (ProcessingCode::BankPurchase, 100_000_u64),
        (ProcessingCode::BankPurchase, 3_000_000),
        (ProcessingCode::ClubPurchase, 250_000),
        (ProcessingCode::BankPurchase, 7_777),
    ] {
        let (out, response) = purchase(&mut client, &mut counter, code, gross, RICH, at).await;
        assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
        let rrn = response.rrn.unwrap();
        if gross == 100_000 {
            let confirm = counter.confirm(&out, rrn, at).unwrap();
            exchange(&mut client, &counter, &confirm).await;
        }
        priced.push((rrn.as_str().to_owned(), wire(&response, gross)));
    }
    // The rule that priced them, edited in place: 10% becomes 25% with another cap; the fee
    // and the tier's rate change too.
    let rule = json!({"code": "R-10", "name": "25% at shops", "percent": "25",
        "discount_rials_max": 50000, "merchant_groups": ["shops"]});
    let (status, _, body) = admin_request(
        h.running().admin_addr,
        "PUT",
        "/api/v1/rules/R-10",
        &token,
        None,
        Some(&rule.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, _, mut merchant) = admin_request(
        h.running().admin_addr,
        "GET",
        "/api/v1/merchants/M-A",
        &token,
        None,
        None,
    )
    .await;
    merchant["fee_rate"] = json!("3");
    let (status, _, body) = admin_request(
        h.running().admin_addr,
        "PUT",
        "/api/v1/merchants/M-A",
        &token,
        None,
        Some(&merchant.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let tier = json!({"code": "silver", "name": "Silver", "cashback_rate": "7"});
    let (status, _, body) = admin_request(
        h.running().admin_addr,
        "PUT",
        "/api/v1/tiers/silver",
        &token,
        None,
        Some(&tier.to_string()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for (rrn, wire) in &priced {
        let id = txn_id(&h, rrn).await;
        let x = explanation(&h, &token, id).await;
        assert_eq!(x["adds_up"], json!(true), "{x}");
        for key in [
            "gross_rials",
            "discount_rials",
            "fee_rials",
            "store_credit_rials",
            "club_rials",
            "bank_rest_rials",
            "cashback_rials",
        ] {
            assert_eq!(x[key], wire[key], "{key} of {rrn}: {x}");
        }
        let rule_part = x["rule"]["gives_rials"].as_i64().unwrap_or(0);
        let coupon_part = x["coupon"]["gives_rials"].as_i64().unwrap_or(0);
        assert_eq!(
            json!(rule_part + coupon_part),
            wire["discount_rials"],
            "{x}"
        );
        assert_eq!(x["fee"]["gives_rials"], wire["fee_rials"], "{x}");
        assert_eq!(x["cashback_gives_rials"], wire["cashback_rials"], "{x}");
        assert_eq!(
            x["rule"]["percent"],
            json!("10"),
            "the terms that priced it: {x}"
        );
        assert_eq!(x["fee"]["rate"], json!("1.5"), "{x}");
        assert_eq!(x["tier"]["cashback_rate"], json!("2"), "{x}");
    }
    // A purchase after the edit is explained by the new terms.
    let (_, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        100_000,
        RICH,
        at,
    )
    .await;
    let rrn = response.rrn.unwrap();
    let x = explanation(&h, &token, txn_id(&h, rrn.as_str()).await).await;
    assert_eq!(x["adds_up"], json!(true), "{x}");
    assert_eq!(x["rule"]["percent"], json!("25"), "{x}");
    assert_eq!(
        x["discount_rials"],
        wire(&response, 100_000)["discount_rials"],
        "{x}"
    );
}

fn browser_ready() -> bool {
    let chromium = std::path::Path::new("/usr/bin/chromium").exists();
    let playwright = std::process::Command::new("python3")
        .args(["-c", "import playwright"])
        .status()
        .is_ok_and(|s| s.success());
    if chromium && playwright {
        return true;
    }
    assert!(
        std::env::var("LSW_BROWSER_TESTS").as_deref() != Ok("required"),
        "LSW_BROWSER_TESTS=required but chromium ({chromium}) or playwright ({playwright}) is missing"
    );
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    writeln!(
        stderr,
        "skipped: /usr/bin/chromium or python3's playwright is missing"
    )
    .unwrap();
    false
}

/// Runs one phase of `tests/browser/console.py` with `args` (JSON) and fails with its output.
async fn phase(name: &str, args: &Value) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/console.py");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser");
    std::fs::create_dir_all(&shots).unwrap();
    let (name_arg, args_arg) = (name.to_owned(), args.to_string());
    // The switch runs on this runtime's threads while the browser talks to it.
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(name_arg)
            .arg(args_arg)
            .arg(&shots)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "phase {name}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_a_browser() {
    if !browser_ready() {
        return;
    }
    let h = Harness::start().await;
    let token = add(&h, "ops", "write", None, Locale::En).await;
    add(&h, "viewer", "read", None, Locale::En).await;
    add(&h, "shop-off", "merchant", Some("M-OFF"), Locale::En).await;
    add(&h, "persian", "read", None, Locale::Fa).await;
    let mut client = h.client().await;
    let mut counter = counter();
    let at = h.now_seconds();
    let (out, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        1_234_567,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved);
    let rrn = response.rrn.unwrap();
    let confirm = counter.confirm(&out, rrn, at).unwrap();
    exchange(&mut client, &counter, &confirm).await;
    h.running().wait_projected().await;
    let id = txn_id(&h, rrn.as_str()).await;
    let (today, _) = switch::console::i18n::tehran(START_MS);
    let args = json!({
        "base": format!("http://{}", h.running().admin_addr),
        "token": token,
        "password": "correct horse battery",
        "rrn": rrn.as_str(),
        "txn": id,
        "wire": wire(&response, 1_234_567),
        "card": "C-RICH",
        // 2026-11-22 is 1 Azar 1405 (checked against a known conversion in i18n's tests).
        "jalali": switch::console::i18n::persian_digits(&switch::console::i18n::jalali_date(today)),
    });
    assert_eq!(args["jalali"], json!("۱۴۰۵/۰۹/۰۱"));
    phase("operate", &args).await;
    // The card the browser blocked: its next purchase over TCP is declined 62.
    let (_, declined) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(declined.code, ResponseCode::CardBlocked, "{declined:?}");
    let audited = h
        .scalar(
            "SELECT COUNT(*) FROM audit_log WHERE operator = 'ops' AND resource_code = 'C-RICH'",
        )
        .await;
    assert_eq!(audited, 1);
    phase("roles", &args).await;
}

/// The log lines written while the tests of this file run (the switch runs in process).
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Five failed sign-ins for a name refuse the sixth (429, even with the right password, which
/// is not checked) until fifteen minutes have passed; five failures from one address refuse
/// every name and token from it; the refusals are logged, the passwords never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_is_refused_after_five_failures() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();
    let h = Harness::start().await;
    add(&h, "ops", "write", None, Locale::En).await;
    let viewer_token = add(&h, "viewer", "read", None, Locale::En).await;
    let mut web = web::Web::new(h.running().admin_addr);
    const RIGHT: &str = "correct horse battery";
    const WRONG: &str = "wrong-password-guess";
    // Five wrong passwords for ops, each from another address (a proxy on this host says so).
    for i in 1..=5 {
        web.forwarded_for = Some(format!("10.0.0.{i}"));
        let answer = web
            .sign_in_with(&[("name", "ops"), ("password", WRONG)])
            .await;
        assert_eq!(answer.status, 401, "failure {i}: {answer:?}");
        assert!(answer.body.contains("Wrong name, password or token."));
    }
    // The sixth, with the right password and from a fresh address: refused unchecked.
    web.forwarded_for = Some("10.0.0.99".to_owned());
    let refused = web
        .sign_in_with(&[("name", "ops"), ("password", RIGHT)])
        .await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!(
        refused.body.contains("Too many failed sign-ins"),
        "{refused:?}"
    );
    assert!(
        refused.body.contains("Try again in 15 minutes"),
        "{refused:?}"
    );
    assert_eq!(refused.header("retry-after"), Some("900"));
    assert!(!web.cookies.iter().any(|(k, _)| k == "lsw_console"));
    // Another operator from the same address is not refused.
    web.sign_in("viewer", RIGHT).await;
    web.cookies.clear();

    // Five failures from one address, for names that do not exist and a wrong token.
    web.forwarded_for = Some("10.0.0.50".to_owned());
    for name in ["a", "b", "c", "d"] {
        let answer = web
            .sign_in_with(&[("name", name), ("password", WRONG)])
            .await;
        assert_eq!(answer.status, 401, "{answer:?}");
    }
    let answer = web.sign_in_with(&[("token", "not-a-token")]).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    let refused = web
        .sign_in_with(&[("name", "viewer"), ("password", RIGHT)])
        .await;
    assert_eq!(refused.status, 429, "{refused:?}");
    let refused = web.sign_in_with(&[("token", &viewer_token)]).await;
    assert_eq!(
        refused.status, 429,
        "a right token from that address: {refused:?}"
    );
    // Elsewhere the token works.
    web.forwarded_for = Some("10.0.0.51".to_owned());
    let answer = web.sign_in_with(&[("token", &viewer_token)]).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    web.cookies.clear();

    // Fifteen minutes after the first failures, ops signs in again.
    h.clock.advance(15 * 60_000);
    web.forwarded_for = Some("10.0.0.99".to_owned());
    web.sign_in("ops", RIGHT).await;
    assert_eq!(web.get("/console").await.status, 200);

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("console sign-in refused: too many failed sign-ins"))
        .collect();
    assert_eq!(refusals.len(), 3, "{logs}");
    assert!(
        refusals[0].contains("operator=\"ops\"") && refusals[0].contains("10.0.0.99"),
        "{}",
        refusals[0]
    );
    assert!(refusals[0].contains("by=\"name\""), "{}", refusals[0]);
    assert!(refusals[1].contains("by=\"address\""), "{}", refusals[1]);
    assert!(refusals[1].contains("10.0.0.50"));
    for secret in [RIGHT, WRONG, viewer_token.as_str(), "not-a-token"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}

/// The `data-rials` of `column` in the payouts row of `merchant`.
fn payout_cell(body: &str, merchant: &str, column: &str) -> i64 {
    let row = body
        .split(&format!("<tr data-merchant=\"{merchant}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no row of {merchant}"))
        .split("</tr>")
        .next()
        .unwrap();
    let cell = row
        .split("<td")
        .find(|cell| cell.contains(&format!("data-column=\"{column}\"")))
        .unwrap_or_else(|| panic!("no {column} in the row of {merchant}"));
    cell.split("data-rials=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

on_both!(settlement_screens);

/// A cycle closed by the settlement crate over club purchases at M-A and a manual adjustment
/// of M-OFF: the console lists it, shows every merchant's payout as stored, its exceptions
/// and a balanced reconciliation, and serves the very files `lsw-settle` wrote; a merchant
/// operator sees only their own line and files cut to it, and no reconciliation.
async fn settlement_screens(db: Db) {
    let h = Harness::start_on(db).await;
    add(&h, "ops", "write", None, Locale::En).await;
    add(&h, "shop-a", "merchant", Some("M-A"), Locale::En).await;
    add(&h, "shop-off", "merchant", Some("M-OFF"), Locale::En).await;
    let pool = h.running().pool.clone();
    let mut client = h.client().await;
    let mut counter = counter();
    let at = h.now_seconds();
    for gross in [200_000_u64, 90_000] {
        let (out, response) = purchase(
            &mut client,
            &mut counter,
            ProcessingCode::ClubPurchase,
            gross,
            RICH,
            at,
        )
        .await;
        assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
        let confirm = counter.confirm(&out, response.rrn.unwrap(), at).unwrap();
        exchange(&mut client, &counter, &confirm).await;
    }
    h.running().wait_projected().await;
    settlement::adjustment::add_manual(&pool, "M-OFF", -5_000, "chargeback", h.clock.now())
        .await
        .unwrap();
    // The cycle of 2026-11-22 closes at 23:30 Tehran, 20:00 UTC; the clock is at 18:30 UTC.
    h.clock.advance(2 * 3_600_000);
    let out_dir = h.dir.path().join("settlement");
    let settings = settlement::close::Settings {
        cutoff: settlement::cycle::Cutoff::DEFAULT,
        calendar: settlement::calendar::Calendar::fridays_only(),
        out_dir: out_dir.clone(),
        projection_wait: settlement::close::PROJECTION_WAIT_DEFAULT,
    };
    let date = switch::domain::CivilDate::parse("2026-11-22").unwrap();
    let closed = settlement::close::close(&pool, &settings, date, h.clock.now())
        .await
        .unwrap();
    let record = closed.cycle;
    let id = record.id;
    let line = |code: &str| {
        record
            .lines
            .iter()
            .find(|l| l.merchant_code == code)
            .unwrap()
            .clone()
    };
    let (a, off) = (line("M-A"), line("M-OFF"));
    assert!(
        a.amounts.payout > 0 && off.amounts.carried_out == -5_000,
        "{record:?}"
    );

    let mut web = web::Web::new(h.running().admin_addr);
    web.sign_in("ops", "correct horse battery").await;
    let list = web.get("/console/settlement").await;
    assert_eq!(list.status, 200);
    assert!(
        list.body.contains(&format!("data-cycle=\"{id}\"")),
        "{}",
        list.body
    );
    let page = web.get(&format!("/console/settlement/{id}")).await;
    assert_eq!(page.status, 200, "{page:?}");
    for line in [&a, &off] {
        for (column, stored) in [
            ("payout", line.amounts.payout),
            ("club", line.amounts.club),
            ("fee", line.amounts.fee),
            ("adjustments", line.amounts.adjustments),
            ("carried_out", line.amounts.carried_out),
        ] {
            let shown = payout_cell(&page.body, &line.merchant_code, column);
            assert_eq!(shown, stored, "{} {column}", line.merchant_code);
        }
    }
    assert!(
        page.body.contains("data-kind=\"receivable\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("chargeback"));
    // By its date too.
    assert_eq!(web.get("/console/settlement/2026-11-22").await.status, 200);
    assert_eq!(web.get("/console/settlement/2026-11-21").await.status, 404);
    let reconciliation = web
        .get_computed(&format!("/console/settlement/{id}/reconciliation"))
        .await;
    assert_eq!(reconciliation.status, 200);
    assert!(
        reconciliation.body.contains("id=\"balanced\""),
        "{}",
        reconciliation.body
    );
    assert!(!reconciliation.body.contains("DIFF"));
    // The files are the bytes lsw-settle wrote.
    let written = settlement::files::names(date);
    for (name, file) in ["payout.csv", "summary.json", "exceptions.csv"]
        .iter()
        .zip(&written)
    {
        let answer = web
            .get(&format!("/console/settlement/{id}/files/{name}"))
            .await;
        assert_eq!(answer.status, 200, "{name}");
        let on_disk = std::fs::read_to_string(out_dir.join(file)).unwrap();
        assert_eq!(answer.body, on_disk, "{name}");
        let disposition = answer.header("content-disposition").unwrap();
        assert!(disposition.contains(file.as_str()), "{disposition}");
    }
    assert_eq!(
        web.get(&format!("/console/settlement/{id}/files/other"))
            .await
            .status,
        404
    );

    // A merchant operator: their line only, files cut to it, no reconciliation.
    let mut shop = web::Web::new(h.running().admin_addr);
    shop.sign_in("shop-a", "correct horse battery").await;
    let list = shop.get("/console/settlement").await;
    assert!(list.body.contains(&format!("data-cycle=\"{id}\"")));
    let own = shop.get(&format!("/console/settlement/{id}")).await;
    assert_eq!(own.status, 200);
    assert_eq!(payout_cell(&own.body, "M-A", "payout"), a.amounts.payout);
    assert!(!own.body.contains("M-OFF"), "{}", own.body);
    assert!(!own.body.contains("chargeback"));
    let file = shop
        .get(&format!("/console/settlement/{id}/files/payout.csv"))
        .await;
    let cut = record.clone().of_merchant(a.merchant_id).unwrap();
    assert_eq!(file.body, settlement::files::payout_csv(&cut));
    assert!(!file.body.contains("M-OFF") && file.body.contains("TOTAL,1,"));
    let refused = shop
        .get(&format!("/console/settlement/{id}/reconciliation"))
        .await;
    assert_eq!(refused.status, 403);
    let mut other = web::Web::new(h.running().admin_addr);
    other.sign_in("shop-off", "correct horse battery").await;
    let theirs = other.get(&format!("/console/settlement/{id}")).await;
    assert_eq!(payout_cell(&theirs.body, "M-OFF", "carried_out"), -5_000);
    assert!(theirs.body.contains("data-kind=\"receivable\""));
    assert!(!theirs.body.contains("data-merchant=\"M-A\""));
}

/// The `data-value` of the bar labelled `label` in the SVG chart `id` (of `series` when given).
fn bar(body: &str, id: &str, label: &str, series: Option<&str>) -> i64 {
    let chart = body
        .split(&format!("id=\"{id}\""))
        .nth(1)
        .unwrap_or_else(|| panic!("no chart {id}"))
        .split("</svg>")
        .next()
        .unwrap();
    let wanted = match series {
        Some(series) => format!("data-label=\"{label}\" data-series=\"{series}\""),
        None => format!("data-label=\"{label}\""),
    };
    chart
        .split("<rect")
        .find(|rect| rect.contains(&wanted))
        .unwrap_or_else(|| panic!("no bar {label} in {id}: {chart}"))
        .split("data-value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The text of the `data-field` row `field` of a fields table.
fn field(body: &str, name: &str) -> String {
    body.split(&format!("<tr data-field=\"{name}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no field {name}"))
        .split("<td>")
        .nth(1)
        .unwrap()
        .split("</td>")
        .next()
        .unwrap()
        .to_owned()
}

on_both!(member_actions_charts_and_reports);

/// From a member's page a write operator tops up, grants store credit, renews and replaces
/// their cards and issues a coupon, each through the API's handler (audited, idempotent), with
/// the CSRF token; a reader and a forged form are refused. The loyalty page charts the tier
/// distribution (as segments count it) and each campaign's coupons issued and redeemed (as
/// its report counts them); a campaign's page shows its preview and report; the survey report
/// page shows a merchant's scores, a merchant operator's own only.
async fn member_actions_charts_and_reports(db: Db) {
    let h = Harness::start_on(db).await;
    let token = add(&h, "ops", "write", None, Locale::En).await;
    add(&h, "viewer", "read", None, Locale::En).await;
    add(&h, "shop-a", "merchant", Some("M-A"), Locale::En).await;
    const PASSWORD: &str = "correct horse battery";
    let addr = h.running().admin_addr;
    let mut web = web::Web::new(addr);
    web.sign_in("ops", PASSWORD).await;
    let page = web.get("/console/members/MB-2").await;
    assert_eq!(page.status, 200);
    assert!(page
        .body
        .contains("class=\"card-actions\" data-card=\"C-POOR\""));
    let csrf = page.csrf();
    let club = |code: &'static str| {
        let h = &h;
        async move {
            h.running().wait_projected().await;
            h.scalar(&format!(
                "SELECT b.ledger_rials FROM club_balances b JOIN cards c ON c.id = b.card_id \
                 WHERE c.code = '{code}'"
            ))
            .await
        }
    };
    let before = club("C-POOR").await;
    let act = "/console/members/MB-2/cards/C-POOR";
    let top_up = [
        ("csrf", csrf.as_str()),
        ("key", "k1"),
        ("amount_rials", "50000"),
    ];
    for _ in 0..2 {
        let answer = web.post(&format!("{act}/top-up"), &top_up).await;
        assert_eq!(answer.status, 303, "{answer:?}");
        assert_eq!(answer.header("location"), Some("/console/members/MB-2"));
    }
    assert_eq!(club("C-POOR").await, before + 50_000, "once, for one key");
    let grant = [
        ("csrf", csrf.as_str()),
        ("key", "k2"),
        ("merchant", "M-A"),
        ("amount_rials", "20000"),
    ];
    assert_eq!(
        web.post(&format!("{act}/store-credit"), &grant)
            .await
            .status,
        303
    );
    let renew = [("csrf", csrf.as_str()), ("expiry", "2031-06")];
    let answer = web
        .post("/console/members/MB-2/cards/C-EXPIRED/renew", &renew)
        .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let replace = [
        ("csrf", csrf.as_str()),
        ("new_code", "C-NEW"),
        ("pan", "6037996666666667"),
    ];
    let answer = web
        .post("/console/members/MB-2/cards/C-EXPIRED/replace", &replace)
        .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    let coupon = [
        ("csrf", csrf.as_str()),
        ("key", "k3"),
        ("percent", "10"),
        ("discount_rials_max", "50000"),
        ("valid_days", "30"),
    ];
    let answer = web.post("/console/members/MB-2/coupons", &coupon).await;
    assert_eq!(answer.status, 303, "{answer:?}");
    h.running().wait_projected().await;
    let view = |code: &str| {
        let path = format!("/api/v1/cards/{code}/view");
        let token = token.clone();
        async move {
            admin_request(addr, "GET", &path, &token, None, None)
                .await
                .2
        }
    };
    let replaced = view("C-NEW").await;
    assert_eq!(
        replaced["card"]["expiry"],
        json!("2031-06"),
        "renewed, then replaced: {replaced}"
    );
    let poor = view("C-POOR").await;
    assert_eq!(
        poor["store_credit"][0]["ledger_rials"],
        json!(20_000),
        "{poor}"
    );
    assert_eq!(poor["store_credit"][0]["merchant"], json!("M-A"), "{poor}");
    let page = web.get("/console/members/MB-2").await;
    assert!(
        page.body.contains("data-card=\"C-NEW\""),
        "the new card is listed"
    );
    assert!(page.body.contains("id=\"coupons\""));
    let audited = h
        .scalar("SELECT COUNT(*) FROM audit_log WHERE operator = 'ops'")
        .await;
    assert!(audited >= 5, "{audited} audit rows");
    let coupons = h
        .scalar("SELECT COUNT(*) FROM coupons k JOIN members m ON m.id = k.member_id WHERE m.code = 'MB-2'")
        .await;
    assert_eq!(coupons, 1);
    // Another member's card, a form without the token, a reader, a merchant operator.
    let other = web
        .post(
            "/console/members/MB-2/cards/C-RICH/block",
            &[("csrf", csrf.as_str())],
        )
        .await;
    assert_eq!(other.status, 404);
    assert_eq!(web.post(&format!("{act}/block"), &[]).await.status, 403);
    let mut viewer = web::Web::new(addr);
    viewer.sign_in("viewer", PASSWORD).await;
    let read = viewer.get("/console/members/MB-2").await;
    assert_eq!(read.status, 200);
    assert!(!read.body.contains("card-actions") && !read.body.contains("issue-coupon"));
    let forged = [("csrf", read.csrf()), ("amount_rials", "1".to_owned())];
    let forged: Vec<(&str, &str)> = forged.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(
        viewer.post(&format!("{act}/top-up"), &forged).await.status,
        403
    );
    let mut shop = web::Web::new(addr);
    shop.sign_in("shop-a", PASSWORD).await;
    assert_eq!(shop.get("/console/members/MB-2").await.status, 403);
    assert_eq!(shop.get("/console/loyalty").await.status, 403);

    // A campaign with a coupon, run for everyone; MB-1 redeems theirs in a purchase.
    let put = |path: &'static str, body: Value| {
        let token = token.clone();
        async move {
            let (status, _, value) =
                admin_request(addr, "PUT", path, &token, None, Some(&body.to_string())).await;
            assert!(status == 200 || status == 201, "{path}: {value}");
        }
    };
    put(
        "/api/v1/occasions/OPENING",
        json!({"name": "Opening week", "starts_on": "2026-11-22", "ends_on": "2026-11-30"}),
    )
    .await;
    put(
        "/api/v1/segments/ALL",
        json!({"name": "Everyone", "expression": {"all": []}}),
    )
    .await;
    put(
        "/api/v1/campaigns/OPEN",
        json!({"name": "Opening", "segment": "ALL",
        "occasion": {"kind": "event", "code": "OPENING"},
        "coupon": {"fixed_rials": 50000, "valid_days": 30}}),
    )
    .await;
    let (status, _, run) = admin_request(
        addr,
        "POST",
        "/api/v1/campaigns/OPEN/run",
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{run}");
    let mut client = h.client().await;
    let mut counter = counter();
    let at = h.now_seconds();
    let (out, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        1_000_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved);
    let confirm = counter.confirm(&out, response.rrn.unwrap(), at).unwrap();
    exchange(&mut client, &counter, &confirm).await;
    h.running().wait_projected().await;
    let (_, _, report) = admin_request(
        addr,
        "GET",
        "/api/v1/campaigns/OPEN/report",
        &token,
        None,
        None,
    )
    .await;
    assert_eq!(report["coupons_redeemed"], json!(1), "{report}");

    let loyalty = web.get_computed("/console/loyalty").await;
    assert_eq!(loyalty.status, 200, "{loyalty:?}");
    let issued = report["coupons_issued"].as_i64().unwrap();
    assert!(issued >= 1);
    assert_eq!(
        bar(&loyalty.body, "coupon-redemption", "OPEN", Some("first")),
        issued
    );
    assert_eq!(
        bar(&loyalty.body, "coupon-redemption", "OPEN", Some("second")),
        1
    );
    // The tier distribution is what segments see.
    let members = switch::engagement::audience::members(&h.running().pool, h.clock.now())
        .await
        .unwrap();
    let silver = members
        .iter()
        .filter(|m| m.facts.tier.as_deref() == Some("silver"))
        .count();
    let none = members.iter().filter(|m| m.facts.tier.is_none()).count();
    assert_eq!(silver, 1);
    assert_eq!(bar(&loyalty.body, "tier-distribution", "silver", None), 1);
    assert_eq!(
        bar(&loyalty.body, "tier-distribution", "No tier", None),
        i64::try_from(none).unwrap()
    );
    assert!(loyalty.body.contains("href=\"/console/campaigns/OPEN\""));
    let campaign = web.get_computed("/console/campaigns/OPEN").await;
    assert_eq!(campaign.status, 200);
    assert_eq!(field(&campaign.body, "coupons_redeemed"), "1");
    assert_eq!(field(&campaign.body, "coupons_issued"), issued.to_string());
    assert!(campaign.body.contains("id=\"preview\""));
    assert_eq!(web.get("/console/campaigns/NOPE").await.status, 404);

    // The survey report of M-A; a merchant operator gets their own whatever they ask.
    put(
        "/api/v1/merchants/M-A/survey",
        json!({"question_fa": "از خرید خود راضی بودید؟",
        "question_en": "How was your visit?", "scale_min": 1, "scale_max": 5,
        "delay_minutes": 30, "surveys_max": 2, "period_days": 30}),
    )
    .await;
    let survey = web.get("/console/surveys?merchant=M-A").await;
    assert_eq!(survey.status, 200, "{survey:?}");
    assert_eq!(field(&survey.body, "merchant"), "M-A");
    assert_eq!(bar(&survey.body, "survey-scores", "5", None), 0);
    assert_eq!(web.get("/console/surveys?merchant=M-OFF").await.status, 404);
    let own = shop.get("/console/surveys?merchant=M-OFF").await;
    assert_eq!(own.status, 200);
    assert_eq!(field(&own.body, "merchant"), "M-A");
}

/// `lsw-sim demo --console` (the binary): after its summary it prints the console's address
/// and a password; the address answers the sign-in page, the password signs in, and Ctrl-C
/// (SIGINT) stops it cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_console_serves_the_sign_in_page() {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lsw-sim"))
        .args(["demo", "--seconds", "1", "--connections", "2", "--console"])
        .args([
            "--console-listen",
            "127.0.0.1:0",
            "--console-seconds",
            "600",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The URL and the password, within three minutes (a debug build's demo).
    let (url, password, printed) = tokio::task::spawn_blocking(move || {
        let mut printed = Vec::new();
        let (mut url, mut password) = (None, None);
        while url.is_none() || password.is_none() {
            let Ok(line) = seen.recv_timeout(std::time::Duration::from_secs(180)) else {
                break;
            };
            if let Some(rest) = line.trim().strip_prefix("console: http://") {
                url = Some(rest.trim_end_matches("/console").to_owned());
            }
            if let Some(rest) = line
                .trim()
                .strip_prefix("sign in as console with the password ")
            {
                password = Some(rest.trim().to_owned());
            }
            printed.push(line);
        }
        (url, password, (printed, seen))
    })
    .await
    .unwrap();
    let (printed, seen) = printed;
    let (Some(url), Some(password)) = (url, password) else {
        let _ = child.kill();
        let output = child.wait_with_output().unwrap();
        panic!(
            "no console address printed:\n{}\n{}",
            printed.join("\n"),
            String::from_utf8_lossy(&output.stderr)
        );
    };
    assert!(
        printed.iter().any(|l| l.contains("== check ==")),
        "after the summary"
    );
    let addr: std::net::SocketAddr = url.parse().unwrap();
    let mut web = web::Web::new(addr);
    let page = web.get("/console/sign-in").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("name=\"password\""), "{}", page.body);
    web.sign_in("console", &password).await;
    let dashboard = web.get("/console").await;
    assert_eq!(dashboard.status, 200);
    assert!(dashboard.body.contains("id=\"today-totals\""));
    let settlement = web.get("/console/settlement").await;
    assert!(
        settlement.body.contains("data-cycle="),
        "the demo's cycle is listed"
    );
    // Ctrl-C.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    reader.join().unwrap();
    let rest: Vec<String> = seen.iter().collect();
    assert!(status.success(), "{status:?}: {rest:?}");
    assert!(rest.iter().any(|l| l == "console stopped"), "{rest:?}");
}

/// Every route in `switch::console::ROUTES` is served: without a session a page and a form
/// lead to the sign-in page (none answers 404 or 405), the sign-in form without its cookie is
/// 403, and the style sheet and sign-in page are open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_route_is_served_and_wants_a_session() {
    let h = Harness::start().await;
    let mut web = web::Web::new(h.running().admin_addr);
    for (method, path) in switch::console::ROUTES {
        let concrete = path
            .replace("{code}", "X")
            .replace("{id}", "1")
            .replace("{action}", "block")
            .replace("{terminal_id}", "TRM00001")
            .replace("{cycle}", "1")
            .replace("{file}", "payout.csv")
            .replace("{card}", "C-RICH");
        let answer = web.request(method, &concrete, Some(String::new())).await;
        match (*method, *path) {
            ("GET", "/console/sign-in" | "/console/static/console.css") => {
                assert_eq!(answer.status, 200, "{method} {path}");
            }
            ("POST", "/console/sign-in") => assert_eq!(answer.status, 403, "{method} {path}"),
            _ => {
                assert_eq!(answer.status, 303, "{method} {path}: {answer:?}");
                assert_eq!(answer.header("location"), Some("/console/sign-in"));
            }
        }
    }
}
