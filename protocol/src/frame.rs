//! Framing (docs/protocol.md section 1): every message is preceded by a 2-byte big-endian length.
//!
//! This module knows only the length prefix and the cap; it knows nothing of ISO 8583.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest message a frame may carry. A longer or empty one cannot be resynchronised, so the
/// connection is closed.
pub const FRAME_BYTES_MAX: usize = 2048;
/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 2;

// The prefix is 2 bytes: the cap must fit it.
const _: () = assert!(FRAME_BYTES_MAX < 1 << 16);

/// A length prefix that cannot be honoured; the stream must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A length of 0.
    #[error("frame length 0")]
    Empty,
    /// A length over [`FRAME_BYTES_MAX`].
    #[error("frame length {len} over {FRAME_BYTES_MAX}")]
    TooLong {
        /// The length given.
        len: usize,
    },
}

/// Takes one whole frame off the front of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed: "not enough yet" is not an error. The length
/// is checked as soon as its 2 bytes arrive, before any body is waited for, so a bad prefix
/// closes the stream at once and never makes the reader buffer more than one frame.
///
/// # Errors
/// [`FrameError`] for a length of 0 or over [`FRAME_BYTES_MAX`].
pub fn decode(buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
    let len = match buf.get(..PREFIX_BYTES) {
        Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
        _ => return Ok(None),
    };
    check_length(len)?;
    if buf.len() < PREFIX_BYTES + len {
        buf.reserve(PREFIX_BYTES + len - buf.len());
        return Ok(None);
    }
    buf.advance(PREFIX_BYTES);
    Ok(Some(buf.split_to(len).freeze()))
}

/// Appends `message` to `out` with its length prefix.
///
/// # Errors
/// [`FrameError`] when the message is empty or longer than [`FRAME_BYTES_MAX`].
pub fn encode(message: &[u8], out: &mut BytesMut) -> Result<(), FrameError> {
    check_length(message.len())?;
    let len =
        u16::try_from(message.len()).map_err(|_| FrameError::TooLong { len: message.len() })?;
    out.reserve(PREFIX_BYTES + message.len());
    out.put_u16(len);
    out.put_slice(message);
    Ok(())
}

fn check_length(len: usize) -> Result<(), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLong { len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn check(input: &[u8], expected: Result<Option<&[u8]>, FrameError>, left: usize) {
        let mut buf = BytesMut::from(input);
        let got = decode(&mut buf);
        let got = got
            .as_ref()
            .map(|f| f.as_ref().map(|b| b.as_ref()))
            .map_err(|e| *e);
        assert_eq!(got, expected, "{input:?}");
        assert_eq!(buf.len(), left);
    }

    #[test]
    fn decode_table() {
        check(b"", Ok(None), 0);
        check(b"\x00", Ok(None), 1);
        check(b"\x00\x03ab", Ok(None), 4);
        check(b"\x00\x03abc", Ok(Some(b"abc")), 0);
        check(b"\x00\x01ab", Ok(Some(b"a")), 1);
        check(b"\x00\x00", Err(FrameError::Empty), 2);
        check(b"\x08\x01", Err(FrameError::TooLong { len: 2049 }), 2);
        check(b"\xff\xff", Err(FrameError::TooLong { len: 65535 }), 2);
    }

    #[test]
    fn encode_rejects_bad_lengths() {
        let mut out = BytesMut::new();
        assert_eq!(encode(b"", &mut out), Err(FrameError::Empty));
        assert_eq!(
            encode(&[0; 2049], &mut out),
            Err(FrameError::TooLong { len: 2049 })
        );
        encode(&[7; 2048], &mut out).unwrap();
        assert_eq!(out.len(), 2050);
        assert_eq!(&out[..2], &[0x08, 0x00]);
    }
}
