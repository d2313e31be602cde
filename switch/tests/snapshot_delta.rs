//! Goal: a snapshot reached by applying operator changes as deltas (`Snapshot::apply`, and
//! `Snapshot::compacted` now and then) answers every lookup as a snapshot rebuilt whole from the
//! database after the same changes (`Snapshot::build`, kept as the reference).
//!
//! Method: a proptest over random sequences of changes of every kind the operator API makes
//! (issue, block, unblock, renew and re-tier a card, move a card to another member, a new member,
//! a member's groups and referrer, a merchant's groups and fee, a terminal's merchant, status
//! and groups, a rule's terms and eligibility, a new rule, a tier's rank and rate), each saved
//! as the API saves it: the named read, `save_over`, the read-back of what it touched in the
//! same transaction, then `apply`. After every change, `Snapshot::contents` of the delta-made
//! snapshot must equal that of a whole rebuild.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use serde_json::{json, Value};
use switch::domain::{
    CardExpiry, CardStatus, Code, Kek, PanTokenKey, Percent, ReferenceData, TerminalStatus,
    UnixMillis,
};
use switch::import;
use switch::snapshot::Snapshot;
use switch::store::{self, reference, Pool};

const EXAMPLE: &str = include_str!("../../docs/examples/network.json");
const NOW: UnixMillis = UnixMillis::new(1_750_000_000_000);

fn kek() -> Kek {
    Kek::from_bytes([0x11; 32])
}

fn pan_key() -> PanTokenKey {
    PanTokenKey::from_bytes([0x22; 32])
}

/// One change, by index into what exists (taken modulo the count).
#[derive(Debug, Clone)]
enum Op {
    IssueCard {
        member: usize,
        serial: u32,
        bin: u8,
        blocked: bool,
    },
    CardStatus {
        card: usize,
        blocked: bool,
    },
    Renew {
        card: usize,
        months: u8,
    },
    CardTier {
        card: usize,
        tier: Option<usize>,
    },
    MoveCard {
        card: usize,
        member: usize,
    },
    NewMember {
        serial: u32,
        groups: u8,
        referrer: Option<usize>,
    },
    MemberGroups {
        member: usize,
        groups: u8,
        referrer: Option<usize>,
    },
    MerchantGroups {
        merchant: usize,
        groups: u8,
        fee: u8,
    },
    Terminal {
        terminal: usize,
        merchant: usize,
        active: bool,
        groups: u8,
    },
    Rule {
        rule: usize,
        percent: u8,
        groups: u8,
        bins: Option<u8>,
    },
    NewRule {
        serial: u32,
        merchant: usize,
        bins: Option<u8>,
    },
    Tier {
        tier: usize,
        rank: u8,
        rate: u8,
    },
    Compact,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<usize>(), 0..100_000_u32, 0..3_u8, any::<bool>()).prop_map(
            |(member, serial, bin, blocked)| Op::IssueCard {
                member,
                serial,
                bin,
                blocked
            }
        ),
        (any::<usize>(), any::<bool>())
            .prop_map(|(card, blocked)| Op::CardStatus { card, blocked }),
        (any::<usize>(), 1..24_u8).prop_map(|(card, months)| Op::Renew { card, months }),
        (any::<usize>(), proptest::option::of(any::<usize>()))
            .prop_map(|(card, tier)| Op::CardTier { card, tier }),
        (any::<usize>(), any::<usize>()).prop_map(|(card, member)| Op::MoveCard { card, member }),
        (
            0..100_000_u32,
            0..4_u8,
            proptest::option::of(any::<usize>())
        )
            .prop_map(|(serial, groups, referrer)| Op::NewMember {
                serial,
                groups,
                referrer
            }),
        (
            any::<usize>(),
            0..4_u8,
            proptest::option::of(any::<usize>())
        )
            .prop_map(|(member, groups, referrer)| Op::MemberGroups {
                member,
                groups,
                referrer
            }),
        (any::<usize>(), 0..4_u8, 0..50_u8).prop_map(|(merchant, groups, fee)| {
            Op::MerchantGroups {
                merchant,
                groups,
                fee,
            }
        }),
        (any::<usize>(), any::<usize>(), any::<bool>(), 0..4_u8).prop_map(
            |(terminal, merchant, active, groups)| Op::Terminal {
                terminal,
                merchant,
                active,
                groups
            }
        ),
        (
            any::<usize>(),
            1..60_u8,
            0..4_u8,
            proptest::option::of(0..3_u8)
        )
            .prop_map(|(rule, percent, groups, bins)| Op::Rule {
                rule,
                percent,
                groups,
                bins
            }),
        (
            0..100_000_u32,
            any::<usize>(),
            proptest::option::of(0..3_u8)
        )
            .prop_map(|(serial, merchant, bins)| Op::NewRule {
                serial,
                merchant,
                bins
            }),
        (any::<usize>(), 0..5_u8, 0..10_u8).prop_map(|(tier, rank, rate)| Op::Tier {
            tier,
            rank,
            rate
        }),
        Just(Op::Compact),
    ]
}

/// The BINs cards are issued under: two that the example's BIN-limited rule covers and one
/// it does not, so rules by BIN are exercised both ways.
const BINS: [&str; 3] = ["603799", "610433", "500000"];

fn luhn(body: &str) -> String {
    let digits: Vec<u32> = body.chars().map(|c| c.to_digit(10).unwrap()).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 0 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                *d
            }
        })
        .sum();
    format!("{body}{}", (10 - sum % 10) % 10)
}

fn pick<T: Clone>(items: &[T], index: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[index % items.len()].clone())
}

fn subset(codes: &[Code], mask: u8) -> Vec<Code> {
    codes
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, code)| code.clone())
        .collect()
}

/// The network: the example without its balances.
async fn network() -> (tempfile::TempDir, Pool) {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(dir.path().join("switch.db").to_str().unwrap())
        .await
        .unwrap();
    let mut file: Value = serde_json::from_str(EXAMPLE).unwrap();
    file.as_object_mut().unwrap().remove("balances");
    import::import_text(&pool, &file.to_string(), &kek(), &pan_key(), NOW)
        .await
        .unwrap();
    (dir, pool)
}

/// Saves one change as the API does and returns the snapshot after it.
async fn change(
    pool: &Pool,
    live: &Snapshot,
    names: Vec<String>,
    edit: impl FnOnce(&switch::domain::LoadedReference) -> Option<ReferenceData>,
) -> Snapshot {
    let mut names = names;
    names.sort();
    names.dedup();
    let mut tx = store::begin_write(pool).await.unwrap();
    let current = reference::load_named(&mut tx, &kek(), &names)
        .await
        .unwrap();
    let Some(data) = edit(&current) else {
        return live.clone();
    };
    let outcome = reference::save_over(&mut tx, &data, &current, &[0; 32], &kek(), NOW)
        .await
        .unwrap();
    if outcome.is_noop() {
        return live.clone();
    }
    names.extend(data.cards.iter().map(|r| r.code.as_str().to_owned()));
    names.extend(data.members.iter().map(|r| r.code.as_str().to_owned()));
    names.extend(data.merchants.iter().map(|r| r.code.as_str().to_owned()));
    names.extend(data.rules.iter().map(|r| r.code.as_str().to_owned()));
    names.extend(data.tiers.iter().map(|r| r.code.as_str().to_owned()));
    names.extend(
        data.terminals
            .iter()
            .map(|r| r.terminal_id.as_str().to_owned()),
    );
    names.extend(
        current
            .data
            .members
            .iter()
            .map(|r| r.code.as_str().to_owned()),
    );
    names.sort();
    names.dedup();
    let touched = reference::load_named(&mut tx, &kek(), &names)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(live.version() + 1, touched.version);
    live.apply(&touched).unwrap()
}

async fn run(ops: Vec<Op>) {
    let (_dir, pool) = network().await;
    let mut live = Snapshot::build(&reference::load(&pool, &kek()).await.unwrap()).unwrap();
    for op in ops {
        let all = reference::load(&pool, &kek()).await.unwrap();
        let cards: Vec<Code> = all.data.cards.iter().map(|c| c.code.clone()).collect();
        let members: Vec<Code> = all.data.members.iter().map(|m| m.code.clone()).collect();
        let merchants: Vec<Code> = all.data.merchants.iter().map(|m| m.code.clone()).collect();
        let terminals: Vec<String> = all
            .data
            .terminals
            .iter()
            .map(|t| t.terminal_id.as_str().to_owned())
            .collect();
        let rules: Vec<Code> = all.data.rules.iter().map(|r| r.code.clone()).collect();
        let tiers: Vec<Code> = all.data.tiers.iter().map(|t| t.code.clone()).collect();
        let member_groups: Vec<Code> = all
            .data
            .member_groups
            .iter()
            .map(|g| g.code.clone())
            .collect();
        let merchant_groups: Vec<Code> = all
            .data
            .merchant_groups
            .iter()
            .map(|g| g.code.clone())
            .collect();
        let terminal_groups: Vec<Code> = all
            .data
            .terminal_groups
            .iter()
            .map(|g| g.code.clone())
            .collect();
        let s = |code: &Code| code.as_str().to_owned();
        live = match op.clone() {
            Op::Compact => live.compacted().unwrap(),
            Op::IssueCard {
                member,
                serial,
                bin,
                blocked,
            } => {
                let member = pick(&members, member).unwrap();
                let code = format!("C-N{serial}");
                let pan = luhn(&format!("{}{serial:09}", BINS[usize::from(bin)]));
                let record = json!({
                    "code": code, "pan": pan, "member": member.as_str(), "expiry": "2029-01",
                    "status": if blocked { "blocked" } else { "active" },
                });
                change(&pool, &live, vec![code.clone(), s(&member)], |current| {
                    if current.ids.cards.keys().any(|c| c.as_str() == code)
                        || all.data.cards.iter().any(|c| {
                            c.bin == pan.as_bytes()[..6]
                                && c.last4 == pan.as_bytes()[pan.len() - 4..]
                        })
                    {
                        return None;
                    }
                    import::parse_over(json!({ "cards": [record] }), &pan_key(), &current.ids).ok()
                })
                .await
            }
            Op::CardStatus { card, blocked } => {
                let code = pick(&cards, card).unwrap();
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current.data.cards.iter().find(|c| c.code == code)?.clone();
                    record.status = if blocked {
                        CardStatus::Blocked
                    } else {
                        CardStatus::Active
                    };
                    Some(ReferenceData {
                        cards: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::Renew { card, months } => {
                let code = pick(&cards, card).unwrap();
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current.data.cards.iter().find(|c| c.code == code)?.clone();
                    let month = u32::from(record.expiry.month()) + u32::from(months) - 1;
                    let year = record.expiry.year() + u16::try_from(month / 12).unwrap();
                    record.expiry =
                        CardExpiry::new(year, u8::try_from(month % 12 + 1).unwrap()).unwrap();
                    Some(ReferenceData {
                        cards: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::CardTier { card, tier } => {
                let code = pick(&cards, card).unwrap();
                let tier = tier.and_then(|t| pick(&tiers, t));
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current.data.cards.iter().find(|c| c.code == code)?.clone();
                    record.tier = tier;
                    Some(ReferenceData {
                        cards: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::MoveCard { card, member } => {
                let code = pick(&cards, card).unwrap();
                let member = pick(&members, member).unwrap();
                change(&pool, &live, vec![s(&code), s(&member)], |current| {
                    let mut record = current.data.cards.iter().find(|c| c.code == code)?.clone();
                    record.member = member;
                    Some(ReferenceData {
                        cards: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::NewMember {
                serial,
                groups,
                referrer,
            } => {
                let code = format!("MB-N{serial}");
                let referrer = referrer.and_then(|r| pick(&members, r));
                let mut record = json!({ "code": code, "groups": subset(&member_groups, groups).iter().map(|g| g.as_str()).collect::<Vec<_>>() });
                if let Some(referrer) = &referrer {
                    record["referred_by"] = Value::from(referrer.as_str());
                }
                let mut names = vec![code.clone()];
                names.extend(referrer.iter().map(s));
                change(&pool, &live, names, |current| {
                    if current.ids.members.keys().any(|c| c.as_str() == code) {
                        return None;
                    }
                    import::parse_over(json!({ "members": [record] }), &pan_key(), &current.ids)
                        .ok()
                })
                .await
            }
            Op::MemberGroups {
                member,
                groups,
                referrer,
            } => {
                let code = pick(&members, member).unwrap();
                let referrer = referrer
                    .and_then(|r| pick(&members, r))
                    .filter(|r| *r != code);
                let mut names = vec![s(&code)];
                names.extend(referrer.iter().map(s));
                change(&pool, &live, names, |current| {
                    let mut record = current
                        .data
                        .members
                        .iter()
                        .find(|m| m.code == code)?
                        .clone();
                    record.groups = subset(&member_groups, groups);
                    record.referred_by = referrer;
                    Some(ReferenceData {
                        members: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::MerchantGroups {
                merchant,
                groups,
                fee,
            } => {
                let code = pick(&merchants, merchant).unwrap();
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current
                        .data
                        .merchants
                        .iter()
                        .find(|m| m.code == code)?
                        .clone();
                    record.groups = subset(&merchant_groups, groups);
                    let old = &record.profile.fee;
                    record.profile.fee = switch::domain::FeeSchedule::new(
                        Percent::parse(&format!("0.{fee}")).unwrap(),
                        old.fee_rials_min(),
                        old.fee_rials_max(),
                    )
                    .unwrap();
                    Some(ReferenceData {
                        merchants: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::Terminal {
                terminal,
                merchant,
                active,
                groups,
            } => {
                let id = pick(&terminals, terminal).unwrap();
                let merchant = pick(&merchants, merchant).unwrap();
                change(&pool, &live, vec![id.clone(), s(&merchant)], |current| {
                    let mut record = current
                        .data
                        .terminals
                        .iter()
                        .find(|t| t.terminal_id.as_str() == id)?
                        .clone();
                    record.merchant = merchant;
                    record.status = if active {
                        TerminalStatus::Active
                    } else {
                        TerminalStatus::Inactive
                    };
                    record.groups = subset(&terminal_groups, groups);
                    Some(ReferenceData {
                        terminals: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::Rule {
                rule,
                percent,
                groups,
                bins,
            } => {
                let code = pick(&rules, rule).unwrap();
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current.data.rules.iter().find(|r| r.code == code)?.clone();
                    record.terms.kind = switch::domain::RuleKind::Percent(
                        Percent::parse(&percent.to_string()).unwrap(),
                    );
                    record.eligibility.merchant_groups = subset(&merchant_groups, groups);
                    record.eligibility.bins = bins
                        .map(|b| {
                            vec![switch::domain::BinRange::from_bins(
                                BINS[usize::from(b)],
                                BINS[usize::from(b)],
                            )
                            .unwrap()]
                        })
                        .unwrap_or_default();
                    Some(ReferenceData {
                        rules: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
            Op::NewRule {
                serial,
                merchant,
                bins,
            } => {
                let code = format!("R-N{serial}");
                let merchant = pick(&merchants, merchant).unwrap();
                let mut record = json!({ "code": code, "name": "new", "percent": "5", "merchants": [merchant.as_str()] });
                if let Some(b) = bins {
                    record["bins"] =
                        json!([{ "from": BINS[usize::from(b)], "to": BINS[usize::from(b)] }]);
                    record["merchants"] = json!([]);
                }
                change(&pool, &live, vec![code.clone(), s(&merchant)], |current| {
                    if current.ids.rules.keys().any(|c| c.as_str() == code) {
                        return None;
                    }
                    import::parse_over(json!({ "rules": [record] }), &pan_key(), &current.ids).ok()
                })
                .await
            }
            Op::Tier { tier, rank, rate } => {
                let code = pick(&tiers, tier).unwrap();
                change(&pool, &live, vec![s(&code)], |current| {
                    let mut record = current.data.tiers.iter().find(|t| t.code == code)?.clone();
                    record.rank = rank.into();
                    record.cashback_rate = Percent::parse(&rate.to_string()).unwrap();
                    record.purchases_min = (rank > 2).then_some(u32::from(rank));
                    Some(ReferenceData {
                        tiers: vec![record],
                        ..ReferenceData::default()
                    })
                })
                .await
            }
        };
        let rebuilt = Snapshot::build(&reference::load(&pool, &kek()).await.unwrap()).unwrap();
        assert_eq!(live.contents(), rebuilt.contents(), "after {op:?}");
        // Start-up's build, from the row ids read beside the records, is the same snapshot.
        let fresh = reference::load_records(&pool, &kek()).await.unwrap();
        let read = Snapshot::build_read(fresh.reference(), fresh.rows()).unwrap();
        assert_eq!(
            read.contents(),
            rebuilt.contents(),
            "read rows after {op:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn deltas_give_the_rebuilt_snapshot(ops in proptest::collection::vec(op(), 1..16)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(run(ops));
    }
}

/// A change that touches nothing the snapshot holds leaves every lookup as it was, and a
/// blocked card is seen blocked by the next lookup (what the engine reads for the next
/// purchase).
#[tokio::test]
async fn a_block_is_seen_by_the_next_lookup() {
    let (_dir, pool) = network().await;
    let live = Snapshot::build(&reference::load(&pool, &kek()).await.unwrap()).unwrap();
    let next = change(&pool, &live, vec!["C-0001".to_owned()], |current| {
        let mut record = current
            .data
            .cards
            .iter()
            .find(|c| c.code.as_str() == "C-0001")?
            .clone();
        record.status = CardStatus::Blocked;
        Some(ReferenceData {
            cards: vec![record],
            ..ReferenceData::default()
        })
    })
    .await;
    let token = switch::domain::PanToken::compute(
        &pan_key(),
        &protocol::Pan::parse(b"6037991234567893").unwrap(),
    );
    assert_eq!(
        live.card_by_token(&token).unwrap().status,
        CardStatus::Active
    );
    assert_eq!(
        next.card_by_token(&token).unwrap().status,
        CardStatus::Blocked
    );
    assert_eq!(next.version(), live.version() + 1);
    assert_eq!(next.overlay_len(), 2, "the card and its member");
    let compacted = next.compacted().unwrap();
    assert_eq!(compacted.overlay_len(), 0);
    assert_eq!(compacted.contents(), next.contents());
}
