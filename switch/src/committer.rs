//! The committer: one task that owns the engine, takes verified requests from every
//! connection, decides them, writes the batch's effects in one database transaction (group
//! commit), and only then lets the responses of durable work out (DESIGN.md sections 1 and 6).
//! Declines change nothing and leave at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::{Request, ResponseCode};
use sqlx::SqlitePool;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::{error, info, warn};

use crate::clock::Clock;
use crate::engine::{CardRef, Decision, Effect, Engine};
use crate::metrics as m;
use crate::snapshot::Snapshot;
use crate::store::ledger;

/// Most requests decided per group commit: bounds a batch's transaction and its latency.
pub const BATCH_MAX_DEFAULT: usize = 512;
/// Most pending holds the sweeper releases per tick, so one tick never stalls the batch loop.
pub const SWEEP_MAX: usize = 4096;

/// One verified request on its way to the engine.
pub struct Job {
    /// The request (format, MAC and envelope already checked).
    pub request: Request,
    /// The snapshot it started with (in-flight work keeps it across a swap).
    pub snapshot: Arc<Snapshot>,
    /// The card from its envelope, tokenised.
    pub card: Option<CardRef>,
    /// Where the response goes: the connection's writer.
    pub reply: mpsc::Sender<Bytes>,
    /// The connection's in-flight slot, freed when the response is queued.
    pub permit: OwnedSemaphorePermit,
    /// When the frame was read, for the latency histogram.
    pub received: Instant,
}

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

/// Runs the committer until every job sender is dropped (shutdown), then returns after the
/// last batch is durable.
pub async fn run(
    mut engine: Engine,
    pool: SqlitePool,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<Job>,
    config: CommitterConfig,
) {
    let mut sweep = tokio::time::interval(config.sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Job> = Vec::with_capacity(config.batch_max);
    let mut effects: Vec<Effect> = Vec::with_capacity(config.batch_max * 4);
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => batch.push(job),
                None => break,
            },
            _ = sweep.tick() => {
                let now = clock.now();
                engine.sweep(now, &mut effects, SWEEP_MAX);
                engine.prune(now);
            }
        }
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
        decide_and_commit(&mut engine, &pool, clock.as_ref(), &mut batch, &mut effects).await;
    }
    info!("committer drained");
}

async fn decide_and_commit(
    engine: &mut Engine,
    pool: &SqlitePool,
    clock: &dyn Clock,
    batch: &mut Vec<Job>,
    effects: &mut Vec<Effect>,
) {
    let now = clock.now();
    let mut deferred: Vec<(Job, Decision)> = Vec::new();
    for job in batch.drain(..) {
        let Some(terminal) = job.snapshot.terminal_by_ksi(job.request.ksi.as_bytes()) else {
            continue;
        };
        let decision = engine.decide(
            &job.snapshot,
            terminal,
            &job.request,
            job.card.as_ref(),
            now,
            effects,
        );
        if decision.durable || decision.resent {
            deferred.push((job, decision));
        } else {
            send(job, decision);
        }
    }
    if effects.is_empty() {
        for (job, decision) in deferred {
            send(job, decision);
        }
        return;
    }
    metrics::histogram!(m::COMMIT_BATCH_SIZE).record(count(effects.len()));
    match ledger::apply(pool, effects).await {
        Ok(()) => {
            for (job, decision) in deferred {
                send(job, decision);
            }
        }
        Err(cause) => {
            error!(%cause, effects = effects.len(), "group commit failed; answering 96 and reloading");
            metrics::counter!(m::COMMIT_FAILURES_TOTAL).increment(1);
            for (job, _) in deferred {
                let Some(terminal) = job.snapshot.terminal_by_ksi(job.request.ksi.as_bytes())
                else {
                    continue;
                };
                let decision = engine.system_error(terminal, &job.request);
                send(job, decision);
            }
            reload(engine, pool, clock).await;
        }
    }
    effects.clear();
    metrics::gauge!(m::HOLDS_OPEN).set(count(engine.state.pending.len()));
}

/// After a failed commit the engine's memory is ahead of the database: rebuild it from the
/// store, retrying until the database answers (requests meanwhile wait in the bounded queue).
async fn reload(engine: &mut Engine, pool: &SqlitePool, clock: &dyn Clock) {
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

fn send(job: Job, decision: Decision) {
    let code: ResponseCode = decision.code;
    metrics::counter!(m::MESSAGES_TOTAL, "mti" => job.request.mti.as_str(), "response_code" => code.as_str())
        .increment(1);
    metrics::histogram!(m::MESSAGE_DURATION_SECONDS).record(job.received.elapsed().as_secs_f64());
    // A full or closed writer means the connection is gone or over its limit: the response
    // is dropped, never waited for (one slow peer must not stall the others).
    if job.reply.try_send(decision.response).is_err() {
        warn!(stan = %job.request.stan, "response dropped: connection gone");
    }
    drop(job.permit);
}

fn count(n: usize) -> f64 {
    f64::from(u32::try_from(n).unwrap_or(u32::MAX))
}
