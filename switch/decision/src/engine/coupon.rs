//! Member coupons in the engine (docs/loyalty.md). A coupon is issued to a member with an
//! idempotency key (through the operator API's queue, like a credit), found by the member's
//! next eligible purchase, **held** by that purchase while it is pending, **used** by its
//! confirm, and **available** again when the purchase is reversed or its hold times out.
//! Every transition is an effect written in the group commit, with the coupon's previous state
//! as its condition, so a re-applied transition fails instead of counting twice.

use crate::domain::{
    CardId, CouponId, CouponKind, CouponTerms, MemberId, MerchantId, Rials, UnixMillis,
};
use crate::engine::credit::CreditOutcome;
use crate::engine::decide::Engine;
use crate::engine::effect::Effect;
use crate::engine::state::{State, TxnId};
use crate::pricing;

/// Longest idempotency key of an issue, in bytes.
pub const COUPON_KEY_BYTES_MAX: usize = 64;

/// Where a coupon is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CouponState {
    /// Waiting for the member's next eligible purchase.
    Available,
    /// Held by a pending purchase.
    Held(TxnId),
    /// Used by a confirmed purchase.
    Used(TxnId),
    /// Taken back before use (a referral reward whose purchase was reversed).
    Withdrawn,
}

impl CouponState {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CouponState::Available => "available",
            CouponState::Held(_) => "held",
            CouponState::Used(_) => "used",
            CouponState::Withdrawn => "withdrawn",
        }
    }

    /// The transaction holding or using it.
    pub fn txn(self) -> Option<TxnId> {
        match self {
            CouponState::Available | CouponState::Withdrawn => None,
            CouponState::Held(txn) | CouponState::Used(txn) => Some(txn),
        }
    }
}

/// A member's coupon as the engine keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Coupon {
    /// Row id.
    pub id: CouponId,
    /// Whose.
    pub member: MemberId,
    /// Why it was issued.
    pub kind: CouponKind,
    /// What it gives.
    pub terms: CouponTerms,
    /// Where it is.
    pub state: CouponState,
}

/// A coupon to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CouponIssue {
    /// The caller's idempotency key.
    pub key: String,
    /// To whom.
    pub member: MemberId,
    /// Why.
    pub kind: CouponKind,
    /// What it gives.
    pub terms: CouponTerms,
    /// A card of the member, for the message (`None`: the member has no card; no message).
    pub card: Option<CardId>,
    /// Who issued it (an operator's token name, or the scheduled job).
    pub operator: String,
}

/// A coupon refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CouponRefusal {
    /// The key was used for another coupon.
    #[error("idempotency key already used for another coupon")]
    KeyReused,
    /// It would expire before it is issued.
    #[error("expires_at must be in the future")]
    Expired,
}

/// The effect of an issued coupon.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CouponRecord {
    /// The coupon (state available).
    pub coupon: Coupon,
    /// Its idempotency key.
    pub key: String,
    /// The card the member's message goes by.
    pub card: Option<CardId>,
    /// Who issued it.
    pub operator: String,
    /// When.
    pub at: UnixMillis,
}

impl Engine {
    /// Issues `issue`, or recognises its repeat: the same key, member, kind and terms (the
    /// expiry aside, which a retry computes from its own time).
    ///
    /// # Errors
    /// [`CouponRefusal`] when the key was used for another coupon or it has expired already.
    pub fn issue_coupon(
        &mut self,
        issue: CouponIssue,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<CreditOutcome, CouponRefusal> {
        if let Some(id) = self.state.coupon_keys.get(&issue.key) {
            let same = self.state.coupons.get(id).is_some_and(|seen| {
                let terms = CouponTerms {
                    expires_at: seen.terms.expires_at,
                    ..issue.terms
                };
                seen.member == issue.member && seen.kind == issue.kind && seen.terms == terms
            });
            return if same {
                Ok(CreditOutcome::Repeated)
            } else {
                Err(CouponRefusal::KeyReused)
            };
        }
        if issue.terms.expires_at <= now {
            return Err(CouponRefusal::Expired);
        }
        let id = CouponId::new(self.state.next_coupon);
        self.state.next_coupon += 1;
        let coupon = Coupon {
            id,
            member: issue.member,
            kind: issue.kind,
            terms: issue.terms,
            state: CouponState::Available,
        };
        self.state.add_coupon(coupon, issue.key.clone());
        effects.push(Effect::CouponIssued(Box::new(CouponRecord {
            coupon,
            key: issue.key,
            card: issue.card,
            operator: issue.operator,
            at: now,
        })));
        Ok(CreditOutcome::Applied)
    }

    /// Moves coupon `id` to `to`, with the effect that makes it durable.
    pub(crate) fn move_coupon(
        &mut self,
        id: CouponId,
        to: CouponState,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(coupon) = self.state.coupons.get_mut(&id) else {
            return;
        };
        let from = coupon.state;
        if from == to {
            return;
        }
        coupon.state = to;
        let member = coupon.member;
        let live = self.state.member_coupons.entry(member).or_default();
        match to {
            CouponState::Available => {
                if !live.contains(&id) {
                    live.push(id);
                }
            }
            CouponState::Held(_) => {}
            CouponState::Used(_) | CouponState::Withdrawn => live.retain(|other| *other != id),
        }
        effects.push(Effect::CouponState {
            coupon: id,
            from,
            to,
            at: now,
        });
    }
}

impl Engine {
    /// A confirm uses the coupon its purchase holds. On the advice path (the hold timed out
    /// and the coupon came back) it is used again if still available; if another purchase
    /// has it by now, the member got its discount twice: recorded for the finance team.
    pub(crate) fn use_coupon(
        &mut self,
        txn: &crate::engine::state::Txn,
        coupon: CouponId,
        amount: Rials,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let state = self.state.coupons.get(&coupon).map(|coupon| coupon.state);
        match state {
            Some(CouponState::Held(holder)) if holder == txn.id => {
                self.move_coupon(coupon, CouponState::Used(txn.id), now, effects);
            }
            Some(CouponState::Available) => {
                self.move_coupon(coupon, CouponState::Used(txn.id), now, effects);
            }
            _ => effects.push(Effect::CouponShortfall {
                txn: txn.id,
                coupon,
                amount,
                at: now,
            }),
        }
    }

    /// A reversal or a timeout gives the coupon back to the member, if this purchase has it.
    pub(crate) fn give_back_coupon(
        &mut self,
        coupon: CouponId,
        txn: TxnId,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        let state = self.state.coupons.get(&coupon).map(|coupon| coupon.state);
        if state.and_then(CouponState::txn) == Some(txn) {
            self.move_coupon(coupon, CouponState::Available, now, effects);
        }
    }
}

impl State {
    /// The best coupon of `member` for a purchase of `gross` at `merchant` at `now`: the
    /// largest discount on G (ties: lowest id), among available coupons that apply.
    pub fn best_coupon(
        &self,
        member: MemberId,
        merchant: MerchantId,
        gross: Rials,
        now: UnixMillis,
    ) -> Option<Coupon> {
        let live = self.member_coupons.get(&member)?;
        let mut best: Option<(Rials, Coupon)> = None;
        for id in live {
            let Some(coupon) = self.coupons.get(id) else {
                continue;
            };
            if coupon.state != CouponState::Available || !coupon.terms.applies(merchant, gross, now)
            {
                continue;
            }
            let gives = pricing::coupon_discount(&coupon.terms, gross, Rials::ZERO);
            let better = best.is_none_or(|(amount, chosen)| {
                gives > amount || (gives == amount && coupon.id < chosen.id)
            });
            if better {
                best = Some((gives, *coupon));
            }
        }
        best.filter(|(amount, _)| *amount > Rials::ZERO)
            .map(|(_, coupon)| coupon)
    }

    /// Registers a coupon (issued now, loaded, or read back from another process).
    pub fn add_coupon(&mut self, coupon: Coupon, key: String) {
        self.coupon_keys.insert(key, coupon.id);
        let live = self.member_coupons.entry(coupon.member).or_default();
        live.retain(|other| *other != coupon.id);
        if !matches!(coupon.state, CouponState::Used(_) | CouponState::Withdrawn) {
            live.push(coupon.id);
        }
        self.next_coupon = self.next_coupon.max(coupon.id.get() + 1);
        self.coupons.insert(coupon.id, coupon);
    }
}
