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
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
                self.state.add_credit_lot(lot);
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
