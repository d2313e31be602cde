//! The loyalty job (docs/loyalty.md): every `loyalty_every_ms` it issues the day's birthday and
//! anniversary coupons (through the engine, like the operator API's coupons) and writes the
//! notices of store credit and coupons about to expire into the outbox. Everything it does is
//! keyed by the member and the year, or by the lot or coupon, so running it again, on another
//! process, or after a restart issues and notifies nothing twice.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::committer::{CreditJob, Operation};
use crate::domain::time::{DAY_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::{
    CardId, CivilDate, CouponKind, CouponTemplate, LocalDateTime, Locale, MemberId, Rials,
    UnixMillis,
};
use crate::engine::coupon::CouponIssue;
use crate::engine::credit::CreditOutcome;
use crate::notify::templates::Message;
use crate::store::Pool;

/// What the job does.
#[derive(Debug, Clone, Copy)]
pub struct LoyaltyJob {
    /// How often it runs.
    pub every: Duration,
    /// Birthday coupons, if any.
    pub birthday: Option<CouponTemplate>,
    /// Anniversary coupons, if any.
    pub anniversary: Option<CouponTemplate>,
    /// Days ahead the expiry notices look; 0: none.
    pub expiry_notice_days: u32,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// Coupons issued now.
    pub issued: u64,
    /// Coupons already issued by an earlier run.
    pub repeated: u64,
    /// Expiry notices written now.
    pub notices: u64,
}

/// Runs the job until shutdown.
pub async fn run(
    pool: Pool,
    clock: Arc<dyn Clock>,
    credits: mpsc::Sender<CreditJob>,
    job: LoyaltyJob,
    mut shutdown: watch::Receiver<bool>,
) {
    info!("loyalty job started");
    loop {
        if *shutdown.borrow() {
            break;
        }
        match run_once(&pool, clock.now(), &credits, &job).await {
            Ok(ran) if ran != Ran::default() => info!(
                issued = ran.issued,
                repeated = ran.repeated,
                notices = ran.notices,
                "loyalty job ran"
            ),
            Ok(_) => {}
            Err(cause) => warn!(%cause, "loyalty job failed; will retry on its next run"),
        }
        tokio::select! {
            _ = tokio::time::sleep(job.every) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// One run at `now`.
///
/// # Errors
/// A message when the database or the committer fails; what was done stays done.
pub async fn run_once(
    pool: &Pool,
    now: UnixMillis,
    credits: &mpsc::Sender<CreditJob>,
    job: &LoyaltyJob,
) -> Result<Ran, String> {
    let mut ran = Ran::default();
    let today = LocalDateTime::at(now, TEHRAN_UTC_OFFSET_MINUTES).date;
    for (column, kind, template) in [
        ("birth_date", CouponKind::Birthday, job.birthday),
        ("joined_on", CouponKind::Anniversary, job.anniversary),
    ] {
        let Some(template) = template else {
            continue;
        };
        let members = occasion_members(pool, column, today).await?;
        let mut waiting = Vec::with_capacity(members.len());
        for (member, card) in members {
            let issue = CouponIssue {
                key: format!("{}:{}:{}", kind.as_str(), member.get(), today.year()),
                member,
                kind,
                terms: template.terms_at(now),
                card,
                operator: "loyalty-job".to_owned(),
            };
            let (reply, outcome) = oneshot::channel();
            let operation = Operation::Coupon(issue);
            credits
                .send(CreditJob { operation, reply })
                .await
                .map_err(|_| "the committer is not running".to_owned())?;
            waiting.push(outcome);
        }
        for outcome in waiting {
            match outcome.await {
                Ok(Ok(CreditOutcome::Applied)) => ran.issued += 1,
                Ok(Ok(CreditOutcome::Repeated)) => ran.repeated += 1,
                Ok(Err(failure)) => warn!(%failure, "an occasion coupon was not issued"),
                Err(_) => return Err("the committer dropped a coupon".to_owned()),
            }
        }
    }
    if job.expiry_notice_days > 0 {
        ran.notices = expiry_notices(pool, now, job.expiry_notice_days).await?;
    }
    Ok(ran)
}

/// Members whose date in `column` falls on `today`'s month and day (29 February falls on
/// 28 February in other years), before this year, with the card their message goes by.
async fn occasion_members(
    pool: &Pool,
    column: &str,
    today: CivilDate,
) -> Result<Vec<(MemberId, Option<CardId>)>, String> {
    // `column` is one of two names written above, never input.
    let rows = sqlx::query(&format!(
        "SELECT m.id, m.{column} AS occasion, (SELECT MIN(c.id) FROM cards c WHERE \
         c.member_id = m.id AND c.status = 'active') AS card_id FROM members m \
         WHERE m.{column} IS NOT NULL ORDER BY m.id"
    ))
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let leap = CivilDate::new(today.year(), 2, 29).is_ok();
    let mut out = Vec::new();
    for row in rows {
        let text: String = row.try_get("occasion").map_err(|e| e.to_string())?;
        let Ok(date) = CivilDate::parse(&text) else {
            continue;
        };
        let (month, day) = match (date.month(), date.day()) {
            (2, 29) if !leap => (2, 28),
            other => other,
        };
        if (month, day) == (today.month(), today.day()) && date.year() < today.year() {
            let id: i64 = row.try_get("id").map_err(|e| e.to_string())?;
            let card: Option<i64> = row.try_get("card_id").map_err(|e| e.to_string())?;
            out.push((MemberId::new(id), card.map(CardId::new)));
        }
    }
    Ok(out)
}

/// Writes one notice per store-credit lot with credit left and per available coupon that
/// expires within `days`, for members with a phone; a key already in the outbox is skipped.
async fn expiry_notices(pool: &Pool, now: UnixMillis, days: u32) -> Result<u64, String> {
    let until = now.get() + i64::from(days) * DAY_MS;
    let lots = sqlx::query(
        "SELECT l.id, l.card_id, l.remaining_rials, l.expires_at_ms, m.id AS member_id, \
         m.locale, m.phone FROM store_credit_lots l JOIN cards c ON c.id = l.card_id \
         JOIN members m ON m.id = c.member_id WHERE l.remaining_rials > 0 \
         AND l.expires_at_ms > $1 AND l.expires_at_ms <= $2 AND m.phone IS NOT NULL",
    )
    .bind(now.get())
    .bind(until)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let coupons = sqlx::query(
        "SELECT k.id, k.expires_at_ms, m.id AS member_id, m.locale, m.phone FROM coupons k \
         JOIN members m ON m.id = k.member_id WHERE k.state = 'available' \
         AND k.expires_at_ms > $1 AND k.expires_at_ms <= $2 AND m.phone IS NOT NULL",
    )
    .bind(now.get())
    .bind(until)
    .fetch_all(pool)
    .await
    .map_err(|e| e.to_string())?;
    let mut written = 0;
    for (prefix, rows) in [("lot-expiry", lots), ("coupon-expiry", coupons)] {
        for row in rows {
            let get = |name: &str| row.try_get::<i64, _>(name).map_err(|e| e.to_string());
            let id = get("id")?;
            let expires_at = UnixMillis::new(get("expires_at_ms")?);
            let message = if prefix == "lot-expiry" {
                let remaining = get("remaining_rials")?;
                // A lot's remainder past the largest amount is a corrupt row: no notice tells
                // a member a made-up figure.
                let amount = Rials::new(remaining).ok_or_else(|| {
                    format!(
                        "store_credit_lots row {id}: remaining_rials {remaining} is not an amount"
                    )
                })?;
                Message::StoreCreditExpiring { amount, expires_at }
            } else {
                Message::CouponExpiring { expires_at }
            };
            let locale: String = row.try_get("locale").map_err(|e| e.to_string())?;
            let locale = Locale::parse(&locale).unwrap_or(Locale::Fa);
            let phone: String = row.try_get("phone").map_err(|e| e.to_string())?;
            let key = format!("{prefix}:{id}");
            let done = sqlx::query(
                "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, \
                 body, created_at_ms, attempts, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, 0, $7) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(key)
            .bind(get("member_id")?)
            .bind(message.kind())
            .bind(locale.as_str())
            .bind(phone)
            .bind(message.render(locale))
            .bind(now.get())
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
            written += done.rows_affected();
        }
    }
    Ok(written)
}
