//! Time as values: [`UnixMillis`], civil dates and weekdays in a merchant's local time.
//!
//! The switch never reads the clock here: callers pass `now`. Civil dates use the proleptic
//! Gregorian calendar (Howard Hinnant's `days_from_civil` algorithm), and local time is UTC plus
//! the merchant's fixed offset (Asia/Tehran is +03:30 all year since 2022).

use std::fmt;

use crate::domain::Invalid;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;
/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;
/// Minutes in a day: the exclusive upper bound of a minute of day.
pub const DAY_MINUTES: u16 = 1_440;
/// The most negative UTC offset in use (UTC−12:00).
pub const UTC_OFFSET_MINUTES_MIN: i32 = -720;
/// The most positive UTC offset in use (UTC+14:00).
pub const UTC_OFFSET_MINUTES_MAX: i32 = 840;
/// Asia/Tehran's offset (+03:30), the default of the network.
pub const TEHRAN_UTC_OFFSET_MINUTES: i32 = 210;

/// A point in time: milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct UnixMillis(i64);

impl UnixMillis {
    /// Wraps milliseconds since the Unix epoch.
    pub const fn new(millis: i64) -> UnixMillis {
        UnixMillis(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// The first millisecond of `date` in a zone `utc_offset_minutes` east of UTC.
    pub fn start_of_local_day(date: CivilDate, utc_offset_minutes: i32) -> UnixMillis {
        let local = date.days_since_epoch() * DAY_MS;
        UnixMillis(local - i64::from(utc_offset_minutes) * MINUTE_MS)
    }
}

/// A calendar date (proleptic Gregorian), years 1970..=9999.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CivilDate {
    year: u16,
    month: u8,
    day: u8,
}

/// First year a [`CivilDate`] may have: nothing in the switch predates the Unix epoch.
pub const YEAR_MIN: u16 = 1970;
/// Last year a [`CivilDate`] may have: four digits.
pub const YEAR_MAX: u16 = 9999;

impl CivilDate {
    /// A date, when the day exists in that month and year.
    ///
    /// # Errors
    /// [`Invalid`] for a year outside 1970..=9999, a month outside 1..=12 or a day that month
    /// does not have.
    pub fn new(year: u16, month: u8, day: u8) -> Result<CivilDate, Invalid> {
        if !(YEAR_MIN..=YEAR_MAX).contains(&year) {
            return Err(Invalid::new("year must be 1970..=9999"));
        }
        if !(1..=12).contains(&month) {
            return Err(Invalid::new("month must be 01..=12"));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(Invalid::new("day does not exist in that month"));
        }
        Ok(CivilDate { year, month, day })
    }

    /// Parses `YYYY-MM-DD`.
    ///
    /// # Errors
    /// [`Invalid`] when the shape or the date is wrong.
    pub fn parse(text: &str) -> Result<CivilDate, Invalid> {
        let shape = Invalid::new("must be a date YYYY-MM-DD");
        let bytes = text.as_bytes();
        if bytes.len() != 10 || bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
            return Err(shape);
        }
        let year = digits(text.get(0..4)).ok_or(shape)?;
        let month = digits(text.get(5..7)).ok_or(shape)?;
        let day = digits(text.get(8..10)).ok_or(shape)?;
        CivilDate::new(
            u16::try_from(year).map_err(|_| shape)?,
            u8::try_from(month).map_err(|_| shape)?,
            u8::try_from(day).map_err(|_| shape)?,
        )
    }

    /// The date `days` days after 1970-01-01 (negative `days` clamp to 1970-01-01).
    pub fn from_days_since_epoch(days: i64) -> CivilDate {
        // Hinnant's civil_from_days, on non-negative day counts only.
        let z = days.max(0) + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        CivilDate {
            year: u16::try_from(year).unwrap_or(YEAR_MAX),
            month: u8::try_from(month).unwrap_or(1),
            day: u8::try_from(day).unwrap_or(1),
        }
    }

    /// Days since 1970-01-01 (Hinnant's `days_from_civil`).
    pub fn days_since_epoch(self) -> i64 {
        let month = i64::from(self.month);
        let year = i64::from(self.year) - i64::from(month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year.rem_euclid(400);
        let shifted_month = if month > 2 { month - 3 } else { month + 9 };
        let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The next day.
    pub fn next(self) -> CivilDate {
        CivilDate::from_days_since_epoch(self.days_since_epoch() + 1)
    }

    /// The year.
    pub fn year(self) -> u16 {
        self.year
    }

    /// The month, 1..=12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1..=31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        Weekday::from_days_since_epoch(self.days_since_epoch())
    }
}

impl fmt::Debug for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for CivilDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday, the weekend in Iran.
    Friday,
    /// Saturday, the first working day of the Iranian week.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Every day, Monday first.
    pub const ALL: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];

    /// The weekday of the day `days` after 1970-01-01, which was a Thursday.
    pub fn from_days_since_epoch(days: i64) -> Weekday {
        match (days + 3).rem_euclid(7) {
            0 => Weekday::Monday,
            1 => Weekday::Tuesday,
            2 => Weekday::Wednesday,
            3 => Weekday::Thursday,
            4 => Weekday::Friday,
            5 => Weekday::Saturday,
            _ => Weekday::Sunday,
        }
    }

    /// The three-letter lowercase name used in the import file: `mon` … `sun`.
    pub fn short_name(self) -> &'static str {
        match self {
            Weekday::Monday => "mon",
            Weekday::Tuesday => "tue",
            Weekday::Wednesday => "wed",
            Weekday::Thursday => "thu",
            Weekday::Friday => "fri",
            Weekday::Saturday => "sat",
            Weekday::Sunday => "sun",
        }
    }

    /// The day named by [`Weekday::short_name`].
    pub fn from_short_name(name: &str) -> Option<Weekday> {
        Weekday::ALL
            .into_iter()
            .find(|day| day.short_name() == name)
    }

    fn bit(self) -> u8 {
        match self {
            Weekday::Monday => 1,
            Weekday::Tuesday => 1 << 1,
            Weekday::Wednesday => 1 << 2,
            Weekday::Thursday => 1 << 3,
            Weekday::Friday => 1 << 4,
            Weekday::Saturday => 1 << 5,
            Weekday::Sunday => 1 << 6,
        }
    }
}

/// A non-empty set of weekdays, as a bit mask (bit 0 Monday … bit 6 Sunday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weekdays(u8);

impl Weekdays {
    /// Every day of the week.
    pub const ALL: Weekdays = Weekdays(0x7f);

    /// The set with the given mask.
    ///
    /// # Errors
    /// [`Invalid`] when the mask is empty or has bit 7 set.
    pub fn from_mask(mask: u8) -> Result<Weekdays, Invalid> {
        if mask == 0 || mask > 0x7f {
            return Err(Invalid::new("must name 1 to 7 days"));
        }
        Ok(Weekdays(mask))
    }

    /// The set of the given days.
    ///
    /// # Errors
    /// [`Invalid`] when `days` is empty.
    pub fn from_days(days: impl IntoIterator<Item = Weekday>) -> Result<Weekdays, Invalid> {
        Weekdays::from_mask(days.into_iter().fold(0, |mask, day| mask | day.bit()))
    }

    /// The bit mask, bit 0 Monday … bit 6 Sunday.
    pub fn mask(self) -> u8 {
        self.0
    }

    /// Whether `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & day.bit() != 0
    }
}

/// Date, weekday and minute of day at one instant in one fixed-offset zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDateTime {
    /// The local calendar date.
    pub date: CivilDate,
    /// The local day of the week.
    pub weekday: Weekday,
    /// Minutes since local midnight, `0..1440`.
    pub minute_of_day: u16,
}

impl LocalDateTime {
    /// The local date and time at `at` in a zone `utc_offset_minutes` east of UTC.
    pub fn at(at: UnixMillis, utc_offset_minutes: i32) -> LocalDateTime {
        let local = at.get() + i64::from(utc_offset_minutes) * MINUTE_MS;
        let days = local.div_euclid(DAY_MS);
        let minute = local.rem_euclid(DAY_MS) / MINUTE_MS;
        let minute_of_day = u16::try_from(minute).unwrap_or(0);
        assert!(minute_of_day < DAY_MINUTES);
        LocalDateTime {
            date: CivilDate::from_days_since_epoch(days),
            weekday: Weekday::from_days_since_epoch(days),
            minute_of_day,
        }
    }
}

/// Checks a UTC offset in minutes against [`UTC_OFFSET_MINUTES_MIN`]..=[`UTC_OFFSET_MINUTES_MAX`].
///
/// # Errors
/// [`Invalid`] when the offset is outside the range in use on Earth.
pub fn check_utc_offset(minutes: i32) -> Result<i32, Invalid> {
    if (UTC_OFFSET_MINUTES_MIN..=UTC_OFFSET_MINUTES_MAX).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(Invalid::new("must be -720..=840 minutes"))
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The value of 1..=4 ASCII digits, or `None` for anything else.
pub(crate) fn digits(text: Option<&str>) -> Option<u32> {
    let text = text?;
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check(millis: i64, offset: i32, expected: (&str, Weekday, u16)) {
        let local = LocalDateTime::at(UnixMillis::new(millis), offset);
        let got = (local.date.to_string(), local.weekday, local.minute_of_day);
        assert_eq!(
            got,
            (expected.0.to_string(), expected.1, expected.2),
            "{millis} {offset}"
        );
    }

    #[test]
    fn local_time() {
        check(0, 0, ("1970-01-01", Weekday::Thursday, 0));
        // 2025-03-20T20:29:59.999Z is 23:59 in Tehran; one millisecond later it is Friday.
        check(
            1_742_502_599_999,
            210,
            ("2025-03-20", Weekday::Thursday, 1_439),
        );
        check(1_742_502_600_000, 210, ("2025-03-21", Weekday::Friday, 0));
        check(951_782_400_000, 0, ("2000-02-29", Weekday::Tuesday, 0));
        check(
            4_102_444_800_000 - 1,
            0,
            ("2099-12-31", Weekday::Thursday, 1_439),
        );
    }

    #[test]
    fn dates_round_trip() {
        for days in (0..2_932_896).step_by(997) {
            let date = CivilDate::from_days_since_epoch(days);
            assert_eq!(date.days_since_epoch(), days);
            assert_eq!(CivilDate::parse(&date.to_string()).unwrap(), date);
        }
        assert!(CivilDate::parse("2023-02-29").is_err());
        assert!(CivilDate::parse("2024-02-29").is_ok());
        assert!(CivilDate::parse("2024-2-29").is_err());
        assert!(CivilDate::parse("2024-13-01").is_err());
    }
}
