//! Terminal keys: the TMK and the two working keys derived from it (docs/protocol.md section 3).

use std::fmt;

use aes_gcm::{Aes256Gcm, KeyInit};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroize;

/// Bytes in a TMK and in each derived working key.
pub const KEY_BYTES: usize = 32;
/// HKDF info of the envelope key.
pub const INFO_ENC: &[u8] = b"LSTI-1 ENC";
/// HKDF info of the MAC key.
pub const INFO_MAC: &[u8] = b"LSTI-1 MAC";

/// HMAC-SHA256, the MAC primitive.
pub type HmacSha256 = Hmac<Sha256>;

/// A terminal master key: 32 random bytes. Never printed; wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Tmk([u8; KEY_BYTES]);

impl Tmk {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Tmk {
        Tmk(bytes)
    }

    /// Wraps a slice that must be exactly 32 bytes long.
    ///
    /// # Errors
    /// [`KeyLengthError`] when the slice has another length.
    pub fn from_slice(bytes: &[u8]) -> Result<Tmk, KeyLengthError> {
        let array: [u8; KEY_BYTES] = bytes
            .try_into()
            .map_err(|_| KeyLengthError { len: bytes.len() })?;
        Ok(Tmk(array))
    }

    /// The key bytes, for sealing at rest under the key-encryption key. Never log them.
    pub fn expose_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Tmk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tmk(<redacted>)")
    }
}

impl Drop for Tmk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// A key of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("key must be 32 bytes, got {len}")]
pub struct KeyLengthError {
    /// The length given.
    pub len: usize,
}

/// HKDF-SHA256 (RFC 5869) of a TMK with an empty salt and a 32-byte output.
pub fn derive(tmk: &Tmk, info: &[u8]) -> [u8; KEY_BYTES] {
    hkdf_sha256(&tmk.0, info)
}

/// HKDF-SHA256 (RFC 5869), empty salt, 32-byte output, over any input key material (exposed
/// for the RFC's test cases, whose keys are not 32 bytes).
pub fn hkdf_sha256(ikm: &[u8], info: &[u8]) -> [u8; KEY_BYTES] {
    let hkdf = Hkdf::<Sha256>::new(None, ikm);
    let mut out = [0_u8; KEY_BYTES];
    // A 32-byte output is far below HKDF-SHA256's 255 * 32 limit, so expand cannot fail.
    if hkdf.expand(info, &mut out).is_err() {
        unreachable!("hkdf output of 32 bytes is always valid");
    }
    out
}

/// The working keys of one terminal, ready to use: the AES-256-GCM key schedule and the keyed
/// HMAC state are computed once here, so the hot path only clones them.
#[derive(Clone)]
pub struct WorkingKeys {
    pub(crate) enc: Aes256Gcm,
    pub(crate) mac: HmacSha256,
}

impl WorkingKeys {
    /// Derives `K_enc` and `K_mac` from a TMK.
    pub fn derive(tmk: &Tmk) -> WorkingKeys {
        let mut k_enc = derive(tmk, INFO_ENC);
        let mut k_mac = derive(tmk, INFO_MAC);
        let keys = WorkingKeys::from_raw(&k_enc, &k_mac);
        k_enc.zeroize();
        k_mac.zeroize();
        keys
    }

    /// Builds working keys from already derived `K_enc` and `K_mac` (tests and negative vectors).
    pub fn from_raw(k_enc: &[u8; KEY_BYTES], k_mac: &[u8; KEY_BYTES]) -> WorkingKeys {
        let enc = Aes256Gcm::new(k_enc.into());
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = match <HmacSha256 as Mac>::new_from_slice(k_mac) {
            Ok(mac) => mac,
            Err(_) => unreachable!("hmac takes keys of any length"),
        };
        WorkingKeys { enc, mac }
    }
}

impl fmt::Debug for WorkingKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkingKeys(<redacted>)")
    }
}
