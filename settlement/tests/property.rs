//! Goal: for any sequence of requests, confirms (on time or as late advices), reversals
//! (before and after settlement), timeouts and settlement runs, no transaction is settled
//! twice or missed, each lands in the first cycle whose cutoff follows its capture, and over
//! all cycles `payouts + fees − adjustments − open receivables = club captured`, with club
//! captured taken from the switch's own capture records. Online top-ups come in between, some
//! paid twice: each order credits its card once, and every cycle's reconciliation (whose club
//! ledger checks count top-ups as money in) still balances to the rial.
//!
//! Method: proptest generates the operations; each case drives the real admission, engine and
//! ledger on a fresh SQLite file with an injected clock, runs `run` as cron would (reloading
//! the engine after, as a restarted switch does), ends with a run after everything, and checks
//! the invariants in SQL and through `reconcile` of every cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use proptest::prelude::*;
use protocol::ProcessingCode;
use settlement::CycleRef;
use switch::domain::UnixMillis;

#[derive(Debug, Clone)]
enum Op {
    Purchase {
        terminal: usize,
        code: usize,
        amount: u64,
        poor: bool,
    },
    Confirm(usize),
    Reverse(usize),
    /// An online top-up of one of the two cards, paid by one of two payments (the second
    /// payment of an order, or a payment posted again, credits nothing).
    TopUp {
        poor: bool,
        amount: i64,
        payment: u8,
    },
    Advance(i64),
    Run,
}

const CODES: [ProcessingCode; 4] = [
    ProcessingCode::ClubPurchase,
    ProcessingCode::BankPurchase,
    ProcessingCode::MixedPurchase,
    ProcessingCode::StoreCreditPurchase,
];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2_usize, 0..4_usize, 1_000..400_000_u64, any::<bool>())
            .prop_map(|(terminal, code, amount, poor)| Op::Purchase { terminal, code, amount, poor }),
        4 => any::<usize>().prop_map(Op::Confirm),
        2 => any::<usize>().prop_map(Op::Reverse),
        2 => (any::<bool>(), 1..5_i64, 0..2_u8)
            .prop_map(|(poor, amount, payment)| Op::TopUp { poor, amount: amount * 50_000, payment }),
        3 => (1..=900_i64).prop_map(Op::Advance),
        1 => Just(Op::Run),
    ]
}

async fn play(ops: Vec<Op>) {
    let mut now = at("2026-11-01", 8, 0, 0);
    let mut net = Net::new(now).await;
    let settings = settings(net.dir.path().join("out"), "2026-11-04 Holiday\n");
    let mut approved: Vec<Approved> = Vec::new();
    let mut topped_up = 0_i64;
    for op in ops {
        match op {
            Op::Purchase {
                terminal,
                code,
                amount,
                poor,
            } => {
                let card = if poor { POOR } else { RICH };
                let code = CODES[code];
                if let Some(sale) = net.purchase(terminal, code, amount, card, now).await {
                    approved.push(sale);
                }
            }
            Op::Confirm(pick) if !approved.is_empty() => {
                let sale = approved[pick % approved.len()].clone();
                net.confirm(&sale, now).await;
            }
            Op::Reverse(pick) if !approved.is_empty() => {
                let sale = approved[pick % approved.len()].clone();
                net.reverse(&sale, now).await;
            }
            Op::Confirm(_) | Op::Reverse(_) => {}
            Op::TopUp {
                poor,
                amount,
                payment,
            } => {
                let card = if poor { POOR } else { RICH };
                let reference = format!("PG-{card}-{amount}-{payment}");
                if net.top_up(card, amount, &reference, now).await {
                    topped_up += amount;
                }
            }
            Op::Advance(minutes) => {
                now = UnixMillis::new(now.get() + minutes * 60_000);
                net.sweep(now).await;
            }
            Op::Run => {
                settlement::run(&net.pool, &settings, now).await.unwrap();
                net.reload(now).await;
            }
        }
    }
    // Two days later everything captured is due.
    now = UnixMillis::new(now.get() + 2 * 86_400_000 + 60_000);
    net.sweep(now).await;
    settlement::run(&net.pool, &settings, now).await.unwrap();
    check_invariants(&net).await;
    // Each order was credited once, whatever was posted for it.
    let credited = net
        .scalar(
            "SELECT coalesce(CAST(sum(delta_rials) AS BIGINT), 0) FROM balance_movements \
             WHERE kind = 'top_up'",
        )
        .await;
    assert_eq!(credited, topped_up);
    let orders = net
        .scalar("SELECT count(*) FROM top_up_orders WHERE state = 'paid'")
        .await;
    let distinct = net
        .scalar("SELECT count(DISTINCT order_id) FROM top_up_callbacks WHERE outcome = 'accepted'")
        .await;
    assert_eq!(orders, distinct);
}

async fn check_invariants(net: &Net) {
    let zero = |sql: &'static str| async move { assert_eq!(net.scalar(sql).await, 0, "{sql}") };
    // Nothing missed, nothing that should not be settled is.
    zero("SELECT count(*) FROM transactions WHERE state = 'confirmed' AND cycle_id IS NULL").await;
    zero("SELECT count(*) FROM transactions WHERE state <> 'confirmed' AND cycle_id IS NOT NULL")
        .await;
    // Each in the first cycle whose cutoff follows its capture.
    zero(
        "SELECT count(*) FROM transactions t JOIN settlement_cycles c ON c.id = t.cycle_id \
         WHERE c.cutoff_at_ms <= t.confirmed_at_ms OR EXISTS (SELECT 1 FROM settlement_cycles e \
         WHERE e.cutoff_at_ms > t.confirmed_at_ms AND e.cutoff_at_ms < c.cutoff_at_ms)",
    )
    .await;
    // Counted once.
    let counted = net
        .scalar("SELECT coalesce(CAST(sum(txn_count) AS BIGINT), 0) FROM settlement_cycles")
        .await;
    let assigned = net
        .scalar("SELECT count(*) FROM transactions WHERE cycle_id IS NOT NULL")
        .await;
    assert_eq!(counted, assigned);
    // Every late reversal adjusted once, for club captured − fee.
    zero(
        "SELECT count(*) FROM exceptions e WHERE e.kind = 'late_reversal' AND NOT EXISTS \
         (SELECT 1 FROM settlement_adjustments a WHERE a.txn_id = e.txn_id \
          AND a.cycle_id IS NOT NULL AND a.amount_rials = \
          (SELECT t.fee_rials - c.club_rials FROM transactions t JOIN captures c \
           ON c.txn_id = t.id WHERE t.id = e.txn_id))",
    )
    .await;
    // The money: payouts + fees − adjustments − open receivables = club captured, the last
    // taken from the captures themselves.
    let captured = net
        .scalar(
            "SELECT coalesce(CAST(sum(c.club_rials) AS BIGINT), 0) FROM captures c \
             JOIN transactions t ON t.id = c.txn_id WHERE t.state = 'confirmed'",
        )
        .await;
    let club = net
        .scalar("SELECT coalesce(CAST(sum(club_rials) AS BIGINT), 0) FROM settlement_cycles")
        .await;
    assert_eq!(club, captured);
    let paid = net
        .scalar(
            "SELECT coalesce(CAST(sum(payout_rials + fee_rials - adjustments_rials) AS BIGINT), 0) \
             FROM settlement_cycles",
        )
        .await;
    let open: i64 = settlement::close::open_receivables(&net.pool)
        .await
        .unwrap()
        .iter()
        .map(|(_, amount)| amount)
        .sum();
    assert_eq!(paid - open, captured);
    // And every cycle proves itself.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM settlement_cycles ORDER BY id")
        .fetch_all(&net.pool)
        .await
        .unwrap();
    for id in ids {
        let reconciliation = settlement::reconcile(&net.pool, &CycleRef::Id(id))
            .await
            .unwrap();
        assert!(reconciliation.is_balanced(), "{reconciliation}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn settlement_explains_every_rial(ops in prop::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(play(ops));
    }
}
