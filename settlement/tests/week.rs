//! Goal: across a week with a Friday and a configured holiday, every transaction lands in the
//! right cycle, due dates skip the weekend and the holiday, late reversals and manual entries
//! become adjustments in the next cycle, a negative payout is carried forward, and every cycle
//! reconciles.
//!
//! Method: the real admission, engine and ledger on a temporary SQLite file, an injected
//! clock moved through Saturday 2026-11-21 to Sunday 2026-11-29 (Wednesday the 25th is the
//! holiday), and `run` called the way cron would, at chosen instants.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use protocol::ProcessingCode::{BankPurchase, ClubPurchase};
use protocol::ResponseCode;
use settlement::{CycleRef, SettleError};

const CALENDAR: &str = "# test calendar\n2026-11-25  Test holiday\n";

#[tokio::test]
async fn a_week_of_cycles() {
    let mut net = Net::new(at("2026-11-21", 8, 0, 0)).await;
    let out = net.dir.path().join("out");
    let settings = settings(out.clone(), CALENDAR);

    // Saturday: A and B before the cutoff, C exactly at it (the next cycle's).
    let a = net
        .sale(0, ClubPurchase, 350_000, RICH, at("2026-11-21", 10, 0, 0))
        .await;
    let b = net
        .sale(1, ClubPurchase, 100_000, RICH, at("2026-11-21", 23, 29, 59))
        .await;
    let c = net
        .sale(0, ClubPurchase, 200_000, RICH, at("2026-11-21", 23, 30, 0))
        .await;

    // Sunday morning: the first run closes only Saturday, taking all history before its cutoff.
    let now = at("2026-11-22", 9, 0, 0);
    let closed = settlement::run(&net.pool, &settings, now).await.unwrap();
    assert_eq!(dates(&closed), ["2026-11-21"]);
    net.reload(now).await;

    // Sunday: E never confirmed (expires); D requested before the cutoff, confirmed after it.
    let e = net
        .purchase(0, ClubPurchase, 50_000, RICH, at("2026-11-22", 10, 0, 0))
        .await
        .unwrap();
    net.sweep(at("2026-11-22", 10, 5, 0)).await;
    let d = net
        .purchase(1, ClubPurchase, 70_000, RICH, at("2026-11-22", 23, 29, 0))
        .await
        .unwrap();
    assert_eq!(
        net.confirm(&d, at("2026-11-22", 23, 31, 0)).await,
        ResponseCode::Approved
    );

    // Monday: A (settled) is reversed: 12, and an adjustment later. G is reversed before it
    // is settled, so it is in no cycle.
    let late = at("2026-11-23", 10, 0, 0);
    assert_eq!(
        net.reverse(&a, late).await,
        ResponseCode::InvalidTransaction
    );
    let g = net
        .sale(0, ClubPurchase, 90_000, RICH, at("2026-11-23", 11, 0, 0))
        .await;
    assert_eq!(
        net.reverse(&g, at("2026-11-23", 12, 0, 0)).await,
        ResponseCode::Approved
    );

    // Tuesday 01:00: Sunday's and Monday's cycles.
    let now = at("2026-11-24", 1, 0, 0);
    let closed = settlement::run(&net.pool, &settings, now).await.unwrap();
    assert_eq!(dates(&closed), ["2026-11-22", "2026-11-23"]);
    net.reload(now).await;

    // Tuesday: a manual credit and a bank-card sale at M-B whose fee (5 000 minimum) exceeds
    // its club takings: a receivable of 4 000.
    settlement::adjustment::add_manual(
        &net.pool,
        "M-B",
        1_000,
        "goodwill",
        at("2026-11-24", 9, 0, 0),
    )
    .await
    .unwrap();
    let e2 = net
        .sale(1, BankPurchase, 10_000, RICH, at("2026-11-24", 12, 0, 0))
        .await;
    // Wednesday is a holiday: its sale waits for Thursday's cycle, and it has no cycle itself.
    let f = net
        .sale(0, ClubPurchase, 120_000, RICH, at("2026-11-25", 12, 0, 0))
        .await;
    let holiday = settlement::close(
        &net.pool,
        &settings,
        day("2026-11-25"),
        at("2026-11-26", 9, 0, 0),
    )
    .await;
    assert!(
        matches!(holiday, Err(SettleError::NotWorkingDay { .. })),
        "{holiday:?}"
    );
    // Friday: weekend; its sale goes to Saturday's cycle.
    let h = net
        .sale(1, ClubPurchase, 500_000, RICH, at("2026-11-27", 12, 0, 0))
        .await;

    let now = at("2026-11-29", 0, 0, 0);
    let closed = settlement::run(&net.pool, &settings, now).await.unwrap();
    assert_eq!(dates(&closed), ["2026-11-24", "2026-11-26", "2026-11-28"]);
    assert!(settlement::run(&net.pool, &settings, now)
        .await
        .unwrap()
        .is_empty());

    // Due dates: the next working day, skipping the holiday and the Friday.
    let due: Vec<(String, String)> = sqlx::query_as(
        "SELECT business_date, due_date FROM settlement_cycles ORDER BY business_date",
    )
    .fetch_all(&net.pool)
    .await
    .unwrap();
    let expected = [
        ("2026-11-21", "2026-11-22"),
        ("2026-11-22", "2026-11-23"),
        ("2026-11-23", "2026-11-24"),
        ("2026-11-24", "2026-11-26"),
        ("2026-11-26", "2026-11-28"),
        ("2026-11-28", "2026-11-29"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(b, d)| (b.to_string(), d.to_string()))
        .collect();
    assert_eq!(due, expected);

    // Where each transaction landed.
    for (txn, cycle) in [
        (&a, Some("2026-11-21")),
        (&b, Some("2026-11-21")),
        (&c, Some("2026-11-22")),
        (&e, None),
        (&d, Some("2026-11-23")),
        (&g, None),
        (&e2, Some("2026-11-24")),
        (&f, Some("2026-11-26")),
        (&h, Some("2026-11-28")),
    ] {
        assert_eq!(
            net.cycle_of(txn).await.as_deref(),
            cycle,
            "rrn {}",
            txn.rrn.as_str()
        );
    }

    // The late reversal of A: in Monday's cycle, M-A gives back club − fee.
    let monday = settlement::load_cycle(&net.pool, &CycleRef::Date(day("2026-11-23")))
        .await
        .unwrap();
    let a_id = net.txn_id(&a).await;
    let late_adjustments: Vec<_> = monday
        .adjustments
        .iter()
        .filter(|adj| adj.txn_id == Some(a_id))
        .collect();
    assert_eq!(late_adjustments.len(), 1);
    // 350 000 − 10 % discount = 315 000 club; fee 1.5 % of G = 5 250.
    assert_eq!(late_adjustments[0].amount_rials, -(315_000 - 5_250));
    assert!(monday
        .exceptions
        .iter()
        .any(|row| row.kind == "late_reversal"));

    // The receivable: carried out of Tuesday, into Saturday.
    let tuesday = settlement::load_cycle(&net.pool, &CycleRef::Date(day("2026-11-24")))
        .await
        .unwrap();
    let mb = tuesday
        .lines
        .iter()
        .find(|line| line.merchant_code == "M-B")
        .unwrap();
    assert_eq!((mb.amounts.fee, mb.amounts.adjustments), (5_000, 1_000));
    assert_eq!((mb.amounts.payout, mb.amounts.carried_out), (0, -4_000));
    assert!(tuesday
        .exceptions
        .iter()
        .any(|row| row.kind == "receivable" && row.amount_rials == 4_000));
    let saturday = settlement::load_cycle(&net.pool, &CycleRef::Date(day("2026-11-28")))
        .await
        .unwrap();
    let mb = saturday
        .lines
        .iter()
        .find(|line| line.merchant_code == "M-B")
        .unwrap();
    // 500 000 − 10 %? M-B is not in the discount rule's group: club 500 000, fee 10 000.
    assert_eq!(mb.amounts.carried_in, -4_000);
    assert_eq!(mb.amounts.payout, mb.amounts.club - mb.amounts.fee - 4_000);
    // Thursday has M-A only: M-B's receivable stays open through it.
    let thursday = settlement::load_cycle(&net.pool, &CycleRef::Date(day("2026-11-26")))
        .await
        .unwrap();
    assert!(thursday
        .lines
        .iter()
        .any(|line| line.merchant_code == "M-B" && line.amounts.carried_in == -4_000));

    // Every cycle reconciles, and has its three files.
    for (date, _) in &expected {
        let cycle = CycleRef::Date(day(date));
        let reconciliation = settlement::reconcile(&net.pool, &cycle).await.unwrap();
        assert!(reconciliation.is_balanced(), "{reconciliation}");
        for path in settlement::close::file_paths(&out, day(date)) {
            assert!(path.exists(), "{}", path.display());
        }
    }
}

fn dates(closed: &[settlement::Closed]) -> Vec<String> {
    closed
        .iter()
        .map(|c| c.cycle.business_date.to_string())
        .collect()
}
