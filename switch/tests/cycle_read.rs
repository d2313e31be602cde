//! A closed settlement cycle reads back whole or in part (`settlement::store::load_cycle_part`,
//! what the console's cycle page and its files show): its lines in merchant-code order, read
//! packed, with names that need escaping; a page of them; one merchant's; and the lines alone
//! for the payout file, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use switch::settlement::store::{load_cycle_part, CycleRef, Part};
use switch::store::{self, Backend, Pool};

const MERCHANTS: i64 = 450;

/// Merchant codes run against their row ids, so code order is not id order.
fn code_of(id: i64) -> String {
    format!("M-{:04}", 1_000 - id)
}

fn name_of(id: i64) -> String {
    if id % 50 == 0 {
        format!("quote \" backslash \\ newline \n فروشگاه {id}")
    } else {
        format!("Shop {id}")
    }
}

/// The twelve amounts of merchant `id`'s line, in the columns' order.
fn amounts_of(id: i64) -> [i64; 12] {
    let carried_out = if id % 7 == 0 { -id } else { 0 };
    let payout = if carried_out == 0 { id * 900 } else { 0 };
    [
        id,
        id * 1_000,
        id,
        id * 2,
        id * 3,
        id * 4,
        id * 5,
        id * 6,
        -id,
        -(id % 3),
        payout,
        carried_out,
    ]
}

async fn fill(pool: &Pool) {
    let mut conn = pool.acquire().await.unwrap();
    let backend = Backend::of_conn(&conn);
    let ids: Vec<i64> = (1..=MERCHANTS).collect();
    for batch in ids.chunks(100) {
        let mut insert = store::sql::QueryBuilder::new(
            "INSERT INTO merchants (id, code, name, iban, status, currency, fee_rate, \
             fee_rials_min, fee_rials_max, amount_rials_max, cashback_allowed, \
             credit_expiry_days, utc_offset_minutes) ",
        );
        insert.push_values(batch, |mut row, id| {
            row.push_bind(*id)
                .push_bind(code_of(*id))
                .push_bind(name_of(*id))
                .push_bind(format!("IR{id:024}"))
                .push_bind("active")
                .push_bind(364_i64)
                .push_bind("0.01")
                .push_bind(0_i64)
                .push_bind(1_000_i64)
                .push_bind(1_000_000_i64)
                .push_bind(1_i64)
                .push_bind(30_i64)
                .push_bind(210_i64);
        });
        insert.build(backend).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO settlement_cycles (id, business_date, cutoff_at_ms, closed_at_ms, due_date, \
         txn_count, gross_rials, discount_rials, fee_rials, store_credit_rials, club_rials, \
         bank_rest_rials, cashback_rials, adjustments_rials, carried_in_rials, payout_rials, \
         carried_out_rials) VALUES (1, '2026-11-02', 1000, 2000, '2026-11-03', \
         0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
    for batch in ids.chunks(100) {
        let mut insert = store::sql::QueryBuilder::new(
            "INSERT INTO settlement_lines (cycle_id, merchant_id, merchant_code, merchant_name, \
             iban, txn_count, gross_rials, discount_rials, fee_rials, store_credit_rials, \
             club_rials, bank_rest_rials, cashback_rials, adjustments_rials, carried_in_rials, \
             payout_rials, carried_out_rials) ",
        );
        insert.push_values(batch, |mut row, id| {
            row.push_bind(1_i64)
                .push_bind(*id)
                .push_bind(code_of(*id))
                .push_bind(name_of(*id))
                .push_bind(format!("IR{id:024}"));
            for amount in amounts_of(*id) {
                row.push_bind(amount);
            }
        });
        insert.build(backend).execute(&mut *conn).await.unwrap();
    }
    sqlx::query(
        "INSERT INTO settlement_adjustments (merchant_id, amount_rials, reason, source, \
         created_at_ms, cycle_id) VALUES (7, -700, 'chargeback', 'manual', 1500, 1)",
    )
    .execute(&mut *conn)
    .await
    .unwrap();
}

async fn check(pool: &Pool) {
    fill(pool).await;
    let cycle = CycleRef::Id(1);
    let whole = load_cycle_part(pool, &cycle, Part::ALL).await.unwrap();
    let mut by_code: Vec<i64> = (1..=MERCHANTS).collect();
    by_code.sort_by_key(|id| code_of(*id));
    let read: Vec<i64> = whole.lines.iter().map(|line| line.merchant_id).collect();
    assert_eq!(read, by_code, "every line once, by merchant code");
    for line in &whole.lines {
        let id = line.merchant_id;
        assert_eq!(line.merchant_code, code_of(id));
        assert_eq!(line.merchant_name, name_of(id));
        assert_eq!(line.iban, format!("IR{id:024}"));
        assert_eq!(line.amounts.columns(), amounts_of(id), "merchant {id}");
    }
    assert_eq!(whole.adjustments.len(), 1);
    let receivables = whole
        .exceptions
        .iter()
        .filter(|e| e.kind == "receivable")
        .count();
    assert_eq!(receivables, usize::try_from(MERCHANTS / 7).unwrap());

    // The payout file's read: the same lines, nothing else.
    let lines = load_cycle_part(pool, &cycle, Part::LINES).await.unwrap();
    assert_eq!(lines.lines, whole.lines);
    assert_eq!(lines.totals, whole.totals);
    assert!(lines.adjustments.is_empty() && lines.exceptions.is_empty());

    // A page of 200 after the first 200.
    let page = Part {
        offset: 200,
        limit: 200,
        ..Part::ALL
    };
    let page = load_cycle_part(pool, &cycle, page).await.unwrap();
    assert_eq!(page.lines, whole.lines[200..400]);
    let last = Part {
        offset: 400,
        limit: 200,
        ..Part::ALL
    };
    let last = load_cycle_part(pool, &cycle, last).await.unwrap();
    assert_eq!(last.lines, whole.lines[400..]);

    // One merchant's.
    let own = Part {
        merchant_id: Some(50),
        ..Part::ALL
    };
    let own = load_cycle_part(pool, &cycle, own).await.unwrap();
    assert_eq!(own.lines.len(), 1);
    assert_eq!(own.lines[0].merchant_name, name_of(50));
    assert!(own.adjustments.is_empty());
}

#[tokio::test]
async fn a_cycle_reads_back_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let pool = store::open(&common::sqlite_url(&dir.path().join("cycle.db")))
        .await
        .unwrap();
    check(&pool).await;
}

#[tokio::test]
async fn a_cycle_reads_back_on_postgres() {
    let Some(server) = common::database_url() else {
        return;
    };
    let url = store::create_database(&server, "lsw_cycle_read")
        .await
        .unwrap();
    let pool = store::open(&url).await.unwrap();
    check(&pool).await;
}
