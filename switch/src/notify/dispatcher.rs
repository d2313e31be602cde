//! The dispatcher: a task beside the committer that sends the outbox's due rows to the SMS
//! gateway. It never touches the hot path: it has its own pooled connection for each
//! statement, and a slow or failing gateway only delays messages.
//!
//! Each round claims a few due rows with a lease (their next attempt is moved past the
//! lease in the claiming `UPDATE … RETURNING`), sends them one after the other, and marks each
//! delivered or schedules its retry with exponential backoff. Two dispatchers on one
//! PostgreSQL database never claim the same row at once: the second's `UPDATE` finds the row
//! no longer due. Delivery is at least once: a row sent but not marked (a crash, a lost
//! answer) is sent again once its lease ends, with the same idempotency key.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row as _;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::clock::Clock;
use crate::metrics as m;
use crate::notify::gateway::{Gateway, SendError};
use crate::store::Pool;

/// The dispatcher's settings (`docs/config.md`, `sms_*`).
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// The gateway client.
    pub gateway: Gateway,
    /// How often to look for due rows when the last round found fewer than a batch.
    pub poll_every: Duration,
    /// Most rows claimed per round.
    pub batch_max: usize,
    /// The request timeout: with `batch_max`, it bounds a round and so the lease.
    pub request_timeout: Duration,
    /// The first retry's delay, doubled for each further attempt.
    pub backoff_ms_min: i64,
    /// The longest delay between two attempts.
    pub backoff_ms_max: i64,
}

impl DispatcherConfig {
    /// How long a claimed row stays out of other rounds: longer than a round can take (every
    /// request of the batch timing out), so a row is not sent twice at once.
    pub fn lease_ms(&self) -> i64 {
        let requests = u32::try_from(self.batch_max)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let lease = self.request_timeout.saturating_mul(requests);
        i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failed ones (at least one):
    /// `backoff_ms_min × 2^(attempts − 1)`, at most `backoff_ms_max`.
    pub fn backoff_ms(&self, attempts: i64) -> i64 {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 62)).unwrap_or(62);
        self.backoff_ms_min
            .saturating_mul(2_i64.saturating_pow(doublings))
            .min(self.backoff_ms_max)
            .max(0)
    }
}

/// One claimed row.
struct Due {
    id: i64,
    key: String,
    phone: String,
    body: String,
    attempts: i64,
}

/// Runs until `shutdown` turns true. A round in progress finishes its current request; rows
/// claimed but not sent are sent again once their lease ends.
pub async fn run(
    pool: Pool,
    clock: Arc<dyn Clock>,
    config: DispatcherConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    info!("sms dispatcher started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        let claimed = match claim(&pool, clock.as_ref(), &config).await {
            Ok(claimed) => claimed,
            Err(cause) => {
                warn!(%cause, "cannot read the notification outbox; will retry");
                Vec::new()
            }
        };
        let full = claimed.len() >= config.batch_max;
        for due in claimed {
            if *shutdown.borrow() {
                break;
            }
            deliver(&pool, clock.as_ref(), &config, due).await;
        }
        if full {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(config.poll_every) => {}
            _ = shutdown.changed() => {}
        }
    }
    info!("sms dispatcher stopped");
}

/// Claims up to a batch of due rows, leasing them.
async fn claim(
    pool: &Pool,
    clock: &dyn Clock,
    config: &DispatcherConfig,
) -> Result<Vec<Due>, sqlx::Error> {
    let now = clock.now().get();
    let rows = sqlx::query(
        "UPDATE notifications SET next_attempt_at_ms = $1 \
         WHERE id IN (SELECT id FROM notifications \
             WHERE delivered_at_ms IS NULL AND next_attempt_at_ms <= $2 \
             ORDER BY next_attempt_at_ms, id LIMIT $3) \
         AND delivered_at_ms IS NULL AND next_attempt_at_ms <= $2 \
         RETURNING id, idempotency_key, phone, body, attempts",
    )
    .bind(now.saturating_add(config.lease_ms()))
    .bind(now)
    .bind(i64::try_from(config.batch_max).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Due {
                id: row.try_get("id")?,
                key: row.try_get("idempotency_key")?,
                phone: row.try_get("phone")?,
                body: row.try_get("body")?,
                attempts: row.try_get("attempts")?,
            })
        })
        .collect()
}

/// Sends one row and records the outcome.
async fn deliver(pool: &Pool, clock: &dyn Clock, config: &DispatcherConfig, due: Due) {
    if due.attempts > 0 {
        metrics::counter!(m::NOTIFICATIONS_RETRIED_TOTAL).increment(1);
    }
    let outcome = config.gateway.send(&due.phone, &due.body, &due.key).await;
    let now = clock.now().get();
    let attempts = due.attempts.saturating_add(1);
    let recorded = match &outcome {
        Ok(()) => {
            metrics::counter!(m::NOTIFICATIONS_SENT_TOTAL).increment(1);
            debug!(id = due.id, attempts, "notification delivered");
            sqlx::query(
                "UPDATE notifications SET delivered_at_ms = $1, attempts = $2, last_error = NULL \
                 WHERE id = $3",
            )
            .bind(now)
            .bind(attempts)
            .bind(due.id)
            .execute(pool)
            .await
        }
        Err(cause) => {
            metrics::counter!(m::NOTIFICATIONS_FAILED_TOTAL).increment(1);
            let retry_at = now.saturating_add(config.backoff_ms(attempts));
            debug!(id = due.id, attempts, %cause, "notification not delivered; will retry");
            sqlx::query(
                "UPDATE notifications SET attempts = $1, next_attempt_at_ms = $2, last_error = $3 \
                 WHERE id = $4 AND delivered_at_ms IS NULL",
            )
            .bind(attempts)
            .bind(retry_at)
            .bind(last_error(cause))
            .bind(due.id)
            .execute(pool)
            .await
        }
    };
    if let Err(cause) = recorded {
        // The row keeps its lease and is sent again when it ends: at least once.
        warn!(%cause, id = due.id, "cannot record a notification's outcome; it will be resent");
    }
}

fn last_error(cause: &SendError) -> String {
    cause.to_string()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::notify::gateway::GatewayUrl;

    fn config() -> DispatcherConfig {
        DispatcherConfig {
            gateway: Gateway::new(
                GatewayUrl::parse("http://127.0.0.1:9/").unwrap(),
                None,
                Duration::from_secs(5),
            ),
            poll_every: Duration::from_secs(1),
            batch_max: 16,
            request_timeout: Duration::from_secs(5),
            backoff_ms_min: 1_000,
            backoff_ms_max: 600_000,
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let config = config();
        let delays: Vec<i64> = [1, 2, 3, 4, 10, 11, 1_000, i64::MAX]
            .iter()
            .map(|attempts| config.backoff_ms(*attempts))
            .collect();
        assert_eq!(
            delays,
            [1_000, 2_000, 4_000, 8_000, 512_000, 600_000, 600_000, 600_000]
        );
    }

    #[test]
    fn a_lease_outlasts_a_round() {
        assert_eq!(config().lease_ms(), 85_000);
    }
}
