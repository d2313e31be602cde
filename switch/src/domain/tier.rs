//! Tiers (silver, gold, …): they set the cashback rate a card earns.

use crate::domain::{Code, Percent, TierId};

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
}
