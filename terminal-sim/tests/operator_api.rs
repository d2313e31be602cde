//! Goal: the operator API (`/api/v1` on the admin port, issue "Operator admin API") refuses
//! what it must with the right status and field names, changes reference data only through
//! the import's validation, audits every change, makes a change live for the next transaction
//! over TCP without a restart, and never returns or records a PAN or a TMK it did not just
//! create.
//!
//! Method: the in-process switch of `common::Harness`, tokens made with the library call the
//! `lsw-switch token add` command uses, and plain HTTP/1.1 over TCP; the LSTI-1 side goes
//! through `terminal_sim::client` as a terminal would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use serde_json::{json, Value};
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTP exchange: status, the `www-authenticate` header if any, and the body as JSON
/// (`Value::Null` when it is not JSON).
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let challenge = head
        .lines()
        .find_map(|line| line.strip_prefix("www-authenticate: "))
        .map(str::to_owned);
    (
        status,
        challenge,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

struct Api {
    harness: Harness,
    writer: String,
    reader: String,
    /// Every body the API returned, for the PAN and key scan at the end.
    seen: Vec<String>,
}

/// Every log line of this test binary, at every level, for the PAN and key scans.
fn logs() -> &'static std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buffer.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .init();
        buffer
    })
}

struct LogWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fails when the captured logs hold `secret` in clear or in hex.
fn assert_not_logged(secret: &str, what: &str) {
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "nothing was logged");
    assert!(!logs.contains(secret), "{what} in the logs");
    assert!(
        !logs.contains(&hex::encode(secret)),
        "{what} in hex in the logs"
    );
}

impl Api {
    async fn start() -> Api {
        logs();
        let harness = Harness::start().await;
        let pool = harness.pool().await;
        let now = UnixMillis::new(START_MS);
        let writer = auth::add_token(pool, "ops-alice", Role::Write, now)
            .await
            .unwrap();
        let reader = auth::add_token(pool, "finance-bob", Role::Read, now)
            .await
            .unwrap();
        Api {
            harness,
            writer,
            reader,
            seen: Vec::new(),
        }
    }

    async fn write(&mut self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let addr = self.harness.running().admin_addr;
        let (status, _, value) = call(addr, method, path, Some(&self.writer), body).await;
        self.seen.push(value.to_string());
        (status, value)
    }

    async fn read(&mut self, path: &str) -> (u16, Value) {
        let addr = self.harness.running().admin_addr;
        let (status, _, value) = call(addr, "GET", path, Some(&self.reader), None).await;
        self.seen.push(value.to_string());
        (status, value)
    }
}

/// The fields of a valid new merchant.
fn bakery() -> Value {
    json!({
        "name": "Bakery",
        "iban": "IR850120000000004567891235",
        "fee_rate": "1.5",
        "fee_rials_min": 1000,
        "fee_rials_max": 50000,
        "amount_rials_max": 100000000,
        "cashback_allowed": true,
        "credit_expiry_days": 90,
        "groups": ["shops"],
    })
}

/// Method, path, token, body, and the status expected (0: 200 without the API's checks).
type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<&'a str>, u16);

fn problem_fields(body: &Value) -> Vec<String> {
    body["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|problem| problem["field"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn tokens_and_roles() {
    let api = Api::start().await;
    let addr = api.harness.running().admin_addr;
    let body = bakery().to_string();
    let cases: &[Case<'_>] = &[
        ("GET", "/api/v1/merchants", None, None, 401),
        (
            "GET",
            "/api/v1/merchants",
            Some("lsw_not-a-token"),
            None,
            401,
        ),
        ("GET", "/api/v1/merchants", Some(""), None, 401),
        ("GET", "/api/v1/merchants", Some(&api.reader), None, 200),
        (
            "PUT",
            "/api/v1/merchants/M-NEW",
            Some(&api.reader),
            Some(&body),
            403,
        ),
        (
            "POST",
            "/api/v1/cards/C-RICH/block",
            Some(&api.reader),
            None,
            403,
        ),
        (
            "POST",
            "/api/v1/terminals",
            Some(&api.reader),
            Some("{}"),
            403,
        ),
        ("GET", "/api/v1/openapi.json", None, None, 200),
        ("GET", "/healthz", None, None, 0),
    ];
    for (method, path, token, body, expected) in cases {
        let (status, challenge, value) = call(addr, method, path, *token, *body).await;
        if *expected == 0 {
            assert_eq!(status, 200, "{method} {path}");
            continue;
        }
        assert_eq!(status, *expected, "{method} {path} with {token:?}: {value}");
        if status == 401 {
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{method} {path}");
            assert!(value["error"].as_str().unwrap().contains("token"));
        }
    }
    // A revoked token stops working at once.
    let pool = api.harness.pool().await;
    assert!(
        auth::revoke_token(pool, "finance-bob", UnixMillis::new(START_MS))
            .await
            .unwrap()
    );
    let (status, _, _) = call(addr, "GET", "/api/v1/merchants", Some(&api.reader), None).await;
    assert_eq!(status, 401);
    // Tokens are stored hashed: no row holds a token's text.
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_sha256 FROM operator_tokens")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    for hash in &stored {
        assert_eq!(hash.len(), 32);
        assert!(!String::from_utf8_lossy(hash).contains("lsw_"));
    }
}

#[tokio::test]
async fn merchants_validate_like_the_import() {
    let mut api = Api::start().await;
    let (status, list) = api.read("/api/v1/merchants").await;
    assert_eq!(status, 200);
    let codes: Vec<&str> = list["merchants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["M-A", "M-OFF"]);
    assert_eq!(api.read("/api/v1/merchants/M-NONE").await.0, 404);

    // Bad input: the status, and every wrong field by name; nothing changes.
    let version = api
        .harness
        .scalar("SELECT version FROM reference_meta")
        .await;
    let mut bad_iban = bakery();
    bad_iban["iban"] = json!("IR850120000000004567891236");
    let mut bad_many = bakery();
    bad_many["fee_rate"] = json!("101");
    bad_many["groups"] = json!(["no-such-group"]);
    bad_many["status"] = json!("open");
    let mut wrong_code = bakery();
    wrong_code["code"] = json!("M-OTHER");
    let mut unknown_field = bakery();
    unknown_field["colour"] = json!("blue");
    let cases: Vec<(String, u16, Vec<&str>)> = vec![
        (bad_iban.to_string(), 422, vec!["iban"]),
        (
            bad_many.to_string(),
            422,
            vec!["status", "fee_rate", "groups"],
        ),
        (wrong_code.to_string(), 422, vec!["code"]),
        ("not json".to_owned(), 400, vec![]),
        ("[1, 2]".to_owned(), 400, vec![]),
        (unknown_field.to_string(), 422, vec!["colour"]),
    ];
    for (body, expected, fields) in cases {
        let (status, value) = api
            .write("PUT", "/api/v1/merchants/M-NEW", Some(&body))
            .await;
        assert_eq!(status, expected, "{body}: {value}");
        if expected == 422 {
            let mut got = problem_fields(&value);
            got.sort();
            let mut want: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
            want.sort();
            assert_eq!(got, want, "{body}");
        }
    }
    assert_eq!(
        api.harness
            .scalar("SELECT version FROM reference_meta")
            .await,
        version
    );
    assert_eq!(
        api.harness.scalar("SELECT count(*) FROM audit_log").await,
        0
    );

    // Create, read back, replace, and replace with the same record (no new version).
    let (status, created) = api
        .write(
            "PUT",
            "/api/v1/merchants/M-NEW",
            Some(&bakery().to_string()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["fee_rate"], "1.5");
    assert_eq!(created["status"], "active");
    let (status, shown) = api.read("/api/v1/merchants/M-NEW").await;
    assert_eq!(status, 200);
    assert_eq!(shown, created);
    assert_eq!(
        api.harness
            .scalar("SELECT version FROM reference_meta")
            .await,
        version + 1
    );
    let mut changed = shown.clone();
    changed["fee_rate"] = json!("2");
    let (status, replaced) = api
        .write("PUT", "/api/v1/merchants/M-NEW", Some(&changed.to_string()))
        .await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(replaced["fee_rate"], "2");
    let (status, _) = api
        .write("PUT", "/api/v1/merchants/M-NEW", Some(&changed.to_string()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        api.harness
            .scalar("SELECT version FROM reference_meta")
            .await,
        version + 2
    );
    let (_, audit) = api.read("/api/v1/audit").await;
    let actions: Vec<(&str, &str, &str)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operator"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("ops-alice", "replace", "M-NEW"),
            ("ops-alice", "replace", "M-NEW"),
            ("ops-alice", "create", "M-NEW"),
        ]
    );
    assert_eq!(api.read("/api/v1/audit?limit=0").await.0, 422);
    assert_eq!(api.read("/api/v1/audit?before=0").await.0, 422);
    assert_eq!(api.read("/api/v1/audit?after=1").await.0, 422);
    assert_eq!(
        api.read("/api/v1/audit?limit=2").await.1["entries"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Pages of one row follow each other to the oldest, the same rows as one page of all.
    let (_, whole) = api.read("/api/v1/audit").await;
    let all: Vec<i64> = whole["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(whole["next"], Value::Null);
    let mut paged = Vec::new();
    let mut path = "/api/v1/audit?limit=1".to_owned();
    loop {
        let (status, page) = api.read(&path).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/audit?limit=1&before={next}"),
            None => break,
        }
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn changes_are_live_on_the_next_transaction() {
    let mut api = Api::start().await;
    // A new terminal: its TMK comes back once, and it can trade at once.
    let body = json!({"terminal_id": "TRM00077", "merchant": "M-A"}).to_string();
    let (status, created) = api.write("POST", "/api/v1/terminals", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let tmk_hex = created["tmk_hex"].as_str().unwrap().to_owned();
    let ksi = created["ksi"].as_str().unwrap().to_owned();
    assert_eq!(tmk_hex.len(), 64);
    assert_eq!(ksi.len(), 16);
    let (status, shown) = api.read("/api/v1/terminals/TRM00077").await;
    assert_eq!(status, 200);
    assert!(shown.get("tmk_hex").is_none(), "{shown}");
    assert_eq!(shown["ksi"], ksi.as_str());
    let mut fresh = terminal("TRM00077", &ksi, &hex::decode(&tmk_hex).unwrap());
    let mut client = api.harness.client().await;
    let at = api.harness.now_seconds();
    let (_, response) = purchase(
        &mut client,
        &mut fresh,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved, "{response:?}");

    // Refusals: a taken terminal id or KSI, an unknown merchant, a TMK offered by the caller.
    let cases: &[(Value, u16)] = &[
        (json!({"terminal_id": "TRM00077", "merchant": "M-A"}), 409),
        (
            json!({"terminal_id": "TRM00078", "merchant": "M-A", "ksi": ksi}),
            409,
        ),
        (
            json!({"terminal_id": "TRM00079", "merchant": "M-NONE"}),
            422,
        ),
        (json!({"terminal_id": "TRM0007", "merchant": "M-A"}), 422),
        (
            json!({"terminal_id": "TRM00080", "merchant": "M-A", "tmk_hex": "00".repeat(32)}),
            422,
        ),
    ];
    for (body, expected) in cases {
        let (status, value) = api
            .write("POST", "/api/v1/terminals", Some(&body.to_string()))
            .await;
        assert_eq!(status, *expected, "{body}: {value}");
        assert!(value.get("tmk_hex").is_none());
    }

    // Blocking a card declines its next request 62; unblocking approves again.
    let mut counter = counter();
    for (action, status_after, code) in [
        ("block", "blocked", ResponseCode::CardBlocked),
        ("unblock", "active", ResponseCode::Approved),
    ] {
        let path = format!("/api/v1/cards/C-RICH/{action}");
        let (status, card) = api.write("POST", &path, None).await;
        assert_eq!(status, 200, "{action}: {card}");
        assert_eq!(card["status"], status_after);
        let (_, response) = purchase(
            &mut client,
            &mut counter,
            ProcessingCode::BankPurchase,
            10_000,
            RICH,
            at,
        )
        .await;
        assert_eq!(response.code, code, "after {action}");
    }
    assert_eq!(
        api.write("POST", "/api/v1/cards/C-NONE/block", None)
            .await
            .0,
        404
    );
    let (status, card) = api.read("/api/v1/cards/C-RICH").await;
    assert_eq!(status, 200);
    assert_eq!(card["bin"], "603799");
    assert_eq!(card["last4"], "1112");

    // A restart serves the same data.
    api.harness.restart().await;
    let (status, shown_again) = api.read("/api/v1/terminals/TRM00077").await;
    assert_eq!(status, 200);
    assert_eq!(shown_again, shown);

    // No response but the create's holds the TMK; none holds a PAN; the audit log holds
    // neither.
    let pans = [RICH, POOR, BLOCKED, EXPIRED];
    let create_response = created.to_string();
    for body in &api.seen {
        for pan in pans {
            assert!(!body.contains(pan), "a PAN in {body}");
        }
        if *body != create_response {
            assert!(!body.contains(&tmk_hex), "the TMK in {body}");
        }
    }
    let details: Vec<String> = sqlx::query_scalar("SELECT detail FROM audit_log")
        .fetch_all(api.harness.pool().await)
        .await
        .unwrap();
    assert!(!details.is_empty());
    for detail in details {
        assert!(!detail.contains(&tmk_hex), "the TMK in the audit log");
        assert!(
            !detail.contains("tmk"),
            "a key field in the audit log: {detail}"
        );
    }
    assert_not_logged(&tmk_hex, "the TMK");
    for pan in pans {
        assert_not_logged(pan, "a PAN");
    }
}

#[tokio::test]
async fn openapi_names_exactly_the_routes_served() {
    let document: Value = serde_json::from_str(switch::api::OPENAPI).unwrap();
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut served: Vec<String> = switch::api::ROUTES
        .iter()
        .map(|(method, path)| format!("{method} {path}"))
        .collect();
    served.sort();
    assert_eq!(documented, served);
    // Each is served: an unknown id gets the API's JSON 404, never the router's bare one, and
    // no route answers 405; a path outside the list gets the bare 404.
    let api = Api::start().await;
    let addr = api.harness.running().admin_addr;
    for (method, path) in switch::api::ROUTES {
        let concrete = path
            .replace("{code}", "X-NONE")
            .replace("{terminal_id}", "TRMNONE0");
        let (status, _, body) = call(addr, method, &concrete, Some(&api.writer), Some("{}")).await;
        assert_ne!(status, 405, "{method} {path}");
        assert!(
            body.is_object(),
            "{method} {path}: not served by the API ({status})"
        );
    }
    let (status, _, body) = call(addr, "GET", "/api/v1/nothing", Some(&api.writer), None).await;
    assert_eq!((status, body), (404, Value::Null));
}

/// The admin port bounds its clients: past `CONNECTIONS_MAX` a connection is closed at once,
/// and a client that goes silent mid-request is closed after `IDLE_TIMEOUT`; the API still
/// answers others meanwhile.
#[tokio::test]
async fn admin_port_bounds_idle_and_excess_connections() {
    let api = Api::start().await;
    let addr = api.harness.running().admin_addr;
    let mut held = Vec::new();
    for _ in 0..switch::admin::CONNECTIONS_MAX {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    // Give the listener time to accept them all.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut excess = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0_u8; 1];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(2), excess.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the excess connection was kept"
    );
    // The silent ones are closed after the idle timeout, and the port serves again.
    let limit = switch::admin::IDLE_TIMEOUT + std::time::Duration::from_secs(3);
    let first = held.first_mut().unwrap();
    let read = tokio::time::timeout(limit, first.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "a silent client was kept"
    );
    drop(held);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _, _) = call(addr, "GET", "/api/v1/merchants", Some(&api.reader), None).await;
    assert_eq!(status, 200);
}

/// Tiers, groups and members by `PUT`, and a card issued with its PAN: each validated as an
/// import, live for the next transaction, and the PAN never answered or audited.
#[tokio::test]
async fn records_and_card_issue() {
    let mut api = Api::start().await;
    // (path, body, status, fields in error)
    let cases: Vec<(&str, Value, u16, Vec<&str>)> = vec![
        (
            "/api/v1/tiers/gold",
            json!({"name": "Gold", "cashback_rate": "4"}),
            201,
            vec![],
        ),
        (
            "/api/v1/tiers/gold",
            json!({"name": "Gold", "cashback_rate": "5"}),
            200,
            vec![],
        ),
        (
            "/api/v1/tiers/bad",
            json!({"name": "Bad", "cashback_rate": "150"}),
            422,
            vec!["cashback_rate"],
        ),
        (
            "/api/v1/member-groups/vip",
            json!({"name": "VIP"}),
            201,
            vec![],
        ),
        (
            "/api/v1/merchant-groups/malls",
            json!({"name": ""}),
            422,
            vec!["name"],
        ),
        (
            "/api/v1/terminal-groups/front",
            json!({"name": "Front desk"}),
            201,
            vec![],
        ),
        (
            "/api/v1/members/MB-9",
            json!({"groups": ["vip"]}),
            201,
            vec![],
        ),
        (
            "/api/v1/members/MB-8",
            json!({"groups": ["nobody"]}),
            422,
            vec!["groups"],
        ),
        (
            "/api/v1/members/MB-7",
            json!({"phone": "09121234567", "locale": "de"}),
            422,
            vec!["phone", "locale"],
        ),
        (
            "/api/v1/members/MB-1",
            json!({"code": "MB-2"}),
            422,
            vec!["code"],
        ),
    ];
    for (path, body, expected, fields) in cases {
        let (status, value) = api.write("PUT", path, Some(&body.to_string())).await;
        assert_eq!(status, expected, "{path} {body}: {value}");
        if expected == 422 {
            assert_eq!(problem_fields(&value), fields, "{path}");
        }
    }
    // Each kind: create, read one, find it in the list.
    for (kind, list_key, code, body) in [
        (
            "merchant-groups",
            "merchant_groups",
            "malls",
            json!({"name": "Malls"}),
        ),
        (
            "member-groups",
            "member_groups",
            "staff",
            json!({"name": "Staff"}),
        ),
        (
            "terminal-groups",
            "terminal_groups",
            "kiosks",
            json!({"name": "Kiosks"}),
        ),
        (
            "tiers",
            "tiers",
            "platinum",
            json!({"name": "Platinum", "cashback_rate": "6"}),
        ),
        ("members", "members", "MB-7", json!({"groups": ["staff"]})),
    ] {
        let path = format!("/api/v1/{kind}/{code}");
        let (status, created) = api.write("PUT", &path, Some(&body.to_string())).await;
        assert_eq!(status, 201, "{path}: {created}");
        let (status, shown) = api.read(&path).await;
        assert_eq!((status, &shown), (200, &created), "{path}");
        let (status, list) = api.read(&format!("/api/v1/{kind}")).await;
        assert_eq!(status, 200);
        assert!(
            list[list_key].as_array().unwrap().contains(&created),
            "{kind}: {list}"
        );
    }
    let (status, tier) = api.read("/api/v1/tiers/gold").await;
    assert_eq!((status, tier["cashback_rate"].as_str()), (200, Some("5")));
    let (_, members) = api.read("/api/v1/members").await;
    let codes: Vec<&str> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"MB-9"), "{members}");
    assert_eq!(api.read("/api/v1/member-groups/none").await.0, 404);

    // A card issued to the new member, in the new tier, trades at once.
    let new_pan = "6037995555555551";
    let issue = |code: &str, pan: &str| {
        json!({"code": code, "pan": pan, "member": "MB-9", "expiry": "2030-06", "tier": "gold"})
            .to_string()
    };
    let (status, card) = api
        .write("POST", "/api/v1/cards", Some(&issue("C-NEW", new_pan)))
        .await;
    assert_eq!(status, 201, "{card}");
    assert_eq!(
        (card["bin"].as_str(), card["last4"].as_str()),
        (Some("603799"), Some("5551"))
    );
    let mut counter = counter();
    let mut client = api.harness.client().await;
    let at = api.harness.now_seconds();
    let (_, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        10_000,
        new_pan,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
    let refusals: Vec<(String, u16)> = vec![
        (issue("C-NEW", "6037990000000006"), 409),
        (issue("C-OTHER", new_pan), 409),
        (issue("C-LUHN", "6037995555555552"), 422),
    ];
    for (body, expected) in refusals {
        let (status, value) = api.write("POST", "/api/v1/cards", Some(&body)).await;
        assert_eq!(status, expected, "{value}");
    }

    // Renewal: only to a later month.
    let later = json!({"expiry": "2031-01"}).to_string();
    let earlier = json!({"expiry": "2029-01"}).to_string();
    let (status, card) = api
        .write("POST", "/api/v1/cards/C-NEW/renew", Some(&later))
        .await;
    assert_eq!(
        (status, card["expiry"].as_str()),
        (200, Some("2031-01")),
        "{card}"
    );
    let (status, value) = api
        .write("POST", "/api/v1/cards/C-NEW/renew", Some(&earlier))
        .await;
    assert_eq!(status, 422, "{value}");
    assert_eq!(problem_fields(&value), ["expiry"]);

    // The PAN is in no answer and no audit row.
    for body in &api.seen {
        assert!(!body.contains(new_pan), "the PAN in {body}");
    }
    let details: Vec<String> = sqlx::query_scalar("SELECT detail FROM audit_log")
        .fetch_all(api.harness.pool().await)
        .await
        .unwrap();
    assert!(
        details
            .iter()
            .all(|d| !d.contains(new_pan) && !d.contains("pan")),
        "{details:?}"
    );
    assert_not_logged(new_pan, "the issued PAN");
}

/// The reports count confirmed transactions by Tehran day, merchant and member, list pending
/// holds and what lapses soon, as JSON and as CSV, and refuse malformed parameters.
#[tokio::test]
async fn reports_add_up_to_the_transactions() {
    use protocol::field54::AmountKind;

    let mut api = Api::start().await;
    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    // Two confirmed bank purchases and one club purchase left pending.
    let mut expected = [0_u64; 4]; // gross, discount, fee, cashback
    for gross in [10_000, 20_000] {
        let (out, response) = purchase(
            &mut client,
            &mut counter,
            ProcessingCode::BankPurchase,
            gross,
            RICH,
            at,
        )
        .await;
        assert_eq!(response.code, ResponseCode::Approved);
        expected[0] += gross;
        expected[1] += amount(&response, AmountKind::Discount);
        expected[2] += amount(&response, AmountKind::MerchantFee);
        expected[3] += amount(&response, AmountKind::Cashback);
        let confirm = counter.confirm(&out, response.rrn.unwrap(), at).unwrap();
        assert_eq!(
            exchange(&mut client, &counter, &confirm).await.code,
            ResponseCode::Approved
        );
    }
    let (_, held) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::ClubPurchase,
        5_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(held.code, ResponseCode::Approved);
    let held_club = amount(&held, AmountKind::ClubUsed);

    // 2026-11-22T18:30Z is 22:00 in Tehran on the 22nd.
    let (status, report) = api
        .read("/api/v1/reports/activity?from=2026-11-22&to=2026-11-22")
        .await;
    assert_eq!(status, 200, "{report}");
    let rows = report["activity"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{report}");
    let row = &rows[0];
    assert_eq!(row["day"], "2026-11-22");
    assert_eq!(row["count"], 2);
    let sums = [
        row["gross_rials"].as_u64(),
        row["discount_rials"].as_u64(),
        row["fee_rials"].as_u64(),
        row["cashback_rials"].as_u64(),
    ];
    assert_eq!(sums, expected.map(Some));
    assert_eq!(
        row["gross_rials"].as_u64().unwrap(),
        [
            "discount_rials",
            "store_credit_rials",
            "club_rials",
            "bank_rest_rials"
        ]
        .iter()
        .map(|c| row[*c].as_u64().unwrap())
        .sum::<u64>()
    );
    let (_, by_merchant) = api.read("/api/v1/reports/activity?by=merchant").await;
    assert_eq!(by_merchant["activity"][0]["merchant"], "M-A");
    let (_, later) = api.read("/api/v1/reports/activity?from=2026-11-23").await;
    assert_eq!(later["activity"].as_array().unwrap().len(), 0);

    // CSV: a header and the same numbers.
    let addr = api.harness.running().admin_addr;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /api/v1/reports/activity?by=terminal&format=csv HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer {}\r\n\r\n",
        api.reader
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("text/csv"), "{head}");
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "day,terminal,count,gross_rials,discount_rials,fee_rials,store_credit_rials,club_rials,bank_rest_rials,cashback_rials");
    assert!(
        lines[1].starts_with(&format!(
            "2026-11-22,TRM00001,2,{},{},{}",
            expected[0], expected[1], expected[2]
        )),
        "{body}"
    );

    let (_, top) = api.read("/api/v1/reports/top-members?limit=5").await;
    assert_eq!(top["top_members"][0]["member"], "MB-1");
    assert_eq!(
        top["top_members"][0]["gross_rials"].as_u64(),
        Some(expected[0])
    );
    let (_, holds) = api.read("/api/v1/reports/open-holds").await;
    let holds = holds["open_holds"].as_array().unwrap();
    assert_eq!(holds.len(), 1);
    assert_eq!(holds[0]["rrn"], held.rrn.unwrap().as_str());
    assert_eq!(holds[0]["club_rials"].as_u64(), Some(held_club));

    // Lapsing: the cashback lots (90 days at M-A) within 100 days, not 30; a card expiring
    // this month lapses on 2026-12-01, within 30 days but not 5.
    let card =
        json!({"code": "C-SOON", "pan": "6037995555555551", "member": "MB-1", "expiry": "2026-11"});
    assert_eq!(
        api.write("POST", "/api/v1/cards", Some(&card.to_string()))
            .await
            .0,
        201
    );
    let what = |report: &Value| -> Vec<String> {
        report["expiring"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["what"].as_str().unwrap(),
                    r["card"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (_, soon) = api.read("/api/v1/reports/expiring?days=100").await;
    assert!(
        what(&soon).contains(&"store_credit C-RICH".to_owned()),
        "{soon}"
    );
    assert!(what(&soon).contains(&"card C-SOON".to_owned()), "{soon}");
    let (_, month) = api.read("/api/v1/reports/expiring?days=30").await;
    assert_eq!(what(&month), ["card C-SOON"], "{month}");
    let (_, week) = api.read("/api/v1/reports/expiring?days=5").await;
    assert_eq!(what(&week), Vec::<String>::new(), "{week}");

    for (path, field) in [
        (
            "/api/v1/reports/activity?from=2026-11-23&to=2026-11-22",
            "from",
        ),
        ("/api/v1/reports/activity?from=2026-13-01", "from"),
        ("/api/v1/reports/activity?by=shop", "by"),
        ("/api/v1/reports/activity?format=xml", "format"),
        ("/api/v1/reports/top-members?limit=0", "limit"),
        ("/api/v1/reports/expiring?days=400", "days"),
    ] {
        let (status, value) = api.read(path).await;
        assert_eq!(status, 422, "{path}: {value}");
        assert_eq!(problem_fields(&value), [field], "{path}");
    }
}

/// The segment reports: RFM scores (⌈5 k / n⌉ per dimension, equal values equal) over the
/// last 365 days, and the win-back list of members inactive for N days, biggest spenders
/// first; bad parameters name their field.
#[tokio::test]
async fn rfm_and_win_back_segments() {
    let mut api = Api::start().await;
    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    // MB-1 (card RICH) buys twice, MB-2 (card POOR) once and less, all at the same instant.
    for (card, gross) in [(RICH, 10_000), (RICH, 20_000), (POOR, 5_000)] {
        let (out, response) = purchase(
            &mut client,
            &mut counter,
            ProcessingCode::BankPurchase,
            gross,
            card,
            at,
        )
        .await;
        assert_eq!(response.code, ResponseCode::Approved);
        let confirm = counter.confirm(&out, response.rrn.unwrap(), at).unwrap();
        assert_eq!(
            exchange(&mut client, &counter, &confirm).await.code,
            ResponseCode::Approved
        );
    }
    let (status, report) = api.read("/api/v1/reports/rfm").await;
    assert_eq!(status, 200, "{report}");
    let rows = report["rfm"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{report}");
    // n = 2. Recency ties (k = 2 for both): 5. MB-1: k = 2 for frequency and spend: 5;
    // MB-2: k = 1: ⌈5 / 2⌉ = 3.
    let score = |row: &Value| {
        (
            row["member"].as_str().unwrap().to_owned(),
            row["frequency"].as_i64().unwrap(),
            row["monetary_rials"].as_i64().unwrap(),
            row["r"].as_i64().unwrap(),
            row["f"].as_i64().unwrap(),
            row["m"].as_i64().unwrap(),
        )
    };
    assert_eq!(score(&rows[0]), ("MB-1".to_owned(), 2, 30_000, 5, 5, 5));
    assert_eq!(score(&rows[1]), ("MB-2".to_owned(), 1, 5_000, 5, 3, 3));
    assert_eq!(rows[0]["recency_days"], 0);

    let (_, none) = api.read("/api/v1/reports/win-back?days=1").await;
    assert_eq!(none["win_back"].as_array().unwrap().len(), 0, "{none}");
    // Two days later both are inactive for a day; the bigger spender comes first.
    api.harness.clock.advance(2 * 86_400_000);
    let (status, back) = api.read("/api/v1/reports/win-back?days=1").await;
    assert_eq!(status, 200, "{back}");
    let rows = back["win_back"].as_array().unwrap();
    let members: Vec<_> = rows.iter().map(|r| r["member"].as_str().unwrap()).collect();
    assert_eq!(members, ["MB-1", "MB-2"], "{back}");
    assert_eq!(rows[0]["days_inactive"], 2);
    assert_eq!(rows[0]["purchases"], 2);
    assert_eq!(rows[0]["gross_rials"], 30_000);
    let (_, still) = api.read("/api/v1/reports/win-back?days=3").await;
    assert_eq!(still["win_back"].as_array().unwrap().len(), 0, "{still}");
    // A year and more later, the RFM window is empty.
    api.harness.clock.advance(366 * 86_400_000);
    let (_, old) = api.read("/api/v1/reports/rfm").await;
    assert_eq!(old["rfm"].as_array().unwrap().len(), 0, "{old}");

    for (path, field) in [
        ("/api/v1/reports/win-back?days=0", "days"),
        ("/api/v1/reports/win-back?days=4000", "days"),
        ("/api/v1/reports/rfm?limit=0", "limit"),
        ("/api/v1/reports/rfm?format=xml", "format"),
    ] {
        let (status, value) = api.read(path).await;
        assert_eq!(status, 422, "{path}: {value}");
        assert_eq!(problem_fields(&value), [field], "{path}");
    }
}

/// A top-up raises the club balance and a grant adds store credit at one merchant, each once
/// per idempotency key (a retry, even after a restart, changes nothing), both visible to the
/// next balance inquiry over TCP, audited, and the conservation invariants still hold.
#[tokio::test]
async fn top_ups_and_grants_are_idempotent_and_live() {
    let mut api = Api::start().await;
    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    let before = balances(&mut client, &mut counter, POOR, at).await;

    // (path, key, body, status)
    let body = |amount: i64| json!({ "amount_rials": amount }).to_string();
    let grant = |amount: i64| json!({ "merchant": "M-A", "amount_rials": amount }).to_string();
    let cases: Vec<(&str, Option<&str>, String, u16)> = vec![
        (
            "/api/v1/cards/C-POOR/top-ups",
            Some("t-1"),
            body(5_000),
            201,
        ),
        (
            "/api/v1/cards/C-POOR/top-ups",
            Some("t-1"),
            body(5_000),
            200,
        ),
        (
            "/api/v1/cards/C-POOR/top-ups",
            Some("t-1"),
            body(6_000),
            409,
        ),
        ("/api/v1/cards/C-POOR/top-ups", None, body(5_000), 422),
        ("/api/v1/cards/C-POOR/top-ups", Some("t-2"), body(0), 422),
        (
            "/api/v1/cards/C-POOR/top-ups",
            Some("t-3"),
            json!({"amount_rials": 1, "x": 1}).to_string(),
            422,
        ),
        (
            "/api/v1/cards/C-NONE/top-ups",
            Some("t-4"),
            body(5_000),
            404,
        ),
        (
            "/api/v1/cards/C-POOR/store-credit",
            Some("g-1"),
            grant(3_000),
            201,
        ),
        (
            "/api/v1/cards/C-POOR/store-credit",
            Some("g-1"),
            grant(3_000),
            200,
        ),
        (
            "/api/v1/cards/C-POOR/store-credit",
            Some("t-1"),
            grant(5_000),
            409,
        ),
        (
            "/api/v1/cards/C-POOR/store-credit",
            Some("g-2"),
            json!({"merchant": "M-NONE", "amount_rials": 1}).to_string(),
            404,
        ),
    ];
    let addr = api.harness.running().admin_addr;
    for (path, key, body, expected) in &cases {
        let (status, text) = post_keyed(addr, &api.writer, path, *key, body).await;
        assert_eq!(status, *expected, "{path} {key:?} {body}: {text}");
        if status == 200 {
            assert!(text.contains("idempotent-replayed: true"), "{text}");
        }
    }
    let after = balances(&mut client, &mut counter, POOR, at).await;
    assert_eq!(after[0], before[0] + 5_000, "club ledger: one top-up");
    assert_eq!(after[1], before[1] + 5_000, "club available");
    assert_eq!(
        after[2],
        before[2] + 3_000,
        "store credit at M-A: one grant"
    );

    // After a restart the keys are remembered; the balances are what was made durable.
    api.harness.restart().await;
    let addr = api.harness.running().admin_addr;
    let path = "/api/v1/cards/C-POOR/top-ups";
    let (status, text) = post_keyed(addr, &api.writer, path, Some("t-1"), &body(5_000)).await;
    assert_eq!(status, 200, "a retry after the restart: {text}");
    let (status, _) = post_keyed(addr, &api.writer, path, Some("t-1"), &body(7_000)).await;
    assert_eq!(status, 409);
    let mut client = api.harness.client().await;
    assert_eq!(balances(&mut client, &mut counter, POOR, at).await, after);
    let pool = api.harness.pool().await;
    let credits: i64 = sqlx::query_scalar("SELECT count(*) FROM balance_credits")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(credits, 2);
    let audited: Vec<(String, String)> =
        sqlx::query_as("SELECT action, resource_code FROM audit_log ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        audited,
        [
            ("top_up".to_owned(), "C-POOR".to_owned()),
            ("grant_store_credit".to_owned(), "C-POOR".to_owned())
        ]
    );
    let findings = terminal_sim::check::run(pool).await.unwrap();
    assert!(terminal_sim::check::all_hold(&findings), "{findings:?}");
}

/// A `POST` with an optional `Idempotency-Key`: the status and the whole response text.
async fn post_keyed(
    addr: SocketAddr,
    token: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key_header = key.map_or(String::new(), |key| format!("idempotency-key: {key}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer {token}\r\n{key_header}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
    (status, text)
}

/// Discount rules: what `GET` returns goes back through `PUT` unchanged (no new reference
/// version), and a new campaign prices the very next purchase over TCP.
#[tokio::test]
async fn rules_round_trip_and_price_the_next_purchase() {
    use protocol::field54::AmountKind;

    let mut api = Api::start().await;
    let version = api
        .harness
        .scalar("SELECT version FROM reference_meta")
        .await;
    let (status, rules) = api.read("/api/v1/rules").await;
    assert_eq!(status, 200);
    let rules = rules["rules"].as_array().unwrap().clone();
    assert_eq!(rules.len(), 1);
    for rule in &rules {
        let path = format!("/api/v1/rules/{}", rule["code"].as_str().unwrap());
        let (status, back) = api.write("PUT", &path, Some(&rule.to_string())).await;
        assert_eq!((status, &back), (200, rule));
    }
    assert_eq!(
        api.harness
            .scalar("SELECT version FROM reference_meta")
            .await,
        version
    );

    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    let (_, before) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        100_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(amount(&before, AmountKind::Discount), 10_000, "R-10: 10%");
    let campaign = json!({
        "name": "Friday campaign",
        "fixed_rials": 30_000,
        "basket_rials_min": 50_000,
        "merchants": ["M-A"],
        "tiers": ["silver"],
        "bins": [{"from": "6037", "to": "6037"}],
    });
    let (status, created) = api
        .write("PUT", "/api/v1/rules/R-API", Some(&campaign.to_string()))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["bins"], json!([{"from": "603700", "to": "603799"}]));
    let (_, after) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        100_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(
        amount(&after, AmountKind::Discount),
        30_000,
        "the new campaign wins"
    );
    let (_, small) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        40_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(
        amount(&small, AmountKind::Discount),
        4_000,
        "under its minimum basket: R-10"
    );

    let mut both = campaign.clone();
    both["percent"] = json!("5");
    let cases: &[(Value, &str)] = &[
        (both, "percent"),
        (
            json!({"name": "x", "fixed_rials": 1, "weekdays": ["xyz"]}),
            "weekdays",
        ),
        (
            json!({"name": "x", "fixed_rials": 1, "merchants": ["M-NONE"]}),
            "merchants",
        ),
        (
            json!({"name": "x", "fixed_rials": 1, "hours_from": "10:00"}),
            "hours_from",
        ),
    ];
    for (body, field) in cases {
        let (status, value) = api
            .write("PUT", "/api/v1/rules/R-BAD", Some(&body.to_string()))
            .await;
        assert_eq!(status, 422, "{body}: {value}");
        assert!(
            problem_fields(&value).iter().any(|f| f == field),
            "{field}: {value}"
        );
    }
}

/// Every route: no token and an unknown token are 401, a read token on a change is 403, and an
/// unknown id is the API's JSON 404 (PUT creates, so it has none).
#[tokio::test]
async fn every_route_refuses_without_rights_and_knows_unknown_ids() {
    let api = Api::start().await;
    let addr = api.harness.running().admin_addr;
    for (method, path) in switch::api::ROUTES {
        // The gateways' webhooks are signed, not bearer-authenticated (tests/surveys.rs,
        // tests/top_up.rs).
        if *path == "/api/v1/openapi.json"
            || *path == "/api/v1/sms/inbound"
            || *path == "/api/v1/payments/callback"
        {
            continue;
        }
        let concrete = path
            .replace("{code}", "X-NONE")
            .replace("{terminal_id}", "TRMNONE0")
            .replace("{reference}", "TU-NONE");
        for token in [None, Some("lsw_0000")] {
            let (status, challenge, _) = call(addr, method, &concrete, token, Some("{}")).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
        }
        if *method != "GET" {
            let (status, _, _) = call(addr, method, &concrete, Some(&api.reader), Some("{}")).await;
            assert_eq!(status, 403, "{method} {path} with a read token");
        }
        if !path.contains('{') || *method == "PUT" {
            continue;
        }
        let status = if *method == "GET" {
            call(addr, method, &concrete, Some(&api.reader), None)
                .await
                .0
        } else {
            let body = json!({"amount_rials": 1, "merchant": "M-A", "expiry": "2099-01"});
            let body = if path.ends_with("/top-ups") || path.ends_with("/top-up-orders") {
                json!({"amount_rials": 1})
            } else if path.ends_with("/renew") {
                json!({"expiry": "2099-01"})
            } else if path.ends_with("/replace") {
                json!({"new_code": "C-Z", "pan": "6037995555555551"})
            } else if path.ends_with("/store-credit") {
                json!({"amount_rials": 1, "merchant": "M-A"})
            } else if path.ends_with("/coupons") {
                json!({"kind": "manual", "fixed_rials": 1_000, "valid_days": 30})
            } else {
                body
            };
            let body = if path.ends_with("/block")
                || path.ends_with("/unblock")
                || path.ends_with("/rotate-key")
                || path.ends_with("/revoke-previous-key")
            {
                String::new()
            } else {
                body.to_string()
            };
            post_keyed(addr, &api.writer, &concrete, Some("k-404"), &body)
                .await
                .0
        };
        assert_eq!(status, 404, "{method} {path} with an unknown id");
    }
}

/// Key rotation: the new key works at once, the old one until the overlap ends (then `63`),
/// a revocation ends the overlap at once, and it all survives a restart.
#[tokio::test]
async fn rotated_keys_overlap_then_stop() {
    let mut api = Api::start().await;
    let rotate = |seconds: i64| json!({ "overlap_seconds": seconds }).to_string();
    let (status, first) = api
        .write(
            "POST",
            "/api/v1/terminals/TRM00001/rotate-key",
            Some(&rotate(60)),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["previous_ksi"], "0123456789ABCDEF");
    let new_terminal = |answer: &Value| {
        terminal(
            "TRM00001",
            answer["ksi"].as_str().unwrap(),
            &hex::decode(answer["tmk_hex"].as_str().unwrap()).unwrap(),
        )
    };
    let mut new_key = new_terminal(&first);
    let mut old_key = counter();
    let code = |response: &protocol::response::Response| response.code;
    let mut client = api.harness.client().await;
    for (terminal, expected) in [
        (&mut old_key, ResponseCode::Approved),
        (&mut new_key, ResponseCode::Approved),
    ] {
        let at = api.harness.now_seconds();
        let (_, response) = purchase(
            &mut client,
            terminal,
            ProcessingCode::BankPurchase,
            10_000,
            RICH,
            at,
        )
        .await;
        assert_eq!(code(&response), expected);
    }
    // Past the overlap the old key is refused; the new one still works.
    api.harness.clock.advance(61_000);
    let at = api.harness.now_seconds();
    let out = old_key
        .purchase(
            ProcessingCode::BankPurchase,
            Some(10_000),
            &pan(RICH),
            at,
            nonce(9),
        )
        .unwrap();
    let (response, _) = client
        .exchange(&out.bytes, out.mti, out.stan, Some(old_key.keys()))
        .await
        .unwrap();
    assert_eq!(response.code, ResponseCode::Security);
    let (_, response) = purchase(
        &mut client,
        &mut new_key,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved);

    // Rotate again with the default overlap, then revoke the previous key at once.
    let (status, second) = api
        .write("POST", "/api/v1/terminals/TRM00001/rotate-key", None)
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["previous_ksi"], first["ksi"]);
    let mut newest = new_terminal(&second);
    let (_, response) = purchase(
        &mut client,
        &mut new_key,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved, "in the overlap");
    let (status, revoked) = api
        .write(
            "POST",
            "/api/v1/terminals/TRM00001/revoke-previous-key",
            None,
        )
        .await;
    assert_eq!((status, &revoked["revoked_ksi"]), (200, &first["ksi"]));
    let out = new_key
        .purchase(
            ProcessingCode::BankPurchase,
            Some(10_000),
            &pan(RICH),
            at,
            nonce(8),
        )
        .unwrap();
    let (response, _) = client
        .exchange(&out.bytes, out.mti, out.stan, None)
        .await
        .unwrap();
    assert_eq!(
        response.code,
        ResponseCode::Security,
        "revoked: an unknown KSI"
    );

    api.harness.restart().await;
    let mut client = api.harness.client().await;
    let at = api.harness.now_seconds();
    let (_, response) = purchase(
        &mut client,
        &mut newest,
        ProcessingCode::BankPurchase,
        10_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(response.code, ResponseCode::Approved, "after a restart");
    let (status, shown) = api.read("/api/v1/terminals/TRM00001").await;
    assert_eq!((status, &shown["ksi"]), (200, &second["ksi"]));

    for body in [
        rotate(-1),
        rotate(604_801),
        json!({"overlap": 5}).to_string(),
    ] {
        let (status, value) = api
            .write("POST", "/api/v1/terminals/TRM00001/rotate-key", Some(&body))
            .await;
        assert_eq!(status, 422, "{body}: {value}");
    }
    let tmk = second["tmk_hex"].as_str().unwrap().to_owned();
    for body in api.seen.iter().filter(|b| !b.contains("previous_ksi")) {
        assert!(
            !body.contains(&tmk),
            "the TMK outside its rotation's answer: {body}"
        );
    }
    assert_not_logged(&tmk, "a rotated TMK");
}

/// Replacing a card: the old one is blocked at once; its balances move only when no pending
/// request holds part of them, then all of them, to the new PAN; retries finish or repeat the
/// move and never count it twice.
#[tokio::test]
async fn replacing_a_card_moves_every_balance_once() {
    let mut api = Api::start().await;
    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    // Store credit at M-A for the old card, then a club purchase left pending (a hold).
    let addr = api.harness.running().admin_addr;
    let grant = json!({"merchant": "M-A", "amount_rials": 7_000}).to_string();
    let (status, _) = post_keyed(
        addr,
        &api.writer,
        "/api/v1/cards/C-RICH/store-credit",
        Some("g"),
        &grant,
    )
    .await;
    assert_eq!(status, 201);
    let (held_out, held) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::ClubPurchase,
        50_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(held.code, ResponseCode::Approved);
    let before = balances(&mut client, &mut counter, RICH, at).await;

    let new_pan = "6037995555555551";
    let body = json!({"new_code": "C-RICH-2", "pan": new_pan}).to_string();
    let (status, value) = api
        .write("POST", "/api/v1/cards/C-RICH/replace", Some(&body))
        .await;
    assert_eq!(status, 409, "a hold remains: {value}");
    let (_, response) = purchase(
        &mut client,
        &mut counter,
        ProcessingCode::BankPurchase,
        1_000,
        RICH,
        at,
    )
    .await;
    assert_eq!(
        response.code,
        ResponseCode::CardBlocked,
        "the old card is blocked at once"
    );

    // The pending purchase is confirmed (a confirm is an advice); then the move goes through.
    let confirm = counter.confirm(&held_out, held.rrn.unwrap(), at).unwrap();
    assert_eq!(
        exchange(&mut client, &counter, &confirm).await.code,
        ResponseCode::Approved
    );
    let (status, value) = api
        .write("POST", "/api/v1/cards/C-RICH/replace", Some(&body))
        .await;
    assert_eq!(status, 201, "{value}");
    assert_eq!(value["old"]["status"], "blocked");
    assert_eq!(value["new"]["last4"], "5551");
    let captured = amount(&held, protocol::field54::AmountKind::ClubUsed);
    let moved = balances(&mut client, &mut counter, new_pan, at).await;
    assert_eq!(
        moved[0],
        before[0] - captured,
        "club ledger moved, less the capture"
    );
    let cashback = amount(&held, protocol::field54::AmountKind::Cashback);
    assert!(cashback > 0, "the confirm issued cashback at M-A");
    assert_eq!(
        moved[2],
        before[2] + cashback,
        "store credit at M-A moved, cashback included"
    );
    let (status, _) = api
        .write("POST", "/api/v1/cards/C-RICH/replace", Some(&body))
        .await;
    assert_eq!(status, 200, "a retry repeats");
    assert_eq!(
        balances(&mut client, &mut counter, new_pan, at).await,
        moved
    );
    let other = json!({"new_code": "C-RICH-3", "pan": "6037990000000006"}).to_string();
    let (status, _) = api
        .write("POST", "/api/v1/cards/C-RICH/replace", Some(&other))
        .await;
    assert_eq!(status, 409, "replaced once");
    let cards: i64 = api
        .harness
        .scalar("SELECT count(*) FROM cards WHERE code = 'C-RICH-3'")
        .await;
    assert_eq!(cards, 0, "a refused replacement issues nothing");
    for (body, field) in [
        (json!({"new_code": "C-POOR", "pan": new_pan}), "new_code"),
        (json!({"new_code": "", "pan": new_pan}), "new_code"),
        (json!({"new_code": "C-X", "pan": "6037995555555552"}), "pan"),
        (
            json!({"new_code": "C-X", "pan": new_pan, "colour": 1}),
            "colour",
        ),
    ] {
        let (status, value) = api
            .write(
                "POST",
                "/api/v1/cards/C-POOR/replace",
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(status, 422, "{body}: {value}");
        assert!(
            problem_fields(&value).iter().any(|f| f == field),
            "{field}: {value}"
        );
    }
    let taken = json!({"new_code": "C-RICH", "pan": "6037990000000006"}).to_string();
    let (status, _) = api
        .write("POST", "/api/v1/cards/C-POOR/replace", Some(&taken))
        .await;
    assert_eq!(status, 409, "new_code names another card");
    api.harness.restart().await;
    let mut client = api.harness.client().await;
    assert_eq!(
        balances(&mut client, &mut counter, new_pan, at).await,
        moved,
        "after a restart"
    );
    let findings = terminal_sim::check::run(api.harness.pool().await)
        .await
        .unwrap();
    assert!(terminal_sim::check::all_hold(&findings), "{findings:?}");
    assert_not_logged(new_pan, "the new PAN");
}

/// A terminal taken out of service gets `58` on its next request, moved to an inactive
/// merchant `03`, and is back with `00` when restored; its keys never change.
#[tokio::test]
async fn terminal_updates_are_live() {
    let mut api = Api::start().await;
    let mut client = api.harness.client().await;
    let mut counter = counter();
    let at = api.harness.now_seconds();
    let path = "/api/v1/terminals/TRM00001";
    let group = json!({"name": "Front desk"}).to_string();
    assert_eq!(
        api.write("PUT", "/api/v1/terminal-groups/front", Some(&group))
            .await
            .0,
        201
    );
    let (status, grouped) = api
        .write("PUT", path, Some(&json!({"groups": ["front"]}).to_string()))
        .await;
    assert_eq!((status, &grouped["groups"]), (200, &json!(["front"])));
    for (body, expected) in [
        (
            json!({"status": "inactive"}),
            ResponseCode::TerminalNotActive,
        ),
        (
            json!({"status": "active", "merchant": "M-OFF"}),
            ResponseCode::MerchantNotActive,
        ),
        (json!({"merchant": "M-A"}), ResponseCode::Approved),
    ] {
        let (status, value) = api.write("PUT", path, Some(&body.to_string())).await;
        assert_eq!(status, 200, "{body}: {value}");
        assert_eq!(value["ksi"], "0123456789ABCDEF", "keys stay");
        let (_, response) = purchase(
            &mut client,
            &mut counter,
            ProcessingCode::BankPurchase,
            10_000,
            RICH,
            at,
        )
        .await;
        assert_eq!(response.code, expected, "after {body}");
    }
    for (body, field) in [
        (json!({"status": "off"}), "status"),
        (json!({"merchant": "M-NONE"}), "merchant"),
        (json!({"groups": ["none"]}), "groups"),
        (json!({"groups": ["front", "front"]}), "groups"),
        (json!({"ksi": "0123456789ABCDEE"}), "ksi"),
    ] {
        let (status, value) = api.write("PUT", path, Some(&body.to_string())).await;
        assert_eq!(status, 422, "{body}: {value}");
        assert_eq!(problem_fields(&value), [field]);
    }
    let (status, _) = api
        .write(
            "PUT",
            "/api/v1/terminals/TRMNONE0",
            Some(&json!({"status": "active"}).to_string()),
        )
        .await;
    assert_eq!(status, 404);
}
