//! Measures closing one cycle of many transactions on SQLite (docs/design.md section 9: 10M
//! transactions in at most 60 s).
//!
//! `cargo run --release -p settlement --example bench_close -- [TRANSACTIONS] [MERCHANTS] [DIR]`
//! (defaults 10 000 000, 10 000, a temporary directory). Rows are generated with bulk SQL
//! (recursive CTEs), not through the engine: confirmed, captured, in time order across the
//! business day, spread over the merchants. Generation is not timed; the close is, with the
//! database opened exactly as `lsw-settle` opens it (WAL, synchronous=FULL), and includes
//! writing the three files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use sqlx::Connection;

use settlement::calendar::Calendar;
use settlement::close::Settings;
use settlement::cycle::Cutoff;
use switch::domain::{CivilDate, UnixMillis};

/// Rows generated per database transaction: big enough to amortize commits, small enough to
/// keep the WAL file in hand.
const CHUNK_ROWS: i64 = 1_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let transactions: i64 = args.next().map_or(Ok(10_000_000), |text| text.parse())?;
    let merchants: i64 = args.next().map_or(Ok(10_000), |text| text.parse())?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| temp.path().to_path_buf(), Into::into);
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let pool = switch::store::open(&url).await?;

    let date = CivilDate::parse("2026-11-22").map_err(anyhow::Error::msg)?;
    let cutoff = Cutoff::DEFAULT;
    let cutoff_at = cutoff.instant(date);
    let started = Instant::now();
    generate(&pool, transactions, merchants, cutoff_at).await?;
    println!(
        "generated {transactions} transactions at {merchants} merchants in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let settings = Settings {
        cutoff,
        calendar: Calendar::fridays_only(),
        out_dir: dir.join("out"),
        projection_wait: settlement::close::PROJECTION_WAIT_DEFAULT,
    };
    let now = UnixMillis::new(cutoff_at.get() + 3_600_000);
    let started = Instant::now();
    let closed = settlement::close(&pool, &settings, date, now).await?;
    let close_seconds = started.elapsed().as_secs_f64();
    println!(
        "closed cycle {} with {} transactions and {} lines in {close_seconds:.1} s",
        closed.cycle.business_date,
        closed.cycle.totals.txn_count,
        closed.cycle.lines.len()
    );
    let started = Instant::now();
    let again = settlement::close(&pool, &settings, date, now).await?;
    println!(
        "re-ran the closed cycle (files only, created = {}) in {:.1} s",
        again.created,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        closed.cycle.totals.txn_count == transactions,
        "not every row was assigned"
    );
    Ok(())
}

async fn generate(
    pool: &switch::store::Pool,
    transactions: i64,
    merchants: i64,
    cutoff_at: UnixMillis,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    // Generation only: the close below runs with the pool's synchronous=FULL.
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO merchants (id, code, name, iban, status, currency, fee_rate, fee_rials_min, \
         fee_rials_max, amount_rials_max, cashback_allowed, credit_expiry_days, \
         utc_offset_minutes) \
         SELECT i, printf('M%06d', i), printf('Merchant %d', i), 'IR270170000000100324200001', \
         'active', 364, '1.5', 1000, 500000, 100000000, 0, 90, 210 FROM n",
    )
    .bind(merchants)
    .execute(&mut *conn)
    .await?;
    // Captures spread over the 20 hours before the cutoff, in id order.
    let span_ms = 20 * 3_600_000;
    let first_ms = cutoff_at.get() - span_ms;
    let mut done = 0;
    while done < transactions {
        let rows = CHUNK_ROWS.min(transactions - done);
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
             INSERT INTO transactions (id, ksi, mti, stan, transmitted, terminal_id, merchant_id, \
             card_id, processing_code, gross_rials, discount_rials, fee_rials, \
             store_credit_rials, club_rials, bank_rest_rials, cashback_rials, rule_id, \
             snapshot_version, rrn, state, created_at_ms, hold_expires_at_ms, confirmed_at_ms) \
             SELECT i, printf('%016X', i), '0200', i % 1000000, '1122090000', 1 + i % $3, \
             1 + i % $3, 1 + i % 1000003, '006500', \
             100000 + (i % 1000) * 100, (100000 + (i % 1000) * 100) / 10, \
             (100000 + (i % 1000) * 100) * 15 / 1000, 0, \
             (100000 + (i % 1000) * 100) - (100000 + (i % 1000) * 100) / 10, 0, 0, NULL, 1, \
             printf('%012d', i), 'confirmed', $4 + i * $5 / $6 - 1000, \
             $4 + i * $5 / $6 + 119000, $4 + i * $5 / $6 FROM n",
        )
        .bind(done + 1)
        .bind(done + rows)
        .bind(merchants)
        .bind(first_ms)
        .bind(span_ms)
        .bind(transactions + 1)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO captures (txn_id, at_ms, club_rials, store_credit_rials) \
             SELECT id, confirmed_at_ms, club_rials, 0 FROM transactions WHERE id BETWEEN $1 AND $2",
        )
        .bind(done + 1)
        .bind(done + rows)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += rows;
        println!("  {done} rows");
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
