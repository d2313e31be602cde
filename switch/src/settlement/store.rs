//! The settlement tables (migrations/sqlite/0003_settlement.sql): reading cycles back, and the
//! queries closing (the settlement crate) and reconciliation share. The SQL is plain SQL-92 plus `ON CONFLICT`, so it
//! ports to PostgreSQL as it is, except for SQLite's `BEGIN IMMEDIATE` in the close.

use std::collections::BTreeMap;

use crate::domain::{CivilDate, UnixMillis};
use crate::store::packed::{self, Packing};
use crate::store::{Conn, DbRow, Pool};
use sqlx::Row;

use crate::settlement::cycle::Amounts;
use crate::settlement::error::SettleError;

/// How a cycle is named on the command line: its business date or its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CycleRef {
    /// The business date.
    Date(CivilDate),
    /// The row id.
    Id(i64),
}

impl CycleRef {
    /// Parses `YYYY-MM-DD` or a positive integer.
    ///
    /// # Errors
    /// [`SettleError::UnknownCycle`] for anything else.
    pub fn parse(text: &str) -> Result<CycleRef, SettleError> {
        if let Ok(date) = CivilDate::parse(text) {
            return Ok(CycleRef::Date(date));
        }
        match text.parse::<i64>() {
            Ok(id) if id > 0 => Ok(CycleRef::Id(id)),
            _ => Err(SettleError::UnknownCycle {
                cycle: text.to_owned(),
            }),
        }
    }
}

/// A closed cycle, as stored: everything its files are made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRecord {
    /// Row id.
    pub id: i64,
    /// The working day it settles.
    pub business_date: CivilDate,
    /// Its cutoff: transactions captured before it are in this cycle or an earlier one.
    pub cutoff_at: UnixMillis,
    /// When it was closed (the first close; re-runs do not change it).
    pub closed_at: UnixMillis,
    /// When the payouts are due: the next working day.
    pub due_date: CivilDate,
    /// The sums of the lines.
    pub totals: Amounts,
    /// One line per merchant, by merchant code.
    pub lines: Vec<Line>,
    /// The adjustments it took, by id.
    pub adjustments: Vec<Adjustment>,
    /// What the finance team must look at, in file order.
    pub exceptions: Vec<ExceptionRow>,
}

impl CycleRecord {
    /// The cycle as one merchant sees it: its own line (its amounts as the totals), and the
    /// adjustments and exceptions of that line; `None` when the merchant has no line in it.
    pub fn of_merchant(mut self, merchant_id: i64) -> Option<CycleRecord> {
        let line = self
            .lines
            .into_iter()
            .find(|line| line.merchant_id == merchant_id)?;
        let code = line.merchant_code.clone();
        self.totals = line.amounts;
        self.lines = vec![line];
        self.adjustments.retain(|a| a.merchant_code == code);
        self.exceptions.retain(|e| e.merchant_code == code);
        Some(self)
    }
}

/// One merchant's line of a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The merchant's row id.
    pub merchant_id: i64,
    /// Its code, as at the close.
    pub merchant_code: String,
    /// Its name, as at the close.
    pub merchant_name: String,
    /// Its IBAN, as at the close.
    pub iban: String,
    /// Its amounts.
    pub amounts: Amounts,
}

/// An adjustment a cycle took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    /// Row id.
    pub id: i64,
    /// The merchant's code, as at the close.
    pub merchant_code: String,
    /// Signed amount: negative takes money back from the merchant.
    pub amount_rials: i64,
    /// Why.
    pub reason: String,
    /// `late_reversal` or `manual`.
    pub source: String,
    /// The reversed transaction, for a late reversal.
    pub txn_id: Option<i64>,
    /// When it was recorded.
    pub created_at: UnixMillis,
}

/// A row of the exceptions file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionRow {
    /// `advice_shortfall`, `late_reversal` or `receivable`.
    pub kind: &'static str,
    /// The merchant's code, as at the close.
    pub merchant_code: String,
    /// The transaction, when there is one.
    pub txn_id: Option<i64>,
    /// Its RRN.
    pub rrn: Option<String>,
    /// `club` or `store_credit`.
    pub account: String,
    /// The amount: the shortfall, the club amount paid for a reversed transaction, or the
    /// receivable carried forward (positive: what the merchant owes).
    pub amount_rials: i64,
    /// When it happened, when it is an event.
    pub at: Option<UnixMillis>,
}

/// Per-merchant sums of transactions, the columns the switch records. `club` and
/// `store_credit` are what was captured (an advice confirm may capture less than priced);
/// `cashback` is what was issued (a merchant may not allow it).
pub const TXN_SUMS: &str = "SELECT t.merchant_id, count(*) AS txn_count, \
     CAST(sum(t.gross_rials) AS BIGINT) AS gross, CAST(sum(t.discount_rials) AS BIGINT) AS discount, CAST(sum(t.fee_rials) AS BIGINT) AS fee, \
     CAST(sum(c.store_credit_rials) AS BIGINT) AS store_credit, CAST(sum(c.club_rials) AS BIGINT) AS club, \
     CAST(sum(t.bank_rest_rials) AS BIGINT) AS bank_rest, \
     CAST(sum(CASE WHEN t.cashback_lot_id IS NULL THEN 0 ELSE t.cashback_rials END) AS BIGINT) AS cashback \
     FROM transactions t JOIN captures c ON c.txn_id = t.id";

/// Reads [`TXN_SUMS`] rows into amounts per merchant.
pub fn txn_sums(rows: &[DbRow]) -> Result<BTreeMap<i64, Amounts>, SettleError> {
    let mut out = BTreeMap::new();
    for row in rows {
        let amounts = Amounts {
            txn_count: row.try_get("txn_count")?,
            gross: row.try_get("gross")?,
            discount: row.try_get("discount")?,
            fee: row.try_get("fee")?,
            store_credit: row.try_get("store_credit")?,
            club: row.try_get("club")?,
            bank_rest: row.try_get("bank_rest")?,
            cashback: row.try_get("cashback")?,
            ..Amounts::default()
        };
        out.insert(row.try_get::<i64, _>("merchant_id")?, amounts);
    }
    Ok(out)
}

/// The open receivable of every merchant that has one before cycle `before` (all cycles when
/// `None`): its latest line's carried-out amount.
pub async fn receivables(
    conn: &mut Conn,
    before: Option<i64>,
) -> Result<BTreeMap<i64, i64>, SettleError> {
    let rows = sqlx::query(
        "SELECT l.merchant_id, l.carried_out_rials FROM settlement_lines l \
         WHERE l.cycle_id = (SELECT max(p.cycle_id) FROM settlement_lines p \
                             WHERE p.merchant_id = l.merchant_id AND p.cycle_id < $1) \
         AND l.carried_out_rials < 0",
    )
    .bind(before.unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        out.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(out)
}

/// Adjustment sums per merchant of cycle `cycle`.
pub async fn adjustment_sums(
    conn: &mut Conn,
    cycle: i64,
) -> Result<BTreeMap<i64, i64>, SettleError> {
    let rows = sqlx::query(
        "SELECT merchant_id, CAST(sum(amount_rials) AS BIGINT) FROM settlement_adjustments \
         WHERE cycle_id = $1 GROUP BY merchant_id",
    )
    .bind(cycle)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = BTreeMap::new();
    for row in rows {
        out.insert(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(out)
}

/// The id of the cycle `cycle` names, if it exists.
///
/// # Errors
/// [`SettleError::Database`].
pub async fn find_cycle(conn: &mut Conn, cycle: &CycleRef) -> Result<Option<i64>, SettleError> {
    let id = match cycle {
        CycleRef::Date(date) => {
            sqlx::query_scalar("SELECT id FROM settlement_cycles WHERE business_date = $1")
                .bind(date.to_string())
                .fetch_optional(&mut *conn)
                .await?
        }
        CycleRef::Id(id) => {
            sqlx::query_scalar("SELECT id FROM settlement_cycles WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    Ok(id)
}

/// The last closed business date, if any cycle is closed.
///
/// # Errors
/// [`SettleError`] on a database failure or a stored date that does not parse.
pub async fn last_closed(conn: &mut Conn) -> Result<Option<CivilDate>, SettleError> {
    let last: Option<String> =
        sqlx::query_scalar("SELECT max(business_date) FROM settlement_cycles")
            .fetch_one(&mut *conn)
            .await?;
    last.map(|text| stored_date(&text)).transpose()
}

/// Loads a closed cycle with its lines, adjustments and exceptions.
///
/// # Errors
/// [`SettleError::UnknownCycle`] when it does not exist; [`SettleError`] on a database
/// failure or rows that do not make sense.
pub async fn load_cycle(pool: &Pool, cycle: &CycleRef) -> Result<CycleRecord, SettleError> {
    load_cycle_part(pool, cycle, Part::ALL).await
}

/// Which part of a cycle to read: one merchant's (by row id) or every merchant's, `limit`
/// lines from the `offset`-th by merchant code, and at most `limit` adjustments, exceptions
/// of transactions and receivables. The totals are always the cycle's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// One merchant's line, adjustments and exceptions only.
    pub merchant_id: Option<i64>,
    /// Lines skipped.
    pub offset: i64,
    /// Most lines, adjustments and exceptions of each kind read.
    pub limit: i64,
    /// Whether the adjustments and the exceptions are read (the payout file needs neither).
    pub with_adjustments: bool,
}

impl Part {
    /// The whole cycle.
    pub const ALL: Part = Part {
        merchant_id: None,
        offset: 0,
        limit: i64::MAX,
        with_adjustments: true,
    };

    /// The whole cycle's totals and lines only: what its payout file holds.
    pub const LINES: Part = Part {
        with_adjustments: false,
        ..Part::ALL
    };
}

/// How many lines and adjustments a cycle has, of one merchant or of all.
///
/// # Errors
/// [`SettleError::Database`].
pub async fn cycle_counts(
    pool: &Pool,
    cycle_id: i64,
    merchant_id: Option<i64>,
) -> Result<(i64, i64), SettleError> {
    let lines: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM settlement_lines WHERE cycle_id = $1 \
         AND ($2 IS NULL OR merchant_id = $2)",
    )
    .bind(cycle_id)
    .bind(merchant_id)
    .fetch_one(pool)
    .await?;
    let adjustments: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM settlement_adjustments WHERE cycle_id = $1 \
         AND ($2 IS NULL OR merchant_id = $2)",
    )
    .bind(cycle_id)
    .bind(merchant_id)
    .fetch_one(pool)
    .await?;
    Ok((lines, adjustments))
}

/// Loads a part of a closed cycle ([`Part`]): what a page of it shows, each read bounded.
///
/// # Errors
/// As [`load_cycle`].
pub async fn load_cycle_part(
    pool: &Pool,
    cycle: &CycleRef,
    part: Part,
) -> Result<CycleRecord, SettleError> {
    let mut conn = pool.acquire().await?;
    let unknown = || SettleError::UnknownCycle {
        cycle: match cycle {
            CycleRef::Date(date) => date.to_string(),
            CycleRef::Id(id) => id.to_string(),
        },
    };
    let id = find_cycle(&mut conn, cycle).await?.ok_or_else(unknown)?;
    let row = sqlx::query("SELECT * FROM settlement_cycles WHERE id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let business_date = stored_date(&row.try_get::<String, _>("business_date")?)?;
    let due_date = stored_date(&row.try_get::<String, _>("due_date")?)?;
    let totals = amounts(&row)?;
    let lines = load_lines(&mut conn, id, part).await?;
    let (adjustments, exceptions) = if part.with_adjustments {
        (
            load_adjustments(&mut conn, id, part).await?,
            load_exceptions(&mut conn, id, part).await?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(CycleRecord {
        id,
        business_date,
        cutoff_at: UnixMillis::new(row.try_get("cutoff_at_ms")?),
        closed_at: UnixMillis::new(row.try_get("closed_at_ms")?),
        due_date,
        totals,
        lines,
        adjustments,
        exceptions,
    })
}

/// A `settlement_lines` row as packed: the merchant's row id, code, name and IBAN, then the
/// twelve amounts in [`AMOUNT_COLUMNS`](crate::settlement::cycle::AMOUNT_COLUMNS) order, as
/// one inner array.
#[derive(serde::Deserialize)]
struct LineRow(i64, String, String, String, [i64; 12]);

/// The lines `part` takes, by merchant code. They are read packed (`store::packed`): a cycle
/// of 10,000 merchants is one value of about a megabyte rather than 10,000 rows handed over
/// one by one (the payout file's read went from about 120 ms to 40).
async fn load_lines(conn: &mut Conn, cycle: i64, part: Part) -> Result<Vec<Line>, SettleError> {
    let amounts = packed::array(
        crate::store::Backend::of_conn(conn),
        &crate::settlement::cycle::AMOUNT_COLUMNS.join(", "),
    );
    let packing = Packing {
        table: "settlement_lines",
        columns: &[
            "merchant_id",
            "merchant_code",
            "merchant_name",
            "iban",
            &amounts,
        ],
        from: "FROM (SELECT * FROM settlement_lines WHERE cycle_id = $1 \
               AND ($2 IS NULL OR merchant_id = $2) ORDER BY merchant_code LIMIT $3 OFFSET $4) l \
               WHERE 1 = 1",
        key: "merchant_code",
        ordered: true,
    };
    let mut lines = Vec::new();
    packed::read(
        conn,
        &packing,
        false,
        None,
        |sql| lines_query(sql, cycle, part),
        |row| {
            let LineRow(merchant_id, merchant_code, merchant_name, iban, amounts) =
                row.parse().map_err(crate::store::StoreError::from)?;
            lines.push(Line {
                merchant_id,
                merchant_code,
                merchant_name,
                iban,
                amounts: Amounts::from_columns(amounts),
            });
            Ok::<(), crate::store::StoreError>(())
        },
    )
    .await?;
    Ok(lines)
}

/// [`load_lines`]' statement with its parameters bound.
fn lines_query(
    sql: &str,
    cycle: i64,
    part: Part,
) -> sqlx::query::Query<'_, crate::store::Db, sqlx::any::AnyArguments<'_>> {
    sqlx::query(sql)
        .bind(cycle)
        .bind(part.merchant_id)
        .bind(part.limit)
        .bind(part.offset)
}

async fn load_adjustments(
    conn: &mut Conn,
    cycle: i64,
    part: Part,
) -> Result<Vec<Adjustment>, SettleError> {
    let rows = sqlx::query(
        "SELECT a.id, l.merchant_code, a.amount_rials, a.reason, a.source, a.txn_id, \
         a.created_at_ms FROM settlement_adjustments a \
         JOIN settlement_lines l ON l.cycle_id = a.cycle_id AND l.merchant_id = a.merchant_id \
         WHERE a.cycle_id = $1 AND ($2 IS NULL OR a.merchant_id = $2) ORDER BY a.id LIMIT $3",
    )
    .bind(cycle)
    .bind(part.merchant_id)
    .bind(part.limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Adjustment {
                id: row.try_get("id")?,
                merchant_code: row.try_get("merchant_code")?,
                amount_rials: row.try_get("amount_rials")?,
                reason: row.try_get("reason")?,
                source: row.try_get("source")?,
                txn_id: row.try_get("txn_id")?,
                created_at: UnixMillis::new(row.try_get("created_at_ms")?),
            })
        })
        .collect()
}

/// Advice confirms with a shortfall among the cycle's transactions, then the late reversals
/// it adjusted, each in id order, then the receivables it carried forward by merchant code.
async fn load_exceptions(
    conn: &mut Conn,
    cycle: i64,
    part: Part,
) -> Result<Vec<ExceptionRow>, SettleError> {
    let rows = sqlx::query(
        "SELECT 0 AS part, e.id AS exception_id, e.kind, l.merchant_code, e.txn_id, t.rrn, e.account, \
         e.amount_rials, e.at_ms FROM exceptions e \
         JOIN transactions t ON t.id = e.txn_id \
         JOIN settlement_lines l ON l.cycle_id = t.cycle_id AND l.merchant_id = t.merchant_id \
         WHERE t.cycle_id = $1 AND e.kind = 'advice_shortfall' AND ($2 IS NULL OR l.merchant_id = $2) \
         UNION ALL \
         SELECT 1 AS part, e.id AS exception_id, e.kind, l.merchant_code, e.txn_id, t.rrn, e.account, \
         e.amount_rials, e.at_ms FROM settlement_adjustments a \
         JOIN exceptions e ON e.txn_id = a.txn_id AND e.kind = 'late_reversal' \
         JOIN transactions t ON t.id = a.txn_id \
         JOIN settlement_lines l ON l.cycle_id = a.cycle_id AND l.merchant_id = a.merchant_id \
         WHERE a.cycle_id = $1 AND a.source = 'late_reversal' AND ($2 IS NULL OR l.merchant_id = $2) \
         ORDER BY part, exception_id LIMIT $3",
    )
    .bind(cycle)
    .bind(part.merchant_id)
    .bind(part.limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut exceptions = rows
        .iter()
        .map(|row| {
            let kind: String = row.try_get("kind")?;
            Ok(ExceptionRow {
                kind: if kind == "late_reversal" {
                    "late_reversal"
                } else {
                    "advice_shortfall"
                },
                merchant_code: row.try_get("merchant_code")?,
                txn_id: row.try_get("txn_id")?,
                rrn: row.try_get("rrn")?,
                account: row.try_get("account")?,
                amount_rials: row.try_get("amount_rials")?,
                at: Some(UnixMillis::new(row.try_get("at_ms")?)),
            })
        })
        .collect::<Result<Vec<ExceptionRow>, SettleError>>()?;
    // Receivables carried forward, by merchant code: the lines with a carried-out amount.
    let receivables = sqlx::query(
        "SELECT merchant_code, carried_out_rials FROM settlement_lines WHERE cycle_id = $1 \
         AND carried_out_rials < 0 AND ($2 IS NULL OR merchant_id = $2) \
         ORDER BY merchant_code LIMIT $3",
    )
    .bind(cycle)
    .bind(part.merchant_id)
    .bind(part.limit)
    .fetch_all(&mut *conn)
    .await?;
    for row in &receivables {
        let carried_out: i64 = row.try_get("carried_out_rials")?;
        exceptions.push(ExceptionRow {
            kind: "receivable",
            merchant_code: row.try_get("merchant_code")?,
            txn_id: None,
            rrn: None,
            account: "club".to_owned(),
            amount_rials: -carried_out,
            at: None,
        });
    }
    Ok(exceptions)
}

/// Reads the twelve amount columns of a cycle or line row.
pub fn amounts(row: &DbRow) -> Result<Amounts, SettleError> {
    let mut values = [0_i64; 12];
    for (slot, name) in values
        .iter_mut()
        .zip(crate::settlement::cycle::AMOUNT_COLUMNS)
    {
        *slot = row.try_get(name)?;
    }
    Ok(Amounts::from_columns(values))
}

/// A stored `YYYY-MM-DD` date.
///
/// # Errors
/// [`SettleError::Inconsistent`] when it does not parse.
pub fn stored_date(text: &str) -> Result<CivilDate, SettleError> {
    CivilDate::parse(text).map_err(|invalid| SettleError::Inconsistent {
        what: format!("stored date {text:?}: {invalid}"),
    })
}
