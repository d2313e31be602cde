//! The merchant's fee and the cashback to earn (docs/design.md section 4, steps 5 and 6).

use crate::domain::{FeeSchedule, Percent, Rials};

/// The merchant's fee on `gross`: `G × rate / 100` rounded half up to the rial (0.5 goes up),
/// then clamped to the schedule's `[min, max]`. The fee is owed by the merchant and never
/// changes what the customer pays.
///
/// # Panics
/// When the result leaves `[min, max]` (a bug).
pub fn fee(gross: Rials, schedule: &FeeSchedule) -> Rials {
    let raw = gross.percent_half_up(schedule.rate());
    let fee = raw.clamp(schedule.fee_rials_min(), schedule.fee_rials_max());
    assert!(fee >= schedule.fee_rials_min());
    assert!(fee <= schedule.fee_rials_max());
    fee
}

/// Cashback earned on `base` (club used + bank rest): `floor(rate × base / 100)`, rounded down
/// to the rial so the club never pays out a fraction it did not earn.
pub fn cashback(rate: Percent, base: Rials) -> Rials {
    base.percent_floor(rate)
}
