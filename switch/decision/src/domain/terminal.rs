//! Terminals: a POS device bound to a merchant, a KSI and a terminal master key.

use std::fmt;

use protocol::WorkingKeys;

use crate::domain::{GroupId, Invalid, MerchantId, TerminalRowId};

/// Length of a terminal id (ISO 8583 field 41, ans 8).
pub const TERMINAL_CODE_BYTES: usize = 8;
/// Length of a key set identifier (field 53, 16 hex characters).
pub const KEY_SET_ID_BYTES: usize = 16;

/// A terminal id: exactly 8 printable ASCII characters (docs/protocol.md section 3). It travels only
/// inside the identity envelope.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TerminalCode([u8; TERMINAL_CODE_BYTES]);

impl TerminalCode {
    /// Checks and wraps a terminal id.
    ///
    /// # Errors
    /// [`Invalid`] when the length is not 8 or a byte is not printable ASCII.
    pub fn parse(bytes: &[u8]) -> Result<TerminalCode, Invalid> {
        let array: [u8; TERMINAL_CODE_BYTES] = bytes
            .try_into()
            .map_err(|_| Invalid::new("must be exactly 8 characters"))?;
        if !array.iter().all(|b| (0x20..=0x7e).contains(b)) {
            return Err(Invalid::new("must be printable ASCII"));
        }
        Ok(TerminalCode(array))
    }

    /// The 8 bytes.
    pub fn as_bytes(&self) -> &[u8; TERMINAL_CODE_BYTES] {
        &self.0
    }

    /// The id as text (always valid ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for TerminalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TerminalCode({})", self.as_str())
    }
}

/// A key set identifier: 16 upper-case hexadecimal ASCII characters naming a terminal's key
/// (field 53).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeySetId([u8; KEY_SET_ID_BYTES]);

impl KeySetId {
    /// Checks and wraps a KSI.
    ///
    /// # Errors
    /// [`Invalid`] when the length is not 16 or a byte is not `0-9` or `A-F`.
    pub fn parse(bytes: &[u8]) -> Result<KeySetId, Invalid> {
        let array: [u8; KEY_SET_ID_BYTES] = bytes
            .try_into()
            .map_err(|_| Invalid::new("must be exactly 16 characters"))?;
        if !array
            .iter()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
        {
            return Err(Invalid::new("must be upper-case hexadecimal"));
        }
        Ok(KeySetId(array))
    }

    /// The 16 ASCII bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_SET_ID_BYTES] {
        &self.0
    }

    /// The KSI as text (always valid ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Debug for KeySetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeySetId({})", self.as_str())
    }
}

/// Whether a terminal may trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TerminalStatus {
    /// In service.
    Active,
    /// Out of service: its requests are declined.
    Inactive,
}

/// A terminal as the engine sees it: its working keys are derived once, when the snapshot is
/// built, and the TMK itself is not kept.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// Row id.
    pub id: TerminalRowId,
    /// The terminal id that must come inside the envelope.
    pub terminal_id: TerminalCode,
    /// The KSI that names its keys.
    pub ksi: KeySetId,
    /// The merchant that owns it.
    pub merchant: MerchantId,
    /// Whether it may trade.
    pub status: TerminalStatus,
    /// `K_enc` and `K_mac`, derived from its TMK.
    pub keys: WorkingKeys,
    /// Terminal groups it belongs to, sorted ascending.
    pub groups: Box<[GroupId]>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        assert!(TerminalCode::parse(b"TRM00001").is_ok());
        assert!(TerminalCode::parse(b"TRM0001").is_err());
        assert!(TerminalCode::parse(b"TRM0001\n").is_err());
        assert!(KeySetId::parse(b"0123456789ABCDEF").is_ok());
        assert!(KeySetId::parse(b"0123456789abcdef").is_err());
        assert!(KeySetId::parse(b"0123456789ABCDE").is_err());
    }
}
