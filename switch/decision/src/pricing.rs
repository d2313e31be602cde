//! Pricing: discount, funding split, fee and cashback (docs/design.md section 4).
//!
//! Pure functions of their inputs: no I/O, no clock (the time comes in [`Purchase::now`]), no
//! state. Budgets and per-member limits of rules belong to the engine, which answers through
//! [`RuleUsage`]. All money is [`Rials`]; all rates are [`Percent`]. Every rounding is named
//! where it happens:
//! - percent discount: floor ([`Rials::percent_floor`]);
//! - fee: half up, then clamped ([`fee`]);
//! - cashback: floor ([`cashback`]).
//!
//! Layout:
//! - [`discount`]: which rule applies and how much it gives.
//! - [`split`]: how the rest of G is paid, per funding (processing code).
//! - [`fee`](mod@fee): the merchant's fee and the cashback to earn.

pub mod discount;
pub mod fee;
pub mod split;

pub use discount::{
    coupon_discount, discount, rule_discount, Candidate, Purchase, RuleDiscount, RuleUsage,
    Unlimited,
};
pub use fee::{cashback, fee};
pub use split::{split, Account, Funding, Shortfall, Split};

use crate::domain::{CouponTerms, Percent, Rials};

/// What the card can spend at this merchant right now (`available = ledger − holds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    /// Store credit available at this merchant.
    pub store_credit: Rials,
    /// Club balance available.
    pub club: Rials,
}

/// Every amount of one priced request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// The gross amount G.
    pub gross: Rials,
    /// The rule that gave the discount, if any.
    pub rule: Option<RuleDiscount>,
    /// The part of the discount the member's coupon gave (zero without one).
    pub coupon: Rials,
    /// How G is paid: discount, store credit, club, bank rest.
    pub split: Split,
    /// The merchant's fee on G.
    pub fee: Rials,
    /// Cashback to issue on confirm as store credit at this merchant.
    pub cashback: Rials,
}

/// Why a request cannot be priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuoteDecline {
    /// G is zero.
    #[error("amount is zero")]
    AmountZero,
    /// G is above the merchant's per-transaction limit (response `61`).
    #[error("amount above the merchant's limit of {limit} rials")]
    AmountLimit {
        /// The merchant's limit.
        limit: Rials,
    },
    /// The funding that must cover the rest cannot (response `51`).
    #[error(transparent)]
    Insufficient(Shortfall),
}

/// Prices one purchase: the best eligible discount plus the coupon's (if the engine found one
/// for the member), the split for `funding`, the fee and the cashback to earn.
///
/// Cashback is `floor(tier_rate × (club + bank rest) / 100)` when the merchant allows cashback
/// and the card has a tier (`tier_rate` is `Some`), else zero.
///
/// # Errors
/// [`QuoteDecline`] when G is zero or above the merchant's limit, or the funding falls short.
///
/// # Panics
/// When the split breaks `G = discount + store credit + club + bank rest` (a bug).
pub fn quote<'r>(
    purchase: &Purchase<'_>,
    rules: impl IntoIterator<Item = impl Into<Candidate<'r>>>,
    usage: &impl RuleUsage,
    funds: Funds,
    funding: Funding,
    tier_rate: Option<Percent>,
    coupon: Option<&CouponTerms>,
) -> Result<Quote, QuoteDecline> {
    let gross = purchase.gross;
    if gross == Rials::ZERO {
        return Err(QuoteDecline::AmountZero);
    }
    let limit = purchase.merchant.profile.amount_rials_max;
    if gross > limit {
        return Err(QuoteDecline::AmountLimit { limit });
    }
    let rule = discount(rules, purchase, usage);
    let ruled = rule.map_or(Rials::ZERO, |applied| applied.amount);
    let couponed = coupon.map_or(Rials::ZERO, |terms| coupon_discount(terms, gross, ruled));
    let discounted = ruled.asserted_add(
        couponed,
        "the coupon's discount is capped by what the rule's leaves of G",
    );
    assert!(discounted <= gross, "discount above G");
    let split = split(gross, discounted, funds.store_credit, funds.club, funding)
        .map_err(QuoteDecline::Insufficient)?;
    let fee = fee(gross, &purchase.merchant.profile.fee);
    let cashback = match tier_rate {
        Some(rate) if purchase.merchant.profile.cashback_allowed => {
            cashback(rate, split.member_paid())
        }
        _ => Rials::ZERO,
    };
    Ok(Quote {
        gross,
        rule,
        coupon: couponed,
        split,
        fee,
        cashback,
    })
}
