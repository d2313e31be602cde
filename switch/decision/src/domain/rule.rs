//! Discount rules (campaigns): what they give, when they apply and to whom (docs/design.md
//! section 3).

use crate::domain::time::DAY_MINUTES;
use crate::domain::{
    CivilDate, Code, GroupId, Invalid, LocalDateTime, MerchantId, Percent, Rials, RuleId, TierId,
    Weekdays,
};

/// What a rule gives before its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RuleKind {
    /// `floor(G × rate / 100)`.
    Percent(Percent),
    /// A fixed amount.
    Fixed(Rials),
}

/// A daily time window in local minutes, `[from, until)`. When `from > until` the window runs
/// through midnight (22:00–02:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MinuteWindow {
    from: u16,
    until: u16,
}

impl MinuteWindow {
    /// A window from minute `from` (inclusive) to minute `until` (exclusive) of the local day.
    ///
    /// # Errors
    /// [`Invalid`] when a bound is not below 1440, or the window is empty (`from == until`).
    pub fn new(from: u16, until: u16) -> Result<MinuteWindow, Invalid> {
        if from >= DAY_MINUTES || until >= DAY_MINUTES {
            return Err(Invalid::new("must be a time 00:00..=23:59"));
        }
        if from == until {
            return Err(Invalid::new("window is empty: from equals until"));
        }
        Ok(MinuteWindow { from, until })
    }

    /// Parses `HH:MM` into a minute of the day.
    ///
    /// # Errors
    /// [`Invalid`] when the shape is wrong or the time does not exist.
    pub fn parse_minute(text: &str) -> Result<u16, Invalid> {
        let shape = Invalid::new("must be a time HH:MM");
        let bytes = text.as_bytes();
        if bytes.len() != 5 || bytes.get(2) != Some(&b':') {
            return Err(shape);
        }
        let two = |range: std::ops::Range<usize>| -> Option<u16> {
            let part = text.get(range)?;
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let hour = two(0..2).ok_or(shape)?;
        let minute = two(3..5).ok_or(shape)?;
        if hour > 23 || minute > 59 {
            return Err(Invalid::new("must be a time 00:00..=23:59"));
        }
        Ok(hour * 60 + minute)
    }

    /// First minute inside the window.
    pub fn from(self) -> u16 {
        self.from
    }

    /// First minute after the window.
    pub fn until(self) -> u16 {
        self.until
    }

    /// Whether `minute_of_day` is inside.
    pub fn contains(self, minute_of_day: u16) -> bool {
        if self.from < self.until {
            self.from <= minute_of_day && minute_of_day < self.until
        } else {
            minute_of_day >= self.from || minute_of_day < self.until
        }
    }
}

/// When a rule applies, read in the merchant's local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window {
    /// First local date it applies (inclusive); `None`: no start.
    pub valid_from: Option<CivilDate>,
    /// Last local date it applies (inclusive); `None`: no end.
    pub valid_until: Option<CivilDate>,
    /// Days of the week it applies.
    pub weekdays: Weekdays,
    /// Daily hours it applies; `None`: all day.
    pub hours: Option<MinuteWindow>,
}

impl Window {
    /// A window that is always open.
    pub const ALWAYS: Window = Window {
        valid_from: None,
        valid_until: None,
        weekdays: Weekdays::ALL,
        hours: None,
    };

    /// Whether the window is open at `local`.
    pub fn contains(&self, local: &LocalDateTime) -> bool {
        let after_start = self.valid_from.is_none_or(|from| local.date >= from);
        let before_end = self.valid_until.is_none_or(|until| local.date <= until);
        let on_day = self.weekdays.contains(local.weekday);
        let in_hours = self
            .hours
            .is_none_or(|hours| hours.contains(local.minute_of_day));
        after_start && before_end && on_day && in_hours
    }
}

/// An inclusive range of 6-digit BINs, `low..=high`, compared as ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BinRange {
    low: [u8; 6],
    high: [u8; 6],
}

impl BinRange {
    /// The range from the BIN prefix `from` (padded with `0`s) to the prefix `to` (padded with
    /// `9`s): `("6037", "6037")` is `603700..=603799`.
    ///
    /// # Errors
    /// [`Invalid`] when a prefix is not 1..=6 digits or the range is empty.
    pub fn from_prefixes(from: &str, to: &str) -> Result<BinRange, Invalid> {
        let low = pad(from, b'0')?;
        let high = pad(to, b'9')?;
        if low > high {
            return Err(Invalid::new("range is empty: from is above to"));
        }
        Ok(BinRange { low, high })
    }

    /// A range from two full 6-digit BINs, as read back from the store.
    ///
    /// # Errors
    /// [`Invalid`] when a BIN is not 6 digits or the range is empty.
    pub fn from_bins(low: &str, high: &str) -> Result<BinRange, Invalid> {
        if low.len() != 6 || high.len() != 6 {
            return Err(Invalid::new("bin must be 6 digits"));
        }
        BinRange::from_prefixes(low, high)
    }

    /// Lowest BIN in the range.
    pub fn low(&self) -> &[u8; 6] {
        &self.low
    }

    /// Highest BIN in the range.
    pub fn high(&self) -> &[u8; 6] {
        &self.high
    }

    /// Whether `bin` is in the range.
    pub fn contains(&self, bin: &[u8; 6]) -> bool {
        &self.low <= bin && bin <= &self.high
    }
}

fn pad(prefix: &str, fill: u8) -> Result<[u8; 6], Invalid> {
    let bytes = prefix.as_bytes();
    if bytes.is_empty() || bytes.len() > 6 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(Invalid::new("must be a BIN prefix of 1..=6 digits"));
    }
    let mut bin = [fill; 6];
    for (slot, digit) in bin.iter_mut().zip(bytes) {
        *slot = *digit;
    }
    Ok(bin)
}

/// Who a rule applies to. Each list empty means "any". The merchant is eligible when both
/// merchant lists are empty, or it is in `merchants`, or it is in one of `merchant_groups`; the
/// other dimensions must each match as well (AND).
///
/// Generic over how records are named: [`Code`]s in the import and the store's records,
/// row ids in the engine's [`Rule`]. Every list is sorted ascending and has no duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Eligibility<M, G, T> {
    /// Merchants named one by one.
    pub merchants: Vec<M>,
    /// Merchant groups.
    pub merchant_groups: Vec<G>,
    /// Tiers of the card.
    pub tiers: Vec<T>,
    /// Groups of the card's member.
    pub member_groups: Vec<G>,
    /// Groups of the terminal.
    pub terminal_groups: Vec<G>,
    /// BIN ranges of the card.
    pub bins: Vec<BinRange>,
}

impl<M, G, T> Eligibility<M, G, T> {
    /// Eligibility of everyone.
    pub fn any() -> Eligibility<M, G, T> {
        Eligibility {
            merchants: Vec::new(),
            merchant_groups: Vec::new(),
            tiers: Vec::new(),
            member_groups: Vec::new(),
            terminal_groups: Vec::new(),
            bins: Vec::new(),
        }
    }

    /// Whether the rule is open to every merchant (both merchant lists empty).
    pub fn any_merchant(&self) -> bool {
        self.merchants.is_empty() && self.merchant_groups.is_empty()
    }
}

/// What a rule gives and when, apart from its identity and eligibility.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleTerms {
    /// Display name.
    pub name: String,
    /// Percent or fixed.
    pub kind: RuleKind,
    /// Smallest G the rule applies to.
    pub basket_rials_min: Rials,
    /// Cap per transaction; `None`: capped only by G.
    pub discount_rials_max: Option<Rials>,
    /// When it applies.
    pub window: Window,
    /// Total discount the rule may ever give; `None`: unlimited. Tracked by the engine.
    pub budget_rials: Option<Rials>,
    /// Times one member may use it per local day; `None`: unlimited. Tracked by the engine.
    pub member_daily_uses_max: Option<u32>,
}

/// A discount rule as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Row id; ties between equal discounts go to the lowest.
    pub id: RuleId,
    /// The operator's code.
    pub code: Code,
    /// What it gives and when.
    pub terms: RuleTerms,
    /// Who it applies to.
    pub eligibility: Eligibility<MerchantId, GroupId, TierId>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn minute_window() {
        let day = MinuteWindow::new(600, 840).unwrap();
        assert!(day.contains(600));
        assert!(!day.contains(840));
        let night = MinuteWindow::new(1_320, 120).unwrap();
        assert!(night.contains(1_439));
        assert!(night.contains(0));
        assert!(!night.contains(120));
        assert!(!night.contains(600));
        assert!(MinuteWindow::new(10, 10).is_err());
        assert_eq!(MinuteWindow::parse_minute("23:59").unwrap(), 1_439);
        assert!(MinuteWindow::parse_minute("24:00").is_err());
    }

    #[test]
    fn bin_range() {
        let range = BinRange::from_prefixes("6037", "6037").unwrap();
        assert!(range.contains(b"603700"));
        assert!(range.contains(b"603799"));
        assert!(!range.contains(b"603800"));
        assert!(BinRange::from_prefixes("6038", "6037").is_err());
        assert!(BinRange::from_prefixes("60379912", "6037").is_err());
    }
}
