//! Tiers earned by activity (docs/loyalty.md): each confirm, and each reversal of a confirmed
//! purchase, recomputes its member's tier from the confirmed purchases of the last
//! [`TIER_WINDOW_DAYS`] days. A change is an effect: the member's earned tier, the promotion or
//! demotion record and its message are written in the same group commit as the confirm or
//! reversal that caused it.

use crate::domain::time::DAY_MS;
use crate::domain::{Activity, CardId, MemberId, Rials, TierId, UnixMillis, TIER_WINDOW_DAYS};
use crate::engine::decide::Engine;
use crate::engine::effect::Effect;
use crate::engine::state::{State, Txn, TxnId, TxnState};
use crate::snapshot::Snapshot;

/// What caused a recompute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TierCause {
    /// A confirm.
    Confirm,
    /// A reversal of a confirmed purchase.
    Reversal,
}

impl TierCause {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TierCause::Confirm => "confirm",
            TierCause::Reversal => "reversal",
        }
    }
}

/// A recompute that changed what the member's activity earns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TierChange {
    /// The member.
    pub member: MemberId,
    /// The card of the transaction (the member's message goes to its member's phone).
    pub card: CardId,
    /// The transaction whose confirm or reversal caused it.
    pub txn: TxnId,
    /// Which.
    pub cause: TierCause,
    /// The tier the activity earns now.
    pub earned: Option<TierId>,
    /// The tier the member held before (the card's given tier counted as a floor).
    pub from: Option<TierId>,
    /// The tier the member holds now.
    pub to: Option<TierId>,
    /// Display name of `to`, for the message.
    pub to_name: Option<String>,
    /// Whether `to` ranks above `from`.
    pub promoted: bool,
    /// When.
    pub at: UnixMillis,
}

impl TierChange {
    /// Whether the tier the member holds changed (else only the earned tier is recorded).
    pub fn is_visible(&self) -> bool {
        self.from != self.to
    }
}

impl Engine {
    /// The tier `card`'s member holds in `snapshot`: the card's given tier, or better if
    /// activity earned it.
    pub fn tier_of(
        &self,
        snapshot: &Snapshot,
        given: Option<TierId>,
        member: MemberId,
    ) -> Option<TierId> {
        if !snapshot.has_tier_ladder() {
            return given;
        }
        let earned = self.state.earned_tiers.get(&member).copied().flatten();
        snapshot.effective_tier(given, earned)
    }

    /// Recomputes the tier of `txn`'s member at `now`, after its confirm or reversal.
    pub(crate) fn recompute_tier(
        &mut self,
        snapshot: &Snapshot,
        txn: &Txn,
        cause: TierCause,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) {
        if !snapshot.has_tier_ladder() {
            return;
        }
        let activity = self.state.activity_of(txn.member, now);
        let earned = snapshot.earned_tier(activity);
        let before = self.state.earned_tiers.get(&txn.member).copied();
        if before == Some(earned) {
            return;
        }
        let given = snapshot.card(txn.card).and_then(|card| card.tier);
        let from = snapshot.effective_tier(given, before.flatten());
        let to = snapshot.effective_tier(given, earned);
        let rank = |id: Option<TierId>| id.and_then(|id| snapshot.tier(id)).map(|tier| tier.rank);
        self.state.earned_tiers.insert(txn.member, earned);
        effects.push(Effect::TierChange(Box::new(TierChange {
            member: txn.member,
            card: txn.card,
            txn: txn.id,
            cause,
            earned,
            from,
            to,
            to_name: to
                .and_then(|id| snapshot.tier(id))
                .map(|tier| tier.name.clone()),
            promoted: rank(to) > rank(from),
            at: now,
        })));
    }
}

impl State {
    /// The member's confirmed activity in the window ending at `now`; entries that have left
    /// the window are dropped (the clock does not go back).
    pub fn activity_of(&mut self, member: MemberId, now: UnixMillis) -> Activity {
        let oldest = now.get() - TIER_WINDOW_DAYS * DAY_MS;
        let mut activity = Activity {
            spend: Rials::ZERO,
            purchases: 0,
        };
        if let Some(entries) = self.activity.get_mut(&member) {
            entries.retain(|entry| entry.0 > oldest);
            for (_, _, gross) in entries.iter() {
                // Only compared with the tiers' thresholds, which are amounts, and recomputed
                // from the entries each time: stopping at `Rials::MAX` changes no tier.
                activity.spend = activity.spend.saturating_add(*gross);
                activity.purchases = activity.purchases.saturating_add(1);
            }
        }
        activity
    }

    /// Counts a confirmed (or settled) purchase in its member's activity, once.
    pub(crate) fn count_activity(&mut self, txn: &Txn) {
        if matches!(txn.state, TxnState::Confirmed | TxnState::Settled) {
            self.add_activity(txn);
        }
    }

    /// Counts `txn` in its member's activity, once, whatever its state says (a confirm counts
    /// the purchase it is capturing).
    pub(crate) fn add_activity(&mut self, txn: &Txn) {
        let entries = self.activity.entry(txn.member).or_default();
        if !entries.iter().any(|entry| entry.1 == txn.id) {
            entries.push((txn.created_at.get(), txn.id, txn.amounts.gross));
        }
    }

    /// Takes a purchase out of its member's activity (reversed, or replaced by a reload).
    pub(crate) fn uncount_activity(&mut self, member: MemberId, id: TxnId) {
        if let Some(entries) = self.activity.get_mut(&member) {
            entries.retain(|entry| entry.1 != id);
        }
    }
}
