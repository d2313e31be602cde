//! The survey scheduler (docs/surveys.md, "Scheduling"): every `survey_every_ms` it reads the
//! recent captures of merchants with an active survey whose delay has passed, and for each
//! one not yet considered writes one `survey_requests` row and, under the member's cap, one
//! `survey` outbox row due now, in one database transaction.
//!
//! It runs beside the committer, not in the group commit, so a survey costs the switch's hot
//! path nothing. Nothing is lost on a crash: its input is the durable `captures` table, and a
//! pass that did not commit is simply done again. A transaction is considered once (its
//! request row's `txn_id` is unique, and the outbox key `survey:{txn}` too). The pass locks
//! the one `survey_scheduler` row first, so passes of two processes on one database run one
//! after the other and the cap, checked purchase by purchase in confirm order inside the
//! pass, holds even for two confirms of one member in one batch.

use std::sync::Arc;

use sqlx::Row;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::domain::survey::Scale;
use crate::domain::time::DAY_MS;
use crate::domain::{Locale, UnixMillis};
use crate::notify::templates::Message;
use crate::store::{DbRow, Pool};
use crate::survey::SurveySettings;

/// Purchases one pass considers: bounds the pass's transaction; a fuller backlog is worked
/// off by the next passes, [`PASSES_MAX`] at a time.
pub const SCHEDULE_ROWS_MAX: i64 = 500;
/// Passes one round runs back to back while each is full.
pub const PASSES_MAX: usize = 16;

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Surveys queued in the outbox.
    pub sent: u64,
    /// Purchases whose member had reached the cap: recorded, no message.
    pub capped: u64,
}

/// Runs the scheduler until shutdown.
pub async fn run(
    pool: Pool,
    clock: Arc<dyn Clock>,
    settings: SurveySettings,
    mut shutdown: watch::Receiver<bool>,
) {
    info!("survey scheduler started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        for _ in 0..PASSES_MAX {
            match run_once(&pool, clock.now(), &settings).await {
                Ok(done) => {
                    if done != Scheduled::default() {
                        info!(sent = done.sent, capped = done.capped, "surveys scheduled");
                    }
                    if done.sent + done.capped < SCHEDULE_ROWS_MAX.unsigned_abs() {
                        break;
                    }
                }
                Err(cause) => {
                    warn!(%cause, "survey scheduler failed; will retry on its next run");
                    break;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One pass at `now`.
///
/// # Errors
/// A message when the database fails; the pass is rolled back whole.
pub async fn run_once(
    pool: &Pool,
    now: UnixMillis,
    settings: &SurveySettings,
) -> Result<Scheduled, String> {
    let now = now.get();
    // Without an active survey a pass writes nothing: a write transaction every few seconds
    // would only contend with the switch's own writers (on SQLite, one writer at a time).
    let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM surveys WHERE active = 1")
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    if active == 0 {
        return Ok(Scheduled::default());
    }
    let mut tx = crate::store::begin_write(pool)
        .await
        .map_err(|e| e.to_string())?;
    // The lock of the pass (see the module's doc), and where the recent captures start.
    let floor: i64 = sqlx::query_scalar(
        "UPDATE survey_scheduler SET ran_at_ms = $1 WHERE id = 1 RETURNING txn_id_floor",
    )
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let rows = sqlx::query(
        "SELECT t.id AS txn_id, t.merchant_id, m.id AS member_id, m.locale, m.phone, \
         s.question_fa, s.question_en, s.comment_prompt_fa, s.comment_prompt_en, s.scale_min, \
         s.scale_max, s.surveys_max, s.period_days FROM captures cp \
         JOIN transactions t ON t.id = cp.txn_id JOIN surveys s ON s.merchant_id = t.merchant_id \
         JOIN cards c ON c.id = t.card_id JOIN members m ON m.id = c.member_id \
         WHERE cp.txn_id > $1 AND s.active = 1 AND t.state = 'confirmed' \
         AND cp.returned_at_ms IS NULL AND m.phone IS NOT NULL AND cp.at_ms >= s.active_from_ms \
         AND cp.at_ms + s.delay_minutes * 60000 <= $2 AND cp.at_ms + s.delay_minutes * 60000 > $3 \
         AND NOT EXISTS (SELECT 1 FROM survey_requests r WHERE r.txn_id = t.id) \
         ORDER BY cp.at_ms, cp.txn_id LIMIT $4",
    )
    .bind(floor)
    .bind(now)
    .bind(now.saturating_sub(settings.catch_up_ms))
    .bind(SCHEDULE_ROWS_MAX)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let mut done = Scheduled::default();
    for row in &rows {
        if schedule(&mut tx, row, now).await? {
            done.sent += 1;
        } else {
            done.capped += 1;
        }
    }
    advance_floor(&mut tx, floor, now, settings).await?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(done)
}

/// One purchase: a request and its message, or a `capped` request. True when sent.
async fn schedule(tx: &mut sqlx::AnyConnection, row: &DbRow, now: i64) -> Result<bool, String> {
    let get = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
    let text = |name: &str| {
        row.try_get::<Option<String>, _>(name)
            .map_err(|e| e.to_string())
    };
    let (txn, merchant, member) = (get("txn_id")?, get("merchant_id")?, get("member_id")?);
    let scale = Scale::new(get("scale_min")?, get("scale_max")?).map_err(|e| e.to_string())?;
    let period_ms = get("period_days")?.saturating_mul(DAY_MS);
    let recent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM survey_requests WHERE member_id = $1 AND merchant_id = $2 \
         AND state <> 'capped' AND scheduled_at_ms > $3",
    )
    .bind(member)
    .bind(merchant)
    .bind(now.saturating_sub(period_ms))
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    let insert_request = "INSERT INTO survey_requests (txn_id, member_id, merchant_id, state, \
         scale_min, scale_max, notification_id, scheduled_at_ms) VALUES ($1, $2, $3, $4, $5, $6, \
         $7, $8)";
    if recent >= get("surveys_max")? {
        sqlx::query(insert_request)
            .bind(txn)
            .bind(member)
            .bind(merchant)
            .bind("capped")
            .bind(i64::from(scale.min()))
            .bind(i64::from(scale.max()))
            .bind(None::<i64>)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(false);
    }
    let locale: String = row.try_get("locale").map_err(|e| e.to_string())?;
    let locale = Locale::parse(&locale).unwrap_or(Locale::Fa);
    let (question_fa, question_en) = (text("question_fa")?, text("question_en")?);
    let (prompt_fa, prompt_en) = (text("comment_prompt_fa")?, text("comment_prompt_en")?);
    // The member's language when the survey has it, else the other one.
    let (question, prompt) = match locale {
        Locale::Fa => (question_fa.or(question_en), prompt_fa.or(prompt_en)),
        Locale::En => (question_en.or(question_fa), prompt_en.or(prompt_fa)),
    };
    let message = Message::Survey {
        question: question.as_deref().unwrap_or(""),
        scale_min: scale.min(),
        scale_max: scale.max(),
        prompt: prompt.as_deref(),
    };
    let phone: String = row.try_get("phone").map_err(|e| e.to_string())?;
    let notification: i64 = sqlx::query_scalar(
        "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, body, \
         created_at_ms, attempts, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7) \
         RETURNING id",
    )
    .bind(format!("survey:{txn}"))
    .bind(member)
    .bind(message.kind())
    .bind(locale.as_str())
    .bind(phone)
    .bind(message.render(locale))
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| e.to_string())?;
    sqlx::query(insert_request)
        .bind(txn)
        .bind(member)
        .bind(merchant)
        .bind("sent")
        .bind(i64::from(scale.min()))
        .bind(i64::from(scale.max()))
        .bind(Some(notification))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// Moves the floor up to the newest capture too old for any survey to be due: older than the
/// catch-up, the longest active delay and the confirm timeout together. Transaction ids grow
/// with time, so what lies below the floor will not be read again.
async fn advance_floor(
    tx: &mut sqlx::AnyConnection,
    floor: i64,
    now: i64,
    settings: &SurveySettings,
) -> Result<(), String> {
    let delay_minutes: Option<i64> =
        sqlx::query_scalar("SELECT MAX(delay_minutes) FROM surveys WHERE active = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    let horizon = settings
        .catch_up_ms
        .saturating_add(delay_minutes.unwrap_or(0).saturating_mul(60_000))
        .saturating_add(settings.hold_timeout_ms);
    let newest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(txn_id) FROM captures WHERE txn_id > $1 AND at_ms < $2")
            .bind(floor)
            .bind(now.saturating_sub(horizon))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    if let Some(newest) = newest.filter(|newest| *newest > floor) {
        sqlx::query("UPDATE survey_scheduler SET txn_id_floor = $1 WHERE id = 1")
            .bind(newest)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
