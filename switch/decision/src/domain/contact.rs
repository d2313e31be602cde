//! How a member is reached: a mobile number and the language of the messages sent to it.

use std::fmt;

use crate::domain::Invalid;

/// Shortest number, in digits after the `+`: a country code and a short subscriber number.
pub const PHONE_DIGITS_MIN: usize = 8;
/// Longest number, in digits after the `+` (ITU-T E.164).
pub const PHONE_DIGITS_MAX: usize = 15;

/// A mobile number in E.164 form: `+`, then 8..=15 digits, the first not zero
/// (`+989121234567`). Personal data: its `Debug` prints no digits, and logs name the member
/// code instead; [`Phone::as_str`] is for the database and the SMS gateway only.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Phone(String);

impl Phone {
    /// Parses a number in E.164 form.
    ///
    /// # Errors
    /// [`Invalid`] when it is not `+` and 8..=15 digits with a non-zero first digit (the
    /// reason never repeats the number).
    pub fn parse(text: &str) -> Result<Phone, Invalid> {
        let digits = text
            .strip_prefix('+')
            .ok_or(Invalid::new("must start with + and the country code"))?;
        let well_formed = (PHONE_DIGITS_MIN..=PHONE_DIGITS_MAX).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0');
        if !well_formed {
            return Err(Invalid::new(
                "must be + and 8..=15 digits in E.164 form, such as +989121234567",
            ));
        }
        Ok(Phone(text.to_owned()))
    }

    /// The number, for the database and the SMS gateway.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(<redacted>)")
    }
}

/// The language of a member's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Locale {
    /// Persian, with Persian digits (the default).
    Fa,
    /// English.
    En,
}

impl Locale {
    /// Parses `fa` or `en`.
    ///
    /// # Errors
    /// [`Invalid`] for anything else.
    pub fn parse(text: &str) -> Result<Locale, Invalid> {
        match text {
            "fa" => Ok(Locale::Fa),
            "en" => Ok(Locale::En),
            _ => Err(Invalid::new("must be \"fa\" or \"en\"")),
        }
    }

    /// The import file's and the database's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Fa => "fa",
            Locale::En => "en",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(text: &str, valid: bool) {
        assert_eq!(Phone::parse(text).is_ok(), valid, "{text}");
    }

    #[test]
    fn phones() {
        check("+989121234567", true);
        check("+4915112345678", true);
        check("+12345678", true);
        check("989121234567", false);
        check("+0989121234567", false);
        check("+98912123456789012", false);
        check("+9891212x4567", false);
        check("+98 912 123 4567", false);
        check("+", false);
        check("", false);
    }

    #[test]
    fn debug_prints_no_digits() {
        let phone = Phone::parse("+989121234567").unwrap();
        assert_eq!(format!("{phone:?}"), "Phone(<redacted>)");
    }

    #[test]
    fn locales() {
        assert_eq!(Locale::parse("fa"), Ok(Locale::Fa));
        assert_eq!(Locale::parse("en"), Ok(Locale::En));
        assert!(Locale::parse("EN").is_err());
    }
}
