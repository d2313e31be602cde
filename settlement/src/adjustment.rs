//! Manual adjustments: money the finance team moves to or from a merchant outside any
//! transaction (a goodwill credit, a recovered receivable). Each lands in the next cycle that
//! closes after it is recorded.

use switch::domain::UnixMillis;
use switch::store::Pool;

use crate::error::SettleError;

/// The largest manual adjustment, either way: 10^12 rials, the largest amount a message can
/// carry (n12), so one typo cannot move more than any transaction could.
pub const ADJUSTMENT_RIALS_MAX: i64 = 1_000_000_000_000;

/// A reason longer than this is refused: it is a note, printed in the summary.
pub const REASON_CHARS_MAX: usize = 200;

/// Records a manual adjustment of `amount_rials` (negative takes money back) for the merchant
/// with code `merchant_code`, at `now`; returns its id.
///
/// # Errors
/// [`SettleError::UnknownMerchant`]; [`SettleError::BadAdjustment`] for a zero or too large
/// amount or an empty or too long reason; [`SettleError::Database`].
pub async fn add_manual(
    pool: &Pool,
    merchant_code: &str,
    amount_rials: i64,
    reason: &str,
    now: UnixMillis,
) -> Result<i64, SettleError> {
    if amount_rials == 0 {
        return Err(SettleError::BadAdjustment {
            reason: "the amount is zero",
        });
    }
    if amount_rials
        .checked_abs()
        .is_none_or(|size| size > ADJUSTMENT_RIALS_MAX)
    {
        return Err(SettleError::BadAdjustment {
            reason: "the amount is over 1000000000000 rials either way",
        });
    }
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(SettleError::BadAdjustment {
            reason: "the reason is empty",
        });
    }
    if reason.chars().count() > REASON_CHARS_MAX {
        return Err(SettleError::BadAdjustment {
            reason: "the reason is over 200 characters",
        });
    }
    let merchant: Option<i64> = sqlx::query_scalar("SELECT id FROM merchants WHERE code = $1")
        .bind(merchant_code)
        .fetch_optional(pool)
        .await?;
    let merchant = merchant.ok_or_else(|| SettleError::UnknownMerchant {
        code: merchant_code.to_owned(),
    })?;
    let id = sqlx::query_scalar::<_, i64>(
        "INSERT INTO settlement_adjustments \
         (merchant_id, amount_rials, reason, source, txn_id, created_at_ms) \
         VALUES ($1, $2, $3, 'manual', NULL, $4) RETURNING id",
    )
    .bind(merchant)
    .bind(amount_rials)
    .bind(reason)
    .bind(now.get())
    .fetch_one(pool)
    .await?;
    Ok(id)
}
