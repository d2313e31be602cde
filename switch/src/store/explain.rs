//! Why a transaction was priced so (docs/console.md, "Pricing explained"): the terms of the
//! reference version that priced it, read from the history tables of migration 0030, and the
//! amounts those terms give, recomputed by `pricing`'s own functions and set beside the
//! amounts the transaction recorded (and answered in field 54).
//!
//! The transaction names its rule, coupon and snapshot version; a rule's, merchant's or tier's
//! terms at that version are those of the newest history row at or before it. The tier is the
//! better (by rank) of the card's given tier at that version and the tier the member held
//! after their last tier change before the purchase.

use serde::Serialize;
use sqlx::Row as _;

use crate::domain::{CouponTerms, FeeSchedule, MerchantId, Percent, Rials, RuleKind, UnixMillis};
use crate::pricing;
use crate::store::{Pool, StoreError};

/// The rule's terms that gave the discount.
#[derive(Debug, Clone, Serialize)]
pub struct RuleTermsAt {
    /// The rule's code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Percent of G, or `None` for a fixed amount.
    pub percent: Option<String>,
    /// The fixed amount.
    pub fixed_rials: Option<i64>,
    /// Minimum G.
    pub basket_rials_min: i64,
    /// Cap.
    pub discount_rials_max: Option<i64>,
    /// The reference version these terms are from.
    pub version: i64,
    /// What they give on G.
    pub gives_rials: i64,
}

/// The coupon's terms.
#[derive(Debug, Clone, Serialize)]
pub struct CouponAt {
    /// Row id.
    pub id: i64,
    /// birthday, campaign, manual, …
    pub kind: String,
    /// Percent of G.
    pub percent: Option<String>,
    /// Fixed amount.
    pub fixed_rials: Option<i64>,
    /// Minimum G.
    pub basket_rials_min: i64,
    /// Cap.
    pub discount_rials_max: Option<i64>,
    /// What it gives on G after the rule's discount.
    pub gives_rials: i64,
}

/// The merchant's fee terms.
#[derive(Debug, Clone, Serialize)]
pub struct FeeAt {
    /// Percent of G, rounded half up.
    pub rate: String,
    /// Minimum fee.
    pub fee_rials_min: i64,
    /// Maximum fee.
    pub fee_rials_max: i64,
    /// Whether the merchant pays cashback.
    pub cashback_allowed: bool,
    /// The reference version these terms are from.
    pub version: i64,
    /// The fee they give on G.
    pub gives_rials: i64,
}

/// The tier that set the cashback rate.
#[derive(Debug, Clone, Serialize)]
pub struct TierAt {
    /// The tier's code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Its cashback rate (percent).
    pub cashback_rate: String,
    /// `given` (the card's tier) or `earned` (by activity).
    pub source: String,
}

/// A transaction's explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The transaction.
    pub id: i64,
    /// The reference version that priced it.
    pub snapshot_version: i64,
    /// G.
    pub gross_rials: i64,
    /// The rule, if one gave a discount.
    pub rule: Option<RuleTermsAt>,
    /// The coupon, if one was used.
    pub coupon: Option<CouponAt>,
    /// The recorded discount: the rule's part and the coupon's.
    pub discount_rials: i64,
    /// The coupon's part of it.
    pub coupon_rials: i64,
    /// The fee terms.
    pub fee: Option<FeeAt>,
    /// The recorded fee.
    pub fee_rials: i64,
    /// The tier.
    pub tier: Option<TierAt>,
    /// The recorded cashback.
    pub cashback_rials: i64,
    /// What the cashback terms give: `floor(rate × (club + bank) / 100)`.
    pub cashback_gives_rials: i64,
    /// The split: store credit, club, bank card.
    pub store_credit_rials: i64,
    /// Club balance used.
    pub club_rials: i64,
    /// Left for the bank card.
    pub bank_rest_rials: i64,
    /// State: pending, confirmed, reversed, expired.
    pub state: String,
    /// Capture time.
    pub confirmed_at_ms: Option<i64>,
    /// Reversal time.
    pub reversed_at_ms: Option<i64>,
    /// Whether every recomputed amount equals the recorded one and G = discount + store
    /// credit + club + bank card.
    pub adds_up: bool,
}

const TXN_SQL: &str = "SELECT t.id, t.snapshot_version, t.gross_rials, t.discount_rials, \
     t.coupon_rials, t.fee_rials, t.cashback_rials, t.store_credit_rials, t.club_rials, \
     t.bank_rest_rials, t.state, t.confirmed_at_ms, t.reversed_at_ms, t.created_at_ms, \
     t.rule_id, t.coupon_id, t.merchant_id, t.card_id, c.member_id, c.tier_id \
     FROM transactions t JOIN cards c ON c.id = t.card_id WHERE t.id = $1";
const RULE_SQL: &str =
    "SELECT h.id, r.code, h.name, h.percent, h.fixed_rials, h.basket_rials_min, \
     h.discount_rials_max, h.version FROM rule_terms_history h JOIN rules r ON r.id = h.rule_id \
     WHERE h.rule_id = $1 AND h.version <= $2 ORDER BY h.version DESC, h.id DESC LIMIT 1";
const COUPON_SQL: &str = "SELECT id, kind, percent, fixed_rials, basket_rials_min, \
     discount_rials_max, merchant_id, expires_at_ms FROM coupons WHERE id = $1";
const FEE_SQL: &str =
    "SELECT id, fee_rate, fee_rials_min, fee_rials_max, cashback_allowed, version \
     FROM merchant_terms_history WHERE merchant_id = $1 AND version <= $2 \
     ORDER BY version DESC, id DESC LIMIT 1";
const GIVEN_TIER_SQL: &str = "SELECT old_tier_id FROM card_tier_history \
     WHERE card_id = $1 AND (version IS NULL OR version > $2) \
     ORDER BY CASE WHEN version IS NULL THEN 1 ELSE 0 END, version, id LIMIT 1";
const EARNED_TIER_SQL: &str = "SELECT to_tier_id FROM tier_changes \
     WHERE member_id = $1 AND at_ms < $2 ORDER BY at_ms DESC, id DESC LIMIT 1";
const TIER_SQL: &str = "SELECT code, name, cashback_rate, rank FROM tier_terms_history \
     WHERE tier_id = $1 AND version <= $2 ORDER BY version DESC, id DESC LIMIT 1";

/// `column` of row `id` in `table` as rials: a value that is not an amount (negative, or past
/// [`Rials::MAX`]) is a corrupt row, never zero.
fn rials(table: &'static str, id: i64, column: &str, value: i64) -> Result<Rials, StoreError> {
    Rials::new(value).ok_or_else(|| StoreError::Corrupt {
        table,
        id,
        reason: format!("{column} {value} is not an amount"),
    })
}

/// [`rials`] of a column read from `row`.
fn amount_of(
    row: &crate::store::DbRow,
    table: &'static str,
    id: i64,
    column: &str,
) -> Result<Rials, StoreError> {
    let value: i64 = row.try_get(column)?;
    rials(table, id, column, value)
}

fn kind(
    table: &'static str,
    id: i64,
    percent: Option<&str>,
    fixed: Option<i64>,
) -> Result<Option<RuleKind>, StoreError> {
    Ok(match (percent, fixed) {
        (Some(text), _) => Percent::parse(text).ok().map(RuleKind::Percent),
        (None, Some(amount)) => Some(RuleKind::Fixed(rials(table, id, "fixed_rials", amount)?)),
        (None, None) => None,
    })
}

/// A transaction's explanation, or `None` when there is no such transaction.
///
/// # Errors
/// When the database fails, or a row holds a money value that is not an amount
/// ([`StoreError::Corrupt`] naming the table, row and column).
pub async fn explain(pool: &Pool, id: i64) -> Result<Option<Explanation>, StoreError> {
    let Some(t) = sqlx::query(TXN_SQL).bind(id).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let table = "transactions";
    let version: i64 = t.try_get("snapshot_version")?;
    let gross = amount_of(&t, table, id, "gross_rials")?;
    let discount = amount_of(&t, table, id, "discount_rials")?.get();
    let coupon_rials = amount_of(&t, table, id, "coupon_rials")?.get();
    let rule_id: Option<i64> = t.try_get("rule_id")?;
    let coupon_id: Option<i64> = t.try_get("coupon_id")?;
    let (rule, ruled) = match rule_id {
        Some(rule_id) => match rule_at(pool, rule_id, version, gross).await? {
            Some((terms, gives)) => (Some(terms), gives),
            None => (None, Rials::ZERO),
        },
        None => (None, Rials::ZERO),
    };
    let coupon = match coupon_id {
        Some(coupon_id) => coupon_at(pool, coupon_id, gross, ruled).await?,
        None => None,
    };
    let merchant_id: i64 = t.try_get("merchant_id")?;
    let fee = fee_at(pool, merchant_id, version, gross).await?;
    let (gross, ruled) = (gross.get(), ruled.get());
    let club = amount_of(&t, table, id, "club_rials")?.get();
    let bank = amount_of(&t, table, id, "bank_rest_rials")?.get();
    let store = amount_of(&t, table, id, "store_credit_rials")?.get();
    let created: i64 = t.try_get("created_at_ms")?;
    let tier = tier_at(
        pool,
        t.try_get("card_id")?,
        t.try_get("tier_id")?,
        t.try_get("member_id")?,
        version,
        created,
    )
    .await?;
    let allowed = fee.as_ref().is_some_and(|f| f.cashback_allowed);
    // Both are amounts, so the sum fits; past `Rials::MAX` the row breaks G's split.
    let member_paid = rials(table, id, "club_rials + bank_rest_rials", club + bank)?;
    let cashback_gives = match (&tier, allowed) {
        (Some(tier), true) => Percent::parse(&tier.cashback_rate)
            .map_or(0, |rate| pricing::cashback(rate, member_paid).get()),
        _ => 0,
    };
    let cashback = amount_of(&t, table, id, "cashback_rials")?.get();
    let fee_rials = amount_of(&t, table, id, "fee_rials")?.get();
    let coupon_gives = coupon.as_ref().map_or(0, |c| c.gives_rials);
    let adds_up = ruled + coupon_gives == discount
        && coupon_gives == coupon_rials
        && fee.as_ref().is_some_and(|f| f.gives_rials == fee_rials)
        && cashback_gives == cashback
        && discount + store + club + bank == gross;
    Ok(Some(Explanation {
        id,
        snapshot_version: version,
        gross_rials: gross,
        rule,
        coupon,
        discount_rials: discount,
        coupon_rials,
        fee,
        fee_rials,
        tier,
        cashback_rials: cashback,
        cashback_gives_rials: cashback_gives,
        store_credit_rials: store,
        club_rials: club,
        bank_rest_rials: bank,
        state: t.try_get("state")?,
        confirmed_at_ms: t.try_get("confirmed_at_ms")?,
        reversed_at_ms: t.try_get("reversed_at_ms")?,
        adds_up,
    }))
}

async fn rule_at(
    pool: &Pool,
    rule_id: i64,
    version: i64,
    gross: Rials,
) -> Result<Option<(RuleTermsAt, Rials)>, StoreError> {
    let Some(row) = sqlx::query(RULE_SQL)
        .bind(rule_id)
        .bind(version)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let (table, id) = ("rule_terms_history", row.try_get("id")?);
    let percent: Option<String> = row.try_get("percent")?;
    let fixed: Option<i64> = row.try_get("fixed_rials")?;
    let basket: i64 = row.try_get("basket_rials_min")?;
    let cap: Option<i64> = row.try_get("discount_rials_max")?;
    let gives = match kind(table, id, percent.as_deref(), fixed)? {
        Some(kind) => {
            let terms = CouponTerms {
                kind,
                basket_rials_min: rials(table, id, "basket_rials_min", basket)?,
                discount_rials_max: cap
                    .map(|cap| rials(table, id, "discount_rials_max", cap))
                    .transpose()?,
                merchant: None,
                expires_at: UnixMillis::new(0),
            };
            // A rule's amount is the coupon formula with nothing discounted before it.
            pricing::coupon_discount(&terms, gross, Rials::ZERO)
        }
        None => Rials::ZERO,
    };
    let terms = RuleTermsAt {
        code: row.try_get("code")?,
        name: row.try_get("name")?,
        percent,
        fixed_rials: fixed,
        basket_rials_min: basket,
        discount_rials_max: cap,
        version: row.try_get("version")?,
        gives_rials: gives.get(),
    };
    Ok(Some((terms, gives)))
}

async fn coupon_at(
    pool: &Pool,
    coupon_id: i64,
    gross: Rials,
    ruled: Rials,
) -> Result<Option<CouponAt>, StoreError> {
    let Some(row) = sqlx::query(COUPON_SQL)
        .bind(coupon_id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let percent: Option<String> = row.try_get("percent")?;
    let fixed: Option<i64> = row.try_get("fixed_rials")?;
    let basket: i64 = row.try_get("basket_rials_min")?;
    let cap: Option<i64> = row.try_get("discount_rials_max")?;
    let merchant: Option<i64> = row.try_get("merchant_id")?;
    let (table, id) = ("coupons", coupon_id);
    let gives = match kind(table, id, percent.as_deref(), fixed)? {
        Some(kind) => {
            let terms = CouponTerms {
                kind,
                basket_rials_min: rials(table, id, "basket_rials_min", basket)?,
                discount_rials_max: cap
                    .map(|cap| rials(table, id, "discount_rials_max", cap))
                    .transpose()?,
                merchant: merchant.map(MerchantId::new),
                expires_at: UnixMillis::new(0),
            };
            // The rule's discount was recomputed from G by the same formula: at most G.
            pricing::coupon_discount(&terms, gross, ruled).get()
        }
        None => 0,
    };
    Ok(Some(CouponAt {
        id: coupon_id,
        kind: row.try_get("kind")?,
        percent,
        fixed_rials: fixed,
        basket_rials_min: basket,
        discount_rials_max: cap,
        gives_rials: gives,
    }))
}

async fn fee_at(
    pool: &Pool,
    merchant_id: i64,
    version: i64,
    gross: Rials,
) -> Result<Option<FeeAt>, StoreError> {
    let Some(row) = sqlx::query(FEE_SQL)
        .bind(merchant_id)
        .bind(version)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    let rate: String = row.try_get("fee_rate")?;
    let min: i64 = row.try_get("fee_rials_min")?;
    let max: i64 = row.try_get("fee_rials_max")?;
    let allowed: i64 = row.try_get("cashback_allowed")?;
    let (table, id) = ("merchant_terms_history", row.try_get("id")?);
    let min_rials = rials(table, id, "fee_rials_min", min)?;
    let max_rials = rials(table, id, "fee_rials_max", max)?;
    let gives = Percent::parse(&rate)
        .ok()
        .and_then(|rate| FeeSchedule::new(rate, min_rials, max_rials).ok())
        .map_or(-1, |schedule| pricing::fee(gross, &schedule).get());
    Ok(Some(FeeAt {
        rate,
        fee_rials_min: min,
        fee_rials_max: max,
        cashback_allowed: allowed != 0,
        version: row.try_get("version")?,
        gives_rials: gives,
    }))
}

async fn tier_at(
    pool: &Pool,
    card_id: i64,
    current_given: Option<i64>,
    member_id: i64,
    version: i64,
    created_at_ms: i64,
) -> Result<Option<TierAt>, sqlx::Error> {
    let changed: Option<Option<i64>> = sqlx::query_scalar(GIVEN_TIER_SQL)
        .bind(card_id)
        .bind(version)
        .fetch_optional(pool)
        .await?;
    let given = changed.unwrap_or(current_given);
    let earned: Option<Option<i64>> = sqlx::query_scalar(EARNED_TIER_SQL)
        .bind(member_id)
        .bind(created_at_ms)
        .fetch_optional(pool)
        .await?;
    let given = match given {
        Some(id) => tier_terms(pool, id, version, "given").await?,
        None => None,
    };
    let earned = match earned.flatten() {
        Some(id) => tier_terms(pool, id, version, "earned").await?,
        None => None,
    };
    Ok(match (given, earned) {
        (Some(g), Some(e)) => Some(if e.1 > g.1 { e.0 } else { g.0 }),
        (Some(g), None) => Some(g.0),
        (None, Some(e)) => Some(e.0),
        (None, None) => None,
    })
}

async fn tier_terms(
    pool: &Pool,
    tier_id: i64,
    version: i64,
    source: &str,
) -> Result<Option<(TierAt, i64)>, sqlx::Error> {
    let Some(row) = sqlx::query(TIER_SQL)
        .bind(tier_id)
        .bind(version)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some((
        TierAt {
            code: row.try_get("code")?,
            name: row.try_get("name")?,
            cashback_rate: row.try_get("cashback_rate")?,
            source: source.to_owned(),
        },
        row.try_get("rank")?,
    )))
}
