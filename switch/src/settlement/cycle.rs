//! Cycle arithmetic (pure): the cutoff instant of a business date, per-merchant amounts and
//! their sums, and the payout rule `payout = club captured − fee + adjustments`, with a
//! negative result carried forward as a receivable (docs/design.md section 7).

use std::fmt;

use crate::domain::time::{DAY_MINUTES, MINUTE_MS};
use crate::domain::{CivilDate, UnixMillis};

/// The network's time zone, Asia/Tehran: +03:30 all year (Iran stopped daylight saving time
/// in 2022), so a fixed offset is exact for every date settlement handles.
pub const TEHRAN_UTC_OFFSET_MINUTES: i32 = crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;

/// The daily cutoff, a local time of day (minutes after midnight, Asia/Tehran).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoff {
    minute_of_day: u16,
}

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// A sum left the `i64` range: the cycle cannot be settled as is.
    #[error("{what} overflows")]
    Overflow {
        /// Which sum.
        what: &'static str,
    },
}

/// A cutoff that is not `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cutoff {text:?} must be HH:MM, 00:00 to 23:59")]
pub struct CutoffError {
    /// The text refused.
    pub text: String,
}

impl Cutoff {
    /// The default cutoff, 23:30 Asia/Tehran (docs/design.md section 7).
    pub const DEFAULT: Cutoff = Cutoff {
        minute_of_day: 23 * 60 + 30,
    };

    /// Parses `HH:MM`.
    ///
    /// # Errors
    /// [`CutoffError`] for any other shape or an hour or minute out of range.
    pub fn parse(text: &str) -> Result<Cutoff, CutoffError> {
        let refuse = || CutoffError {
            text: text.to_owned(),
        };
        let (hours, minutes) = text.split_once(':').ok_or_else(refuse)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(hours) || !two_digits(minutes) {
            return Err(refuse());
        }
        let hours: u16 = hours.parse().map_err(|_| refuse())?;
        let minutes: u16 = minutes.parse().map_err(|_| refuse())?;
        if hours > 23 || minutes > 59 {
            return Err(refuse());
        }
        let minute_of_day = hours * 60 + minutes;
        assert!(minute_of_day < DAY_MINUTES);
        Ok(Cutoff { minute_of_day })
    }

    /// The instant the cycle of `date` closes.
    pub fn instant(self, date: CivilDate) -> UnixMillis {
        let start = UnixMillis::start_of_local_day(date, TEHRAN_UTC_OFFSET_MINUTES);
        UnixMillis::new(start.get() + i64::from(self.minute_of_day) * MINUTE_MS)
    }

    /// The business date whose cutoff is the last one at or before `now`, ignoring the
    /// calendar (the caller steps back over non-working days).
    pub fn latest_date_at_or_before(self, now: UnixMillis) -> CivilDate {
        let local = local_date(now);
        if self.instant(local) <= now {
            local
        } else {
            CivilDate::from_days_since_epoch(local.days_since_epoch() - 1)
        }
    }
}

impl fmt::Display for Cutoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}",
            self.minute_of_day / 60,
            self.minute_of_day % 60
        )
    }
}

/// The Asia/Tehran calendar date of an instant.
pub fn local_date(at: UnixMillis) -> CivilDate {
    let local = at.get() + i64::from(TEHRAN_UTC_OFFSET_MINUTES) * MINUTE_MS;
    CivilDate::from_days_since_epoch(local.div_euclid(crate::domain::time::DAY_MS))
}

/// An instant as Asia/Tehran local time, `YYYY-MM-DDTHH:MM:SS.mmm+03:30`, for files and
/// reports.
pub fn local_text(at: UnixMillis) -> String {
    let local = at.get() + i64::from(TEHRAN_UTC_OFFSET_MINUTES) * MINUTE_MS;
    let date = CivilDate::from_days_since_epoch(local.div_euclid(crate::domain::time::DAY_MS));
    let millis = local.rem_euclid(crate::domain::time::DAY_MS);
    format!(
        "{date}T{:02}:{:02}:{:02}.{:03}+03:30",
        millis / 3_600_000,
        millis / 60_000 % 60,
        millis / 1_000 % 60,
        millis % 1_000
    )
}

/// The amounts of one merchant's line, or of a whole cycle. Every field is rials except the
/// count. Receivables are negative (`carried_in`, `carried_out` ≤ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Amounts {
    /// Transactions settled.
    pub txn_count: i64,
    /// Gross amount G.
    pub gross: i64,
    /// Discount given.
    pub discount: i64,
    /// Fee the merchant owes.
    pub fee: i64,
    /// Store credit redeemed (captured).
    pub store_credit: i64,
    /// Club balance captured: what the club's settlement account owes the merchant.
    pub club: i64,
    /// Paid by bank card (not through the club).
    pub bank_rest: i64,
    /// Cashback issued as store credit.
    pub cashback: i64,
    /// Adjustments (late reversals, manual entries), signed.
    pub adjustments: i64,
    /// Receivable brought in from the merchant's previous line (≤ 0).
    pub carried_in: i64,
    /// What is paid out (≥ 0).
    pub payout: i64,
    /// Receivable carried to the merchant's next cycle (≤ 0).
    pub carried_out: i64,
}

/// The columns of [`Amounts`], in file order, with their names.
pub const AMOUNT_COLUMNS: [&str; 12] = [
    "txn_count",
    "gross_rials",
    "discount_rials",
    "fee_rials",
    "store_credit_rials",
    "club_rials",
    "bank_rest_rials",
    "cashback_rials",
    "adjustments_rials",
    "carried_in_rials",
    "payout_rials",
    "carried_out_rials",
];

impl Amounts {
    /// The values, in [`AMOUNT_COLUMNS`] order.
    pub fn columns(&self) -> [i64; 12] {
        [
            self.txn_count,
            self.gross,
            self.discount,
            self.fee,
            self.store_credit,
            self.club,
            self.bank_rest,
            self.cashback,
            self.adjustments,
            self.carried_in,
            self.payout,
            self.carried_out,
        ]
    }

    /// Builds from values in [`AMOUNT_COLUMNS`] order.
    pub fn from_columns(values: [i64; 12]) -> Amounts {
        let [txn_count, gross, discount, fee, store_credit, club, bank_rest, cashback, adjustments, carried_in, payout, carried_out] =
            values;
        Amounts {
            txn_count,
            gross,
            discount,
            fee,
            store_credit,
            club,
            bank_rest,
            cashback,
            adjustments,
            carried_in,
            payout,
            carried_out,
        }
    }

    /// The column-wise sum.
    ///
    /// # Errors
    /// [`AmountError::Overflow`] when a column leaves the `i64` range.
    pub fn checked_add(&self, other: &Amounts) -> Result<Amounts, AmountError> {
        let mut out = [0_i64; 12];
        let pairs = self.columns().into_iter().zip(other.columns());
        for ((slot, (left, right)), name) in out.iter_mut().zip(pairs).zip(AMOUNT_COLUMNS) {
            *slot = left
                .checked_add(right)
                .ok_or(AmountError::Overflow { what: name })?;
        }
        Ok(Amounts::from_columns(out))
    }

    /// Sets `payout` and `carried_out` from the other fields:
    /// `net = club − fee + adjustments + carried_in`; a positive net is paid, a negative one
    /// is carried forward as a receivable, never paid as a negative transfer.
    ///
    /// # Errors
    /// [`AmountError::Overflow`] when the net leaves the `i64` range.
    pub fn with_payout(self) -> Result<Amounts, AmountError> {
        assert!(self.carried_in <= 0);
        let overflow = AmountError::Overflow { what: "payout" };
        let net = self
            .club
            .checked_sub(self.fee)
            .and_then(|value| value.checked_add(self.adjustments))
            .and_then(|value| value.checked_add(self.carried_in))
            .ok_or(overflow)?;
        let amounts = Amounts {
            payout: net.max(0),
            carried_out: net.min(0),
            ..self
        };
        assert_eq!(amounts.payout + amounts.carried_out, net);
        Ok(amounts)
    }

    /// The net the payout rule starts from: `club − fee + adjustments + carried_in`, or `None`
    /// on overflow.
    pub fn net(&self) -> Option<i64> {
        self.club
            .checked_sub(self.fee)?
            .checked_add(self.adjustments)?
            .checked_add(self.carried_in)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn check_cutoff(text: &str, expected: Option<&str>) {
        let got = Cutoff::parse(text).map(|cutoff| cutoff.to_string()).ok();
        assert_eq!(got.as_deref(), expected, "{text}");
    }

    #[test]
    fn cutoff_parse() {
        check_cutoff("23:30", Some("23:30"));
        check_cutoff("00:00", Some("00:00"));
        check_cutoff("23:59", Some("23:59"));
        check_cutoff("24:00", None);
        check_cutoff("12:60", None);
        check_cutoff("9:30", None);
        check_cutoff("09-30", None);
        check_cutoff("", None);
        check_cutoff("+1:30", None);
    }

    #[test]
    fn cutoff_instant_is_tehran_local() {
        let date = CivilDate::parse("2026-11-22").unwrap();
        let at = Cutoff::DEFAULT.instant(date);
        assert_eq!(local_text(at), "2026-11-22T23:30:00.000+03:30");
        // 23:30 +03:30 is 20:00 UTC.
        assert_eq!(at.get() % 86_400_000, 20 * 3_600_000);
        assert_eq!(Cutoff::DEFAULT.latest_date_at_or_before(at), date);
        let before = UnixMillis::new(at.get() - 1);
        assert_eq!(
            Cutoff::DEFAULT.latest_date_at_or_before(before).to_string(),
            "2026-11-21"
        );
    }

    fn check_payout(club: i64, fee: i64, adjustments: i64, carried_in: i64, expected: (i64, i64)) {
        let amounts = Amounts {
            club,
            fee,
            adjustments,
            carried_in,
            ..Amounts::default()
        };
        let got = amounts.with_payout().unwrap();
        assert_eq!((got.payout, got.carried_out), expected);
    }

    #[test]
    fn payout_cases() {
        check_payout(1_000, 100, 0, 0, (900, 0));
        check_payout(0, 100, 0, 0, (0, -100));
        check_payout(1_000, 100, -950, 0, (0, -50));
        check_payout(1_000, 100, 0, -900, (0, 0));
        check_payout(1_000, 100, 50, -400, (550, 0));
        check_payout(0, 0, 0, 0, (0, 0));
    }

    proptest! {
        #[test]
        fn payout_explains_every_rial(
            club in 0..=1_000_000_000_000_i64,
            fee in 0..=1_000_000_000_i64,
            adjustments in -1_000_000_000_000..=1_000_000_000_000_i64,
            carried_in in -1_000_000_000_000..=0_i64,
        ) {
            let amounts = Amounts { club, fee, adjustments, carried_in, ..Amounts::default() };
            let got = amounts.with_payout().unwrap();
            prop_assert!(got.payout >= 0);
            prop_assert!(got.carried_out <= 0);
            prop_assert!(got.payout == 0 || got.carried_out == 0);
            prop_assert_eq!(got.payout + got.carried_out, club - fee + adjustments + carried_in);
        }

        #[test]
        fn sums_never_wrap(a in any::<i64>(), b in any::<i64>()) {
            let left = Amounts { gross: a, ..Amounts::default() };
            let right = Amounts { gross: b, ..Amounts::default() };
            match left.checked_add(&right) {
                Ok(sum) => prop_assert_eq!(Some(sum.gross), a.checked_add(b)),
                Err(_) => prop_assert!(a.checked_add(b).is_none()),
            }
        }
    }
}
