//! Goal: the operations console's reads (`GET /api/v1/transactions`, `…/transactions/{id}`,
//! `…/cards/{code}/view`, `…/members/{code}/view`, `GET /api/v1/terminals`) answer exactly
//! what the database holds after real traffic: the search finds each transaction by every
//! filter, pages are disjoint and cover every match in order, the detail shows the capture,
//! reversal and movements, the views show balances, lots, coupons and tiers and never a PAN,
//! the terminal list shows when a terminal was last used; every bad parameter is a 4xx naming
//! it; and every statement behind them is an index search on SQLite.
//!
//! Method: the in-process switch of `common::Harness` (SQLite, and PostgreSQL when
//! `LSW_TEST_DATABASE_URL` names a server), purchases, confirms and reversals over TCP as a
//! terminal sends them, the sweeper for a lapsed hold, and plain HTTP/1.1 to the admin port;
//! expected values are read from the responses over TCP and from the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::*;
use protocol::field54::AmountKind;
use protocol::terminal::Terminal;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::{json, Value};
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PANS: [&str; 4] = [RICH, POOR, BLOCKED, EXPIRED];

/// The console: a harness, a read and a write token, and every response body it was given
/// (with the request's method).
struct Console {
    harness: Harness,
    reader: String,
    writer: String,
    bodies: Vec<(String, String)>,
}

impl Console {
    async fn start(db: Db) -> Console {
        let harness = Harness::start_on(db).await;
        let pool = harness.pool().await;
        let now = UnixMillis::new(START_MS);
        let writer = auth::add_token(pool, "ops", Role::Write, now)
            .await
            .unwrap();
        let reader = auth::add_token(pool, "console", Role::Read, now)
            .await
            .unwrap();
        Console {
            harness,
            reader,
            writer,
            bodies: Vec::new(),
        }
    }

    /// One request: status and JSON body (`Null` when not JSON); the raw body is kept.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let addr = self.harness.running().admin_addr;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let key = key.map_or(String::new(), |k| format!("idempotency-key: {k}\r\n"));
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{auth}{key}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        self.bodies.push((method.to_owned(), body.to_owned()));
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    async fn get(&mut self, path: &str) -> (u16, Value) {
        let token = self.reader.clone();
        self.call("GET", path, Some(&token), None, "").await
    }

    /// A `GET` expected to answer 200.
    async fn ok(&mut self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn write(&mut self, method: &str, path: &str, key: Option<&str>, body: Value) -> Value {
        let token = self.writer.clone();
        let (status, answer) = self
            .call(method, path, Some(&token), key, &body.to_string())
            .await;
        assert!(status == 200 || status == 201, "{path}: {status} {answer}");
        answer
    }

    async fn pool(&self) -> &switch::store::Pool {
        self.harness.pool().await
    }

    async fn ids(&self, sql: &str) -> Vec<i64> {
        sqlx::query_scalar(sql)
            .fetch_all(self.pool().await)
            .await
            .unwrap()
    }

    /// No response body held a PAN, whole or without its BIN.
    fn assert_no_pan(&self) {
        assert!(!self.bodies.is_empty());
        for (_, body) in &self.bodies {
            for pan in PANS {
                assert!(!body.contains(pan), "a PAN in {body}");
                assert!(!body.contains(&pan[6..]), "a PAN's digits in {body}");
            }
        }
    }
}

/// One transaction the trade made: its RRN and the amounts its approval carried.
#[derive(Debug, Clone)]
struct Made {
    rrn: String,
    card: &'static str,
    state: &'static str,
    /// gross, discount, fee, store credit, club, bank rest, cashback.
    amounts: [u64; 7],
}

/// A purchase approved over TCP, as [`Made`], and the message for its confirm or reversal.
async fn buy(
    console: &Console,
    client: &mut terminal_sim::client::Client,
    terminal: &mut Terminal,
    code: ProcessingCode,
    gross: u64,
    pan: &str,
) -> (protocol::terminal::Outgoing, protocol::Rrn, [u64; 7]) {
    let at = console.harness.now_seconds();
    let (out, response) = purchase(client, terminal, code, gross, pan, at).await;
    assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
    let amounts = [
        gross,
        amount(&response, AmountKind::Discount),
        amount(&response, AmountKind::MerchantFee),
        amount(&response, AmountKind::StoreCreditUsed),
        amount(&response, AmountKind::ClubUsed),
        amount(&response, AmountKind::BankRest),
        amount(&response, AmountKind::Cashback),
    ];
    (out, response.rrn.unwrap(), amounts)
}

async fn follow(
    console: &Console,
    client: &mut terminal_sim::client::Client,
    terminal: &mut Terminal,
    original: &protocol::terminal::Outgoing,
    rrn: protocol::Rrn,
    confirm: bool,
) {
    let at = console.harness.now_seconds();
    let out = if confirm {
        terminal.confirm(original, rrn, at).unwrap()
    } else {
        terminal.reversal(original, Some(rrn), at).unwrap()
    };
    assert_eq!(
        exchange(client, terminal, &out).await.code,
        ResponseCode::Approved
    );
}

/// The traffic every test reads back, on two Tehran days (the clock starts at 22:00 on
/// 2026-11-22):
/// - A: C-RICH bank purchase, confirmed (it uses the member's coupon);
/// - B: C-RICH club purchase, confirmed;
/// - C: C-POOR bank purchase, confirmed, then reversed;
/// - D: C-RICH club purchase, reversed while pending;
/// - E: C-RICH club purchase never confirmed: its hold lapses (expired);
/// - then a day later, F: C-RICH bank purchase, confirmed; G: C-POOR bank purchase, pending.
async fn trade(console: &mut Console) -> Vec<Made> {
    // A coupon for MB-1's next purchase, so the views have a used one.
    console
        .write(
            "POST",
            "/api/v1/members/MB-1/coupons",
            Some("coupon-1"),
            json!({"kind": "manual", "fixed_rials": 1000, "valid_days": 30}),
        )
        .await;
    let mut client = console.harness.client().await;
    let mut t = counter();
    let mut made = Vec::new();
    let mut record = |rrn: protocol::Rrn, card, state, amounts| {
        made.push(Made {
            rrn: rrn.as_str().to_owned(),
            card,
            state,
            amounts,
        });
    };
    use ProcessingCode::{BankPurchase, ClubPurchase};
    let (out, rrn, a) = buy(console, &mut client, &mut t, BankPurchase, 10_000, RICH).await;
    follow(console, &mut client, &mut t, &out, rrn, true).await;
    record(rrn, "C-RICH", "confirmed", a);
    let (out, rrn, a) = buy(console, &mut client, &mut t, ClubPurchase, 50_000, RICH).await;
    follow(console, &mut client, &mut t, &out, rrn, true).await;
    record(rrn, "C-RICH", "confirmed", a);
    let (out, rrn, a) = buy(console, &mut client, &mut t, BankPurchase, 20_000, POOR).await;
    follow(console, &mut client, &mut t, &out, rrn, true).await;
    follow(console, &mut client, &mut t, &out, rrn, false).await;
    record(rrn, "C-POOR", "reversed", a);
    console.harness.clock.advance(1_000);
    let (out, rrn, a) = buy(console, &mut client, &mut t, ClubPurchase, 30_000, RICH).await;
    follow(console, &mut client, &mut t, &out, rrn, false).await;
    record(rrn, "C-RICH", "reversed", a);
    let (_, rrn, a) = buy(console, &mut client, &mut t, ClubPurchase, 40_000, RICH).await;
    record(rrn, "C-RICH", "expired", a);
    console.harness.clock.advance(121_000);
    console
        .harness
        .wait_for(
            "SELECT count(*) FROM transactions WHERE state = 'expired'",
            1,
        )
        .await;
    console.harness.clock.advance(86_400_000);
    let (out, rrn, a) = buy(console, &mut client, &mut t, BankPurchase, 15_000, RICH).await;
    follow(console, &mut client, &mut t, &out, rrn, true).await;
    record(rrn, "C-RICH", "confirmed", a);
    let (_, rrn, a) = buy(console, &mut client, &mut t, BankPurchase, 5_000, POOR).await;
    record(rrn, "C-POOR", "pending", a);
    made
}

/// The RRNs of a page's items, in order.
fn rrns(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {page}"))
        .iter()
        .map(|item| item["rrn"].as_str().unwrap().to_owned())
        .collect()
}

/// The RRNs of `made` that `keep` selects, newest first (the order of a search).
fn newest_first(made: &[Made], keep: impl Fn(&Made) -> bool) -> Vec<String> {
    made.iter()
        .rev()
        .filter(|m| keep(m))
        .map(|m| m.rrn.clone())
        .collect()
}

/// Every page of `path` (which already has a `?`) with `limit`, following `next`: the items'
/// RRNs per page, after checking each `next` is the id of its page's last item.
async fn pages(console: &mut Console, path: &str, limit: usize, key: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut url = format!("{path}&limit={limit}");
        if let Some(after) = &after {
            url.push_str(&format!(
                "&after={}",
                after.as_str().map_or(after.to_string(), str::to_owned)
            ));
        }
        let body = console.ok(&url).await;
        let page = if key.is_empty() { &body } else { &body[key] };
        let items = page["items"].as_array().unwrap().clone();
        assert!(items.len() <= limit, "{url}: {page}");
        out.push(rrns(page));
        if page["next"].is_null() {
            break;
        }
        assert_eq!(items.len(), limit, "a page before the last is full: {page}");
        assert_eq!(page["next"], items.last().unwrap()["id"], "{page}");
        after = Some(page["next"].clone());
        assert!(out.len() < 50, "paging does not end");
    }
    out
}

async fn search_finds_by_each_filter_and_pages_cover_everything(db: Db) {
    let mut console = Console::start(db).await;
    let made = trade(&mut console).await;
    let everything = newest_first(&made, |_| true);
    assert_eq!(everything.len(), 7);

    // Everything, newest first, as the database orders it.
    let all = console.ok("/api/v1/transactions").await;
    assert_eq!(rrns(&all), everything);
    assert!(all["next"].is_null());
    let ids: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_i64().unwrap())
        .collect();
    let stored = console
        .ids("SELECT id FROM transactions ORDER BY created_at_ms DESC, id DESC")
        .await;
    assert_eq!(ids, stored);

    // Each by its RRN, with the amounts its approval carried over TCP.
    for m in &made {
        let page = console
            .ok(&format!("/api/v1/transactions?rrn={}", m.rrn))
            .await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{page}");
        let item = &items[0];
        assert_eq!(item["rrn"], m.rrn.as_str());
        assert_eq!(item["state"], m.state, "{item}");
        assert_eq!(item["card"], m.card);
        assert_eq!(item["bin"], "603799");
        assert_eq!(
            item["last4"],
            if m.card == "C-RICH" { "1112" } else { "2228" }
        );
        assert_eq!(item["terminal"], "TRM00001");
        assert_eq!(item["merchant"], "M-A");
        assert_eq!(
            item["rule"], "R-10",
            "the 10% rule priced every purchase at M-A"
        );
        let names = [
            "gross_rials",
            "discount_rials",
            "fee_rials",
            "store_credit_rials",
            "club_rials",
            "bank_rest_rials",
            "cashback_rials",
        ];
        let got: Vec<u64> = names.iter().map(|n| item[*n].as_u64().unwrap()).collect();
        assert_eq!(got, m.amounts.to_vec(), "{item}");
        let (created, version): (i64, i64) = sqlx::query_as(
            "SELECT created_at_ms, snapshot_version FROM transactions WHERE rrn = $1",
        )
        .bind(&m.rrn)
        .fetch_one(console.pool().await)
        .await
        .unwrap();
        assert_eq!(item["created_at_ms"], created);
        assert_eq!(item["snapshot_version"], version);
        assert!(version >= 1);
        assert_eq!(
            item["confirmed_at_ms"].is_i64(),
            m.state == "confirmed" || m.rrn == made[2].rrn,
            "{item}"
        );
    }

    // By card, by BIN and last four, by terminal, by merchant, by outcome.
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "card=C-POOR".into(),
            newest_first(&made, |m| m.card == "C-POOR"),
        ),
        (
            "card=C-RICH".into(),
            newest_first(&made, |m| m.card == "C-RICH"),
        ),
        ("card=C-BLOCKED".into(), vec![]),
        ("card=C-NONE".into(), vec![]),
        (
            "bin=603799&last4=2228".into(),
            newest_first(&made, |m| m.card == "C-POOR"),
        ),
        ("bin=603799&last4=9999".into(), vec![]),
        ("terminal=TRM00001".into(), everything.clone()),
        ("terminal=TRM00003".into(), vec![]),
        ("merchant=M-A".into(), everything.clone()),
        ("merchant=M-OFF".into(), vec![]),
        (
            "from=2026-11-22&to=2026-11-22".into(),
            newest_first(&made[..5], |_| true),
        ),
        ("to=2026-11-22".into(), newest_first(&made[..5], |_| true)),
        ("from=2026-11-23".into(), newest_first(&made[5..], |_| true)),
        ("from=2026-11-24".into(), vec![]),
        ("to=2026-11-21".into(), vec![]),
        (
            "card=C-RICH&outcome=confirmed&from=2026-11-22&to=2026-11-22".into(),
            newest_first(&made[..5], |m| m.card == "C-RICH" && m.state == "confirmed"),
        ),
        (
            "merchant=M-A&outcome=reversed".into(),
            newest_first(&made, |m| m.state == "reversed"),
        ),
        (
            "terminal=TRM00001&card=C-POOR&outcome=pending".into(),
            newest_first(&made, |m| m.card == "C-POOR" && m.state == "pending"),
        ),
        (format!("rrn={}&card=C-POOR", made[0].rrn), vec![]),
    ];
    for state in ["pending", "confirmed", "reversed", "expired"] {
        let expected = newest_first(&made, |m| m.state == state);
        assert!(!expected.is_empty());
        let page = console
            .ok(&format!("/api/v1/transactions?outcome={state}"))
            .await;
        assert_eq!(rrns(&page), expected, "outcome={state}");
    }
    for (query, expected) in cases {
        let page = console.ok(&format!("/api/v1/transactions?{query}")).await;
        assert_eq!(rrns(&page), expected, "{query}");
        assert!(page["next"].is_null(), "{query}");
    }

    // Pages of every size are disjoint and, in order, are the whole answer.
    for limit in [1, 2, 3, 6, 7, 500] {
        let got = pages(&mut console, "/api/v1/transactions?", limit, "").await;
        assert_eq!(got.len(), everything.len().div_ceil(limit), "limit {limit}");
        let flat: Vec<String> = got.concat();
        let distinct: BTreeSet<&String> = flat.iter().collect();
        assert_eq!(distinct.len(), flat.len(), "pages overlap at limit {limit}");
        assert_eq!(flat, everything, "limit {limit}");
    }
    let rich = pages(&mut console, "/api/v1/transactions?card=C-RICH", 2, "").await;
    assert_eq!(rich.len(), 3);
    assert_eq!(rich.concat(), newest_first(&made, |m| m.card == "C-RICH"));
    let day = pages(
        &mut console,
        "/api/v1/transactions?from=2026-11-22&to=2026-11-22",
        2,
        "",
    )
    .await;
    assert_eq!(day.concat(), newest_first(&made[..5], |_| true));
    console.assert_no_pan();
}

async fn detail_shows_capture_reversal_and_movements(db: Db) {
    let mut console = Console::start(db).await;
    let made = trade(&mut console).await;
    let id_of = |rrn: &str| format!("SELECT id FROM transactions WHERE rrn = '{rrn}'");
    let mut ids = Vec::new();
    for m in &made {
        ids.push(console.ids(&id_of(&m.rrn)).await[0]);
    }
    for (m, id) in made.iter().zip(&ids) {
        let detail = console.ok(&format!("/api/v1/transactions/{id}")).await;
        assert_eq!(detail["id"], *id);
        assert_eq!(detail["rrn"], m.rrn.as_str());
        assert_eq!(detail["state"], m.state);
        assert_eq!(detail["gross_rials"].as_u64(), Some(m.amounts[0]));
        // The movements are the database's, in order.
        let stored: Vec<(i64, String, i64, String)> = sqlx::query_as(
            "SELECT id, account, delta_rials, kind FROM balance_movements WHERE txn_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(console.pool().await)
        .await
        .unwrap();
        let shown: Vec<(i64, String, i64, String)> = detail["movements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|mv| {
                assert_eq!(mv["card"], m.card);
                (
                    mv["id"].as_i64().unwrap(),
                    mv["account"].as_str().unwrap().to_owned(),
                    mv["delta_rials"].as_i64().unwrap(),
                    mv["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(shown, stored, "{detail}");
    }
    let club = |m: &Made| i64::try_from(m.amounts[4]).unwrap();
    let cashback = |m: &Made| i64::try_from(m.amounts[6]).unwrap();

    // B, a confirmed club purchase: its capture took the club amount, and its movements are
    // that capture and the cashback lot.
    let b = console
        .ok(&format!("/api/v1/transactions/{}", ids[1]))
        .await;
    assert!(
        club(&made[1]) > 0 && cashback(&made[1]) > 0,
        "{:?}",
        made[1]
    );
    assert_eq!(b["capture"]["club_rials"], club(&made[1]));
    assert_eq!(b["capture"]["store_credit_rials"], 0);
    assert!(b["capture"]["returned_at_ms"].is_null());
    assert_eq!(b["capture"]["at_ms"], b["confirmed_at_ms"]);
    assert!(b["reversed_at_ms"].is_null());
    let movements: Vec<(String, Option<String>, i64, String)> = b["movements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|mv| {
            (
                mv["account"].as_str().unwrap().to_owned(),
                mv["merchant"].as_str().map(str::to_owned),
                mv["delta_rials"].as_i64().unwrap(),
                mv["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        movements,
        [
            (
                "club".to_owned(),
                None,
                -club(&made[1]),
                "capture".to_owned()
            ),
            (
                "store_credit".to_owned(),
                Some("M-A".to_owned()),
                cashback(&made[1]),
                "cashback".to_owned()
            ),
        ]
    );
    let lot: i64 = sqlx::query_scalar("SELECT cashback_lot_id FROM transactions WHERE id = $1")
        .bind(ids[1])
        .fetch_one(console.pool().await)
        .await
        .unwrap();
    assert_eq!(b["cashback_lot_id"], lot);

    // C, confirmed then reversed: the capture is kept and marked returned.
    let c = console
        .ok(&format!("/api/v1/transactions/{}", ids[2]))
        .await;
    assert!(c["reversed_at_ms"].is_i64(), "{c}");
    assert!(c["capture"]["at_ms"].is_i64(), "{c}");
    assert_eq!(c["capture"]["returned_at_ms"], c["reversed_at_ms"]);
    // D, reversed while pending: never captured. E: lapsed. G: still pending.
    let d = console
        .ok(&format!("/api/v1/transactions/{}", ids[3]))
        .await;
    assert!(
        d["capture"].is_null() && d["reversed_at_ms"].is_i64(),
        "{d}"
    );
    assert_eq!(d["movements"], json!([]));
    let e = console
        .ok(&format!("/api/v1/transactions/{}", ids[4]))
        .await;
    assert!(e["capture"].is_null() && e["expired_at_ms"].is_i64(), "{e}");
    assert!(e["reversed_at_ms"].is_null());
    let g = console
        .ok(&format!("/api/v1/transactions/{}", ids[6]))
        .await;
    assert!(
        g["capture"].is_null() && g["confirmed_at_ms"].is_null(),
        "{g}"
    );
    assert!(g["hold_expires_at_ms"].as_i64().unwrap() > g["created_at_ms"].as_i64().unwrap());
    assert!(g["cycle_id"].is_null());
    // A used the member's coupon.
    let a = console
        .ok(&format!("/api/v1/transactions/{}", ids[0]))
        .await;
    assert_eq!(a["coupon_rials"], 1000, "{a}");
    assert!(a["coupon_id"].is_i64());

    let max = ids.iter().max().unwrap();
    for path in [
        format!("/api/v1/transactions/{}", max + 1),
        "/api/v1/transactions/0".to_owned(),
        "/api/v1/transactions/-1".to_owned(),
        "/api/v1/transactions/abc".to_owned(),
        "/api/v1/transactions/99999999999999999999".to_owned(),
    ] {
        let (status, body) = console.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"], "no such transaction");
    }
    console.assert_no_pan();
}

async fn card_and_member_views_show_balances_and_never_a_pan(db: Db) {
    let mut console = Console::start(db).await;
    let made = trade(&mut console).await;
    // A top-up, a store-credit grant, a second coupon, and MB-2 in a member group.
    console
        .write(
            "POST",
            "/api/v1/cards/C-RICH/top-ups",
            Some("top-up-1"),
            json!({"amount_rials": 5000}),
        )
        .await;
    console
        .write(
            "POST",
            "/api/v1/cards/C-RICH/store-credit",
            Some("grant-1"),
            json!({"merchant": "M-A", "amount_rials": 7000}),
        )
        .await;
    console
        .write(
            "POST",
            "/api/v1/members/MB-1/coupons",
            Some("coupon-2"),
            json!({"kind": "manual", "percent": "5", "valid_days": 10}),
        )
        .await;
    console
        .write(
            "PUT",
            "/api/v1/member-groups/vip",
            None,
            json!({"name": "VIP"}),
        )
        .await;
    console
        .write(
            "PUT",
            "/api/v1/members/MB-2",
            None,
            json!({"groups": ["vip"]}),
        )
        .await;

    let view = console.ok("/api/v1/cards/C-RICH/view").await;
    assert_eq!(
        view["card"],
        json!({"code": "C-RICH", "member": "MB-1", "bin": "603799", "last4": "1112",
               "status": "active", "expiry": "2099-12", "tier": "silver"})
    );
    let (ledger, held): (i64, i64) = sqlx::query_as(
        "SELECT b.ledger_rials, b.held_rials FROM club_balances b JOIN cards c ON c.id = b.card_id \
         WHERE c.code = 'C-RICH'",
    )
    .fetch_one(console.pool().await)
    .await
    .unwrap();
    // 2 000 000 imported, less the two captured club amounts, plus the top-up; nothing held.
    let captured: u64 = made
        .iter()
        .filter(|m| m.card == "C-RICH" && m.state == "confirmed")
        .map(|m| m.amounts[4])
        .sum();
    assert_eq!(ledger, 2_000_000 - i64::try_from(captured).unwrap() + 5000);
    assert_eq!(held, 0);
    assert_eq!(
        view["club"],
        json!({"ledger_rials": ledger, "held_rials": 0, "available_rials": ledger})
    );
    let accounts = view["store_credit"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{view}");
    let account = &accounts[0];
    assert_eq!(account["merchant"], "M-A");
    assert_eq!(account["card"], "C-RICH");
    let stored_ledger: i64 = sqlx::query_scalar(
        "SELECT a.ledger_rials FROM store_credit_accounts a JOIN cards c ON c.id = a.card_id \
         WHERE c.code = 'C-RICH'",
    )
    .fetch_one(console.pool().await)
    .await
    .unwrap();
    assert_eq!(account["ledger_rials"], stored_ledger);
    assert_eq!(account["available_rials"], stored_ledger);
    let lots: Vec<(i64, i64, String)> = account["lots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| {
            (
                lot["id"].as_i64().unwrap(),
                lot["remaining_rials"].as_i64().unwrap(),
                lot["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let stored_lots: Vec<(i64, i64, String)> = sqlx::query_as(
        "SELECT l.id, l.remaining_rials, l.source FROM store_credit_lots l \
         JOIN cards c ON c.id = l.card_id WHERE c.code = 'C-RICH' AND l.remaining_rials > 0 \
         ORDER BY l.id",
    )
    .fetch_all(console.pool().await)
    .await
    .unwrap();
    assert_eq!(lots, stored_lots);
    assert_eq!(lots.iter().map(|l| l.1).sum::<i64>(), stored_ledger);
    assert!(lots.contains(&(lots.last().unwrap().0, 7000, "grant".to_owned())));
    // The import's 100 000 and one cashback lot per confirmed purchase with cashback.
    let cashbacks = made
        .iter()
        .filter(|m| m.card == "C-RICH" && m.state == "confirmed" && m.amounts[6] > 0)
        .count();
    assert_eq!(lots.len(), 1 + cashbacks + 1, "{lots:?}");
    assert_eq!(view["lots_more"], false);
    // MB-1's coupons, newest first: the percent one is available, the fixed one used by A.
    let a_id = console
        .ids(&format!(
            "SELECT id FROM transactions WHERE rrn = '{}'",
            made[0].rrn
        ))
        .await[0];
    let coupons: Vec<(String, Value)> = view["coupons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["state"].as_str().unwrap().to_owned(), c["txn_id"].clone()))
        .collect();
    assert_eq!(
        coupons,
        [
            ("available".to_owned(), Value::Null),
            ("used".to_owned(), json!(a_id))
        ]
    );
    assert_eq!(view["coupons"][0]["percent"], "5");
    assert_eq!(view["coupons"][1]["fixed_rials"], 1000);
    assert_eq!(view["coupons_more"], false);
    assert_eq!(
        view["tier"],
        json!({"given": ["silver"], "earned": null, "held": "silver"})
    );
    let rich = newest_first(&made, |m| m.card == "C-RICH");
    assert_eq!(rrns(&view["history"]), rich);
    assert!(view["history"]["next"].is_null());
    let paged = pages(&mut console, "/api/v1/cards/C-RICH/view?", 2, "history").await;
    assert_eq!(paged.concat(), rich);
    assert_eq!(paged.len(), 3);

    // C-POOR: its own history, no store credit, MB-2 has no coupons.
    let poor = console.ok("/api/v1/cards/C-POOR/view").await;
    assert_eq!(poor["card"]["last4"], "2228");
    assert_eq!(poor["card"]["tier"], Value::Null);
    assert_eq!(poor["store_credit"], json!([]));
    assert_eq!(poor["coupons"], json!([]));
    assert_eq!(
        poor["tier"],
        json!({"given": [], "earned": null, "held": null})
    );
    assert_eq!(
        rrns(&poor["history"]),
        newest_first(&made, |m| m.card == "C-POOR")
    );
    // G holds nothing of the club balance (a bank purchase), so all 1 000 are available.
    assert_eq!(
        poor["club"],
        json!({"ledger_rials": 1000, "held_rials": 0, "available_rials": 1000})
    );

    // MB-1: the phone masked but for its last four digits, one card, the same balances.
    let member = console.ok("/api/v1/members/MB-1/view").await;
    assert_eq!(
        member["member"],
        json!({"code": "MB-1", "locale": "fa", "phone": "*********4567", "groups": []})
    );
    assert_eq!(
        member["cards"],
        json!([{"code": "C-RICH", "bin": "603799", "last4": "1112", "status": "active",
                "expiry": "2099-12", "tier": "silver"}])
    );
    assert_eq!(
        member["club"],
        json!([{"card": "C-RICH", "ledger_rials": ledger, "held_rials": 0,
                "available_rials": ledger}])
    );
    assert_eq!(
        member["store_credit"],
        json!([{"card": "C-RICH", "merchant": "M-A", "ledger_rials": stored_ledger,
                "held_rials": 0, "available_rials": stored_ledger}])
    );
    assert_eq!(member["coupons"], view["coupons"]);
    assert_eq!(member["tier"], view["tier"]);
    assert_eq!(rrns(&member["history"]), rich);
    assert!(!member.to_string().contains("989121234567"));

    // MB-2: three cards, in a group, no phone, the history of all their cards.
    let member = console.ok("/api/v1/members/MB-2/view").await;
    assert_eq!(
        member["member"],
        json!({"code": "MB-2", "locale": "fa", "phone": null, "groups": ["vip"]})
    );
    let cards: Vec<(&str, &str, &str, &str)> = member["cards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["code"].as_str().unwrap(),
                c["last4"].as_str().unwrap(),
                c["status"].as_str().unwrap(),
                c["expiry"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        cards,
        [
            ("C-POOR", "2228", "active", "2099-12"),
            ("C-BLOCKED", "3334", "blocked", "2099-12"),
            ("C-EXPIRED", "4440", "active", "2020-01"),
        ]
    );
    let poor_history = newest_first(&made, |m| m.card == "C-POOR");
    let paged = pages(&mut console, "/api/v1/members/MB-2/view?", 1, "history").await;
    assert_eq!(paged.concat(), poor_history);
    assert_eq!(paged.len(), 2);

    for path in ["/api/v1/cards/C-NONE/view", "/api/v1/members/MB-NONE/view"] {
        let (status, body) = console.get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    console.assert_no_pan();
}

async fn terminal_list_pages_and_shows_last_seen(db: Db) {
    let mut console = Console::start(db).await;
    let list = console.ok("/api/v1/terminals").await;
    assert_eq!(
        list,
        json!({"items": [
            {"terminal_id": "TRM00001", "merchant": "M-A", "status": "active",
             "ksi": "0123456789ABCDEF", "previous_key_in_overlap": false,
             "previous_key_valid_until_ms": null, "groups": [], "last_seen_ms": null},
            {"terminal_id": "TRM00002", "merchant": "M-A", "status": "inactive",
             "ksi": "0123456789ABCD02", "previous_key_in_overlap": false,
             "previous_key_valid_until_ms": null, "groups": [], "last_seen_ms": null},
            {"terminal_id": "TRM00003", "merchant": "M-OFF", "status": "active",
             "ksi": "0123456789ABCD03", "previous_key_in_overlap": false,
             "previous_key_valid_until_ms": null, "groups": [], "last_seen_ms": null},
        ], "next": null})
    );

    // Two purchases five seconds apart: last seen is the second's creation.
    let mut client = console.harness.client().await;
    let mut t = counter();
    buy(
        &console,
        &mut client,
        &mut t,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
    )
    .await;
    console.harness.clock.advance(5_000);
    buy(
        &console,
        &mut client,
        &mut t,
        ProcessingCode::BankPurchase,
        12_000,
        POOR,
    )
    .await;
    let list = console.ok("/api/v1/terminals").await;
    assert_eq!(list["items"][0]["last_seen_ms"], START_MS + 5_000);
    assert_eq!(list["items"][1]["last_seen_ms"], Value::Null);
    let newest: i64 = console
        .harness
        .scalar("SELECT MAX(created_at_ms) FROM transactions")
        .await;
    assert_eq!(newest, START_MS + 5_000);

    // A rotation's previous key is in its overlap until it ends; a group shows.
    console
        .write(
            "POST",
            "/api/v1/terminals/TRM00002/rotate-key",
            None,
            json!({"overlap_seconds": 3600}),
        )
        .await;
    console
        .write(
            "PUT",
            "/api/v1/terminal-groups/tills",
            None,
            json!({"name": "Tills"}),
        )
        .await;
    console
        .write(
            "PUT",
            "/api/v1/terminals/TRM00001",
            None,
            json!({"groups": ["tills"]}),
        )
        .await;
    let rotated = console.ok("/api/v1/terminals?merchant=M-A").await;
    let items = rotated["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{rotated}");
    assert_eq!(items[0]["groups"], json!(["tills"]));
    assert_eq!(items[1]["terminal_id"], "TRM00002");
    assert_eq!(items[1]["previous_key_in_overlap"], true);
    let until = START_MS + 5_000 + 3_600_000;
    assert_eq!(items[1]["previous_key_valid_until_ms"], until);
    assert_ne!(items[1]["ksi"], "0123456789ABCD02", "a new KSI");
    console.harness.clock.advance(3_600_001);
    let later = console.ok("/api/v1/terminals?after=TRM00001&limit=1").await;
    assert_eq!(later["items"][0]["terminal_id"], "TRM00002");
    assert_eq!(later["items"][0]["previous_key_in_overlap"], false);
    assert_eq!(later["items"][0]["previous_key_valid_until_ms"], until);
    assert_eq!(later["next"], "TRM00002");

    // Pages of one, by merchant.
    let mut seen = Vec::new();
    let mut next = Value::Null;
    for _ in 0..3 {
        let path = match next.as_str() {
            Some(after) => format!("/api/v1/terminals?limit=1&after={after}"),
            None => "/api/v1/terminals?limit=1".to_owned(),
        };
        let page = console.ok(&path).await;
        seen.push(page["items"][0]["terminal_id"].as_str().unwrap().to_owned());
        next = page["next"].clone();
    }
    assert_eq!(seen, ["TRM00001", "TRM00002", "TRM00003"]);
    assert!(next.is_null());
    let off = console.ok("/api/v1/terminals?merchant=M-OFF").await;
    assert_eq!(off["items"].as_array().unwrap().len(), 1);
    assert_eq!(off["items"][0]["terminal_id"], "TRM00003");
    let none = console.ok("/api/v1/terminals?merchant=M-NONE").await;
    assert_eq!(none, json!({"items": [], "next": null}));
    let after_all = console.ok("/api/v1/terminals?after=TRM00003").await;
    assert_eq!(after_all, json!({"items": [], "next": null}));
    // No read shows a key (the rotation's own answer carries the new one, once).
    for (method, body) in &console.bodies {
        if method == "GET" {
            assert!(!body.contains("tmk"), "a key field in {body}");
        }
    }
    console.assert_no_pan();
}

async fn bad_parameters_are_refused_by_name(db: Db) {
    let mut console = Console::start(db).await;
    let cases: &[(&str, &[&str])] = &[
        ("/api/v1/transactions?limit=0", &["limit"]),
        ("/api/v1/transactions?limit=501", &["limit"]),
        ("/api/v1/transactions?limit=ten", &["limit"]),
        ("/api/v1/transactions?limit=", &["limit"]),
        ("/api/v1/transactions?after=0", &["after"]),
        ("/api/v1/transactions?after=x", &["after"]),
        ("/api/v1/transactions?after=12345", &["after"]),
        ("/api/v1/transactions?from=2026-13-01", &["from"]),
        ("/api/v1/transactions?to=yesterday", &["to"]),
        (
            "/api/v1/transactions?from=2026-11-23&to=2026-11-22",
            &["from"],
        ),
        ("/api/v1/transactions?bin=603799", &["last4"]),
        ("/api/v1/transactions?last4=1112", &["bin"]),
        ("/api/v1/transactions?bin=60379&last4=1112", &["bin"]),
        ("/api/v1/transactions?bin=603799&last4=11a2", &["last4"]),
        ("/api/v1/transactions?outcome=done", &["outcome"]),
        ("/api/v1/transactions?card=C%20RICH", &["card"]),
        ("/api/v1/transactions?merchant=", &["merchant"]),
        ("/api/v1/transactions?terminal=TRM1", &["terminal"]),
        ("/api/v1/transactions?rrn=123", &["rrn"]),
        ("/api/v1/transactions?pan=6037991111111112", &["pan"]),
        // A name that is not one is not echoed (it might be a card number).
        ("/api/v1/transactions?6037991111111112=1", &[""]),
        ("/api/v1/transactions?limit=5&limit=6", &["limit"]),
        (
            "/api/v1/transactions?limit=0&outcome=x&bin=1",
            &["bin", "last4", "outcome", "limit"],
        ),
        ("/api/v1/cards/C-RICH/view?limit=501", &["limit"]),
        ("/api/v1/cards/C-RICH/view?after=-4", &["after"]),
        ("/api/v1/cards/C-RICH/view?outcome=pending", &["outcome"]),
        ("/api/v1/members/MB-1/view?after=abc", &["after"]),
        ("/api/v1/terminals?limit=1001", &["limit"]),
        ("/api/v1/terminals?limit=0", &["limit"]),
        ("/api/v1/terminals?after=TRM000011", &["after"]),
        ("/api/v1/terminals?after=", &["after"]),
        ("/api/v1/terminals?merchant=M%21", &["merchant"]),
        ("/api/v1/terminals?card=C-RICH", &["card"]),
    ];
    for (path, fields) in cases {
        let (status, body) = console.get(path).await;
        assert_eq!(status, 422, "{path}: {body}");
        let named: Vec<&str> = body["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["field"].as_str().unwrap())
            .collect();
        assert_eq!(named, *fields, "{path}: {body}");
        assert!(body["error"].is_string());
    }
    // Without a token: 401, as every route.
    for path in [
        "/api/v1/transactions",
        "/api/v1/transactions/1",
        "/api/v1/cards/C-RICH/view",
        "/api/v1/members/MB-1/view",
        "/api/v1/terminals",
    ] {
        let (status, _) = console.call("GET", path, None, None, "").await;
        assert_eq!(status, 401, "{path}");
    }
    // The limits themselves are accepted.
    for path in [
        "/api/v1/transactions?limit=1",
        "/api/v1/transactions?limit=500&from=2026-11-22&to=2026-11-22",
        "/api/v1/terminals?limit=1000&after=%20",
        "/api/v1/cards/C-RICH/view?limit=500",
    ] {
        console.ok(path).await;
    }
    console.assert_no_pan();
}

on_both!(
    search_finds_by_each_filter_and_pages_cover_everything,
    detail_shows_capture_reversal_and_movements,
    card_and_member_views_show_balances_and_never_a_pan,
    terminal_list_pages_and_shows_last_seen,
    bad_parameters_are_refused_by_name,
);

/// Every statement the reads run is a search of an index or a primary key: no step scans a
/// table (the page of ids a search picks first is the one thing read in full, at most
/// `limit + 1` rows), so each costs the same on a million cards as on four.
#[tokio::test]
async fn every_read_is_an_index_search() {
    let harness = Harness::start().await;
    let plans = switch::store::views::plans(harness.pool().await)
        .await
        .unwrap();
    assert!(plans.len() > 30, "{plans:?}");
    for (name, lines) in &plans {
        assert!(!lines.is_empty(), "{name}");
        assert!(
            lines.iter().any(|line| line.starts_with("SEARCH")),
            "{name}: {lines:?}"
        );
        for line in lines {
            if line.starts_with("SCAN") {
                assert_eq!(line, "SCAN page", "{name}: {lines:?}");
            }
            if line.starts_with("SEARCH transactions") || line.starts_with("SEARCH t ") {
                assert!(line.contains(" USING "), "{name}: {line}");
            }
        }
    }
    let plan = |name: &str| -> String {
        plans
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no plan {name}"))
            .1
            .join("\n")
    };
    // The leading filter's index is the one walked.
    for (name, index) in [
        ("search", "transactions_created"),
        ("search by date", "transactions_created"),
        ("search by rrn", "sqlite_autoindex_transactions_1"),
        ("search by card", "transactions_card"),
        ("search by bin and last four", "cards_bin_last4"),
        ("search by terminal", "transactions_terminal"),
        ("search by merchant", "transactions_merchant"),
        ("search by merchant and card", "transactions_card"),
        ("search by merchant and outcome", "transactions_merchant"),
        ("card history", "transactions_card"),
        ("member history", "cards_member"),
        ("reversed", "transactions_state"),
        ("expired", "transactions_state"),
        ("confirmed", "transactions_created"),
        ("terminals", "transactions_terminal"),
        ("terminals of a merchant", "terminals_merchant"),
        ("terminal groups", "terminal_group_members_terminal"),
        ("member groups", "member_group_members_member"),
        ("lots", "store_credit_lots_card"),
        ("movements", "balance_movements_txn"),
    ] {
        assert!(plan(name).contains(index), "{name}: {}", plan(name));
    }
}
