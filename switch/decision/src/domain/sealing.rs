//! The key-encryption key (KEK) that seals terminal master keys at rest (docs/design.md section 3).
//!
//! A sealed TMK is `0x01 (version) | nonce (12 bytes) | ciphertext (32 bytes) | tag (16 bytes)`,
//! AES-256-GCM under the KEK with the terminal id as associated data, so a sealed key copied to
//! another terminal's row does not open.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use protocol::Tmk;
use zeroize::Zeroize;

use crate::domain::TerminalCode;

/// Bytes in a KEK.
pub const KEK_BYTES: usize = 32;
/// Version byte of the sealed-TMK layout.
pub const SEALED_VERSION: u8 = 0x01;
/// Bytes in a sealing nonce (the AES-GCM standard nonce).
pub const NONCE_BYTES: usize = 12;
/// Bytes in a sealed TMK: version, nonce, 32 bytes of ciphertext and the 16-byte tag.
pub const SEALED_TMK_BYTES: usize = 1 + NONCE_BYTES + 32 + 16;

/// The switch's key-encryption key. Never printed; wiped on drop. Cloned only to hand it to the
/// operator API, which seals the TMKs of the terminals it creates.
#[derive(Clone)]
pub struct Kek([u8; KEK_BYTES]);

/// Why a TMK could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The sealed bytes are not `SEALED_TMK_BYTES` long or have an unknown version.
    #[error("sealed key has an unknown layout")]
    Layout,
    /// The tag does not verify: wrong KEK, wrong terminal or altered bytes.
    #[error("sealed key does not open under this key-encryption key and terminal")]
    Open,
    /// The cipher refused to seal (cannot happen for a 32-byte key).
    #[error("sealing failed")]
    Seal,
}

impl Kek {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; KEK_BYTES]) -> Kek {
        Kek(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes.
    ///
    /// # Errors
    /// [`crate::domain::Invalid`] for another length.
    pub fn from_slice(bytes: &[u8]) -> Result<Kek, crate::domain::Invalid> {
        let array = bytes
            .try_into()
            .map_err(|_| crate::domain::Invalid::new("key must be 32 bytes"))?;
        Ok(Kek(array))
    }

    /// Seals `tmk` for `terminal` with a fresh `nonce`. A nonce must never repeat under one
    /// KEK: draw it from a cryptographic random source.
    ///
    /// # Errors
    /// [`SealError::Seal`] if the cipher refuses, which a 32-byte plaintext never causes.
    pub fn seal_tmk(
        &self,
        terminal: &TerminalCode,
        tmk: &Tmk,
        nonce: [u8; NONCE_BYTES],
    ) -> Result<Vec<u8>, SealError> {
        let payload = Payload {
            msg: tmk.expose_bytes(),
            aad: terminal.as_bytes(),
        };
        let sealed = self
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(SEALED_TMK_BYTES);
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        assert_eq!(out.len(), SEALED_TMK_BYTES);
        Ok(out)
    }

    /// Opens a TMK sealed for `terminal`.
    ///
    /// # Errors
    /// [`SealError::Layout`] for a wrong length or version, [`SealError::Open`] when the tag
    /// does not verify.
    pub fn open_tmk(&self, terminal: &TerminalCode, sealed: &[u8]) -> Result<Tmk, SealError> {
        if sealed.len() != SEALED_TMK_BYTES || sealed.first() != Some(&SEALED_VERSION) {
            return Err(SealError::Layout);
        }
        let nonce = sealed.get(1..1 + NONCE_BYTES).ok_or(SealError::Layout)?;
        let body = sealed.get(1 + NONCE_BYTES..).ok_or(SealError::Layout)?;
        let payload = Payload {
            msg: body,
            aad: terminal.as_bytes(),
        };
        let mut clear = self
            .cipher()
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| SealError::Open)?;
        let tmk = Tmk::from_slice(&clear).map_err(|_| SealError::Layout);
        clear.zeroize();
        tmk
    }

    /// The key check value, as key custodians compute it for an AES key: the first 3 bytes
    /// of a zero block encrypted under it, in hex (the switch's `keycheck`).
    pub fn check_value(&self) -> String {
        use aes_gcm::aes::cipher::{BlockEncrypt, KeyInit as _};
        let cipher = aes_gcm::aes::Aes256::new((&self.0).into());
        let mut block = [0_u8; 16].into();
        cipher.encrypt_block(&mut block);
        hex::encode_upper(block.get(..3).unwrap_or_default())
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Drop for Kek {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn seal_open() {
        let kek = Kek::from_bytes([9; 32]);
        let tmk = Tmk::from_bytes([1; 32]);
        let here = TerminalCode::parse(b"TRM00001").unwrap();
        let there = TerminalCode::parse(b"TRM00002").unwrap();
        let sealed = kek.seal_tmk(&here, &tmk, [3; 12]).unwrap();
        assert_eq!(sealed.len(), SEALED_TMK_BYTES);
        assert!(!sealed.windows(32).any(|w| w == [1; 32]));
        assert_eq!(kek.open_tmk(&here, &sealed).unwrap(), tmk);
        assert_eq!(kek.open_tmk(&there, &sealed), Err(SealError::Open));
        assert_eq!(
            Kek::from_bytes([8; 32]).open_tmk(&here, &sealed),
            Err(SealError::Open)
        );
        assert_eq!(kek.open_tmk(&here, &sealed[1..]), Err(SealError::Layout));
        assert_eq!(format!("{kek:?}"), "Kek(<redacted>)");
    }
}
