//! Closing cycles (docs/design.md section 7): one database transaction assigns every confirmed,
//! unassigned transaction captured before the cutoff, turns late reversals and manual entries
//! into adjustments, carries receivables forward and stores the per-merchant lines; then the
//! files are written from what is stored. Closing a closed cycle only rewrites its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sqlx::Row;
use switch::domain::{CivilDate, UnixMillis};
use switch::store::{Backend, Conn, Pool};

use crate::calendar::{Calendar, DayKind, WORKING_DAY_SEARCH_DAYS_MAX};
use crate::cycle::{local_text, Amounts, Cutoff};
use crate::error::SettleError;
use crate::files;
use crate::store::{self, CycleRecord, CycleRef};

/// Most cycles one `run` closes. A year of working days is about 300; a longer backlog is
/// closed over several runs, each one a bounded amount of work.
pub const RUN_CYCLES_MAX: usize = 400;

/// Page cache of the connection that closes a cycle, in KiB: 512 MiB holds the pages a
/// 10M-transaction cycle touches on a machine with a few GiB to spare (docs/design.md section 9).
pub const CLOSE_CACHE_KIB: u32 = 524_288;

/// What settlement needs to know besides the database and the clock.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The daily cutoff.
    pub cutoff: Cutoff,
    /// Working days and holidays.
    pub calendar: Calendar,
    /// Where the files go.
    pub out_dir: PathBuf,
    /// How long a close waits for a journal-mode switch's projection to pass the cutoff.
    pub projection_wait: std::time::Duration,
}

/// The default of [`Settings::projection_wait`].
pub const PROJECTION_WAIT_DEFAULT: std::time::Duration = std::time::Duration::from_secs(60);

/// A cycle after `close`.
#[derive(Debug, Clone)]
pub struct Closed {
    /// The cycle as stored.
    pub cycle: CycleRecord,
    /// Whether this call closed it (false: it was closed already, only the files were written).
    pub created: bool,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// Closes the cycle of `date` at its cutoff, or, when it is closed already, rewrites its files
/// from what is stored (byte-identical) and changes nothing in the database.
///
/// # Errors
/// [`SettleError`]: the date is not a working day, its cutoff has not passed at `now`, an
/// earlier cycle is still open, or the database or the output directory failed. On error the
/// database is unchanged.
pub async fn close(
    pool: &Pool,
    settings: &Settings,
    date: CivilDate,
    now: UnixMillis,
) -> Result<Closed, SettleError> {
    let existing = {
        let mut conn = pool.acquire().await?;
        store::find_cycle(&mut conn, &CycleRef::Date(date)).await?
    };
    let created = match existing {
        Some(_) => false,
        None => {
            let plan = plan(settings, date, now)?;
            wait_for_projection(pool, plan.cutoff_at, settings.projection_wait).await?;
            close_new(pool, &settings.calendar, &plan, now).await?
        }
    };
    let cycle = store::load_cycle(pool, &CycleRef::Date(date)).await?;
    let files = files::write_all(&settings.out_dir, &cycle)?;
    Ok(Closed {
        cycle,
        created,
        files,
    })
}

/// Closes every due cycle up to `now`, in date order: after the last closed one, each working
/// day whose cutoff has passed. With no cycle closed yet, only the latest due one is closed
/// (it takes all history before its cutoff).
///
/// # Errors
/// As [`close`]; cycles closed before the failure stay closed.
pub async fn run(
    pool: &Pool,
    settings: &Settings,
    now: UnixMillis,
) -> Result<Vec<Closed>, SettleError> {
    let latest = latest_due(settings, now)?;
    let last = {
        let mut conn = pool.acquire().await?;
        store::last_closed(&mut conn).await?
    };
    let mut next = match last {
        Some(last) => settings.calendar.next_working_day(last)?,
        None => latest,
    };
    let mut closed = Vec::new();
    while next <= latest && closed.len() < RUN_CYCLES_MAX {
        closed.push(close(pool, settings, next, now).await?);
        next = settings.calendar.next_working_day(next)?;
    }
    if next <= latest {
        tracing::warn!(cycles = closed.len(), next = %next, "more cycles are due; run again");
    }
    Ok(closed)
}

/// A switch in journal mode answers from its journal and writes the database behind
/// (docs/design.md, "The journal"). A cycle closes over its cutoff only once the database holds
/// every decision made before the cutoff and the switch holds a fence at it: from then on it
/// refuses reversals of transactions confirmed before the cutoff, so none can land on a
/// transaction this close assigns. A switch that stopped cleanly projected everything, and one
/// with the database as its commit point never marks itself running: neither is waited for.
///
/// # Errors
/// [`SettleError::ProjectionBehind`] when the wait runs out; nothing is changed but the fence
/// asked for.
pub async fn wait_for_projection(
    pool: &Pool,
    cutoff_at: UnixMillis,
    wait: std::time::Duration,
) -> Result<(), SettleError> {
    use switch::store::projection;
    let cutoff = cutoff_at.get();
    let progress = projection::progress(pool).await?;
    if !progress.running {
        return Ok(());
    }
    projection::ask_fence(pool, cutoff).await?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        let progress = projection::progress(pool).await?;
        let passed = progress.fence_held_ms >= cutoff && progress.projected_before_ms >= cutoff;
        if !progress.running || passed {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(SettleError::ProjectionBehind {
                cutoff_at: local_text(cutoff_at),
                projected_before: local_text(UnixMillis::new(progress.projected_before_ms)),
                fence_held: local_text(UnixMillis::new(progress.fence_held_ms)),
                waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The last working day whose cutoff is at or before `now`.
///
/// # Errors
/// [`SettleError::Calendar`] when the calendar does not cover the days looked at.
pub fn latest_due(settings: &Settings, now: UnixMillis) -> Result<CivilDate, SettleError> {
    let mut day = settings.cutoff.latest_date_at_or_before(now);
    for _ in 0..WORKING_DAY_SEARCH_DAYS_MAX {
        if settings.calendar.day(day)? == DayKind::Working {
            return Ok(day);
        }
        day = CivilDate::from_days_since_epoch(day.days_since_epoch() - 1);
    }
    Err(crate::calendar::CalendarError::NoWorkingDay { date: day }.into())
}

/// A cycle to close: its date, cutoff and due date, checked.
#[derive(Debug, Clone, Copy)]
struct Plan {
    date: CivilDate,
    cutoff_at: UnixMillis,
    due_date: CivilDate,
}

fn plan(settings: &Settings, date: CivilDate, now: UnixMillis) -> Result<Plan, SettleError> {
    let kind = settings.calendar.day(date)?;
    if kind != DayKind::Working {
        return Err(SettleError::NotWorkingDay { date, kind });
    }
    let cutoff_at = settings.cutoff.instant(date);
    if cutoff_at > now {
        return Err(SettleError::NotYetDue {
            date,
            cutoff_at: local_text(cutoff_at),
            now: local_text(now),
        });
    }
    let due_date = settings.calendar.next_working_day(date)?;
    Ok(Plan {
        date,
        cutoff_at,
        due_date,
    })
}

/// Closes a cycle not closed yet, in one transaction. `BEGIN IMMEDIATE` takes SQLite's write
/// lock first, so a racing close waits and then finds the cycle; UNIQUE (business_date) would
/// stop a second cycle on any database regardless. Returns false when another close won.
async fn close_new(
    pool: &Pool,
    calendar: &Calendar,
    plan: &Plan,
    now: UnixMillis,
) -> Result<bool, SettleError> {
    let backend = Backend::of_pool(pool);
    let mut tx = match backend {
        // The write lock from the start: two closers never interleave.
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    match backend {
        Backend::Sqlite => {
            // A large cycle rewrites every page of its transactions; with SQLite's default
            // 2 MB page cache those pages would spill to the WAL mid-transaction and be read
            // back.
            sqlx::query(&format!("PRAGMA cache_size = -{CLOSE_CACHE_KIB}"))
                .execute(&mut *tx)
                .await?;
        }
        Backend::Postgres => {
            // Closers (of any process) take turns; the switch's batches still write beside
            // them, and only rows already confirmed before the cutoff are assigned.
            sqlx::query("LOCK TABLE settlement_cycles IN SHARE ROW EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
    }
    if store::find_cycle(&mut tx, &CycleRef::Date(plan.date))
        .await?
        .is_some()
    {
        tx.rollback().await?;
        return Ok(false);
    }
    check_order(&mut tx, calendar, plan.date).await?;
    let inserted = sqlx::query(
        "INSERT INTO settlement_cycles (business_date, cutoff_at_ms, closed_at_ms, due_date, \
         txn_count, gross_rials, discount_rials, fee_rials, store_credit_rials, club_rials, \
         bank_rest_rials, cashback_rials, adjustments_rials, carried_in_rials, payout_rials, \
         carried_out_rials) VALUES ($1, $2, $3, $4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0) \
         ON CONFLICT (business_date) DO NOTHING RETURNING id",
    )
    .bind(plan.date.to_string())
    .bind(plan.cutoff_at.get())
    .bind(now.get())
    .bind(plan.due_date.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(cycle) = inserted else {
        tx.rollback().await?;
        return Ok(false);
    };
    let cycle: i64 = cycle.try_get("id")?;
    take_adjustments(&mut tx, cycle, plan.cutoff_at).await?;
    let lines = assign(&mut tx, cycle, plan.cutoff_at).await?;
    let totals = store_lines(&mut tx, cycle, &lines).await?;
    store_totals(&mut tx, cycle, &totals).await?;
    tx.commit().await?;
    tracing::info!(
        cycle,
        business_date = %plan.date,
        txn_count = totals.txn_count,
        payout_rials = totals.payout,
        "cycle closed"
    );
    Ok(true)
}

/// Cycles close in date order: the first close may be any working day, later ones must follow
/// the last closed one with no working day skipped.
async fn check_order(
    conn: &mut Conn,
    calendar: &Calendar,
    date: CivilDate,
) -> Result<(), SettleError> {
    let Some(last) = store::last_closed(conn).await? else {
        return Ok(());
    };
    if date < last {
        return Err(SettleError::BeforeLastClosed { date, last });
    }
    let open = calendar.next_working_day(last)?;
    if open < date {
        return Err(SettleError::EarlierOpen { date, open });
    }
    Ok(())
}

/// Turns late reversals recorded before the cutoff into adjustments (the merchant gives back
/// what it was paid for the transaction: club captured − fee), then gives this cycle every
/// unassigned adjustment recorded before the cutoff.
async fn take_adjustments(
    conn: &mut Conn,
    cycle: i64,
    cutoff_at: UnixMillis,
) -> Result<(), SettleError> {
    sqlx::query(
        "INSERT INTO settlement_adjustments \
         (merchant_id, amount_rials, reason, source, txn_id, created_at_ms) \
         SELECT t.merchant_id, t.fee_rials - c.club_rials, 'late reversal of rrn ' || t.rrn, \
         'late_reversal', t.id, e.at_ms \
         FROM exceptions e JOIN transactions t ON t.id = e.txn_id \
         JOIN captures c ON c.txn_id = t.id \
         WHERE e.kind = 'late_reversal' AND e.at_ms < $1 AND t.cycle_id IS NOT NULL \
         AND NOT EXISTS (SELECT 1 FROM settlement_adjustments a \
                         WHERE a.source = 'late_reversal' AND a.txn_id = e.txn_id) \
         ORDER BY e.id",
    )
    .bind(cutoff_at.get())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE settlement_adjustments SET cycle_id = $1 \
         WHERE cycle_id IS NULL AND created_at_ms < $2",
    )
    .bind(cycle)
    .bind(cutoff_at.get())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sums and assigns the cycle's transactions, and gathers each merchant's adjustments and
/// open receivable: the lines before the payout rule.
async fn assign(
    conn: &mut Conn,
    cycle: i64,
    cutoff_at: UnixMillis,
) -> Result<BTreeMap<i64, Amounts>, SettleError> {
    // The same filter twice inside one write transaction: the sums are of exactly the rows
    // the update assigns (the count is compared below).
    let filter = "t.cycle_id IS NULL AND t.state = 'confirmed' AND t.confirmed_at_ms < $1";
    let rows = sqlx::query(&format!(
        "{} WHERE {filter} GROUP BY t.merchant_id",
        store::TXN_SUMS
    ))
    .bind(cutoff_at.get())
    .fetch_all(&mut *conn)
    .await?;
    let mut lines = store::txn_sums(&rows)?;
    let assigned = sqlx::query(
        "UPDATE transactions SET cycle_id = $1 \
         WHERE cycle_id IS NULL AND state = 'confirmed' AND confirmed_at_ms < $2",
    )
    .bind(cycle)
    .bind(cutoff_at.get())
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let summed = lines
        .values()
        .try_fold(0_i64, |sum, line| sum.checked_add(line.txn_count));
    if summed.and_then(|n| u64::try_from(n).ok()) != Some(assigned) {
        return Err(SettleError::Inconsistent {
            what: format!("{assigned} transactions assigned but {summed:?} summed"),
        });
    }
    for (merchant, amount) in store::adjustment_sums(conn, cycle).await? {
        lines.entry(merchant).or_default().adjustments = amount;
    }
    for (merchant, amount) in store::receivables(conn, Some(cycle)).await? {
        lines.entry(merchant).or_default().carried_in = amount;
    }
    Ok(lines)
}

/// Applies the payout rule to each line, stores it with the merchant's code, name and IBAN as
/// they are now, and returns the cycle's totals.
async fn store_lines(
    conn: &mut Conn,
    cycle: i64,
    lines: &BTreeMap<i64, Amounts>,
) -> Result<Amounts, SettleError> {
    let mut totals = Amounts::default();
    for (merchant, amounts) in lines {
        let line = amounts.with_payout()?;
        totals = totals.checked_add(&line)?;
        let columns = line.columns();
        let mut query = sqlx::query(
            "INSERT INTO settlement_lines (cycle_id, merchant_id, merchant_code, merchant_name, \
             iban, txn_count, gross_rials, discount_rials, fee_rials, store_credit_rials, \
             club_rials, bank_rest_rials, cashback_rials, adjustments_rials, carried_in_rials, \
             payout_rials, carried_out_rials) \
             SELECT $1, id, code, name, iban, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
             FROM merchants WHERE id = $14",
        )
        .bind(cycle);
        for value in columns {
            query = query.bind(value);
        }
        let done = query.bind(merchant).execute(&mut *conn).await?;
        if done.rows_affected() != 1 {
            return Err(SettleError::Inconsistent {
                what: format!("merchant row {merchant} is missing"),
            });
        }
    }
    Ok(totals)
}

async fn store_totals(conn: &mut Conn, cycle: i64, totals: &Amounts) -> Result<(), SettleError> {
    let mut query = sqlx::query(
        "UPDATE settlement_cycles SET txn_count = $1, gross_rials = $2, discount_rials = $3, \
         fee_rials = $4, store_credit_rials = $5, club_rials = $6, bank_rest_rials = $7, \
         cashback_rials = $8, adjustments_rials = $9, carried_in_rials = $10, payout_rials = $11, \
         carried_out_rials = $12 WHERE id = $13",
    );
    for value in totals.columns() {
        query = query.bind(value);
    }
    query.bind(cycle).execute(&mut *conn).await?;
    Ok(())
}

/// The open receivable of each merchant code after the last closed cycle.
///
/// # Errors
/// [`SettleError::Database`].
pub async fn open_receivables(pool: &Pool) -> Result<Vec<(String, i64)>, SettleError> {
    let mut conn = pool.acquire().await?;
    let open = store::receivables(&mut conn, None).await?;
    let mut out = Vec::with_capacity(open.len());
    for (merchant, amount) in open {
        let code: String = sqlx::query("SELECT code FROM merchants WHERE id = $1")
            .bind(merchant)
            .fetch_one(&mut *conn)
            .await?
            .try_get(0)?;
        out.push((code, -amount));
    }
    Ok(out)
}

/// Where the files of a cycle of `date` go in `dir`.
pub fn file_paths(dir: &Path, date: CivilDate) -> [PathBuf; 3] {
    files::names(date).map(|name| dir.join(name))
}
