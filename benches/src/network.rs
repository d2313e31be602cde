//! A synthetic card network of any size, built in memory from a seed: tiers, groups, merchants
//! with one terminal each, members with one card each, discount rules and opening balances.
//!
//! The engine bench needs a million cards; going through the JSON import would spend most of
//! its setup parsing. This builds the same [`ReferenceData`] the import yields, plus the row
//! ids the store would assign ([`LoadedReference`]), so `Snapshot::build` sees what it sees in
//! production. The committer bench saves a small one through the store instead.
//!
//! Shape of the data (docs/design.md section 3): one merchant in one or two of the merchant groups;
//! one terminal per merchant, in one terminal group; one member per card, a tenth of them in a
//! member group; half the cards with a tier. Rules: 2 % open to every merchant (each limited
//! by BIN, tier or time), 70 % naming one to three merchants, 28 % naming one or two merchant
//! groups; mixed percent and fixed, with minimum baskets, caps, windows, budgets and daily
//! limits on some.

use protocol::terminal::Terminal as TerminalClient;
use protocol::{Ksi, Pan, TerminalId, Tmk, WorkingKeys};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use switch::domain::reference::{
    CardRecord, ClubOpening, GroupRecord, MemberRecord, MerchantRecord, RuleRecord,
    StoreCreditOpening, TerminalRecord, TierRecord,
};
use switch::domain::{
    BinRange, CardExpiry, CardId, CardStatus, CivilDate, Code, CurrencyCode, Eligibility,
    FeeSchedule, GroupId, Iban, KeySetId, LoadedReference, MemberId, MerchantId, MerchantProfile,
    MerchantStatus, MinuteWindow, PanToken, PanTokenKey, Percent, ReferenceData, Rials, RuleId,
    RuleKind, RuleTerms, TerminalCode, TerminalRowId, TerminalStatus, TierId, Weekdays, Window,
};
use switch::engine::state::{ClubAccount, Lot, LotId};
use switch::engine::State;

/// 2026-11-22T18:30:00Z (22:00 in Tehran, a Sunday): the clock every bench runs at.
pub const START_MS: i64 = 1_795_372_200_000;

/// The BINs cards are issued under, in turn.
pub const BINS: [&str; 6] = ["603799", "610433", "627353", "589210", "621986", "636214"];

/// The PAN token key of every bench network.
pub const PAN_KEY: [u8; 32] = [0x22; 32];

/// Merchant groups, as a share of merchants: about 150 merchants per group at 10k merchants.
const MERCHANTS_PER_GROUP: usize = 100;
/// Member groups (staff, students, …).
const MEMBER_GROUPS: usize = 4;
/// Terminal groups (counter, kiosk, mobile).
const TERMINAL_GROUPS: usize = 3;
/// Tiers and their cashback rates in percent.
const TIERS: [(&str, &str); 3] = [("silver", "1"), ("gold", "2"), ("platinum", "3.5")];

/// How big a network to build.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Merchants, each with one terminal.
    pub merchants: usize,
    /// Cards, each with its own member and a club balance.
    pub cards: usize,
    /// Discount rules.
    pub rules: usize,
    /// Store-credit accounts (card, merchant), one lot each.
    pub store_credit_accounts: usize,
    /// Club balances are drawn from `[club_rials_max / 20, club_rials_max]`.
    pub club_rials_max: i64,
    /// The seed of everything random.
    pub seed: u64,
}

/// A generated network: the records with their row ids, and the store-credit accounts by
/// index, so traffic can aim store-credit purchases where credit exists.
#[derive(Debug)]
pub struct Network {
    /// Records and row ids (row id = index + 1 for every kind but groups).
    pub reference: LoadedReference,
    /// Store-credit accounts as (card index, merchant index).
    pub store_credit: Vec<(usize, usize)>,
}

/// Builds the network of `shape`.
///
/// # Panics
/// When a generated value is refused by a domain constructor (a bug in this generator).
pub fn build(shape: &Shape, pan_key: &PanTokenKey) -> Network {
    let mut rng = StdRng::seed_from_u64(shape.seed);
    let mut reference = LoadedReference {
        version: 1,
        data: ReferenceData::default(),
        ids: switch::domain::RowIds::default(),
        previous_keys: Vec::new(),
    };
    groups(&mut reference, shape);
    merchants(&mut reference, shape, &mut rng);
    cards(&mut reference, shape, pan_key, &mut rng);
    for index in 0..shape.rules {
        let record = rule(index, shape, &mut rng);
        let id = RuleId::new(row_id(index));
        reference.ids.rules.insert(record.code.clone(), id);
        reference.data.rules.push(record);
    }
    let store_credit = openings(&mut reference, shape, &mut rng);
    Network {
        reference,
        store_credit,
    }
}

/// The engine state the openings give: club balances and store-credit lots, nothing held, no
/// transactions yet; transaction, RRN and lot numbers start after what exists.
///
/// # Panics
/// When an opening names a code without a row id (a bug in this generator).
pub fn state(reference: &LoadedReference) -> State {
    let ids = &reference.ids;
    let mut state = State::default();
    state.reserve_accounts(reference.data.club_openings.len(), 0);
    for opening in &reference.data.club_openings {
        let card = ids.cards[&opening.card];
        let account = ClubAccount {
            ledger: opening.amount,
            held: Rials::ZERO,
        };
        state.load_club(card, account);
    }
    let mut lot = 0_i64;
    for opening in &reference.data.store_credit_openings {
        lot += 1;
        let (card, merchant) = (ids.cards[&opening.card], ids.merchants[&opening.merchant]);
        let ledger = state
            .store
            .get(&(card, merchant))
            .map_or(Rials::ZERO, |account| account.ledger)
            .checked_add(opening.amount)
            .expect("ledger");
        state.load_store_account(card, merchant, ledger, Rials::ZERO);
        let loaded = state.load_lot(
            card,
            merchant,
            Lot {
                id: LotId(lot),
                remaining: opening.amount,
                expires_at: opening.expires_at,
            },
        );
        assert!(loaded, "its account was just loaded");
    }
    state.finish_loading();
    state
}

/// The PAN of card `index`: a BIN, the index in 9 digits and the Luhn check digit.
///
/// # Panics
/// When `index` has more than 9 digits.
pub fn pan(index: usize) -> Pan {
    assert!(index < 1_000_000_000);
    let body = format!("{}{index:09}", BINS[index % BINS.len()]);
    let digits = format!("{body}{}", luhn_digit(body.as_bytes()));
    Pan::parse_luhn(digits.as_bytes()).expect("generated pan passes luhn")
}

/// The terminals of `data` as a terminal vendor would provision them: id, KSI and working
/// keys from the TMK, STANs from 1. Index `i` is the terminal of merchant `i`.
pub fn terminal_clients(data: &ReferenceData) -> Vec<TerminalClient> {
    data.terminals
        .iter()
        .map(|record| {
            TerminalClient::new(
                TerminalId::parse(record.terminal_id.as_bytes()).expect("terminal id"),
                Ksi::parse(record.ksi.as_bytes()).expect("ksi"),
                WorkingKeys::derive(&record.tmk),
            )
        })
        .collect()
}

/// Row ids start at 1, as SQLite's do.
fn row_id(index: usize) -> i64 {
    i64::try_from(index).expect("index fits i64") + 1
}

fn code(text: String) -> Code {
    Code::parse(&text).expect("generated code")
}

fn merchant_group_count(shape: &Shape) -> usize {
    shape.merchants.div_ceil(MERCHANTS_PER_GROUP)
}

fn groups(reference: &mut LoadedReference, shape: &Shape) {
    let (data, ids) = (&mut reference.data, &mut reference.ids);
    let mut next = 0;
    let mut group = |name: String| {
        next += 1;
        (
            GroupRecord {
                code: code(name.clone()),
                name,
            },
            GroupId::new(next),
        )
    };
    for index in 0..merchant_group_count(shape) {
        let (record, id) = group(format!("MG{index:04}"));
        ids.merchant_groups.insert(record.code.clone(), id);
        data.merchant_groups.push(record);
    }
    for index in 0..MEMBER_GROUPS {
        let (record, id) = group(format!("UG{index}"));
        ids.member_groups.insert(record.code.clone(), id);
        data.member_groups.push(record);
    }
    for index in 0..TERMINAL_GROUPS {
        let (record, id) = group(format!("TG{index}"));
        ids.terminal_groups.insert(record.code.clone(), id);
        data.terminal_groups.push(record);
    }
    for (index, (name, rate)) in TIERS.iter().enumerate() {
        let record = TierRecord {
            code: code((*name).to_owned()),
            name: (*name).to_owned(),
            cashback_rate: Percent::parse(rate).expect("tier rate"),
            rank: u32::try_from(index).expect("tier rank"),
            spend_rials_min: None,
            purchases_min: None,
        };
        ids.tiers
            .insert(record.code.clone(), TierId::new(row_id(index)));
        data.tiers.push(record);
    }
}

fn merchants(reference: &mut LoadedReference, shape: &Shape, rng: &mut StdRng) {
    let fee_rates = ["0.5", "1", "1.5", "2"];
    let group_count = merchant_group_count(shape);
    for index in 0..shape.merchants {
        let merchant_code = code(format!("M{index:05}"));
        let mut groups = vec![format!("MG{:04}", rng.gen_range(0..group_count))];
        if rng.gen_bool(0.5) {
            groups.push(format!("MG{:04}", rng.gen_range(0..group_count)));
        }
        let mut groups: Vec<Code> = groups.into_iter().map(code).collect();
        groups.sort_unstable();
        groups.dedup();
        let fee = FeeSchedule::new(
            Percent::parse(fee_rates[rng.gen_range(0..fee_rates.len())]).expect("fee rate"),
            rials(rng.gen_range(0..=1_000)),
            rials(500_000),
        )
        .expect("fee schedule");
        let profile = MerchantProfile {
            name: format!("Merchant {index}"),
            iban: iban(index),
            status: MerchantStatus::Active,
            currency: CurrencyCode::IRR,
            fee,
            amount_rials_max: rials(500_000_000),
            cashback_allowed: rng.gen_bool(0.7),
            credit_expiry_days: 90,
            utc_offset_minutes: 210,
        };
        reference
            .ids
            .merchants
            .insert(merchant_code.clone(), MerchantId::new(row_id(index)));
        reference.data.merchants.push(MerchantRecord {
            code: merchant_code.clone(),
            profile,
            groups,
        });
        terminal(reference, index, merchant_code, rng);
    }
}

fn terminal(reference: &mut LoadedReference, index: usize, merchant: Code, rng: &mut StdRng) {
    let terminal_id = TerminalCode::parse(format!("T{index:07}").as_bytes()).expect("tid");
    let ksi = format!(
        "{:016X}",
        0xA000_0000_0000_0000_u64 + u64::try_from(index).expect("u64")
    );
    let record = TerminalRecord {
        terminal_id,
        ksi: KeySetId::parse(ksi.as_bytes()).expect("ksi"),
        merchant,
        status: TerminalStatus::Active,
        tmk: Tmk::from_bytes(rng.gen()),
        groups: vec![code(format!("TG{}", index % TERMINAL_GROUPS))],
    };
    reference
        .ids
        .terminals
        .insert(terminal_id, TerminalRowId::new(row_id(index)));
    reference.data.terminals.push(record);
}

fn cards(reference: &mut LoadedReference, shape: &Shape, pan_key: &PanTokenKey, rng: &mut StdRng) {
    let (data, ids) = (&mut reference.data, &mut reference.ids);
    data.members.reserve(shape.cards);
    data.cards.reserve(shape.cards);
    ids.members.reserve(shape.cards);
    ids.cards.reserve(shape.cards);
    for index in 0..shape.cards {
        let member = code(format!("U{index:07}"));
        let member_groups = if rng.gen_bool(0.1) {
            vec![code(format!("UG{}", rng.gen_range(0..MEMBER_GROUPS)))]
        } else {
            Vec::new()
        };
        ids.members
            .insert(member.clone(), MemberId::new(row_id(index)));
        data.members.push(MemberRecord {
            code: member.clone(),
            groups: member_groups,
            phone: None,
            locale: switch::domain::Locale::Fa,
            birth_date: None,
            joined_on: None,
            referred_by: None,
        });
        let pan = pan(index);
        let tier = match rng.gen_range(0..100) {
            0..50 => None,
            50..80 => Some(TIERS[0].0),
            80..95 => Some(TIERS[1].0),
            _ => Some(TIERS[2].0),
        };
        let year = 2028 + u16::try_from(index % 5).expect("u16");
        let month = 1 + u8::try_from(index % 12).expect("u8");
        let record = CardRecord {
            code: code(format!("C{index:07}")),
            member,
            token: PanToken::compute(pan_key, &pan),
            bin: pan.bin(),
            last4: pan.last4(),
            // One card in 500 is blocked, so decisions include the `62` path.
            status: if index % 500 == 499 {
                CardStatus::Blocked
            } else {
                CardStatus::Active
            },
            expiry: CardExpiry::new(year, month).expect("expiry"),
            tier: tier.map(|name| code(name.to_owned())),
        };
        ids.cards
            .insert(record.code.clone(), CardId::new(row_id(index)));
        data.cards.push(record);
    }
}

fn rule(index: usize, shape: &Shape, rng: &mut StdRng) -> RuleRecord {
    let mut eligibility = Eligibility::any();
    match rng.gen_range(0..100) {
        // Open to every merchant: always narrowed, as a network-wide campaign would be.
        0..2 => {
            let bin = BINS[rng.gen_range(0..BINS.len())];
            eligibility.bins = vec![BinRange::from_prefixes(bin, bin).expect("bin range")];
            eligibility.tiers = vec![code(TIERS[rng.gen_range(0..TIERS.len())].0.to_owned())];
        }
        2..72 => {
            let count = rng.gen_range(1..=3);
            eligibility.merchants = (0..count)
                .map(|_| code(format!("M{:05}", rng.gen_range(0..shape.merchants))))
                .collect();
        }
        _ => {
            let count = rng.gen_range(1..=2);
            let groups = merchant_group_count(shape);
            eligibility.merchant_groups = (0..count)
                .map(|_| code(format!("MG{:04}", rng.gen_range(0..groups))))
                .collect();
        }
    }
    if rng.gen_bool(0.25) {
        let bin = BINS[rng.gen_range(0..BINS.len())];
        eligibility
            .bins
            .push(BinRange::from_prefixes(bin, bin).expect("bin range"));
    }
    if eligibility.tiers.is_empty() && rng.gen_bool(0.2) {
        eligibility.tiers = vec![code(TIERS[rng.gen_range(0..TIERS.len())].0.to_owned())];
    }
    if rng.gen_bool(0.05) {
        eligibility.member_groups = vec![code(format!("UG{}", rng.gen_range(0..MEMBER_GROUPS)))];
    }
    if rng.gen_bool(0.05) {
        eligibility.terminal_groups =
            vec![code(format!("TG{}", rng.gen_range(0..TERMINAL_GROUPS)))];
    }
    for list in [&mut eligibility.merchants, &mut eligibility.merchant_groups] {
        list.sort_unstable();
        list.dedup();
    }
    eligibility.bins.sort_unstable();
    eligibility.bins.dedup();
    RuleRecord {
        code: code(format!("R{index:04}")),
        terms: terms(index, rng),
        eligibility,
    }
}

fn terms(index: usize, rng: &mut StdRng) -> RuleTerms {
    let rates = ["2", "5", "7.5", "10", "12", "15", "20"];
    let kind = if rng.gen_bool(0.6) {
        RuleKind::Percent(Percent::parse(rates[rng.gen_range(0..rates.len())]).expect("rate"))
    } else {
        RuleKind::Fixed(rials(10_000 * rng.gen_range(1..=50)))
    };
    RuleTerms {
        name: format!("Rule {index}"),
        kind,
        basket_rials_min: if rng.gen_bool(0.5) {
            Rials::ZERO
        } else {
            rials(100_000 * rng.gen_range(1..=10))
        },
        discount_rials_max: rng
            .gen_bool(0.5)
            .then(|| rials(50_000 * rng.gen_range(1..=40))),
        window: window(rng),
        budget_rials: rng.gen_bool(0.1).then(|| rials(50_000_000_000)),
        member_daily_uses_max: rng.gen_bool(0.1).then_some(2),
    }
}

fn window(rng: &mut StdRng) -> Window {
    let date = |text: &str| CivilDate::parse(text).expect("date");
    match rng.gen_range(0..100) {
        0..60 => Window::ALWAYS,
        60..75 => Window {
            valid_from: Some(date("2026-01-01")),
            valid_until: Some(date("2026-12-31")),
            ..Window::ALWAYS
        },
        75..85 => Window {
            hours: Some(MinuteWindow::new(480, 1_380).expect("hours")),
            ..Window::ALWAYS
        },
        85..95 => Window {
            // Saturday to Wednesday: the Iranian working week without Thursday.
            weekdays: Weekdays::from_mask(0b111_0111).expect("weekdays"),
            ..Window::ALWAYS
        },
        // A campaign that has ended: still evaluated, never open.
        _ => Window {
            valid_until: Some(date("2025-03-20")),
            ..Window::ALWAYS
        },
    }
}

fn openings(
    reference: &mut LoadedReference,
    shape: &Shape,
    rng: &mut StdRng,
) -> Vec<(usize, usize)> {
    let data = &mut reference.data;
    data.club_openings.reserve(shape.cards);
    for card in &data.cards {
        let amount = rng.gen_range(shape.club_rials_max / 20..=shape.club_rials_max);
        data.club_openings.push(ClubOpening {
            card: card.code.clone(),
            amount: rials(amount),
        });
    }
    let mut pairs = std::collections::HashSet::with_capacity(shape.store_credit_accounts);
    while pairs.len()
        < shape
            .store_credit_accounts
            .min(shape.cards * shape.merchants)
    {
        pairs.insert((
            rng.gen_range(0..shape.cards),
            rng.gen_range(0..shape.merchants),
        ));
    }
    let mut pairs: Vec<(usize, usize)> = pairs.into_iter().collect();
    pairs.sort_unstable();
    for (card, merchant) in &pairs {
        let expires_at = rng
            .gen_bool(0.5)
            .then(|| switch::domain::UnixMillis::new(START_MS + 30 * 86_400_000));
        data.store_credit_openings.push(StoreCreditOpening {
            card: data.cards[*card].code.clone(),
            merchant: data.merchants[*merchant].code.clone(),
            amount: rials(10_000 * rng.gen_range(5..=200)),
            expires_at,
        });
    }
    pairs
}

fn rials(value: i64) -> Rials {
    Rials::new(value).expect("generated amount within n12")
}

/// The Luhn check digit of `body` (ASCII digits).
fn luhn_digit(body: &[u8]) -> char {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            if position % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    char::from_digit((10 - sum % 10) % 10, 10).expect("a digit")
}

/// A valid Iranian IBAN for merchant `index`: a fixed bank and branch, the index as account.
fn iban(index: usize) -> Iban {
    let bban = format!("0170000000{index:012}");
    // ISO 13616: BBAN, then the country as digits (I = 18, R = 27) and "00", modulo 97.
    let rearranged = format!("{bban}182700");
    let remainder = rearranged.bytes().fold(0_u32, |rest, byte| {
        (rest * 10 + u32::from(byte - b'0')) % 97
    });
    Iban::parse(&format!("IR{:02}{bban}", 98 - remainder)).expect("generated iban")
}
