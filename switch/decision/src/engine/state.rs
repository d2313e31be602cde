//! The engine's mutable state: balances with their holds, transactions, the idempotency window
//! and reversal tombstones. Rebuilt from the store on start (docs/design.md section 6).

use protocol::{Mti, ProcessingCode, Rrn, Stan};

use crate::domain::{
    CardId, CouponId, MemberId, MerchantId, Rials, RuleId, TerminalRowId, TierId, UnixMillis,
};
use crate::engine::answer::{purchase_answer, AnswerFields, Kept};
use crate::engine::coupon::Coupon;
use crate::engine::pending::PendingHolds;
use crate::engine::txn_table::TxnTable;
use crate::fast_hash::HashMap;

/// Row id of a transaction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TxnId(pub i64);

/// Row id of a store-credit lot.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LotId(pub i64);

/// A message's identity on the wire: (KSI, MTI, STAN, field 7). It keys the idempotency window
/// and, with the original's MTI, finds the original of a confirm or reversal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MessageKey {
    /// Field 53.
    pub ksi: [u8; 16],
    /// The MTI.
    pub mti: Mti,
    /// Field 11.
    pub stan: Stan,
    /// Field 7 as sent.
    pub transmitted: [u8; 10],
}

/// Where a transaction is in its life (docs/design.md section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxnState {
    /// Holds placed, waiting for a confirm.
    Pending,
    /// Holds captured.
    Confirmed,
    /// Cancelled by a reversal.
    Reversed,
    /// The confirm timeout passed and the holds were released.
    Expired,
    /// In a settlement cycle: only the finance team's adjustments can change it.
    Settled,
}

impl TxnState {
    /// The database spelling (settled is `confirmed` with a cycle).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Pending => "pending",
            TxnState::Confirmed | TxnState::Settled => "confirmed",
            TxnState::Reversed => "reversed",
            TxnState::Expired => "expired",
        }
    }
}

/// The amounts pricing gave a purchase (docs/design.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Amounts {
    /// G.
    pub gross: Rials,
    /// Discount.
    pub discount: Rials,
    /// Merchant fee.
    pub fee: Rials,
    /// Store credit used (held, then captured).
    pub store_credit: Rials,
    /// Club balance used (held, then captured).
    pub club: Rials,
    /// Rest by bank card.
    pub bank_rest: Rials,
    /// Cashback to issue on confirm.
    pub cashback: Rials,
}

/// What a confirm drew from the store-credit lots.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capture {
    /// Club balance captured.
    pub club: Rials,
    /// Store credit captured, lot by lot.
    pub lots: Vec<(LotId, Rials)>,
    /// The cashback lot the confirm issued, if any.
    pub cashback_lot: Option<LotId>,
    /// When it was confirmed (zero until then): what settlement's cutoff is compared with.
    pub at: UnixMillis,
}

/// One purchase (0100/0200) and everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Txn {
    /// Row id.
    pub id: TxnId,
    /// The request's key.
    pub key: MessageKey,
    /// Terminal, merchant, card and member.
    pub terminal: TerminalRowId,
    /// The merchant.
    pub merchant: MerchantId,
    /// The card.
    pub card: CardId,
    /// The card's member.
    pub member: MemberId,
    /// Its processing code.
    pub code: ProcessingCode,
    /// Its amounts.
    pub amounts: Amounts,
    /// The rule that priced the discount.
    pub rule: Option<RuleId>,
    /// The member coupon it holds or used, and the part of the discount it gave.
    pub coupon: Option<(CouponId, Rials)>,
    /// The reference-data version that priced it.
    pub snapshot_version: u64,
    /// The RRN the switch assigned.
    pub rrn: Rrn,
    /// Its state.
    pub state: TxnState,
    /// When the request was approved.
    pub created_at: UnixMillis,
    /// When its holds time out.
    pub hold_expires_at: UnixMillis,
    /// What its confirm captured (empty until then).
    pub capture: Capture,
    /// The merchant's local date of `created_at`, in days since 1970-01-01: the day its
    /// rule's per-member daily use counts against.
    pub local_day: i64,
}

impl Txn {
    /// The part of the discount its rule gave (the rest is its coupon's): what counts against
    /// the rule's budget.
    pub fn rule_discount(&self) -> Rials {
        let coupon = self.coupon.map_or(Rials::ZERO, |(_, amount)| amount);
        // Pricing's discount is the rule's plus the coupon's, and the store refuses a row
        // whose coupon part passes its discount (`store::ledger`).
        self.amounts.discount.asserted_sub(
            coupon,
            "a coupon's part of a discount is at most the discount",
        )
    }
}

impl Capture {
    /// Nothing captured yet.
    pub fn none() -> Capture {
        Capture {
            club: Rials::ZERO,
            lots: Vec::new(),
            cashback_lot: None,
            at: UnixMillis::new(0),
        }
    }
}

/// A club balance: the ledger and what pending requests hold of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClubAccount {
    /// Money in the account.
    pub ledger: Rials,
    /// Held by pending requests.
    pub held: Rials,
}

/// A lot of store credit with its own expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lot {
    /// Row id.
    pub id: LotId,
    /// What is left of it.
    pub remaining: Rials,
    /// When it stops being usable; `None` never.
    pub expires_at: Option<UnixMillis>,
}

/// Store credit of one card at one merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreAccount {
    /// Sum of the lots' remaining amounts.
    pub ledger: Rials,
    /// Held by pending requests.
    pub held: Rials,
    /// The lots, in the order they are used: earliest expiry first, never-expiring last.
    pub lots: Vec<Lot>,
}

impl StoreAccount {
    /// Sorts lots into their use order.
    pub fn sort_lots(&mut self) {
        self.lots
            .sort_by_key(|lot| (lot.expires_at.map_or(i64::MAX, UnixMillis::get), lot.id));
    }
}

/// The hash of a message's content that tells a retransmission from a different message under
/// the same key (docs/protocol.md section 7; [`crate::engine::fingerprint`]).
pub type Fingerprint = [u8; 32];

/// An answered message, kept for retransmissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// Hash of the fields that make "the same content" (docs/protocol.md section 7).
    pub fingerprint: Fingerprint,
    /// What was answered; a retransmission's response is built from it again
    /// ([`crate::engine::answer`], [`State::kept_answer`]).
    pub kept: Kept,
    /// When it was answered (for pruning the window).
    pub at: UnixMillis,
}

/// Everything the engine remembers between messages.
#[derive(Debug, Default)]
pub struct State {
    /// Club balances by card.
    pub club: HashMap<CardId, ClubAccount>,
    /// Store credit by card and merchant.
    pub store: HashMap<(CardId, MerchantId), StoreAccount>,
    /// Transactions by id.
    pub txns: TxnTable,
    /// Transactions by their request key, but for those the answered window keeps as
    /// [`Kept::Purchase`] (a new purchase's key is written once, in the window; pruning the
    /// window moves it here). [`State::txn_by_key`] looks in both.
    pub txn_keys: HashMap<MessageKey, TxnId>,
    /// Answered messages within the window.
    pub answered: HashMap<MessageKey, Answered>,
    /// Declines and inquiries answered since start (not durable: they changed nothing).
    pub answered_volatile: HashMap<MessageKey, Answered>,
    /// Pending transactions by (hold expiry in ms, id), for the sweeper.
    pub pending: PendingHolds,
    /// Reversals whose original was never seen.
    pub tombstones: HashMap<MessageKey, UnixMillis>,
    /// Discount given per rule in rials (for budgets), over pending and confirmed
    /// transactions. A sum over any number of transactions, so a total rather than an amount
    /// ([`State::add_rule_spend`]).
    pub rule_spent: HashMap<RuleId, i64>,
    /// Uses per (rule, member, local day number), for daily limits.
    pub rule_uses: HashMap<(RuleId, MemberId, i64), u32>,
    /// Credits made, by idempotency key (kept for good: a key is never reused).
    pub credits: HashMap<String, crate::engine::credit::CreditKey>,
    /// Confirmed purchases per member, as (created at in ms, id, G), for tiers earned by
    /// activity (`engine::tier`); entries older than the window are dropped as they are met.
    pub activity: HashMap<MemberId, Vec<(i64, TxnId, Rials)>>,
    /// The tier each member's activity earned at their last recompute (`None`: none earned);
    /// members never recomputed are absent.
    pub earned_tiers: HashMap<MemberId, Option<TierId>>,
    /// Member coupons by id: available, held and used ones (a used one comes back when its
    /// purchase is reversed).
    pub coupons: HashMap<CouponId, Coupon>,
    /// Each member's coupons that are not used, in no order.
    pub member_coupons: HashMap<MemberId, Vec<CouponId>>,
    /// Coupons by their issue's idempotency key (kept for good: a key is never reused).
    pub coupon_keys: HashMap<String, CouponId>,
    /// Next coupon id.
    pub next_coupon: i64,
    /// Referral rewards by referred member.
    pub referrals: HashMap<MemberId, crate::engine::referral::Referral>,
    /// Replaced cards and their replacements (a card is replaced at most once).
    pub replaced: HashMap<CardId, CardId>,
    /// The newest settlement cycle whose transactions the engine knows are settled.
    pub settled_cycle: i64,
    /// Settlement's fence (Unix ms, journal mode): a confirmed transaction captured before it
    /// is being settled, so its reversal is refused as a settled one's is.
    pub fence_ms: i64,
    /// Next transaction id.
    pub next_txn: i64,
    /// Next lot id.
    pub next_lot: i64,
    /// Next RRN number.
    pub next_rrn: u64,
    /// The store's batch number this state includes (several processes on one database:
    /// `store::shared`); 0 on SQLite.
    pub batch_seq: i64,
}

impl State {
    /// The transaction made by the request of `key`, if any: the answered window names it
    /// while the request is in the window, [`State::txn_keys`] after.
    pub fn txn_by_key(&self, key: &MessageKey) -> Option<TxnId> {
        match self.answered.get(key) {
            Some(Answered {
                kept: Kept::Purchase(id, _),
                ..
            }) => Some(*id),
            _ => self.txn_keys.get(key).copied(),
        }
    }

    /// Forgets answered messages older than `oldest` (Unix ms); a purchase's key stays
    /// known, in [`State::txn_keys`].
    pub fn prune_answered(&mut self, oldest: i64) {
        let mut moved = Vec::new();
        self.answered.retain(|key, answered| {
            let keep = answered.at.get() >= oldest;
            if let (false, Kept::Purchase(id, _)) = (keep, &answered.kept) {
                moved.push((*key, *id));
            }
            keep
        });
        self.txn_keys.extend(moved);
        self.answered_volatile
            .retain(|_, answered| answered.at.get() >= oldest);
    }

    /// The answer an answered-window entry stands for; `None` only when it names a
    /// transaction this state does not hold.
    pub fn kept_answer(&self, kept: &Kept) -> Option<AnswerFields> {
        match kept {
            Kept::Purchase(id, currency) => {
                self.txns.get(id).map(|txn| purchase_answer(txn, *currency))
            }
            Kept::Code(code) => Some(AnswerFields::code(*code)),
            Kept::Fields(answer) => Some(**answer),
        }
    }

    /// Enters an answer read back from the store in the window. Its transaction (the one
    /// with the same key) stands in for it when it gives back the same fields; the
    /// transactions are loaded first.
    pub fn remember_answer(
        &mut self,
        key: MessageKey,
        fingerprint: Fingerprint,
        answer: AnswerFields,
        at: UnixMillis,
    ) {
        let approved = self
            .txn_keys
            .get(&key)
            .and_then(|id| self.txns.get(id))
            .zip(crate::engine::answer::currency_of(&answer));
        let kept = Kept::of(answer, approved);
        if let Kept::Purchase(id, _) = kept {
            // The window names the transaction now; its key moves back when it is pruned.
            if self.txn_keys.get(&key) == Some(&id) {
                self.txn_keys.remove(&key);
            }
        }
        self.answered.insert(
            key,
            Answered {
                fingerprint,
                kept,
                at,
            },
        );
    }

    /// Puts a transaction read back from the store (another process changed it) in place of
    /// the one known, keeping the pending index and the rules' spend in step.
    pub fn replace_txn(&mut self, txn: Txn) {
        if let Some(old) = self.txns.get(&txn.id).cloned() {
            if let Some(rule) = old.rule {
                if let Some(uses) = self.rule_uses.get_mut(&(rule, old.member, old.local_day)) {
                    *uses = uses.saturating_sub(1);
                }
            }
            if old.state == TxnState::Pending {
                self.pending.remove(&(old.hold_expires_at.get(), old.id));
            }
            let counted = matches!(
                old.state,
                TxnState::Pending | TxnState::Confirmed | TxnState::Settled
            );
            if counted {
                self.remove_rule_spend(&old);
            }
            let member = old.member;
            self.uncount_activity(member, txn.id);
        }
        self.track(txn);
    }

    /// Counts `txn`'s rule discount against its rule's budget.
    pub(crate) fn add_rule_spend(&mut self, txn: &Txn) {
        if let Some(rule) = txn.rule {
            let spent = self.rule_spent.entry(rule).or_insert(0);
            // The total is only compared with budgets of at most `Rials::MAX`, so stopping at
            // `i64::MAX` (past nine million of the largest discounts) changes no comparison;
            // nothing is taken out that was not put in.
            *spent = spent.saturating_add(txn.rule_discount().get());
        }
    }

    /// Takes `txn`'s rule discount back out of its rule's spend (released or reversed).
    pub(crate) fn remove_rule_spend(&mut self, txn: &Txn) {
        if let Some(rule) = txn.rule {
            let discount = txn.rule_discount().get();
            let spent = self.rule_spent.entry(rule).or_insert(0);
            assert!(
                *spent >= discount,
                "a rule's spend counts the discount of each of its counted transactions"
            );
            *spent -= discount;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use protocol::{Currency, ResponseCode};

    use super::*;
    use crate::engine::txn_table::tests::txn;

    /// Goal: a purchase's key names its transaction while its answer is in the window and
    /// after the window forgets the answer. Method: a transaction loaded with its own answer
    /// (the window names it, `txn_keys` does not), then the window pruned past it.
    #[test]
    fn a_purchase_key_is_found_in_the_window_and_after_it() {
        let mut state = State::default();
        let purchase = txn(7);
        let key = purchase.key;
        let currency = Currency::parse(b"364").unwrap();
        let answer = purchase_answer(&purchase, currency);
        state.track(purchase);
        state.remember_answer(key, [1; 32], answer, UnixMillis::new(1_000));
        assert!(state.txn_keys.is_empty());
        assert_eq!(
            state.answered.get(&key).map(|answered| &answered.kept),
            Some(&Kept::Purchase(TxnId(7), currency))
        );
        assert_eq!(state.txn_by_key(&key), Some(TxnId(7)));
        state.prune_answered(1_000);
        assert_eq!(
            state.txn_by_key(&key),
            Some(TxnId(7)),
            "answered at the bound"
        );
        state.prune_answered(1_001);
        assert!(state.answered.is_empty());
        assert_eq!(state.txn_keys.get(&key), Some(&TxnId(7)));
        assert_eq!(state.txn_by_key(&key), Some(TxnId(7)));
    }

    /// Goal: an answer its transaction does not give back is kept as itself, and the key stays
    /// in `txn_keys`.
    #[test]
    fn an_answer_that_is_not_the_transactions_keeps_the_key_apart() {
        let mut state = State::default();
        let purchase = txn(8);
        let key = purchase.key;
        state.track(purchase);
        let declined = AnswerFields::code(ResponseCode::parse(b"51").unwrap());
        state.remember_answer(key, [2; 32], declined, UnixMillis::new(5));
        assert_eq!(
            state.answered.get(&key).map(|answered| &answered.kept),
            Some(&Kept::Code(declined.code))
        );
        assert_eq!(state.txn_keys.get(&key), Some(&TxnId(8)));
        assert_eq!(state.txn_by_key(&key), Some(TxnId(8)));
        state.prune_answered(6);
        assert_eq!(state.txn_by_key(&key), Some(TxnId(8)));
    }
}
