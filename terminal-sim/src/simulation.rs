//! Deterministic simulation: the real engine and the real store code, driven by one seeded RNG
//! on a simulated clock, with the committer's rules played out step by step (docs/style.md
//! section 10).
//!
//! A [`World`] is built once: the network imported into a template database (then kept in
//! memory), its snapshot, its terminals and cards. [`run`] then plays one seed on a [`Store`],
//! an in-memory database put back to the template's rows first, so a seed plays the same
//! whichever seeds the store played before.
//! Each step the RNG picks one thing that can happen to a switch in the field:
//!
//! - a terminal sends a purchase or inquiry (any code, amount and card, declines included);
//! - it confirms an approval it heard, or reverses a request (one it heard approved, one still
//!   unanswered, or one it never managed to send);
//! - it retransmits a message (identical bytes), unless it has reversed that request since;
//! - the network delivers one message in flight, not always the oldest (reordering), or loses
//!   it; a response is lost on its way back now and then;
//! - the clock moves, sometimes past the hold timeout, and the sweeper runs;
//! - the committer appends the batch to the journal (responses of durable work leave only
//!   then);
//! - the projector writes some of the journal's records into the database;
//! - the switch crashes: before the append (the batch is lost with its responses), after the
//!   append and before its projection (its responses are lost), or inside a projection
//!   transaction (rolled back); the switch restarts as `lsw-switch serve` does: the journal is
//!   opened and what the database lacks is projected, then the engine loads from the store.
//!
//! The journal is the real one, in a directory of its own per seed (on `/dev/shm` where it
//! exists: a simulated crash keeps the page cache, so syncs only cost time here).
//! The terminals remember every response they hear. After every step the cheap invariants run
//! in memory; after every projection and crash the SQL ones run too ([`crate::check`], plus: every
//! approval heard is durable, every confirm heard has exactly one capture, the engine's state
//! equals what the store rebuilds). A breach stops the run with a [`Failure`] that names the
//! seed and step: the same seed replays the same run exactly.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use protocol::response::Response;
use protocol::terminal::{Outgoing, Terminal};
use protocol::{Pan, ProcessingCode, RawMessage, ResponseCode, Rrn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sqlx::Row;
use switch::admission::{admit, Admission};
use switch::committer::journaled::{self, JournalSettings};
use switch::domain::{Kek, PanTokenKey, UnixMillis};
use switch::engine::{Effect, Engine, EngineConfig, MessageKey, State, TxnState};
use switch::journal::Journal;
use switch::snapshot::Snapshot;
use switch::store::Pool;
use switch::store::{ledger, projection};

/// The simulated clock's start: 2026-11-22T18:30:00Z.
pub const START_MS: i64 = 1_795_372_200_000;
/// The hold timeout the engine runs with (docs/protocol.md section 4 default).
pub const HOLD_TIMEOUT_MS: i64 = 120_000;
/// Steps per seed unless told otherwise.
pub const STEPS_DEFAULT: usize = 200;
/// A Luhn-valid PAN no card of the network has (declined `56`).
pub const STRANGER_PAN: &str = "6037990000000006";

/// In percent: how often a response on its way back is lost.
const RESPONSE_LOSS_PERCENT: u32 = 8;
/// In percent: how often the network delivers a message other than the oldest in flight.
const REORDER_PERCENT: u32 = 30;

/// How a run behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Steps before the drain.
    pub steps: usize,
    /// Whether a terminal may send another confirm or reversal of an original, under a new
    /// STAN, while its earlier one is still unanswered (instead of retransmitting that one).
    pub fresh_follow_ups: bool,
    /// Prints every step to stderr (for replaying one seed).
    pub trace: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            steps: STEPS_DEFAULT,
            fresh_follow_ups: true,
            trace: false,
        }
    }
}

/// Why a world or a run could not be set up (not an invariant breach).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] switch::store::StoreError),
    /// The network file does not import.
    #[error("import: {0}")]
    Import(String),
    /// The snapshot does not build.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The network file has no usable terminal or card.
    #[error("network: {0}")]
    Network(String),
    /// The template's directory could not be made.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// The schema's tables cannot be put back in an order their foreign keys allow.
    #[error("schema: {0}")]
    Schema(String),
}

/// An invariant that did not hold: the seed replays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The step it was found at (0 is the setup, `steps` the final drain).
    pub step: usize,
    /// What broke.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation failed at seed {} step {}: {}",
            self.seed, self.step, self.reason
        )
    }
}

impl std::error::Error for Failure {}

/// What one seed did, for the test's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages the switch decided.
    pub decided: u64,
    /// Purchases heard approved.
    pub approved: u64,
    /// Confirms heard `00`.
    pub confirmed: u64,
    /// Reversals heard `00`.
    pub reversed: u64,
    /// Retransmissions answered with the bytes heard before.
    pub same_answers: u64,
    /// Group commits.
    pub commits: u64,
    /// Store crashes.
    pub crashes: u64,
    /// Holds the sweeper released.
    pub expired: u64,
    /// Purchases whose approval was first heard after their reversal was heard `00`: a
    /// delayed copy of the request, answered from the window (or decided anew when the
    /// reversal had only met a declined original, which a crash then forgot). The reversal
    /// invariant covers only approvals heard before their reversal.
    pub approved_after_reversal: u64,
    /// A digest of every response heard, in order, byte for byte (FNV-1a): two plays of a
    /// seed are the same run when their digests agree. Seeds' digests add up (wrapping).
    pub responses_digest: u64,
}

impl Summary {
    /// Adds another seed's counts.
    pub fn add(&mut self, other: &Summary) {
        self.decided += other.decided;
        self.approved += other.approved;
        self.confirmed += other.confirmed;
        self.reversed += other.reversed;
        self.same_answers += other.same_answers;
        self.commits += other.commits;
        self.crashes += other.crashes;
        self.expired += other.expired;
        self.approved_after_reversal += other.approved_after_reversal;
        self.responses_digest = self.responses_digest.wrapping_add(other.responses_digest);
    }
}

/// What every seed shares: the imported template database, the snapshot, the terminals and
/// the cards. Build it once per process.
pub struct World {
    snapshot: Snapshot,
    terminals: Vec<Terminal>,
    cards: Vec<Pan>,
    pan_key: PanTokenKey,
    /// The template, in memory (SQLite's `memdb` file system); this pool's connection and the
    /// stores that attach it keep it alive.
    template: Pool,
    /// Names this world's in-memory databases apart from another world's in the process.
    name: String,
    /// Stores opened so far, to name the next one.
    stores: AtomicU64,
    /// The statements that put a store's tables back to the template's rows.
    reset: String,
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("terminals", &self.terminals.len())
            .field("cards", &self.cards.len())
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl World {
    /// Imports `network` (an import file) into a template database through the operators'
    /// import path, then keeps the template in memory. The simulated terminals are the active
    /// terminals of active merchants; the cards are every card of the file (blocked and
    /// expired ones too) and one stranger.
    ///
    /// # Errors
    /// [`SetupError`] when the file does not import or has nothing to drive.
    pub async fn new(network: &str) -> Result<World, SetupError> {
        static WORLDS: AtomicU64 = AtomicU64::new(0);
        let kek = Kek::from_bytes([0x11; 32]);
        let pan_key = PanTokenKey::from_bytes([0x22; 32]);
        let name = format!(
            "lsw-sim-{}-{}",
            std::process::id(),
            WORLDS.fetch_add(1, Ordering::Relaxed)
        );
        // The import runs on a file through the switch's own `open` (its migrations, WAL and
        // pragmas), exactly as an operator's import does; the file is then copied to memory.
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("template.db");
        let pool = switch::store::open(&file.display().to_string()).await?;
        switch::import::import_text(&pool, network, &kek, &pan_key, UnixMillis::new(START_MS))
            .await
            .map_err(|failure| SetupError::Import(failure.to_string()))?;
        let loaded = switch::store::reference::load(&pool, &kek).await?;
        let snapshot =
            Snapshot::build(&loaded).map_err(|error| SetupError::Snapshot(error.to_string()))?;
        let template = memory_pool(&format!("{name}-template")).await?;
        sqlx::query("VACUUM INTO $1")
            .bind(memory_uri(&format!("{name}-template")))
            .execute(&pool)
            .await?;
        pool.close().await;
        let reset = reset_statements(&template).await?;
        let fixture = crate::fixture::Fixture::parse(network)
            .map_err(|error| SetupError::Network(error.to_string()))?;
        let terminals = fixture.terminals.into_iter().map(|(t, _)| t).collect();
        let mut cards = every_card(network)?;
        cards.push(
            Pan::parse(STRANGER_PAN.as_bytes())
                .map_err(|_| SetupError::Network("stranger pan".into()))?,
        );
        Ok(World {
            snapshot,
            terminals,
            cards,
            pan_key,
            template,
            name,
            stores: AtomicU64::new(0),
            reset,
        })
    }

    /// A store for seeds to run on, one after another: an in-memory copy of the template,
    /// which [`run`] puts back to the template's rows before each seed. Each worker of a
    /// parallel run opens its own.
    ///
    /// # Errors
    /// [`SetupError`] when the database cannot be created.
    pub async fn store(&self) -> Result<Store, SetupError> {
        let name = format!(
            "{}-store-{}",
            self.name,
            self.stores.fetch_add(1, Ordering::Relaxed)
        );
        let pool = memory_pool(&name).await?;
        sqlx::query("VACUUM INTO $1")
            .bind(memory_uri(&name))
            .execute(&self.template)
            .await?;
        sqlx::query("ATTACH $1 AS template")
            .bind(format!(
                "{}&mode=ro",
                memory_uri(&format!("{}-template", self.name))
            ))
            .execute(&pool)
            .await?;
        Ok(Store { pool })
    }
}

/// One database seeds run on, one seed at a time: in memory, written without a journal on
/// disk or fsync (a simulated crash loses the batch the committer has not written; the
/// database itself never tears). Its template is attached read-only as `template`; the
/// store's code never names that schema.
#[derive(Debug)]
pub struct Store {
    pool: Pool,
}

impl Store {
    /// Puts every table back to the template's rows, rowids included, so a seed plays the
    /// same on a store used before as on a fresh one (the test checks that).
    async fn reset(&self, world: &World) -> Result<(), sqlx::Error> {
        sqlx::query(&world.reset).execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the database (and frees its memory).
    pub async fn close(self) {
        self.pool.close().await;
    }
}

/// The URI of an in-memory database that every connection of this process naming it shares
/// (a leading `/` makes `memdb` share it); it lives while a connection has it open.
fn memory_uri(name: &str) -> String {
    format!("file:/{name}?vfs=memdb")
}

/// A one-connection pool on the in-memory database `name`, created empty if new.
async fn memory_pool(name: &str) -> Result<Pool, sqlx::Error> {
    switch::store::connect(
        &format!("sqlite:///{name}?vfs=memdb&mode=rwc"),
        1,
        "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;",
    )
    .await
}

/// One transaction that empties every table of `main` and copies the template's rows back,
/// with their rowids (a table without an `INTEGER PRIMARY KEY` keeps a hidden one, which
/// decides the order of a scan). Tables are emptied children first and filled parents first,
/// so every foreign key holds at every statement (deferring the checks with a pragma would
/// expire every prepared statement of the connection, the store's too).
async fn reset_statements(template: &Pool) -> Result<String, SetupError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(template)
    .await?;
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    let mut columns: HashMap<String, String> = HashMap::new();
    for table in &tables {
        let referenced: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(table)
                .fetch_all(template)
                .await?;
        parents.insert(
            table.clone(),
            referenced.into_iter().filter(|p| p != table).collect(),
        );
        columns.insert(table.clone(), column_list(template, table).await?);
    }
    let order = parents_first(&tables, &parents)?;
    let mut sql = String::from("BEGIN;\n");
    for table in order.iter().rev() {
        sql.push_str(&format!("DELETE FROM main.\"{table}\";\n"));
    }
    for table in &order {
        let names = columns.get(table).map_or("", String::as_str);
        sql.push_str(&format!(
            "INSERT INTO main.\"{table}\" ({names}) SELECT {names} FROM template.\"{table}\";\n"
        ));
    }
    sql.push_str("COMMIT;");
    Ok(sql)
}

/// `table`'s columns, quoted, led by `rowid` unless a column is the rowid already.
async fn column_list(template: &Pool, table: &str) -> Result<String, sqlx::Error> {
    let rows = sqlx::query("SELECT name, type, pk FROM pragma_table_info($1) ORDER BY cid")
        .bind(table)
        .fetch_all(template)
        .await?;
    let mut names = Vec::with_capacity(rows.len() + 1);
    let mut keys = Vec::new();
    for row in &rows {
        let name: String = row.try_get("name")?;
        let kind: String = row.try_get("type")?;
        if row.try_get::<i64, _>("pk")? > 0 {
            keys.push(kind.to_ascii_uppercase());
        }
        names.push(format!("\"{name}\""));
    }
    if !(keys.len() == 1 && keys.first().is_some_and(|k| k == "INTEGER")) {
        names.insert(0, "rowid".into());
    }
    Ok(names.join(", "))
}

/// `tables` ordered so each comes after every table its foreign keys name.
fn parents_first(
    tables: &[String],
    parents: &HashMap<String, Vec<String>>,
) -> Result<Vec<String>, SetupError> {
    let mut order: Vec<String> = Vec::with_capacity(tables.len());
    // Each pass places at least one table, or the keys form a cycle.
    for _ in 0..tables.len() {
        for table in tables {
            let ready = parents
                .get(table)
                .is_none_or(|names| names.iter().all(|p| order.contains(p)));
            if ready && !order.contains(table) {
                order.push(table.clone());
            }
        }
    }
    if order.len() != tables.len() {
        return Err(SetupError::Schema("the foreign keys form a cycle".into()));
    }
    Ok(order)
}

fn every_card(network: &str) -> Result<Vec<Pan>, SetupError> {
    let document: Value =
        serde_json::from_str(network).map_err(|error| SetupError::Network(error.to_string()))?;
    let mut cards = Vec::new();
    for record in document["cards"].as_array().into_iter().flatten() {
        let pan = record["pan"].as_str().unwrap_or_default();
        cards.push(
            Pan::parse(pan.as_bytes()).map_err(|_| SetupError::Network(format!("pan {pan}")))?,
        );
    }
    Ok(cards)
}

/// Where a simulated crash comes.
#[derive(Debug, Clone, Copy)]
enum Crash {
    /// The batch was decided and not yet appended: it is lost with its responses.
    BeforeAppend,
    /// The batch's record is durable and its responses were lost; nothing projected it.
    BeforeProjection,
    /// Inside a projection transaction of every unprojected record: it rolls back.
    InsideProjection,
}

/// Small segments, so seeds roll them.
const SIM_SEGMENT_BYTES: u64 = 64 << 10;

fn journal_settings(dir: &tempfile::TempDir) -> JournalSettings {
    JournalSettings {
        dir: dir.path().to_path_buf(),
        segment_bytes: SIM_SEGMENT_BYTES,
        lag_max_bytes: 1 << 30,
    }
}

/// A seed's journal directory: on `/dev/shm` where it exists (the simulated crash keeps the
/// page cache, so a sync to disk would cost time and show nothing).
fn journal_dir() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new().prefix("lsw-sim-").tempdir_in(shm) {
            return Ok(dir);
        }
    }
    tempfile::Builder::new().prefix("lsw-sim-").tempdir()
}

/// Plays one seed for `steps` steps on `store` (put back to the template first), then
/// drains: the last batch is written, the clock passes the hold timeout, the sweeper runs and
/// everything is checked once more.
///
/// # Errors
/// [`Failure`] on the first invariant that does not hold (or a setup failure, at step 0).
pub async fn run(
    world: &World,
    store: &Store,
    seed: u64,
    options: Options,
) -> Result<Summary, Failure> {
    let steps = options.steps;
    let fail = |step, reason: String| Failure { seed, step, reason };
    store
        .reset(world)
        .await
        .map_err(|error| fail(0, format!("reset: {error}")))?;
    let mut sim = Simulation::start(world, store.pool.clone(), seed, options)
        .await
        .map_err(|reason| fail(0, reason))?;
    for step in 1..=steps {
        sim.step().await.map_err(|reason| fail(step, reason))?;
    }
    sim.drain()
        .await
        .map_err(|reason| fail(steps + 1, reason))?;
    Ok(sim.summary)
}

/// What a message is, on the terminal's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A purchase (or inquiry, `inquiry`).
    Purchase { inquiry: bool },
    /// A confirm of message `original`.
    Confirm { original: usize },
    /// A reversal of message `original`.
    Reversal { original: usize },
}

/// A response a terminal heard, kept to compare retransmissions' answers with.
#[derive(Debug, Clone)]
struct Heard {
    bytes: Bytes,
    /// From the store (written before it left): every later copy must be identical.
    durable: bool,
    /// The engine's life it was heard in: a remembered decline lasts only that long.
    epoch: u32,
}

/// One message a terminal built.
#[derive(Debug)]
struct Message {
    terminal: usize,
    out: Outgoing,
    kind: Kind,
    sent: bool,
    heard: Option<Heard>,
    /// Approvals: the RRN heard, and in which order facts were heard.
    rrn: Option<Rrn>,
    approved_at: Option<u64>,
    reversed_at: Option<u64>,
}

/// Work decided whose response waits for the batch's commit.
struct Deferred {
    message: usize,
    response: Bytes,
    /// Written by the store once the batch is (new work, or an answer already written).
    durable: bool,
}

struct Simulation<'w> {
    world: &'w World,
    pool: Pool,
    rng: StdRng,
    engine: Engine,
    config: EngineConfig,
    now: i64,
    epoch: u32,
    facts: u64,
    terminals: Vec<Terminal>,
    messages: Vec<Message>,
    inflight: Vec<usize>,
    effects: Vec<Effect>,
    deferred: Vec<Deferred>,
    /// The journal and its directory.
    journal: Option<Journal>,
    journal_dir: tempfile::TempDir,
    /// Records appended and not yet projected: sequence number, decision time, effects.
    unprojected: Vec<(u64, i64, Vec<Effect>)>,
    /// Purchases heard approved.
    approved: Vec<usize>,
    /// Confirms heard `00`.
    confirmed: Vec<usize>,
    /// Reversals heard `00`.
    reversed: Vec<usize>,
    summary: Summary,
    options: Options,
}

type Step = Result<(), String>;

impl<'w> Simulation<'w> {
    async fn start(
        world: &'w World,
        pool: Pool,
        seed: u64,
        options: Options,
    ) -> Result<Self, String> {
        let config = EngineConfig {
            hold_timeout_ms: HOLD_TIMEOUT_MS,
            answered_window_ms: ledger::ANSWERED_WINDOW_MS,
        };
        let journal_dir = journal_dir().map_err(|error| format!("journal dir: {error}"))?;
        let (journal, _) = journaled::recover(&pool, &journal_settings(&journal_dir), START_MS)
            .await
            .map_err(|error| format!("journal: {error}"))?;
        let state = ledger::load(&pool, UnixMillis::new(START_MS))
            .await
            .map_err(|error| format!("load: {error}"))?;
        Ok(Simulation {
            journal: Some(journal),
            journal_dir,
            unprojected: Vec::new(),
            world,
            pool,
            rng: StdRng::seed_from_u64(seed),
            engine: Engine::new(state, config),
            config,
            now: START_MS,
            epoch: 0,
            facts: 0,
            terminals: world.terminals.clone(),
            messages: Vec::new(),
            inflight: Vec::new(),
            effects: Vec::new(),
            deferred: Vec::new(),
            approved: Vec::new(),
            confirmed: Vec::new(),
            reversed: Vec::new(),
            summary: Summary::default(),
            options,
        })
    }

    async fn step(&mut self) -> Step {
        let roll = self.rng.gen_range(0..1000_u32);
        match roll {
            0..=219 => self.purchase(),
            220..=339 => self.confirm(),
            340..=399 => self.reversal(),
            400..=499 => self.retransmit(),
            500..=799 => self.deliver()?,
            800..=819 => self.lose_in_flight(),
            820..=879 => self.advance()?,
            880..=944 => self.commit().await?,
            945..=984 => self.project(false).await?,
            985..=990 => self.crash(Crash::BeforeAppend).await?,
            991..=995 => self.crash(Crash::BeforeProjection).await?,
            _ => self.crash(Crash::InsideProjection).await?,
        }
        self.check_memory()
    }

    async fn drain(&mut self) -> Step {
        while !self.inflight.is_empty() {
            self.deliver()?;
        }
        self.commit().await?;
        self.now += HOLD_TIMEOUT_MS + 1;
        self.sweep()?;
        self.commit().await?;
        self.project(true).await?;
        self.check_memory()?;
        if !self.engine.state.pending.is_empty() {
            return Err(format!(
                "{} holds still pending after the timeout and a sweep",
                self.engine.state.pending.len()
            ));
        }
        Ok(())
    }

    fn seconds(&self) -> i64 {
        self.now.div_euclid(1000)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        items.get(self.rng.gen_range(0..items.len())).copied()
    }

    fn new_message(&mut self, terminal: usize, out: Outgoing, kind: Kind) -> usize {
        self.messages.push(Message {
            terminal,
            out,
            kind,
            sent: false,
            heard: None,
            rrn: None,
            approved_at: None,
            reversed_at: None,
        });
        self.messages.len() - 1
    }

    fn send(&mut self, message: usize) {
        self.trace(|| {
            let m = self.messages.get(message);
            format!(
                "send m{message} {:?} stan {:?}",
                m.map(|m| m.kind),
                m.map(|m| m.out.stan.get())
            )
        });
        if let Some(m) = self.messages.get_mut(message) {
            m.sent = true;
        }
        self.inflight.push(message);
    }

    fn build_purchase(&mut self) -> Option<(usize, Outgoing, bool)> {
        let terminal = self.rng.gen_range(0..self.terminals.len());
        let code = *ProcessingCode::ALL.get(self.rng.gen_range(0..ProcessingCode::ALL.len()))?;
        let inquiry = matches!(
            code,
            ProcessingCode::ClubInquiry | ProcessingCode::StoreCreditInquiry
        );
        let amount = match self.rng.gen_range(0..100_u32) {
            _ if inquiry => None,
            0..=69 => Some(self.rng.gen_range(1..=60_u64) * 1_000),
            70..=94 => Some(self.rng.gen_range(100..=2_500_u64) * 1_000),
            95..=97 => Some(150_000_000),
            _ => Some(0),
        };
        let card = self.rng.gen_range(0..self.world.cards.len());
        let pan = self.world.cards.get(card)?.clone();
        let nonce: [u8; 12] = self.rng.gen();
        let at = self.seconds();
        let out = self
            .terminals
            .get_mut(terminal)?
            .purchase(code, amount, &pan, at, nonce)
            .ok()?;
        Some((terminal, out, inquiry))
    }

    fn purchase(&mut self) {
        if let Some((terminal, out, inquiry)) = self.build_purchase() {
            let message = self.new_message(terminal, out, Kind::Purchase { inquiry });
            self.send(message);
        }
    }

    fn confirm(&mut self) {
        let Some(original) = self.pick(&self.approved.clone()) else {
            return;
        };
        let Some(m) = self.messages.get(original) else {
            return;
        };
        let (terminal, out, rrn) = (m.terminal, m.out.clone(), m.rrn);
        if self.resend_follow_up(original) {
            return;
        }
        let Some(rrn) = rrn else {
            return;
        };
        let at = self.seconds();
        let Some(Ok(confirm)) = self
            .terminals
            .get_mut(terminal)
            .map(|t| t.confirm(&out, rrn, at))
        else {
            return;
        };
        let message = self.new_message(terminal, confirm, Kind::Confirm { original });
        self.send(message);
    }

    fn reversal(&mut self) {
        let original = match self.rng.gen_range(0..10_u32) {
            // One heard approved (with its RRN, as a terminal that got the answer sends it).
            0..=5 => self.pick(&self.approved.clone()),
            // One sent but never answered (the terminal timed out on it).
            6..=7 => {
                let unanswered: Vec<usize> = self
                    .messages
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| {
                        m.sent && m.heard.is_none() && m.kind == Kind::Purchase { inquiry: false }
                    })
                    .map(|(i, _)| i)
                    .collect();
                self.pick(&unanswered)
            }
            // One never sent: it may still go out later, behind its reversal.
            _ => match self.build_purchase() {
                Some((terminal, out, false)) => {
                    let message =
                        self.new_message(terminal, out, Kind::Purchase { inquiry: false });
                    if self.rng.gen_bool(0.5) {
                        // Sent, but delivered after the reversal (if at all).
                        if let Some(m) = self.messages.get_mut(message) {
                            m.sent = true;
                        }
                        self.inflight.push(message);
                    }
                    Some(message)
                }
                _ => None,
            },
        };
        let Some(original) = original else {
            return;
        };
        let Some(m) = self.messages.get(original) else {
            return;
        };
        let (terminal, out, rrn) = (m.terminal, m.out.clone(), m.rrn);
        if self.resend_follow_up(original) {
            return;
        }
        let at = self.seconds();
        let Some(Ok(reversal)) = self
            .terminals
            .get_mut(terminal)
            .map(|t| t.reversal(&out, rrn, at))
        else {
            return;
        };
        let message = self.new_message(terminal, reversal, Kind::Reversal { original });
        self.send(message);
    }

    /// Unless fresh follow-ups are allowed, a terminal with a confirm or reversal of
    /// `original` still unanswered resends that one instead of building another.
    fn resend_follow_up(&mut self, original: usize) -> bool {
        if self.options.fresh_follow_ups {
            return false;
        }
        let waiting = self.messages.iter().position(|m| {
            m.heard.is_none()
                && matches!(m.kind, Kind::Confirm { original: o } | Kind::Reversal { original: o } if o == original)
        });
        match waiting {
            Some(message) => {
                self.trace(|| format!("resend m{message} instead of a new follow-up"));
                self.inflight.push(message);
                true
            }
            None => false,
        }
    }

    fn trace(&self, line: impl FnOnce() -> String) {
        if self.options.trace {
            eprintln!("  [t={}] {}", self.now - START_MS, line());
        }
    }

    fn retransmit(&mut self) {
        // A terminal resends anything it sent, except a request it has reversed since.
        let reversed_originals: HashSet<usize> = self
            .messages
            .iter()
            .filter_map(|m| match m.kind {
                Kind::Reversal { original } => Some(original),
                _ => None,
            })
            .collect();
        let candidates: Vec<usize> = self
            .messages
            .iter()
            .enumerate()
            .filter(|(i, m)| m.sent && !reversed_originals.contains(i))
            .map(|(i, _)| i)
            .collect();
        if let Some(message) = self.pick(&candidates) {
            self.trace(|| format!("retransmit m{message}"));
            self.inflight.push(message);
        }
    }

    fn lose_in_flight(&mut self) {
        if !self.inflight.is_empty() {
            let index = self.rng.gen_range(0..self.inflight.len());
            let message = self.inflight.remove(index);
            self.trace(|| format!("lose m{message} in flight"));
        }
    }

    fn advance(&mut self) -> Step {
        let by = if self.rng.gen_range(0..4_u32) == 0 {
            self.rng
                .gen_range(HOLD_TIMEOUT_MS + 1..=HOLD_TIMEOUT_MS + 90_000)
        } else {
            self.rng.gen_range(0..=5_000)
        };
        self.now += by;
        self.trace(|| format!("clock +{by} ms"));
        self.sweep()
    }

    /// Releases expired holds; a hold the balances refuse to release is a failed run.
    fn sweep(&mut self) -> Step {
        let now = UnixMillis::new(self.now);
        let swept = self
            .engine
            .sweep(now, &mut self.effects, switch::committer::SWEEP_MAX);
        if let Some((txn, fault)) = swept.faults.first() {
            return Err(format!(
                "expired holds of txn {} not released: {fault}",
                txn.0
            ));
        }
        self.summary.expired += u64::try_from(swept.released).unwrap_or(0);
        self.engine.prune(now);
        Ok(())
    }

    /// The network hands one message to the switch: admission, then the engine, then the
    /// committer's rule (declines leave at once, the rest wait for the batch).
    fn deliver(&mut self) -> Step {
        if self.inflight.is_empty() {
            return Ok(());
        }
        let index = if self.rng.gen_range(0..100_u32) < REORDER_PERCENT {
            self.rng.gen_range(0..self.inflight.len())
        } else {
            0
        };
        let message = self.inflight.remove(index);
        let bytes = self
            .messages
            .get(message)
            .map(|m| m.out.bytes.clone())
            .ok_or("message index out of range")?;
        let snapshot = &self.world.snapshot;
        let admitted = match admit(bytes, snapshot, &self.world.pan_key) {
            Admission::Admitted(admitted) => admitted,
            Admission::Refused { code, .. } => {
                return Err(format!(
                    "message {message} refused {} at admission",
                    code.as_str()
                ))
            }
            Admission::Unparseable => return Err(format!("message {message} unparseable")),
        };
        let keyed = snapshot
            .keys_by_ksi(admitted.request.ksi.as_bytes())
            .ok_or("admitted request of an unknown terminal")?;
        let decision = self.engine.decide(
            snapshot,
            keyed,
            &admitted,
            UnixMillis::new(self.now),
            &mut self.effects,
        );
        self.summary.decided += 1;
        // The balances refuse an operation only when their bookkeeping broke: a failed run.
        if let Some(fault) = decision.fault {
            return Err(format!("message {message}: balance fault: {fault}"));
        }
        self.trace(|| {
            format!(
                "decide m{message} -> {} durable {} resent {}",
                decision.code().as_str(),
                decision.durable,
                decision.resent
            )
        });
        // The switch builds and MACs the response from the decision's fields off the engine's
        // task; when does not change the bytes.
        let response =
            decision
                .answer
                .response(&mut BytesMut::new(), &admitted.request, keyed.keys);
        if decision.durable || decision.resent {
            // A resent answer from the answered window was written with its batch already.
            let durable = decision.durable
                || self
                    .key(message)
                    .is_some_and(|key| self.engine.state.answered.contains_key(&key));
            self.deferred.push(Deferred {
                message,
                response,
                durable,
            });
            Ok(())
        } else {
            self.hear(message, &response, false)
        }
    }

    /// The group commit: the batch's effects appended to the journal as one record, then its
    /// responses.
    async fn commit(&mut self) -> Step {
        let effects = std::mem::take(&mut self.effects);
        let deferred = std::mem::take(&mut self.deferred);
        self.trace(|| {
            format!(
                "commit {} effects, {} responses",
                effects.len(),
                deferred.len()
            )
        });
        if !effects.is_empty() {
            self.append(effects)?;
            self.summary.commits += 1;
        }
        for Deferred {
            message,
            response,
            durable,
        } in deferred
        {
            self.hear(message, &response, durable)?;
        }
        Ok(())
    }

    /// Appends a batch's record to the journal.
    fn append(&mut self, effects: Vec<Effect>) -> Step {
        let payload = journaled::encode(self.now, &effects)?;
        let journal = self.journal.as_mut().ok_or("no journal")?;
        let seq = journal
            .append(&payload)
            .map_err(|error| format!("journal append: {error}"))?;
        self.unprojected.push((seq, self.now, effects));
        Ok(())
    }

    /// The projector writes the oldest records (all of them with `all`, else a random number)
    /// into the database in one transaction; the SQL invariants hold after any prefix, and
    /// once everything is projected the store equals the engine.
    async fn project(&mut self, all: bool) -> Step {
        let n = if all || self.unprojected.is_empty() {
            self.unprojected.len()
        } else {
            self.rng.gen_range(1..=self.unprojected.len())
        };
        if n == 0 {
            return Ok(());
        }
        let records: Vec<_> = self.unprojected.drain(..n).collect();
        let (first, last, at) = match (records.first(), records.last()) {
            (Some(first), Some(last)) => (first.0, last.0, last.1),
            _ => return Ok(()),
        };
        self.trace(|| format!("project records {first}..={last}"));
        let effects: Vec<Effect> = records.into_iter().flat_map(|(_, _, e)| e).collect();
        projection::apply(&self.pool, &effects, first, last, Some(at))
            .await
            .map_err(|error| format!("projection failed: {error}"))?;
        self.check_store().await?;
        if self.unprojected.is_empty() && self.effects.is_empty() {
            self.check_heard_stored().await?;
            self.check_engine_equals_store().await?;
        }
        Ok(())
    }

    /// A crash of the switch at one of three points, then its start: the journal is opened,
    /// what the database lacks is projected, and the engine loads from the store.
    async fn crash(&mut self, at: Crash) -> Step {
        let effects = std::mem::take(&mut self.effects);
        self.trace(|| {
            format!(
                "crash {at:?}: {} effects, {} responses lost, {} records unprojected",
                effects.len(),
                self.deferred.len(),
                self.unprojected.len()
            )
        });
        self.deferred.clear();
        match at {
            Crash::BeforeAppend => {}
            Crash::BeforeProjection => {
                if !effects.is_empty() {
                    self.append(effects)?;
                    self.summary.commits += 1;
                }
            }
            Crash::InsideProjection => {
                // A projection transaction written in full, then never committed.
                if let (Some(first), Some(last)) =
                    (self.unprojected.first(), self.unprojected.last())
                {
                    let (first, last, at) = (first.0, last.0, last.1);
                    let all: Vec<Effect> = self
                        .unprojected
                        .iter()
                        .flat_map(|(_, _, e)| e.clone())
                        .collect();
                    let mut tx = self.pool.begin().await.map_err(|e| format!("begin: {e}"))?;
                    projection::write(&mut tx, &all, first, last, Some(at))
                        .await
                        .map_err(|error| format!("projection failed: {error}"))?;
                    drop(tx);
                }
            }
        }
        self.journal = None;
        self.unprojected.clear();
        let (journal, _) =
            journaled::recover(&self.pool, &journal_settings(&self.journal_dir), self.now)
                .await
                .map_err(|error| format!("journal recovery: {error}"))?;
        self.journal = Some(journal);
        let state = ledger::load(&self.pool, UnixMillis::new(self.now))
            .await
            .map_err(|error| format!("load after crash: {error}"))?;
        self.engine = Engine::new(state, self.config);
        self.epoch += 1;
        self.summary.crashes += 1;
        self.check_store().await?;
        self.check_heard_stored().await
    }

    /// A response reaches its terminal (or is lost on the way).
    fn hear(&mut self, message: usize, bytes: &Bytes, durable: bool) -> Step {
        if self.rng.gen_range(0..100_u32) < RESPONSE_LOSS_PERCENT {
            self.trace(|| format!("lose the response to m{message}"));
            return Ok(());
        }
        self.trace(|| format!("m{message} hears {}", code_of(bytes)));
        self.summary.responses_digest = digest(self.summary.responses_digest, bytes);
        let epoch = self.epoch;
        let m = self
            .messages
            .get(message)
            .ok_or("message index out of range")?;
        let keys = self
            .terminals
            .get(m.terminal)
            .ok_or("terminal index out of range")?
            .keys();
        let raw = RawMessage::parse(bytes.clone())
            .map_err(|error| format!("message {message}: response unparseable: {error:?}"))?;
        let response = Response::parse(&raw, Some(keys))
            .map_err(|error| format!("message {message}: response refused: {error}"))?;
        if response.stan != m.out.stan {
            return Err(format!(
                "message {message}: response names stan {} not {}",
                response.stan, m.out.stan
            ));
        }
        let mut durable = durable;
        if let Some(before) = &m.heard {
            if before.durable || before.epoch == epoch {
                if before.bytes != *bytes {
                    return Err(format!(
                        "message {message} ({:?}) retransmitted: answer {} differs from the {} \
                         heard before",
                        m.kind,
                        response.code.as_str(),
                        code_of(&before.bytes)
                    ));
                }
                self.summary.same_answers += 1;
                durable |= before.durable;
            }
        }
        let approved = response.code == ResponseCode::Approved;
        let kind = m.kind;
        let first_approval = approved && m.rrn.is_none() && m.approved_at.is_none();
        if approved && matches!(kind, Kind::Purchase { inquiry: false }) && !durable {
            return Err(format!(
                "message {message}: approval left before its hold was written"
            ));
        }
        self.facts += 1;
        let fact = self.facts;
        if let Some(m) = self.messages.get_mut(message) {
            m.heard = Some(Heard {
                bytes: bytes.clone(),
                durable,
                epoch,
            });
        }
        if !approved || !first_approval {
            return Ok(());
        }
        match kind {
            Kind::Purchase { inquiry: true } => {}
            Kind::Purchase { inquiry: false } => {
                let rrn = response
                    .rrn
                    .ok_or(format!("message {message}: approval without rrn"))?;
                let reversed_before = self
                    .messages
                    .get(message)
                    .and_then(|m| m.reversed_at)
                    .is_some();
                if reversed_before {
                    self.summary.approved_after_reversal += 1;
                }
                if let Some(m) = self.messages.get_mut(message) {
                    m.rrn = Some(rrn);
                    m.approved_at = Some(fact);
                }
                self.approved.push(message);
                self.summary.approved += 1;
            }
            Kind::Confirm { .. } => {
                if let Some(m) = self.messages.get_mut(message) {
                    m.approved_at = Some(fact);
                }
                self.confirmed.push(message);
                self.summary.confirmed += 1;
            }
            Kind::Reversal { original } => {
                if let Some(m) = self.messages.get_mut(message) {
                    m.approved_at = Some(fact);
                }
                if let Some(o) = self.messages.get_mut(original) {
                    o.reversed_at.get_or_insert(fact);
                }
                self.reversed.push(message);
                self.summary.reversed += 1;
            }
        }
        Ok(())
    }

    fn key(&self, message: usize) -> Option<MessageKey> {
        let m = self.messages.get(message)?;
        Some(MessageKey {
            ksi: *self.terminals.get(m.terminal)?.ksi.as_bytes(),
            mti: m.out.mti,
            stan: m.out.stan,
            transmitted: m.out.transmitted,
        })
    }

    /// The original a confirm or reversal names.
    fn original(&self, message: usize) -> Option<usize> {
        match self.messages.get(message)?.kind {
            Kind::Confirm { original } | Kind::Reversal { original } => Some(original),
            Kind::Purchase { .. } => None,
        }
    }

    /// Whether the original's approval was heard before this reversal's `00`.
    fn reversal_after_approval(&self, reversal: usize) -> bool {
        let Some(original) = self.original(reversal) else {
            return false;
        };
        match (
            self.messages.get(original).and_then(|m| m.approved_at),
            self.messages.get(reversal).and_then(|m| m.approved_at),
        ) {
            (Some(approved), Some(reversed)) => approved < reversed,
            _ => false,
        }
    }

    /// The in-memory invariants, after every step.
    fn check_memory(&self) -> Step {
        let state = &self.engine.state;
        for (card, account) in &state.club {
            if account.held > account.ledger {
                return Err(format!("club of card {card:?}: held above the ledger"));
            }
        }
        for (key, account) in &state.store {
            if account.held > account.ledger {
                return Err(format!("store credit {key:?}: held above the ledger"));
            }
            let lots = account
                .lots
                .iter()
                .map(|lot| lot.remaining.get())
                .sum::<i64>();
            if lots != account.ledger.get() {
                return Err(format!(
                    "store credit {key:?}: lots sum to {lots}, ledger {}",
                    account.ledger.get()
                ));
            }
        }
        for &message in &self.approved {
            let key = self.key(message).ok_or("no key")?;
            if state.txn_by_key(&key).is_none() {
                return Err(format!(
                    "purchase {message} was heard approved but the engine does not know it"
                ));
            }
        }
        for &message in &self.confirmed {
            let original = self.original(message).ok_or("no original")?;
            let txn = self.txn_state(original)?;
            if !matches!(txn, TxnState::Confirmed | TxnState::Reversed) {
                return Err(format!(
                    "confirm {message} of {original} was heard 00 but the transaction is {txn:?}"
                ));
            }
        }
        for &message in &self.reversed {
            if !self.reversal_after_approval(message) {
                continue;
            }
            let original = self.original(message).ok_or("no original")?;
            let txn = self.txn_state(original)?;
            if txn != TxnState::Reversed {
                return Err(format!(
                    "reversal {message} of approved {original} was heard 00 but the transaction \
                     is {txn:?}"
                ));
            }
        }
        Ok(())
    }

    fn txn_state(&self, message: usize) -> Result<TxnState, String> {
        let key = self.key(message).ok_or("no key")?;
        let state = &self.engine.state;
        state
            .txn_by_key(&key)
            .and_then(|id| state.txns.get(&id))
            .map(|txn| txn.state)
            .ok_or(format!("message {message}: no transaction in the engine"))
    }

    /// The SQL invariants, after every projection and crash: they hold for any prefix of the
    /// journal.
    async fn check_store(&self) -> Step {
        let findings = crate::check::run(&self.pool)
            .await
            .map_err(|error| format!("check: {error}"))?;
        if let Some(broken) = findings.iter().find(|f| f.count > 0) {
            return Err(format!(
                "check: {} ({} rows: {:?})",
                broken.name, broken.count, broken.breaches
            ));
        }
        let doubled: Vec<i64> = sqlx::query_scalar(
            "SELECT txn_id FROM balance_movements WHERE kind = 'capture' \
             AND txn_id NOT IN (SELECT txn_id FROM captures) \
             UNION SELECT c.txn_id FROM captures c LEFT JOIN \
               (SELECT txn_id, -CAST(SUM(delta_rials) AS BIGINT) AS taken FROM balance_movements \
                WHERE kind = 'capture' GROUP BY txn_id) m ON m.txn_id = c.txn_id \
             WHERE COALESCE(m.taken, 0) <> c.club_rials + c.store_credit_rials",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| format!("captures: {error}"))?;
        if !doubled.is_empty() {
            return Err(format!(
                "captured money does not match one capture per transaction: {doubled:?}"
            ));
        }
        Ok(())
    }

    /// Every approval, confirm and reversal heard `00` is in the database: after a crash's
    /// start, and once the projection has caught up.
    async fn check_heard_stored(&self) -> Step {
        let rows = sqlx::query(
            "SELECT t.ksi, t.mti, t.stan, t.transmitted, t.state, CASE WHEN c.txn_id IS NULL THEN 0 ELSE 1 END AS captured \
             FROM transactions t LEFT JOIN captures c ON c.txn_id = t.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|error| format!("transactions: {error}"))?;
        let mut stored: HashMap<(String, String, i64, String), (String, bool)> = HashMap::new();
        for row in rows {
            let get = |error: sqlx::Error| format!("transactions row: {error}");
            stored.insert(
                (
                    row.try_get("ksi").map_err(get)?,
                    row.try_get("mti").map_err(get)?,
                    row.try_get("stan").map_err(get)?,
                    row.try_get("transmitted").map_err(get)?,
                ),
                (
                    row.try_get("state").map_err(get)?,
                    row.try_get::<i64, _>("captured").map_err(get)? != 0,
                ),
            );
        }
        let row_of = |message: usize| {
            let m = self.messages.get(message)?;
            let key = (
                String::from_utf8_lossy(self.terminals.get(m.terminal)?.ksi.as_bytes())
                    .into_owned(),
                m.out.mti.as_str().to_string(),
                i64::from(m.out.stan.get()),
                String::from_utf8_lossy(&m.out.transmitted).into_owned(),
            );
            stored.get(&key)
        };
        for &message in &self.approved {
            if row_of(message).is_none() {
                return Err(format!(
                    "purchase {message} was heard approved but its transaction is not stored"
                ));
            }
        }
        for &message in &self.confirmed {
            let original = self.original(message).ok_or("no original")?;
            match row_of(original) {
                Some((state, true)) if state == "confirmed" || state == "reversed" => {}
                other => {
                    return Err(format!(
                        "confirm {message} of {original} was heard 00 but the store has {other:?}"
                    ))
                }
            }
        }
        for &message in &self.reversed {
            if !self.reversal_after_approval(message) {
                continue;
            }
            let original = self.original(message).ok_or("no original")?;
            match row_of(original) {
                Some((state, _)) if state == "reversed" => {}
                other => {
                    return Err(format!(
                        "reversal {message} of approved {original} was heard 00 but the store \
                         has {other:?}"
                    ))
                }
            }
        }
        Ok(())
    }

    /// After a commit the engine's memory must be exactly what a restart would load.
    async fn check_engine_equals_store(&self) -> Step {
        let loaded = ledger::load(&self.pool, UnixMillis::new(self.now))
            .await
            .map_err(|error| format!("load: {error}"))?;
        compare(&self.engine.state, &loaded)
    }
}

/// The parts of the engine's state the store keeps, compared field by field.
fn compare(memory: &State, stored: &State) -> Step {
    if memory.club != stored.club {
        return Err(diff("club balances", &memory.club, &stored.club));
    }
    if memory.store != stored.store {
        return Err(diff("store-credit accounts", &memory.store, &stored.store));
    }
    if memory.pending != stored.pending {
        return Err(format!(
            "pending holds: engine {:?}, store {:?}",
            memory.pending, stored.pending
        ));
    }
    // A capture's lots are kept in the order they were drawn in memory and by lot id in the
    // store; a reversal returns each lot its own amount, so only the set matters.
    let txns = |state: &State| {
        let mut txns: HashMap<_, _> = state
            .txns
            .iter()
            .map(|(id, txn)| (id, txn.clone()))
            .collect();
        for txn in txns.values_mut() {
            txn.capture.lots.sort_unstable();
        }
        txns
    };
    let (memory_txns, stored_txns) = (txns(memory), txns(stored));
    if memory_txns != stored_txns {
        return Err(diff("transactions", &memory_txns, &stored_txns));
    }
    for (id, txn) in memory.txns.iter() {
        let (in_memory, in_store) = (memory.txn_by_key(&txn.key), stored.txn_by_key(&txn.key));
        if in_memory != Some(id) || in_store != Some(id) {
            return Err(format!(
                "transaction {id:?}'s key names {in_memory:?} in the engine, {in_store:?} in the store"
            ));
        }
    }
    if memory.txn_keys != stored.txn_keys {
        return Err(diff(
            "transactions by key",
            &memory.txn_keys,
            &stored.txn_keys,
        ));
    }
    if memory.answered != stored.answered {
        return Err(format!(
            "answered messages: engine has {}, store {}",
            memory.answered.len(),
            stored.answered.len()
        ));
    }
    let tombstones = |state: &State| state.tombstones.keys().copied().collect::<HashSet<_>>();
    if tombstones(memory) != tombstones(stored) {
        return Err("tombstones differ between engine and store".into());
    }
    if (memory.next_txn, memory.next_lot) != (stored.next_txn, stored.next_lot) {
        return Err(format!(
            "next ids: engine txn {} lot {}, store txn {} lot {}",
            memory.next_txn, memory.next_lot, stored.next_txn, stored.next_lot
        ));
    }
    Ok(())
}

fn diff<K, V, S>(what: &str, memory: &HashMap<K, V, S>, stored: &HashMap<K, V, S>) -> String
where
    K: std::hash::Hash + Eq + fmt::Debug,
    S: std::hash::BuildHasher,
    V: PartialEq + fmt::Debug,
{
    for (key, value) in memory {
        match stored.get(key) {
            Some(other) if other == value => {}
            other => return format!("{what} {key:?}: engine {value:?}, store {other:?}"),
        }
    }
    for (key, value) in stored {
        if !memory.contains_key(key) {
            return format!("{what} {key:?}: engine none, store {value:?}");
        }
    }
    format!("{what} differ")
}

/// FNV-1a, continued from `state` over `bytes` (a run's fingerprint, not a security hash).
fn digest(state: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    let start = if state == 0 { OFFSET } else { state };
    bytes.iter().fold(start, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

fn code_of(bytes: &Bytes) -> String {
    RawMessage::parse(bytes.clone())
        .ok()
        .and_then(|raw| raw.field(protocol::spec::RESPONSE_CODE).map(<[u8]>::to_vec))
        .map(|code| String::from_utf8_lossy(&code).into_owned())
        .unwrap_or_else(|| "??".into())
}
