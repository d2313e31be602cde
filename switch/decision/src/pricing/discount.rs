//! The discount: the largest eligible rule wins, ties go to the lowest rule id (docs/design.md
//! section 4, step 1).

use crate::domain::{CouponTerms, RuleTerms, UnixMillis};
use crate::domain::{GroupId, LocalDateTime, Merchant, Rials, Rule, RuleId, RuleKind, TierId};

/// The engine's answer to "may this rule give this discount now?": its total budget and the
/// member's daily use limit are state, which pricing does not keep.
pub trait RuleUsage {
    /// Whether `rule` may give `discount` to this purchase's member. The rule is passed whole
    /// so the engine can read its budget and daily limit.
    fn allows(&self, rule: &Rule, discount: Rials) -> bool;
}

/// A [`RuleUsage`] that allows everything: for rules without budgets or limits, and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unlimited;

impl RuleUsage for Unlimited {
    fn allows(&self, _rule: &Rule, _discount: Rials) -> bool {
        true
    }
}

/// The facts of one purchase that rules are matched against.
#[derive(Debug, Clone, Copy)]
pub struct Purchase<'a> {
    /// The gross amount G.
    pub gross: Rials,
    /// The merchant: id, groups and local time offset.
    pub merchant: &'a Merchant,
    /// The terminal's groups, sorted ascending.
    pub terminal_groups: &'a [GroupId],
    /// The card's BIN.
    pub bin: &'a [u8; 6],
    /// The card's tier.
    pub tier: Option<TierId>,
    /// The card's member's groups, sorted ascending.
    pub member_groups: &'a [GroupId],
    /// The time of the request.
    pub now: UnixMillis,
}

/// A rule offered to [`discount`], with what the offerer already knows of it: the snapshot's
/// rule index hands out the rules naming a merchant (or one of its groups) as such, and pricing
/// then skips re-reading the rule's merchant lists for them (heap reads, one cache miss each
/// with a thousand rules). A plain `&Rule` knows nothing and is checked in full.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'r> {
    /// The rule.
    pub rule: &'r Rule,
    /// The purchase's merchant is known to be one the rule names, directly or by a group.
    pub merchant_matched: bool,
}

impl<'r> From<&'r Rule> for Candidate<'r> {
    fn from(rule: &'r Rule) -> Candidate<'r> {
        Candidate {
            rule,
            merchant_matched: false,
        }
    }
}

/// The discount one rule gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleDiscount {
    /// The rule.
    pub rule: RuleId,
    /// The discount, `0 < amount <= G`.
    pub amount: Rials,
}

/// The best discount among `rules` for `purchase`: the largest amount; among equal amounts,
/// the lowest rule id. A rule counts when it is eligible (see [`crate::domain::Eligibility`]),
/// its window is open at `purchase.now` in the merchant's local time, G reaches its minimum
/// basket, its discount is above zero, and `usage` allows it. `None` when no rule counts.
///
/// # Panics
/// When the chosen discount exceeds G (a bug).
pub fn discount<'r>(
    rules: impl IntoIterator<Item = impl Into<Candidate<'r>>>,
    purchase: &Purchase<'_>,
    usage: &impl RuleUsage,
) -> Option<RuleDiscount> {
    let local = LocalDateTime::at(purchase.now, purchase.merchant.profile.utc_offset_minutes);
    let mut best: Option<RuleDiscount> = None;
    for candidate in rules {
        let Candidate {
            rule,
            merchant_matched,
        } = candidate.into();
        // The window is read from the rule itself; eligibility may read its lists from the
        // heap. Both must hold; the cheaper test goes first.
        if !rule.terms.window.contains(&local) || !eligible(rule, purchase, merchant_matched) {
            continue;
        }
        let amount = rule_discount(&rule.terms, purchase.gross);
        if amount == Rials::ZERO {
            continue;
        }
        let better = best.is_none_or(|current| {
            amount > current.amount || (amount == current.amount && rule.id < current.rule)
        });
        // The budget and daily-use lookups (a map of a day's uses per member: a cache miss)
        // are asked only of a rule that would win: one that would not cannot change the best.
        if better && usage.allows(rule, amount) {
            best = Some(RuleDiscount {
                rule: rule.id,
                amount,
            });
        }
    }
    if let Some(chosen) = best {
        assert!(chosen.amount <= purchase.gross);
    }
    best
}

/// What one rule gives on `gross`, ignoring eligibility and time: zero below the minimum
/// basket; otherwise `floor(G × rate / 100)` (percent) or the amount (fixed), then capped by
/// the rule's cap and by G.
pub fn rule_discount(terms: &RuleTerms, gross: Rials) -> Rials {
    capped(
        terms.kind,
        terms.basket_rials_min,
        terms.discount_rials_max,
        gross,
    )
}

/// What a percent or fixed discount gives on `gross`: zero below `basket_min`, else the raw
/// amount capped by `cap` and by G.
fn capped(kind: RuleKind, basket_min: Rials, cap: Option<Rials>, gross: Rials) -> Rials {
    if gross < basket_min {
        return Rials::ZERO;
    }
    let raw = match kind {
        RuleKind::Percent(rate) => gross.percent_floor(rate),
        RuleKind::Fixed(amount) => amount,
    };
    cap.map_or(raw, |cap| raw.min(cap)).min(gross)
}

/// What a coupon gives on `gross` after the rule's discount `ruled`: `floor(G × rate / 100)`
/// (percent) or its amount (fixed), computed on G like a rule's, capped by the coupon's cap and
/// by what G leaves after the rule's discount (docs/loyalty.md). Zero below its minimum basket.
pub fn coupon_discount(terms: &CouponTerms, gross: Rials, ruled: Rials) -> Rials {
    let left = gross.asserted_sub(ruled, "rule discount above G");
    let own = capped(
        terms.kind,
        terms.basket_rials_min,
        terms.discount_rials_max,
        gross,
    );
    // The coupon gives at most what the rule's discount leaves of G (docs/loyalty.md): a
    // business rule.
    own.min(left)
}

/// Whether `purchase` meets every condition of `rule.eligibility`.
///
/// Each non-empty list is read from the heap (a cache miss when the rules are cold), so the
/// tests stop at the first that fails, and the merchant test, which the snapshot's rule index
/// has already passed for nearly every rule it hands out, comes last (and is skipped when the
/// index says so: `merchant_matched`).
fn eligible(rule: &Rule, purchase: &Purchase<'_>, merchant_matched: bool) -> bool {
    let who = &rule.eligibility;
    (who.tiers.is_empty() || purchase.tier.is_some_and(|t| who.tiers.contains(&t)))
        && (who.member_groups.is_empty() || intersects(&who.member_groups, purchase.member_groups))
        && (who.terminal_groups.is_empty()
            || intersects(&who.terminal_groups, purchase.terminal_groups))
        && (who.bins.is_empty() || who.bins.iter().any(|range| range.contains(purchase.bin)))
        && (merchant_matched
            || who.any_merchant()
            || who.merchants.binary_search(&purchase.merchant.id).is_ok()
            || intersects(&who.merchant_groups, &purchase.merchant.groups))
}

/// Whether two ascending lists share an element (a merge walk: both lists are short).
fn intersects(left: &[GroupId], right: &[GroupId]) -> bool {
    let (mut left, mut right) = (left.iter().peekable(), right.iter().peekable());
    while let (Some(a), Some(b)) = (left.peek(), right.peek()) {
        match a.cmp(b) {
            std::cmp::Ordering::Less => {
                left.next();
            }
            std::cmp::Ordering::Greater => {
                right.next();
            }
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}
