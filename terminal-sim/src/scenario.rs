//! `lsw-sim scenario`: fault injection against a live switch. Each [`Scenario`] drives the
//! switch through [`Client`] connections the way a faulty network or terminal would
//! (duplicates, retransmissions, lost and late confirms, reversals before their original,
//! dropped connections, reordering, clock skew, bad MACs, envelopes and frames), checks its
//! [`Scenario::claim`] from what the terminal sees and from the database, and then requires
//! every conservation invariant of [`crate::check`] to hold.
//!
//! Scenarios share one switch and run one after another: each draws its STANs from a block of
//! its own, uses the fixture card with the most club balance, compares balances before and
//! after rather than absolute values, and reverses what it approved, so the next one starts
//! from the balances the last one found.
//!
//! Time: against an in-process switch the context carries the switch's [`ManualClock`], which
//! the time-dependent scenarios (lost and late confirms) move past the hold timeout. Against
//! an external switch they sleep past it instead, so that switch should run with a short hold
//! timeout for the scenario run (for example `LSW_HOLD_TIMEOUT_MS=2000`, and the same value in
//! [`ScenarioContext::hold_timeout`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use protocol::builder::{BuildError, MessageBuilder};
use protocol::envelope;
use protocol::field54::AmountKind;
use protocol::frame;
use protocol::response::Response;
use protocol::terminal::{Outgoing, Terminal};
use protocol::{
    spec, NetworkCode, Pan, ProcessingCode, RawMessage, ResponseCode, Rrn, Stan, TerminalId, Tmk,
    WorkingKeys,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;
use switch::clock::{Clock, ManualClock, SystemClock};
use switch::store::Pool;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::{Client, ClientError};
use crate::fixture::Fixture;

/// STANs one scenario may use: each scenario starts at its own block, so scenarios run in
/// sequence on one terminal never share a retransmission key.
pub const STAN_BLOCK: u32 = 1_000;
/// Most scenarios the STAN blocks leave room for.
const SCENARIOS_MAX: u32 = 16;
/// Highest [`ScenarioContext::stan_base`]: every block stays within STAN's 6 digits.
pub const STAN_BASE_MAX: u32 = 999_999 - STAN_BLOCK * SCENARIOS_MAX;
const _: () = assert!(Scenario::ALL.len() <= 16);

/// How long a scenario waits for any one response before calling it lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection the switch must close may take to close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the switch's sweeper may take to expire holds once their timeout has passed
/// (it runs every `sweep_every_ms`, one second by default).
const SWEEP_WAIT: Duration = Duration::from_secs(10);
/// Margin past the hold timeout, so no hold is exactly on its deadline.
const HOLD_MARGIN: Duration = Duration::from_secs(1);
/// Club balance the chosen card needs: the largest scenario purchase is a fraction of it.
const CLUB_RIALS_MIN: u64 = 200_000;
/// Fixture cards probed for the richest one (each probe is one inquiry).
const CARDS_PROBED_MAX: usize = 16;
/// Purchases the late-confirm scenario may make to spend the card's club balance.
const DRAINS_MAX: usize = 4;
/// Purchases the dropped-connection scenario leaves in flight.
const DROPPED_IN_FLIGHT: usize = 8;

/// One fault-injection scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Identical copies of a request, a confirm and a reversal.
    Duplicates,
    /// The same key resent with a fresh envelope, or with other content.
    Retransmissions,
    /// Approved purchases whose confirms never arrive.
    ConfirmsLost,
    /// Confirms that arrive after their hold timed out.
    ConfirmsLate,
    /// A reversal that arrives before its original.
    ReversalFirst,
    /// Connections dropped with requests and confirms in flight.
    DroppedConnection,
    /// Pipelined messages whose order and answers are mixed up.
    Reordered,
    /// Field 7 far from the switch's clock.
    ClockSkew,
    /// MACs flipped, missing or over other bytes.
    BadMacs,
    /// Identity envelopes that must not open.
    BadEnvelopes,
    /// Frames that cannot be parsed and bad length prefixes.
    GarbageFrames,
}

/// A scenario's context: where the switch is, who the terminals and cards are, how to read
/// the switch's database, and how time moves for it.
pub struct ScenarioContext {
    /// The switch's terminal address.
    pub addr: SocketAddr,
    /// The terminals and cards the switch was provisioned with.
    pub fixture: Arc<Fixture>,
    /// The switch's database, read only.
    pub db: Pool,
    /// The in-process switch's clock, which scenarios move; `None` for an external switch on
    /// the machine's clock, which scenarios wait for.
    pub clock: Option<Arc<ManualClock>>,
    /// The switch's hold (confirm) timeout. Against an external switch the time-dependent
    /// scenarios sleep this long, so it should be short (a few seconds).
    pub hold_timeout: Duration,
    /// First STAN of the first scenario's block, at most [`STAN_BASE_MAX`]; a different base
    /// keeps repeated runs within one second apart.
    pub stan_base: u32,
    /// How to wait until the database holds what the switch answered (journal mode writes it
    /// behind the answers).
    pub freshness: Freshness,
}

/// How a reader learns that a journal-mode switch's database has caught up with its answers.
#[derive(Clone)]
pub enum Freshness {
    /// Read at once (the database is the commit point).
    Immediate,
    /// The in-process switch's journal progress.
    InProcess(Arc<switch::committer::journaled::JournalState>),
    /// An external switch's `/metrics` at this admin address: `lsw_journal_applied_seq` must
    /// reach the `lsw_journal_appended_seq` read first (no such lines: read at once).
    Admin(SocketAddr),
}

impl Freshness {
    /// Waits until everything answered before the call is in the database (at most 20 s).
    pub async fn wait(&self) {
        match self {
            Freshness::Immediate => {}
            Freshness::InProcess(journal) => {
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), journal.wait_projected()).await;
            }
            Freshness::Admin(admin) => {
                let Some(target) = metric(*admin, "lsw_journal_appended_seq").await else {
                    return;
                };
                for _ in 0..4_000 {
                    if metric(*admin, "lsw_journal_applied_seq").await.unwrap_or(0) >= target {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
}

/// One integer value of a switch's `/metrics`, or `None`.
async fn metric(admin: SocketAddr, name: &str) -> Option<u64> {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(admin).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text))
        .await
        .ok()?
        .ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .and_then(|value| format!("{value:.0}").parse().ok())
}

impl ScenarioContext {
    /// The switch's database, once it holds what was answered.
    pub async fn db(&self) -> &Pool {
        self.freshness.wait().await;
        &self.db
    }
}

/// What a scenario checked.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The scenario.
    pub scenario: Scenario,
    /// Each check that held, in the order made.
    pub checks: Vec<String>,
}

/// Why a scenario failed.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The switch broke the scenario's claim.
    #[error("claim broken: {0}")]
    Broken(String),
    /// A conservation invariant does not hold afterwards.
    #[error("conservation invariants broken: {}", .0.join("; "))]
    Invariants(Vec<String>),
    /// A connection failed where the scenario needed an answer.
    #[error("{during}: {source}")]
    Client {
        /// What the scenario was doing.
        during: &'static str,
        /// Why it failed.
        source: ClientError,
    },
    /// The database could not be read.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A message could not be built.
    #[error("building a message: {0}")]
    Build(#[from] BuildError),
    /// The fixture or the switch cannot support the scenario.
    #[error("cannot run: {0}")]
    Setup(String),
}

/// Runs `scenario` against the switch of `context` and checks its claim, then the
/// conservation invariants.
///
/// # Errors
/// [`ScenarioError::Broken`] or [`ScenarioError::Invariants`] when the switch breaks the claim
/// or an invariant; the other variants when the scenario could not be carried out.
pub async fn run(scenario: Scenario, context: &ScenarioContext) -> Result<Outcome, ScenarioError> {
    let mut probe = Probe::start(context, scenario).await?;
    match scenario {
        Scenario::Duplicates => duplicates(&mut probe).await?,
        Scenario::Retransmissions => retransmissions(&mut probe).await?,
        Scenario::ConfirmsLost => confirms_lost(&mut probe).await?,
        Scenario::ConfirmsLate => confirms_late(&mut probe).await?,
        Scenario::ReversalFirst => reversal_first(&mut probe).await?,
        Scenario::DroppedConnection => dropped_connection(&mut probe).await?,
        Scenario::Reordered => reordered(&mut probe).await?,
        Scenario::ClockSkew => clock_skew(&mut probe).await?,
        Scenario::BadMacs => bad_macs(&mut probe).await?,
        Scenario::BadEnvelopes => bad_envelopes(&mut probe).await?,
        Scenario::GarbageFrames => garbage_frames(&mut probe).await?,
    }
    probe.finish(scenario).await
}

impl Scenario {
    /// Every scenario, in the order `all` runs them.
    pub const ALL: [Scenario; 11] = [
        Scenario::Duplicates,
        Scenario::Retransmissions,
        Scenario::ConfirmsLost,
        Scenario::ConfirmsLate,
        Scenario::ReversalFirst,
        Scenario::DroppedConnection,
        Scenario::Reordered,
        Scenario::ClockSkew,
        Scenario::BadMacs,
        Scenario::BadEnvelopes,
        Scenario::GarbageFrames,
    ];

    /// The name the command line uses.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Duplicates => "duplicates",
            Scenario::Retransmissions => "retransmissions",
            Scenario::ConfirmsLost => "confirms-lost",
            Scenario::ConfirmsLate => "confirms-late",
            Scenario::ReversalFirst => "reversal-first",
            Scenario::DroppedConnection => "dropped-connection",
            Scenario::Reordered => "reordered",
            Scenario::ClockSkew => "clock-skew",
            Scenario::BadMacs => "bad-macs",
            Scenario::BadEnvelopes => "bad-envelopes",
            Scenario::GarbageFrames => "garbage-frames",
        }
    }

    /// The scenario named `name`, if any.
    pub fn parse(name: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
    }

    /// What must be true after the scenario: the sentence it checks.
    pub fn claim(self) -> &'static str {
        match self {
            Scenario::Duplicates => {
                "identical copies of a request, a confirm and a reversal, sent back to back or \
                 on another connection, get byte-identical responses and make one transaction \
                 with at most one capture"
            }
            Scenario::Retransmissions => {
                "a retransmission with the same content under a fresh envelope and MAC gets the \
                 stored response, and the same key with other content (amount, card, processing \
                 code, RRN) gets 94 and changes nothing"
            }
            Scenario::ConfirmsLost => {
                "approved purchases never confirmed expire once the hold timeout passes, and \
                 their holds are released: the available balance is back where it was"
            }
            Scenario::ConfirmsLate => {
                "a confirm arriving after its hold expired is an advice: it gets 00 and captures, \
                 and when the balance no longer covers it the shortfall is recorded as an \
                 exception instead of a refusal"
            }
            Scenario::ReversalFirst => {
                "a reversal of an original never seen gets 00 and is remembered: the original, \
                 arriving later, gets 12 and holds nothing, and resending either changes nothing"
            }
            Scenario::DroppedConnection => {
                "requests and confirms whose connection dropped before their responses were \
                 read are answered when resent on a new connection, approved ones with the \
                 durable answer (the answer's fields the switch stored), and nothing is held or \
                 captured twice"
            }
            Scenario::Reordered => {
                "pipelined messages are each answered under their own MTI and STAN in whatever \
                 order the answers come; a reversal sent right behind its request leaves nothing \
                 held, and a confirm that overtakes its request gets 25 and changes nothing"
            }
            Scenario::ClockSkew => {
                "a request whose field 7 is more than 300 s from the switch clock gets 63 and \
                 changes nothing, one 300 s away is accepted, and confirms and reversals are \
                 advices, processed whatever their age"
            }
            Scenario::BadMacs => {
                "a message whose MAC is flipped, missing or over other bytes gets 63 with a MAC \
                 of its own, changes nothing, and the connection goes on serving"
            }
            Scenario::BadEnvelopes => {
                "a request whose envelope is sealed under another key, names another terminal, \
                 has a version other than 1, was sealed for another message or is cut short \
                 gets 63 and changes nothing"
            }
            Scenario::GarbageFrames => {
                "unparseable frames get no response and the third on a connection closes it, a \
                 zero or oversized length prefix closes it at once, and other connections and \
                 balances are untouched"
            }
        }
    }

    fn index(self) -> u32 {
        let position = Scenario::ALL
            .iter()
            .position(|scenario| *scenario == self)
            .unwrap_or(0);
        u32::try_from(position).unwrap_or(0)
    }
}

impl ScenarioContext {
    /// The switch's time in Unix seconds: its manual clock, or the machine's.
    pub fn now_seconds(&self) -> i64 {
        let now = match &self.clock {
            Some(clock) => clock.now(),
            None => SystemClock.now(),
        };
        now.get().div_euclid(1000)
    }

    /// Lets the hold timeout pass: moves the manual clock, or sleeps.
    async fn pass_hold_timeout(&self) {
        let past = self.hold_timeout + HOLD_MARGIN;
        match &self.clock {
            Some(clock) => clock.advance(i64::try_from(past.as_millis()).unwrap_or(i64::MAX)),
            None => tokio::time::sleep(past).await,
        }
    }

    /// Seconds of field 7 skew that are still accepted, and the first refused. Exact on the
    /// manual clock; against a running clock the switch may read the next second, so the
    /// probes stay two seconds clear of the boundary.
    fn skew_probes(&self) -> (i64, i64) {
        let limit = protocol::field7::CLOCK_SKEW_SECONDS_MAX;
        match self.clock {
            Some(_) => (limit, limit + 1),
            None => (limit - 2, limit + 3),
        }
    }
}

/// The balances a terminal reads for its card: club and store credit, ledger and available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Balances {
    club_ledger: u64,
    club_available: u64,
    store_ledger: u64,
    store_available: u64,
}

/// One scenario's terminal, card, connection helpers and record of checks.
struct Probe<'a> {
    context: &'a ScenarioContext,
    terminal: Terminal,
    card: Pan,
    rng: StdRng,
    checks: Vec<String>,
}

impl<'a> Probe<'a> {
    async fn start(
        context: &'a ScenarioContext,
        scenario: Scenario,
    ) -> Result<Probe<'a>, ScenarioError> {
        if context.stan_base > STAN_BASE_MAX {
            return Err(ScenarioError::Setup(format!(
                "stan base {} is over {STAN_BASE_MAX}",
                context.stan_base
            )));
        }
        let block = context.stan_base + scenario.index() * STAN_BLOCK;
        let mut terminal = context.fixture.terminal(0);
        terminal.set_stan(block);
        let mut probe = Probe {
            context,
            terminal,
            card: context.fixture.card(0),
            rng: StdRng::seed_from_u64(u64::from(block)),
            checks: Vec::new(),
        };
        probe.card = probe.richest_card().await?;
        Ok(probe)
    }

    /// The fixture card with the most club balance available, so scenarios can spend.
    async fn richest_card(&mut self) -> Result<Pan, ScenarioError> {
        let mut client = self.connect().await?;
        let mut best: Option<(u64, Pan)> = None;
        let cards = self.context.fixture.cards.clone();
        for card in cards.into_iter().take(CARDS_PROBED_MAX) {
            let at = self.now();
            let nonce = self.nonce();
            let out =
                self.terminal
                    .purchase(ProcessingCode::ClubInquiry, None, &card, at, nonce)?;
            let (response, _) = self.exchange(&mut client, &out).await?;
            let available = match response.code {
                ResponseCode::Approved => response.amount(AmountKind::ClubAvailable),
                _ => None,
            };
            if let Some(available) = available {
                if best.as_ref().is_none_or(|(most, _)| available > *most) {
                    best = Some((available, card));
                }
            }
        }
        match best {
            Some((available, card)) if available >= CLUB_RIALS_MIN => Ok(card),
            _ => Err(ScenarioError::Setup(format!(
                "no fixture card has {CLUB_RIALS_MIN} rials of club balance available"
            ))),
        }
    }

    fn now(&self) -> i64 {
        self.context.now_seconds()
    }

    fn nonce(&mut self) -> [u8; envelope::NONCE_BYTES] {
        let mut nonce = [0_u8; envelope::NONCE_BYTES];
        self.rng.fill(&mut nonce);
        nonce
    }

    /// A club purchase (006500) of `amount` with the card, now.
    fn purchase(&mut self, amount: u64) -> Result<Outgoing, ScenarioError> {
        let at = self.now();
        self.request(ProcessingCode::ClubPurchase, Some(amount), at)
    }

    fn request(
        &mut self,
        code: ProcessingCode,
        amount: Option<u64>,
        at: i64,
    ) -> Result<Outgoing, ScenarioError> {
        let nonce = self.nonce();
        Ok(self
            .terminal
            .purchase(code, amount, &self.card, at, nonce)?)
    }

    fn inquiry(&mut self) -> Result<Outgoing, ScenarioError> {
        let at = self.now();
        self.request(ProcessingCode::ClubInquiry, None, at)
    }

    fn confirm(&mut self, original: &Outgoing, rrn: Rrn) -> Result<Outgoing, ScenarioError> {
        let at = self.now();
        Ok(self.terminal.confirm(original, rrn, at)?)
    }

    fn reversal(
        &mut self,
        original: &Outgoing,
        rrn: Option<Rrn>,
    ) -> Result<Outgoing, ScenarioError> {
        let at = self.now();
        Ok(self.terminal.reversal(original, rrn, at)?)
    }

    /// Builds a message under a STAN already used (a retransmission), then resumes the
    /// terminal's own sequence.
    fn with_stan(
        &mut self,
        stan: Stan,
        build: impl FnOnce(&mut Terminal, [u8; 12], &Pan) -> Result<Outgoing, BuildError>,
    ) -> Result<Outgoing, ScenarioError> {
        let resume = self.terminal.next_stan().get().saturating_sub(1);
        let nonce = self.nonce();
        self.terminal.set_stan(stan.get().saturating_sub(1));
        let built = build(&mut self.terminal, nonce, &self.card);
        self.terminal.set_stan(resume);
        Ok(built?)
    }

    async fn connect(&self) -> Result<Client, ScenarioError> {
        let mut client = Client::connect(self.context.addr)
            .await
            .map_err(failed("connecting to the switch"))?;
        client.set_timeout(RESPONSE_TIMEOUT);
        Ok(client)
    }

    /// Sends `out` and waits for its response, whose MAC must verify.
    async fn exchange(
        &self,
        client: &mut Client,
        out: &Outgoing,
    ) -> Result<(Response, Bytes), ScenarioError> {
        client
            .exchange(&out.bytes, out.mti, out.stan, Some(self.terminal.keys()))
            .await
            .map_err(failed("waiting for a response"))
    }

    /// Sends `out` and requires response code `want`, MACed.
    async fn expect(
        &mut self,
        client: &mut Client,
        out: &Outgoing,
        want: ResponseCode,
        what: &str,
    ) -> Result<(Response, Bytes), ScenarioError> {
        let (response, bytes) = self.exchange(client, out).await?;
        self.answered(&response, want, what)?;
        Ok((response, bytes))
    }

    /// Requires a response to carry `want` and a MAC.
    fn answered(
        &mut self,
        response: &Response,
        want: ResponseCode,
        what: &str,
    ) -> Result<(), ScenarioError> {
        self.ensure(
            response.code == want && response.has_mac,
            &format!("{what}: {} with a MAC", want.as_str()),
            || {
                format!(
                    "got {} (MAC {})",
                    response.code.as_str(),
                    if response.has_mac {
                        "present"
                    } else {
                        "absent"
                    }
                )
            },
        )
    }

    /// An approved purchase: its RRN and the club amount it holds.
    async fn approved(
        &mut self,
        client: &mut Client,
        out: &Outgoing,
        what: &str,
    ) -> Result<(Rrn, u64), ScenarioError> {
        let (response, _) = self
            .expect(client, out, ResponseCode::Approved, what)
            .await?;
        let rrn = response
            .rrn
            .ok_or_else(|| ScenarioError::Broken(format!("{what}: approved without an RRN")))?;
        Ok((rrn, response.amount(AmountKind::ClubUsed).unwrap_or(0)))
    }

    /// Reverses approved purchases (pending or confirmed), each with its RRN, expecting 00.
    async fn reverse_all(
        &mut self,
        client: &mut Client,
        originals: &[(Outgoing, Rrn)],
    ) -> Result<(), ScenarioError> {
        for (original, rrn) in originals {
            let reversal = self.reversal(original, Some(*rrn))?;
            self.expect(
                client,
                &reversal,
                ResponseCode::Approved,
                "cleaning up: the reversal",
            )
            .await?;
        }
        Ok(())
    }

    /// The card's balances, as a terminal reads them with two inquiries.
    async fn balances(&mut self, client: &mut Client) -> Result<Balances, ScenarioError> {
        let at = self.now();
        let club = self.request(ProcessingCode::ClubInquiry, None, at)?;
        let (club, _) = self
            .expect(client, &club, ResponseCode::Approved, "club inquiry")
            .await?;
        let store = self.request(ProcessingCode::StoreCreditInquiry, None, at)?;
        let (store, _) = self
            .expect(
                client,
                &store,
                ResponseCode::Approved,
                "store-credit inquiry",
            )
            .await?;
        let amount = |response: &Response, kind| {
            response.amount(kind).ok_or_else(|| {
                ScenarioError::Broken(format!("an approved inquiry without {kind:?}"))
            })
        };
        Ok(Balances {
            club_ledger: amount(&club, AmountKind::ClubLedger)?,
            club_available: amount(&club, AmountKind::ClubAvailable)?,
            store_ledger: amount(&store, AmountKind::StoreCreditLedger)?,
            store_available: amount(&store, AmountKind::StoreCreditAvailable)?,
        })
    }

    /// Requires the card's balances to equal `before`.
    async fn unchanged(
        &mut self,
        client: &mut Client,
        before: Balances,
        what: &str,
    ) -> Result<(), ScenarioError> {
        let after = self.balances(client).await?;
        self.ensure(after == before, what, || {
            format!("before {before:?}, after {after:?}")
        })
    }

    /// Records a check that holds, or fails with what was found.
    fn ensure(
        &mut self,
        holds: bool,
        what: &str,
        found: impl FnOnce() -> String,
    ) -> Result<(), ScenarioError> {
        if holds {
            self.checks.push(what.to_string());
            Ok(())
        } else {
            Err(ScenarioError::Broken(format!("{what}; {}", found())))
        }
    }

    /// Requires the transaction of `out`'s key to be in `state`, with `captures` captures.
    async fn transaction(
        &mut self,
        out: &Outgoing,
        state: &str,
        captures: i64,
        what: &str,
    ) -> Result<i64, ScenarioError> {
        let rows = transactions(self.context.db().await, out).await?;
        let found = match rows.as_slice() {
            [(id, got)] => Some((
                *id,
                got.clone(),
                capture_count(self.context.db().await, *id).await?,
            )),
            _ => None,
        };
        let holds = found
            .as_ref()
            .is_some_and(|(_, got, count)| got == state && *count == captures);
        self.ensure(
            holds,
            &format!("{what}: one transaction, {state}, {captures} capture(s)"),
            || format!("found {rows:?} with {found:?}"),
        )?;
        Ok(found.map_or(0, |(id, _, _)| id))
    }

    /// Requires no transaction under `out`'s key.
    async fn no_transaction(&mut self, out: &Outgoing, what: &str) -> Result<(), ScenarioError> {
        let rows = transactions(self.context.db().await, out).await?;
        self.ensure(rows.is_empty(), &format!("{what}: no transaction"), || {
            format!("found {rows:?}")
        })
    }

    /// Waits (bounded) for the sweeper to move every transaction of `outs` to `state`.
    async fn await_state(&mut self, outs: &[&Outgoing], state: &str) -> Result<(), ScenarioError> {
        let deadline = tokio::time::Instant::now() + SWEEP_WAIT;
        let mut states = Vec::new();
        loop {
            states.clear();
            for out in outs {
                states.extend(
                    transactions(self.context.db().await, out)
                        .await?
                        .into_iter()
                        .map(|(_, got)| got),
                );
            }
            let done = states.len() == outs.len() && states.iter().all(|got| got == state);
            if done || tokio::time::Instant::now() >= deadline {
                return self.ensure(
                    done,
                    &format!("the sweeper moved {} transaction(s) to {state}", outs.len()),
                    || format!("after {SWEEP_WAIT:?} they are {states:?}"),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs the conservation invariants; all must hold.
    async fn finish(mut self, scenario: Scenario) -> Result<Outcome, ScenarioError> {
        let findings = crate::check::run(self.context.db().await).await?;
        let broken: Vec<String> = findings
            .iter()
            .filter(|finding| finding.count > 0)
            .map(|finding| format!("{} ({:?})", finding.name, finding.breaches))
            .collect();
        if !broken.is_empty() {
            return Err(ScenarioError::Invariants(broken));
        }
        self.checks
            .push("every conservation invariant holds".to_string());
        Ok(Outcome {
            scenario,
            checks: self.checks,
        })
    }
}

/// Identical bytes, resent: one answer, one transaction, one capture.
async fn duplicates(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let request = p.purchase(20_000)?;
    let answers = copies(p, &mut client, &request, 3).await?;
    let first = answers.first().cloned().unwrap_or_default();
    let response = read_response(&first, p.terminal.keys())?;
    p.answered(&response, ResponseCode::Approved, "the request")?;
    p.ensure(
        answers.iter().all(|answer| *answer == first),
        "three copies of a request sent back to back get identical responses",
        || "the responses differ".to_string(),
    )?;
    let mut other = p.connect().await?;
    let (_, again) = p.exchange(&mut other, &request).await?;
    p.ensure(
        again == first,
        "a copy on another connection gets the same bytes",
        || "the response differs".to_string(),
    )?;
    p.transaction(&request, "pending", 0, "the request").await?;
    let rrn = response
        .rrn
        .ok_or_else(|| ScenarioError::Broken("approved without an RRN".to_string()))?;
    let club = response.amount(AmountKind::ClubUsed).unwrap_or(0);
    let confirm = p.confirm(&request, rrn)?;
    same_answers(p, &mut client, &confirm, "confirm").await?;
    p.transaction(&request, "confirmed", 1, "the confirmed request")
        .await?;

    let second = p.purchase(10_000)?;
    let (second_rrn, _) = p.approved(&mut client, &second, "a second request").await?;
    let reversal = p.reversal(&second, Some(second_rrn))?;
    same_answers(p, &mut client, &reversal, "reversal").await?;
    p.transaction(&second, "reversed", 0, "the reversed request")
        .await?;
    let after = p.balances(&mut client).await?;
    p.ensure(
        after.club_ledger + club == before.club_ledger
            && after.club_available + club == before.club_available,
        "the club balance moved by exactly one capture",
        || format!("before {before:?}, after {after:?}, captured {club}"),
    )?;
    let (racer, racer_rrn) = racing_copies(p, &mut client, &mut other).await?;
    p.reverse_all(&mut client, &[(request, rrn), (racer, racer_rrn)])
        .await?;
    p.unchanged(&mut client, before, "balances are back after the reversals")
        .await
}

/// Sends one new request on two connections at once, before either reads, and requires the
/// same approval on both and one pending transaction; returns it, to reverse later.
async fn racing_copies(
    p: &mut Probe<'_>,
    one: &mut Client,
    two: &mut Client,
) -> Result<(Outgoing, Rrn), ScenarioError> {
    let request = p.purchase(5_000)?;
    for client in [&mut *one, &mut *two] {
        client
            .send(&request.bytes)
            .await
            .map_err(failed("sending a racing copy"))?;
    }
    let response_mti = request.mti.response().unwrap_or(request.mti);
    let mut answers = Vec::with_capacity(2);
    for client in [one, two] {
        let bytes = client
            .wait_for(response_mti, request.stan)
            .await
            .map_err(failed("waiting for a racing copy's answer"))?;
        answers.push(bytes);
    }
    let first = answers.first().cloned().unwrap_or_default();
    let response = read_response(&first, p.terminal.keys())?;
    p.answered(&response, ResponseCode::Approved, "a request racing itself")?;
    p.ensure(
        answers.iter().all(|answer| *answer == first),
        "copies racing on two connections get identical responses",
        || "the responses differ".to_string(),
    )?;
    p.transaction(&request, "pending", 0, "the racing request")
        .await?;
    let rrn = response
        .rrn
        .ok_or_else(|| ScenarioError::Broken("approved without an RRN".to_string()))?;
    Ok((request, rrn))
}

/// Sends three copies of `out` back to back and requires three identical 00 answers.
async fn same_answers(
    p: &mut Probe<'_>,
    client: &mut Client,
    out: &Outgoing,
    what: &str,
) -> Result<(), ScenarioError> {
    let answers = copies(p, client, out, 3).await?;
    let first = answers.first().cloned().unwrap_or_default();
    let response = read_response(&first, p.terminal.keys())?;
    p.answered(&response, ResponseCode::Approved, what)?;
    p.ensure(
        answers.iter().all(|answer| *answer == first),
        &format!("three copies of a {what} get identical responses"),
        || "the responses differ".to_string(),
    )
}

/// Sends `count` copies of `out` before reading anything, then reads `count` responses, all of
/// which must answer `out` (response MTI and STAN).
async fn copies(
    p: &Probe<'_>,
    client: &mut Client,
    out: &Outgoing,
    count: usize,
) -> Result<Vec<Bytes>, ScenarioError> {
    for _ in 0..count {
        client
            .send(&out.bytes)
            .await
            .map_err(failed("sending a copy"))?;
    }
    let mut answers = Vec::with_capacity(count);
    for _ in 0..count {
        let bytes = client
            .receive()
            .await
            .map_err(failed("waiting for the answer to a copy"))?;
        let response = read_response(&bytes, p.terminal.keys())?;
        if Some(response.mti) != out.mti.response() || response.stan != out.stan {
            return Err(ScenarioError::Broken(format!(
                "a copy of {} {} was answered as {} {}",
                out.mti.as_str(),
                out.stan.get(),
                response.mti.as_str(),
                response.stan.get()
            )));
        }
        answers.push(bytes);
    }
    Ok(answers)
}

/// The same key with the same content gets the stored answer; with other content, 94.
async fn retransmissions(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let at = p.now();
    let amount = 20_000;
    let original = p.request(ProcessingCode::ClubPurchase, Some(amount), at)?;
    let (response, first) = p
        .expect(
            &mut client,
            &original,
            ResponseCode::Approved,
            "the original",
        )
        .await?;
    let rrn = response
        .rrn
        .ok_or_else(|| ScenarioError::Broken("approved without an RRN".to_string()))?;
    let resent = p.with_stan(original.stan, |t, nonce, card| {
        t.purchase(ProcessingCode::ClubPurchase, Some(amount), card, at, nonce)
    })?;
    let (_, again) = p.exchange(&mut client, &resent).await?;
    p.ensure(
        resent.bytes != original.bytes && again == first,
        "a resend under a fresh envelope and MAC gets the stored response, byte for byte",
        || "the response differs".to_string(),
    )?;
    let stranger = stranger_card()?;
    let variants = [
        (
            ProcessingCode::ClubPurchase,
            amount + 1,
            None,
            "another amount",
        ),
        (
            ProcessingCode::ClubPurchase,
            amount,
            Some(stranger),
            "another card",
        ),
        (
            ProcessingCode::StoreCreditPurchase,
            amount,
            None,
            "another processing code",
        ),
    ];
    for (code, amount, card, what) in variants {
        let changed = p.with_stan(original.stan, |t, nonce, own| {
            t.purchase(code, Some(amount), card.as_ref().unwrap_or(own), at, nonce)
        })?;
        let label = format!("the same key with {what}");
        p.expect(&mut client, &changed, ResponseCode::DuplicateStan, &label)
            .await?;
    }
    p.transaction(&original, "pending", 0, "after the 94s the original")
        .await?;
    let confirm_at = p.now();
    let confirm = p.terminal.confirm(&original, rrn, confirm_at)?;
    p.expect(&mut client, &confirm, ResponseCode::Approved, "the confirm")
        .await?;
    let other_rrn =
        Rrn::from_number(999_999_999_999).map_err(|e| ScenarioError::Setup(format!("rrn: {e}")))?;
    let changed = p.with_stan(confirm.stan, |t, _, _| {
        t.confirm(&original, other_rrn, confirm_at)
    })?;
    p.expect(
        &mut client,
        &changed,
        ResponseCode::DuplicateStan,
        "the confirm's key with another RRN",
    )
    .await?;
    p.transaction(&original, "confirmed", 1, "the confirmed original")
        .await?;
    p.reverse_all(&mut client, &[(original, rrn)]).await?;
    p.unchanged(&mut client, before, "balances are back after the reversal")
        .await
}

/// A well-formed PAN that no fixture card has (a BIN the generated networks never use).
fn stranger_card() -> Result<Pan, ScenarioError> {
    let digits = crate::network::luhn_pan("990001", 424_242);
    Pan::parse(digits.as_bytes()).map_err(|e| ScenarioError::Setup(format!("pan: {e}")))
}

/// Purchases never confirmed: their holds time out and are released.
async fn confirms_lost(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let mut lost = Vec::new();
    let mut held = 0;
    for amount in [10_000, 20_000, 30_000] {
        let out = p.purchase(amount)?;
        let (_, club) = p.approved(&mut client, &out, "a purchase").await?;
        held += club;
        lost.push(out);
    }
    let during = p.balances(&mut client).await?;
    p.ensure(
        during.club_available + held == before.club_available
            && during.club_ledger == before.club_ledger,
        "the purchases hold their club amounts",
        || format!("before {before:?}, during {during:?}, held {held}"),
    )?;
    p.context.pass_hold_timeout().await;
    let refs: Vec<&Outgoing> = lost.iter().collect();
    p.await_state(&refs, "expired").await?;
    let mut client = p.connect().await?;
    p.unchanged(
        &mut client,
        before,
        "the expired holds are released: balances are back",
    )
    .await
}

/// Confirms after the hold timed out: captured as advices, with an exception when short.
async fn confirms_late(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let covered = p.purchase(20_000)?;
    let (covered_rrn, covered_club) = p
        .approved(&mut client, &covered, "a small purchase")
        .await?;
    let big = p.purchase(before.club_available / 2)?;
    let (big_rrn, big_club) = p.approved(&mut client, &big, "a large purchase").await?;
    p.context.pass_hold_timeout().await;
    p.await_state(&[&covered, &big], "expired").await?;
    let mut client = p.connect().await?;

    let confirm = p.confirm(&covered, covered_rrn)?;
    p.expect(
        &mut client,
        &confirm,
        ResponseCode::Approved,
        "a late confirm the balance covers",
    )
    .await?;
    let id = p
        .transaction(&covered, "confirmed", 1, "the covered advice")
        .await?;
    let shortfalls = exceptions(p.context.db().await, id).await?;
    p.ensure(
        shortfalls.is_empty(),
        "a covered advice records no exception",
        || format!("found {shortfalls:?}"),
    )?;
    let after = p.balances(&mut client).await?;
    p.ensure(
        after.club_ledger + covered_club == before.club_ledger,
        "the covered advice captured its club amount",
        || format!("before {before:?}, after {after:?}, club {covered_club}"),
    )?;

    let drains = drain(p, &mut client, big_club).await?;
    let left = p.balances(&mut client).await?.club_available;
    let confirm = p.confirm(&big, big_rrn)?;
    p.expect(
        &mut client,
        &confirm,
        ResponseCode::Approved,
        "a late confirm the balance no longer covers",
    )
    .await?;
    let id = p
        .transaction(&big, "confirmed", 1, "the short advice")
        .await?;
    let shortfalls = exceptions(p.context.db().await, id).await?;
    let expected = vec![(
        "advice_shortfall".to_string(),
        "club".to_string(),
        big_club - left,
    )];
    p.ensure(
        shortfalls == expected,
        "the shortfall is recorded as one club exception",
        || format!("expected {expected:?}, found {shortfalls:?}"),
    )?;

    let mut confirmed = drains;
    confirmed.push((big, big_rrn));
    confirmed.push((covered, covered_rrn));
    p.reverse_all(&mut client, &confirmed).await?;
    p.unchanged(&mut client, before, "balances are back after the reversals")
        .await
}

/// Spends the card's club balance (purchases confirmed at once) until less than `below` is
/// available; returns the purchases, to reverse later.
async fn drain(
    p: &mut Probe<'_>,
    client: &mut Client,
    below: u64,
) -> Result<Vec<(Outgoing, Rrn)>, ScenarioError> {
    let mut drains = Vec::new();
    for _ in 0..DRAINS_MAX {
        let available = p.balances(client).await?.club_available;
        if available < below {
            break;
        }
        let out = p.purchase(available)?;
        let (rrn, _) = p
            .approved(client, &out, "a purchase spending the club balance")
            .await?;
        let confirm = p.confirm(&out, rrn)?;
        p.expect(client, &confirm, ResponseCode::Approved, "its confirm")
            .await?;
        drains.push((out, rrn));
    }
    let available = p.balances(client).await?.club_available;
    p.ensure(
        available < below,
        "the club balance no longer covers the large purchase",
        || format!("{available} available, {below} wanted"),
    )?;
    Ok(drains)
}

/// A reversal first, its original after.
async fn reversal_first(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let original = p.purchase(15_000)?;
    let reversal = p.reversal(&original, None)?;
    let (_, reversed) = p
        .expect(
            &mut client,
            &reversal,
            ResponseCode::Approved,
            "a reversal of an original never seen",
        )
        .await?;
    let remembered = tombstones(p.context.db().await, &original).await?;
    p.ensure(remembered == 1, "the reversal is remembered", || {
        format!("{remembered} tombstones")
    })?;
    for what in ["the original arriving later", "the original resent"] {
        p.expect(
            &mut client,
            &original,
            ResponseCode::InvalidTransaction,
            what,
        )
        .await?;
    }
    let (_, again) = p.exchange(&mut client, &reversal).await?;
    p.ensure(
        again == reversed,
        "the reversal resent gets the same bytes",
        || "the response differs".to_string(),
    )?;
    p.no_transaction(&original, "the declined original").await?;
    p.unchanged(&mut client, before, "balances never moved")
        .await
}

/// Requests and confirms left in flight on dropped connections, then resent.
async fn dropped_connection(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let mut requests = Vec::with_capacity(DROPPED_IN_FLIGHT);
    for n in 1..=DROPPED_IN_FLIGHT {
        let amount = 10_000 * u64::try_from(n).unwrap_or(1);
        requests.push(p.purchase(amount)?);
    }
    send_and_drop(p.context.addr, &requests).await?;
    let mut client = p.connect().await?;
    let answers = resend_all(p, &mut client, &requests, "request").await?;
    let mut approved = Vec::with_capacity(requests.len());
    let mut held = 0;
    for (request, response) in requests.iter().zip(&answers) {
        let rrn = response
            .rrn
            .ok_or_else(|| ScenarioError::Broken("approved without an RRN".to_string()))?;
        held += response.amount(AmountKind::ClubUsed).unwrap_or(0);
        p.transaction(request, "pending", 0, "a resent request")
            .await?;
        approved.push((request.clone(), rrn));
    }
    let during = p.balances(&mut client).await?;
    p.ensure(
        during.club_available + held == before.club_available,
        "each request holds once: the holds are the pending transactions",
        || format!("before {before:?}, during {during:?}, held {held}"),
    )?;
    let mut confirms = Vec::with_capacity(approved.len());
    for (request, rrn) in &approved {
        confirms.push(p.confirm(request, *rrn)?);
    }
    send_and_drop(p.context.addr, &confirms).await?;
    let mut client = p.connect().await?;
    resend_all(p, &mut client, &confirms, "confirm").await?;
    for request in &requests {
        p.transaction(
            request,
            "confirmed",
            1,
            "a request confirmed by a resent confirm",
        )
        .await?;
    }
    let after = p.balances(&mut client).await?;
    p.ensure(
        after.club_ledger + held == before.club_ledger,
        "the club ledger moved by one capture each",
        || format!("before {before:?}, after {after:?}, captured {held}"),
    )?;
    p.reverse_all(&mut client, &approved).await?;
    p.unchanged(&mut client, before, "balances are back after the reversals")
        .await
}

/// Writes every message to a fresh connection and closes it without reading anything.
async fn send_and_drop(addr: SocketAddr, messages: &[Outgoing]) -> Result<(), ScenarioError> {
    let mut out = BytesMut::new();
    for message in messages {
        frame::encode(&message.bytes, &mut out)
            .map_err(|e| failed("framing")(ClientError::Bad(e.to_string())))?;
    }
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| failed("connecting to the switch")(e.into()))?;
    stream
        .write_all(&out)
        .await
        .map_err(|e| failed("sending before the drop")(e.into()))?;
    drop(stream);
    Ok(())
}

/// Resends `messages` pipelined and requires each to be answered 00 with the answer the switch
/// stored for its key: the stored record (the answer's fields, field 11 and no echo or MAC)
/// has the response's fields 11, 38, 39 and 54 and no others but 37, which it has as the
/// response does when the switch assigned it (a confirm's or reversal's is echoed instead).
async fn resend_all(
    p: &mut Probe<'_>,
    client: &mut Client,
    messages: &[Outgoing],
    what: &str,
) -> Result<Vec<Response>, ScenarioError> {
    for message in messages {
        client
            .send(&message.bytes)
            .await
            .map_err(failed("resending"))?;
    }
    let mut responses = Vec::with_capacity(messages.len());
    for message in messages {
        let response_mti = message.mti.response().unwrap_or(message.mti);
        let bytes = client
            .wait_for(response_mti, message.stan)
            .await
            .map_err(failed("waiting for the answer to a resent message"))?;
        let response = read_response(&bytes, p.terminal.keys())?;
        p.answered(
            &response,
            ResponseCode::Approved,
            &format!("a resent {what}"),
        )?;
        let stored = stored_answer(p.context.db().await, message).await?;
        let record = stored
            .as_deref()
            .and_then(|record| RawMessage::parse(Bytes::copy_from_slice(record)).ok());
        let wire = RawMessage::parse(bytes.clone()).ok();
        let answer_fields = [
            spec::STAN,
            spec::APPROVAL_CODE,
            spec::RESPONSE_CODE,
            spec::ADDITIONAL_AMOUNTS,
        ];
        let same = record
            .as_ref()
            .zip(wire.as_ref())
            .is_some_and(|(record, wire)| {
                record
                    .bitmap()
                    .fields()
                    .all(|number| number == spec::RRN || answer_fields.contains(&number))
                    && answer_fields
                        .iter()
                        .all(|&number| record.field(number) == wire.field(number))
                    && record
                        .field(spec::RRN)
                        .is_none_or(|rrn| wire.field(spec::RRN) == Some(rrn))
            });
        p.ensure(
            same,
            &format!("the resent {what} gets the durable answer"),
            || {
                let shown = |raw: Option<&RawMessage>, number: u8| {
                    raw.and_then(|raw| raw.field(number))
                        .map(|value| String::from_utf8_lossy(value).into_owned())
                };
                let fields: Vec<_> = [spec::STAN, spec::RRN, spec::APPROVAL_CODE]
                    .into_iter()
                    .chain([spec::RESPONSE_CODE, spec::ADDITIONAL_AMOUNTS])
                    .map(|n| (n, shown(record.as_ref(), n), shown(wire.as_ref(), n)))
                    .collect();
                format!(
                    "stored answer present: {}; (field, stored, sent): {fields:?}",
                    stored.is_some()
                )
            },
        )?;
        responses.push(response);
    }
    Ok(responses)
}

/// Mixed pipelined traffic, answers in any order.
async fn reordered(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let kept = p.purchase(12_000)?;
    let (kept_rrn, _) = p
        .approved(&mut client, &kept, "a purchase to confirm")
        .await?;
    let dropped = p.purchase(13_000)?;
    let (dropped_rrn, _) = p
        .approved(&mut client, &dropped, "a purchase to reverse")
        .await?;

    let inquiry = p.inquiry()?;
    let chased = p.purchase(14_000)?;
    let chaser = p.reversal(&chased, None)?;
    let confirm = p.confirm(&kept, kept_rrn)?;
    let reversal = p.reversal(&dropped, Some(dropped_rrn))?;
    let at = p.now();
    let echo = p.terminal.network(NetworkCode::Echo, at)?;
    let late = p.purchase(16_000)?;
    let guessed =
        Rrn::from_number(999_999_999_998).map_err(|e| ScenarioError::Setup(format!("rrn: {e}")))?;
    let overtaking = p.confirm(&late, guessed)?;
    let batch = [
        &inquiry,
        &chased,
        &chaser,
        &confirm,
        &reversal,
        &echo,
        &overtaking,
        &late,
    ];
    for out in batch {
        client
            .send(&out.bytes)
            .await
            .map_err(failed("pipelining"))?;
    }
    let mut codes = Vec::with_capacity(batch.len());
    for out in batch.iter().rev() {
        let response_mti = out.mti.response().unwrap_or(out.mti);
        let bytes = client
            .wait_for(response_mti, out.stan)
            .await
            .map_err(failed("waiting for a pipelined answer"))?;
        let response = read_response(&bytes, p.terminal.keys())?;
        codes.push((out.mti, response.code));
    }
    p.checks.push(format!(
        "{} pipelined messages each answered under its own MTI and STAN",
        batch.len()
    ));
    codes.reverse();
    let chased_code = codes.get(1).map(|(_, code)| *code);
    let expected = [
        ResponseCode::Approved,
        chased_code.unwrap_or(ResponseCode::Approved),
        ResponseCode::Approved,
        ResponseCode::Approved,
        ResponseCode::Approved,
        ResponseCode::Approved,
        ResponseCode::OriginalNotFound,
        ResponseCode::Approved,
    ];
    let got: Vec<ResponseCode> = codes.iter().map(|(_, code)| *code).collect();
    p.ensure(
        got == expected
            && matches!(
                chased_code,
                Some(ResponseCode::Approved | ResponseCode::InvalidTransaction)
            ),
        "inquiry 00, request 00 or 12, its reversal 00, confirm 00, reversal 00, echo 00, \
         overtaking confirm 25, its request 00",
        || {
            format!(
                "got {:?}",
                got.iter().map(|c| c.as_str()).collect::<Vec<_>>()
            )
        },
    )?;
    reordered_after(p, &chased, chased_code, &kept, &dropped, &late).await?;
    let late_rrn = match transactions(p.context.db().await, &late).await?.first() {
        Some((id, _)) => rrn_of(p.context.db().await, *id).await?,
        None => None,
    };
    let late_rrn =
        late_rrn.ok_or_else(|| ScenarioError::Broken("the late request has no RRN".to_string()))?;
    let confirm = p.confirm(&late, late_rrn)?;
    p.expect(
        &mut client,
        &confirm,
        ResponseCode::Approved,
        "the real confirm of the overtaken request",
    )
    .await?;
    p.transaction(&late, "confirmed", 1, "the overtaken request, confirmed")
        .await?;
    p.reverse_all(&mut client, &[(kept, kept_rrn), (late, late_rrn)])
        .await?;
    p.unchanged(&mut client, before, "balances are back after the reversals")
        .await
}

/// The database after the pipelined batch of [`reordered`].
async fn reordered_after(
    p: &mut Probe<'_>,
    chased: &Outgoing,
    chased_code: Option<ResponseCode>,
    kept: &Outgoing,
    dropped: &Outgoing,
    late: &Outgoing,
) -> Result<(), ScenarioError> {
    match chased_code {
        Some(ResponseCode::Approved) => {
            p.transaction(chased, "reversed", 0, "the request its reversal chased")
                .await?;
        }
        _ => {
            p.no_transaction(chased, "the request its reversal overtook")
                .await?;
            let remembered = tombstones(p.context.db().await, chased).await?;
            p.ensure(
                remembered == 1,
                "the overtaking reversal is remembered",
                || format!("{remembered} tombstones"),
            )?;
        }
    }
    p.transaction(kept, "confirmed", 1, "the confirmed purchase")
        .await?;
    p.transaction(dropped, "reversed", 0, "the reversed purchase")
        .await?;
    p.transaction(late, "pending", 0, "the request its confirm overtook")
        .await?;
    Ok(())
}

/// Field 7 at the edge of the 300 s window, and advices of any age.
async fn clock_skew(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let (accepted, refused) = p.context.skew_probes();
    for skew in [-refused, refused] {
        let at = p.now() + skew;
        let out = p.request(ProcessingCode::ClubPurchase, Some(11_000), at)?;
        let what = format!("a purchase {skew:+} s off");
        p.expect(&mut client, &out, ResponseCode::Security, &what)
            .await?;
        p.no_transaction(&out, &what).await?;
        let echo = p.terminal.network(NetworkCode::Echo, at)?;
        let what = format!("an echo {skew:+} s off");
        p.expect(&mut client, &echo, ResponseCode::Security, &what)
            .await?;
    }
    p.unchanged(&mut client, before, "refused requests changed nothing")
        .await?;
    let mut approved = Vec::new();
    for skew in [-accepted, accepted] {
        let at = p.now() + skew;
        let out = p.request(ProcessingCode::ClubPurchase, Some(11_000), at)?;
        let (rrn, _) = p
            .approved(&mut client, &out, &format!("a purchase {skew:+} s off"))
            .await?;
        let echo = p.terminal.network(NetworkCode::Echo, at)?;
        p.expect(
            &mut client,
            &echo,
            ResponseCode::Approved,
            &format!("an echo {skew:+} s off"),
        )
        .await?;
        approved.push((out, rrn));
    }
    let out = p.purchase(12_000)?;
    let (rrn, _) = p.approved(&mut client, &out, "a purchase now").await?;
    let old = p.now() - 3_600;
    let confirm = p.terminal.confirm(&out, rrn, old)?;
    p.expect(
        &mut client,
        &confirm,
        ResponseCode::Approved,
        "its confirm dated an hour ago",
    )
    .await?;
    p.transaction(
        &out,
        "confirmed",
        1,
        "the purchase confirmed by the old advice",
    )
    .await?;
    let reversal = p.terminal.reversal(&out, Some(rrn), old - 3_600)?;
    p.expect(
        &mut client,
        &reversal,
        ResponseCode::Approved,
        "its reversal dated two hours ago",
    )
    .await?;
    // A reversal of a confirmed transaction keeps its capture, marked returned.
    p.transaction(
        &out,
        "reversed",
        1,
        "the purchase reversed by the old advice",
    )
    .await?;
    if let Some(clock) = &p.context.clock {
        stale_resends(p, &mut client, clock).await?;
    }
    p.reverse_all(&mut client, &approved).await?;
    p.unchanged(&mut client, before, "balances are back after the reversals")
        .await
}

/// On the manual clock: an answered request resent after the window still gets its stored
/// answer (the lookup comes before the clock check), and one never answered gets 63.
async fn stale_resends(
    p: &mut Probe<'_>,
    client: &mut Client,
    clock: &ManualClock,
) -> Result<(), ScenarioError> {
    let answered = p.inquiry()?;
    let (_, first) = p
        .expect(client, &answered, ResponseCode::Approved, "an inquiry")
        .await?;
    let unanswered = p.inquiry()?;
    let (_, window) = p.context.skew_probes();
    clock.advance(window * 1_000);
    let (_, again) = p.exchange(client, &answered).await?;
    p.ensure(
        again == first,
        &format!("an answered request resent {window} s later gets its stored answer"),
        || "the response differs".to_string(),
    )?;
    p.expect(
        client,
        &unanswered,
        ResponseCode::Security,
        &format!("a request first sent {window} s late"),
    )
    .await?;
    Ok(())
}

/// Wrong, missing and misplaced MACs.
async fn bad_macs(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let pending = p.purchase(10_000)?;
    let (rrn, club) = p.approved(&mut client, &pending, "a purchase").await?;
    let mut bad = Vec::new();
    let base = p.purchase(20_000)?;
    bad.push((flip_from_end(&base, 1)?, "the last MAC byte flipped"));
    let base = p.purchase(20_000)?;
    bad.push((
        flip_from_end(&base, protocol::mac::MAC_BYTES)?,
        "the first MAC byte flipped",
    ));
    let base = p.purchase(20_000)?;
    bad.push((tamper_amount(&base)?, "the amount changed after the MAC"));
    let base = p.purchase(20_000)?;
    bad.push((rebuild(&base, &[], None)?, "no MAC"));
    let confirm = p.confirm(&pending, rrn)?;
    bad.push((
        flip_from_end(&confirm, 1)?,
        "a confirm with its MAC flipped",
    ));
    let reversal = p.reversal(&pending, Some(rrn))?;
    bad.push((
        flip_from_end(&reversal, 1)?,
        "a reversal with its MAC flipped",
    ));
    for (out, what) in &bad {
        p.expect(&mut client, out, ResponseCode::Security, what)
            .await?;
        let inquiry = p.inquiry()?;
        p.expect(
            &mut client,
            &inquiry,
            ResponseCode::Approved,
            "the next request on the connection",
        )
        .await?;
    }
    for (out, what) in bad.iter().take(4) {
        p.no_transaction(out, what).await?;
    }
    p.transaction(&pending, "pending", 0, "the purchase the bad advices named")
        .await?;
    let during = p.balances(&mut client).await?;
    p.ensure(
        during.club_available + club == before.club_available
            && during.club_ledger == before.club_ledger,
        "only the good purchase holds anything",
        || format!("before {before:?}, during {during:?}, held {club}"),
    )?;
    let confirm = p.confirm(&pending, rrn)?;
    p.expect(
        &mut client,
        &confirm,
        ResponseCode::Approved,
        "a good confirm",
    )
    .await?;
    p.transaction(&pending, "confirmed", 1, "the purchase, confirmed once")
        .await?;
    p.reverse_all(&mut client, &[(pending, rrn)]).await?;
    p.unchanged(&mut client, before, "balances are back after the reversal")
        .await
}

/// Envelopes that must not open, each under a right MAC.
async fn bad_envelopes(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut client = p.connect().await?;
    let before = p.balances(&mut client).await?;
    let own = p.terminal.terminal_id;
    let other_keys = WorkingKeys::derive(&Tmk::from_bytes([0x33; 32]));
    let other_id = TerminalId::parse(b"ZZ000001")
        .map_err(|e| ScenarioError::Setup(format!("terminal id: {e}")))?;
    let mut bad = Vec::new();
    for case in [
        Envelope::Key,
        Envelope::Terminal,
        Envelope::Version,
        Envelope::Message,
        Envelope::Short,
    ] {
        let base = p.purchase(20_000)?;
        let nonce = p.nonce();
        let stan = if case == Envelope::Message {
            Stan::new(base.stan.get() % 999_999 + 1)
                .map_err(|e| ScenarioError::Setup(format!("stan: {e}")))?
        } else {
            base.stan
        };
        let aad = envelope::aad(
            *base.mti.as_bytes(),
            &base.transmitted,
            stan,
            &p.terminal.ksi,
        );
        let keys = if case == Envelope::Key {
            &other_keys
        } else {
            p.terminal.keys()
        };
        let id = if case == Envelope::Terminal {
            &other_id
        } else {
            &own
        };
        let mut sealed = BytesMut::new();
        envelope::seal(keys, &nonce, &aad, id, &p.card, &mut sealed);
        match case {
            Envelope::Version => {
                if let Some(version) = sealed.first_mut() {
                    *version = envelope::ENVELOPE_VERSION + 1;
                }
            }
            Envelope::Short => sealed.truncate(1 + envelope::NONCE_BYTES + 4),
            Envelope::Key | Envelope::Terminal | Envelope::Message => {}
        }
        let out = rebuild(
            &base,
            &[(protocol::spec::ENVELOPE, &sealed)],
            Some(p.terminal.keys()),
        )?;
        bad.push((out, case.what()));
    }
    for (out, what) in &bad {
        p.expect(&mut client, out, ResponseCode::Security, what)
            .await?;
        p.no_transaction(out, what).await?;
    }
    let inquiry = p.inquiry()?;
    p.expect(
        &mut client,
        &inquiry,
        ResponseCode::Approved,
        "the next request on the connection",
    )
    .await?;
    p.unchanged(&mut client, before, "balances never moved")
        .await
}

/// How [`bad_envelopes`] spoils an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Envelope {
    Key,
    Terminal,
    Version,
    Message,
    Short,
}

impl Envelope {
    fn what(self) -> &'static str {
        match self {
            Envelope::Key => "an envelope sealed under another terminal's key",
            Envelope::Terminal => "an envelope naming another terminal",
            Envelope::Version => "an envelope of version 2",
            Envelope::Message => "an envelope sealed for another STAN",
            Envelope::Short => "an envelope cut short",
        }
    }
}

/// Frames that cannot be parsed, and length prefixes that cannot be resynchronised.
async fn garbage_frames(p: &mut Probe<'_>) -> Result<(), ScenarioError> {
    let mut bystander = p.connect().await?;
    let before = p.balances(&mut bystander).await?;
    let mut client = p.connect().await?;
    let unknown_mti = [b"0999".as_slice(), &[0_u8; 8]].concat();
    let garbage: [&[u8]; 3] = [b"HELLO", &[0xff; 7], &unknown_mti];
    for (n, frame) in garbage.iter().enumerate() {
        client
            .send(frame)
            .await
            .map_err(failed("sending garbage"))?;
        if n + 1 == garbage.len() {
            break;
        }
        let inquiry = p.inquiry()?;
        client
            .send(&inquiry.bytes)
            .await
            .map_err(failed("sending an inquiry"))?;
        let bytes = client
            .receive()
            .await
            .map_err(failed("waiting for the inquiry after garbage"))?;
        let response = read_response(&bytes, p.terminal.keys())?;
        p.ensure(
            response.stan == inquiry.stan && response.code == ResponseCode::Approved,
            &format!(
                "garbage frame {} gets no response; the next request is answered",
                n + 1
            ),
            || {
                format!(
                    "got {} for STAN {}",
                    response.code.as_str(),
                    response.stan.get()
                )
            },
        )?;
    }
    let closed = client.closed_within(CLOSE_TIMEOUT).await;
    p.ensure(
        closed,
        "the third unparseable frame closes the connection",
        || "still open".to_string(),
    )?;
    for (prefix, what) in [
        (
            [0_u8, 0],
            "a zero length prefix closes the connection at once",
        ),
        (
            [0x08, 0x01],
            "a 2049-byte length prefix closes the connection at once",
        ),
    ] {
        let mut client = p.connect().await?;
        client
            .send_raw(&prefix)
            .await
            .map_err(failed("sending a bad prefix"))?;
        let closed = client.closed_within(CLOSE_TIMEOUT).await;
        p.ensure(closed, what, || "still open".to_string())?;
    }
    p.unchanged(
        &mut bystander,
        before,
        "another connection is served and balances never moved",
    )
    .await
}

/// `out` with one byte flipped, `back` bytes from its end (inside the MAC).
fn flip_from_end(out: &Outgoing, back: usize) -> Result<Outgoing, ScenarioError> {
    let mut bytes = out.bytes.to_vec();
    let at = bytes.len().checked_sub(back);
    match at.and_then(|at| bytes.get_mut(at)) {
        Some(byte) => *byte ^= 0x01,
        None => {
            return Err(ScenarioError::Setup(
                "a message shorter than its MAC".to_string(),
            ))
        }
    }
    Ok(Outgoing {
        bytes: Bytes::from(bytes),
        ..out.clone()
    })
}

/// `out` with its amount's last digit changed and the MAC left as it was.
fn tamper_amount(out: &Outgoing) -> Result<Outgoing, ScenarioError> {
    let raw = RawMessage::parse(out.bytes.clone())
        .map_err(|e| ScenarioError::Setup(format!("own message: {e}")))?;
    let last = raw
        .field_offset(protocol::spec::AMOUNT)
        .map(|offset| offset + 11)
        .ok_or_else(|| ScenarioError::Setup("a purchase without field 4".to_string()))?;
    let mut bytes = out.bytes.to_vec();
    if let Some(digit) = bytes.get_mut(last) {
        *digit = if *digit == b'9' { b'8' } else { *digit + 1 };
    }
    Ok(Outgoing {
        bytes: Bytes::from(bytes),
        ..out.clone()
    })
}

/// `out` rebuilt with fields replaced by `changes`, MACed under `keys` (no MAC when `None`).
fn rebuild(
    out: &Outgoing,
    changes: &[(u8, &[u8])],
    keys: Option<&WorkingKeys>,
) -> Result<Outgoing, ScenarioError> {
    let raw = RawMessage::parse(out.bytes.clone())
        .map_err(|e| ScenarioError::Setup(format!("own message: {e}")))?;
    let skipped = [
        protocol::spec::SECONDARY_BITMAP,
        protocol::spec::MAC_PRIMARY,
        protocol::spec::MAC_SECONDARY,
    ];
    let mut bytes = BytesMut::new();
    let mut builder = MessageBuilder::new(&mut bytes, raw.mti_bytes());
    for number in raw.bitmap().fields().filter(|n| !skipped.contains(n)) {
        let changed = changes.iter().find(|(n, _)| *n == number).map(|(_, v)| *v);
        if let Some(value) = changed.or_else(|| raw.field(number)) {
            builder.field(number, value)?;
        }
    }
    match keys {
        Some(keys) => builder.finish_with_mac(keys)?,
        None => builder.finish()?,
    }
    Ok(Outgoing {
        bytes: bytes.freeze(),
        ..out.clone()
    })
}

/// Reads a response and verifies its MAC with the terminal's keys.
fn read_response(bytes: &Bytes, keys: &WorkingKeys) -> Result<Response, ScenarioError> {
    let raw = RawMessage::parse(bytes.clone())
        .map_err(|e| ScenarioError::Broken(format!("an unreadable response: {e}")))?;
    Response::parse(&raw, Some(keys))
        .map_err(|e| ScenarioError::Broken(format!("a bad response: {e}")))
}

/// Maps a client error to a scenario error naming what was being done.
fn failed(during: &'static str) -> impl FnOnce(ClientError) -> ScenarioError {
    move |source| ScenarioError::Client { during, source }
}

/// The binds of a message key: KSI, MTI, STAN and field 7, as the switch stores them.
fn key_of(out: &Outgoing) -> (String, &'static str, i64, String) {
    (
        ksi_of(out),
        out.mti.as_str(),
        i64::from(out.stan.get()),
        String::from_utf8_lossy(&out.transmitted).into_owned(),
    )
}

/// The KSI a message carries (field 53).
fn ksi_of(out: &Outgoing) -> String {
    RawMessage::parse(out.bytes.clone())
        .ok()
        .and_then(|raw| {
            raw.field(protocol::spec::KSI)
                .map(|ksi| String::from_utf8_lossy(ksi).into_owned())
        })
        .unwrap_or_default()
}

/// The transactions (id, state) recorded under `out`'s key.
async fn transactions(db: &Pool, out: &Outgoing) -> Result<Vec<(i64, String)>, ScenarioError> {
    let (ksi, mti, stan, transmitted) = key_of(out);
    let rows = sqlx::query(
        "SELECT id, state FROM transactions \
         WHERE ksi = $1 AND mti = $2 AND stan = $3 AND transmitted = $4 ORDER BY id",
    )
    .bind(ksi)
    .bind(mti)
    .bind(stan)
    .bind(transmitted)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("id")?, row.try_get("state")?)))
        .collect()
}

async fn capture_count(db: &Pool, txn: i64) -> Result<i64, ScenarioError> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM captures WHERE txn_id = $1")
            .bind(txn)
            .fetch_one(db)
            .await?,
    )
}

async fn rrn_of(db: &Pool, txn: i64) -> Result<Option<Rrn>, ScenarioError> {
    let text: Option<String> = sqlx::query_scalar("SELECT rrn FROM transactions WHERE id = $1")
        .bind(txn)
        .fetch_optional(db)
        .await?;
    Ok(text.and_then(|text| Rrn::parse(text.as_bytes()).ok()))
}

/// The exceptions (kind, account, amount) recorded against a transaction.
async fn exceptions(db: &Pool, txn: i64) -> Result<Vec<(String, String, u64)>, ScenarioError> {
    let rows = sqlx::query(
        "SELECT kind, account, amount_rials FROM exceptions WHERE txn_id = $1 ORDER BY id",
    )
    .bind(txn)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|row| {
            let amount: i64 = row.try_get("amount_rials")?;
            Ok((
                row.try_get("kind")?,
                row.try_get("account")?,
                u64::try_from(amount).unwrap_or(0),
            ))
        })
        .collect()
}

async fn tombstones(db: &Pool, original: &Outgoing) -> Result<i64, ScenarioError> {
    let (ksi, mti, stan, transmitted) = key_of(original);
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM tombstones WHERE ksi = $1 AND mti = $2 AND stan = $3 AND transmitted = $4",
    )
    .bind(ksi)
    .bind(mti)
    .bind(stan)
    .bind(transmitted)
    .fetch_one(db)
    .await?)
}

/// The response the switch stored for `out`'s key, if any.
async fn stored_answer(db: &Pool, out: &Outgoing) -> Result<Option<Vec<u8>>, ScenarioError> {
    let (ksi, mti, stan, transmitted) = key_of(out);
    Ok(sqlx::query_scalar(
        "SELECT response FROM answered_messages \
         WHERE ksi = $1 AND mti = $2 AND stan = $3 AND transmitted = $4",
    )
    .bind(ksi)
    .bind(mti)
    .bind(stan)
    .bind(transmitted)
    .fetch_optional(db)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Goal: names round-trip and every scenario states a claim. Method: a table over `ALL`.
    #[test]
    fn names_parse_back_and_claims_are_stated() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::parse(scenario.name()), Some(scenario));
            assert!(!scenario.claim().is_empty(), "{scenario:?}");
        }
        for unknown in ["", "all", "Duplicates", "bad_macs"] {
            assert_eq!(Scenario::parse(unknown), None, "{unknown}");
        }
    }
}
