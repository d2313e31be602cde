//! Referral rewards (docs/loyalty.md): when a member who was referred by another (a member's
//! code is their referral code) has their first purchase confirmed, both get the configured
//! coupon, once. A reversal of that purchase withdraws the coupons neither has used yet; the
//! reward is not given again.

use crate::domain::{CouponId, CouponKind, CouponTemplate, MemberId, UnixMillis};
use crate::engine::coupon::{CouponIssue, CouponState};
use crate::engine::decide::Engine;
use crate::engine::effect::Effect;
use crate::engine::state::{Txn, TxnId};
use crate::snapshot::Snapshot;

/// The programme's rules the engine applies by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoyaltyRules {
    /// The coupon each side of a referral gets (`None`: referrals give nothing).
    pub referral_coupon: Option<CouponTemplate>,
}

/// A referral rewarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Referral {
    /// The purchase whose confirm earned it.
    pub txn: TxnId,
    /// The referrer.
    pub referrer: MemberId,
    /// The referred member's coupon, then the referrer's.
    pub coupons: [CouponId; 2],
    /// Whether the purchase was reversed (and the unused coupons withdrawn).
    pub reversed: bool,
}

impl Engine {
    /// After a confirm: rewards the referral if this is the referred member's first confirmed
    /// purchase and their referral was never rewarded.
    pub(crate) fn reward_referral(
        &mut self,
        snapshot: &Snapshot,
        txn: &Txn,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(template) = self.loyalty.referral_coupon else {
            return;
        };
        if self.state.referrals.contains_key(&txn.member) {
            return;
        }
        let Some(referrer) = snapshot.member(txn.member).and_then(|m| m.referred_by) else {
            return;
        };
        let earlier = self
            .state
            .activity
            .get(&txn.member)
            .is_some_and(|entries| entries.iter().any(|entry| entry.1 != txn.id));
        if earlier {
            return;
        }
        let terms = template.terms_at(now);
        let sides = [
            (txn.member, Some(txn.card), "referred"),
            (
                referrer,
                snapshot.member(referrer).and_then(|m| m.card),
                "referrer",
            ),
        ];
        let key = |side: &str| format!("referral:{}:{side}", txn.member.get());
        // Both keys free, or neither coupon is issued (an operator may have used one).
        if sides
            .iter()
            .any(|(_, _, side)| self.state.coupon_keys.contains_key(&key(side)))
        {
            return;
        }
        let mut coupons = [CouponId::new(0); 2];
        for (slot, (member, card, side)) in coupons.iter_mut().zip(sides) {
            let key = key(side);
            let issue = CouponIssue {
                key: key.clone(),
                member,
                kind: CouponKind::Referral,
                terms,
                card,
                operator: "referral".to_owned(),
            };
            if self.issue_coupon(issue, now, effects).is_err() {
                return;
            }
            match self.state.coupon_keys.get(&key) {
                Some(id) => *slot = *id,
                None => return,
            }
        }
        let referral = Referral {
            txn: txn.id,
            referrer,
            coupons,
            reversed: false,
        };
        self.state.referrals.insert(txn.member, referral);
        effects.push(Effect::Referral {
            referred: txn.member,
            referral,
            at: now,
        });
    }

    /// After a reversal of a confirmed purchase: if it earned a referral reward, the coupons
    /// not used yet are withdrawn (one held by a pending purchase stays with it).
    pub(crate) fn reverse_referral(
        &mut self,
        txn: &Txn,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(referral) = self.state.referrals.get(&txn.member).copied() else {
            return;
        };
        if referral.txn != txn.id || referral.reversed {
            return;
        }
        for coupon in referral.coupons {
            let available = self
                .state
                .coupons
                .get(&coupon)
                .is_some_and(|c| c.state == CouponState::Available);
            if available {
                self.move_coupon(coupon, CouponState::Withdrawn, now, effects);
            }
        }
        self.state.referrals.insert(
            txn.member,
            Referral {
                reversed: true,
                ..referral
            },
        );
        effects.push(Effect::ReferralReversed {
            referred: txn.member,
            at: now,
        });
    }
}
