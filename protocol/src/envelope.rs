//! The field-62 identity envelope: `0x01 | nonce (12) | ciphertext | tag (16)`, AES-256-GCM
//! under `K_enc`, sealing the terminal id and the PAN, bound to the message by its associated
//! data `MTI | field 7 | field 11 | field 53` (docs/protocol.md section 3).

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Nonce, Tag};
use bytes::{BufMut, BytesMut};
use zeroize::Zeroize;

use crate::ids::{Ksi, Stan, TerminalId, TERMINAL_ID_BYTES};
use crate::keys::WorkingKeys;
use crate::pan::{Pan, PanError, PAN_DIGITS_MAX};

/// The only envelope version LSTI-1 defines.
pub const ENVELOPE_VERSION: u8 = 0x01;
/// Bytes of the GCM nonce.
pub const NONCE_BYTES: usize = 12;
/// Bytes of the GCM tag.
pub const TAG_BYTES: usize = 16;
/// Largest envelope field 62 may carry.
pub const ENVELOPE_BYTES_MAX: usize = 128;
/// Bytes of the associated data: MTI (4) + field 7 (10) + field 11 (6) + field 53 (16).
pub const AAD_BYTES: usize = 36;
const PLAINTEXT_BYTES_MAX: usize = ENVELOPE_BYTES_MAX - 1 - NONCE_BYTES - TAG_BYTES;

const _: () = assert!(PLAINTEXT_BYTES_MAX >= TERMINAL_ID_BYTES + PAN_DIGITS_MAX);

/// What a sealed envelope says: which terminal, and which card.
#[derive(Debug)]
pub struct Identity {
    /// The terminal id sealed inside; the switch compares it with the KSI's terminal.
    pub terminal_id: TerminalId,
    /// The card number.
    pub pan: Pan,
}

/// Why an envelope does not give an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The first byte is not `0x01`.
    #[error("envelope version is not 1")]
    Version,
    /// Too short or too long to be an envelope.
    #[error("envelope length {len} invalid")]
    Length {
        /// The length given.
        len: usize,
    },
    /// Authentication failed: wrong key, changed bytes, or another message's associated data.
    #[error("envelope does not open")]
    Tag,
    /// The plaintext's first 8 bytes are not a terminal id.
    #[error("envelope terminal id malformed")]
    TerminalId,
    /// The envelope opened, but its PAN has a wrong length or a non-digit (answered `30`).
    #[error("envelope pan malformed: {0}")]
    Pan(PanError),
}

/// The associated data: `MTI | field 7 | field 11 | field 53`, ASCII as sent.
pub fn aad(mti: [u8; 4], transmitted: &[u8; 10], stan: Stan, ksi: &Ksi) -> [u8; AAD_BYTES] {
    let mut aad = [0_u8; AAD_BYTES];
    let parts: [&[u8]; 4] = [&mti, transmitted, &stan.to_digits(), ksi.as_bytes()];
    let mut at = 0;
    for part in parts {
        if let Some(slot) = aad.get_mut(at..at + part.len()) {
            slot.copy_from_slice(part);
        }
        at += part.len();
    }
    aad
}

/// Opens an envelope without allocating: the plaintext is decrypted on the stack and wiped.
///
/// # Errors
/// [`EnvelopeError`]: version, length and tag failures are `63`; a malformed PAN is `30`.
pub fn open(
    keys: &WorkingKeys,
    envelope: &[u8],
    aad: &[u8; AAD_BYTES],
) -> Result<Identity, EnvelopeError> {
    let (&version, rest) = envelope
        .split_first()
        .ok_or(EnvelopeError::Length { len: 0 })?;
    if version != ENVELOPE_VERSION {
        return Err(EnvelopeError::Version);
    }
    let len = envelope.len();
    if len > ENVELOPE_BYTES_MAX || rest.len() < NONCE_BYTES + TAG_BYTES {
        return Err(EnvelopeError::Length { len });
    }
    let (nonce, sealed) = rest.split_at(NONCE_BYTES);
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_BYTES);
    let mut plaintext = [0_u8; PLAINTEXT_BYTES_MAX];
    let buffer = plaintext
        .get_mut(..ciphertext.len())
        .ok_or(EnvelopeError::Length { len })?;
    buffer.copy_from_slice(ciphertext);
    let opened = keys.enc.decrypt_in_place_detached(
        Nonce::from_slice(nonce),
        aad,
        buffer,
        Tag::from_slice(tag),
    );
    let identity = match opened {
        Ok(()) => identity_from(buffer),
        Err(_) => Err(EnvelopeError::Tag),
    };
    plaintext.zeroize();
    identity
}

fn identity_from(plaintext: &[u8]) -> Result<Identity, EnvelopeError> {
    if plaintext.len() < TERMINAL_ID_BYTES {
        return Err(EnvelopeError::TerminalId);
    }
    let (terminal, pan) = plaintext.split_at(TERMINAL_ID_BYTES);
    let terminal_id = TerminalId::parse(terminal).map_err(|_| EnvelopeError::TerminalId)?;
    let pan = Pan::parse(pan).map_err(EnvelopeError::Pan)?;
    Ok(Identity { terminal_id, pan })
}

/// Seals an identity (the terminal side's job; the simulator and tests use it), appending the
/// envelope to `out`. The caller supplies a fresh random nonce for every message.
pub fn seal(
    keys: &WorkingKeys,
    nonce: &[u8; NONCE_BYTES],
    aad: &[u8; AAD_BYTES],
    terminal_id: &TerminalId,
    pan: &Pan,
    out: &mut BytesMut,
) {
    let mut plaintext = [0_u8; PLAINTEXT_BYTES_MAX];
    let digits = pan.expose_digits();
    let len = TERMINAL_ID_BYTES + digits.len();
    if let Some(slot) = plaintext.get_mut(..TERMINAL_ID_BYTES) {
        slot.copy_from_slice(terminal_id.as_bytes());
    }
    if let Some(slot) = plaintext.get_mut(TERMINAL_ID_BYTES..len) {
        slot.copy_from_slice(digits);
    }
    let buffer = plaintext.get_mut(..len).unwrap_or(&mut []);
    // Encryption only fails for plaintexts over GCM's 64 GiB limit; ours is at most 27 bytes.
    let tag = match keys
        .enc
        .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, buffer)
    {
        Ok(tag) => tag,
        Err(_) => unreachable!("aes-gcm encryption of 27 bytes cannot fail"),
    };
    out.put_u8(ENVELOPE_VERSION);
    out.put_slice(nonce);
    out.put_slice(buffer);
    out.put_slice(&tag);
    plaintext.zeroize();
}
