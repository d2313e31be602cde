//! Field 7, transmission date and time: `MMDDhhmmss` in UTC, without a year.
//!
//! docs/protocol.md section 7 fixes the year: the one that puts the value nearest the switch clock,
//! so a message sent at 23:59:59 on 31 December is read right after New Year.

use crate::builder::write_digits;
use crate::field::parse_digits;
use crate::ids::Malformed;

/// Seconds field 7 may differ from the switch clock; exactly this many is still accepted.
pub const CLOCK_SKEW_SECONDS_MAX: i64 = 300;

/// A field-7 value: month, day, hour, minute, second (UTC), checked to be a real time of some
/// year (29 February is allowed; it resolves only to leap years).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmissionTime {
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl TransmissionTime {
    /// # Errors
    /// [`Malformed`] unless 10 digits naming a possible date and time.
    pub fn parse(bytes: &[u8]) -> Result<TransmissionTime, Malformed> {
        let bad = Malformed {
            what: "transmission time",
        };
        let digits: &[u8; 10] = bytes.try_into().map_err(|_| bad)?;
        let part = |at: usize| -> Result<u8, Malformed> {
            let pair = digits.get(at..at + 2).ok_or(bad)?;
            u8::try_from(parse_digits(pair).ok_or(bad)?).map_err(|_| bad)
        };
        let time = TransmissionTime {
            month: part(0)?,
            day: part(2)?,
            hour: part(4)?,
            minute: part(6)?,
            second: part(8)?,
        };
        let valid = (1..=12).contains(&time.month)
            && time.day >= 1
            && time.day <= days_in_month(2000, time.month)
            && time.hour < 24
            && time.minute < 60
            && time.second < 60;
        if !valid {
            return Err(bad);
        }
        Ok(time)
    }

    /// The field-7 value of a Unix time (seconds, UTC).
    pub fn from_unix(seconds: i64) -> TransmissionTime {
        let days = seconds.div_euclid(86_400);
        let of_day = seconds.rem_euclid(86_400);
        let (_, month, day) = civil_from_days(days);
        let small = |value: i64| u8::try_from(value).unwrap_or(0);
        TransmissionTime {
            month,
            day,
            hour: small(of_day / 3600),
            minute: small(of_day % 3600 / 60),
            second: small(of_day % 60),
        }
    }

    /// The 10 ASCII digits.
    pub fn to_digits(self) -> [u8; 10] {
        let mut out = [b'0'; 10];
        for (at, value) in [self.month, self.day, self.hour, self.minute, self.second]
            .into_iter()
            .enumerate()
        {
            if let Some(slot) = out.get_mut(at * 2..at * 2 + 2) {
                write_digits(slot, u64::from(value));
            }
        }
        out
    }

    /// The Unix time (seconds) this value means, taking the year (now's, the one before or
    /// the one after) that puts it nearest `now_seconds`.
    pub fn resolve(self, now_seconds: i64) -> i64 {
        let (year, _, _) = civil_from_days(now_seconds.div_euclid(86_400));
        [year - 1, year, year + 1]
            .into_iter()
            .filter(|y| self.day <= days_in_month(*y, self.month))
            .map(|y| self.at_year(y))
            .min_by_key(|at| (at - now_seconds).abs())
            .unwrap_or(i64::MIN)
    }

    /// Seconds between this value (resolved to its nearest year) and `now_seconds`.
    pub fn skew_seconds(self, now_seconds: i64) -> i64 {
        (self.resolve(now_seconds) - now_seconds).abs()
    }

    /// Whether this value is within [`CLOCK_SKEW_SECONDS_MAX`] of `now_seconds` (inclusive).
    pub fn is_fresh(self, now_seconds: i64) -> bool {
        // Fast path: the value read in the current year is close enough, so the nearest of the
        // three years `resolve` weighs is too. Only a value that is not (a stale one, or one
        // sent across a new year) pays for the other two.
        let (year, _, _) = civil_from_days(now_seconds.div_euclid(86_400));
        if self.day <= days_in_month(year, self.month)
            && (self.at_year(year) - now_seconds).abs() <= CLOCK_SKEW_SECONDS_MAX
        {
            return true;
        }
        self.skew_seconds(now_seconds) <= CLOCK_SKEW_SECONDS_MAX
    }

    fn at_year(self, year: i64) -> i64 {
        days_from_civil(year, self.month, self.day) * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second)
    }
}

/// Days in `month` of `year` (proleptic Gregorian).
pub fn days_in_month(year: i64, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (H. Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The civil date (year, month, day) of a day count since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u8::try_from(month).unwrap_or(0),
        u8::try_from(day).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    // 2026-11-22T18:30:00Z, the vectors' switch clock.
    const NOW: i64 = 1_795_372_200;

    fn check(field7: &str, now: i64, skew: Option<i64>) {
        let got = TransmissionTime::parse(field7.as_bytes())
            .ok()
            .map(|t| t.skew_seconds(now));
        assert_eq!(got, skew, "{field7}");
    }

    #[test]
    fn skew_table() {
        assert_eq!(
            days_from_civil(2026, 11, 22) * 86_400 + 18 * 3600 + 30 * 60,
            NOW
        );
        check("1122183000", NOW, Some(0));
        check("1122183500", NOW, Some(300));
        check("1122183501", NOW, Some(301));
        check("1122182459", NOW, Some(301));
        check("1322183000", NOW, None);
        check("0230120000", NOW, None);
        check("11221830A0", NOW, None);
        // Sent 23:59:59 on 31 December, read a second after New Year.
        let new_year = days_from_civil(2027, 1, 1) * 86_400;
        check("1231235959", new_year, Some(1));
        check(
            "0101000001",
            days_from_civil(2026, 12, 31) * 86_400 + 86_399,
            Some(2),
        );
        // 29 February resolves to the nearest leap year only.
        check(
            "0229120000",
            days_from_civil(2028, 2, 29) * 86_400 + 43_200,
            Some(0),
        );
    }

    /// The fast path of `is_fresh` answers as the full rule does, for values around the switch
    /// clock on ordinary days, across New Year and around 29 February.
    #[test]
    fn is_fresh_agrees_with_the_nearest_year_rule() {
        let clocks = [
            NOW,
            days_from_civil(2027, 1, 1) * 86_400,
            days_from_civil(2026, 12, 31) * 86_400 + 86_399,
            days_from_civil(2028, 2, 29) * 86_400 + 43_200,
            days_from_civil(2028, 3, 1) * 86_400 + 120,
            days_from_civil(2029, 3, 1) * 86_400 + 60,
        ];
        let mut fresh = 0;
        for now in clocks {
            for offset in (-900..=900).step_by(7) {
                let sent = TransmissionTime::from_unix(now + offset);
                let expected = sent.skew_seconds(now) <= CLOCK_SKEW_SECONDS_MAX;
                assert_eq!(sent.is_fresh(now), expected, "now {now} offset {offset}");
                fresh += usize::from(expected);
            }
            // The same wall-clock value a year off is stale, whichever way.
            for years in [-1_i64, 1] {
                let sent = TransmissionTime::from_unix(now + years * 365 * 86_400);
                assert_eq!(
                    sent.is_fresh(now),
                    sent.skew_seconds(now) <= CLOCK_SKEW_SECONDS_MAX
                );
            }
        }
        assert!(fresh > 100, "the sweep must cover fresh values too");
    }

    #[test]
    fn round_trip() {
        for seconds in [0, NOW, NOW + 86_399, days_from_civil(2028, 2, 29) * 86_400] {
            let time = TransmissionTime::from_unix(seconds);
            let parsed = TransmissionTime::parse(&time.to_digits()).unwrap();
            assert_eq!(parsed.resolve(seconds), seconds);
        }
        assert_eq!(civil_from_days(days_from_civil(2000, 2, 29)), (2000, 2, 29));
    }
}
