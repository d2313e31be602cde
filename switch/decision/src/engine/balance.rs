//! The balance operations, in one place (docs/design.md section 5): holds placed and released,
//! a confirm's capture with the cashback lot it issues, a reversal's return with the claw-back
//! of that cashback, and a store-credit lot added by a credit or a card's replacement.
//!
//! Nothing here clamps. Every step is checked arithmetic, and a step that fails (a release of
//! more than is held, a hold or a take past the ledger, a ledger past [`Rials::MAX`], an
//! account or lot that is not there) is a [`BalanceFault`]. Each operation checks all its
//! steps before it changes anything, so a fault leaves the state as it was: the decision
//! answers `96` ([`crate::engine::Decline::Balance`]) and the shell logs the fault.
//! [`State::place_holds`] and [`State::release_holds`] are each other's mirror.
//!
//! The floors that are business rules are `min`s written where they are decided, with their
//! reason: a confirm on the advice path takes what the balance still has, a claw-back takes
//! what its lot still has, and credit in lots that expired after a hold was placed on them is
//! not available.

use std::fmt;

use crate::domain::{CardId, MerchantId, Rials, UnixMillis};
use crate::engine::effect::{Account, NewLot};
use crate::engine::state::{ClubAccount, Lot, LotId, State, StoreAccount, Txn};

/// Which rule of the balances an operation would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A hold would pass its ledger, or the account already holds more than its ledger.
    HoldOverLedger,
    /// A release frees more than the account holds.
    ReleaseOverHeld,
    /// A capture, return or claw-back takes more than a ledger or a lot has.
    Overdrawn,
    /// A ledger, a hold, a lot or a sum of lots would pass [`Rials::MAX`].
    OverMax,
    /// The account a transaction holds, captured from or returns to is not there.
    NoAccount,
    /// The lot a transaction captured from or issued is not there.
    NoLot,
}

impl Broken {
    /// A short phrase for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Broken::HoldOverLedger => "hold over ledger",
            Broken::ReleaseOverHeld => "release over held",
            Broken::Overdrawn => "overdrawn",
            Broken::OverMax => "over the largest amount",
            Broken::NoAccount => "no such account",
            Broken::NoLot => "no such lot",
        }
    }
}

/// A balance operation refused because it would break the balances' bookkeeping; nothing was
/// changed. Never the result of valid input on a consistent state: a bug, or a state loaded
/// from a database changed outside the switch. It names the card by its row id, never by its
/// number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalanceFault {
    /// The rule the operation would break.
    pub broken: Broken,
    /// The card.
    pub card: CardId,
    /// The merchant of a store-credit account; `None` for the club balance.
    pub merchant: Option<MerchantId>,
    /// The figure the amount was checked against (held, ledger or a lot's remainder).
    pub balance: Rials,
    /// The amount of the operation.
    pub amount: Rials,
}

impl fmt::Display for BalanceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on card {}", self.broken.as_str(), self.card.get())?;
        match self.merchant {
            Some(merchant) => write!(f, " store credit at merchant {}", merchant.get())?,
            None => f.write_str(" club balance")?,
        }
        write!(f, ": balance {}, amount {}", self.balance, self.amount)
    }
}

impl std::error::Error for BalanceFault {}

/// What a pending transaction holds: its club part and its store credit at its merchant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holds {
    /// The card.
    pub card: CardId,
    /// The merchant of the store credit.
    pub merchant: MerchantId,
    /// The club balance held.
    pub club: Rials,
    /// The store credit held.
    pub store_credit: Rials,
}

impl Holds {
    /// What `txn` holds while it is pending (and wants captured on its confirm).
    pub fn of(txn: &Txn) -> Holds {
        Holds {
            card: txn.card,
            merchant: txn.merchant,
            club: txn.amounts.club,
            store_credit: txn.amounts.store_credit,
        }
    }

    /// Nothing held on the same accounts: a transaction whose holds expired.
    pub fn none(self) -> Holds {
        Holds {
            club: Rials::ZERO,
            store_credit: Rials::ZERO,
            ..self
        }
    }
}

/// What a capture took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// Club balance taken.
    pub club: Rials,
    /// Store credit taken, lot by lot.
    pub lots: Vec<(LotId, Rials)>,
    /// What the balances did not cover (the advice path only).
    pub shortfalls: Vec<(Account, Rials)>,
}

/// What a return clawed back of its cashback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Returned {
    /// The cashback lot and what was taken back from it.
    pub clawback: Option<(LotId, Rials)>,
    /// The part of the cashback already spent: an exception, never a negative balance.
    pub clawback_shortfall: Rials,
}

impl State {
    /// The card's club balance less its holds; zero without an account.
    ///
    /// # Errors
    /// [`BalanceFault`] when the account holds more than its ledger.
    pub fn club_available(&self, card: CardId) -> Result<Rials, BalanceFault> {
        match self.club.get(&card) {
            Some(account) => {
                At::club(card).minus(account.ledger, account.held, Broken::HoldOverLedger)
            }
            None => Ok(Rials::ZERO),
        }
    }

    /// The card's store credit at `merchant` usable at `now` (its unexpired lots) less its
    /// holds; zero without an account.
    ///
    /// # Errors
    /// [`BalanceFault`] when the unexpired lots sum past [`Rials::MAX`].
    pub fn store_available(
        &self,
        card: CardId,
        merchant: MerchantId,
        now: UnixMillis,
    ) -> Result<Rials, BalanceFault> {
        let Some(account) = self.store.get(&(card, merchant)) else {
            return Ok(Rials::ZERO);
        };
        let at = At::store(card, merchant);
        let mut usable = Rials::ZERO;
        for lot in &account.lots {
            if lot.expires_at.is_none_or(|expiry| expiry > now) {
                usable = at.plus(usable, lot.remaining)?;
            }
        }
        // Holds count against the whole ledger, and a lot may have expired since a hold was
        // placed on it: what is usable now can be less than what is held, and then nothing is
        // available. A business floor, not a guard.
        Ok(usable.saturating_sub(account.held))
    }

    /// Holds a new purchase's club part and store credit; the mirror of
    /// [`State::release_holds`].
    ///
    /// # Errors
    /// [`BalanceFault`], nothing changed, when an account to hold is not there or a hold would
    /// pass its ledger (pricing covered the parts with what was available, so never).
    pub fn place_holds(&mut self, holds: Holds) -> Result<(), BalanceFault> {
        self.move_holds(holds, |at, ledger, held, amount| {
            at.hold(ledger, held, amount)
        })
    }

    /// Releases what a pending transaction holds (a reversal, or its hold expired); the mirror
    /// of [`State::place_holds`].
    ///
    /// # Errors
    /// [`BalanceFault`], nothing changed, when an account is not there or holds less than the
    /// transaction placed on it.
    pub fn release_holds(&mut self, holds: Holds) -> Result<(), BalanceFault> {
        self.move_holds(holds, |at, _, held, amount| at.release(held, amount))
    }

    /// Moves the held amounts of `holds` on the club and store accounts by `step` (its
    /// arguments: where, the ledger, what is held, the amount; its answer: what is held
    /// after). Every account is checked before any is changed.
    fn move_holds(
        &mut self,
        holds: Holds,
        step: impl Fn(At, Rials, Rials, Rials) -> Result<Rials, BalanceFault>,
    ) -> Result<(), BalanceFault> {
        let mut club = None;
        if holds.club > Rials::ZERO {
            let at = At::club(holds.card);
            let account = self
                .club
                .get_mut(&holds.card)
                .ok_or_else(|| at.fault(Broken::NoAccount, Rials::ZERO, holds.club))?;
            let held = step(at, account.ledger, account.held, holds.club)?;
            club = Some((account, held));
        }
        let mut store = None;
        if holds.store_credit > Rials::ZERO {
            let at = At::store(holds.card, holds.merchant);
            let account = self
                .store
                .get_mut(&(holds.card, holds.merchant))
                .ok_or_else(|| at.fault(Broken::NoAccount, Rials::ZERO, holds.store_credit))?;
            let held = step(at, account.ledger, account.held, holds.store_credit)?;
            store = Some((account, held));
        }
        // Every check passed; nothing was changed before this point.
        if let Some((account, held)) = club {
            account.held = held;
        }
        if let Some((account, held)) = store {
            account.held = held;
        }
        Ok(())
    }

    /// A confirm's capture: releases `held` (what the transaction still holds: all of `wanted`
    /// while pending, nothing once its holds expired), takes `wanted` from the ledgers, and
    /// adds the `cashback` lot.
    ///
    /// # Errors
    /// [`BalanceFault`], nothing changed, when a step would break the balances.
    pub fn capture(
        &mut self,
        wanted: Holds,
        held: Holds,
        cashback: Option<NewLot>,
    ) -> Result<Captured, BalanceFault> {
        assert_eq!(wanted.card, held.card, "a capture releases its own holds");
        assert_eq!(
            wanted.merchant, held.merchant,
            "a capture releases its own holds"
        );
        let (card, merchant) = (wanted.card, wanted.merchant);
        let mut shortfalls = Vec::new();
        let club = self.captured_club(wanted, held, &mut shortfalls)?;
        let touches_store = wanted.store_credit > Rials::ZERO
            || held.store_credit > Rials::ZERO
            || cashback.is_some();
        let mut lots = Vec::new();
        let store = if touches_store {
            let at = At::store(card, merchant);
            let existing = self.store.get(&(card, merchant));
            // Without an account nothing is taken (the wanted part is a shortfall), and one is
            // opened only for a cashback lot.
            let opened = existing.is_some() || cashback.is_some();
            let mut account = match existing {
                Some(account) => account.clone(),
                None if held.store_credit > Rials::ZERO => {
                    return Err(at.fault(Broken::NoAccount, Rials::ZERO, held.store_credit))
                }
                None => StoreAccount::empty(),
            };
            account.held = at.release(account.held, held.store_credit)?;
            let taken = take_lots(at, &mut account, wanted.store_credit, &mut lots)?;
            let short = at.minus(wanted.store_credit, taken, Broken::Overdrawn)?;
            if short > Rials::ZERO {
                shortfalls.push((Account::StoreCredit, short));
            }
            if let Some(lot) = cashback {
                assert_eq!(lot.card, card, "cashback goes to the purchase's card");
                assert_eq!(
                    lot.merchant, merchant,
                    "cashback goes to the purchase's merchant"
                );
                account.add_lot(lot)?;
            }
            opened.then_some(account)
        } else {
            None
        };
        // Every check passed; nothing was changed before this point.
        let club_taken = match club {
            Some((account, taken)) => {
                self.club.insert(card, account);
                taken
            }
            None => Rials::ZERO,
        };
        if let Some(account) = store {
            self.store.insert((card, merchant), account);
        }
        Ok(Captured {
            club: club_taken,
            lots,
            shortfalls,
        })
    }

    /// A reversal's return of what a confirm captured (`club`, `lots`) and claw-back of the
    /// cashback it issued (`clawback`: the lot and its amount).
    ///
    /// # Errors
    /// [`BalanceFault`], nothing changed, when a step would break the balances (a balance
    /// topped up near [`Rials::MAX`] since the capture, a lot that is not there).
    pub fn return_capture(
        &mut self,
        card: CardId,
        merchant: MerchantId,
        club: Rials,
        lots: &[(LotId, Rials)],
        clawback: Option<(LotId, Rials)>,
    ) -> Result<Returned, BalanceFault> {
        let club_account = if club > Rials::ZERO {
            let at = At::club(card);
            // The capture took from this account; a return to a card whose club account is
            // not there (never the case) opens it, as a top-up would.
            let account = self.club.get(&card).copied().unwrap_or(ClubAccount {
                ledger: Rials::ZERO,
                held: Rials::ZERO,
            });
            Some(ClubAccount {
                ledger: at.plus(account.ledger, club)?,
                ..account
            })
        } else {
            None
        };
        let mut returned = Returned {
            clawback: None,
            clawback_shortfall: Rials::ZERO,
        };
        let store = if lots.is_empty() && clawback.is_none() {
            None
        } else {
            let at = At::store(card, merchant);
            let mut account = self
                .store
                .get(&(card, merchant))
                .cloned()
                .ok_or_else(|| at.fault(Broken::NoAccount, Rials::ZERO, Rials::ZERO))?;
            for (id, amount) in lots {
                let lot = find_lot(at, &mut account.lots, *id, *amount)?;
                lot.remaining = at.plus(lot.remaining, *amount)?;
                account.ledger = at.plus(account.ledger, *amount)?;
            }
            if let Some((id, amount)) = clawback {
                returned = claw_back(at, &mut account, id, amount)?;
            }
            Some(account)
        };
        // Every check passed; nothing was changed before this point.
        if let Some(account) = club_account {
            self.club.insert(card, account);
        }
        if let Some(account) = store {
            self.store.insert((card, merchant), account);
        }
        Ok(returned)
    }

    /// Adds a store-credit lot (a grant, a replacement's moved lot).
    ///
    /// # Errors
    /// [`BalanceFault`] ([`Broken::OverMax`]), nothing changed, when the account's ledger
    /// would pass [`Rials::MAX`].
    pub fn add_lot(&mut self, lot: NewLot) -> Result<(), BalanceFault> {
        match self.store.get_mut(&(lot.card, lot.merchant)) {
            Some(account) => account.add_lot(lot),
            None => {
                let mut account = StoreAccount::empty();
                account.add_lot(lot)?;
                self.store.insert((lot.card, lot.merchant), account);
                Ok(())
            }
        }
    }

    /// The club part of a capture, computed on a copy: the account to write back and what
    /// was taken, `None` without an account.
    fn captured_club(
        &self,
        wanted: Holds,
        held: Holds,
        shortfalls: &mut Vec<(Account, Rials)>,
    ) -> Result<Option<(ClubAccount, Rials)>, BalanceFault> {
        let at = At::club(wanted.card);
        let Some(mut account) = self.club.get(&wanted.card).copied() else {
            if held.club > Rials::ZERO {
                return Err(at.fault(Broken::NoAccount, Rials::ZERO, held.club));
            }
            if wanted.club > Rials::ZERO {
                shortfalls.push((Account::Club, wanted.club));
            }
            return Ok(None);
        };
        account.held = at.release(account.held, held.club)?;
        let free = at.minus(account.ledger, account.held, Broken::HoldOverLedger)?;
        // A held capture is covered by its hold. On the advice path (a confirm after the hold
        // expired) the balance may no longer cover the purchase: the capture takes what is
        // free and the rest is a shortfall (docs/design.md section 5). A business rule.
        let taken = wanted.club.min(free);
        let short = wanted.club.saturating_sub(free);
        if short > Rials::ZERO {
            shortfalls.push((Account::Club, short));
        }
        account.ledger = at.minus(account.ledger, taken, Broken::Overdrawn)?;
        Ok(Some((account, taken)))
    }
}

impl StoreAccount {
    /// An account with no credit.
    pub fn empty() -> StoreAccount {
        StoreAccount {
            ledger: Rials::ZERO,
            held: Rials::ZERO,
            lots: Vec::new(),
        }
    }

    /// Adds `lot` (its card and merchant must be this account's): the ledger grows by its
    /// amount.
    ///
    /// # Errors
    /// [`BalanceFault`] ([`Broken::OverMax`]), nothing changed, when the ledger would pass
    /// [`Rials::MAX`].
    pub fn add_lot(&mut self, lot: NewLot) -> Result<(), BalanceFault> {
        let at = At::store(lot.card, lot.merchant);
        self.ledger = at.plus(self.ledger, lot.amount)?;
        self.lots.push(Lot {
            id: lot.id,
            remaining: lot.amount,
            expires_at: lot.expires_at,
        });
        self.sort_lots();
        Ok(())
    }
}

/// Takes up to `wanted` from `account`'s free credit, lot by lot in use order, pushing what
/// each lot gave to `taken`; returns the total.
fn take_lots(
    at: At,
    account: &mut StoreAccount,
    wanted: Rials,
    taken: &mut Vec<(LotId, Rials)>,
) -> Result<Rials, BalanceFault> {
    let free = at.minus(account.ledger, account.held, Broken::HoldOverLedger)?;
    // As for the club: the advice path takes what is free (a business rule).
    let mut left = wanted.min(free);
    let mut total = Rials::ZERO;
    for lot in account.lots.iter_mut() {
        if left == Rials::ZERO {
            break;
        }
        let take = left.min(lot.remaining);
        if take > Rials::ZERO {
            lot.remaining = at.minus(lot.remaining, take, Broken::Overdrawn)?;
            left = at.minus(left, take, Broken::Overdrawn)?;
            total = at.plus(total, take)?;
            taken.push((lot.id, take));
        }
    }
    account.ledger = at.minus(account.ledger, total, Broken::Overdrawn)?;
    Ok(total)
}

/// Takes back up to `amount` of a reversed purchase's cashback from its lot.
fn claw_back(
    at: At,
    account: &mut StoreAccount,
    id: LotId,
    amount: Rials,
) -> Result<Returned, BalanceFault> {
    let free = at.minus(account.ledger, account.held, Broken::HoldOverLedger)?;
    let lot = find_lot(at, &mut account.lots, id, amount)?;
    // The claw-back takes what the lot still has and no pending purchase holds; the part of
    // the cashback already spent is a shortfall for the finance team, never a negative
    // balance (docs/design.md section 5). A business rule.
    let taken = amount.min(lot.remaining).min(free);
    lot.remaining = at.minus(lot.remaining, taken, Broken::Overdrawn)?;
    account.ledger = at.minus(account.ledger, taken, Broken::Overdrawn)?;
    Ok(Returned {
        clawback: Some((id, taken)),
        clawback_shortfall: at.minus(amount, taken, Broken::Overdrawn)?,
    })
}

fn find_lot(at: At, lots: &mut [Lot], id: LotId, amount: Rials) -> Result<&mut Lot, BalanceFault> {
    lots.iter_mut()
        .find(|lot| lot.id == id)
        .ok_or_else(|| at.fault(Broken::NoLot, Rials::ZERO, amount))
}

/// The account a step works on, to name it in a fault.
#[derive(Clone, Copy)]
struct At {
    card: CardId,
    merchant: Option<MerchantId>,
}

impl At {
    fn club(card: CardId) -> At {
        At {
            card,
            merchant: None,
        }
    }

    fn store(card: CardId, merchant: MerchantId) -> At {
        At {
            card,
            merchant: Some(merchant),
        }
    }

    fn fault(self, broken: Broken, balance: Rials, amount: Rials) -> BalanceFault {
        BalanceFault {
            broken,
            card: self.card,
            merchant: self.merchant,
            balance,
            amount,
        }
    }

    /// `balance + amount`, or [`Broken::OverMax`].
    fn plus(self, balance: Rials, amount: Rials) -> Result<Rials, BalanceFault> {
        balance
            .checked_add(amount)
            .ok_or_else(|| self.fault(Broken::OverMax, balance, amount))
    }

    /// `balance − amount`, or `broken`.
    fn minus(self, balance: Rials, amount: Rials, broken: Broken) -> Result<Rials, BalanceFault> {
        balance
            .checked_sub(amount)
            .ok_or_else(|| self.fault(broken, balance, amount))
    }

    /// What is held after holding `amount` more, at most the ledger.
    fn hold(self, ledger: Rials, held: Rials, amount: Rials) -> Result<Rials, BalanceFault> {
        let held = self.plus(held, amount)?;
        if held > ledger {
            return Err(self.fault(Broken::HoldOverLedger, ledger, held));
        }
        Ok(held)
    }

    /// What is held after releasing `amount`.
    fn release(self, held: Rials, amount: Rials) -> Result<Rials, BalanceFault> {
        self.minus(held, amount, Broken::ReleaseOverHeld)
    }
}

#[cfg(test)]
mod tests {
    //! Goal: the balance operations never clamp. A step that would break the bookkeeping is a
    //! fault naming the account, and the whole operation changes nothing; place and release
    //! are mirrors. Method: states built by hand, one account or two, each case compared with
    //! the state before it.
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CARD: CardId = CardId::new(7);
    const MERCHANT: MerchantId = MerchantId::new(3);

    fn rials(value: i64) -> Rials {
        Rials::new(value).unwrap()
    }

    /// A card with `club` rials of club balance and one lot of `store` rials at MERCHANT.
    fn state(club: i64, store: i64) -> State {
        let mut state = State::default();
        state.club.insert(
            CARD,
            ClubAccount {
                ledger: rials(club),
                held: Rials::ZERO,
            },
        );
        state
            .add_lot(NewLot {
                id: LotId(1),
                card: CARD,
                merchant: MERCHANT,
                amount: rials(store),
                expires_at: None,
            })
            .unwrap();
        state
    }

    fn holds(club: i64, store_credit: i64) -> Holds {
        Holds {
            card: CARD,
            merchant: MERCHANT,
            club: rials(club),
            store_credit: rials(store_credit),
        }
    }

    fn balances(state: &State) -> (ClubAccount, StoreAccount) {
        (state.club[&CARD], state.store[&(CARD, MERCHANT)].clone())
    }

    fn cashback(amount: Rials) -> NewLot {
        NewLot {
            id: LotId(2),
            card: CARD,
            merchant: MERCHANT,
            amount,
            expires_at: None,
        }
    }

    #[test]
    fn release_mirrors_place() {
        let mut state = state(1_000, 500);
        let before = balances(&state);
        state.place_holds(holds(400, 300)).unwrap();
        assert_eq!(state.club_available(CARD).unwrap(), rials(600));
        assert_eq!(
            state
                .store_available(CARD, MERCHANT, UnixMillis::new(0))
                .unwrap(),
            rials(200)
        );
        state.release_holds(holds(400, 300)).unwrap();
        assert_eq!(balances(&state), before);
    }

    /// A release of more than is held was a silent zero; it is a fault, and neither account
    /// changes, even the one whose release alone would pass.
    #[test]
    fn a_release_of_more_than_is_held_is_a_fault() {
        let mut state = state(1_000, 500);
        state.place_holds(holds(400, 300)).unwrap();
        let before = balances(&state);
        let fault = state.release_holds(holds(400, 301)).unwrap_err();
        assert_eq!(
            fault,
            BalanceFault {
                broken: Broken::ReleaseOverHeld,
                card: CARD,
                merchant: Some(MERCHANT),
                balance: rials(300),
                amount: rials(301),
            }
        );
        assert_eq!(balances(&state), before);
        let fault = state.release_holds(holds(401, 0)).unwrap_err();
        assert_eq!(
            (fault.broken, fault.merchant),
            (Broken::ReleaseOverHeld, None)
        );
        assert_eq!(balances(&state), before);
    }

    #[test]
    fn a_hold_over_the_ledger_is_a_fault_and_holds_nothing() {
        let mut state = state(1_000, 500);
        let before = balances(&state);
        let fault = state.place_holds(holds(400, 501)).unwrap_err();
        assert_eq!(fault.broken, Broken::HoldOverLedger);
        assert_eq!(
            balances(&state),
            before,
            "the club hold was not placed either"
        );
        let fault = state
            .place_holds(Holds {
                card: CardId::new(8),
                ..holds(1, 0)
            })
            .unwrap_err();
        assert_eq!(fault.broken, Broken::NoAccount);
    }

    /// A cashback lot that would take the store ledger past the largest amount was added with
    /// the ledger stopped at the maximum (the lots then summed past their ledger). It is a
    /// fault, and the club part of the same capture is not taken either.
    #[test]
    fn a_capture_past_the_largest_amount_is_a_fault_and_takes_nothing() {
        let mut state = state(1_000, 999_999_999_000);
        state.place_holds(holds(400, 0)).unwrap();
        let before = balances(&state);
        let fault = state
            .capture(holds(400, 0), holds(400, 0), Some(cashback(rials(1_000))))
            .unwrap_err();
        assert_eq!(fault.broken, Broken::OverMax);
        assert_eq!(fault.balance, rials(999_999_999_000));
        assert_eq!(balances(&state), before);
        let captured = state
            .capture(holds(400, 0), holds(400, 0), Some(cashback(rials(999))))
            .unwrap();
        assert_eq!(captured.club, rials(400));
        let (club, store) = balances(&state);
        assert_eq!((club.ledger, club.held), (rials(600), Rials::ZERO));
        assert_eq!(store.ledger, Rials::MAX);
    }

    /// On the advice path (the hold expired) what the balance no longer covers is a
    /// shortfall: a business floor, written as one.
    #[test]
    fn an_advice_capture_takes_what_is_free_and_records_the_rest() {
        let mut state = state(300, 100);
        let captured = state
            .capture(holds(500, 250), holds(500, 250).none(), None)
            .unwrap();
        assert_eq!(captured.club, rials(300));
        assert_eq!(captured.lots, vec![(LotId(1), rials(100))]);
        assert_eq!(
            captured.shortfalls,
            vec![
                (Account::Club, rials(200)),
                (Account::StoreCredit, rials(150))
            ]
        );
        let (club, store) = balances(&state);
        assert_eq!((club.ledger, store.ledger), (Rials::ZERO, Rials::ZERO));
    }

    /// A return to a balance topped up near the largest amount since the capture was stopped
    /// at the maximum; it is a fault, and nothing is returned or clawed back.
    #[test]
    fn a_return_past_the_largest_amount_is_a_fault() {
        let mut state = state(999_999_999_000, 500);
        let before = balances(&state);
        let fault = state
            .return_capture(
                CARD,
                MERCHANT,
                rials(1_000),
                &[(LotId(1), rials(100))],
                Some((LotId(1), rials(50))),
            )
            .unwrap_err();
        assert_eq!((fault.broken, fault.merchant), (Broken::OverMax, None));
        assert_eq!(balances(&state), before);
        let fault = state
            .return_capture(CARD, MERCHANT, Rials::ZERO, &[(LotId(9), rials(100))], None)
            .unwrap_err();
        assert_eq!(fault.broken, Broken::NoLot);
        assert_eq!(balances(&state), before);
    }

    /// The claw-back takes what the cashback lot still has; the rest is a shortfall.
    #[test]
    fn a_claw_back_takes_what_the_lot_has() {
        let mut state = state(0, 500);
        state.place_holds(holds(0, 450)).unwrap();
        let returned = state
            .return_capture(
                CARD,
                MERCHANT,
                Rials::ZERO,
                &[],
                Some((LotId(1), rials(80))),
            )
            .unwrap();
        assert_eq!(
            returned.clawback,
            Some((LotId(1), rials(50))),
            "what no hold covers"
        );
        assert_eq!(returned.clawback_shortfall, rials(30));
        let (_, store) = balances(&state);
        assert_eq!((store.ledger, store.held), (rials(450), rials(450)));
    }

    /// Holds count against the whole ledger; credit in a lot that expired after a hold was
    /// placed on it is not available, and nothing less than zero is.
    #[test]
    fn expired_credit_under_a_hold_leaves_nothing_available() {
        let mut state = state(0, 0);
        state
            .add_lot(NewLot {
                expires_at: Some(UnixMillis::new(1_000)),
                ..cashback(rials(400))
            })
            .unwrap();
        state.place_holds(holds(0, 300)).unwrap();
        let at = |millis| state.store_available(CARD, MERCHANT, UnixMillis::new(millis));
        assert_eq!(at(999).unwrap(), rials(100));
        assert_eq!(at(1_000).unwrap(), Rials::ZERO);
    }

    #[test]
    fn a_lot_past_the_largest_amount_is_refused_whole() {
        let mut state = state(0, 999_999_999_999);
        let before = balances(&state);
        let fault = state.add_lot(cashback(rials(1))).unwrap_err();
        assert_eq!(fault.broken, Broken::OverMax);
        assert_eq!(balances(&state), before);
    }

    use proptest::prelude::*;

    /// One step of the property test: an amount is small (the usual case) or near the largest
    /// (to reach the faults).
    #[derive(Debug, Clone)]
    enum Step {
        /// A purchase holds.
        Place(i64, i64),
        /// The n-th pending purchase is reversed before its confirm.
        Release(usize),
        /// A release of more than is held (a corrupt row).
        ReleaseAny(i64, i64),
        /// The n-th pending purchase is confirmed, with a cashback lot; `expired`: its holds
        /// were swept first and it is captured on the advice path.
        Capture(usize, Option<i64>, bool),
        /// The n-th capture is reversed: its takings back, its cashback clawed back.
        Return(usize),
        /// An operator's credit.
        AddLot(i64),
    }

    fn amount() -> impl Strategy<Value = i64> {
        prop_oneof![
            8 => 0_i64..2_000,
            1 => 999_999_998_000_i64..=999_999_999_999,
        ]
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (amount(), amount()).prop_map(|(club, store)| Step::Place(club, store)),
            (0_usize..8).prop_map(Step::Release),
            (amount(), amount()).prop_map(|(club, store)| Step::ReleaseAny(club, store)),
            (0_usize..8, proptest::option::of(amount()), any::<bool>())
                .prop_map(|(n, cashback, expired)| Step::Capture(n, cashback, expired)),
            (0_usize..8).prop_map(Step::Return),
            amount().prop_map(Step::AddLot),
        ]
    }

    fn sum(lots: &[(LotId, Rials)]) -> i64 {
        lots.iter().map(|(_, amount)| amount.get()).sum()
    }

    /// Every invariant of the two accounts, with what the holds of the pending purchases add
    /// up to and what the money should total.
    fn check(state: &State, pending: &[Holds], total: i64) {
        let (club, store) = balances(state);
        assert!(
            club.held <= club.ledger,
            "club hold over its ledger: {club:?}"
        );
        assert!(
            store.held <= store.ledger,
            "store hold over its ledger: {store:?}"
        );
        let lots: i64 = store.lots.iter().map(|lot| lot.remaining.get()).sum();
        assert_eq!(
            store.ledger.get(),
            lots,
            "the store ledger is its lots' sum"
        );
        let held_club: i64 = pending.iter().map(|holds| holds.club.get()).sum();
        let held_store: i64 = pending.iter().map(|holds| holds.store_credit.get()).sum();
        assert_eq!(club.held.get(), held_club, "club held = the pending holds");
        assert_eq!(
            store.held.get(),
            held_store,
            "store held = the pending holds"
        );
        assert_eq!(
            club.ledger.get() + store.ledger.get(),
            total,
            "money is conserved"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Every balance operation, in any order, with any amounts, either keeps every
        /// invariant (holds within ledgers, the store ledger the sum of its lots, what is held
        /// the sum of the pending holds, the money total moved only by what the operation
        /// reports) or is refused as a fault with both accounts exactly as they were.
        #[test]
        fn every_operation_keeps_the_invariants_or_changes_nothing(
            start in (amount(), amount()),
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let mut state = state(start.0, start.1);
            let mut total = start.0 + start.1;
            let mut pending: Vec<Holds> = Vec::new();
            let mut captures: Vec<(Captured, Option<NewLot>)> = Vec::new();
            let mut next_lot = 10;
            for step in steps {
                let mut before = balances(&state);
                let result: Result<(), BalanceFault> = match step.clone() {
                    Step::Place(club, store) => {
                        let wanted = holds(club, store);
                        state.place_holds(wanted).map(|()| pending.push(wanted))
                    }
                    Step::Release(n) if n < pending.len() => {
                        let holds = pending.remove(n);
                        let released = state.release_holds(holds);
                        prop_assert!(released.is_ok(), "a pending purchase's holds release");
                        released
                    }
                    Step::Release(_) => Ok(()),
                    Step::ReleaseAny(club, store) => {
                        // More than is held on one account: a fault, whatever the other.
                        let (club_account, store_account) = balances(&state);
                        let over = if club % 2 == 0 {
                            holds((club_account.held.get() + 1 + club).min(999_999_999_999), store)
                        } else {
                            holds(club, (store_account.held.get() + 1 + store).min(999_999_999_999))
                        };
                        let released = state.release_holds(over);
                        prop_assert!(released.is_err(), "released more than is held: {:?}", over);
                        released
                    }
                    Step::Capture(n, back, expired) if n < pending.len() => {
                        let wanted = pending[n];
                        if expired {
                            state.release_holds(wanted).map_err(|fault| {
                                TestCaseError::fail(format!("sweep: {fault}"))
                            })?;
                            pending.remove(n);
                            check(&state, &pending, total);
                            // The sweep is a step of its own; the capture starts from here.
                            before = balances(&state);
                        }
                        let held = if expired { wanted.none() } else { wanted };
                        let lot = back.map(|amount| {
                            next_lot += 1;
                            NewLot { id: LotId(next_lot), ..cashback(rials(amount)) }
                        });
                        state.capture(wanted, held, lot).map(|captured| {
                            total -= captured.club.get() + sum(&captured.lots);
                            total += lot.map_or(0, |lot| lot.amount.get());
                            if !expired {
                                pending.remove(n);
                            }
                            captures.push((captured, lot));
                        })
                    }
                    Step::Capture(..) => Ok(()),
                    Step::Return(n) if n < captures.len() => {
                        let (captured, lot) = captures[n].clone();
                        let clawback = lot.map(|lot| (lot.id, lot.amount));
                        state
                            .return_capture(CARD, MERCHANT, captured.club, &captured.lots, clawback)
                            .map(|returned| {
                                total += captured.club.get() + sum(&captured.lots);
                                total -= returned.clawback.map_or(0, |(_, taken)| taken.get());
                                let wanted = clawback.map_or(0, |(_, amount)| amount.get());
                                let taken = returned.clawback.map_or(0, |(_, taken)| taken.get());
                                assert_eq!(taken + returned.clawback_shortfall.get(), wanted);
                                captures.remove(n);
                            })
                    }
                    Step::Return(_) => Ok(()),
                    Step::AddLot(amount) => {
                        next_lot += 1;
                        let lot = NewLot { id: LotId(next_lot), ..cashback(rials(amount)) };
                        state.add_lot(lot).map(|()| total += amount)
                    }
                };
                if result.is_err() {
                    prop_assert_eq!(balances(&state), before, "a fault changed {:?}", step);
                }
                check(&state, &pending, total);
            }
        }
    }
}
