//! A switch without TCP for settlement tests: a temporary SQLite file provisioned from
//! `tests/data/network.json` through the operators' import path, the real admission, engine
//! and ledger, and an injected clock. Transactions are made exactly as terminals make them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use protocol::terminal::{Outgoing, Terminal};
use protocol::{Ksi, Pan, ProcessingCode, ResponseCode, Rrn, TerminalId, Tmk, WorkingKeys};
use settlement::calendar::Calendar;
use settlement::close::Settings;
use settlement::cycle::{Cutoff, TEHRAN_UTC_OFFSET_MINUTES};
use switch::admission::{admit, Admission};
use switch::domain::{CivilDate, Kek, PanTokenKey, UnixMillis};
use switch::engine::{Decision, Engine, EngineConfig};
use switch::snapshot::Snapshot;
use switch::store::Pool;

/// The test network: merchants M-A (1.5 % fee, cashback) and M-B (2 %, at least 5 000 rials,
/// no cashback), M-OFF inactive.
pub const NETWORK: &str = include_str!("../data/network.json");
/// A card with 5 000 000 000 rials of club balance and 100 000 of store credit at M-A.
pub const RICH: &str = "6037991111111112";
/// A card with 300 000 rials of club balance and 50 000 of store credit at M-A.
pub const POOR: &str = "6037992222222228";
/// Engine settings as in production.
pub const ENGINE: EngineConfig = EngineConfig {
    hold_timeout_ms: 120_000,
    answered_window_ms: 86_400_000,
};

/// An instant, Tehran local time.
pub fn at(date: &str, hour: i64, minute: i64, second: i64) -> UnixMillis {
    let date = CivilDate::parse(date).unwrap();
    let start = UnixMillis::start_of_local_day(date, TEHRAN_UTC_OFFSET_MINUTES);
    UnixMillis::new(start.get() + ((hour * 60 + minute) * 60 + second) * 1000)
}

pub fn day(text: &str) -> CivilDate {
    CivilDate::parse(text).unwrap()
}

pub fn settings(out_dir: PathBuf, calendar: &str) -> Settings {
    Settings {
        cutoff: Cutoff::DEFAULT,
        calendar: Calendar::parse(calendar, "calendar.txt").unwrap(),
        out_dir,
        projection_wait: std::time::Duration::from_secs(10),
    }
}

/// One switch on a temporary database.
pub struct Net {
    pub dir: tempfile::TempDir,
    pub url: String,
    pub pool: Pool,
    pub snapshot: Snapshot,
    pub engine: Engine,
    pub pan_key: PanTokenKey,
    /// TRM00001 at M-A, TRM00004 at M-B.
    pub terminals: [Terminal; 2],
}

/// A purchase the network approved: what confirms and reversals name.
#[derive(Debug, Clone)]
pub struct Approved {
    pub out: Outgoing,
    pub rrn: Rrn,
    pub terminal: usize,
}

impl Net {
    pub async fn new(now: UnixMillis) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("lsw.db").display());
        let pool = switch::store::open(&url).await.unwrap();
        let kek = Kek::from_bytes([0x11; 32]);
        let pan_key = PanTokenKey::from_bytes([0x22; 32]);
        switch::import::import_text(&pool, NETWORK, &kek, &pan_key, now)
            .await
            .unwrap();
        let loaded = switch::store::reference::load(&pool, &kek).await.unwrap();
        let snapshot = Snapshot::build(&loaded).unwrap();
        let state = switch::store::ledger::load(&pool, now).await.unwrap();
        let engine = Engine::new(state, ENGINE);
        let counter: Vec<u8> = (0..32).collect();
        Net {
            dir,
            url,
            pool,
            snapshot,
            engine,
            pan_key,
            terminals: [
                terminal("TRM00001", "0123456789ABCDEF", &counter),
                terminal("TRM00004", "0123456789ABCD04", &[0xc3; 32]),
            ],
        }
    }

    /// Reloads the engine from the database, as a restarted switch does: it then knows which
    /// transactions a close settled.
    pub async fn reload(&mut self, now: UnixMillis) {
        let state = switch::store::ledger::load(&self.pool, now).await.unwrap();
        self.engine = Engine::new(state, ENGINE);
    }

    /// Admits, decides and makes durable one message.
    pub async fn send(&mut self, out: &Outgoing, now: UnixMillis) -> Decision {
        let Admission::Admitted(admitted) = admit(out.bytes.clone(), &self.snapshot, &self.pan_key)
        else {
            panic!("not admitted: {:?}", out.mti);
        };
        let keyed = self
            .snapshot
            .keys_by_ksi(admitted.request.ksi.as_bytes())
            .unwrap();
        let mut effects = Vec::new();
        let decision = self
            .engine
            .decide(&self.snapshot, keyed, &admitted, now, &mut effects);
        switch::store::ledger::apply(&self.pool, &effects)
            .await
            .unwrap();
        decision
    }

    /// A purchase at terminal `terminal` (0 = M-A, 1 = M-B); `Some` when approved.
    pub async fn purchase(
        &mut self,
        terminal: usize,
        code: ProcessingCode,
        amount: u64,
        card: &str,
        now: UnixMillis,
    ) -> Option<Approved> {
        let pan = Pan::parse(card.as_bytes()).unwrap();
        let out = self.terminals[terminal]
            .purchase(code, Some(amount), &pan, now.get() / 1000, [7; 12])
            .unwrap();
        let decision = self.send(&out, now).await;
        (decision.code() == ResponseCode::Approved).then(|| Approved {
            out,
            rrn: decision.rrn().unwrap(),
            terminal,
        })
    }

    pub async fn confirm(&mut self, original: &Approved, now: UnixMillis) -> ResponseCode {
        let out = self.terminals[original.terminal]
            .confirm(&original.out, original.rrn, now.get() / 1000)
            .unwrap();
        self.send(&out, now).await.code()
    }

    pub async fn reverse(&mut self, original: &Approved, now: UnixMillis) -> ResponseCode {
        let out = self.terminals[original.terminal]
            .reversal(&original.out, Some(original.rrn), now.get() / 1000)
            .unwrap();
        self.send(&out, now).await.code()
    }

    /// A purchase confirmed at once.
    pub async fn sale(
        &mut self,
        terminal: usize,
        code: ProcessingCode,
        amount: u64,
        card: &str,
        now: UnixMillis,
    ) -> Approved {
        let approved = self
            .purchase(terminal, code, amount, card, now)
            .await
            .unwrap();
        assert_eq!(self.confirm(&approved, now).await, ResponseCode::Approved);
        approved
    }

    /// An online top-up of `amount` for the card with `pan`, paid by the gateway's payment
    /// `payment`: the order row as the operator API writes it, then the accepted callback's
    /// credit through the engine and the ledger, as the callback route makes it. `true` when
    /// the card was credited now; a second payment for the same order credits nothing.
    pub async fn top_up(&mut self, pan: &str, amount: i64, payment: &str, now: UnixMillis) -> bool {
        use switch::engine::credit::{Credit, CreditOutcome, TopUpPayment};
        let pan = Pan::parse(pan.as_bytes()).unwrap();
        let token = switch::domain::PanToken::compute(&self.pan_key, &pan);
        let card: i64 = sqlx::query_scalar("SELECT id FROM cards WHERE pan_token = $1")
            .bind(token.as_bytes().as_slice())
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let reference = format!("TU-{card}-{amount}");
        sqlx::query(
            "INSERT INTO top_up_orders (reference, idempotency_key, card_id, amount_rials, \
             currency, state, created_at_ms, expires_at_ms, operator) \
             VALUES ($1, $1, $2, $3, 'IRR', 'created', $4, $5, 'test') ON CONFLICT DO NOTHING",
        )
        .bind(&reference)
        .bind(card)
        .bind(amount)
        .bind(now.get())
        .bind(now.get() + 1_800_000)
        .execute(&self.pool)
        .await
        .unwrap();
        let order: i64 = sqlx::query_scalar("SELECT id FROM top_up_orders WHERE reference = $1")
            .bind(&reference)
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let credit = Credit {
            key: format!("top-up:{reference}"),
            card: switch::domain::CardId::new(card),
            merchant: None,
            amount: switch::domain::Rials::new(amount).unwrap(),
            expires_at: None,
            operator: "payment-gateway".to_owned(),
            detail: "{}".to_owned(),
            top_up: Some(TopUpPayment {
                order,
                payment_reference: payment.to_owned(),
                received_at: now,
                body_sha256: "0".repeat(64),
            }),
        };
        let mut effects = Vec::new();
        let outcome = self.engine.credit(credit, now, &mut effects).unwrap();
        switch::store::ledger::apply(&self.pool, &effects)
            .await
            .unwrap();
        outcome == CreditOutcome::Applied
    }

    /// Releases holds whose confirm timeout passed.
    pub async fn sweep(&mut self, now: UnixMillis) {
        let mut effects = Vec::new();
        self.engine.sweep(now, &mut effects, 4096);
        switch::store::ledger::apply(&self.pool, &effects)
            .await
            .unwrap();
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The transaction id of an approved purchase.
    pub async fn txn_id(&self, approved: &Approved) -> i64 {
        sqlx::query_scalar("SELECT id FROM transactions WHERE rrn = $1")
            .bind(approved.rrn.as_str())
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// The business date of the cycle an approved purchase settled in.
    pub async fn cycle_of(&self, approved: &Approved) -> Option<String> {
        sqlx::query_scalar(
            "SELECT c.business_date FROM transactions t \
             LEFT JOIN settlement_cycles c ON c.id = t.cycle_id WHERE t.rrn = $1",
        )
        .bind(approved.rrn.as_str())
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Every row of every table, as text: equal before and after means nothing changed.
    pub async fn dump(&self) -> String {
        dump(&self.pool).await
    }
}

pub async fn dump(pool: &Pool) -> String {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut out = String::new();
    for table in tables {
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

/// The files of a directory, name and bytes, sorted.
pub fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| {
                let entry = entry.unwrap();
                (
                    entry.file_name().to_string_lossy().into_owned(),
                    std::fs::read(entry.path()).unwrap(),
                )
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn terminal(tid: &str, ksi: &str, tmk: &[u8]) -> Terminal {
    let tmk = Tmk::from_slice(tmk).unwrap();
    Terminal::new(
        TerminalId::parse(tid.as_bytes()).unwrap(),
        Ksi::parse(ksi.as_bytes()).unwrap(),
        WorkingKeys::derive(&tmk),
    )
}
