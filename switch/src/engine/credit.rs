//! Credits an operator puts on a card outside any purchase: a club top-up (money the member
//! paid into the club's account) or a store-credit grant by a merchant (non-cashable, usable
//! only there). Each carries an idempotency key: the same key with the same content is a
//! repeat and changes nothing; the same key with other content is refused. Like every other
//! change of a balance, a credit goes through the engine, which owns the balances, and is
//! durable before it is answered.

use crate::domain::{CardId, MerchantId, Rials, UnixMillis};
use crate::engine::decide::Engine;
use crate::engine::effect::{Effect, NewLot};
use crate::engine::state::{ClubAccount, LotId};

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
                let ledger = self
                    .state
                    .store
                    .get(&(credit.card, merchant))
                    .map_or(Rials::ZERO, |account| account.ledger);
                ledger
                    .checked_add(credit.amount)
                    .ok_or(CreditRefusal::TooLarge)?;
                let lot = NewLot {
                    id: LotId(self.state.next_lot),
                    card: credit.card,
                    merchant,
                    amount: credit.amount,
                    expires_at: credit.expires_at,
                };
                self.state.next_lot += 1;
                self.state.add_lot(lot);
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
        if to_ledger.checked_add(club_amount).is_none() {
            return Err(TransferRefusal::TooLarge);
        }
        if club_amount > Rials::ZERO {
            if let Some(account) = self.state.club.get_mut(&transfer.from) {
                account.ledger = Rials::ZERO;
            }
            let to = self.state.club.entry(transfer.to).or_insert(ClubAccount {
                ledger: Rials::ZERO,
                held: Rials::ZERO,
            });
            to.ledger = to_ledger.checked_add(club_amount).unwrap_or(Rials::MAX);
        }
        let mut lots = Vec::new();
        for merchant in accounts {
            let Some(account) = self.state.store.get_mut(&(transfer.from, merchant)) else {
                continue;
            };
            let mut moving = Vec::new();
            for lot in account
                .lots
                .iter_mut()
                .filter(|lot| lot.remaining > Rials::ZERO)
            {
                moving.push((lot.id, lot.remaining, lot.expires_at));
                lot.remaining = Rials::ZERO;
            }
            account.ledger = Rials::ZERO;
            for (old, remaining, expires_at) in moving {
                let lot = NewLot {
                    id: LotId(self.state.next_lot),
                    card: transfer.to,
                    merchant,
                    amount: remaining,
                    expires_at,
                };
                self.state.next_lot += 1;
                self.state.add_lot(lot);
                lots.push((old, lot));
            }
        }
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
