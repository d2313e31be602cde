//! The zero-copy ISO 8583 parser: it finds where each field lies in the message and keeps the
//! message as one `Bytes`; fields are read as slices of it, turned into typed values only when
//! asked for (see [`crate::message`]).

use bytes::Bytes;

use crate::bitmap::{Bitmap, BITMAP_BYTES};
use crate::spec::{self, Length};

/// Bytes of the MTI.
pub const MTI_BYTES: usize = 4;
/// Largest message the parser accepts: the frame cap, so every offset fits a `u16`.
pub const MESSAGE_BYTES_MAX: usize = crate::frame::FRAME_BYTES_MAX;

const _: () = assert!(MESSAGE_BYTES_MAX < 1 << 16);

/// A message whose MTI and field 11 could be read, with the position of every field found.
///
/// When a field after field 11 is malformed or cut short, parsing stops there and the message
/// carries that [`FieldError`] as its [`RawMessage::defect`]: docs/protocol.md section 7 answers
/// such a message `30`, echoing what could be read.
#[derive(Clone)]
pub struct RawMessage {
    bytes: Bytes,
    bitmap: Bitmap,
    spans: [Span; 129],
    read: Bitmap,
    defect: Option<FieldError>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Span {
    start: u16,
    len: u16,
}

/// Why a field could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {kind}")]
pub struct FieldError {
    /// The field number (0 for bytes after the last field).
    pub field: u8,
    /// What is wrong with it.
    pub kind: FieldErrorKind,
}

/// What is wrong with a field's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FieldErrorKind {
    /// The message ends inside the field.
    #[error("message ends inside the field")]
    Truncated,
    /// The LLVAR/LLLVAR length prefix is not all digits.
    #[error("length prefix is not digits")]
    BadLengthPrefix,
    /// The length prefix names more bytes than the field allows.
    #[error("length {len} over the maximum {max}")]
    TooLong {
        /// The length given.
        len: u16,
        /// The field's maximum.
        max: u16,
    },
    /// Bytes remain after the last field the bitmap names.
    #[error("bytes after the last field")]
    TrailingBytes,
}

/// Why a message cannot be answered at all: its MTI or field 11 cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer than 4 bytes.
    #[error("message shorter than its mti")]
    NoMti,
    /// The primary (or announced secondary) bitmap is cut short.
    #[error("message ends inside a bitmap")]
    NoBitmap,
    /// The bitmap does not name field 11.
    #[error("message has no field 11")]
    NoStan,
    /// A field up to and including field 11 is malformed.
    #[error("before field 11: {0}")]
    BeforeStan(FieldError),
    /// Longer than any frame can be.
    #[error("message of {len} bytes over the maximum")]
    TooLong {
        /// The length given.
        len: usize,
    },
}

impl RawMessage {
    /// Parses a message (the bytes after the length prefix). Never panics, never copies the
    /// bytes, and allocates nothing.
    ///
    /// # Errors
    /// [`ParseError`] when the MTI or field 11 cannot be read; later defects are kept in the
    /// returned message instead.
    pub fn parse(bytes: Bytes) -> Result<RawMessage, ParseError> {
        if bytes.len() > MESSAGE_BYTES_MAX {
            return Err(ParseError::TooLong { len: bytes.len() });
        }
        if bytes.len() < MTI_BYTES {
            return Err(ParseError::NoMti);
        }
        let primary = read_bitmap(&bytes, MTI_BYTES).ok_or(ParseError::NoBitmap)?;
        let mut bitmap = Bitmap::from_primary(primary);
        let mut offset = MTI_BYTES + BITMAP_BYTES;
        if bitmap.has_secondary() {
            let secondary = read_bitmap(&bytes, offset).ok_or(ParseError::NoBitmap)?;
            bitmap = bitmap.with_secondary(secondary);
            offset += BITMAP_BYTES;
        }
        if !bitmap.has(spec::STAN) {
            return Err(ParseError::NoStan);
        }
        let mut message = RawMessage {
            bytes,
            bitmap,
            spans: [Span::default(); 129],
            read: Bitmap::EMPTY,
            defect: None,
        };
        for number in bitmap.fields().filter(|n| *n != spec::SECONDARY_BITMAP) {
            match message.read_field(number, offset) {
                Ok(end) => offset = end,
                Err(error) if number <= spec::STAN => return Err(ParseError::BeforeStan(error)),
                Err(error) => {
                    message.defect = Some(error);
                    return Ok(message);
                }
            }
        }
        if offset != message.bytes.len() {
            message.defect = Some(FieldError {
                field: 0,
                kind: FieldErrorKind::TrailingBytes,
            });
        }
        Ok(message)
    }

    /// The four MTI bytes as sent.
    pub fn mti_bytes(&self) -> [u8; MTI_BYTES] {
        let mut mti = [0_u8; MTI_BYTES];
        if let Some(head) = self.bytes.get(..MTI_BYTES) {
            mti.copy_from_slice(head);
        }
        mti
    }

    /// The fields the bitmap names (whether or not all of them could be read).
    pub fn bitmap(&self) -> Bitmap {
        self.bitmap
    }

    /// The first defect after field 11, if any.
    pub fn defect(&self) -> Option<FieldError> {
        self.defect
    }

    /// Field `number`'s value bytes (without its length prefix), if it was read.
    pub fn field(&self, number: u8) -> Option<&[u8]> {
        if !self.read.has(number) {
            return None;
        }
        let span = self.spans.get(usize::from(number))?;
        let start = usize::from(span.start);
        self.bytes.get(start..start + usize::from(span.len))
    }

    /// Field `number`'s value as a `Bytes` sharing the message's buffer.
    pub fn field_bytes(&self, number: u8) -> Option<Bytes> {
        if !self.read.has(number) {
            return None;
        }
        let span = self.spans.get(usize::from(number))?;
        let start = usize::from(span.start);
        Some(self.bytes.slice(start..start + usize::from(span.len)))
    }

    /// Where field `number`'s value starts in the message, if it was read.
    pub fn field_offset(&self, number: u8) -> Option<usize> {
        if !self.read.has(number) {
            return None;
        }
        self.spans
            .get(usize::from(number))
            .map(|span| usize::from(span.start))
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Reads field `number` at `offset`, records its span and returns where the next starts.
    fn read_field(&mut self, number: u8, offset: usize) -> Result<usize, FieldError> {
        let error = |kind| FieldError {
            field: number,
            kind,
        };
        let Some(layout) = spec::field(number) else {
            return Err(error(FieldErrorKind::Truncated));
        };
        let (prefix, len) = match layout.length {
            Length::Fixed(len) => (0, len),
            Length::LlVar(max) => (2, read_length(&self.bytes, offset, 2, max).map_err(error)?),
            Length::LllVar(max) => (3, read_length(&self.bytes, offset, 3, max).map_err(error)?),
        };
        let start = offset + prefix;
        let end = start + usize::from(len);
        if end > self.bytes.len() {
            return Err(error(FieldErrorKind::Truncated));
        }
        let start = u16::try_from(start).map_err(|_| error(FieldErrorKind::Truncated))?;
        if let Some(span) = self.spans.get_mut(usize::from(number)) {
            *span = Span { start, len };
            self.read.set(number);
        }
        Ok(end)
    }
}

impl std::fmt::Debug for RawMessage {
    /// Shows the MTI and which fields are present, never their bytes: a message can carry an
    /// envelope and a MAC, which are never logged (docs/style.md section 8).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fields: Vec<u8> = self.bitmap.fields().collect();
        f.debug_struct("RawMessage")
            .field("mti", &String::from_utf8_lossy(&self.mti_bytes()))
            .field("fields", &fields)
            .field("defect", &self.defect)
            .finish()
    }
}

fn read_bitmap(bytes: &[u8], offset: usize) -> Option<[u8; BITMAP_BYTES]> {
    let slice = bytes.get(offset..offset + BITMAP_BYTES)?;
    let mut bitmap = [0_u8; BITMAP_BYTES];
    bitmap.copy_from_slice(slice);
    Some(bitmap)
}

fn read_length(
    bytes: &[u8],
    offset: usize,
    digits: usize,
    max: u16,
) -> Result<u16, FieldErrorKind> {
    let prefix = bytes
        .get(offset..offset + digits)
        .ok_or(FieldErrorKind::Truncated)?;
    let len = parse_digits(prefix).ok_or(FieldErrorKind::BadLengthPrefix)?;
    let len = u16::try_from(len).map_err(|_| FieldErrorKind::BadLengthPrefix)?;
    if len > max {
        return Err(FieldErrorKind::TooLong { len, max });
    }
    Ok(len)
}

/// Reads ASCII digits as a number; `None` for an empty slice, a non-digit, or more than 18
/// digits (which could overflow).
pub fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut value = 0_u64;
    for digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value * 10 + u64::from(digit - b'0');
    }
    Some(value)
}
