//! The in-process switch the integration tests drive over real TCP: a temporary SQLite file
//! provisioned from `tests/data/network.json` through the operators' import path, a manual
//! clock, and terminals built from the same file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod web;

use std::sync::Arc;

use bytes::BytesMut;
use protocol::field54::AmountKind;
use protocol::response::Response;
use protocol::terminal::{Outgoing, Terminal};
use protocol::{Ksi, Pan, ProcessingCode, ResponseCode, TerminalId, Tmk, WorkingKeys};
use switch::app::{self, Running};
use switch::clock::{Clock, ManualClock};
use switch::config::{Config, Secrets};
use switch::domain::{Kek, PanTokenKey, UnixMillis};
use terminal_sim::client::Client;

/// 2026-11-22T18:30:00Z.
pub const START_MS: i64 = 1_795_372_200_000;
/// The test network.
pub const NETWORK: &str = include_str!("../data/network.json");

/// Card PANs of the test network.
pub const RICH: &str = "6037991111111112";
pub const POOR: &str = "6037992222222228";
pub const BLOCKED: &str = "6037993333333334";
pub const EXPIRED: &str = "6037994444444440";

pub struct Harness {
    pub running: Option<Running>,
    pub clock: Arc<ManualClock>,
    pub dir: tempfile::TempDir,
    pub config: Config,
}

pub fn secrets() -> Secrets {
    Secrets {
        kek: Kek::from_bytes([0x11; 32]),
        pan_key: PanTokenKey::from_bytes([0x22; 32]),
        sms_gateway_token: None,
    }
}

pub fn config(db: &std::path::Path) -> Config {
    let mut config = Config::load(None).unwrap();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = format!("sqlite://{}", db.display());
    config.sweep_every_ms = 20;
    config
}

/// The database a test runs on.
#[derive(Debug, Clone)]
pub enum Db {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh PostgreSQL database (its URL).
    Postgres(String),
}

/// The variable naming the PostgreSQL server the tests may use.
pub const DATABASE_URL: &str = "LSW_TEST_DATABASE_URL";

impl Db {
    /// A fresh PostgreSQL database, or `None` after saying on stderr that the test is skipped.
    pub async fn postgres() -> Option<Db> {
        use std::io::Write as _;
        match std::env::var(DATABASE_URL) {
            Ok(url) if !url.is_empty() => Some(Db::Postgres(
                switch::store::create_database(&url, "lsw_test")
                    .await
                    .unwrap(),
            )),
            _ => {
                let mut stderr = std::io::stderr().lock();
                writeln!(stderr, "skipped: {DATABASE_URL} is not set").unwrap();
                None
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }
}

/// Runs the test function `$name(db: Db)` once on SQLite and once on PostgreSQL (the second
/// says it is skipped when no server is configured): `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::Db::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = super::Db::postgres().await {
                    super::$name(db).await;
                }
            }
        }
    )*};
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_on(Db::Sqlite).await
    }

    pub async fn start_on(db: Db) -> Harness {
        Harness::start_full(db, NETWORK, |_| {}).await
    }

    /// Starts with `edit` applied to the test configuration.
    pub async fn start_with(db: Db, edit: impl FnOnce(&mut Config)) -> Harness {
        Harness::start_full(db, NETWORK, edit).await
    }

    /// On `db`, provisioned with the import file `network`.
    pub async fn start_network(db: Db, network: &str) -> Harness {
        Harness::start_full(db, network, |_| {}).await
    }

    /// On `db`, provisioned with `network`, with `edit` applied to the configuration.
    pub async fn start_full(db: Db, network: &str, edit: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(&dir.path().join("lsw.db"));
        edit(&mut config);
        if let Db::Postgres(url) = &db {
            config.database_url = url.clone();
        }
        let clock = Arc::new(ManualClock::new(UnixMillis::new(START_MS)));
        let pool = switch::store::open(&config.database_url).await.unwrap();
        let secrets = secrets();
        switch::import::import_text(&pool, network, &secrets.kek, &secrets.pan_key, clock.now())
            .await
            .unwrap();
        pool.close().await;
        let running = app::start(&config, &secrets, clock.clone(), None)
            .await
            .unwrap();
        Harness {
            running: Some(running),
            clock,
            dir,
            config,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// The database, once everything answered so far is projected into it (journal mode
    /// writes it behind the answers).
    pub async fn pool(&self) -> &switch::store::Pool {
        self.running().wait_projected().await;
        &self.running().pool
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.running().addr).await.unwrap()
    }

    pub fn now_seconds(&self) -> i64 {
        self.clock.now().get() / 1000
    }

    /// Stops gracefully and starts again on the same database.
    pub async fn restart(&mut self) {
        self.running.take().unwrap().stop().await;
        let running = app::start(&self.config, &secrets(), self.clock.clone(), None)
            .await
            .unwrap();
        self.running = Some(running);
    }

    /// Waits (up to 5 s, without moving the clock) until `sql` counts `wanted`.
    pub async fn wait_for(&self, sql: &str, wanted: i64) {
        for _ in 0..500 {
            if self.scalar(sql).await == wanted {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("{sql}: never {wanted}, last {}", self.scalar(sql).await);
    }

    /// Reads the database once everything answered so far is projected into it.
    pub async fn scalar(&self, sql: &str) -> i64 {
        self.running().wait_projected().await;
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.running().pool)
            .await
            .unwrap()
    }

    /// Every row of every table that holds money or transaction state, as text: equal
    /// before and after means nothing changed.
    pub async fn state(&self) -> String {
        self.running().wait_projected().await;
        let pool = &self.running().pool;
        let mut out = String::new();
        let postgres = switch::store::Backend::of_pool(pool) == switch::store::Backend::Postgres;
        for table in [
            "transactions",
            "captures",
            "capture_lots",
            "club_balances",
            "store_credit_accounts",
            "store_credit_lots",
            "balance_movements",
            "tombstones",
            "exceptions",
            "answered_messages",
        ] {
            if postgres {
                let rows: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"
                ))
                .fetch_all(pool)
                .await
                .unwrap();
                out.push_str(&format!("{table}: {rows:?}\n"));
                continue;
            }
            let columns: Vec<String> =
                sqlx::query_scalar(&format!("SELECT name FROM pragma_table_info('{table}')"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote({c})"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT {row} FROM {table} ORDER BY rowid"))
                    .fetch_all(pool)
                    .await
                    .unwrap();
            out.push_str(&format!("{table}: {rows:?}\n"));
        }
        out
    }
}

pub fn terminal(tid: &str, ksi: &str, tmk: &[u8]) -> Terminal {
    let tmk = Tmk::from_slice(tmk).unwrap();
    Terminal::new(
        TerminalId::parse(tid.as_bytes()).unwrap(),
        Ksi::parse(ksi.as_bytes()).unwrap(),
        WorkingKeys::derive(&tmk),
    )
}

/// TRM00001 at the active merchant M-A.
pub fn counter() -> Terminal {
    let tmk: Vec<u8> = (0..32).collect();
    terminal("TRM00001", "0123456789ABCDEF", &tmk)
}

/// TRM00002, inactive, at M-A.
pub fn inactive_terminal() -> Terminal {
    terminal("TRM00002", "0123456789ABCD02", &[0xa1; 32])
}

/// TRM00003, active, at the inactive merchant M-OFF.
pub fn closed_shop() -> Terminal {
    terminal("TRM00003", "0123456789ABCD03", &[0xb2; 32])
}

pub fn pan(digits: &str) -> Pan {
    Pan::parse(digits.as_bytes()).unwrap()
}

pub fn nonce(n: u8) -> [u8; 12] {
    [n; 12]
}

/// Sends and waits for the response, verifying its MAC with the terminal's keys.
pub async fn exchange(client: &mut Client, terminal: &Terminal, out: &Outgoing) -> Response {
    let (response, _) = client
        .exchange(&out.bytes, out.mti, out.stan, Some(terminal.keys()))
        .await
        .unwrap();
    response
}

pub async fn purchase(
    client: &mut Client,
    terminal: &mut Terminal,
    code: ProcessingCode,
    amount: u64,
    card: &str,
    at: i64,
) -> (Outgoing, Response) {
    let out = terminal
        .purchase(code, Some(amount), &pan(card), at, nonce(7))
        .unwrap();
    let response = exchange(client, terminal, &out).await;
    (out, response)
}

pub fn amount(response: &Response, kind: AmountKind) -> u64 {
    response
        .amount(kind)
        .unwrap_or_else(|| panic!("no {kind:?} in {response:?}"))
}

/// Field 54 of an approved purchase: the six sets, and G = discount + store + club + bank.
pub fn check_split(response: &Response, gross: u64, expected: [u64; 6]) {
    assert_eq!(response.code, ResponseCode::Approved, "{response:?}");
    assert!(response.has_mac);
    let got = [
        amount(response, AmountKind::Discount),
        amount(response, AmountKind::MerchantFee),
        amount(response, AmountKind::StoreCreditUsed),
        amount(response, AmountKind::ClubUsed),
        amount(response, AmountKind::BankRest),
        amount(response, AmountKind::Cashback),
    ];
    assert_eq!(got, expected, "discount, fee, store, club, bank, cashback");
    assert_eq!(
        got[0] + got[2] + got[3] + got[4],
        gross,
        "G = discount + store + club + bank"
    );
}

pub async fn balances(
    client: &mut Client,
    terminal: &mut Terminal,
    card: &str,
    at: i64,
) -> [u64; 4] {
    let club = terminal
        .purchase(ProcessingCode::ClubInquiry, None, &pan(card), at, nonce(1))
        .unwrap();
    let club = exchange(client, terminal, &club).await;
    let store = terminal
        .purchase(
            ProcessingCode::StoreCreditInquiry,
            None,
            &pan(card),
            at,
            nonce(2),
        )
        .unwrap();
    let store = exchange(client, terminal, &store).await;
    [
        amount(&club, AmountKind::ClubLedger),
        amount(&club, AmountKind::ClubAvailable),
        amount(&store, AmountKind::StoreCreditLedger),
        amount(&store, AmountKind::StoreCreditAvailable),
    ]
}

pub fn framed(message: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    protocol::frame::encode(message, &mut out).unwrap();
    out
}

/// The same message with extra fields added and the MAC recomputed under `terminal`'s keys
/// (fields the switch must refuse, or another terminal's envelope under a valid MAC).
pub fn with_fields(terminal: &Terminal, out: &Outgoing, extra: &[(u8, &[u8])]) -> Outgoing {
    let raw = protocol::RawMessage::parse(out.bytes.clone()).unwrap();
    let mut fields: Vec<(u8, Vec<u8>)> = raw
        .bitmap()
        .fields()
        .filter(|n| ![1, 64, 128].contains(n))
        .map(|n| (n, raw.field(n).unwrap().to_vec()))
        .collect();
    fields.extend(extra.iter().map(|(n, v)| (*n, v.to_vec())));
    fields.sort_by_key(|(n, _)| *n);
    let mut bytes = BytesMut::new();
    let mut builder = protocol::builder::MessageBuilder::new(&mut bytes, raw.mti_bytes());
    for (n, v) in &fields {
        builder.field(*n, v).unwrap();
    }
    builder.finish_with_mac(terminal.keys()).unwrap();
    Outgoing {
        bytes: bytes.freeze(),
        ..out.clone()
    }
}

/// One request to the admin port (a fresh connection, closed after the response): status,
/// the `idempotent-replayed` header's presence, and the JSON body (`Null` when not JSON).
pub async fn admin_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, bool, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let key_header = key.map_or(String::new(), |key| format!("idempotency-key: {key}\r\n"));
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer {token}\r\n{key_header}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let replayed = head
        .lines()
        .any(|line| line.eq_ignore_ascii_case("idempotent-replayed: true"));
    (
        status,
        replayed,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A webhook's POST to the admin port, signed in `X-Signature` (`None`: no header) rather than
/// bearer-authenticated: status and JSON body (`Null` when not JSON).
pub async fn post_signed(
    addr: std::net::SocketAddr,
    path: &str,
    signature: Option<&str>,
    body: &str,
) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let signature = signature.map_or(String::new(), |s| format!("x-signature: {s}\r\n"));
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{signature}content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// An SMS gateway for the tests: answers 200 and records every body it accepted, by idempotency key (the last one), with how often.
pub type Seen =
    Arc<std::sync::Mutex<std::collections::BTreeMap<String, (usize, serde_json::Value)>>>;

pub async fn sms_gateway() -> (String, Seen) {
    use tokio::io::AsyncWriteExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let seen = shared.clone();
            tokio::spawn(async move {
                let Some((key, body)) = read_request(&mut stream).await else {
                    return;
                };
                {
                    let mut seen = seen.lock().unwrap();
                    let entry = seen.entry(key).or_insert((0, serde_json::Value::Null));
                    entry.0 += 1;
                    entry.1 = body;
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            });
        }
    });
    (url, seen)
}

/// Reads one request: its `Idempotency-Key` header and JSON body.
pub async fn read_request(
    stream: &mut tokio::net::TcpStream,
) -> Option<(String, serde_json::Value)> {
    use tokio::io::AsyncReadExt as _;
    let mut data = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_string();
            let header = |name: &str| {
                head.lines().find_map(|line| {
                    let (n, v) = line.split_once(':')?;
                    n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                })
            };
            let length: usize = header("content-length")?.parse().ok()?;
            if data.len() >= end + 4 + length {
                let body = serde_json::from_slice(&data[end + 4..end + 4 + length]).ok()?;
                return Some((header("idempotency-key")?, body));
            }
        }
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        data.extend_from_slice(&buffer[..read]);
    }
}

/// Every row of each query (one text column each), one per line, each query's rows ended by
/// `--`: equal before and after means nothing those queries see changed.
pub async fn rows_text(pool: &switch::store::Pool, queries: &[&str]) -> String {
    let mut out = String::new();
    for sql in queries {
        for row in sqlx::query_scalar::<_, String>(sql)
            .fetch_all(pool)
            .await
            .unwrap()
        {
            out.push_str(&row);
            out.push('\n');
        }
        out.push_str("--\n");
    }
    out
}
