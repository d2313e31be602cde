//! Member engagement between purchases (docs/campaigns.md), all of it off the switch's hot
//! path:
//!
//! - [`segment`]: a segment's boolean expression over tags, tier and RFM scores (pure);
//! - [`audience`]: members with their facts, a segment's members, and tag rules;
//! - [`campaign`]: an occasion campaign's definition, preview and run-once;
//! - this module: the engagement job, which every `engagement_every_ms` applies the tags'
//!   rules, runs the campaigns whose window has come and sends the repurchase reminders due.
//!
//! Everything it writes is keyed (a campaign's members, a reminder's merchant, member and
//! period, the outbox's idempotency keys, the engine's coupon keys), so a second run, another
//! process or a restart mid-run reaches nobody twice.

pub mod audience;
pub mod campaign;
pub mod rfm;
pub mod segment;

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::committer::CreditJob;
use crate::domain::time::{DAY_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::{LocalDateTime, Locale, UnixMillis};
use crate::notify::templates::Message;
use crate::store::Pool;

/// The operator name of what the job writes.
pub const JOB_OPERATOR: &str = "engagement-job";

/// What one run of the job did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// Tags given by rules.
    pub tagged: u64,
    /// Rule tags taken away.
    pub untagged: u64,
    /// Members campaigns reached now.
    pub reached: u64,
    /// Reminders written to the outbox.
    pub reminders: u64,
}

/// Runs the job every `every` until shutdown.
pub async fn run(
    pool: Pool,
    clock: Arc<dyn Clock>,
    credits: mpsc::Sender<CreditJob>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    info!("engagement job started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        match run_once(&pool, clock.now(), &credits).await {
            Ok(ran) if ran != Ran::default() => info!(
                tagged = ran.tagged,
                untagged = ran.untagged,
                reached = ran.reached,
                reminders = ran.reminders,
                "engagement job ran"
            ),
            Ok(_) => {}
            Err(cause) => warn!(%cause, "engagement job failed; will retry on its next run"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One run at `now`: rule tags, due campaigns, reminders.
///
/// # Errors
/// A message when the database or the committer fails; what was done stays done.
pub async fn run_once(
    pool: &Pool,
    now: UnixMillis,
    credits: &mpsc::Sender<CreditJob>,
) -> Result<Ran, String> {
    let mut ran = Ran::default();
    let tags = sqlx::query("SELECT id, code, rule FROM tags WHERE rule IS NOT NULL ORDER BY id")
        .fetch_all(pool)
        .await
        .map_err(|e| e.to_string())?;
    for row in tags {
        let id: i64 = row.try_get("id").map_err(|e| e.to_string())?;
        let text: String = row.try_get("rule").map_err(|e| e.to_string())?;
        let rule = serde_json::from_str(&text)
            .ok()
            .and_then(|value| audience::TagRule::parse(&value).ok());
        let Some(rule) = rule else {
            let code: String = row.try_get("code").map_err(|e| e.to_string())?;
            warn!(tag = %code, "a tag's stored rule does not parse; skipped");
            continue;
        };
        let (added, removed) = audience::apply_rule(pool, id, &rule, now, JOB_OPERATOR)
            .await
            .map_err(|e| e.to_string())?;
        ran.tagged += added;
        ran.untagged += removed;
    }
    let today = LocalDateTime::at(now, TEHRAN_UTC_OFFSET_MINUTES).date;
    let due: Vec<String> = sqlx::query_scalar(
        "SELECT code FROM campaigns WHERE state <> 'done' AND starts_on <= $1 AND ends_on >= $1 \
         ORDER BY id",
    )
    .bind(today.to_string())
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    for code in due {
        match campaign::run(pool, credits, &code, now, JOB_OPERATOR).await {
            Ok(outcome) => ran.reached += outcome.reached,
            Err(error) => warn!(campaign = %code, %error, "campaign run failed; will retry"),
        }
    }
    ran.reminders = reminders(pool, now).await?;
    Ok(ran)
}

/// Writes the repurchase reminders due at `now`: for each active reminder of a merchant, each
/// member with a phone whose last confirmed purchase there is more than its `days` old gets
/// one message per period (periods are `period_days` Tehran days counted from 1970-01-01).
/// One read finds the candidates of every merchant; each reminder's row and its outbox row are
/// written together, in short transactions of [`REMINDERS_PER_TRANSACTION`].
///
/// # Errors
/// A message when the database fails; reminders written stay written.
pub async fn reminders(pool: &Pool, now: UnixMillis) -> Result<u64, String> {
    let today = LocalDateTime::at(now, TEHRAN_UTC_OFFSET_MINUTES)
        .date
        .days_since_epoch();
    let configs = reminder_configs(pool, today).await?;
    if configs.is_empty() {
        return Ok(0);
    }
    let due = due_reminders(pool, &configs, now).await?;
    write_reminders(pool, &due, now).await
}

/// An active repurchase reminder of a merchant, with the current period's number.
struct Reminder {
    days: i64,
    period: i64,
    fa: Option<String>,
    en: Option<String>,
}

/// A reminder due to one member.
struct DueReminder {
    merchant: i64,
    member: i64,
    period: i64,
    locale: Locale,
    text: String,
    phone: String,
}

/// The active reminders by merchant, with their periods as of `today` (Tehran days).
async fn reminder_configs(
    pool: &Pool,
    today: i64,
) -> Result<std::collections::HashMap<i64, Reminder>, String> {
    let err = |e: sqlx::Error| e.to_string();
    let mut configs = std::collections::HashMap::new();
    for row in sqlx::query(
        "SELECT merchant_id, days, period_days, text_fa, text_en FROM reminders WHERE active = 1",
    )
    .fetch_all(pool)
    .await
    .map_err(err)?
    {
        let period_days: i64 = row.try_get("period_days").map_err(err)?;
        configs.insert(
            row.try_get::<i64, _>("merchant_id").map_err(err)?,
            Reminder {
                days: row.try_get("days").map_err(err)?,
                period: today.div_euclid(period_days.max(1)),
                fa: row.try_get("text_fa").map_err(err)?,
                en: row.try_get("text_en").map_err(err)?,
            },
        );
    }
    Ok(configs)
}

/// The members due a reminder of `configs` at `now` and not yet sent this period's.
async fn due_reminders(
    pool: &Pool,
    configs: &std::collections::HashMap<i64, Reminder>,
    now: UnixMillis,
) -> Result<Vec<DueReminder>, String> {
    let err = |e: sqlx::Error| e.to_string();
    let candidates = sqlx::query(
        "SELECT p.merchant_id, m.id, m.phone, m.locale, p.last_ms FROM (SELECT t.merchant_id, \
         c.member_id, MAX(t.confirmed_at_ms) AS last_ms FROM transactions t JOIN cards c \
         ON c.id = t.card_id WHERE t.state = 'confirmed' AND t.merchant_id IN (SELECT \
         merchant_id FROM reminders WHERE active = 1) GROUP BY t.merchant_id, c.member_id) p \
         JOIN members m ON m.id = p.member_id WHERE m.phone IS NOT NULL \
         ORDER BY p.merchant_id, m.id",
    )
    .fetch_all(pool)
    .await
    .map_err(err)?;
    // Reminders of the current periods already sent (periods only grow, so older rows never
    // matter).
    let oldest = configs.values().map(|c| c.period).min().unwrap_or(0);
    let sent: std::collections::HashSet<(i64, i64, i64)> = sqlx::query_as::<_, (i64, i64, i64)>(
        "SELECT merchant_id, member_id, period FROM reminders_sent WHERE period >= $1",
    )
    .bind(oldest)
    .fetch_all(pool)
    .await
    .map_err(err)?
    .into_iter()
    .collect();
    let mut due = Vec::new();
    for row in candidates {
        let merchant: i64 = row.try_get("merchant_id").map_err(err)?;
        let Some(config) = configs.get(&merchant) else {
            continue;
        };
        let last: i64 = row.try_get("last_ms").map_err(err)?;
        if last >= now.get() - config.days * DAY_MS {
            continue;
        }
        let locale: String = row.try_get("locale").map_err(err)?;
        let locale = Locale::parse(&locale).unwrap_or(Locale::Fa);
        let Some((locale, text)) = in_language(locale, config.fa.as_deref(), config.en.as_deref())
        else {
            continue;
        };
        let member: i64 = row.try_get("id").map_err(err)?;
        if sent.contains(&(merchant, member, config.period)) {
            continue;
        }
        let phone: String = row.try_get("phone").map_err(err)?;
        due.push(DueReminder {
            merchant,
            member,
            period: config.period,
            locale,
            text: text.to_owned(),
            phone,
        });
    }
    Ok(due)
}

/// Writes each due reminder with its outbox row, in short transactions; how many were new.
async fn write_reminders(pool: &Pool, due: &[DueReminder], now: UnixMillis) -> Result<u64, String> {
    let err = |e: sqlx::Error| e.to_string();
    let mut written = 0;
    for chunk in due.chunks(REMINDERS_PER_TRANSACTION) {
        let mut tx = crate::store::begin_write(pool).await.map_err(err)?;
        for reminder in chunk {
            let DueReminder {
                merchant,
                member,
                period,
                locale,
                text,
                phone,
            } = reminder;
            let message = Message::Reminder { text };
            let key = format!("reminder:{merchant}:{member}:{period}");
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, body, \
                 created_at_ms, attempts, next_attempt_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $7) \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            )
            .bind(&key)
            .bind(member)
            .bind(message.kind())
            .bind(locale.as_str())
            .bind(phone)
            .bind(message.render(*locale))
            .bind(now.get())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err)?;
            let Some(id) = id else {
                continue;
            };
            sqlx::query(
                "INSERT INTO reminders_sent (merchant_id, member_id, period, notification_id, \
                 at_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(merchant)
            .bind(member)
            .bind(period)
            .bind(id)
            .bind(now.get())
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            written += 1;
        }
        commit_and_rest(tx).await.map_err(err)?;
    }
    Ok(written)
}

/// Commits one of the engagement's write chunks, then leaves the database to the switch for
/// as long as the chunk took since [`crate::store::begin_write`]: however many chunks a run
/// writes, it holds the write turn ([`crate::store::write_turn`]) at most about half the time,
/// and the group commit never waits for more than one chunk.
///
/// # Errors
/// The commit's error; nothing of the chunk is kept, and no rest is taken.
pub async fn commit_and_rest(tx: crate::store::WriteTx) -> Result<(), sqlx::Error> {
    let began = tx.began();
    tx.commit().await?;
    tokio::time::sleep(began.elapsed()).await;
    Ok(())
}

/// Reminders written per transaction.
pub const REMINDERS_PER_TRANSACTION: usize = 200;

/// The text in the member's language, else in the other one, with the language used.
pub fn in_language<'t>(
    locale: Locale,
    fa: Option<&'t str>,
    en: Option<&'t str>,
) -> Option<(Locale, &'t str)> {
    let (first, second) = match locale {
        Locale::Fa => ((Locale::Fa, fa), (Locale::En, en)),
        Locale::En => ((Locale::En, en), (Locale::Fa, fa)),
    };
    [first, second]
        .into_iter()
        .find_map(|(locale, text)| text.map(|text| (locale, text)))
}
