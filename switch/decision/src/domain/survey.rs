//! SMS surveys after a purchase (docs/surveys.md): the answer scale, how a member's reply is
//! read, and the report's rounding. Pure: the scheduler, the inbound webhook and the report
//! call these with values they read.

use rust_decimal::{Decimal, RoundingStrategy};

use crate::domain::Invalid;

/// Highest score a scale may reach: a reply is one or two digits, and 0..=10 is the widest
/// scale in use (NPS).
pub const SCORE_MAX: u8 = 10;
/// Longest reply text read, in characters: ten concatenated SMS parts of 160.
pub const REPLY_CHARS_MAX: usize = 1_600;
/// Longest comment kept, in characters; the rest of a longer one is cut.
pub const COMMENT_CHARS_MAX: usize = 500;
/// Decimal places of the response rate (a fraction of 1, `0.6667`).
pub const RATE_DP: u32 = 4;
/// Decimal places of the average score (`4.17`).
pub const AVERAGE_DP: u32 = 2;

/// The scores a survey accepts, `min..=max`, with `min < max <= 10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scale {
    min: u8,
    max: u8,
}

impl Scale {
    /// A scale from `min` to `max`, both included.
    ///
    /// # Errors
    /// [`Invalid`] unless `0 <= min < max <= 10`.
    pub fn new(min: i64, max: i64) -> Result<Scale, Invalid> {
        let (Ok(min), Ok(max)) = (u8::try_from(min), u8::try_from(max)) else {
            return Err(Invalid::new("scale_min and scale_max must be 0..=10"));
        };
        if max > SCORE_MAX {
            return Err(Invalid::new("scale_min and scale_max must be 0..=10"));
        }
        if min >= max {
            return Err(Invalid::new("scale_min must be below scale_max"));
        }
        Ok(Scale { min, max })
    }

    /// The lowest score.
    pub fn min(self) -> u8 {
        self.min
    }

    /// The highest score.
    pub fn max(self) -> u8 {
        self.max
    }

    /// Whether `score` is on the scale.
    pub fn contains(self, score: u8) -> bool {
        (self.min..=self.max).contains(&score)
    }
}

/// What a member's reply says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A score on the scale, and what followed it, if anything.
    Scored {
        /// The score.
        score: u8,
        /// The text after the score, trimmed and cut to [`COMMENT_CHARS_MAX`].
        comment: Option<String>,
    },
    /// No score on the scale at its start.
    Unparsed,
}

/// Reads a reply: a score at the start (ASCII, Persian `۰`–`۹` or Arabic-Indic `٠`–`٩` digits,
/// at most two), optionally written `4/5` with the scale's top, then an optional comment after
/// a space or punctuation. `"4"`, `"۴"`, `"4 great coffee"`, `"4, great"` and `"4/5 great"` are
/// 4; a score off the scale, a number with more digits, a word first (`"four"`, `"I'd say 4"`)
/// or a digit run into letters (`"4x"`) do not parse.
pub fn parse_reply(text: &str, scale: Scale) -> Reply {
    let text = text.trim();
    let mut chars = text.char_indices().peekable();
    let mut score: u32 = 0;
    let mut digits = 0;
    let mut rest = text.len();
    while let Some((at, ch)) = chars.peek().copied() {
        match digit(ch) {
            Some(value) => {
                digits += 1;
                score = score * 10 + value;
                chars.next();
            }
            None => {
                rest = at;
                break;
            }
        }
    }
    if digits == 0 || digits > 2 {
        return Reply::Unparsed;
    }
    let Some(score) = u8::try_from(score).ok().filter(|s| scale.contains(*s)) else {
        return Reply::Unparsed;
    };
    let mut tail = text.get(rest..).unwrap_or("");
    if let Some(after) = tail.strip_prefix('/') {
        let top = scale.max().to_string();
        let ascii: String = after
            .chars()
            .map_while(|ch| digit(ch).and_then(|d| char::from_digit(d, 10)))
            .collect();
        if ascii != top {
            return Reply::Unparsed;
        }
        let skipped: usize = after
            .chars()
            .take(ascii.chars().count())
            .map(char::len_utf8)
            .sum();
        tail = after.get(skipped..).unwrap_or("");
    }
    if tail.chars().next().is_some_and(char::is_alphanumeric) {
        return Reply::Unparsed;
    }
    let comment: String = tail
        .trim_start_matches(|ch: char| ch.is_whitespace() || is_separator(ch))
        .trim_end()
        .chars()
        .take(COMMENT_CHARS_MAX)
        .collect();
    Reply::Scored {
        score,
        comment: Some(comment).filter(|c| !c.is_empty()),
    }
}

/// A digit's value in ASCII, Persian or Arabic-Indic digits.
fn digit(ch: char) -> Option<u32> {
    match ch {
        '0'..='9' => ch.to_digit(10),
        '\u{06F0}'..='\u{06F9}' => Some(u32::from(ch) - 0x06F0),
        '\u{0660}'..='\u{0669}' => Some(u32::from(ch) - 0x0660),
        _ => None,
    }
}

/// Punctuation that may stand between the score and the comment, Persian ones included.
fn is_separator(ch: char) -> bool {
    matches!(
        ch,
        '.' | ',' | '-' | ':' | ';' | '!' | ')' | '،' | '؛' | '–' | '—'
    )
}

/// A phone number for a log line or a stored unmatched message: its first three characters
/// (`+` and the country code's start) and last two digits, the rest as `*`.
pub fn mask_phone(phone: &str) -> String {
    let count = phone.chars().count();
    phone
        .chars()
        .enumerate()
        .map(|(index, ch)| {
            if index < 3 || index + 2 >= count {
                ch
            } else {
                '*'
            }
        })
        .collect()
}

/// Answered over sent, as a fraction of 1 rounded to [`RATE_DP`] places, half away from zero;
/// 0 when nothing was sent.
pub fn response_rate(answered: i64, sent: i64) -> Decimal {
    if sent <= 0 {
        return fixed(Decimal::ZERO, RATE_DP);
    }
    fixed(Decimal::from(answered) / Decimal::from(sent), RATE_DP)
}

/// The mean of `count` scores summing to `sum`, rounded to [`AVERAGE_DP`] places, half away
/// from zero; `None` without scores.
pub fn average_score(sum: i64, count: i64) -> Option<Decimal> {
    if count <= 0 {
        return None;
    }
    Some(fixed(Decimal::from(sum) / Decimal::from(count), AVERAGE_DP))
}

/// `value` rounded half away from zero to exactly `dp` places (`1` is written `1.0000`).
fn fixed(value: Decimal, dp: u32) -> Decimal {
    let mut out = value.round_dp_with_strategy(dp, RoundingStrategy::MidpointAwayFromZero);
    out.rescale(dp);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn check(text: &str, expected: Option<(u8, Option<&str>)>) {
        let scale = Scale::new(1, 5).unwrap();
        let wanted = match expected {
            Some((score, comment)) => Reply::Scored {
                score,
                comment: comment.map(str::to_owned),
            },
            None => Reply::Unparsed,
        };
        assert_eq!(parse_reply(text, scale), wanted, "{text:?}");
    }

    #[test]
    fn replies() {
        check("4", Some((4, None)));
        check("  5 \n", Some((5, None)));
        check("۴", Some((4, None)));
        check("٣", Some((3, None)));
        check("4 great coffee", Some((4, Some("great coffee"))));
        check("۵ قهوه عالی بود", Some((5, Some("قهوه عالی بود"))));
        check("4, slow service ", Some((4, Some("slow service"))));
        check("4. ok", Some((4, Some("ok"))));
        check("3، خوب", Some((3, Some("خوب"))));
        check("4/5 great", Some((4, Some("great"))));
        check("۴/۵", Some((4, None)));
        check("05", Some((5, None)));
        check("4!", Some((4, None)));
        check("4/6", None);
        check("6", None);
        check("0", None);
        check("10", None);
        check("123", None);
        check("-1", None);
        check("four", None);
        check("I'd say 4", None);
        check("4x", None);
        check("", None);
        check("   ", None);
    }

    #[test]
    fn scales() {
        assert!(Scale::new(0, 10).is_ok());
        assert!(Scale::new(1, 5).is_ok());
        assert!(Scale::new(5, 5).is_err());
        assert!(Scale::new(3, 1).is_err());
        assert!(Scale::new(0, 11).is_err());
        assert!(Scale::new(-1, 5).is_err());
        let nps = Scale::new(0, 10).unwrap();
        assert_eq!(
            parse_reply("10 best", nps),
            Reply::Scored {
                score: 10,
                comment: Some("best".to_owned())
            }
        );
        assert_eq!(parse_reply("۱۰", nps), parse_reply("10", nps));
    }

    #[test]
    fn a_long_comment_is_cut() {
        let text = format!("5 {}", "é".repeat(COMMENT_CHARS_MAX + 10));
        let Reply::Scored { comment, .. } = parse_reply(&text, Scale::new(1, 5).unwrap()) else {
            panic!("unparsed");
        };
        assert_eq!(comment.unwrap().chars().count(), COMMENT_CHARS_MAX);
    }

    #[test]
    fn masks() {
        assert_eq!(mask_phone("+989121234567"), "+98********67");
        assert_eq!(mask_phone("+12"), "+12");
    }

    #[test]
    fn rounding() {
        let rate = |a, s| response_rate(a, s).to_string();
        assert_eq!(rate(2, 3), "0.6667");
        assert_eq!(rate(1, 3), "0.3333");
        assert_eq!(rate(1, 8), "0.1250");
        // 1/16 = 0.0625 exactly; 1/32 = 0.03125: the midpoint goes away from zero.
        assert_eq!(rate(1, 32), "0.0313");
        assert_eq!(rate(0, 0), "0.0000");
        assert_eq!(rate(3, 3), "1.0000");
        let average = |sum, n| average_score(sum, n).map(|d| d.to_string());
        assert_eq!(average(25, 6), Some("4.17".to_owned()));
        assert_eq!(average(9, 2), Some("4.50".to_owned()));
        // 0.125 → 0.13 (half away from zero), not 0.12 (banker's).
        assert_eq!(average(1, 8), Some("0.13".to_owned()));
        assert_eq!(average(0, 0), None);
    }
}
