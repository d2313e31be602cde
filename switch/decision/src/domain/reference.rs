//! [`ReferenceData`]: the operator's records as plain data, named by [`Code`]s.
//!
//! An import yields it, the store saves and loads it, and the snapshot is built from it plus
//! the [`RowIds`] the store assigned. Records refer to each other by code; only the store turns
//! codes into row ids, so re-importing a file keeps every id stable.

use crate::fast_hash::CodeMap as HashMap;

use protocol::Tmk;

use crate::domain::{
    CardExpiry, CardId, CardStatus, CivilDate, Code, Eligibility, GroupId, KeySetId, Locale,
    MemberId, MerchantId, MerchantProfile, PanToken, Percent, Phone, Rials, RuleId, RuleTerms,
    TerminalCode, TerminalRowId, TerminalStatus, TierId, UnixMillis,
};

/// Everything the operator defines, as one value. Each list is in a stable order (file order
/// on import, row id order on load) and every cross-reference resolves inside the value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReferenceData {
    /// Tiers.
    pub tiers: Vec<TierRecord>,
    /// Merchant groups.
    pub merchant_groups: Vec<GroupRecord>,
    /// Member groups.
    pub member_groups: Vec<GroupRecord>,
    /// Terminal groups.
    pub terminal_groups: Vec<GroupRecord>,
    /// Merchants.
    pub merchants: Vec<MerchantRecord>,
    /// Terminals.
    pub terminals: Vec<TerminalRecord>,
    /// Members.
    pub members: Vec<MemberRecord>,
    /// Cards.
    pub cards: Vec<CardRecord>,
    /// Discount rules.
    pub rules: Vec<RuleRecord>,
    /// Opening club balances, one per card at most.
    pub club_openings: Vec<ClubOpening>,
    /// Opening store-credit balances, one per (card, merchant) at most.
    pub store_credit_openings: Vec<StoreCreditOpening>,
}

/// A tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierRecord {
    /// Its code.
    pub code: Code,
    /// Display name.
    pub name: String,
    /// Cashback rate in percent.
    pub cashback_rate: Percent,
    /// Its place in the ladder: the member gets the highest-ranked tier they qualify for.
    pub rank: u32,
    /// Qualifies with at least this much confirmed spend (G) in the rolling 12 months.
    pub spend_rials_min: Option<Rials>,
    /// Qualifies with at least this many confirmed purchases in the rolling 12 months.
    pub purchases_min: Option<u32>,
}

/// A merchant, member or terminal group (which one depends on the list it is in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// Its code, unique among groups of its kind.
    pub code: Code,
    /// Display name.
    pub name: String,
}

/// A merchant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRecord {
    /// Its code.
    pub code: Code,
    /// Terms and settings.
    pub profile: MerchantProfile,
    /// Codes of its merchant groups, sorted, without duplicates.
    pub groups: Vec<Code>,
}

/// A terminal, with its TMK in clear: the store seals it, the snapshot derives working keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    /// Its terminal id, which is also how records name it.
    pub terminal_id: TerminalCode,
    /// Its KSI.
    pub ksi: KeySetId,
    /// Code of its merchant.
    pub merchant: Code,
    /// Whether it may trade.
    pub status: TerminalStatus,
    /// Its terminal master key.
    pub tmk: Tmk,
    /// Codes of its terminal groups, sorted, without duplicates.
    pub groups: Vec<Code>,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Its code.
    pub code: Code,
    /// Codes of its member groups, sorted, without duplicates.
    pub groups: Vec<Code>,
    /// Its mobile number, if it receives SMS.
    pub phone: Option<Phone>,
    /// The language of its messages.
    pub locale: Locale,
    /// Birthday (its month and day matter), for birthday coupons.
    pub birth_date: Option<CivilDate>,
    /// When they joined the club, for anniversary coupons.
    pub joined_on: Option<CivilDate>,
    /// Code of the member who referred them (a member's code is their referral code).
    pub referred_by: Option<Code>,
}

/// A card, without its PAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardRecord {
    /// Its code: how balances refer to it.
    pub code: Code,
    /// Code of its member.
    pub member: Code,
    /// The keyed token of its PAN.
    pub token: PanToken,
    /// First six digits of the PAN.
    pub bin: [u8; 6],
    /// Last four digits of the PAN.
    pub last4: [u8; 4],
    /// Whether it may be used.
    pub status: CardStatus,
    /// Its expiry month.
    pub expiry: CardExpiry,
    /// Code of its tier, if any.
    pub tier: Option<Code>,
}

/// A discount rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    /// Its code.
    pub code: Code,
    /// What it gives and when.
    pub terms: RuleTerms,
    /// Who it applies to, by code.
    pub eligibility: Eligibility<Code, Code, Code>,
}

/// The opening club balance of a card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClubOpening {
    /// Code of the card.
    pub card: Code,
    /// The opening balance.
    pub amount: Rials,
}

/// The opening store-credit balance of a card at a merchant, as one lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCreditOpening {
    /// Code of the card.
    pub card: Code,
    /// Code of the merchant where it may be spent.
    pub merchant: Code,
    /// The opening balance.
    pub amount: Rials,
    /// When the lot expires (the first millisecond it is no longer usable); `None`: never.
    pub expires_at: Option<UnixMillis>,
}

/// The row ids the store assigned to each code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowIds {
    /// Tiers by code.
    pub tiers: HashMap<Code, TierId>,
    /// Merchant groups by code.
    pub merchant_groups: HashMap<Code, GroupId>,
    /// Member groups by code.
    pub member_groups: HashMap<Code, GroupId>,
    /// Terminal groups by code.
    pub terminal_groups: HashMap<Code, GroupId>,
    /// Merchants by code.
    pub merchants: HashMap<Code, MerchantId>,
    /// Terminals by terminal id.
    pub terminals: HashMap<TerminalCode, TerminalRowId>,
    /// Members by code.
    pub members: HashMap<Code, MemberId>,
    /// Cards by code.
    pub cards: HashMap<Code, CardId>,
    /// Rules by code.
    pub rules: HashMap<Code, RuleId>,
}

/// Reference data as read back from the store: the records, the row ids of their codes and the
/// version the store counts up on every import that changed something.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadedReference {
    /// `reference_meta.version`; 0 before the first import.
    pub version: u64,
    /// The records.
    pub data: ReferenceData,
    /// Their row ids.
    pub ids: RowIds,
    /// Terminals' previous keys, still valid during a rotation's overlap.
    pub previous_keys: Vec<PreviousKey>,
}

/// The row ids of a whole read's members and cards, in the order of its records
/// (`data.members` and `data.cards`), as the store read them beside each record: the snapshot
/// build takes them instead of looking a million codes up again. They describe one read only;
/// the switch's `store::reference::Fresh` keeps them with the read they belong to, which nothing
/// edits.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadRows {
    /// Each member's row id.
    pub members: Vec<MemberId>,
    /// Each card's row id and its member's.
    pub cards: Vec<(CardId, MemberId)>,
}

/// A terminal's previous key during a rotation's overlap window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousKey {
    /// The terminal.
    pub terminal: TerminalCode,
    /// Its previous KSI.
    pub ksi: KeySetId,
    /// Its previous TMK.
    pub tmk: Tmk,
    /// When the previous key stops working.
    pub valid_until: UnixMillis,
}
