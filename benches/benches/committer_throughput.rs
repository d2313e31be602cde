//! Goal: the docs/design.md section 9 durability target: at least 20 000 durable request + confirm
//! pairs per second on SQLite (WAL, `synchronous=FULL`), one process. This bench measures the
//! group commit alone, `ledger::apply` of one batch's effects in one database transaction, at
//! batch sizes 1, 32, 128 and 512 (the committer's default `batch_max`), so the fsync that
//! each commit pays is seen against the work it is shared by.
//!
//! Method: a seeded network of 1 000 cards (balances large enough that nothing is declined for
//! funds), 20 merchants and 20 rules is saved through the store into a temporary database,
//! then loaded back as the switch loads it on start (snapshot and engine state). Each batch is
//! built untimed as the committer sees one under steady load: half confirms of purchases
//! approved in earlier batches, half new purchases (a purchase and its confirm are never in one
//! batch: the confirm is sent after the response, which waits for the commit). Every message
//! goes through the terminal builder, admission and the real engine; every decision must be
//! `00`. Only `apply` is timed. A purchase gives two effects (hold, answer) and a confirm two
//! (capture, answer), so a pair is four effects.
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use benches::network::{self, Network, Shape, PAN_KEY, START_MS};
use benches::traffic::Traffic;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use protocol::terminal::{Outgoing, Terminal as TerminalClient};
use protocol::{ResponseCode, Rrn};
use switch::admission::{self, Admission};
use switch::domain::{Kek, PanTokenKey, UnixMillis};
use switch::engine::{Decision, Effect, Engine, EngineConfig};
use switch::snapshot::Snapshot;
use switch::store::Pool;
use switch::store::{self, ledger, reference};
use tokio::runtime::Runtime;

/// A small network whose balances no purchase can exhaust: every decision is an approval, so
/// each batch carries exactly its size in durable messages.
const SHAPE: Shape = Shape {
    merchants: 20,
    cards: 1_000,
    rules: 20,
    store_credit_accounts: 200,
    club_rials_max: 900_000_000_000,
    seed: 3,
};
const TRAFFIC_SEED: u64 = 4;
/// Messages per group commit: one, and up to the committer's default `batch_max`.
const BATCH_SIZES: [usize; 4] = [1, 32, 128, 512];
/// Effects per message: hold + answer for a purchase, capture + answer for a confirm.
const EFFECTS_PER_MESSAGE: usize = 2;
/// The simulated clock moves this much per message: 1 000 messages per second.
const MESSAGE_MS: i64 = 1;

const ENGINE: EngineConfig = EngineConfig {
    hold_timeout_ms: 120_000,
    answered_window_ms: 24 * 3_600_000,
};

/// An approved purchase waiting for its confirm.
struct Approved {
    terminal: usize,
    outgoing: Outgoing,
    rrn: Rrn,
}

/// Builds batches as the committer would see them, deciding each message with the real engine.
struct Driver {
    engine: Engine,
    snapshot: Snapshot,
    pan_key: PanTokenKey,
    terminals: Vec<TerminalClient>,
    traffic: Traffic,
    /// Approved purchases whose batch is durable: their terminals may now confirm them.
    confirmable: VecDeque<Approved>,
    /// Approved purchases of the batch being built.
    in_batch: Vec<Approved>,
    effects: Vec<Effect>,
    now_ms: i64,
    declined: usize,
}

impl Driver {
    /// Fills `effects` with the effects of `size` messages: confirms first (up to half), then
    /// new purchases.
    fn batch(&mut self, size: usize) {
        self.effects.clear();
        let confirms = self.confirmable.len().min(size.div_ceil(2));
        for _ in 0..confirms {
            let original = self.confirmable.pop_front().unwrap();
            let at_seconds = self.tick();
            let confirm = self.terminals[original.terminal]
                .confirm(&original.outgoing, original.rrn, at_seconds)
                .unwrap();
            let decision = self.decide(confirm.bytes);
            assert_eq!(decision.code(), ResponseCode::Approved, "confirm declined");
        }
        while self.in_batch.len() < size - confirms {
            let at_seconds = self.tick();
            let sent = self.traffic.purchase(&mut self.terminals, at_seconds);
            let decision = self.decide(sent.outgoing.bytes.clone());
            if decision.code() != ResponseCode::Approved {
                // A blocked card (one in 500): not durable, not part of the batch.
                self.declined += 1;
                continue;
            }
            self.in_batch.push(Approved {
                terminal: sent.terminal,
                outgoing: sent.outgoing,
                rrn: decision.rrn().unwrap(),
            });
        }
        assert_eq!(self.effects.len(), size * EFFECTS_PER_MESSAGE);
    }

    /// The batch is durable: its purchases may be confirmed.
    fn committed(&mut self) {
        self.confirmable.extend(self.in_batch.drain(..));
    }

    fn decide(&mut self, message: bytes::Bytes) -> Decision {
        let Admission::Admitted(admitted) =
            admission::admit(message, &self.snapshot, &self.pan_key)
        else {
            panic!("a generated message is not admitted");
        };
        let keyed = self
            .snapshot
            .keys_by_ksi(admitted.request.ksi.as_bytes())
            .unwrap();
        let now = UnixMillis::new(self.now_ms);
        let decision = self
            .engine
            .decide(&self.snapshot, keyed, &admitted, now, &mut self.effects);
        assert!(
            !decision.resent,
            "a fresh message was answered from the window"
        );
        decision
    }

    fn tick(&mut self) -> i64 {
        self.now_ms += MESSAGE_MS;
        self.now_ms / 1000
    }
}

/// A temporary database provisioned through the store, and a driver over what it loads.
fn setup(runtime: &Runtime, dir: &tempfile::TempDir) -> (Pool, Driver) {
    let pan_key = PanTokenKey::from_bytes(PAN_KEY);
    let kek = Kek::from_bytes([0x11; 32]);
    let network: Network = network::build(&SHAPE, &pan_key);
    let start = UnixMillis::new(START_MS);
    let path = dir.path().join("lsw.db");
    runtime.block_on(async {
        let pool = store::open(path.to_str().unwrap()).await.unwrap();
        reference::save(&pool, &network.reference.data, &[0; 32], &kek, start)
            .await
            .unwrap();
        let loaded = reference::load(&pool, &kek).await.unwrap();
        let snapshot = Snapshot::build(&loaded).unwrap();
        let state = ledger::load(&pool, start).await.unwrap();
        assert_eq!(state.club.len(), SHAPE.cards);
        let driver = Driver {
            engine: Engine::new(state, ENGINE),
            snapshot,
            pan_key: pan_key.clone(),
            terminals: network::terminal_clients(&network.reference.data),
            traffic: Traffic::new(&network, TRAFFIC_SEED),
            confirmable: VecDeque::new(),
            in_batch: Vec::new(),
            effects: Vec::new(),
            now_ms: START_MS,
            declined: 0,
        };
        (pool, driver)
    })
}

/// Mean rates over every timed batch of one size (criterion reports the median-based ones).
#[derive(Default)]
struct Totals {
    batches: u64,
    timed: Duration,
}

fn benches(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pool, mut driver) = setup(&runtime, &dir);

    let mut group = c.benchmark_group("committer_throughput");
    group.sample_size(10);
    let mut totals: Vec<(usize, Totals)> = Vec::new();
    for size in BATCH_SIZES {
        let effects = u64::try_from(size * EFFECTS_PER_MESSAGE).unwrap();
        group.throughput(Throughput::Elements(effects));
        let mut total = Totals::default();
        group.bench_function(BenchmarkId::new("effects", size), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    driver.batch(size);
                    let started = Instant::now();
                    runtime
                        .block_on(ledger::apply(&pool, &driver.effects))
                        .unwrap();
                    timed += started.elapsed();
                    driver.committed();
                }
                total.batches += iters;
                total.timed += timed;
                timed
            })
        });
        totals.push((size, total));
    }
    group.finish();

    for (size, total) in &totals {
        let seconds = total.timed.as_secs_f64();
        let batches = count(total.batches);
        let messages = count(u64::try_from(*size).unwrap()) * batches;
        let effects = messages * count(u64::try_from(EFFECTS_PER_MESSAGE).unwrap());
        println!(
            "committer_throughput: batch {size:>3} messages: {:>7.0} effects/s, {:>6.0} \
             pairs/s, {:.2} ms per commit (mean over {} batches)",
            effects / seconds,
            messages / 2.0 / seconds,
            seconds * 1e3 / batches,
            total.batches
        );
    }
    let (transactions, captures): (i64, i64) = runtime.block_on(async {
        let rows = |sql| sqlx::query_scalar::<_, i64>(sql).fetch_one(&pool);
        (
            rows("SELECT count(*) FROM transactions").await.unwrap(),
            rows("SELECT count(*) FROM captures").await.unwrap(),
        )
    });
    println!(
        "committer_throughput: database holds {transactions} transactions, {captures} captured; \
         {} purchases declined (blocked cards) and left out of the batches",
        driver.declined
    );
    runtime.block_on(pool.close());
}

/// A count as a float, for rates (exact below 2^32, which any bench run stays under).
fn count(n: u64) -> f64 {
    f64::from(u32::try_from(n).unwrap())
}

criterion_group!(committer_throughput, benches);
criterion_main!(committer_throughput);
