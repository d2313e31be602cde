//! Field 54, additional amounts: sets of 20 characters, account type (2) + amount type (2) +
//! currency (3) + sign `C`/`D` (1) + amount (12) (docs/protocol.md section 5).

use bytes::{BufMut, BytesMut};

use crate::field::parse_digits;
use crate::ids::{Amount, Currency, Malformed};

/// Characters in one amount set.
pub const SET_BYTES: usize = 20;
/// Most amount sets a field 54 of 120 characters holds.
pub const SETS_MAX: usize = 6;

/// Credit (`C`, counted positive) or debit (`D`, counted negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    /// `C`.
    Credit,
    /// `D`.
    Debit,
}

/// What an amount set means: its account type and amount type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountKind {
    /// `00 40` discount, `C`.
    Discount,
    /// `00 41` merchant fee, `D`.
    MerchantFee,
    /// `66 42` store credit used, `D`.
    StoreCreditUsed,
    /// `65 43` club balance used, `D`.
    ClubUsed,
    /// `00 44` rest to pay by bank card, `D`.
    BankRest,
    /// `66 45` store credit to be earned on confirm, `C`.
    Cashback,
    /// `65 01` club ledger balance.
    ClubLedger,
    /// `65 02` club available balance.
    ClubAvailable,
    /// `66 01` store-credit ledger balance.
    StoreCreditLedger,
    /// `66 02` store-credit available balance.
    StoreCreditAvailable,
}

impl AmountKind {
    const ALL: [AmountKind; 10] = [
        AmountKind::Discount,
        AmountKind::MerchantFee,
        AmountKind::StoreCreditUsed,
        AmountKind::ClubUsed,
        AmountKind::BankRest,
        AmountKind::Cashback,
        AmountKind::ClubLedger,
        AmountKind::ClubAvailable,
        AmountKind::StoreCreditLedger,
        AmountKind::StoreCreditAvailable,
    ];

    /// Account type and amount type, 4 ASCII digits.
    pub fn as_bytes(self) -> &'static [u8; 4] {
        match self {
            AmountKind::Discount => b"0040",
            AmountKind::MerchantFee => b"0041",
            AmountKind::StoreCreditUsed => b"6642",
            AmountKind::ClubUsed => b"6543",
            AmountKind::BankRest => b"0044",
            AmountKind::Cashback => b"6645",
            AmountKind::ClubLedger => b"6501",
            AmountKind::ClubAvailable => b"6502",
            AmountKind::StoreCreditLedger => b"6601",
            AmountKind::StoreCreditAvailable => b"6602",
        }
    }

    /// The sign LSTI-1 gives this kind.
    pub fn sign(self) -> Sign {
        match self {
            AmountKind::MerchantFee
            | AmountKind::StoreCreditUsed
            | AmountKind::ClubUsed
            | AmountKind::BankRest => Sign::Debit,
            AmountKind::Discount
            | AmountKind::Cashback
            | AmountKind::ClubLedger
            | AmountKind::ClubAvailable
            | AmountKind::StoreCreditLedger
            | AmountKind::StoreCreditAvailable => Sign::Credit,
        }
    }

    fn parse(bytes: &[u8]) -> Option<AmountKind> {
        AmountKind::ALL
            .into_iter()
            .find(|kind| kind.as_bytes() == bytes)
    }
}

/// One amount set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmountSet {
    /// What it means.
    pub kind: AmountKind,
    /// Its currency (field 49's).
    pub currency: Currency,
    /// Its sign as sent.
    pub sign: Sign,
    /// The amount.
    pub amount: Amount,
}

impl AmountSet {
    /// A set of `kind` with the sign LSTI-1 gives it.
    pub fn new(kind: AmountKind, currency: Currency, amount: Amount) -> AmountSet {
        AmountSet {
            kind,
            currency,
            sign: kind.sign(),
            amount,
        }
    }

    /// Appends the 20 characters.
    pub fn write(&self, out: &mut BytesMut) {
        out.put_slice(&self.encode());
    }

    /// The 20 characters.
    pub fn encode(&self) -> [u8; SET_BYTES] {
        self.to_bytes(&self.currency.to_digits())
    }

    /// The 20 characters, with the currency's digits given (a purchase's six sets share them).
    fn to_bytes(self, currency: &[u8; 3]) -> [u8; SET_BYTES] {
        let mut set = [0_u8; SET_BYTES];
        let (kind, rest) = set.split_at_mut(4);
        kind.copy_from_slice(self.kind.as_bytes());
        let (digits, rest) = rest.split_at_mut(3);
        digits.copy_from_slice(currency);
        let (sign, amount) = rest.split_at_mut(1);
        sign.fill(match self.sign {
            Sign::Credit => b'C',
            Sign::Debit => b'D',
        });
        amount.copy_from_slice(&self.amount.to_digits());
        set
    }
}

/// The amounts of an approved purchase (0110/0210), written in the order docs/protocol.md section 5
/// fixes, zero amounts included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurchaseAmounts {
    /// Discount.
    pub discount: Amount,
    /// Merchant fee.
    pub fee: Amount,
    /// Store credit used.
    pub store_credit: Amount,
    /// Club balance used.
    pub club: Amount,
    /// Rest by bank card.
    pub bank_rest: Amount,
    /// Cashback to be earned on confirm.
    pub cashback: Amount,
}

impl PurchaseAmounts {
    /// Appends the six sets (120 characters), in one copy.
    pub fn write(&self, currency: Currency, out: &mut BytesMut) {
        out.put_slice(&self.encode(currency));
    }

    /// The six sets (120 characters).
    pub fn encode(&self, currency: Currency) -> [u8; SET_BYTES * 6] {
        let sets = [
            (AmountKind::Discount, self.discount),
            (AmountKind::MerchantFee, self.fee),
            (AmountKind::StoreCreditUsed, self.store_credit),
            (AmountKind::ClubUsed, self.club),
            (AmountKind::BankRest, self.bank_rest),
            (AmountKind::Cashback, self.cashback),
        ];
        let digits = currency.to_digits();
        let mut text = [0_u8; SET_BYTES * 6];
        for ((kind, amount), slot) in sets.into_iter().zip(text.chunks_exact_mut(SET_BYTES)) {
            slot.copy_from_slice(&AmountSet::new(kind, currency, amount).to_bytes(&digits));
        }
        text
    }
}

/// Reads field 54 into its sets (at most [`SETS_MAX`]).
///
/// # Errors
/// [`Malformed`] when the length is not a multiple of 20, a kind is unknown, the currency is
/// not 3 digits, the sign is not `C`/`D`, or the amount is not 12 digits.
pub fn parse(text: &[u8]) -> Result<Vec<AmountSet>, Malformed> {
    let bad = Malformed {
        what: "additional amounts",
    };
    if text.len() % SET_BYTES != 0 || text.len() > SET_BYTES * SETS_MAX {
        return Err(bad);
    }
    let mut sets = Vec::with_capacity(text.len() / SET_BYTES);
    for chunk in text.chunks_exact(SET_BYTES) {
        let (kind, rest) = chunk.split_at(4);
        let (currency, rest) = rest.split_at(3);
        let (sign, amount) = rest.split_at(1);
        let kind = AmountKind::parse(kind).ok_or(bad)?;
        let currency = Currency::parse(currency).map_err(|_| bad)?;
        let sign = match sign {
            b"C" => Sign::Credit,
            b"D" => Sign::Debit,
            _ => return Err(bad),
        };
        let amount = Amount::new(parse_digits(amount).ok_or(bad)?).map_err(|_| bad)?;
        sets.push(AmountSet {
            kind,
            currency,
            sign,
            amount,
        });
    }
    Ok(sets)
}
