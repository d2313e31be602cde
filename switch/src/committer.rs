//! The committer: one task that owns the engine, takes verified requests from every
//! connection, decides them, makes the batch's effects durable as one record of the journal
//! (group commit; [`journaled`]) or, with several processes on PostgreSQL, in one database
//! transaction ([`shared`]), and only then lets the responses of durable work out
//! (docs/design.md sections 1 and 6). Declines change nothing and leave at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::store::Pool;
use bytes::{Bytes, BytesMut};
use protocol::ResponseCode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};
use tracing::{debug, debug_span, error, info, warn};

use crate::admission::Admitted;
use crate::clock::Clock;
use crate::engine::coupon::{CouponIssue, CouponRefusal};
use crate::engine::credit::{Credit, CreditOutcome, CreditRefusal, Transfer, TransferRefusal};
use crate::engine::{prefetch, AnswerFields, Decision, Decline, Effect, Engine, Swept};
use crate::metrics as m;
use crate::snapshot::Snapshot;
use crate::store::ledger;

pub mod journaled;
mod shared;

/// Most requests decided per group commit: bounds a batch's transaction and its latency.
pub const BATCH_MAX_DEFAULT: usize = 512;
/// Most pending holds the sweeper releases per tick, so one tick never stalls the batch loop.
pub const SWEEP_MAX: usize = 4096;

/// One verified request on its way to the engine.
pub struct Job {
    /// The request (format, MAC and envelope already checked), its card and fingerprint.
    pub admitted: Admitted,
    /// The snapshot it started with (in-flight work keeps it across a swap).
    pub snapshot: Arc<Snapshot>,
    /// Where the response goes: the connection's writer.
    pub reply: mpsc::Sender<Bytes>,
    /// The connection's in-flight slot, freed when the response is queued.
    pub permit: OwnedSemaphorePermit,
    /// When the frame was read, for the latency histogram.
    pub received: Instant,
}

/// What the operator API asks the engine to do to balances.
pub enum Operation {
    /// A top-up or a store-credit grant.
    Credit(Credit),
    /// A card's balances moved to its replacement.
    Transfer(Transfer),
    /// A member coupon issued.
    Coupon(CouponIssue),
}

/// An operation from the operator API on its way to the engine; answered once durable.
pub struct CreditJob {
    /// The operation.
    pub operation: Operation,
    /// Where the outcome goes.
    pub reply: oneshot::Sender<Result<CreditOutcome, CreditFailure>>,
}

/// Why a credit was not made; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditFailure {
    /// The engine refused the credit.
    #[error(transparent)]
    Refused(#[from] CreditRefusal),
    /// The engine refused the transfer.
    #[error(transparent)]
    TransferRefused(#[from] TransferRefusal),
    /// The engine refused the coupon.
    #[error(transparent)]
    CouponRefused(#[from] CouponRefusal),
    /// The store failed to make its batch durable.
    #[error("the store failed; nothing was changed")]
    System,
}

/// Credits waiting for their batch, with what they will be answered.
type CreditReplies = Vec<(
    oneshot::Sender<Result<CreditOutcome, CreditFailure>>,
    CreditOutcome,
)>;

/// Committer settings.
#[derive(Debug, Clone, Copy)]
pub struct CommitterConfig {
    /// Most requests per batch.
    pub batch_max: usize,
    /// How long to wait for more requests before committing a batch that is not full;
    /// zero commits as soon as the queue is empty (batches then grow with load by themselves).
    pub batch_window: Duration,
    /// How often the sweeper looks for holds past their timeout.
    pub sweep_every: Duration,
}

/// Batches the writer has not finished that the engine may run ahead by: one being written
/// and one waiting. More would only add latency; fewer would stop deciding during a commit.
pub const WRITES_IN_FLIGHT_MAX: usize = 1;

/// The batch size up to which queued credits join a batch ([`fill_credits`]).
pub const CREDITS_FILL_TO: usize = 16;

/// Where a batch becomes durable.
pub enum CommitPoint {
    /// The database, in one transaction per batch: several switch processes on one
    /// PostgreSQL database.
    Database,
    /// The journal, opened and recovered ([`journaled::recover`]); the database is projected
    /// from it.
    Journal {
        /// The journal.
        journal: Box<crate::journal::Journal>,
        /// Its progress (and its lag bound), shared with readers.
        state: Arc<journaled::JournalState>,
    },
}

/// What the engine hands the writer.
enum Write {
    /// A batch's effects and the responses that wait for them.
    Batch {
        /// When it was decided (Unix ms).
        at: i64,
        effects: Vec<Effect>,
        deferred: Vec<(Job, Decision)>,
        credits: CreditReplies,
    },
    /// Acknowledged once every earlier batch is handled (after a failed commit).
    Barrier(oneshot::Sender<()>),
    /// Every decision before `at` (Unix ms) was sent before this, and so was every decision
    /// made before the engine held settlement's fence at `fence`: the projection's freshness
    /// while the switch is idle, and the fence settlement waits for.
    Progress {
        /// The time.
        at: i64,
        /// The fence the engine holds.
        fence: i64,
    },
}

/// Runs the committer until every job sender is dropped (shutdown), then returns after the
/// last batch is durable.
///
/// Two stages: the engine decides batch n+1 while the writer commits batch n, so deciding
/// and the database's fsync overlap. Responses still leave only after their own batch (and
/// so every earlier one) is durable. When a commit fails the writer answers `96` to that batch
/// and to every batch already decided after it, and the engine reloads its state from the
/// database before deciding anything more.
pub async fn run(
    mut engine: Engine,
    pool: Pool,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<Job>,
    mut credit_jobs: mpsc::Receiver<CreditJob>,
    config: CommitterConfig,
    commit: CommitPoint,
) {
    let (journal, state) = match commit {
        CommitPoint::Database => {
            return shared::run(engine, pool, clock, jobs, credit_jobs, config).await;
        }
        CommitPoint::Journal { journal, state } => (journal, state),
    };
    let poisoned = Arc::new(AtomicBool::new(false));
    let (writes, writes_rx) = mpsc::channel(WRITES_IN_FLIGHT_MAX);
    // Bounded in bytes by the journal state's gate; this only caps the count.
    let (projections, projections_rx) = mpsc::channel(journaled::RECORDS_QUEUED_MAX);
    let projector = tokio::spawn(journaled::project_loop(
        pool.clone(),
        projections_rx,
        state.clone(),
        clock.clone(),
    ));
    let writer = {
        let (poisoned, state) = (poisoned.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            journaled::journal_loop(*journal, writes_rx, projections, poisoned, state)
        })
    };
    let mut sweep = tokio::time::interval(config.sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Job> = Vec::with_capacity(config.batch_max);
    let mut effects: Vec<Effect> = Vec::with_capacity(config.batch_max * 4);
    let mut credit_batch: Vec<CreditJob> = Vec::new();
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => batch.push(job),
                None => break,
            },
            Some(job) = credit_jobs.recv() => credit_batch.push(job),
            _ = sweep.tick() => {
                let now = clock.now();
                log_faults(&engine.sweep(now, &mut effects, SWEEP_MAX));
                engine.prune(now);
                learn_settlement(&mut engine, &pool).await;
                let fence = hold_fence(&mut engine, &pool).await;
                // Before anything decided from here on, all of which is at `now` or later and
                // under the fence.
                if writes.send(Write::Progress { at: now.get(), fence }).await.is_err() {
                    error!("writer gone; stopping the committer");
                    break;
                }
            }
        }
        fill_batch(&mut jobs, &mut batch, &config).await;
        fill_credits(&mut credit_jobs, &mut credit_batch, batch.len());
        if poisoned.load(Ordering::SeqCst) {
            recover(&mut engine, &pool, clock.as_ref(), &writes, &poisoned).await;
            effects.clear();
        }
        let deferred = decide(&mut engine, clock.as_ref(), &mut batch, &mut effects);
        let credits = decide_credits(&mut engine, clock.as_ref(), &mut credit_batch, &mut effects);
        if deferred.is_empty() && effects.is_empty() && credits.is_empty() {
            continue;
        }
        let write = Write::Batch {
            at: clock.now().get(),
            effects: std::mem::take(&mut effects),
            deferred,
            credits,
        };
        if writes.send(write).await.is_err() {
            error!("writer gone; stopping the committer");
            break;
        }
        effects.reserve(config.batch_max * 4);
        metrics::gauge!(m::HOLDS_OPEN).set(count(engine.state.pending.len()));
    }
    drop(writes);
    let journal = writer.await;
    let _ = projector.await;
    if let Ok(mut journal) = journal {
        journal.release_through(state.applied());
    }
    if state.lag() == 0 {
        // Everything decided is in the database: settlement need not wait for this switch.
        let stopped = crate::store::projection::advance(&pool, clock.now().get(), None).await;
        let stopped = match stopped {
            Ok(()) => crate::store::projection::set_running(&pool, false).await,
            Err(cause) => Err(cause),
        };
        if let Err(cause) = stopped {
            warn!(%cause, "cannot record the clean stop; settlement will wait for a restart");
        }
    }
    info!(
        applied = state.applied(),
        unprojected = state.lag(),
        "committer drained"
    );
}

/// Takes whatever else is queued, up to the batch size, waiting the batch window for more
/// when it is set.
async fn fill_batch(
    jobs: &mut mpsc::Receiver<Job>,
    batch: &mut Vec<Job>,
    config: &CommitterConfig,
) {
    while batch.len() < config.batch_max {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) if config.batch_window.is_zero() || batch.is_empty() => break,
            Err(_) => match tokio::time::timeout(config.batch_window, jobs.recv()).await {
                Ok(Some(job)) => batch.push(job),
                Ok(None) | Err(_) => break,
            },
        }
    }
}

/// Takes the operator's queued credits (coupons, cashback, top-ups, a campaign's coupons)
/// while the batch holds fewer than [`CREDITS_FILL_TO`] jobs in all. A busy switch's batches
/// are larger than that, so they carry at most the one credit the wait picked and credits
/// never lengthen the terminals' commits; a quieter switch writes a campaign's coupons many to
/// a group commit instead of one commit each.
fn fill_credits(
    credit_jobs: &mut mpsc::Receiver<CreditJob>,
    credit_batch: &mut Vec<CreditJob>,
    terminal_jobs: usize,
) {
    while terminal_jobs + credit_batch.len() < CREDITS_FILL_TO {
        match credit_jobs.try_recv() {
            Ok(job) => credit_batch.push(job),
            Err(_) => break,
        }
    }
}

/// Decides a batch: declines leave at once; the rest wait for the writer. The batch is decided
/// in its order, a group at a time, each group's rows read ahead first
/// ([`crate::engine::prefetch`]).
fn decide(
    engine: &mut Engine,
    clock: &dyn Clock,
    batch: &mut Vec<Job>,
    effects: &mut Vec<Effect>,
) -> Vec<(Job, Decision)> {
    let now = clock.now();
    let mut deferred = Vec::new();
    let mut jobs = batch.drain(..).peekable();
    while jobs.peek().is_some() {
        let group: Vec<Job> = jobs.by_ref().take(prefetch::GROUP).collect();
        prefetch::read_ahead(engine, group.iter(), |job: &Job| {
            let keyed = job
                .snapshot
                .keys_by_ksi(job.admitted.request.ksi.as_bytes())?;
            Some((job.snapshot.as_ref(), keyed, &job.admitted))
        });
        for job in group {
            decide_one(engine, job, now, effects, &mut deferred);
        }
    }
    deferred
}

/// Logs the holds a sweep could not release: the engine's balances disagree with a pending
/// transaction, which an operator must look into (the transaction stays pending).
pub(crate) fn log_faults(swept: &Swept) {
    for (txn, fault) in &swept.faults {
        error!(txn = txn.0, %fault, "expired holds not released");
    }
}

/// Decides one job: a decline is sent at once, the rest join `deferred`.
fn decide_one(
    engine: &mut Engine,
    job: Job,
    now: crate::domain::UnixMillis,
    effects: &mut Vec<Effect>,
    deferred: &mut Vec<(Job, Decision)>,
) {
    // Admission found the KSI in this snapshot, which the job carries: never `None`.
    let Some(keyed) = job
        .snapshot
        .keys_by_ksi(job.admitted.request.ksi.as_bytes())
    else {
        return;
    };
    let span = debug_span!(
        "txn",
        ksi = %job.admitted.request.ksi,
        stan = %job.admitted.request.stan,
        mti = job.admitted.request.mti.as_str(),
    );
    let _entered = span.enter();
    let decision = engine.decide(&job.snapshot, keyed, &job.admitted, now, effects);
    if let Some(fault) = decision.fault {
        // The span is a debug one: the request's key goes in the line itself.
        error!(
            %fault,
            ksi = %job.admitted.request.ksi,
            stan = %job.admitted.request.stan,
            mti = job.admitted.request.mti.as_str(),
            "balances refused the request; answered 96"
        );
    }
    debug!(response_code = decision.code().as_str(), rrn = ?decision.rrn(), durable = decision.durable, "decided");
    if decision.durable || decision.resent {
        deferred.push((job, decision));
    } else {
        send(job, decision);
    }
}

/// Decides the operator's credits: refusals are answered at once; the rest, repeats
/// included, wait for the batch (a repeat rests on a credit that may still be unwritten).
fn decide_credits(
    engine: &mut Engine,
    clock: &dyn Clock,
    batch: &mut Vec<CreditJob>,
    effects: &mut Vec<Effect>,
) -> CreditReplies {
    let now = clock.now();
    let mut replies = Vec::new();
    for job in batch.drain(..) {
        let outcome = match job.operation {
            Operation::Credit(credit) => engine.credit(credit, now, effects).map_err(Into::into),
            Operation::Transfer(transfer) => {
                engine.transfer(transfer, now, effects).map_err(Into::into)
            }
            Operation::Coupon(issue) => {
                engine.issue_coupon(issue, now, effects).map_err(Into::into)
            }
        };
        match outcome {
            Ok(outcome) => replies.push((job.reply, outcome)),
            Err(failure) => {
                let _ = job.reply.send(Err(failure));
            }
        }
    }
    replies
}

/// Settlement runs beside the switch and marks transactions settled in the database; the
/// engine learns it here, once per sweeper tick, so a later reversal is refused (`12`)
/// instead of failing its whole batch on the database's guard.
async fn learn_settlement(engine: &mut Engine, pool: &Pool) {
    match ledger::settled_since(pool, engine.state.settled_cycle).await {
        Ok((ids, cycle)) if !ids.is_empty() => {
            info!(
                transactions = ids.len(),
                cycle, "settled transactions learned"
            );
            engine.mark_settled(&ids, cycle);
        }
        Ok(_) => {}
        Err(cause) => warn!(%cause, "cannot read settled transactions; will retry"),
    }
}

/// Settlement asks for a fence before it closes a cycle (journal mode,
/// `journal_progress.fence_asked_ms`); the engine holds it from here on. Returns the fence held.
async fn hold_fence(engine: &mut Engine, pool: &Pool) -> i64 {
    match crate::store::projection::progress(pool).await {
        Ok(progress) => {
            let held = engine.state.fence_ms;
            let now_held = engine.hold_fence(progress.fence_asked_ms);
            if now_held > held {
                info!(fence_ms = now_held, "settlement fence held: reversals of transactions confirmed before it are refused");
            }
            now_held
        }
        Err(cause) => {
            warn!(%cause, "cannot read settlement's fence; will retry");
            engine.state.fence_ms
        }
    }
}

/// After a failed commit: wait until the writer has answered every batch decided on the
/// stale state, then rebuild the engine's state from the database.
async fn recover(
    engine: &mut Engine,
    pool: &Pool,
    clock: &dyn Clock,
    writes: &mpsc::Sender<Write>,
    poisoned: &AtomicBool,
) {
    let (done, drained) = oneshot::channel();
    if writes.send(Write::Barrier(done)).await.is_ok() {
        let _ = drained.await;
    }
    reload(engine, pool, clock).await;
    poisoned.store(false, Ordering::SeqCst);
}

/// A group commit slower than this is logged with its size: every answer of its batch waited
/// that long, so at 3 a.m. it is the first thing to look for behind a latency alarm.
pub const SLOW_COMMIT: Duration = Duration::from_millis(250);

/// Answers the credits of a batch: their outcome when it is durable, else a system failure.
fn answer_credits(credits: CreditReplies, durable: bool) {
    for (reply, outcome) in credits {
        let _ = reply.send(if durable {
            Ok(outcome)
        } else {
            Err(CreditFailure::System)
        });
    }
}

/// Answers `96` (nothing was changed) to every job of a batch that was not made durable.
fn answer_system_error(deferred: Vec<(Job, Decision)>) {
    for (job, _) in deferred {
        answer_96(job);
    }
}

/// Answers `96` (nothing was changed) to one job.
fn answer_96(job: Job) {
    let decision = Decision {
        answer: AnswerFields::code(Decline::System.response_code()),
        durable: false,
        resent: false,
        fault: None,
    };
    send(job, decision);
}

/// After a failed commit the engine's memory is ahead of the database: rebuild it from the
/// store, retrying until the database answers (requests meanwhile wait in the bounded queue).
async fn reload(engine: &mut Engine, pool: &Pool, clock: &dyn Clock) {
    let mut wait = Duration::from_millis(50);
    loop {
        match ledger::load(pool, clock.now()).await {
            Ok(state) => {
                engine.state = state;
                info!("engine state reloaded from the store");
                return;
            }
            Err(cause) => {
                warn!(%cause, "reload failed; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Builds the response from the decision's fields and the request, MACs it with the keys
/// of the request's KSI, and queues it on the connection. For answers that waited for their
/// batch this runs on the writer's task, beside the engine's.
fn send(job: Job, decision: Decision) {
    let code: ResponseCode = decision.code();
    let request = &job.admitted.request;
    metrics::counter!(m::MESSAGES_TOTAL, "mti" => request.mti.as_str(), "response_code" => code.as_str())
        .increment(1);
    // Admission found the KSI in this snapshot, which the job carries: never `None`.
    let Some(keyed) = job.snapshot.keys_by_ksi(request.ksi.as_bytes()) else {
        error!(stan = %request.stan, "response not built: the request's KSI is not in its snapshot");
        return;
    };
    let mut out = BytesMut::with_capacity(RESPONSE_BYTES);
    let response = decision.answer.response(&mut out, request, keyed.keys);
    metrics::histogram!(m::MESSAGE_DURATION_SECONDS).record(job.received.elapsed().as_secs_f64());
    // A full or closed writer means the connection is gone or over its limit: the response
    // is dropped, never waited for (one slow peer must not stall the others).
    if job.reply.try_send(response).is_err() {
        warn!(stan = %request.stan, "response dropped: connection gone");
    }
    drop(job.permit);
}

/// Room for a response: the longest LSTI-1 response (an approved purchase with six amount
/// sets and field 90) is under this, so building one never reallocates.
const RESPONSE_BYTES: usize = 384;

fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::domain::{CouponKind, CouponTerms, MemberId, Rials, RuleKind, UnixMillis};

    fn queue(n: i64) -> mpsc::Receiver<CreditJob> {
        let (sender, receiver) = mpsc::channel(1_000);
        for member in 1..=n {
            let (reply, _answer) = oneshot::channel();
            let issue = CouponIssue {
                key: format!("campaign:C:{member}"),
                member: MemberId::new(member),
                kind: CouponKind::Campaign,
                terms: CouponTerms {
                    kind: RuleKind::Fixed(Rials::new(1_000).unwrap()),
                    basket_rials_min: Rials::ZERO,
                    discount_rials_max: None,
                    merchant: None,
                    expires_at: UnixMillis::new(i64::MAX),
                },
                card: None,
                operator: "test".to_owned(),
            };
            sender
                .try_send(CreditJob {
                    operation: Operation::Coupon(issue),
                    reply,
                })
                .unwrap();
        }
        receiver
    }

    #[test]
    fn queued_credits_fill_a_quiet_batch_and_stay_out_of_a_busy_one() {
        // Quiet: no terminal job, a campaign's 100 coupons queued: each batch takes 16 until
        // the last takes the rest.
        let mut credits = queue(100);
        let mut sizes = Vec::new();
        loop {
            let mut batch = Vec::new();
            fill_credits(&mut credits, &mut batch, 0);
            if batch.is_empty() {
                break;
            }
            sizes.push(batch.len());
        }
        assert_eq!(sizes, [16, 16, 16, 16, 16, 16, 4]);
        // Busy: a batch of terminal jobs as large as the room, plus the one credit the wait
        // picked: nothing more joins it.
        let mut credits = queue(100);
        let mut batch = vec![credits.try_recv().unwrap()];
        fill_credits(&mut credits, &mut batch, CREDITS_FILL_TO);
        assert_eq!(batch.len(), 1);
        // Partly busy: only the room left.
        let mut batch = Vec::new();
        fill_credits(&mut credits, &mut batch, CREDITS_FILL_TO - 10);
        assert_eq!(batch.len(), 10);
    }
}
