//! The message MAC: the first 8 bytes of HMAC-SHA256 under `K_mac` over every byte from the MTI
//! up to the MAC (docs/protocol.md section 3), compared in constant time.

use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::field::RawMessage;
use crate::keys::WorkingKeys;
use crate::spec;

/// Bytes of the truncated MAC.
pub const MAC_BYTES: usize = 8;

/// Why a message's MAC is not accepted (all answered `63`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MacError {
    /// Neither field 64 nor 128 is present.
    #[error("mac missing")]
    Missing,
    /// The MAC is in field 64 with a secondary bitmap, in 128 without one, or in both.
    #[error("mac in the wrong field")]
    WrongField,
    /// The MAC does not match.
    #[error("mac does not match")]
    Mismatch,
}

/// The truncated HMAC-SHA256 of `input` under the terminal's MAC key.
pub fn compute(keys: &WorkingKeys, input: &[u8]) -> [u8; MAC_BYTES] {
    let mut hmac = keys.mac.clone();
    hmac.update(input);
    let digest = hmac.finalize().into_bytes();
    let mut mac = [0_u8; MAC_BYTES];
    mac.copy_from_slice(digest.get(..MAC_BYTES).unwrap_or(&[0; MAC_BYTES]));
    mac
}

/// Checks that the MAC is present in the right field (128 with a secondary bitmap, 64
/// without), is the message's last 8 bytes, and matches.
///
/// # Errors
/// [`MacError`] naming what is wrong.
pub fn verify(keys: &WorkingKeys, message: &RawMessage) -> Result<(), MacError> {
    let bitmap = message.bitmap();
    let (wanted, other) = if bitmap.has_secondary() {
        (spec::MAC_SECONDARY, spec::MAC_PRIMARY)
    } else {
        (spec::MAC_PRIMARY, spec::MAC_SECONDARY)
    };
    if !bitmap.has(spec::MAC_PRIMARY) && !bitmap.has(spec::MAC_SECONDARY) {
        return Err(MacError::Missing);
    }
    if !bitmap.has(wanted) || bitmap.has(other) {
        return Err(MacError::WrongField);
    }
    let bytes = message.as_bytes();
    let offset = message.field_offset(wanted).ok_or(MacError::Missing)?;
    // The MAC is a fixed 8-byte field, and the last one: nothing may follow it.
    if offset + MAC_BYTES != bytes.len() {
        return Err(MacError::WrongField);
    }
    let (input, sent) = bytes.split_at(offset);
    let expected = compute(keys, input);
    if bool::from(expected.ct_eq(sent)) {
        Ok(())
    } else {
        Err(MacError::Mismatch)
    }
}
