//! The committer when several switch processes share one PostgreSQL database
//! (`store::shared` explains how they stay in step).
//!
//! Unlike the SQLite loop, a batch is decided inside its own database transaction, after the
//! batch lock is taken and the other processes' changes are read: deciding and writing do not
//! overlap here, because the state a batch is decided on must include every batch committed
//! before it, by any process.
//!
//! Failures:
//! - before anything is decided (the database is gone, the lock or the refresh failed): the
//!   batch is retried a few times, then its requests are answered `96` undecided, so nothing
//!   changed and the engine's memory is still right;
//! - after deciding (a write or the commit failed): `96` to every request that waited for the
//!   batch, and the engine's state is reloaded from the database before the next batch.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

use super::{
    answer_96, answer_credits, answer_system_error, count, decide, decide_credits, fill_batch,
    fill_credits, learn_settlement, send, CommitterConfig, CreditJob, Job, SWEEP_MAX,
};
use crate::clock::Clock;
use crate::engine::{Effect, Engine};
use crate::metrics as m;
use crate::store::batch::Plan;
use crate::store::ledger::{self, LedgerError};
use crate::store::{shared, Pool};

/// Attempts at a batch's opening (begin, lock, refresh) before its requests are answered `96`.
pub const OPEN_ATTEMPTS: u32 = 3;
/// The wait after the first failed attempt; doubled after each.
pub const RETRY_WAIT: Duration = Duration::from_millis(50);

/// Runs the committer for a shared database until every job sender is dropped.
pub async fn run(
    mut engine: Engine,
    pool: Pool,
    clock: Arc<dyn Clock>,
    mut jobs: mpsc::Receiver<Job>,
    mut credit_jobs: mpsc::Receiver<CreditJob>,
    config: CommitterConfig,
) {
    let mut sweep = tokio::time::interval(config.sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<Job> = Vec::with_capacity(config.batch_max);
    let mut credit_batch: Vec<CreditJob> = Vec::new();
    let mut sweep_due = false;
    let mut stale = false;
    info!("committer on a shared database: batches take turns with other processes");
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => batch.push(job),
                None => break,
            },
            Some(job) = credit_jobs.recv() => credit_batch.push(job),
            _ = sweep.tick() => {
                sweep_due = true;
                engine.prune(clock.now());
                learn_settlement(&mut engine, &pool).await;
            }
        }
        fill_batch(&mut jobs, &mut batch, &config).await;
        fill_credits(&mut credit_jobs, &mut credit_batch, batch.len());
        if stale {
            match reload(&mut engine, &pool, clock.as_ref()).await {
                Ok(()) => stale = false,
                Err(cause) => {
                    warn!(%cause, "state reload failed; answering 96 until the database is back");
                    refuse(&mut batch, &mut credit_batch);
                    continue;
                }
            }
        }
        if batch.is_empty() && credit_batch.is_empty() && !sweep_due {
            continue;
        }
        let sweeping = std::mem::take(&mut sweep_due);
        match one_batch(
            &mut engine,
            &pool,
            clock.as_ref(),
            &mut batch,
            &mut credit_batch,
            sweeping,
        )
        .await
        {
            Ok(()) => {}
            Err(Failed::Undecided(cause)) => {
                error!(%cause, "database unavailable; batch answered 96, nothing changed");
                metrics::counter!(m::COMMIT_FAILURES_TOTAL).increment(1);
                refuse(&mut batch, &mut credit_batch);
                // The sweep waits for the next tick.
            }
            Err(Failed::Decided(cause)) => {
                error!(%cause, "group commit failed; answering 96 and reloading");
                metrics::counter!(m::COMMIT_FAILURES_TOTAL).increment(1);
                stale = true;
            }
        }
        metrics::gauge!(m::HOLDS_OPEN).set(count(engine.state.pending.len()));
    }
    info!("committer drained");
}

enum Failed {
    /// Nothing was decided: the engine is unchanged.
    Undecided(LedgerError),
    /// The engine decided and the write failed: its memory is ahead of the database.
    Decided(LedgerError),
}

/// Opens the batch (with retries), decides it on the refreshed state, writes and commits it,
/// then answers it.
async fn one_batch(
    engine: &mut Engine,
    pool: &Pool,
    clock: &dyn Clock,
    batch: &mut Vec<Job>,
    credit_batch: &mut Vec<CreditJob>,
    sweeping: bool,
) -> Result<(), Failed> {
    let mut wait = RETRY_WAIT;
    let mut attempt = 1;
    let (mut tx, seq) = loop {
        match open(engine, pool).await {
            Ok(opened) => break opened,
            Err(cause) if attempt < OPEN_ATTEMPTS => {
                warn!(%cause, attempt, "cannot open the batch; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            Err(cause) => return Err(Failed::Undecided(cause)),
        }
    };
    let now = clock.now();
    let mut effects: Vec<Effect> = Vec::with_capacity(batch.len() * 2);
    if sweeping {
        super::log_faults(&engine.sweep(now, &mut effects, SWEEP_MAX));
    }
    let deferred = decide(engine, clock, batch, &mut effects);
    let credits = decide_credits(engine, clock, credit_batch, &mut effects);
    let written = async {
        if !effects.is_empty() {
            metrics::histogram!(m::COMMIT_BATCH_SIZE).record(count(effects.len()));
            Plan::fold(&effects).write(&mut tx).await?;
        }
        tx.commit().await?;
        Ok::<(), LedgerError>(())
    }
    .await;
    match written {
        Ok(()) => {
            engine.state.batch_seq = seq;
            deferred
                .into_iter()
                .for_each(|(job, decision)| send(job, decision));
            answer_credits(credits, true);
            Ok(())
        }
        Err(cause) => {
            answer_system_error(deferred);
            answer_credits(credits, false);
            Err(Failed::Decided(cause))
        }
    }
}

/// Begins the batch's transaction, takes the lock and reads what other processes wrote since
/// this one's last batch.
async fn open(
    engine: &mut Engine,
    pool: &Pool,
) -> Result<(sqlx::Transaction<'static, crate::store::Db>, i64), LedgerError> {
    let mut tx = pool.begin().await?;
    let seq = shared::begin_batch(&mut tx).await?;
    let seen = engine.state.batch_seq;
    if seq > seen + 1 {
        // A failed refresh leaves rows half-read: the caller retries from the same `seen`
        // (the rows it read again are simply read again).
        let refreshed = shared::refresh(&mut tx, &mut engine.state, seen, seq).await?;
        debug!(
            from = seen,
            to = seq,
            rows = refreshed.rows,
            transactions = refreshed.transactions,
            "read other processes' batches"
        );
    }
    Ok((tx, seq))
}

/// Rebuilds the engine's state from the database.
async fn reload(engine: &mut Engine, pool: &Pool, clock: &dyn Clock) -> Result<(), LedgerError> {
    let state = ledger::load(pool, clock.now()).await?;
    engine.state = state;
    info!("engine state reloaded from the store");
    Ok(())
}

/// Answers `96` to requests and credits that were not decided.
fn refuse(batch: &mut Vec<Job>, credit_batch: &mut Vec<CreditJob>) {
    for job in batch.drain(..) {
        answer_96(job);
    }
    for job in credit_batch.drain(..) {
        let _ = job.reply.send(Err(super::CreditFailure::System));
    }
}
