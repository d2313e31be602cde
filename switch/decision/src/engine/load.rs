//! Rows read back from the store, applied to the engine's state: into an empty state at
//! start-up and after a failed commit, and over the current one for the batches another
//! process wrote (several processes on one PostgreSQL database). The store reads rows and
//! hands them over one at a time; the state keeps its own invariants as they arrive: lots in
//! use order, and its next transaction, lot and RRN numbers past every one loaded.

use crate::domain::{CardId, MemberId, Rials, TierId, UnixMillis};
use crate::engine::credit::CreditKey;
use crate::engine::referral::Referral;
use crate::engine::state::{ClubAccount, Lot, MessageKey, State, StoreAccount, Txn};

impl State {
    /// Makes room for `club` club accounts and `store` store-credit accounts (a whole load).
    pub fn reserve_accounts(&mut self, club: usize, store: usize) {
        self.club.reserve(club);
        self.store.reserve(store);
    }

    /// A card's club account as stored.
    pub fn load_club(&mut self, card: CardId, account: ClubAccount) {
        self.club.insert(card, account);
    }

    /// A store-credit account's ledger and holds as stored; an account already loaded keeps
    /// its lots (they come one by one, [`State::load_lot`]).
    pub fn load_store_account(
        &mut self,
        card: CardId,
        merchant: crate::domain::MerchantId,
        ledger: Rials,
        held: Rials,
    ) {
        let account = self
            .store
            .entry((card, merchant))
            .or_insert_with(StoreAccount::empty);
        account.ledger = ledger;
        account.held = held;
    }

    /// A lot of the store-credit account of `card` at `merchant`, as stored (replacing the
    /// lot of the same id), kept in use order. `false`, and nothing loaded, when the account
    /// is not loaded.
    pub fn load_lot(
        &mut self,
        card: CardId,
        merchant: crate::domain::MerchantId,
        lot: Lot,
    ) -> bool {
        self.next_lot = self.next_lot.max(lot.id.0 + 1);
        let Some(account) = self.store.get_mut(&(card, merchant)) else {
            return false;
        };
        match account.lots.iter_mut().find(|known| known.id == lot.id) {
            Some(known) => *known = lot,
            None => account.lots.push(lot),
        }
        account.sort_lots();
        true
    }

    /// A transaction as stored, into a state loading from empty.
    pub fn load_txn(&mut self, txn: Txn) {
        self.count_ids(&txn);
        self.track(txn);
    }

    /// A transaction as stored, over the state's own copy if it has one (another process
    /// changed it).
    pub fn refresh_txn(&mut self, txn: Txn) {
        self.count_ids(&txn);
        self.replace_txn(txn);
    }

    fn count_ids(&mut self, txn: &Txn) {
        self.next_txn = self.next_txn.max(txn.id.0 + 1);
        let rrn = txn.rrn.as_str().parse::<u64>().unwrap_or(0);
        self.next_rrn = self.next_rrn.max(rrn + 1);
    }

    /// A reversal whose original was never seen, as stored.
    pub fn load_tombstone(&mut self, key: MessageKey, at: UnixMillis) {
        self.tombstones.insert(key, at);
    }

    /// An operator's credit, by its idempotency key.
    pub fn load_credit(&mut self, idempotency_key: String, credit: CreditKey) {
        self.credits.insert(idempotency_key, credit);
    }

    /// A card replaced by another.
    pub fn load_replacement(&mut self, from: CardId, to: CardId) {
        self.replaced.insert(from, to);
    }

    /// A referral reward, by the member referred.
    pub fn load_referral(&mut self, referred: MemberId, referral: Referral) {
        self.referrals.insert(referred, referral);
    }

    /// The tier a member's activity earned at their last recompute.
    pub fn load_earned_tier(&mut self, member: MemberId, tier: Option<TierId>) {
        self.earned_tiers.insert(member, tier);
    }

    /// Ends a load from empty: the next transaction, lot and RRN numbers start at 1 when
    /// nothing was loaded.
    pub fn finish_loading(&mut self) {
        self.next_txn = self.next_txn.max(1);
        self.next_lot = self.next_lot.max(1);
        self.next_rrn = self.next_rrn.max(1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::MerchantId;
    use crate::engine::state::LotId;

    fn lot(id: i64, remaining: i64, expires_at: Option<i64>) -> Lot {
        Lot {
            id: LotId(id),
            remaining: Rials::new(remaining).unwrap(),
            expires_at: expires_at.map(UnixMillis::new),
        }
    }

    #[test]
    fn lots_arrive_in_any_order_and_are_kept_in_use_order() {
        let (card, merchant) = (CardId::new(1), MerchantId::new(2));
        let mut state = State::default();
        assert!(
            !state.load_lot(card, merchant, lot(9, 5, None)),
            "no account yet"
        );
        state.load_store_account(card, merchant, Rials::new(60).unwrap(), Rials::ZERO);
        assert!(state.load_lot(card, merchant, lot(3, 10, None)));
        assert!(state.load_lot(card, merchant, lot(7, 20, Some(2_000))));
        assert!(state.load_lot(card, merchant, lot(5, 30, Some(1_000))));
        // A refresh: the lot of the same id is replaced, the account keeps its lots.
        assert!(state.load_lot(card, merchant, lot(7, 25, Some(2_000))));
        state.load_store_account(card, merchant, Rials::new(65).unwrap(), Rials::ZERO);
        state.finish_loading();
        let account = &state.store[&(card, merchant)];
        let ids: Vec<i64> = account.lots.iter().map(|lot| lot.id.0).collect();
        assert_eq!(ids, [5, 7, 3], "earliest expiry first, never-expiring last");
        assert_eq!(account.lots[1].remaining, Rials::new(25).unwrap());
        assert_eq!(account.ledger, Rials::new(65).unwrap());
        assert_eq!(
            state.next_lot, 10,
            "past every lot seen, even one not loaded"
        );
    }

    #[test]
    fn an_empty_load_starts_numbering_at_one() {
        let mut state = State::default();
        state.finish_loading();
        assert_eq!((state.next_txn, state.next_lot, state.next_rrn), (1, 1, 1));
    }
}
