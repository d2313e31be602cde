//! The operator console's SQL (docs/console.md): operators with passwords, sessions, the
//! operator's language, and the dashboard's reads. Each statement is a primary-key or unique
//! lookup or a range of one index, bounded by what the page shows.

use sqlx::Row as _;

use crate::store::{Pool, StoreError};

/// An operator as the console knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    /// The name (written in the audit log).
    pub name: String,
    /// `read` or `write` as stored.
    pub role: String,
    /// A merchant operator's merchant code.
    pub merchant_code: Option<String>,
    /// `en` or `fa`.
    pub locale: String,
    /// Toman beside rials.
    pub show_toman: bool,
}

/// A live session: its operator and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Who.
    pub operator: OperatorRow,
    /// The token every form must carry.
    pub csrf: String,
}

const OPERATOR_COLUMNS: &str = "o.name, o.role, o.merchant_code, o.locale, o.show_toman";

fn operator(row: &crate::store::DbRow) -> Result<OperatorRow, sqlx::Error> {
    let toman: i64 = row.try_get("show_toman")?;
    Ok(OperatorRow {
        name: row.try_get("name")?,
        role: row.try_get("role")?,
        merchant_code: row.try_get("merchant_code")?,
        locale: row.try_get("locale")?,
        show_toman: toman != 0,
    })
}

/// The operator of an unrevoked token, by the token's SHA-256.
///
/// # Errors
/// When the database fails.
pub async fn operator_by_token(
    pool: &Pool,
    token_sha256: &[u8; 32],
) -> Result<Option<OperatorRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {OPERATOR_COLUMNS} FROM operator_tokens o \
         WHERE o.token_sha256 = $1 AND o.revoked_at_ms IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(token_sha256.to_vec())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(operator).transpose()
}

/// An unrevoked operator by name, with their password's PHC string (if one is set).
///
/// # Errors
/// When the database fails.
pub async fn operator_with_password(
    pool: &Pool,
    name: &str,
) -> Result<Option<(OperatorRow, Option<String>)>, sqlx::Error> {
    let sql = format!(
        "SELECT {OPERATOR_COLUMNS}, o.password_phc FROM operator_tokens o \
         WHERE o.name = $1 AND o.revoked_at_ms IS NULL"
    );
    let row = sqlx::query(&sql).bind(name).fetch_optional(pool).await?;
    match row {
        Some(row) => Ok(Some((operator(&row)?, row.try_get("password_phc")?))),
        None => Ok(None),
    }
}

/// Sets an operator's password (PHC string), merchant and language; `false` when no such
/// unrevoked operator exists.
///
/// # Errors
/// When the database fails.
pub async fn set_operator_console(
    pool: &Pool,
    name: &str,
    password_phc: Option<&str>,
    merchant_code: Option<&str>,
    locale: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE operator_tokens SET password_phc = COALESCE($1, password_phc), \
         merchant_code = $2, locale = $3 WHERE name = $4 AND revoked_at_ms IS NULL",
    )
    .bind(password_phc)
    .bind(merchant_code)
    .bind(locale)
    .bind(name)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// An operator's language and whether toman is shown.
///
/// # Errors
/// When the database fails.
pub async fn set_preferences(
    pool: &Pool,
    name: &str,
    locale: &str,
    show_toman: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE operator_tokens SET locale = $1, show_toman = $2 WHERE name = $3")
        .bind(locale)
        .bind(i64::from(show_toman))
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

/// Opens a session (expired ones are deleted first).
///
/// # Errors
/// When the database fails.
pub async fn open_session(
    pool: &Pool,
    session_sha256: &[u8; 32],
    operator: &str,
    csrf: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE expires_at_ms <= $1")
        .bind(now_ms)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO console_sessions (session_sha256, operator, csrf, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(session_sha256.to_vec())
    .bind(operator)
    .bind(csrf)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(pool)
    .await?;
    Ok(())
}

/// The unexpired session of this cookie, whose operator is not revoked.
///
/// # Errors
/// When the database fails.
pub async fn session(
    pool: &Pool,
    session_sha256: &[u8; 32],
    now_ms: i64,
) -> Result<Option<SessionRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {OPERATOR_COLUMNS}, s.csrf FROM console_sessions s \
         JOIN operator_tokens o ON o.name = s.operator \
         WHERE s.session_sha256 = $1 AND s.expires_at_ms > $2 AND o.revoked_at_ms IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(session_sha256.to_vec())
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(Some(SessionRow {
            operator: operator(&row)?,
            csrf: row.try_get("csrf")?,
        })),
        None => Ok(None),
    }
}

/// Ends a session.
///
/// # Errors
/// When the database fails.
pub async fn close_session(pool: &Pool, session_sha256: &[u8; 32]) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM console_sessions WHERE session_sha256 = $1")
        .bind(session_sha256.to_vec())
        .execute(pool)
        .await?;
    Ok(())
}

/// The totals of the transactions created in `[from_ms, before_ms)`, optionally of one
/// merchant: count, G, discount, fee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Approved purchases.
    pub count: i64,
    /// Their G.
    pub gross_rials: i64,
    /// Their discounts.
    pub discount_rials: i64,
    /// Their fees.
    pub fee_rials: i64,
}

/// Totals of the purchases approved in a time range (the creation-time index, or the
/// merchant's), reversed ones included.
///
/// # Errors
/// When the database fails.
pub async fn totals(
    pool: &Pool,
    merchant: Option<&str>,
    from_ms: i64,
    before_ms: i64,
) -> Result<Totals, sqlx::Error> {
    let filter = if merchant.is_some() {
        "t.merchant_id = (SELECT id FROM merchants WHERE code = $3) AND "
    } else {
        "$3 IS NULL AND "
    };
    let sql = format!(
        "SELECT COUNT(*) AS n, COALESCE(SUM(t.gross_rials), 0) AS g, \
         COALESCE(SUM(t.discount_rials), 0) AS d, COALESCE(SUM(t.fee_rials), 0) AS f \
         FROM transactions t WHERE {filter} t.created_at_ms >= $1 AND t.created_at_ms < $2"
    );
    let row = sqlx::query(&sql)
        .bind(from_ms)
        .bind(before_ms)
        .bind(merchant)
        .fetch_one(pool)
        .await?;
    Ok(Totals {
        count: row.try_get("n")?,
        gross_rials: row.try_get("g")?,
        discount_rials: row.try_get("d")?,
        fee_rials: row.try_get("f")?,
    })
}

/// Approved purchases per minute in `[from_ms, before_ms)` (minute index from `from_ms`).
///
/// # Errors
/// When the database fails.
pub async fn per_minute(
    pool: &Pool,
    merchant: Option<&str>,
    from_ms: i64,
    before_ms: i64,
) -> Result<Vec<(i64, i64)>, sqlx::Error> {
    let filter = if merchant.is_some() {
        "t.merchant_id = (SELECT id FROM merchants WHERE code = $3) AND "
    } else {
        "$3 IS NULL AND "
    };
    let sql = format!(
        "SELECT (t.created_at_ms - $1) / 60000 AS minute, COUNT(*) AS n FROM transactions t \
         WHERE {filter} t.created_at_ms >= $1 AND t.created_at_ms < $2 GROUP BY 1 ORDER BY 1"
    );
    let rows = sqlx::query(&sql)
        .bind(from_ms)
        .bind(before_ms)
        .bind(merchant)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("minute")?, row.try_get("n")?)))
        .collect()
}

/// Pending holds now (the partial index of the rare states).
///
/// # Errors
/// When the database fails.
pub async fn open_holds(pool: &Pool, merchant: Option<&str>) -> Result<(i64, i64), sqlx::Error> {
    let filter = if merchant.is_some() {
        "AND t.merchant_id = (SELECT id FROM merchants WHERE code = $1)"
    } else {
        "AND $1 IS NULL"
    };
    let sql = format!(
        "SELECT COUNT(*) AS n, COALESCE(SUM(t.club_rials + t.store_credit_rials), 0) AS held \
         FROM transactions t WHERE t.state = 'pending' {filter}"
    );
    let row = sqlx::query(&sql).bind(merchant).fetch_one(pool).await?;
    Ok((row.try_get("n")?, row.try_get("held")?))
}

/// A settlement cycle as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CycleRow {
    /// Row id.
    pub id: i64,
    /// The business date.
    pub business_date: String,
    /// When it closed.
    pub closed_at_ms: i64,
    /// Transactions in it.
    pub txn_count: i64,
    /// G.
    pub gross_rials: i64,
    /// Paid out.
    pub payout_rials: i64,
}

/// The newest settlement cycles, a merchant's own figures for a merchant operator.
///
/// # Errors
/// When the database fails.
pub async fn cycles(
    pool: &Pool,
    merchant: Option<&str>,
    limit: i64,
) -> Result<Vec<CycleRow>, sqlx::Error> {
    let sql = if merchant.is_some() {
        "SELECT c.id, c.business_date, c.closed_at_ms, l.txn_count, l.gross_rials, l.payout_rials \
         FROM settlement_lines l JOIN settlement_cycles c ON c.id = l.cycle_id \
         WHERE l.merchant_id = (SELECT id FROM merchants WHERE code = $1) \
         ORDER BY l.cycle_id DESC LIMIT $2"
    } else {
        "SELECT c.id, c.business_date, c.closed_at_ms, c.txn_count, c.gross_rials, c.payout_rials \
         FROM settlement_cycles c WHERE $1 IS NULL ORDER BY c.id DESC LIMIT $2"
    };
    let rows = sqlx::query(sql)
        .bind(merchant)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(CycleRow {
                id: row.try_get("id")?,
                business_date: row.try_get("business_date")?,
                closed_at_ms: row.try_get("closed_at_ms")?,
                txn_count: row.try_get("txn_count")?,
                gross_rials: row.try_get("gross_rials")?,
                payout_rials: row.try_get("payout_rials")?,
            })
        })
        .collect()
}

/// The merchant code of a transaction, for a merchant operator's check.
///
/// # Errors
/// When the database fails.
pub async fn txn_merchant(pool: &Pool, id: i64) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT m.code FROM transactions t JOIN merchants m ON m.id = t.merchant_id WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// A merchant's row id by its code.
///
/// # Errors
/// When the database fails.
pub async fn merchant_id(pool: &Pool, code: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM merchants WHERE code = $1")
        .bind(code)
        .fetch_optional(pool)
        .await
}

/// The code of the member a card belongs to.
///
/// # Errors
/// When the database fails.
pub async fn card_member(pool: &Pool, card_code: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT m.code FROM cards c JOIN members m ON m.id = c.member_id WHERE c.code = $1",
    )
    .bind(card_code)
    .fetch_optional(pool)
    .await
}
