//! Credits an operator puts on a card outside any purchase: a club top-up (money the member
//! paid into the club's account) or a store-credit grant by a merchant (non-cashable, usable
//! only there). Each carries an idempotency key: the same key with the same content is a
//! repeat and changes nothing; the same key with other content is refused. Like every other
//! change of a balance, a credit goes through the engine, which owns the balances, and is
//! durable before it is answered.

use crate::domain::{CardId, MerchantId, Rials, UnixMillis};
use crate::engine::decide::Engine;
use crate::engine::effect::{Effect, NewLot};
use crate::engine::state::{ClubAccount, LotId, StoreAccount};

/// Longest idempotency key, in bytes.
pub const CREDIT_KEY_BYTES_MAX: usize = 64;

/// A credit to make.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credit {
    /// The caller's idempotency key.
    pub key: String,
    /// The card.
    pub card: CardId,
    /// `None`: the club balance; `Some`: store credit at this merchant.
    pub merchant: Option<MerchantId>,
    /// How much, above zero.
    pub amount: Rials,
    /// When store credit stops being usable (`None`: never); ignored for the club.
    pub expires_at: Option<UnixMillis>,
    /// The operator's name, for the audit row written with it.
    pub operator: String,
    /// The request's fields, for the audit row.
    pub detail: String,
    /// The payment gateway's confirmation of a top-up order this credit pays (docs/top-up.md):
    /// the order's move to `paid` and the callback's row are written with the credit, in its
    /// transaction.
    pub top_up: Option<TopUpPayment>,
}

/// The accepted callback of a top-up order, written with the credit it makes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopUpPayment {
    /// The order's row id.
    pub order: i64,
    /// The gateway's payment reference.
    pub payment_reference: String,
    /// When the callback was received.
    pub received_at: UnixMillis,
    /// SHA-256 of the callback's body, lowercase hex.
    pub body_sha256: String,
}

/// What a credit's key stands for, to tell a repeat from a reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditKey {
    /// The card.
    pub card: CardId,
    /// The merchant (store credit) or `None` (club).
    pub merchant: Option<MerchantId>,
    /// The amount.
    pub amount: Rials,
}

/// A credit accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreditOutcome {
    /// Made now (durable once its batch is).
    Applied,
    /// The same key and content came before: nothing more was made.
    Repeated,
}

/// A credit refused; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CreditRefusal {
    /// The key was used for another card, account or amount.
    #[error("idempotency key already used for another credit")]
    KeyReused,
    /// The amount is zero.
    #[error("amount must be above zero")]
    Zero,
    /// The balance would pass the largest amount a balance may hold.
    #[error("the balance would exceed 999999999999 rials")]
    TooLarge,
}

/// The effect of an applied credit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CreditRecord {
    /// The credit.
    pub credit: Credit,
    /// The store-credit lot it made, if any.
    pub lot: Option<NewLot>,
    /// When.
    pub at: UnixMillis,
}

impl Engine {
    /// Makes `credit`, or recognises its repeat.
    ///
    /// # Errors
    /// [`CreditRefusal`] when the key was used for another credit, the amount is zero, or
    /// the balance would grow past its maximum.
    pub fn credit(
        &mut self,
        credit: Credit,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<CreditOutcome, CreditRefusal> {
        let key = CreditKey {
            card: credit.card,
            merchant: credit.merchant,
            amount: credit.amount,
        };
        if let Some(seen) = self.state.credits.get(&credit.key) {
            return if *seen == key {
                Ok(CreditOutcome::Repeated)
            } else {
                Err(CreditRefusal::KeyReused)
            };
        }
        if credit.amount == Rials::ZERO {
            return Err(CreditRefusal::Zero);
        }
        let lot = match credit.merchant {
            None => {
                let account = self.state.club.entry(credit.card).or_insert(ClubAccount {
                    ledger: Rials::ZERO,
                    held: Rials::ZERO,
                });
                let ledger = account
                    .ledger
                    .checked_add(credit.amount)
                    .ok_or(CreditRefusal::TooLarge)?;
                account.ledger = ledger;
                None
            }
            Some(merchant) => {
                let lot = NewLot {
                    id: LotId(self.state.next_lot),
                    card: credit.card,
                    merchant,
                    amount: credit.amount,
                    expires_at: credit.expires_at,
                };
                // The only fault adding a lot has: the ledger would pass the largest amount.
                self.state
                    .add_lot(lot)
                    .map_err(|_| CreditRefusal::TooLarge)?;
                self.state.next_lot += 1;
                Some(lot)
            }
        };
        self.state.credits.insert(credit.key.clone(), key);
        effects.push(Effect::Credit(Box::new(CreditRecord {
            credit,
            lot,
            at: now,
        })));
        Ok(CreditOutcome::Applied)
    }
}

/// A card's balances moving to its replacement (a new card for the same member: a lost or
/// damaged card). Everything moves: the club balance and every store-credit lot, each lot
/// keeping its merchant, remainder and expiry. A card is replaced at most once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Transfer {
    /// The old card.
    pub from: CardId,
    /// The new card.
    pub to: CardId,
    /// The operator's name, for the audit row.
    pub operator: String,
    /// The request's fields, for the audit row.
    pub detail: String,
}

/// Why balances were not moved; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferRefusal {
    /// The old card was already replaced by another card.
    #[error("this card was already replaced by another card")]
    AlreadyReplaced,
    /// Pending requests hold part of the old card's balances; they end within the confirm
    /// timeout (the old card is blocked, so no new ones start).
    #[error("pending requests hold part of the card's balances; retry after they end")]
    PendingHolds,
    /// The new card's balance would pass the largest amount a balance may hold.
    #[error("the new card's balance would exceed 999999999999 rials")]
    TooLarge,
}

/// The effect of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransferRecord {
    /// The transfer.
    pub transfer: Transfer,
    /// The club balance moved.
    pub club: Rials,
    /// Each store-credit lot emptied on the old card and the lot that replaces it.
    pub lots: Vec<(LotId, NewLot)>,
    /// When.
    pub at: UnixMillis,
}

impl Engine {
    /// Moves every balance of `transfer.from` to `transfer.to`, or recognises a repeat.
    ///
    /// # Errors
    /// [`TransferRefusal`] when the old card was replaced by another, holds remain on it, or
    /// the new card's balance would overflow.
    pub fn transfer(
        &mut self,
        transfer: Transfer,
        now: UnixMillis,
        effects: &mut Vec<Effect>,
    ) -> Result<CreditOutcome, TransferRefusal> {
        if let Some(to) = self.state.replaced.get(&transfer.from) {
            return if *to == transfer.to {
                Ok(CreditOutcome::Repeated)
            } else {
                Err(TransferRefusal::AlreadyReplaced)
            };
        }
        let state = &self.state;
        let club = state.club.get(&transfer.from).copied();
        let accounts: Vec<MerchantId> = state
            .store
            .iter()
            .filter(|((card, _), _)| *card == transfer.from)
            .map(|((_, merchant), _)| *merchant)
            .collect();
        let held_club = club.is_some_and(|account| account.held > Rials::ZERO);
        let held_store = accounts.iter().any(|merchant| {
            state
                .store
                .get(&(transfer.from, *merchant))
                .is_some_and(|account| account.held > Rials::ZERO)
        });
        if held_club || held_store {
            return Err(TransferRefusal::PendingHolds);
        }
        let club_amount = club.map_or(Rials::ZERO, |account| account.ledger);
        let to_ledger = state
            .club
            .get(&transfer.to)
            .map_or(Rials::ZERO, |a| a.ledger);
        let to_club = to_ledger
            .checked_add(club_amount)
            .ok_or(TransferRefusal::TooLarge)?;
        // The new card's store-credit accounts are built on copies, so a ledger that would
        // pass the largest amount refuses the transfer before anything has moved.
        let mut next_lot = self.state.next_lot;
        let mut lots = Vec::new();
        let mut targets = Vec::with_capacity(accounts.len());
        for merchant in &accounts {
            let Some(account) = state.store.get(&(transfer.from, *merchant)) else {
                continue;
            };
            let mut moving = account
                .lots
                .iter()
                .filter(|lot| lot.remaining > Rials::ZERO)
                .peekable();
            if moving.peek().is_none() {
                continue;
            }
            let mut target = state
                .store
                .get(&(transfer.to, *merchant))
                .cloned()
                .unwrap_or_else(StoreAccount::empty);
            for lot in moving {
                let moved = NewLot {
                    id: LotId(next_lot),
                    card: transfer.to,
                    merchant: *merchant,
                    amount: lot.remaining,
                    expires_at: lot.expires_at,
                };
                next_lot += 1;
                // The only fault adding a lot has: the ledger would pass the largest amount.
                target
                    .add_lot(moved)
                    .map_err(|_| TransferRefusal::TooLarge)?;
                lots.push((lot.id, moved));
            }
            targets.push(((transfer.to, *merchant), target));
        }
        // Every check passed; nothing was changed before this point.
        if club_amount > Rials::ZERO {
            if let Some(account) = self.state.club.get_mut(&transfer.from) {
                account.ledger = Rials::ZERO;
            }
            let to = self.state.club.entry(transfer.to).or_insert(ClubAccount {
                ledger: Rials::ZERO,
                held: Rials::ZERO,
            });
            to.ledger = to_club;
        }
        for merchant in accounts {
            if let Some(account) = self.state.store.get_mut(&(transfer.from, merchant)) {
                for lot in account.lots.iter_mut() {
                    lot.remaining = Rials::ZERO;
                }
                account.ledger = Rials::ZERO;
            }
        }
        self.state.store.extend(targets);
        self.state.next_lot = next_lot;
        self.state.replaced.insert(transfer.from, transfer.to);
        effects.push(Effect::Transfer(Box::new(TransferRecord {
            transfer,
            club: club_amount,
            lots,
            at: now,
        })));
        Ok(CreditOutcome::Applied)
    }
}

#[cfg(test)]
mod tests {
    //! Goal: a card's replacement never stops a balance at the largest amount. Method: a new
    //! card whose store credit at a merchant is at the maximum, and an old card with credit
    //! there; the transfer is refused whole.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::engine::decide::EngineConfig;
    use crate::engine::state::State;

    fn lot(id: i64, card: CardId, amount: Rials) -> NewLot {
        NewLot {
            id: LotId(id),
            card,
            merchant: MerchantId::new(3),
            amount,
            expires_at: None,
        }
    }

    /// The moved lot was added with the new card's ledger stopped at the maximum (its lots
    /// then summed past it); the transfer is refused and nothing moves.
    #[test]
    fn a_transfer_past_the_largest_amount_is_refused_whole() {
        let (old, new) = (CardId::new(1), CardId::new(2));
        let mut state = State::default();
        state
            .add_lot(lot(1, old, Rials::new(1_000).unwrap()))
            .unwrap();
        state.add_lot(lot(2, new, Rials::MAX)).unwrap();
        state.next_lot = 3;
        let before = (state.store.clone(), state.club.clone());
        let mut engine = Engine::new(
            state,
            EngineConfig {
                hold_timeout_ms: 120_000,
                answered_window_ms: 86_400_000,
            },
        );
        let transfer = Transfer {
            from: old,
            to: new,
            operator: "test".to_owned(),
            detail: String::new(),
        };
        let mut effects = Vec::new();
        let refused = engine.transfer(transfer, UnixMillis::new(0), &mut effects);
        assert_eq!(refused, Err(TransferRefusal::TooLarge));
        assert!(effects.is_empty());
        assert_eq!(
            (engine.state.store.clone(), engine.state.club.clone()),
            before
        );
        assert_eq!(engine.state.next_lot, 3);
        assert!(engine.state.replaced.is_empty());
    }
}
