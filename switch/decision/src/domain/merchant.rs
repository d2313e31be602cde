//! Merchants (acceptors): the shop that owns terminals, pays the fee and receives payouts.

use std::fmt;

use crate::domain::{Code, GroupId, Invalid, MerchantId, Percent, Rials};

/// An International Bank Account Number (ISO 13616), upper case, without spaces.
///
/// Checked on construction: two letters of country, two check digits, 11..=30 letters or
/// digits, and the mod-97 check (the rearranged number, letters as 10..=35, leaves 1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Iban(Box<str>);

/// Shortest IBAN any country uses (Norway).
pub const IBAN_CHARS_MIN: usize = 15;
/// Longest IBAN ISO 13616 allows.
pub const IBAN_CHARS_MAX: usize = 34;

impl Iban {
    /// Checks and wraps an IBAN such as `IR062960000000100324200001`.
    ///
    /// # Errors
    /// [`Invalid`] naming the broken rule (length, characters, checksum).
    pub fn parse(text: &str) -> Result<Iban, Invalid> {
        let bytes = text.as_bytes();
        if !(IBAN_CHARS_MIN..=IBAN_CHARS_MAX).contains(&bytes.len()) {
            return Err(Invalid::new("must be 15..=34 characters"));
        }
        let country_ok = bytes.iter().take(2).all(u8::is_ascii_uppercase);
        let check_ok = bytes.iter().skip(2).take(2).all(u8::is_ascii_digit);
        if !country_ok || !check_ok {
            return Err(Invalid::new(
                "must start with a country code and two check digits",
            ));
        }
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !rest_ok {
            return Err(Invalid::new("may only have upper-case letters and digits"));
        }
        if mod97(bytes) != 1 {
            return Err(Invalid::new("checksum fails"));
        }
        Ok(Iban(text.into()))
    }

    /// The IBAN as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Iban {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iban({})", self.0)
    }
}

/// The ISO 13616 remainder: the first four characters moved to the end, letters read as
/// 10..=35, the whole read as one decimal number modulo 97.
fn mod97(bytes: &[u8]) -> u32 {
    let rearranged = bytes.iter().skip(4).chain(bytes.iter().take(4));
    rearranged.fold(0_u32, |remainder, byte| {
        let value = if byte.is_ascii_digit() {
            u32::from(byte - b'0')
        } else {
            u32::from(byte - b'A') + 10
        };
        let shift = if value >= 10 { 100 } else { 10 };
        (remainder * shift + value) % 97
    })
}

/// An ISO 4217 numeric currency code, 1..=999 (IRR is 364).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CurrencyCode(u16);

impl CurrencyCode {
    /// The Iranian rial.
    pub const IRR: CurrencyCode = CurrencyCode(364);

    /// Checks and wraps a numeric code.
    ///
    /// # Errors
    /// [`Invalid`] outside 1..=999.
    pub fn new(code: u16) -> Result<CurrencyCode, Invalid> {
        if (1..=999).contains(&code) {
            Ok(CurrencyCode(code))
        } else {
            Err(Invalid::new("must be an ISO 4217 numeric code 1..=999"))
        }
    }

    /// The numeric code.
    pub fn get(self) -> u16 {
        self.0
    }
}

/// Whether a merchant may trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MerchantStatus {
    /// Trading.
    Active,
    /// Not trading: requests are declined `03`.
    Inactive,
}

/// The merchant's fee: `rate` percent of G, rounded half up, clamped to `[min, max]`
/// (docs/design.md section 4, step 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FeeSchedule {
    rate: Percent,
    fee_rials_min: Rials,
    fee_rials_max: Rials,
}

impl FeeSchedule {
    /// A schedule whose minimum does not exceed its maximum.
    ///
    /// # Errors
    /// [`Invalid`] when `fee_rials_min > fee_rials_max`.
    pub fn new(
        rate: Percent,
        fee_rials_min: Rials,
        fee_rials_max: Rials,
    ) -> Result<FeeSchedule, Invalid> {
        if fee_rials_min > fee_rials_max {
            return Err(Invalid::new("minimum fee exceeds maximum fee"));
        }
        Ok(FeeSchedule {
            rate,
            fee_rials_min,
            fee_rials_max,
        })
    }

    /// The rate in percent of G.
    pub fn rate(&self) -> Percent {
        self.rate
    }

    /// The smallest fee charged.
    pub fn fee_rials_min(&self) -> Rials {
        self.fee_rials_min
    }

    /// The largest fee charged.
    pub fn fee_rials_max(&self) -> Rials {
        self.fee_rials_max
    }
}

/// What the operator says about a merchant, apart from its identity and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantProfile {
    /// Display name.
    pub name: String,
    /// Where payouts go.
    pub iban: Iban,
    /// Whether it may trade.
    pub status: MerchantStatus,
    /// The currency its terminals trade in (364 for IRR).
    pub currency: CurrencyCode,
    /// Its fee.
    pub fee: FeeSchedule,
    /// Largest G per transaction; a larger request is declined `61`.
    pub amount_rials_max: Rials,
    /// Whether purchases here earn tier cashback as store credit.
    pub cashback_allowed: bool,
    /// Days after issue that store credit granted here expires.
    pub credit_expiry_days: u16,
    /// Its local time's offset east of UTC, in minutes (Asia/Tehran: 210). Rule windows are
    /// read in this time.
    pub utc_offset_minutes: i32,
}

/// A merchant as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    /// Row id.
    pub id: MerchantId,
    /// The operator's code.
    pub code: Code,
    /// Terms and settings.
    pub profile: MerchantProfile,
    /// Merchant groups it belongs to, sorted ascending.
    pub groups: Box<[GroupId]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(), &str>) {
        let got = Iban::parse(text).map(|_| ()).map_err(|e| e.reason);
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn iban() {
        check("IR062960000000100324200001", Ok(()));
        check("GB82WEST12345698765432", Ok(()));
        check("DE89370400440532013000", Ok(()));
        check("IR062960000000100324200002", Err("checksum fails"));
        check("GB82WEST1234569876543", Err("checksum fails"));
        check("IR0629600", Err("must be 15..=34 characters"));
        check(
            "ir062960000000100324200001",
            Err("must start with a country code and two check digits"),
        );
        check(
            "IR06296000000010032420000a",
            Err("may only have upper-case letters and digits"),
        );
    }
}
