//! Each section of the file into records: field checks, unique codes and references.

use std::collections::{HashMap, HashSet};

use protocol::{Pan, Tmk};
use serde_json::Value;
use zeroize::Zeroize;

use crate::domain::reference::{
    CardRecord, ClubOpening, GroupRecord, MemberRecord, MerchantRecord, RuleRecord,
    StoreCreditOpening, TerminalRecord, TierRecord,
};
use crate::domain::time::{check_utc_offset, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::{
    BinRange, CardExpiry, CardStatus, CivilDate, Code, CurrencyCode, Eligibility, FeeSchedule,
    Iban, Invalid, KeySetId, Locale, MerchantProfile, MerchantStatus, MinuteWindow, PanToken,
    PanTokenKey, Phone, ReferenceData, RowIds, RuleKind, RuleTerms, TerminalCode, TerminalStatus,
    UnixMillis, Weekday, Weekdays, Window,
};
use crate::import::dto::{self, Records};
use crate::import::record::{
    self, amount, code, codes, flag, name, percent, text, Problems, Record,
};

/// Longest store-credit lifetime a merchant may set: ten years.
pub const CREDIT_EXPIRY_DAYS_MAX: i64 = 3_650;

/// Converts every section, reporting problems; the result is meaningful only when none were
/// reported.
pub fn convert(file: dto::File, pan_key: &PanTokenKey, problems: &mut Problems) -> ReferenceData {
    convert_with(file, pan_key, Codes::default(), problems)
}

/// Like [`convert`], for a document that adds to or changes stored reference data (the
/// operator API): a reference may also name a record already stored (`stored`), not only one
/// in the same document. Every other check is the import's.
pub fn convert_over(
    file: dto::File,
    pan_key: &PanTokenKey,
    stored: &RowIds,
    problems: &mut Problems,
) -> ReferenceData {
    let codes = Codes {
        tiers: Seen::over(stored.tiers.keys()),
        merchant_groups: Seen::over(stored.merchant_groups.keys()),
        member_groups: Seen::over(stored.member_groups.keys()),
        terminal_groups: Seen::over(stored.terminal_groups.keys()),
        merchants: Seen::over(stored.merchants.keys()),
        members: Seen::over(stored.members.keys()),
        cards: Seen::over(stored.cards.keys()),
    };
    convert_with(file, pan_key, codes, problems)
}

// The sections are converted one after the other into a default value, because each reads
// the codes the earlier ones claimed; a struct literal would hide that order.
#[allow(clippy::field_reassign_with_default)]
fn convert_with(
    file: dto::File,
    pan_key: &PanTokenKey,
    mut codes: Codes,
    problems: &mut Problems,
) -> ReferenceData {
    let mut data = ReferenceData::default();
    data.tiers = tiers(file.tiers, &mut codes.tiers, problems);
    data.merchant_groups = groups(
        "merchant_groups",
        file.merchant_groups,
        &mut codes.merchant_groups,
        problems,
    );
    data.member_groups = groups(
        "member_groups",
        file.member_groups,
        &mut codes.member_groups,
        problems,
    );
    data.terminal_groups = groups(
        "terminal_groups",
        file.terminal_groups,
        &mut codes.terminal_groups,
        problems,
    );
    data.merchants = merchants(file.merchants, &mut codes, problems);
    data.terminals = terminals(file.terminals, &codes, problems);
    data.members = members(file.members, &mut codes, problems);
    data.cards = cards(file.cards, pan_key, &mut codes, problems);
    data.rules = rules(file.rules, &codes, problems);
    data.club_openings = club_openings(file.balances.club, &codes, problems);
    let offsets: HashMap<&Code, i32> = data
        .merchants
        .iter()
        .map(|merchant| (&merchant.code, merchant.profile.utc_offset_minutes))
        .collect();
    data.store_credit_openings =
        store_credit_openings(file.balances.store_credit, &codes, &offsets, problems);
    data
}

/// The codes seen so far in each section, with the index of their first record.
#[derive(Default)]
struct Codes {
    tiers: Seen,
    merchant_groups: Seen,
    member_groups: Seen,
    terminal_groups: Seen,
    merchants: Seen,
    members: Seen,
    cards: Seen,
}

/// The codes of one section: those of the document, with the index of their first record,
/// and (for [`convert_over`]) those already stored.
#[derive(Default)]
struct Seen {
    file: HashMap<Code, usize>,
    stored: HashSet<Code>,
}

impl Seen {
    fn over<'c>(stored: impl Iterator<Item = &'c Code>) -> Seen {
        Seen {
            file: HashMap::new(),
            stored: stored.cloned().collect(),
        }
    }

    /// Registers `code` of `record`; reports it when already taken.
    fn claim(&mut self, record: &mut Record<'_>, section: &str, index: usize, code: &Code) {
        if let Some(first) = self.file.get(code) {
            record.report(
                "code",
                format_args!("duplicate code; first at {section}[{first}]"),
            );
        } else {
            self.file.insert(code.clone(), index);
        }
    }

    fn has(&self, code: &Code) -> bool {
        self.file.contains_key(code) || self.stored.contains(code)
    }
}

/// Reads a code field and checks it names a record of `seen`.
fn reference(
    record: &mut Record<'_>,
    field: &str,
    value: &Value,
    seen: &Seen,
    kind: &str,
) -> Option<Code> {
    let target = record.required(field, value, code)?;
    if !seen.has(&target) {
        record.report(field, format_args!("no {kind} has code \"{target}\""));
        return None;
    }
    Some(target)
}

/// Reads an optional list of codes and checks each names a record of `seen`.
fn references(
    record: &mut Record<'_>,
    field: &str,
    value: &Value,
    seen: &Seen,
    kind: &str,
) -> Option<Vec<Code>> {
    let list = record.optional(field, value, Vec::new(), codes)?;
    let missing: Vec<&Code> = list.iter().filter(|code| !seen.has(code)).collect();
    if let Some(first) = missing.first() {
        record.report(field, format_args!("no {kind} has code \"{first}\""));
        return None;
    }
    Some(list)
}

/// Opens each element of a section: a malformed element is reported and skipped, and its
/// code, if it has one, is still claimed in `seen`.
fn each<T>(
    section: &'static str,
    records: Records<T>,
    mut seen: Option<&mut Seen>,
    problems: &mut Problems,
) -> Vec<(usize, T)> {
    let mut out = Vec::with_capacity(records.0.len());
    for (index, element) in records.0.into_iter().enumerate() {
        match element {
            Ok(value) => out.push((index, value)),
            Err(malformed) => {
                problems.report(format_args!("{section}[{index}]"), malformed.message);
                let code = malformed
                    .code
                    .as_deref()
                    .and_then(|text| Code::parse(text).ok());
                if let (Some(seen), Some(code)) = (seen.as_deref_mut(), code) {
                    seen.file.entry(code).or_insert(index);
                }
            }
        }
    }
    out
}

fn tiers(records: Records<dto::Tier>, seen: &mut Seen, problems: &mut Problems) -> Vec<TierRecord> {
    let mut out = Vec::new();
    let elements = each("tiers", records, Some(&mut *seen), problems);
    for (index, dto) in elements {
        let mut record = Record::new("tiers", index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            seen.claim(&mut record, "tiers", index, code);
        }
        let name = record.required("name", &dto.name, name);
        let rate = record.required("cashback_rate", &dto.cashback_rate, percent);
        let rank = record.optional("rank", &dto.rank, 0, |v| {
            let rank = record::integer(v, 0, 1_000, "must be 0..=1000")?;
            u32::try_from(rank).map_err(|_| Invalid::new("must be 0..=1000"))
        });
        let spend = record.optional("spend_rials_min", &dto.spend_rials_min, None, |v| {
            amount(v).map(Some)
        });
        let purchases = record.optional("purchases_min", &dto.purchases_min, None, |v| {
            let count = record::integer(v, 1, 1_000_000, "must be 1..=1000000")?;
            u32::try_from(count)
                .map(Some)
                .map_err(|_| Invalid::new("must be 1..=1000000"))
        });
        if let (
            Some(code),
            Some(name),
            Some(cashback_rate),
            Some(rank),
            Some(spend_rials_min),
            Some(purchases_min),
        ) = (code, name, rate, rank, spend, purchases)
        {
            out.push(TierRecord {
                code,
                name,
                cashback_rate,
                rank,
                spend_rials_min,
                purchases_min,
            });
        }
    }
    out
}

fn groups(
    section: &'static str,
    records: Records<dto::Group>,
    seen: &mut Seen,
    problems: &mut Problems,
) -> Vec<GroupRecord> {
    let mut out = Vec::new();
    let elements = each(section, records, Some(&mut *seen), problems);
    for (index, dto) in elements {
        let mut record = Record::new(section, index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            seen.claim(&mut record, section, index, code);
        }
        let name = record.required("name", &dto.name, name);
        if let (Some(code), Some(name)) = (code, name) {
            out.push(GroupRecord { code, name });
        }
    }
    out
}

fn merchants(
    records: Records<dto::Merchant>,
    codes: &mut Codes,
    problems: &mut Problems,
) -> Vec<MerchantRecord> {
    let mut out = Vec::new();
    let elements = each("merchants", records, Some(&mut codes.merchants), problems);
    for (index, dto) in elements {
        let mut record = Record::new("merchants", index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            codes.merchants.claim(&mut record, "merchants", index, code);
        }
        let groups = references(
            &mut record,
            "groups",
            &dto.groups,
            &codes.merchant_groups,
            "merchant group",
        );
        let profile = merchant_profile(&mut record, &dto);
        if let (Some(code), Some(groups), Some(profile)) = (code, groups, profile) {
            out.push(MerchantRecord {
                code,
                profile,
                groups,
            });
        }
    }
    out
}

fn merchant_profile(record: &mut Record<'_>, dto: &dto::Merchant) -> Option<MerchantProfile> {
    let name = record.required("name", &dto.name, name);
    let iban = record.required("iban", &dto.iban, |v| Iban::parse(text(v)?));
    let status = record.optional(
        "status",
        &dto.status,
        MerchantStatus::Active,
        |v| match text(v)? {
            "active" => Ok(MerchantStatus::Active),
            "inactive" => Ok(MerchantStatus::Inactive),
            _ => Err(Invalid::new("must be \"active\" or \"inactive\"")),
        },
    );
    let currency = record.optional("currency", &dto.currency, CurrencyCode::IRR, |v| {
        let number = record::integer(v, 1, 999, "must be an ISO 4217 numeric code 1..=999")?;
        CurrencyCode::new(u16::try_from(number).map_err(|_| Invalid::new("must be 1..=999"))?)
    });
    let rate = record.required("fee_rate", &dto.fee_rate, percent);
    let fee_min = record.required("fee_rials_min", &dto.fee_rials_min, amount);
    let fee_max = record.required("fee_rials_max", &dto.fee_rials_max, amount);
    let fee = match (rate, fee_min, fee_max) {
        (Some(rate), Some(min), Some(max)) => {
            let fee = FeeSchedule::new(rate, min, max);
            record
                .optional("fee_rials_min", &Value::Bool(true), None, |_| fee.map(Some))
                .flatten()
        }
        _ => None,
    };
    let limit = record.required("amount_rials_max", &dto.amount_rials_max, amount);
    let cashback = record.required("cashback_allowed", &dto.cashback_allowed, flag);
    let expiry = record.required("credit_expiry_days", &dto.credit_expiry_days, |v| {
        let days = record::integer(v, 1, CREDIT_EXPIRY_DAYS_MAX, "must be 1..=3650 days")?;
        u16::try_from(days).map_err(|_| Invalid::new("must be 1..=3650 days"))
    });
    let offset = record.optional(
        "utc_offset_minutes",
        &dto.utc_offset_minutes,
        TEHRAN_UTC_OFFSET_MINUTES,
        |v| {
            let minutes = record::integer(v, -720, 840, "must be -720..=840 minutes")?;
            check_utc_offset(
                i32::try_from(minutes).map_err(|_| Invalid::new("must be -720..=840 minutes"))?,
            )
        },
    );
    Some(MerchantProfile {
        name: name?,
        iban: iban?,
        status: status?,
        currency: currency?,
        fee: fee?,
        amount_rials_max: limit?,
        cashback_allowed: cashback?,
        credit_expiry_days: expiry?,
        utc_offset_minutes: offset?,
    })
}

fn terminals(
    records: Records<dto::Terminal>,
    codes: &Codes,
    problems: &mut Problems,
) -> Vec<TerminalRecord> {
    let mut out = Vec::new();
    let mut ids: HashMap<TerminalCode, usize> = HashMap::new();
    let mut ksis: HashMap<KeySetId, usize> = HashMap::new();
    let elements = each("terminals", records, None, problems);
    for (index, mut dto) in elements {
        let mut record = Record::new("terminals", index, problems);
        let terminal_id = record.required("terminal_id", &dto.terminal_id, |v| {
            TerminalCode::parse(text(v)?.as_bytes())
        });
        if let Some(id) = terminal_id {
            if let Some(first) = ids.insert(id, index) {
                record.report(
                    "terminal_id",
                    format_args!("duplicate terminal id; first at terminals[{first}]"),
                );
            }
        }
        let ksi = record.required("ksi", &dto.ksi, |v| KeySetId::parse(text(v)?.as_bytes()));
        if let Some(ksi) = ksi {
            if let Some(first) = ksis.insert(ksi, index) {
                record.report(
                    "ksi",
                    format_args!("duplicate ksi; first at terminals[{first}]"),
                );
            }
        }
        let tmk = record.required("tmk_hex", &dto.tmk_hex, tmk);
        wipe(&mut dto.tmk_hex);
        let merchant = reference(
            &mut record,
            "merchant",
            &dto.merchant,
            &codes.merchants,
            "merchant",
        );
        let status = record.optional(
            "status",
            &dto.status,
            TerminalStatus::Active,
            |v| match text(v)? {
                "active" => Ok(TerminalStatus::Active),
                "inactive" => Ok(TerminalStatus::Inactive),
                _ => Err(Invalid::new("must be \"active\" or \"inactive\"")),
            },
        );
        let groups = references(
            &mut record,
            "groups",
            &dto.groups,
            &codes.terminal_groups,
            "terminal group",
        );
        if let (
            Some(terminal_id),
            Some(ksi),
            Some(tmk),
            Some(merchant),
            Some(status),
            Some(groups),
        ) = (terminal_id, ksi, tmk, merchant, status, groups)
        {
            out.push(TerminalRecord {
                terminal_id,
                ksi,
                merchant,
                status,
                tmk,
                groups,
            });
        }
    }
    out
}

/// A TMK: 64 hexadecimal characters (32 bytes).
fn tmk(value: &Value) -> Result<Tmk, Invalid> {
    let hex_text = text(value)?;
    if hex_text.len() != 64 {
        return Err(Invalid::new("must be 64 hexadecimal characters (32 bytes)"));
    }
    let mut bytes = hex::decode(hex_text).map_err(|_| Invalid::new("must be hexadecimal"))?;
    let tmk = Tmk::from_slice(&bytes).map_err(|_| Invalid::new("must be 32 bytes"));
    bytes.zeroize();
    tmk
}

/// Overwrites a secret string read from the file (a PAN or a TMK) once it has been used.
fn wipe(value: &mut Value) {
    if let Value::String(secret) = value {
        secret.zeroize();
    }
}

fn members(
    records: Records<dto::Member>,
    codes: &mut Codes,
    problems: &mut Problems,
) -> Vec<MemberRecord> {
    let mut out = Vec::new();
    let elements = each("members", records, Some(&mut codes.members), problems);
    for (index, dto) in elements {
        let mut record = Record::new("members", index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            codes.members.claim(&mut record, "members", index, code);
        }
        let groups = references(
            &mut record,
            "groups",
            &dto.groups,
            &codes.member_groups,
            "member group",
        );
        let phone = record.optional("phone", &dto.phone, None, |v| {
            text(v).and_then(Phone::parse).map(Some)
        });
        let locale = record.optional("locale", &dto.locale, Locale::Fa, |v| {
            text(v).and_then(Locale::parse)
        });
        let date = |v: &Value| CivilDate::parse(text(v)?).map(Some);
        let birth_date = record.optional("birth_date", &dto.birth_date, None, date);
        let joined_on = record.optional("joined_on", &dto.joined_on, None, date);
        let referred_by = record.optional("referred_by", &dto.referred_by, None, |v| {
            record::code(v).map(Some)
        });
        if let (
            Some(code),
            Some(groups),
            Some(phone),
            Some(locale),
            Some(birth_date),
            Some(joined_on),
            Some(referred_by),
        ) = (
            code,
            groups,
            phone,
            locale,
            birth_date,
            joined_on,
            referred_by,
        ) {
            out.push((
                index,
                MemberRecord {
                    code,
                    groups,
                    phone,
                    locale,
                    birth_date,
                    joined_on,
                    referred_by,
                },
            ));
        }
    }
    // A referrer may come later in the file: checked once every member is known.
    let mut kept = Vec::with_capacity(out.len());
    for (index, member) in out {
        if let Some(referrer) = &member.referred_by {
            let mut record = Record::new("members", index, problems);
            if *referrer == member.code {
                record.report("referred_by", "a member cannot refer themselves");
                continue;
            }
            if !codes.members.has(referrer) {
                record.report(
                    "referred_by",
                    format_args!("no member has code \"{referrer}\""),
                );
                continue;
            }
        }
        kept.push(member);
    }
    kept
}

fn cards(
    records: Records<dto::Card>,
    pan_key: &PanTokenKey,
    codes: &mut Codes,
    problems: &mut Problems,
) -> Vec<CardRecord> {
    let mut out = Vec::new();
    let mut tokens: HashMap<PanToken, usize> = HashMap::new();
    let elements = each("cards", records, Some(&mut codes.cards), problems);
    for (index, mut dto) in elements {
        let mut record = Record::new("cards", index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            codes.cards.claim(&mut record, "cards", index, code);
        }
        let pan = record.required("pan", &dto.pan, |v| card_number(v, pan_key));
        wipe(&mut dto.pan);
        if let Some((token, _, _)) = &pan {
            if let Some(first) = tokens.insert(*token, index) {
                record.report("pan", format_args!("same card number as cards[{first}]"));
            }
        }
        let member = reference(&mut record, "member", &dto.member, &codes.members, "member");
        let expiry = record.required("expiry", &dto.expiry, |v| CardExpiry::parse(text(v)?));
        let status = record.optional("status", &dto.status, CardStatus::Active, |v| {
            match text(v)? {
                "active" => Ok(CardStatus::Active),
                "blocked" => Ok(CardStatus::Blocked),
                _ => Err(Invalid::new("must be \"active\" or \"blocked\"")),
            }
        });
        let tier = if dto.tier.is_null() {
            Some(None)
        } else {
            reference(&mut record, "tier", &dto.tier, &codes.tiers, "tier").map(Some)
        };
        if let (
            Some(code),
            Some((token, bin, last4)),
            Some(member),
            Some(expiry),
            Some(status),
            Some(tier),
        ) = (code, pan, member, expiry, status, tier)
        {
            out.push(CardRecord {
                code,
                member,
                token,
                bin,
                last4,
                status,
                expiry,
                tier,
            });
        }
    }
    out
}

/// A PAN, turned at once into its token, BIN and last 4. The [`Pan`] is wiped when dropped
/// here; error messages never contain its digits.
fn card_number(
    value: &Value,
    pan_key: &PanTokenKey,
) -> Result<(PanToken, [u8; 6], [u8; 4]), Invalid> {
    let digits = text(value).map_err(|_| Invalid::new("must be a string of 12..=19 digits"))?;
    let pan = Pan::parse_luhn(digits.as_bytes()).map_err(|error| match error {
        protocol::pan::PanLuhnError::Luhn => Invalid::new("fails the luhn check"),
        protocol::pan::PanLuhnError::Format(_) => {
            Invalid::new("must be a string of 12..=19 digits")
        }
    })?;
    Ok((PanToken::compute(pan_key, &pan), pan.bin(), pan.last4()))
}

fn rules(records: Records<dto::Rule>, codes: &Codes, problems: &mut Problems) -> Vec<RuleRecord> {
    let mut out = Vec::new();
    let mut seen = Seen::default();
    let elements = each("rules", records, Some(&mut seen), problems);
    for (index, dto) in elements {
        let mut record = Record::new("rules", index, problems);
        let code = record.required("code", &dto.code, code);
        if let Some(code) = &code {
            seen.claim(&mut record, "rules", index, code);
        }
        let terms = rule_terms(&mut record, &dto);
        let eligibility = rule_eligibility(&mut record, &dto, codes);
        if let (Some(code), Some(terms), Some(eligibility)) = (code, terms, eligibility) {
            out.push(RuleRecord {
                code,
                terms,
                eligibility,
            });
        }
    }
    out
}

fn rule_terms(record: &mut Record<'_>, dto: &dto::Rule) -> Option<RuleTerms> {
    let name = record.required("name", &dto.name, name);
    let kind = match (dto.percent.is_null(), dto.fixed_rials.is_null()) {
        (false, true) => record
            .required("percent", &dto.percent, percent)
            .map(RuleKind::Percent),
        (true, false) => record
            .required("fixed_rials", &dto.fixed_rials, amount)
            .map(RuleKind::Fixed),
        _ => {
            record.report(
                "percent",
                "exactly one of percent and fixed_rials is required",
            );
            None
        }
    };
    let basket = record.optional(
        "basket_rials_min",
        &dto.basket_rials_min,
        crate::domain::Rials::ZERO,
        amount,
    );
    let cap = record.optional("discount_rials_max", &dto.discount_rials_max, None, |v| {
        amount(v).map(Some)
    });
    let window = rule_window(record, dto);
    let budget = record.optional("budget_rials", &dto.budget_rials, None, |v| {
        amount(v).map(Some)
    });
    let uses = record.optional(
        "member_daily_uses_max",
        &dto.member_daily_uses_max,
        None,
        |v| {
            let uses = record::integer(v, 1, 1_000_000, "must be 1..=1000000")?;
            u32::try_from(uses)
                .map(Some)
                .map_err(|_| Invalid::new("must be 1..=1000000"))
        },
    );
    Some(RuleTerms {
        name: name?,
        kind: kind?,
        basket_rials_min: basket?,
        discount_rials_max: cap?,
        window: window?,
        budget_rials: budget?,
        member_daily_uses_max: uses?,
    })
}

fn rule_window(record: &mut Record<'_>, dto: &dto::Rule) -> Option<Window> {
    let date = |v: &Value| CivilDate::parse(text(v)?).map(Some);
    let from = record.optional("valid_from", &dto.valid_from, None, date);
    let until = record.optional("valid_until", &dto.valid_until, None, date);
    if let (Some(Some(from)), Some(Some(until))) = (from, until) {
        if from > until {
            record.report("valid_until", "is before valid_from");
        }
    }
    let weekdays = record.optional("weekdays", &dto.weekdays, Weekdays::ALL, |v| {
        let names = v
            .as_array()
            .ok_or(Invalid::new("must be an array of day names"))?;
        let days = names
            .iter()
            .map(|name| name.as_str().and_then(Weekday::from_short_name))
            .collect::<Option<Vec<_>>>()
            .ok_or(Invalid::new(
                "days must be \"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\" or \"sun\"",
            ))?;
        Weekdays::from_days(days)
    });
    let minute = |v: &Value| MinuteWindow::parse_minute(text(v)?).map(Some);
    let hours_from = record.optional("hours_from", &dto.hours_from, None, minute);
    let hours_until = record.optional("hours_until", &dto.hours_until, None, minute);
    let hours = match (hours_from?, hours_until?) {
        (None, None) => None,
        (Some(from), Some(until)) => match MinuteWindow::new(from, until) {
            Ok(window) => Some(window),
            Err(invalid) => {
                record.report("hours_until", invalid);
                return None;
            }
        },
        _ => {
            record.report("hours_from", "hours_from and hours_until go together");
            return None;
        }
    };
    if record.failed() {
        return None;
    }
    Some(Window {
        valid_from: from?,
        valid_until: until?,
        weekdays: weekdays?,
        hours,
    })
}

fn rule_eligibility(
    record: &mut Record<'_>,
    dto: &dto::Rule,
    codes: &Codes,
) -> Option<Eligibility<Code, Code, Code>> {
    let merchants = references(
        record,
        "merchants",
        &dto.merchants,
        &codes.merchants,
        "merchant",
    );
    let merchant_groups = references(
        record,
        "merchant_groups",
        &dto.merchant_groups,
        &codes.merchant_groups,
        "merchant group",
    );
    let tiers = references(record, "tiers", &dto.tiers, &codes.tiers, "tier");
    let member_groups = references(
        record,
        "member_groups",
        &dto.member_groups,
        &codes.member_groups,
        "member group",
    );
    let terminal_groups = references(
        record,
        "terminal_groups",
        &dto.terminal_groups,
        &codes.terminal_groups,
        "terminal group",
    );
    let bins = record.optional("bins", &dto.bins, Vec::new(), bin_ranges);
    Some(Eligibility {
        merchants: merchants?,
        merchant_groups: merchant_groups?,
        tiers: tiers?,
        member_groups: member_groups?,
        terminal_groups: terminal_groups?,
        bins: bins?,
    })
}

/// An array of `{"from": "6037", "to": "6037"}` BIN prefix ranges, returned sorted.
fn bin_ranges(value: &Value) -> Result<Vec<BinRange>, Invalid> {
    let shape = Invalid::new("must be an array of {\"from\": prefix, \"to\": prefix}");
    let items = value.as_array().ok_or(shape)?;
    let mut ranges = Vec::with_capacity(items.len());
    for item in items {
        let range: dto::Bins = serde_json::from_value(item.clone()).map_err(|_| shape)?;
        ranges.push(BinRange::from_prefixes(
            text(&range.from)?,
            text(&range.to)?,
        )?);
    }
    ranges.sort_unstable();
    Ok(ranges)
}

fn club_openings(
    records: Records<dto::ClubBalance>,
    codes: &Codes,
    problems: &mut Problems,
) -> Vec<ClubOpening> {
    let mut out = Vec::new();
    let mut seen: HashMap<Code, usize> = HashMap::new();
    let elements = each("balances.club", records, None, problems);
    for (index, dto) in elements {
        let mut record = Record::new("balances.club", index, problems);
        let card = reference(&mut record, "card", &dto.card, &codes.cards, "card");
        if let Some(card) = &card {
            if let Some(first) = seen.insert(card.clone(), index) {
                record.report(
                    "card",
                    format_args!("second opening for this card; first at balances.club[{first}]"),
                );
            }
        }
        let amount = record.required("amount_rials", &dto.amount_rials, amount);
        if let (Some(card), Some(amount)) = (card, amount) {
            out.push(ClubOpening { card, amount });
        }
    }
    out
}

fn store_credit_openings(
    records: Records<dto::StoreCreditBalance>,
    codes: &Codes,
    offsets: &HashMap<&Code, i32>,
    problems: &mut Problems,
) -> Vec<StoreCreditOpening> {
    let mut out = Vec::new();
    let mut seen: HashMap<(Code, Code), usize> = HashMap::new();
    let elements = each("balances.store_credit", records, None, problems);
    for (index, dto) in elements {
        let mut record = Record::new("balances.store_credit", index, problems);
        let card = reference(&mut record, "card", &dto.card, &codes.cards, "card");
        let merchant = reference(
            &mut record,
            "merchant",
            &dto.merchant,
            &codes.merchants,
            "merchant",
        );
        if let (Some(card), Some(merchant)) = (&card, &merchant) {
            if let Some(first) = seen.insert((card.clone(), merchant.clone()), index) {
                record.report(
                    "card",
                    format_args!("second opening for this card and merchant; first at balances.store_credit[{first}]"),
                );
            }
        }
        let amount = record.required("amount_rials", &dto.amount_rials, amount);
        let expires = record.optional("expires", &dto.expires, None, |v| {
            CivilDate::parse(text(v)?).map(Some)
        });
        if let (Some(card), Some(merchant), Some(amount), Some(expires)) =
            (card, merchant, amount, expires)
        {
            // The lot is usable through the whole expiry date in the merchant's local time.
            let offset = offsets
                .get(&merchant)
                .copied()
                .unwrap_or(TEHRAN_UTC_OFFSET_MINUTES);
            let expires_at: Option<UnixMillis> =
                expires.map(|date| UnixMillis::start_of_local_day(date.next(), offset));
            out.push(StoreCreditOpening {
                card,
                merchant,
                amount,
                expires_at,
            });
        }
    }
    out
}
