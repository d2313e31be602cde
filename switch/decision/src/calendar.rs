//! The working-day calendar (docs/design.md section 7): Saturday to Thursday are working days,
//! Friday is the weekend, and holidays come from a text file (format in docs/settlement.md).
//!
//! Pure: parsing and day arithmetic only; reading the file is the caller's business.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::{CivilDate, Weekday};

/// How far [`Calendar::next_working_day`] looks ahead before giving up. No real calendar has
/// a month without a working day; a longer run means the file is wrong.
pub const WORKING_DAY_SEARCH_DAYS_MAX: i64 = 31;

/// A calendar file line longer than this is refused: a holiday name is a few words.
pub const LINE_BYTES_MAX: usize = 200;

/// What kind of day a date is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DayKind {
    /// A working day: a cycle closes at its cutoff.
    Working,
    /// Friday.
    Weekend,
    /// A holiday of the calendar, with its name.
    Holiday(String),
}

impl fmt::Display for DayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DayKind::Working => f.write_str("working day"),
            DayKind::Weekend => f.write_str("weekend"),
            DayKind::Holiday(name) => write!(f, "holiday ({name})"),
        }
    }
}

/// Why a calendar file was refused, or a date falls outside it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    /// A line of the file is wrong.
    #[error("{source_name} line {line}: {field}: {reason}")]
    Line {
        /// The file's name, as given.
        source_name: String,
        /// The 1-based line number.
        line: usize,
        /// The field (`date`, `name`, `covers`, `line`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The date is outside the range the file says it covers.
    #[error("the calendar covers {from} to {to}; {date} is outside it")]
    NotCovered {
        /// The date asked about.
        date: CivilDate,
        /// First covered date.
        from: CivilDate,
        /// Last covered date.
        to: CivilDate,
    },
    /// No working day follows `date` within [`WORKING_DAY_SEARCH_DAYS_MAX`] days.
    #[error("no working day within {WORKING_DAY_SEARCH_DAYS_MAX} days after {date}")]
    NoWorkingDay {
        /// The date searched from.
        date: CivilDate,
    },
}

/// Working days and holidays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    holidays: BTreeMap<CivilDate, String>,
    covers: Option<(CivilDate, CivilDate)>,
}

impl Calendar {
    /// A calendar with no holidays and no coverage limit: only Fridays are off.
    pub fn fridays_only() -> Calendar {
        Calendar {
            holidays: BTreeMap::new(),
            covers: None,
        }
    }

    /// Parses a calendar file; `source_name` names it in errors.
    ///
    /// # Errors
    /// [`CalendarError::Line`] naming the first wrong line and field.
    pub fn parse(text: &str, source_name: &str) -> Result<Calendar, CalendarError> {
        let mut calendar = Calendar::fridays_only();
        let mut seen_on: BTreeMap<CivilDate, usize> = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |field: &'static str, reason: String| CalendarError::Line {
                source_name: source_name.to_owned(),
                line,
                field,
                reason,
            };
            if raw.len() > LINE_BYTES_MAX {
                return Err(fail("line", format!("longer than {LINE_BYTES_MAX} bytes")));
            }
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let (head, rest) = split_word(content);
            if head == "covers" {
                if calendar.covers.is_some() {
                    return Err(fail("covers", "given twice".to_owned()));
                }
                let (from, to) = split_word(rest.trim_start());
                let from = date(from).map_err(|reason| fail("covers", reason))?;
                let to = date(to.trim()).map_err(|reason| fail("covers", reason))?;
                if to < from {
                    return Err(fail("covers", format!("{to} is before {from}")));
                }
                calendar.covers = Some((from, to));
                continue;
            }
            let day = date(head).map_err(|reason| fail("date", reason))?;
            let name = rest.trim();
            if name.is_empty() {
                return Err(fail(
                    "name",
                    "missing: write the holiday's name after the date".into(),
                ));
            }
            if let Some(first) = seen_on.insert(day, line) {
                return Err(fail(
                    "date",
                    format!("{day} is already listed on line {first}"),
                ));
            }
            calendar.holidays.insert(day, name.to_owned());
        }
        if let Some((from, to)) = calendar.covers {
            for (day, line) in &seen_on {
                if *day < from || *day > to {
                    return Err(CalendarError::Line {
                        source_name: source_name.to_owned(),
                        line: *line,
                        field: "date",
                        reason: format!("{day} is outside covers {from} {to}"),
                    });
                }
            }
        }
        Ok(calendar)
    }

    /// What kind of day `date` is.
    ///
    /// # Errors
    /// [`CalendarError::NotCovered`] when the file limits its range and `date` is outside it.
    pub fn day(&self, date: CivilDate) -> Result<DayKind, CalendarError> {
        if let Some((from, to)) = self.covers {
            if date < from || date > to {
                return Err(CalendarError::NotCovered { date, from, to });
            }
        }
        if let Some(name) = self.holidays.get(&date) {
            return Ok(DayKind::Holiday(name.clone()));
        }
        if date.weekday() == Weekday::Friday {
            return Ok(DayKind::Weekend);
        }
        Ok(DayKind::Working)
    }

    /// The first working day after `date`: a cycle's payout due date.
    ///
    /// # Errors
    /// [`CalendarError`] when a day on the way is not covered, or none is found.
    pub fn next_working_day(&self, date: CivilDate) -> Result<CivilDate, CalendarError> {
        let mut day = date;
        for _ in 0..WORKING_DAY_SEARCH_DAYS_MAX {
            day = day.next();
            if self.day(day)? == DayKind::Working {
                return Ok(day);
            }
        }
        Err(CalendarError::NoWorkingDay { date })
    }

    /// The covered range, when the file gives one.
    pub fn covers(&self) -> Option<(CivilDate, CivilDate)> {
        self.covers
    }

    /// The holidays, in date order.
    pub fn holidays(&self) -> impl Iterator<Item = (CivilDate, &str)> + '_ {
        self.holidays
            .iter()
            .map(|(day, name)| (*day, name.as_str()))
    }
}

fn split_word(text: &str) -> (&str, &str) {
    match text.find(char::is_whitespace) {
        Some(at) => (text.get(..at).unwrap_or(""), text.get(at..).unwrap_or("")),
        None => (text, ""),
    }
}

fn date(text: &str) -> Result<CivilDate, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("missing: expected a date YYYY-MM-DD".to_owned());
    }
    CivilDate::parse(text).map_err(|invalid| format!("{text:?} {}", invalid.reason))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn day(text: &str) -> CivilDate {
        CivilDate::parse(text).unwrap()
    }

    /// Parses `file` and checks either the error text or the kinds of the listed days.
    fn check(file: &str, expected: Result<&[(&str, DayKind)], &str>) {
        let parsed = Calendar::parse(file, "cal.txt");
        match (parsed, expected) {
            (Ok(calendar), Ok(days)) => {
                for (date, kind) in days {
                    assert_eq!(calendar.day(day(date)).unwrap(), *kind, "{date}");
                }
            }
            (Err(error), Err(text)) => assert_eq!(error.to_string(), text),
            (got, want) => panic!("{file:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parse_cases() {
        use DayKind::*;
        let nowruz = || Holiday("Nowruz".to_owned());
        check("", Ok(&[("2026-11-27", Weekend), ("2026-11-28", Working)]));
        check("# only a comment\n\n", Ok(&[("2026-11-26", Working)]));
        check(
            "2026-11-25  Nowruz  # inline\n",
            Ok(&[("2026-11-25", nowruz())]),
        );
        check("2026-11-27\tNowruz\n", Ok(&[("2026-11-27", nowruz())]));
        check(
            "2026-13-01 X\n",
            Err("cal.txt line 1: date: \"2026-13-01\" month must be 01..=12"),
        );
        check(
            "\n2026-02-30 X\n",
            Err("cal.txt line 2: date: \"2026-02-30\" day does not exist in that month"),
        );
        check(
            "26-02-01 X\n",
            Err("cal.txt line 1: date: \"26-02-01\" must be a date YYYY-MM-DD"),
        );
        check(
            "2026-02-01\n",
            Err("cal.txt line 1: name: missing: write the holiday's name after the date"),
        );
        check(
            "2026-02-01 A\n2026-02-01 B\n",
            Err("cal.txt line 2: date: 2026-02-01 is already listed on line 1"),
        );
        check(
            "covers 2026-01-01\n",
            Err("cal.txt line 1: covers: missing: expected a date YYYY-MM-DD"),
        );
        check(
            "covers 2026-02-01 2026-01-01\n",
            Err("cal.txt line 1: covers: 2026-01-01 is before 2026-02-01"),
        );
        check(
            "covers 2026-01-01 2026-12-31\ncovers 2026-01-01 2026-12-31\n",
            Err("cal.txt line 2: covers: given twice"),
        );
        check(
            "covers 2026-01-01 2026-06-30\n2026-07-01 X\n",
            Err("cal.txt line 2: date: 2026-07-01 is outside covers 2026-01-01 2026-06-30"),
        );
    }

    #[test]
    fn coverage_and_due_dates() {
        let calendar =
            Calendar::parse("covers 2026-11-01 2026-11-30\n2026-11-28 Holiday\n", "c").unwrap();
        // Thursday 26th: Friday is the weekend and Saturday a holiday, so Sunday.
        assert_eq!(
            calendar.next_working_day(day("2026-11-26")).unwrap(),
            day("2026-11-29")
        );
        assert_eq!(
            calendar.next_working_day(day("2026-11-22")).unwrap(),
            day("2026-11-23")
        );
        assert_eq!(
            calendar
                .next_working_day(day("2026-11-30"))
                .unwrap_err()
                .to_string(),
            "the calendar covers 2026-11-01 to 2026-11-30; 2026-12-01 is outside it"
        );
    }
}
