//! The serde shapes of the import file. Every field is read as a raw JSON value and checked by
//! [`super::record`], so each problem names its field and no value is echoed by the parser.
//! Unknown fields are refused everywhere.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Just `format` and `version`, read first so a file of another version is refused with a
/// clear message instead of a list of unknown fields.
#[derive(Debug, Deserialize)]
pub struct Header {
    /// Must be `"lsw-import"`.
    #[serde(default)]
    pub format: Option<String>,
    /// Must be 1.
    #[serde(default)]
    pub version: Option<u64>,
}

/// The whole file. Every section is optional and defaults to empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    /// Checked by [`Header`].
    pub format: Value,
    /// Checked by [`Header`].
    pub version: Value,
    /// Tiers.
    #[serde(default)]
    pub tiers: Records<Tier>,
    /// Merchant groups.
    #[serde(default)]
    pub merchant_groups: Records<Group>,
    /// Member groups.
    #[serde(default)]
    pub member_groups: Records<Group>,
    /// Terminal groups.
    #[serde(default)]
    pub terminal_groups: Records<Group>,
    /// Merchants.
    #[serde(default)]
    pub merchants: Records<Merchant>,
    /// Terminals.
    #[serde(default)]
    pub terminals: Records<Terminal>,
    /// Members.
    #[serde(default)]
    pub members: Records<Member>,
    /// Cards.
    #[serde(default)]
    pub cards: Records<Card>,
    /// Discount rules.
    #[serde(default)]
    pub rules: Records<Rule>,
    /// Opening balances.
    #[serde(default)]
    pub balances: Balances,
}

/// The opening balances.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balances {
    /// Club balances, one per card.
    #[serde(default)]
    pub club: Records<ClubBalance>,
    /// Store-credit balances, one per card and merchant.
    #[serde(default)]
    pub store_credit: Records<StoreCreditBalance>,
}

/// A tier record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Tier {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub name: Value,
    #[serde(default)]
    pub cashback_rate: Value,
    #[serde(default)]
    pub rank: Value,
    #[serde(default)]
    pub spend_rials_min: Value,
    #[serde(default)]
    pub purchases_min: Value,
}

/// A group record (merchant, member or terminal).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Group {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub name: Value,
}

/// A merchant record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Merchant {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub name: Value,
    #[serde(default)]
    pub iban: Value,
    #[serde(default)]
    pub status: Value,
    #[serde(default)]
    pub currency: Value,
    #[serde(default)]
    pub fee_rate: Value,
    #[serde(default)]
    pub fee_rials_min: Value,
    #[serde(default)]
    pub fee_rials_max: Value,
    #[serde(default)]
    pub amount_rials_max: Value,
    #[serde(default)]
    pub cashback_allowed: Value,
    #[serde(default)]
    pub credit_expiry_days: Value,
    #[serde(default)]
    pub utc_offset_minutes: Value,
    #[serde(default)]
    pub groups: Value,
}

/// A terminal record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Terminal {
    #[serde(default)]
    pub terminal_id: Value,
    #[serde(default)]
    pub ksi: Value,
    #[serde(default)]
    pub tmk_hex: Value,
    #[serde(default)]
    pub merchant: Value,
    #[serde(default)]
    pub status: Value,
    #[serde(default)]
    pub groups: Value,
}

/// A member record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Member {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub groups: Value,
    #[serde(default)]
    pub phone: Value,
    #[serde(default)]
    pub locale: Value,
    #[serde(default)]
    pub birth_date: Value,
    #[serde(default)]
    pub joined_on: Value,
    #[serde(default)]
    pub referred_by: Value,
}

/// A card record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Card {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub pan: Value,
    #[serde(default)]
    pub member: Value,
    #[serde(default)]
    pub expiry: Value,
    #[serde(default)]
    pub status: Value,
    #[serde(default)]
    pub tier: Value,
}

/// A discount rule record.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Rule {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub name: Value,
    #[serde(default)]
    pub percent: Value,
    #[serde(default)]
    pub fixed_rials: Value,
    #[serde(default)]
    pub basket_rials_min: Value,
    #[serde(default)]
    pub discount_rials_max: Value,
    #[serde(default)]
    pub valid_from: Value,
    #[serde(default)]
    pub valid_until: Value,
    #[serde(default)]
    pub weekdays: Value,
    #[serde(default)]
    pub hours_from: Value,
    #[serde(default)]
    pub hours_until: Value,
    #[serde(default)]
    pub merchants: Value,
    #[serde(default)]
    pub merchant_groups: Value,
    #[serde(default)]
    pub tiers: Value,
    #[serde(default)]
    pub member_groups: Value,
    #[serde(default)]
    pub terminal_groups: Value,
    #[serde(default)]
    pub bins: Value,
    #[serde(default)]
    pub budget_rials: Value,
    #[serde(default)]
    pub member_daily_uses_max: Value,
}

/// A BIN range of a rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Bins {
    #[serde(default)]
    pub from: Value,
    #[serde(default)]
    pub to: Value,
}

/// An opening club balance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct ClubBalance {
    #[serde(default)]
    pub card: Value,
    #[serde(default)]
    pub amount_rials: Value,
}

/// An opening store-credit balance.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct StoreCreditBalance {
    #[serde(default)]
    pub card: Value,
    #[serde(default)]
    pub merchant: Value,
    #[serde(default)]
    pub amount_rials: Value,
    #[serde(default)]
    pub expires: Value,
}

/// A section: each element read on its own, so one malformed record (not an object, an
/// unknown field) is reported with its index and the others are still checked. Elements are
/// parsed one at a time, so only one raw value is alive at once.
#[derive(Debug)]
pub struct Records<T>(pub Vec<Result<T, Malformed>>);

/// An element that is not a record of its section.
#[derive(Debug)]
pub struct Malformed {
    /// Why, e.g. an unknown field.
    pub message: String,
    /// Its `code`, when it has a string one: still claimed, so records that refer to it do not
    /// report a second, misleading problem.
    pub code: Option<String>,
}

impl<T> Default for Records<T> {
    fn default() -> Records<T> {
        Records(Vec::new())
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Records<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Records<T>, D::Error> {
        deserializer.deserialize_seq(RecordsVisitor(PhantomData))
    }
}

struct RecordsVisitor<T>(PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for RecordsVisitor<T> {
    type Value = Records<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Records<T>, A::Error> {
        let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
        while let Some(value) = seq.next_element::<Value>()? {
            let code = value
                .get("code")
                .and_then(Value::as_str)
                .map(str::to_string);
            let record = match value {
                Value::Object(_) => T::deserialize(value).map_err(|error| Malformed {
                    message: error.to_string(),
                    code,
                }),
                _ => Err(Malformed {
                    message: "must be an object".to_string(),
                    code: None,
                }),
            };
            records.push(record);
        }
        Ok(Records(records))
    }
}
