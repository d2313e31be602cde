//! Journal mode (docs/design.md, "The journal"): the engine decides a batch, the journal
//! thread appends its effects as one record (one `write`, one `fdatasync`) and only then lets
//! the batch's answers out; the projector writes records into the database behind the answers,
//! many records to a transaction, with the applied sequence number in the same transaction.
//!
//! ```text
//! engine (committer task) --Write--> journal thread --Projection--> projector task --> SQL
//!                                     (append+sync,                  (one transaction per
//!                                      then answers)                  many records)
//! ```
//!
//! Records durable and not yet projected hold at most `journal_lag_max_bytes`: past it the
//! journal thread waits, so the engine waits, and memory and the database's lag stay bounded.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{error, info, warn};

use super::{answer_credits, answer_system_error, count, send, CreditReplies, Write};
use crate::clock::Clock;
use crate::engine::effect::Effect;
use crate::journal::{Journal, JournalError, Record};
use crate::metrics as m;
use crate::store::projection;
use crate::store::Pool;

/// Where the journal is and how far the projection may fall behind.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// The segments' directory.
    pub dir: PathBuf,
    /// Bytes per segment.
    pub segment_bytes: u64,
    /// Most bytes of records not yet projected.
    pub lag_max_bytes: u64,
}

/// Most records queued for the projector, whatever their bytes (the bytes are the bound).
pub const RECORDS_QUEUED_MAX: usize = 1 << 16;

/// Progress shared by the journal thread, the projector and readers (readiness, tests).
#[derive(Debug, Default)]
pub struct JournalState {
    appended: AtomicU64,
    applied: AtomicU64,
    applied_at: AtomicI64,
    lag_max_bytes: AtomicU64,
    /// Bytes of records durable and not yet projected: the journal thread waits on it.
    lag_bytes: Mutex<u64>,
    lag_room: Condvar,
    projection_failing: AtomicBool,
    projected: Notify,
}

impl JournalState {
    /// The last record made durable.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::SeqCst)
    }

    /// The last record projected into the database.
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// Records durable but not yet in the database.
    pub fn lag(&self) -> u64 {
        self.appended().saturating_sub(self.applied())
    }

    /// Bytes of records durable and not yet projected.
    pub fn lag_bytes(&self) -> u64 {
        *self
            .lag_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the projection is within its bound and not failing: `/readyz`.
    pub fn healthy(&self) -> bool {
        self.lag_bytes() < self.lag_max_bytes.load(Ordering::SeqCst)
            && !self.projection_failing.load(Ordering::SeqCst)
    }

    /// Waits (the journal thread) until `bytes` more fit under the bound; a record larger
    /// than the bound passes alone.
    fn admit(&self, bytes: u64) {
        let max = self.lag_max_bytes.load(Ordering::SeqCst);
        let mut lag = self
            .lag_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while *lag > 0 && lag.saturating_add(bytes) > max {
            lag = self
                .lag_room
                .wait(lag)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *lag = lag.saturating_add(bytes);
    }

    /// The projector wrote `bytes` of records.
    fn release(&self, bytes: u64) {
        let mut lag = self
            .lag_bytes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *lag = lag.saturating_sub(bytes);
        self.lag_room.notify_all();
    }

    /// Waits until everything made durable before the call is in the database. For readers
    /// that must see what was answered (tests, the demo's summary).
    pub async fn wait_projected(&self) {
        let target = self.appended();
        loop {
            let notified = self.projected.notified();
            if self.applied() >= target {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

/// One batch's record as it is written.
#[derive(serde::Serialize)]
struct EntryRef<'a> {
    at: i64,
    effects: &'a [Effect],
}

/// One batch's record as it is read back.
#[derive(Debug, serde::Deserialize)]
pub struct Entry {
    /// When its batch was decided (Unix ms): no later decision is earlier.
    pub at: i64,
    /// Its effects, in the order the engine made them.
    pub effects: Vec<Effect>,
}

/// Encodes a batch's record.
///
/// # Errors
/// A message when an effect cannot be encoded (never for the engine's effects).
pub fn encode(at: i64, effects: &[Effect]) -> Result<Vec<u8>, String> {
    encode_into(at, effects, Vec::new())
}

/// Encodes a batch's record into `buf` (cleared first; its room is reused).
fn encode_into(at: i64, effects: &[Effect], mut buf: Vec<u8>) -> Result<Vec<u8>, String> {
    buf.clear();
    postcard::to_extend(&EntryRef { at, effects }, buf).map_err(|cause| cause.to_string())
}

/// Decodes a record's payload.
///
/// # Errors
/// A message naming the record when it is not an entry of this version.
pub fn decode(record: &Record) -> Result<Entry, String> {
    postcard::from_bytes(&record.payload)
        .map_err(|cause| format!("journal record {} cannot be read: {cause}", record.seq))
}

/// What the journal thread hands the projector.
pub(super) enum Projection {
    /// A durable record, with the operator credits that wait for it to be in the database.
    Record {
        seq: u64,
        at: i64,
        bytes: u64,
        effects: Vec<Effect>,
        credits: CreditReplies,
    },
    /// Every decision before `at` was sent before this, and every one made before the engine
    /// held the fence at `fence`.
    Progress {
        /// The time.
        at: i64,
        /// The fence.
        fence: i64,
    },
    /// Acknowledged once every earlier record is projected.
    Barrier(oneshot::Sender<()>),
}

/// Effects per projection transaction, at most (a record is never split).
pub const PROJECT_EFFECTS_MAX: usize = 16_384;

/// Opens the journal and projects the records the database lacks (a crash left them), in
/// order, before the engine's state is loaded.
///
/// # Errors
/// A message: a corrupt journal (segment and offset named; nothing changed), an unreadable
/// record, or a database failure.
pub async fn recover(
    pool: &Pool,
    settings: &JournalSettings,
    now: i64,
) -> Result<(Journal, Arc<JournalState>), String> {
    let progress = projection::progress(pool)
        .await
        .map_err(|e| format!("journal progress: {e}"))?;
    let (dir, bytes, applied) = (
        settings.dir.clone(),
        settings.segment_bytes,
        progress.applied_seq,
    );
    let opened = tokio::task::spawn_blocking(move || Journal::open(&dir, bytes, applied))
        .await
        .map_err(|e| format!("journal: {e}"))?
        .map_err(|e: JournalError| e.to_string())?;
    let mut journal = opened.journal;
    let records = opened.records;
    let recovered = records.len();
    let mut chunk: Vec<Effect> = Vec::new();
    let mut first = applied + 1;
    let mut last = applied;
    for record in records {
        let entry = decode(&record)?;
        chunk.extend(entry.effects);
        last = record.seq;
        if chunk.len() >= PROJECT_EFFECTS_MAX {
            projection::apply(pool, &chunk, first, last, Some(entry.at))
                .await
                .map_err(|e| format!("projecting journal records {first} to {last}: {e}"))?;
            chunk.clear();
            first = last + 1;
        }
    }
    if last >= first {
        projection::apply(pool, &chunk, first, last, None)
            .await
            .map_err(|e| format!("projecting journal records {first} to {last}: {e}"))?;
    }
    // Nothing is deciding yet: every decision so far is in the records just projected.
    projection::advance(pool, now, None)
        .await
        .map_err(|e| format!("journal progress: {e}"))?;
    projection::set_running(pool, true)
        .await
        .map_err(|e| format!("journal progress: {e}"))?;
    journal.release_through(last);
    if recovered > 0 {
        info!(
            records = recovered,
            through = last,
            "journal: records projected on start"
        );
    }
    let state = Arc::new(JournalState::default());
    state.appended.store(last, Ordering::SeqCst);
    state.applied.store(last, Ordering::SeqCst);
    state
        .lag_max_bytes
        .store(settings.lag_max_bytes, Ordering::SeqCst);
    metrics::gauge!(m::JOURNAL_SEGMENTS).set(count(journal.segment_count()));
    metrics::gauge!(m::JOURNAL_APPENDED_SEQ).set(lag_f64(last));
    metrics::gauge!(m::JOURNAL_APPLIED_SEQ).set(lag_f64(last));
    Ok((journal, state))
}

/// The journal thread: appends each batch, answers it, hands it to the projector. Returns the
/// journal when the engine stops.
pub(super) fn journal_loop(
    mut journal: Journal,
    mut writes: mpsc::Receiver<Write>,
    projector: mpsc::Sender<Projection>,
    poisoned: Arc<AtomicBool>,
    state: Arc<JournalState>,
) -> Journal {
    let mut buf = Vec::with_capacity(1 << 20);
    while let Some(write) = writes.blocking_recv() {
        let (at, effects, deferred, credits) = match write {
            Write::Barrier(done) => {
                let _ = projector.blocking_send(Projection::Barrier(done));
                continue;
            }
            Write::Progress { at, fence } => {
                let _ = projector.blocking_send(Projection::Progress { at, fence });
                continue;
            }
            Write::Batch {
                at,
                effects,
                deferred,
                credits,
            } => (at, effects, deferred, credits),
        };
        if poisoned.load(Ordering::SeqCst) {
            // Decided on top of a batch that failed: nothing of it may count.
            answer_system_error(deferred);
            answer_credits(credits, false);
            continue;
        }
        if effects.is_empty() {
            deferred
                .into_iter()
                .for_each(|(job, decision)| send(job, decision));
            answer_credits(credits, true);
            continue;
        }
        let commit_started = Instant::now();
        let appended = encode_into(at, &effects, std::mem::take(&mut buf))
            .map(|encoded| buf = encoded)
            .map_err(|cause| JournalError::Io {
                path: journal.dir().to_path_buf(),
                source: std::io::Error::other(cause),
            })
            .and_then(|_| {
                let started = Instant::now();
                let seq = journal.append(&buf);
                metrics::histogram!(m::JOURNAL_SYNC_SECONDS)
                    .record(started.elapsed().as_secs_f64());
                seq
            });
        match appended {
            Ok(seq) => {
                let took = commit_started.elapsed();
                metrics::histogram!(m::COMMIT_SECONDS).record(took.as_secs_f64());
                if took > super::SLOW_COMMIT {
                    warn!(
                        effects = effects.len(),
                        took_ms = took.as_millis(),
                        "slow journal append: its batch's answers waited for it"
                    );
                }
                state.appended.store(seq, Ordering::SeqCst);
                metrics::gauge!(m::JOURNAL_APPENDED_SEQ).set(lag_f64(seq));
                deferred
                    .into_iter()
                    .for_each(|(job, decision)| send(job, decision));
                metrics::histogram!(m::COMMIT_BATCH_SIZE).record(count(effects.len()));
                let bytes = crate::journal::frame_len(buf.len());
                let record = Projection::Record {
                    seq,
                    at,
                    bytes,
                    effects,
                    credits,
                };
                // Waits here while the projection is `lag_max_bytes` behind.
                state.admit(bytes);
                if projector.blocking_send(record).is_err() {
                    error!("projector gone; the journal keeps the records for the next start");
                }
                journal.release_through(state.applied());
                metrics::gauge!(m::JOURNAL_SEGMENTS).set(count(journal.segment_count()));
            }
            Err(cause) => {
                error!(%cause, effects = effects.len(), "journal append failed; answering 96 and reloading");
                metrics::counter!(m::COMMIT_FAILURES_TOTAL).increment(1);
                poisoned.store(true, Ordering::SeqCst);
                answer_system_error(deferred);
                answer_credits(credits, false);
            }
        }
    }
    journal
}

/// The projector: writes records into the database, many to a transaction, in order;
/// retries a failed transaction (the journal keeps its records) until it succeeds or the
/// switch stops.
pub(super) async fn project_loop(
    pool: Pool,
    mut records: mpsc::Receiver<Projection>,
    state: Arc<JournalState>,
    clock: Arc<dyn Clock>,
) {
    let mut effects: Vec<Effect> = Vec::new();
    let mut credits: CreditReplies = Vec::new();
    let mut barriers = Vec::new();
    let mut closed = false;
    while !closed {
        let Some(first) = records.recv().await else {
            break;
        };
        let mut batch = Batch::default();
        batch.add(first, &mut effects, &mut credits, &mut barriers);
        while effects.len() < PROJECT_EFFECTS_MAX {
            match records.try_recv() {
                Ok(next) => batch.add(next, &mut effects, &mut credits, &mut barriers),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        project(&pool, &batch, &effects, &state, &records, clock.as_ref()).await;
        effects.clear();
        answer_credits(std::mem::take(&mut credits), true);
        barriers.drain(..).for_each(|done: oneshot::Sender<()>| {
            let _ = done.send(());
        });
    }
}

/// What one projection transaction covers.
#[derive(Debug, Default)]
struct Batch {
    first: Option<u64>,
    last: u64,
    records: usize,
    bytes: u64,
    /// The newest record's decision time, or a later progress mark.
    before: Option<i64>,
    /// The fence the engine held at the latest progress mark.
    fence: Option<i64>,
    at: i64,
}

impl Batch {
    fn add(
        &mut self,
        item: Projection,
        effects: &mut Vec<Effect>,
        credits: &mut CreditReplies,
        barriers: &mut Vec<oneshot::Sender<()>>,
    ) {
        match item {
            Projection::Record {
                seq,
                at,
                bytes,
                effects: mut more,
                credits: mut waiting,
            } => {
                self.first.get_or_insert(seq);
                self.last = seq;
                self.records += 1;
                self.bytes += bytes;
                self.at = at;
                self.before = Some(self.before.map_or(at, |b| b.max(at)));
                effects.append(&mut more);
                credits.append(&mut waiting);
            }
            Projection::Progress { at, fence } => {
                self.before = Some(self.before.map_or(at, |b| b.max(at)));
                self.fence = Some(self.fence.map_or(fence, |f| f.max(fence)));
            }
            Projection::Barrier(done) => barriers.push(done),
        }
    }
}

/// Writes one batch, retrying with a growing pause while the database fails; gives up only
/// when the switch is stopping (the journal projects the records on the next start).
async fn project(
    pool: &Pool,
    batch: &Batch,
    effects: &[Effect],
    state: &JournalState,
    records: &mpsc::Receiver<Projection>,
    clock: &dyn Clock,
) {
    let mut pause = Duration::from_millis(20);
    loop {
        let started = Instant::now();
        let mut done = match batch.first {
            Some(first) => projection::apply(pool, effects, first, batch.last, batch.before).await,
            None => Ok(()),
        };
        if done.is_ok() && (batch.fence.is_some() || batch.first.is_none()) {
            if let Some(before) = batch.before {
                done = projection::advance(pool, before, batch.fence).await;
            }
        }
        match done {
            Ok(()) => {
                metrics::histogram!(m::PROJECTION_SECONDS).record(started.elapsed().as_secs_f64());
                if batch.first.is_some() {
                    metrics::histogram!(m::PROJECTION_RECORDS).record(count(batch.records));
                    state.applied.store(batch.last, Ordering::SeqCst);
                    state.release(batch.bytes);
                    metrics::gauge!(m::JOURNAL_APPLIED_SEQ).set(lag_f64(batch.last));
                    state.applied_at.store(batch.at, Ordering::SeqCst);
                }
                state.projection_failing.store(false, Ordering::SeqCst);
                let lag = state.lag();
                metrics::gauge!(m::JOURNAL_LAG_RECORDS).set(lag_f64(lag));
                let age = if lag == 0 {
                    0
                } else {
                    clock.now().get() - state.applied_at.load(Ordering::SeqCst)
                };
                metrics::gauge!(m::JOURNAL_LAG_SECONDS)
                    .set(lag_f64(u64::try_from(age).unwrap_or(0)) / 1000.0);
                state.projected.notify_waiters();
                return;
            }
            Err(cause) => {
                metrics::counter!(m::PROJECTION_FAILURES_TOTAL).increment(1);
                state.projection_failing.store(true, Ordering::SeqCst);
                error!(%cause, first = ?batch.first, last = batch.last, "projection failed; the journal keeps the records; retrying");
                if records.is_closed() && pause >= Duration::from_secs(2) {
                    warn!("stopping with records not projected; the next start projects them");
                    return;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A count or sequence number as a metric value (exact below 2^53).
fn lag_f64(n: u64) -> f64 {
    let high = u32::try_from(n >> 32).unwrap_or(u32::MAX);
    let low = u32::try_from(n & u64::from(u32::MAX)).unwrap_or(u32::MAX);
    f64::from(high) * 4_294_967_296.0 + f64::from(low)
}
