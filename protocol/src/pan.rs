//! The card number (PAN): validated, never printed, wiped on drop.

use std::fmt;

use zeroize::Zeroize;

/// Shortest PAN LSTI-1 accepts (docs/protocol.md section 3).
pub const PAN_DIGITS_MIN: usize = 12;
/// Longest PAN LSTI-1 accepts (docs/protocol.md section 3).
pub const PAN_DIGITS_MAX: usize = 19;

/// Card number: 12..=19 ASCII digits. Never printed, serialized or stored in clear.
///
/// The only ways out are [`Pan::masked`] (BIN and last 4) and [`Pan::expose_digits`], which is
/// for the keyed token and nothing else.
#[derive(Clone, PartialEq, Eq)]
pub struct Pan {
    digits: [u8; PAN_DIGITS_MAX],
    len: u8,
}

/// Why bytes are not a PAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanError {
    /// Fewer than 12 or more than 19 characters.
    #[error("pan length {len} outside 12..=19")]
    Length {
        /// The length that was given.
        len: usize,
    },
    /// A character that is not an ASCII digit.
    #[error("pan contains a non-digit")]
    NotDigits,
}

impl Pan {
    /// Checks length (12..=19) and that every byte is an ASCII digit. The Luhn check is
    /// separate ([`Pan::luhn_valid`]) because it answers a different response code (`14`, not
    /// `30`).
    ///
    /// # Errors
    /// [`PanError`] when the length or a character is wrong.
    pub fn parse(text: &[u8]) -> Result<Pan, PanError> {
        if !(PAN_DIGITS_MIN..=PAN_DIGITS_MAX).contains(&text.len()) {
            return Err(PanError::Length { len: text.len() });
        }
        if !text.iter().all(u8::is_ascii_digit) {
            return Err(PanError::NotDigits);
        }
        let mut digits = [b'0'; PAN_DIGITS_MAX];
        for (slot, digit) in digits.iter_mut().zip(text) {
            *slot = *digit;
        }
        let len = u8::try_from(text.len()).map_err(|_| PanError::Length { len: text.len() })?;
        Ok(Pan { digits, len })
    }

    /// Like [`Pan::parse`], and also requires the Luhn check digit to be right.
    ///
    /// # Errors
    /// [`PanLuhnError`] naming which check failed.
    pub fn parse_luhn(text: &[u8]) -> Result<Pan, PanLuhnError> {
        let pan = Pan::parse(text).map_err(PanLuhnError::Format)?;
        if !pan.luhn_valid() {
            return Err(PanLuhnError::Luhn);
        }
        Ok(pan)
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Always false: a PAN has at least 12 digits. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The Luhn (mod 10) check over all digits, the last being the check digit.
    pub fn luhn_valid(&self) -> bool {
        let mut sum = 0_u32;
        for (position, digit) in self.expose_digits().iter().rev().enumerate() {
            let mut value = u32::from(digit.wrapping_sub(b'0'));
            if position % 2 == 1 {
                value *= 2;
                if value > 9 {
                    value -= 9;
                }
            }
            sum += value;
        }
        sum % 10 == 0
    }

    /// The first six digits (the BIN), which may be shown and stored.
    pub fn bin(&self) -> [u8; 6] {
        let mut bin = [0_u8; 6];
        bin.copy_from_slice(self.digits.get(..6).unwrap_or(&[b'0'; 6]));
        bin
    }

    /// The last four digits, which may be shown and stored.
    pub fn last4(&self) -> [u8; 4] {
        let mut last = [0_u8; 4];
        let end = self.len();
        last.copy_from_slice(self.digits.get(end - 4..end).unwrap_or(&[b'0'; 4]));
        last
    }

    /// `BIN******last4` with as many stars as hidden digits: safe to show an operator.
    pub fn masked(&self) -> String {
        let mut text = String::with_capacity(self.len());
        text.extend(self.bin().iter().map(|d| char::from(*d)));
        text.extend(std::iter::repeat_n('*', self.len() - 10));
        text.extend(self.last4().iter().map(|d| char::from(*d)));
        text
    }

    /// The digits in clear. Call it only to compute the keyed PAN token, to seal an envelope on
    /// the terminal side, or for the Luhn check: never to log, print or store.
    pub fn expose_digits(&self) -> &[u8] {
        self.digits.get(..self.len()).unwrap_or(&[])
    }
}

/// Why bytes are not a Luhn-valid PAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PanLuhnError {
    /// Length or characters are wrong.
    #[error(transparent)]
    Format(PanError),
    /// The check digit is wrong.
    #[error("pan fails the luhn check")]
    Luhn,
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl Drop for Pan {
    fn drop(&mut self) {
        self.digits.zeroize();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn check(text: &str, expected: Result<bool, PanError>) {
        let got = Pan::parse(text.as_bytes()).map(|pan| pan.luhn_valid());
        assert_eq!(got, expected, "{text}");
    }

    #[test]
    fn parse_and_luhn() {
        check("6037991234567893", Ok(true));
        check("6037991234567894", Ok(false));
        check("4111111111111111", Ok(true));
        check("12345678901", Err(PanError::Length { len: 11 }));
        check("12345678901234567890", Err(PanError::Length { len: 20 }));
        check("60379912345678A3", Err(PanError::NotDigits));
    }

    #[test]
    fn debug_never_shows_middle_digits() {
        let pan = Pan::parse(b"6037991234567893").unwrap();
        let shown = format!("{pan:?}");
        assert_eq!(shown, "Pan(603799******7893)");
        assert!(!shown.contains("6037991234567893"));
    }
}
