//! Goal: the docs/design.md section 9 target for the engine: one decision with 1M cards, 10k
//! merchants and 1k rules takes at most 2 µs (median); and the memory target's share that
//! the reference data and balances take (1 GiB resident with 1M cards and 10k connections).
//!
//! Method: a seeded synthetic network (`benches::network`) is built in memory, with the row ids
//! the store would assign, and becomes a `Snapshot` and an engine `State` with a club balance
//! per card and 100k store-credit accounts; resident memory is printed once. Then 200k
//! purchases (`benches::traffic`: four processing codes, random cards and terminals) are
//! built by their terminals and admitted (parse, MAC, envelope, PAN token, fingerprint)
//! outside the timed loop; that part is `parse_mac_open_0100`'s. The terminal and keys of each
//! request's KSI are found there too, as admission and the committer find them before the
//! engine runs. The timed loop is what the committer does per batch: groups of
//! `prefetch::GROUP` requests, each read ahead (`prefetch::read_ahead`, timed) and then decided
//! one by one with `Engine::decide`, which returns the answer's fields (the response is built
//! and MACed from them off the engine's task; `parse_mac_open_0100`'s `build_0110` times
//! that), on fresh requests: each has its own (KSI, STAN, field 7),
//! so none is answered from the idempotency window. When the pool is used up, the holds and transactions it created are
//! dropped (untimed) and it is replayed against a state equal to the first.
//!
//! The bench starts itself again with glibc's huge pages, as `lsw-switch serve` does
//! (`switch::huge_pages`; the memory line says how much is in huge pages);
//! `LSW_HUGE_PAGES=off` measures it on 4 KiB pages.
//!
//! `LSW_BENCH_LOYALTY=1` turns the loyalty programme's hot-path parts on (docs/loyalty.md):
//! the tiers become earnable by activity (so each purchase looks up its member's earned tier),
//! a third of the members have earned gold, and a tenth hold a 10 % coupon (so each purchase
//! looks for its member's best coupon, and those members' purchases hold one). Without it the
//! network is the one the target was set for. Run both back to back to compare.
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::network::{self, Network, Shape, PAN_KEY, START_MS};
use benches::{memory, traffic::Traffic};
use criterion::{criterion_group, Criterion};
use protocol::terminal::Terminal as TerminalClient;
use switch::admission::{self, Admission, Admitted};
use switch::domain::{
    CouponId, CouponKind, CouponTerms, MemberId, PanTokenKey, Percent, Rials, RuleKind, UnixMillis,
};
use switch::engine::coupon::{Coupon, CouponState};
use switch::engine::{prefetch, Effect, Engine, EngineConfig, State};
use switch::snapshot::{Keyed, Snapshot};

/// The network of the target.
const SHAPE: Shape = Shape {
    merchants: 10_000,
    cards: 1_000_000,
    rules: 1_000,
    store_credit_accounts: 100_000,
    club_rials_max: 200_000_000,
    seed: 1,
};
/// Distinct admitted requests replayed by the timed loop: enough that the cards they touch are
/// spread over the whole card table (no cache-warm subset), small enough to build in seconds.
const POOL: usize = 200_000;
const TRAFFIC_SEED: u64 = 2;

/// The engine settings of `docs/config.md`'s defaults.
const ENGINE: EngineConfig = EngineConfig {
    hold_timeout_ms: 120_000,
    answered_window_ms: 24 * 3_600_000,
};

/// A request ready for the engine, as the connection hands it to the committer.
struct Ready<'s> {
    keyed: Keyed<'s>,
    admitted: Admitted,
}

fn reference_and_state(pan_key: &PanTokenKey) -> (Network, Snapshot, State) {
    let started = Instant::now();
    let mut network = network::build(&SHAPE, pan_key);
    let mode = std::env::var("LSW_BENCH_LOYALTY").unwrap_or_default();
    let loyalty = !mode.is_empty() && mode != "0";
    if loyalty {
        for (tier, (spend, purchases)) in network.reference.data.tiers.iter_mut().zip([
            (Some(1_000_000), None),
            (Some(5_000_000), Some(20)),
            (None, Some(50)),
        ]) {
            tier.spend_rials_min = spend.and_then(Rials::new);
            tier.purchases_min = purchases;
        }
    }
    let snapshot = Snapshot::build(&network.reference).unwrap();
    let snapshot = with_overlay(snapshot, &network);
    let mut state = network::state(&network.reference);
    if loyalty {
        with_loyalty(&mut state, &network, &snapshot, &mode);
    }
    println!(
        "engine_decide_1m_cards: loyalty features {}",
        if loyalty { mode.as_str() } else { "off" }
    );
    assert_eq!(snapshot.card_count(), SHAPE.cards);
    assert_eq!(snapshot.terminal_count(), SHAPE.merchants);
    assert_eq!(state.club.len(), SHAPE.cards);
    println!(
        "engine_decide_1m_cards: built {} cards, {} merchants, {} rules in {:.1} s",
        SHAPE.cards,
        SHAPE.merchants,
        SHAPE.rules,
        started.elapsed().as_secs_f64()
    );
    (network, snapshot, state)
}

/// `LSW_BENCH_OVERLAY=N`: the snapshot after N cards (every 1000th) changed through the operator
/// API, applied as a delta as the switch applies them (`Snapshot::apply`): those cards and
/// their members sit in the overlay that every card lookup reads first, as in a switch whose
/// operators changed cards since its last compaction. 0 (the default): none.
fn with_overlay(snapshot: Snapshot, network: &Network) -> Snapshot {
    let count: usize = std::env::var("LSW_BENCH_OVERLAY")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if count == 0 {
        return snapshot;
    }
    let reference = &network.reference;
    let mut touched = switch::domain::LoadedReference {
        version: reference.version + 1,
        ids: reference.ids.clone(),
        ..Default::default()
    };
    let members: std::collections::HashMap<_, _> = reference
        .data
        .members
        .iter()
        .map(|member| (&member.code, member))
        .collect();
    let cards = reference.data.cards.iter().step_by(1_000).take(count);
    for card in cards {
        let mut card = card.clone();
        card.expiry = switch::domain::CardExpiry::new(2099, 12).unwrap();
        // Each member of this network holds one card, so a member and that card are all
        // that the change touches.
        touched
            .data
            .members
            .extend(members.get(&card.member).map(|m| (*m).clone()));
        touched.data.cards.push(card);
    }
    let next = snapshot.apply(&touched).unwrap();
    println!(
        "engine_decide_1m_cards: {} overlay rows ({count} cards changed)",
        next.overlay_len()
    );
    next
}

/// `1`: earned tiers for a third of the members (the best tier: their purchases price as
/// such) and an available coupon for a tenth. `same`: as `1`, but the earned tier is the one
/// the member's card was given, so pricing does the same work as without the features and
/// only their lookups and coupon handling are added. `tiers`, `coupons`: one part of `1`.
fn with_loyalty(state: &mut State, network: &Network, snapshot: &Snapshot, mode: &str) {
    let best = network.reference.ids.tiers.values().copied().max().unwrap();
    let given: std::collections::HashMap<MemberId, Option<switch::domain::TierId>> = snapshot
        .cards()
        .map(|card| (card.member, card.tier))
        .collect();
    let mut members: Vec<MemberId> = network.reference.ids.members.values().copied().collect();
    members.sort_unstable();
    for (index, member) in members.iter().enumerate() {
        if index % 3 == 0 && mode != "coupons" {
            let earned = if mode == "same" {
                given.get(member).copied().flatten()
            } else {
                Some(best)
            };
            state.earned_tiers.insert(*member, earned);
        }
        if index % 10 == 0 && mode != "tiers" {
            let coupon = Coupon {
                id: CouponId::new(i64::try_from(index).unwrap() + 1),
                member: *member,
                kind: CouponKind::Campaign,
                terms: CouponTerms {
                    kind: RuleKind::Percent(Percent::parse("10").unwrap()),
                    basket_rials_min: Rials::ZERO,
                    discount_rials_max: Rials::new(50_000),
                    merchant: None,
                    expires_at: UnixMillis::new(i64::MAX),
                },
                state: CouponState::Available,
            };
            state.add_coupon(coupon, format!("bench:{index}"));
        }
    }
    assert!(snapshot.has_tier_ladder());
}

fn admitted_pool<'s>(
    mut terminals: Vec<TerminalClient>,
    mut traffic: Traffic,
    snapshot: &'s Snapshot,
    pan_key: &PanTokenKey,
) -> Vec<Ready<'s>> {
    let started = Instant::now();
    let at_seconds = START_MS / 1000;
    let mut pool = Vec::with_capacity(POOL);
    for _ in 0..POOL {
        let sent = traffic.purchase(&mut terminals, at_seconds);
        let Admission::Admitted(admitted) =
            admission::admit(sent.outgoing.bytes, snapshot, pan_key)
        else {
            panic!("a generated purchase is not admitted");
        };
        let keyed = snapshot
            .keys_by_ksi(admitted.request.ksi.as_bytes())
            .unwrap();
        pool.push(Ready { keyed, admitted });
    }
    println!(
        "engine_decide_1m_cards: admitted {POOL} requests in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    pool
}

/// Forgets what replaying the pool created: transactions, answers, holds, rule use. No
/// decision captures or adds a lot (there are no confirms), so ledgers are untouched and the
/// state equals the one the pool first ran against.
fn reset(state: &mut State) {
    state.txns.clear();
    state.txn_keys.clear();
    state.answered.clear();
    state.answered_volatile.clear();
    state.pending.clear();
    state.tombstones.clear();
    state.rule_spent.clear();
    state.rule_uses.clear();
    for account in state.club.values_mut() {
        account.held = Rials::ZERO;
    }
    for account in state.store.values_mut() {
        account.held = Rials::ZERO;
    }
    for coupon in state.coupons.values_mut() {
        coupon.state = CouponState::Available;
    }
}

/// Outside the timed loop: one pass over the pool, every request a first decision, and the
/// response codes printed, so the measured mix is known (approvals, and `62` for blocked cards).
fn check(engine: &mut Engine, snapshot: &Snapshot, pool: &[Ready<'_>], now: UnixMillis) {
    let mut effects = Vec::new();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    for item in pool {
        effects.clear();
        let decision = engine.decide(snapshot, item.keyed, &item.admitted, now, &mut effects);
        assert!(
            !decision.resent,
            "a pool request was answered from the window"
        );
        *codes.entry(format!("{:?}", decision.code())).or_default() += 1;
    }
    let elapsed = started.elapsed();
    let approved = codes.get("Approved").copied().unwrap_or(0);
    assert!(
        approved * 10 >= pool.len() * 8,
        "under 80 % approved: {codes:?}"
    );
    println!(
        "engine_decide_1m_cards: first pass {:.2} µs mean per decision; codes {codes:?}",
        elapsed.as_secs_f64() * 1e6 / f64::from(u32::try_from(pool.len()).unwrap())
    );
    reset(&mut engine.state);
}

fn benches(c: &mut Criterion) {
    let pan_key = PanTokenKey::from_bytes(PAN_KEY);
    let (network, snapshot, state) = reference_and_state(&pan_key);
    let terminals = network::terminal_clients(&network.reference.data);
    let traffic = Traffic::new(&network, TRAFFIC_SEED);
    // The switch keeps only the snapshot and the state; the records they came from go.
    drop(network);
    println!(
        "engine_decide_1m_cards: {}",
        memory::report("building the snapshot and state of 1M cards")
    );
    let pool = admitted_pool(terminals, traffic, &snapshot, &pan_key);

    let now = UnixMillis::new(START_MS);
    let mut engine = Engine::new(state, ENGINE);
    check(&mut engine, &snapshot, &pool, now);

    let mut effects: Vec<Effect> = Vec::with_capacity(8);
    let mut cursor = 0;
    c.bench_function("engine_decide_1m_cards", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = usize::try_from(iters).unwrap();
            while left > 0 {
                if cursor == pool.len() {
                    reset(&mut engine.state);
                    cursor = 0;
                }
                let chunk = left.min(pool.len() - cursor);
                let started = Instant::now();
                for group in pool[cursor..cursor + chunk].chunks(prefetch::GROUP) {
                    prefetch::read_ahead(&engine, group.iter(), |item: &Ready<'_>| {
                        Some((&snapshot, item.keyed, &item.admitted))
                    });
                    for item in group {
                        effects.clear();
                        let decision =
                            engine.decide(&snapshot, item.keyed, &item.admitted, now, &mut effects);
                        black_box(decision);
                    }
                }
                timed += started.elapsed();
                cursor += chunk;
                left -= chunk;
            }
            timed
        })
    });
}

criterion_group!(engine_decide_1m_cards, benches);

/// `criterion_main!`, after starting again with huge pages as `lsw-switch serve` does
/// (`switch::huge_pages`): the bench measures the engine as the switch runs it.
/// `LSW_HUGE_PAGES=off` measures it without.
fn main() {
    let outcome = switch::huge_pages::restart_with_huge_pages();
    println!(
        "engine_decide_1m_cards: huge pages asked for: {} ({outcome:?})",
        switch::huge_pages::asked()
    );
    engine_decide_1m_cards();
    Criterion::default().configure_from_args().final_summary();
}
