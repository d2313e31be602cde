//! Domain types of the switch: money, time, ids and the reference-data records (docs/design.md
//! section 3).
//!
//! Everything here is pure: no I/O, no clock reads, no randomness of its own. Domain types do
//! not derive `Serialize`/`Deserialize`; the import file has its own DTOs.
//!
//! Layout:
//! - [`money`]: [`Rials`] and [`Percent`].
//! - [`time`]: [`UnixMillis`], civil dates, weekdays and local-time windows.
//! - [`ids`]: row ids and the [`Code`] that names a record in the import file.
//! - [`contact`]: a member's [`Phone`] and message [`Locale`].
//! - [`merchant`], [`terminal`], [`card`], [`tier`], [`rule`]: the reference records.
//! - [`coupon`]: a member coupon's terms.
//! - [`survey`]: a survey's answer scale, how a reply is read, the report's rounding.
//! - [`sealing`]: the key-encryption key that seals terminal master keys at rest.
//! - [`reference`]: [`ReferenceData`], the plain data an import yields and the store keeps.

pub mod card;
pub mod contact;
pub mod coupon;
pub mod ids;
pub mod merchant;
pub mod money;
pub mod reference;
pub mod rule;
pub mod sealing;
pub mod survey;
pub mod terminal;
pub mod tier;
pub mod time;

pub use card::{Card, CardExpiry, CardStatus, Member, PanToken, PanTokenKey};
pub use contact::{Locale, Phone};
pub use coupon::{CouponKind, CouponTemplate, CouponTerms};
pub use ids::{
    CardId, Code, CouponId, GroupId, MemberId, MerchantId, RuleId, TerminalRowId, TierId,
};
pub use merchant::{CurrencyCode, FeeSchedule, Iban, Merchant, MerchantProfile, MerchantStatus};
pub use money::{Percent, Rials};
pub use reference::{LoadedReference, ReadRows, ReferenceData, RowIds};
pub use rule::{BinRange, Eligibility, MinuteWindow, Rule, RuleKind, RuleTerms, Window};
pub use sealing::{Kek, SealError};
pub use terminal::{KeySetId, Terminal, TerminalCode, TerminalStatus};
pub use tier::{Activity, Tier, TIER_WINDOW_DAYS};
pub use time::{CivilDate, LocalDateTime, UnixMillis, Weekday, Weekdays};

/// Why a value was refused by a domain constructor: a short, lowercase reason that the import
/// prefixes with the JSON path of the field (`merchants[3].iban: checksum fails`).
///
/// The reason never contains the refused value, so a mistyped PAN or key is not echoed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Invalid {
    /// What is wrong, e.g. `"checksum fails"`.
    pub reason: &'static str,
}

impl Invalid {
    /// An [`Invalid`] with the given reason.
    pub const fn new(reason: &'static str) -> Invalid {
        Invalid { reason }
    }
}
