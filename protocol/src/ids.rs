//! Validating newtypes for the wire's identifiers and amounts.

use std::fmt;

use crate::builder::write_digits;
use crate::field::parse_digits;

/// Bytes of a terminal id (field 41's layout, only ever sent inside the envelope).
pub const TERMINAL_ID_BYTES: usize = 8;
/// Largest amount field 4 can carry: 12 digits.
pub const AMOUNT_MAX: u64 = 999_999_999_999;

/// A value that does not fit its field's format (answered `30`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}")]
pub struct Malformed {
    /// Which kind of value.
    pub what: &'static str,
}

fn fixed<const N: usize>(bytes: &[u8], what: &'static str) -> Result<[u8; N], Malformed> {
    bytes.try_into().map_err(|_| Malformed { what })
}

/// Key set identifier (field 53): 16 uppercase hex characters naming a terminal's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ksi([u8; 16]);

impl Ksi {
    /// # Errors
    /// [`Malformed`] unless exactly 16 characters of `0-9A-F`.
    pub fn parse(bytes: &[u8]) -> Result<Ksi, Malformed> {
        let ksi: [u8; 16] = fixed(bytes, "ksi")?;
        if !ksi
            .iter()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
        {
            return Err(Malformed { what: "ksi" });
        }
        Ok(Ksi(ksi))
    }

    /// The 16 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The KSI as text (it is not a secret).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Ksi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Ksi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// System trace audit number (field 11): 0..=999 999, unique per terminal per day.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Stan(u32);

impl Stan {
    /// # Errors
    /// [`Malformed`] unless exactly 6 ASCII digits.
    pub fn parse(bytes: &[u8]) -> Result<Stan, Malformed> {
        let digits: [u8; 6] = fixed(bytes, "stan")?;
        let value = parse_digits(&digits).ok_or(Malformed { what: "stan" })?;
        Ok(Stan(
            u32::try_from(value).map_err(|_| Malformed { what: "stan" })?,
        ))
    }

    /// # Errors
    /// [`Malformed`] above 999 999.
    pub fn new(value: u32) -> Result<Stan, Malformed> {
        if value > 999_999 {
            return Err(Malformed { what: "stan" });
        }
        Ok(Stan(value))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }

    /// The 6 ASCII digits, zero-padded.
    pub fn to_digits(self) -> [u8; 6] {
        let mut digits = [b'0'; 6];
        write_digits(&mut digits, u64::from(self.0));
        digits
    }
}

impl fmt::Debug for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

impl fmt::Display for Stan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06}", self.0)
    }
}

/// Terminal id: exactly 8 printable ASCII characters. Sent only inside the envelope.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TerminalId([u8; TERMINAL_ID_BYTES]);

impl TerminalId {
    /// # Errors
    /// [`Malformed`] unless exactly 8 printable ASCII characters (no spaces at either end is not
    /// required: field 41 is `ans8`).
    pub fn parse(bytes: &[u8]) -> Result<TerminalId, Malformed> {
        let id: [u8; TERMINAL_ID_BYTES] = fixed(bytes, "terminal id")?;
        if !id.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
            return Err(Malformed {
                what: "terminal id",
            });
        }
        Ok(TerminalId(id))
    }

    /// The 8 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; TERMINAL_ID_BYTES] {
        &self.0
    }

    /// The terminal id as text (it is not a secret).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Retrieval reference number (field 37): 12 alphanumeric characters assigned by the switch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Rrn([u8; 12]);

impl Rrn {
    /// # Errors
    /// [`Malformed`] unless exactly 12 ASCII letters, digits or spaces (`an12`).
    pub fn parse(bytes: &[u8]) -> Result<Rrn, Malformed> {
        let rrn: [u8; 12] = fixed(bytes, "rrn")?;
        if !rrn.iter().all(|c| c.is_ascii_alphanumeric() || *c == b' ') {
            return Err(Malformed { what: "rrn" });
        }
        Ok(Rrn(rrn))
    }

    /// An RRN of 12 digits from a number below 10^12.
    ///
    /// # Errors
    /// [`Malformed`] when the number has more than 12 digits.
    pub fn from_number(value: u64) -> Result<Rrn, Malformed> {
        let mut rrn = [b'0'; 12];
        if !write_digits(&mut rrn, value) {
            return Err(Malformed { what: "rrn" });
        }
        Ok(Rrn(rrn))
    }

    /// The 12 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }

    /// The RRN as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for Rrn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Approval code (field 38): 6 alphanumeric characters set by the switch on approval.
#[derive(Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ApprovalCode([u8; 6]);

impl ApprovalCode {
    /// # Errors
    /// [`Malformed`] unless exactly 6 ASCII letters or digits.
    pub fn parse(bytes: &[u8]) -> Result<ApprovalCode, Malformed> {
        let code: [u8; 6] = fixed(bytes, "approval code")?;
        if !code.iter().all(u8::is_ascii_alphanumeric) {
            return Err(Malformed {
                what: "approval code",
            });
        }
        Ok(ApprovalCode(code))
    }

    /// The 6 ASCII characters.
    pub fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }
}

impl fmt::Debug for ApprovalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(&self.0).unwrap_or(""))
    }
}

/// Transaction amount (field 4): whole currency units, 0..=999 999 999 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(u64);

impl Amount {
    /// Zero, which is invalid in a purchase but allowed in a balance inquiry.
    pub const ZERO: Amount = Amount(0);

    /// # Errors
    /// [`Malformed`] unless exactly 12 ASCII digits.
    pub fn parse(bytes: &[u8]) -> Result<Amount, Malformed> {
        let digits: [u8; 12] = fixed(bytes, "amount")?;
        parse_digits(&digits)
            .map(Amount)
            .ok_or(Malformed { what: "amount" })
    }

    /// # Errors
    /// [`Malformed`] above [`AMOUNT_MAX`].
    pub fn new(value: u64) -> Result<Amount, Malformed> {
        if value > AMOUNT_MAX {
            return Err(Malformed { what: "amount" });
        }
        Ok(Amount(value))
    }

    /// The amount in whole currency units.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The 12 ASCII digits, zero-padded.
    pub fn to_digits(self) -> [u8; 12] {
        let mut digits = [b'0'; 12];
        write_digits(&mut digits, self.0);
        digits
    }
}

/// ISO 4217 numeric currency code (field 49), e.g. 364 for the Iranian rial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(u16);

impl Currency {
    /// The Iranian rial, LSTI-1's default.
    pub const IRR: Currency = Currency(364);

    /// # Errors
    /// [`Malformed`] unless exactly 3 ASCII digits.
    pub fn parse(bytes: &[u8]) -> Result<Currency, Malformed> {
        let digits: [u8; 3] = fixed(bytes, "currency")?;
        let value = parse_digits(&digits).ok_or(Malformed { what: "currency" })?;
        Ok(Currency(
            u16::try_from(value).map_err(|_| Malformed { what: "currency" })?,
        ))
    }

    /// # Errors
    /// [`Malformed`] above 999.
    pub fn new(code: u16) -> Result<Currency, Malformed> {
        if code > 999 {
            return Err(Malformed { what: "currency" });
        }
        Ok(Currency(code))
    }

    /// The numeric code.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The 3 ASCII digits.
    pub fn to_digits(self) -> [u8; 3] {
        let mut digits = [b'0'; 3];
        write_digits(&mut digits, u64::from(self.0));
        digits
    }
}
