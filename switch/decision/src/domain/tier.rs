//! Tiers (silver, gold, …): they set the cashback rate a card earns, and rules can be limited
//! to them. A member earns a tier by rolling 12-month activity (docs/loyalty.md).

use crate::domain::{Code, Percent, Rials, TierId};

/// A tier as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Row id.
    pub id: TierId,
    /// The operator's code, e.g. `silver`.
    pub code: Code,
    /// Display name.
    pub name: String,
    /// Cashback earned, in percent of what the member paid (club used + bank rest).
    pub cashback_rate: Percent,
    /// Its place in the ladder: higher wins.
    pub rank: u32,
    /// Earned with at least this much confirmed spend in the window.
    pub spend_rials_min: Option<Rials>,
    /// Earned with at least this many confirmed purchases in the window.
    pub purchases_min: Option<u32>,
}

/// The days of confirmed activity a tier is earned by: the rolling 12 months.
pub const TIER_WINDOW_DAYS: i64 = 365;

/// A member's confirmed activity in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// Sum of G of the confirmed purchases.
    pub spend: Rials,
    /// How many.
    pub purchases: u32,
}

impl Tier {
    /// Whether `activity` earns this tier; a tier without thresholds is never earned.
    pub fn earned_by(&self, activity: Activity) -> bool {
        self.spend_rials_min
            .is_some_and(|min| activity.spend >= min)
            || self
                .purchases_min
                .is_some_and(|min| activity.purchases >= min)
    }

    /// Whether activity can earn it at all.
    pub fn is_earnable(&self) -> bool {
        self.spend_rials_min.is_some() || self.purchases_min.is_some()
    }
}
