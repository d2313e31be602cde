//! The funding split: how G minus the discount is paid (docs/design.md section 4, steps 2 to 4).

use crate::domain::Rials;

/// How the customer pays, as chosen by the processing code (docs/protocol.md section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Funding {
    /// `000000`: bank card only; store credit and club are not touched.
    BankOnly,
    /// `006100`: store credit at this merchant first, the rest by bank card.
    BankWithStoreCredit,
    /// `006500`: club balance only; it must cover the whole rest.
    Club,
    /// `006600`: store credit only; it must cover the whole rest.
    StoreCredit,
    /// `006700`: store credit first, then club balance, which must cover what remains.
    Mixed,
}

impl Funding {
    /// Whether this funding may draw on the card's club balance.
    pub fn uses_club(self) -> bool {
        matches!(self, Funding::Club | Funding::Mixed)
    }

    /// Whether this funding may draw on the card's store credit at the merchant.
    pub fn uses_store_credit(self) -> bool {
        matches!(
            self,
            Funding::BankWithStoreCredit | Funding::StoreCredit | Funding::Mixed
        )
    }
}

/// A balance that must cover part of a purchase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// The card's club (rial) balance.
    Club,
    /// The card's store credit at this merchant.
    StoreCredit,
}

/// A funding that cannot cover what it must (response `51`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{account:?} balance covers {available} of {needed} rials")]
pub struct Shortfall {
    /// The balance that falls short.
    pub account: Account,
    /// What it had to cover.
    pub needed: Rials,
    /// What it has available.
    pub available: Rials,
}

/// How G is paid. Built only by [`split`], so `G = discount + store credit + club + bank rest`
/// always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    discount: Rials,
    store_credit: Rials,
    club: Rials,
    bank_rest: Rials,
}

impl Split {
    /// The discount.
    pub fn discount(&self) -> Rials {
        self.discount
    }

    /// Store credit used.
    pub fn store_credit(&self) -> Rials {
        self.store_credit
    }

    /// Club balance used.
    pub fn club(&self) -> Rials {
        self.club
    }

    /// What the bank card pays.
    pub fn bank_rest(&self) -> Rials {
        self.bank_rest
    }

    /// The four parts: discount, store credit, club, bank rest.
    pub fn parts(&self) -> [Rials; 4] {
        [self.discount, self.store_credit, self.club, self.bank_rest]
    }

    /// The sum of the parts, which is G. `None` cannot happen for a split of a valid G.
    pub fn total(&self) -> Option<Rials> {
        self.parts()
            .into_iter()
            .try_fold(Rials::ZERO, Rials::checked_add)
    }

    /// What the member paid with money: club + bank rest, the base of cashback.
    ///
    /// # Panics
    /// When the sum passes [`Rials::MAX`]: both are parts of one G ([`split`] asserts they add
    /// up to it), so only a bug does that.
    pub fn member_paid(&self) -> Rials {
        self.club
            .asserted_add(self.bank_rest, "club and bank rest are parts of one G")
    }
}

/// Splits `gross` after `discount` for `funding`:
/// store credit used is `min(available, rest)` where the funding uses it, club covers what
/// remains where the funding uses it, and the bank card pays the remainder only for the bank
/// fundings. No rounding happens here: every part is a whole number of rials.
///
/// # Errors
/// [`Shortfall`] when club (006500, 006700) or store credit (006600) cannot cover its part.
///
/// # Panics
/// When `discount > gross`, or when the result breaks `G = sum of parts` (a bug).
pub fn split(
    gross: Rials,
    discount: Rials,
    store_credit_available: Rials,
    club_available: Rials,
    funding: Funding,
) -> Result<Split, Shortfall> {
    let rest = gross.asserted_sub(discount, "the discount is at most G");
    let (store_credit, club, bank_rest) = match funding {
        Funding::BankOnly => (Rials::ZERO, Rials::ZERO, rest),
        Funding::BankWithStoreCredit => {
            let store_credit = store_credit_available.min(rest);
            (
                store_credit,
                Rials::ZERO,
                after_store_credit(rest, store_credit),
            )
        }
        Funding::Club => {
            let club = cover(Account::Club, rest, club_available)?;
            (Rials::ZERO, club, Rials::ZERO)
        }
        Funding::StoreCredit => {
            let store_credit = cover(Account::StoreCredit, rest, store_credit_available)?;
            (store_credit, Rials::ZERO, Rials::ZERO)
        }
        Funding::Mixed => {
            let store_credit = store_credit_available.min(rest);
            let club = cover(
                Account::Club,
                after_store_credit(rest, store_credit),
                club_available,
            )?;
            (store_credit, club, Rials::ZERO)
        }
    };
    let split = Split {
        discount,
        store_credit,
        club,
        bank_rest,
    };
    // Postcondition of docs/design.md section 4; tests/pricing.rs hunts for a breach.
    assert_eq!(split.total(), Some(gross));
    assert!(store_credit <= store_credit_available);
    assert!(club <= club_available);
    Ok(split)
}

/// `needed` when `available` covers it.
fn cover(account: Account, needed: Rials, available: Rials) -> Result<Rials, Shortfall> {
    if available >= needed {
        Ok(needed)
    } else {
        Err(Shortfall {
            account,
            needed,
            available,
        })
    }
}

/// `rest − store_credit` where the store credit used is `min(available, rest)`.
fn after_store_credit(rest: Rials, store_credit: Rials) -> Rials {
    rest.asserted_sub(store_credit, "the store credit used is at most the rest")
}
