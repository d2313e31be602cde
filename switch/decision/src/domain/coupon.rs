//! Member coupons (docs/loyalty.md): one-time discounts issued to a member, applied to their
//! next eligible purchase on top of the best rule's discount.

use crate::domain::{MerchantId, Rials, RuleKind, UnixMillis};

/// Why a coupon was issued (the `kind` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CouponKind {
    /// The member's birthday (the scheduled job).
    Birthday,
    /// The anniversary of the member joining (the scheduled job).
    Anniversary,
    /// A campaign (a holiday, an event), issued by the operator.
    Campaign,
    /// A win-back offer to a member inactive for a while.
    WinBack,
    /// A referral reward.
    Referral,
    /// Issued by hand.
    Manual,
}

impl CouponKind {
    /// Every kind.
    pub const ALL: [CouponKind; 6] = [
        CouponKind::Birthday,
        CouponKind::Anniversary,
        CouponKind::Campaign,
        CouponKind::WinBack,
        CouponKind::Referral,
        CouponKind::Manual,
    ];

    /// The database and API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CouponKind::Birthday => "birthday",
            CouponKind::Anniversary => "anniversary",
            CouponKind::Campaign => "campaign",
            CouponKind::WinBack => "win_back",
            CouponKind::Referral => "referral",
            CouponKind::Manual => "manual",
        }
    }

    /// The kind spelled `text`.
    pub fn parse(text: &str) -> Option<CouponKind> {
        CouponKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// What a coupon gives, and where and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CouponTerms {
    /// Percent of G (rounded down) or a fixed amount.
    pub kind: RuleKind,
    /// Applies only from this G up.
    pub basket_rials_min: Rials,
    /// Its discount is capped here.
    pub discount_rials_max: Option<Rials>,
    /// Only at this merchant (`None`: at any).
    pub merchant: Option<MerchantId>,
    /// Usable before this instant only.
    pub expires_at: UnixMillis,
}

/// The terms of coupons issued by a rule of the programme (birthday, anniversary, referral),
/// with their validity instead of an expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CouponTemplate {
    /// Percent of G (rounded down) or a fixed amount.
    pub kind: RuleKind,
    /// Applies only from this G up.
    pub basket_rials_min: Rials,
    /// Its discount is capped here.
    pub discount_rials_max: Option<Rials>,
    /// Usable for this many days from issue.
    pub valid_days: i64,
}

impl CouponTemplate {
    /// The terms of a coupon issued at `now`, at any merchant.
    pub fn terms_at(&self, now: UnixMillis) -> CouponTerms {
        CouponTerms {
            kind: self.kind,
            basket_rials_min: self.basket_rials_min,
            discount_rials_max: self.discount_rials_max,
            merchant: None,
            expires_at: UnixMillis::new(now.get() + self.valid_days * crate::domain::time::DAY_MS),
        }
    }
}

impl CouponTerms {
    /// Whether the coupon can apply to a purchase of `gross` at `merchant` at `now` (its
    /// discount may still be zero after the rule's).
    pub fn applies(&self, merchant: MerchantId, gross: Rials, now: UnixMillis) -> bool {
        now < self.expires_at
            && gross >= self.basket_rials_min
            && self.merchant.is_none_or(|only| only == merchant)
    }
}
