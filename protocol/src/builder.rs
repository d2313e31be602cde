//! The message builder: writes MTI, bitmaps and fields straight into a caller's `BytesMut`,
//! then the MAC, with no intermediate allocation.

use bytes::{BufMut, BytesMut};

use crate::bitmap::{Bitmap, BITMAP_BYTES};
use crate::field::MTI_BYTES;
use crate::frame::FRAME_BYTES_MAX;
use crate::keys::WorkingKeys;
use crate::mac::{self, MAC_BYTES};
use crate::spec::{self, Length};

/// Why a message could not be built. These are programmer errors of the caller (fields out of
/// order, a value of the wrong length) or a message over the frame cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Fields must be added in ascending order, each once.
    #[error("field {field} added out of order")]
    OutOfOrder {
        /// The field added.
        field: u8,
    },
    /// Field 1, 64 and 128 are written by the builder itself; 0 and > 128 do not exist.
    #[error("field {field} cannot be set directly")]
    Reserved {
        /// The field added.
        field: u8,
    },
    /// The value's length does not fit the field's layout.
    #[error("field {field}: value of {len} bytes does not fit")]
    Length {
        /// The field added.
        field: u8,
        /// The value's length.
        len: usize,
    },
    /// The finished message would be longer than a frame may carry.
    #[error("message of {len} bytes over the frame maximum")]
    TooLong {
        /// The message length.
        len: usize,
    },
}

/// Builds one message at the end of a buffer: `MessageBuilder::new`, then `field` in ascending
/// order, then `finish` or `finish_with_mac`.
pub struct MessageBuilder<'a> {
    buf: &'a mut BytesMut,
    start: usize,
    bitmap: Bitmap,
    last: u8,
}

impl<'a> MessageBuilder<'a> {
    /// Starts a message with this MTI, reserving room for both bitmaps.
    pub fn new(buf: &'a mut BytesMut, mti: [u8; MTI_BYTES]) -> MessageBuilder<'a> {
        let start = buf.len();
        buf.reserve(256);
        buf.put_slice(&mti);
        buf.put_bytes(0, 2 * BITMAP_BYTES);
        MessageBuilder {
            buf,
            start,
            bitmap: Bitmap::EMPTY,
            last: 1,
        }
    }

    /// Appends field `number` with `value` (without length prefix: the builder writes it).
    ///
    /// # Errors
    /// [`BuildError`] for a field out of order, a reserved field, or a value whose length does
    /// not fit the layout.
    pub fn field(&mut self, number: u8, value: &[u8]) -> Result<&mut Self, BuildError> {
        if matches!(number, 0 | 1 | spec::MAC_PRIMARY | spec::MAC_SECONDARY) || number > 128 {
            return Err(BuildError::Reserved { field: number });
        }
        if number <= self.last {
            return Err(BuildError::OutOfOrder { field: number });
        }
        let layout = spec::field(number).ok_or(BuildError::Reserved { field: number })?;
        let fits = |max: u16| value.len() <= usize::from(max);
        let bad_length = BuildError::Length {
            field: number,
            len: value.len(),
        };
        match layout.length {
            Length::Fixed(len) if value.len() == usize::from(len) => {}
            Length::LlVar(max) if fits(max) => put_digits(self.buf, value.len(), 2),
            Length::LllVar(max) if fits(max) => put_digits(self.buf, value.len(), 3),
            _ => return Err(bad_length),
        }
        self.buf.put_slice(value);
        self.bitmap.set(number);
        self.last = number;
        Ok(self)
    }

    /// Appends a fixed-width numeric field from a number, zero-padded to the field's length.
    ///
    /// # Errors
    /// As [`MessageBuilder::field`]; also when the number has more digits than the field.
    pub fn digits(&mut self, number: u8, value: u64) -> Result<&mut Self, BuildError> {
        let mut text = [b'0'; 20];
        let width = match spec::field(number).map(|layout| layout.length) {
            Some(Length::Fixed(len)) if usize::from(len) <= text.len() => usize::from(len),
            _ => return Err(BuildError::Reserved { field: number }),
        };
        if !write_digits(text.get_mut(..width).unwrap_or(&mut []), value) {
            return Err(BuildError::Length {
                field: number,
                len: width + 1,
            });
        }
        self.field(number, text.get(..width).unwrap_or(&[]))
    }

    /// Finishes the message without a MAC (responses to an unknown KSI).
    ///
    /// # Errors
    /// [`BuildError::TooLong`] when the message would not fit a frame.
    pub fn finish(mut self) -> Result<(), BuildError> {
        self.write_bitmaps();
        self.check_length()
    }

    /// Finishes the message with the MAC as its last field: 128 when a secondary bitmap is
    /// needed, else 64; the bitmap carries the MAC bit before the MAC is computed.
    ///
    /// # Errors
    /// [`BuildError::TooLong`] when the message would not fit a frame.
    pub fn finish_with_mac(mut self, keys: &WorkingKeys) -> Result<(), BuildError> {
        if self.bitmap.needs_secondary() || self.last > spec::MAC_PRIMARY {
            self.bitmap.set(spec::MAC_SECONDARY);
        } else {
            self.bitmap.set(spec::MAC_PRIMARY);
        }
        self.write_bitmaps();
        let mac = mac::compute(keys, self.buf.get(self.start..).unwrap_or(&[]));
        self.buf.put_slice(&mac);
        self.check_length()
    }

    fn write_bitmaps(&mut self) {
        let primary_at = self.start + MTI_BYTES;
        let secondary_at = primary_at + BITMAP_BYTES;
        if self.bitmap.needs_secondary() {
            self.bitmap.set(1);
            copy_into(self.buf, secondary_at, &self.bitmap.secondary_bytes());
            copy_into(self.buf, primary_at, &self.bitmap.primary_bytes());
        } else {
            // No secondary bitmap: close the 8 reserved bytes up.
            let end = self.buf.len();
            self.buf
                .copy_within(secondary_at + BITMAP_BYTES..end, secondary_at);
            self.buf.truncate(end - BITMAP_BYTES);
            copy_into(self.buf, primary_at, &self.bitmap.primary_bytes());
        }
    }

    fn check_length(&self) -> Result<(), BuildError> {
        let len = self.buf.len() - self.start;
        if len > FRAME_BYTES_MAX {
            return Err(BuildError::TooLong { len });
        }
        Ok(())
    }
}

const _: () = assert!(MAC_BYTES == 8);

fn copy_into(buf: &mut BytesMut, at: usize, bytes: &[u8]) {
    if let Some(slot) = buf.get_mut(at..at + bytes.len()) {
        slot.copy_from_slice(bytes);
    }
}

fn put_digits(buf: &mut BytesMut, value: usize, width: usize) {
    let mut text = [b'0'; 3];
    let slot = text.get_mut(..width).unwrap_or(&mut []);
    write_digits(slot, u64::try_from(value).unwrap_or(u64::MAX));
    buf.put_slice(slot);
}

/// Writes `value` as zero-padded ASCII digits filling `out`; false when it does not fit.
pub fn write_digits(out: &mut [u8], mut value: u64) -> bool {
    // Two digits per division: every approved purchase writes 80 digits of amounts and ids,
    // and a division is the costly step.
    let mut pairs = out.rchunks_exact_mut(2);
    for pair in &mut pairs {
        let at = usize::from(u8::try_from(value % 100).unwrap_or(0)) * 2;
        pair.copy_from_slice(DIGIT_PAIRS.get(at..at + 2).unwrap_or(b"00"));
        value /= 100;
    }
    if let [first] = pairs.into_remainder() {
        *first = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
    value == 0
}

/// "00" to "99", each number's two digits at twice its value.
const DIGIT_PAIRS: &[u8; 200] = b"\
    0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::write_digits;

    /// Every width from 0 to 20 against `format!`, at values around each power of ten.
    #[test]
    fn write_digits_pads_and_refuses_overflow() {
        for width in 0..=20_usize {
            for power in 0..20_u32 {
                let base = 10_u64.pow(power);
                for value in [
                    base - 1,
                    base,
                    base + 1,
                    base.saturating_mul(7).saturating_add(3),
                    u64::MAX,
                ] {
                    let mut out = [b'x'; 20];
                    let fits = write_digits(&mut out[..width], value);
                    let text = format!("{value:0width$}");
                    // u64::MAX has 20 digits; zero fits even in none, as it always has.
                    let room = u32::try_from(width).unwrap();
                    let wanted = width == 20 || value < 10_u64.pow(room);
                    assert_eq!(fits, wanted, "{value} in {width}");
                    assert_eq!(
                        &out[..width],
                        &text.as_bytes()[text.len() - width.min(text.len())..],
                        "{value} in {width}"
                    );
                }
            }
        }
    }
}
