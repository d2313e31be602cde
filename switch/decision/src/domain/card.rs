//! Members and their cards. The PAN is never kept: a card is found by its keyed token.

use std::fmt;

use hmac::digest::generic_array::GenericArray;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use protocol::Pan;
use sha2::Sha256;
use zeroize::Zeroize;

use crate::domain::time::digits;
use crate::domain::{CardId, CivilDate, Code, GroupId, Invalid, MemberId, TierId};

/// Bytes in a [`PanToken`] and in a [`PanTokenKey`].
pub const PAN_TOKEN_BYTES: usize = 32;

/// HMAC-SHA256 of the PAN's digits under the switch's [`PanTokenKey`]: how a card is found and
/// stored without its number (docs/design.md section 3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PanToken([u8; PAN_TOKEN_BYTES]);

impl PanToken {
    /// Computes the token of `pan`. This is one of the two places the PAN's digits are read.
    pub fn compute(key: &PanTokenKey, pan: &Pan) -> PanToken {
        let mut mac = key.hmac();
        mac.update(pan.expose_digits());
        PanToken(mac.finalize().into_bytes().into())
    }

    /// Wraps a token read back from the store.
    pub fn from_bytes(bytes: [u8; PAN_TOKEN_BYTES]) -> PanToken {
        PanToken(bytes)
    }

    /// The 32 token bytes.
    pub fn as_bytes(&self) -> &[u8; PAN_TOKEN_BYTES] {
        &self.0
    }
}

impl fmt::Debug for PanToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell tokens apart in a test failure.
        let prefix = self.0.get(..4).unwrap_or(&[]);
        write!(f, "PanToken({}…)", hex::encode(prefix))
    }
}

/// The secret key of the PAN token. Never printed; wiped on drop.
#[derive(Clone)]
pub struct PanTokenKey([u8; PAN_TOKEN_BYTES]);

impl PanTokenKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; PAN_TOKEN_BYTES]) -> PanTokenKey {
        PanTokenKey(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes.
    ///
    /// # Errors
    /// [`Invalid`] for another length.
    pub fn from_slice(bytes: &[u8]) -> Result<PanTokenKey, Invalid> {
        let array = bytes
            .try_into()
            .map_err(|_| Invalid::new("key must be 32 bytes"))?;
        Ok(PanTokenKey(array))
    }

    /// The key check value: the first 3 bytes of HMAC-SHA256 of a fixed text that is not a
    /// PAN, in hex. It tells two keys apart without revealing either (the switch's `keycheck`).
    pub fn check_value(&self) -> String {
        let mut mac = self.hmac();
        mac.update(b"LSW PAN TOKEN KEY CHECK VALUE");
        let digest = mac.finalize().into_bytes();
        hex::encode_upper(digest.get(..3).unwrap_or_default())
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC zero-pads a key shorter than the 64-byte SHA-256 block, so the padded block is
        // the same key; building from the full block is infallible, unlike `new_from_slice`.
        let mut block = [0_u8; 64];
        for (slot, byte) in block.iter_mut().zip(self.0.iter()) {
            *slot = *byte;
        }
        let mac = <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(&block));
        block.zeroize();
        mac
    }
}

impl fmt::Debug for PanTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanTokenKey(<redacted>)")
    }
}

impl Drop for PanTokenKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Whether a card may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CardStatus {
    /// Usable.
    Active,
    /// Blocked by the operator: requests are declined.
    Blocked,
}

/// A card's expiry month: the card is valid through the last day of that month and expired
/// from the first day of the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardExpiry {
    year: u16,
    month: u8,
}

impl CardExpiry {
    /// An expiry month.
    ///
    /// # Errors
    /// [`Invalid`] for a year outside 1970..=9999 or a month outside 1..=12.
    pub fn new(year: u16, month: u8) -> Result<CardExpiry, Invalid> {
        CivilDate::new(year, month, 1)?;
        Ok(CardExpiry { year, month })
    }

    /// Parses `YYYY-MM`.
    ///
    /// # Errors
    /// [`Invalid`] when the shape or the month is wrong.
    pub fn parse(text: &str) -> Result<CardExpiry, Invalid> {
        let shape = Invalid::new("must be a month YYYY-MM");
        if text.len() != 7 || text.as_bytes().get(4) != Some(&b'-') {
            return Err(shape);
        }
        let year = digits(text.get(0..4)).ok_or(shape)?;
        let month = digits(text.get(5..7)).ok_or(shape)?;
        CardExpiry::new(
            u16::try_from(year).map_err(|_| shape)?,
            u8::try_from(month).map_err(|_| shape)?,
        )
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// Whether the card is expired on `date` (a date after the expiry month).
    pub fn is_expired_on(self, date: CivilDate) -> bool {
        (date.year(), date.month()) > (self.year, self.month)
    }
}

impl fmt::Display for CardExpiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// A card holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Row id.
    pub id: MemberId,
    /// The operator's code.
    pub code: Code,
    /// Member groups it belongs to, sorted ascending.
    pub groups: Box<[GroupId]>,
    /// The member who referred them.
    pub referred_by: Option<MemberId>,
    /// Their lowest-id active card, which messages and rewards not tied to a purchase go by.
    pub card: Option<CardId>,
}

/// A card as the engine sees it. It has no PAN, only the token, BIN and last 4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    /// Row id.
    pub id: CardId,
    /// Its holder.
    pub member: MemberId,
    /// The keyed token of its PAN.
    pub token: PanToken,
    /// First six digits of the PAN, ASCII.
    pub bin: [u8; 6],
    /// Last four digits of the PAN, ASCII.
    pub last4: [u8; 4],
    /// Whether it may be used.
    pub status: CardStatus,
    /// Its expiry month.
    pub expiry: CardExpiry,
    /// Its tier, which sets the cashback rate; `None` earns none.
    pub tier: Option<TierId>,
    /// Its member's groups, sorted ascending: a copy of [`Member::groups`] made when the
    /// snapshot is built, so that pricing reads them from the card it already holds instead
    /// of a second lookup (a cache miss in a map of a million members) per purchase.
    pub member_groups: Box<[GroupId]>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn token_is_hmac_of_digits() {
        let key = PanTokenKey::from_bytes([7; 32]);
        let pan = Pan::parse(b"6037991234567893").unwrap();
        let mut reference = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        reference.update(b"6037991234567893");
        let expected: [u8; 32] = reference.finalize().into_bytes().into();
        assert_eq!(PanToken::compute(&key, &pan).as_bytes(), &expected);
        assert_eq!(format!("{key:?}"), "PanTokenKey(<redacted>)");
    }

    #[test]
    fn expiry() {
        let expiry = CardExpiry::parse("2026-02").unwrap();
        assert!(!expiry.is_expired_on(CivilDate::parse("2026-02-28").unwrap()));
        assert!(expiry.is_expired_on(CivilDate::parse("2026-03-01").unwrap()));
        assert!(!expiry.is_expired_on(CivilDate::parse("2025-12-31").unwrap()));
        assert!(CardExpiry::parse("2026-13").is_err());
        assert!(CardExpiry::parse("26-01").is_err());
    }
}
