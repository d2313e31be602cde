//! Money and rates: [`Rials`] (integer minor units) and [`Percent`] (a `Decimal`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use crate::domain::Invalid;

/// An amount of Iranian rials (ISO 4217 364, no minor unit), `0..=999_999_999_999`.
///
/// The upper bound is the n12 amount field of ISO 8583 (field 4), so every value fits the wire
/// and any sum of two values fits an `i64` many times over. Negative amounts do not exist:
/// a refund or a debit is a separate movement, not a negative amount.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rials(i64);

impl Rials {
    /// Zero rials.
    pub const ZERO: Rials = Rials(0);
    /// The largest amount: 12 digits, the width of ISO 8583 field 4.
    pub const MAX: Rials = Rials(999_999_999_999);

    /// Wraps `value` when it is within `0..=Rials::MAX`.
    pub const fn new(value: i64) -> Option<Rials> {
        if value < 0 || value > Rials::MAX.0 {
            None
        } else {
            Some(Rials(value))
        }
    }

    /// The amount as an integer number of rials.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// `self + other`, or `None` when the sum passes [`Rials::MAX`].
    pub fn checked_add(self, other: Rials) -> Option<Rials> {
        self.0.checked_add(other.0).and_then(Rials::new)
    }

    /// `self - other`, or `None` when the difference would be negative.
    pub fn checked_sub(self, other: Rials) -> Option<Rials> {
        self.0.checked_sub(other.0).and_then(Rials::new)
    }

    /// `self + other`, or [`Rials::MAX`] past it. Only for a sum that is compared with bounds
    /// of at most [`Rials::MAX`] and never subtracted from, where stopping at the bound
    /// changes no comparison (a member's activity against the tiers' thresholds); never to
    /// hide an overflow.
    pub fn saturating_add(self, other: Rials) -> Rials {
        // Both are at most 10^12, so the `i64` sum cannot overflow.
        Rials((self.0 + other.0).min(Rials::MAX.0))
    }

    /// `self - other`, or zero when `other` is larger: a business floor (what a balance
    /// does not cover, credit that expired lots leave), never a guard against a broken
    /// invariant.
    pub fn saturating_sub(self, other: Rials) -> Rials {
        Rials((self.0 - other.0).max(0))
    }

    /// `self + other` where the caller knows the sum is an amount (both are parts of one
    /// amount); `invariant` names that knowledge.
    ///
    /// # Panics
    /// When the sum passes [`Rials::MAX`]: `invariant` is broken, a bug.
    pub fn asserted_add(self, other: Rials, invariant: &'static str) -> Rials {
        // Both are at most 10^12, so the `i64` sum cannot overflow.
        let sum = self.0 + other.0;
        assert!(sum <= Rials::MAX.0, "{invariant}");
        Rials(sum)
    }

    /// `self - other` where the caller knows `other <= self` (a part taken from its whole);
    /// `invariant` names that knowledge.
    ///
    /// # Panics
    /// When `other > self`: `invariant` is broken, a bug.
    pub fn asserted_sub(self, other: Rials, invariant: &'static str) -> Rials {
        assert!(other.0 <= self.0, "{invariant}");
        Rials(self.0 - other.0)
    }

    /// `floor(self × rate / 100)`: the share of this amount at a percent rate, rounded down to
    /// the rial (docs/design.md section 4, percent discounts and cashback). The result is never
    /// more than `self` because a rate is at most 100.
    pub fn percent_floor(self, rate: Percent) -> Rials {
        self.percent_rounded(rate, Rounding::Down)
    }

    /// `self × rate / 100` rounded half up (0.5 rial goes up), the fee rule of docs/design.md
    /// section 4. The result is never more than `self`.
    pub fn percent_half_up(self, rate: Percent) -> Rials {
        self.percent_rounded(rate, Rounding::HalfUp)
    }

    fn percent_rounded(self, rate: Percent, strategy: Rounding) -> Rials {
        // Exact in integers: the rate is a whole number of millionths of a percent
        // (PERCENT_SCALE_MAX = 6), so `self × rate / 100 = self × millionths / 10^8`. With
        // `self = whole × 10^8 + part`, the quotient is `whole × millionths` plus the rounded
        // quotient of `part × millionths` (below 10^16, no overflow), by 10^8. This is the hot
        // path of every purchase (discount, fee, cashback); `Decimal` took several hundred
        // instructions for it. `percent_decimal` below is the reference it is tested against.
        let millionths = rate.millionths();
        let whole = self.0 / RATE_DENOMINATOR;
        let part = self.0 % RATE_DENOMINATOR;
        let product = part * millionths;
        let rounded = match strategy {
            Rounding::Down => product / RATE_DENOMINATOR,
            Rounding::HalfUp => (product + RATE_DENOMINATOR / 2) / RATE_DENOMINATOR,
        };
        // The rate is within 0..=100 percent (`Percent::new`), so the share is within
        // 0..=self: anything else is a bug in the arithmetic above, not an amount to clamp.
        let share = whole * millionths + rounded;
        assert!(
            share >= 0,
            "a share of a rate of at least 0 percent is negative"
        );
        assert!(
            share <= self.0,
            "a share of at most 100 percent exceeds its base"
        );
        Rials(share)
    }
}

/// `100 × 10^PERCENT_SCALE_MAX`: a rate in millionths of a percent over this is a fraction.
const RATE_DENOMINATOR: i64 = 100_000_000;

/// How a share of an amount is rounded to the rial.
#[derive(Clone, Copy)]
enum Rounding {
    /// Toward zero (amounts are never negative): discounts and cashback.
    Down,
    /// Half a rial goes up: the fee.
    HalfUp,
}

impl fmt::Debug for Rials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rials({})", self.0)
    }
}

impl fmt::Display for Rials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Most decimal places a rate may have. Six places (0.000001 percent) is finer than any fee or
/// campaign needs and keeps every product with an amount exact.
pub const PERCENT_SCALE_MAX: u32 = 6;

/// A rate in percent, `0..=100`, with at most [`PERCENT_SCALE_MAX`] decimal places.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Percent {
    rate: Decimal,
    /// The same rate in millionths of a percent (`rate × 10^6`, exact by the scale bound):
    /// what the arithmetic of [`Rials::percent_floor`] and [`Rials::percent_half_up`] uses.
    millionths: i64,
}

impl Percent {
    /// Zero percent.
    pub const ZERO: Percent = Percent {
        rate: Decimal::ZERO,
        millionths: 0,
    };

    /// Wraps `rate` when it is within `0..=100` and has at most [`PERCENT_SCALE_MAX`] decimals.
    ///
    /// # Errors
    /// [`Invalid`] naming the broken bound.
    pub fn new(rate: Decimal) -> Result<Percent, Invalid> {
        if rate.is_sign_negative() && !rate.is_zero() {
            return Err(Invalid::new("must not be negative"));
        }
        if rate > Decimal::ONE_HUNDRED {
            return Err(Invalid::new("must be at most 100"));
        }
        if rate.normalize().scale() > PERCENT_SCALE_MAX {
            return Err(Invalid::new("has more than 6 decimal places"));
        }
        let rate = rate.normalize();
        let millionths = (rate * Decimal::from(1_000_000))
            .to_i64()
            .ok_or_else(|| Invalid::new("must be at most 100"))?;
        Ok(Percent { rate, millionths })
    }

    /// Parses a decimal such as `"1.5"` (no exponent, no sign other than none).
    ///
    /// # Errors
    /// [`Invalid`] when the text is not a decimal or is out of range.
    pub fn parse(text: &str) -> Result<Percent, Invalid> {
        let rate = Decimal::from_str(text).map_err(|_| Invalid::new("must be a decimal number"))?;
        Percent::new(rate)
    }

    /// The rate, e.g. `1.5` for 1.5 percent.
    pub fn get(self) -> Decimal {
        self.rate
    }

    /// The rate in millionths of a percent, `0..=100_000_000`.
    pub fn millionths(self) -> i64 {
        self.millionths
    }
}

impl fmt::Debug for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Percent({})", self.rate)
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rate)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::strategy::Strategy;
    use rust_decimal::RoundingStrategy;

    use super::*;

    fn check(gross: i64, rate: &str, floor: i64, half_up: i64) {
        let gross = Rials::new(gross).unwrap();
        let rate = Percent::parse(rate).unwrap();
        assert_eq!(
            gross.percent_floor(rate).get(),
            floor,
            "floor {gross} {rate}"
        );
        assert_eq!(
            gross.percent_half_up(rate).get(),
            half_up,
            "half up {gross} {rate}"
        );
    }

    #[test]
    fn percent_rounding() {
        check(480_000, "1.5", 7_200, 7_200);
        check(333, "1.5", 4, 5); // 4.995
        check(100, "0.5", 0, 1); // 0.5 exactly goes up
        check(99, "0.5", 0, 0); // 0.495
        check(999_999_999_999, "100", 999_999_999_999, 999_999_999_999);
        check(1, "0", 0, 0);
    }

    /// The reference the integer arithmetic replaced: `Decimal`, exact at these magnitudes.
    fn percent_decimal(gross: Rials, rate: Percent, strategy: RoundingStrategy) -> i64 {
        (Decimal::from(gross.get()) * rate.get() / Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(0, strategy)
            .to_i64()
            .unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]
        /// Every amount and every rate of up to six decimals rounds exactly as `Decimal` does,
        /// down and half up, including the edges (0, 100 %, amounts at and near the n12 bound,
        /// remainders at the half).
        #[test]
        fn percent_matches_decimal(
            gross in proptest::prop_oneof![
                0_i64..=1_000,
                0_i64..=999_999_999_999,
                999_999_000_000_i64..=999_999_999_999,
                (0_i64..=9_999).prop_map(|k| k * 100_000_000 + 50_000_000),
            ],
            millionths in proptest::prop_oneof![
                0_i64..=100_000_000,
                (0_i64..=100).prop_map(|whole| whole * 1_000_000),
                (0_i64..=200).prop_map(|half| half * 500_000),
            ],
        ) {
            let gross = Rials::new(gross).unwrap();
            let rate = Percent::new(Decimal::new(millionths, 6)).unwrap();
            proptest::prop_assert_eq!(rate.millionths(), millionths);
            proptest::prop_assert_eq!(
                gross.percent_floor(rate).get(),
                percent_decimal(gross, rate, RoundingStrategy::ToNegativeInfinity)
            );
            proptest::prop_assert_eq!(
                gross.percent_half_up(rate).get(),
                percent_decimal(gross, rate, RoundingStrategy::MidpointAwayFromZero)
            );
        }
    }

    #[test]
    fn bounds() {
        assert_eq!(Rials::new(-1), None);
        assert_eq!(Rials::new(1_000_000_000_000), None);
        assert_eq!(Rials::MAX.checked_add(Rials::new(1).unwrap()), None);
        assert_eq!(Rials::ZERO.checked_sub(Rials::new(1).unwrap()), None);
        let one = Rials::new(1).unwrap();
        assert_eq!(Rials::MAX.saturating_add(one), Rials::MAX);
        assert_eq!(one.saturating_add(one), Rials::new(2).unwrap());
        assert_eq!(Rials::ZERO.saturating_sub(one), Rials::ZERO);
        assert_eq!(
            Rials::MAX.saturating_sub(one),
            Rials::new(999_999_999_998).unwrap()
        );
        assert_eq!(one.asserted_add(one, "test"), Rials::new(2).unwrap());
        assert_eq!(one.asserted_sub(one, "test"), Rials::ZERO);
        assert!(Percent::parse("100.000001").is_err());
        assert!(Percent::parse("-1").is_err());
        assert!(Percent::parse("1.0000001").is_err());
        assert_eq!(
            Percent::parse("2.50").unwrap(),
            Percent::parse("2.5").unwrap()
        );
    }
}
