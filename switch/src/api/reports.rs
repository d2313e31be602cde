//! `/api/v1/reports`: what finance and merchants read. Days are Asia/Tehran calendar days
//! (UTC+03:30, the settlement calendar's), counted by the time a transaction was confirmed;
//! only transactions that are confirmed now count (a reversed one does not). Every report is
//! JSON, or CSV with `format=csv`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::{column, ApiState};
use crate::domain::time::{DAY_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::{CivilDate, LocalDateTime, UnixMillis};
use crate::engagement::rfm::{SCORED, WINDOW_DAYS};

/// Most rows a report returns (open holds, top members, expiring credit).
pub const ROWS_MAX: i64 = 1_000;
/// Longest look-ahead of the expiry report, in days.
pub const DAYS_AHEAD_MAX: i64 = 366;

/// Tehran's offset in milliseconds (UTC+03:30, no daylight saving since 2022).
const OFFSET_MS: i64 = 210 * 60_000;
const _: () = assert!(TEHRAN_UTC_OFFSET_MINUTES == 210);

/// The money columns of activity and top members, in this order.
const AMOUNTS: [&str; 7] = [
    "gross_rials",
    "discount_rials",
    "fee_rials",
    "store_credit_rials",
    "club_rials",
    "bank_rest_rials",
    "cashback_rials",
];

/// The query string of every report.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// First day, `YYYY-MM-DD` (default: the beginning).
    pub from: Option<String>,
    /// Last day, inclusive (default: today and beyond).
    pub to: Option<String>,
    /// `network` (default), `merchant` or `terminal` (activity).
    pub by: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
    /// Rows, 1..=1000 (top members, open holds).
    pub limit: Option<i64>,
    /// Days ahead, 1..=366 (expiring; default 30); days inactive, 1..=3650 (win-back;
    /// default 90).
    pub days: Option<i64>,
}

/// `GET /api/v1/reports/activity?from&to&by&format`: per day (and merchant or terminal),
/// the count and sums of confirmed transactions.
///
/// # Errors
/// [`ApiError::Invalid`] for a malformed date, `from` after `to`, or an unknown `by`.
pub async fn activity(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let (start, end) = period(&params.from, &params.to)?;
    let (key, join) = match params.by.as_deref().unwrap_or("network") {
        "network" => ("''", ""),
        "merchant" => ("m.code", "JOIN merchants m ON m.id = t.merchant_id"),
        "terminal" => ("r.terminal_id", "JOIN terminals r ON r.id = t.terminal_id"),
        _ => return Err(invalid("by", "must be network, merchant or terminal")),
    };
    let sums: Vec<String> = AMOUNTS
        .iter()
        .map(|c| format!("CAST(SUM(t.{c}) AS BIGINT) AS {c}"))
        .collect();
    let sql = format!(
        "SELECT (t.confirmed_at_ms + {OFFSET_MS}) / {DAY_MS} AS day, {key} AS key, \
         COUNT(*) AS count, {} FROM transactions t {join} \
         WHERE t.state = 'confirmed' AND t.confirmed_at_ms >= $1 AND t.confirmed_at_ms < $2 \
         GROUP BY day, key ORDER BY day, key",
        sums.join(", ")
    );
    let rows = sqlx::query(&sql)
        .bind(start)
        .bind(end)
        .fetch_all(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let by = params.by.as_deref().unwrap_or("network");
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let day: i64 = column(&row, "day")?;
        let mut item = Map::new();
        item.insert(
            "day".to_owned(),
            Value::from(CivilDate::from_days_since_epoch(day).to_string()),
        );
        if by != "network" {
            let key: String = column(&row, "key")?;
            item.insert(by.to_owned(), Value::from(key));
        }
        let count: i64 = column(&row, "count")?;
        item.insert("count".to_owned(), Value::from(count));
        for name in AMOUNTS {
            let sum: i64 = column(&row, name)?;
            item.insert(name.to_owned(), Value::from(sum));
        }
        out.push(Value::Object(item));
    }
    let mut columns = vec!["day"];
    if by != "network" {
        columns.push(by);
    }
    columns.push("count");
    columns.extend(AMOUNTS);
    render(&params, "activity", &columns, out)
}

/// `GET /api/v1/reports/top-members?from&to&limit&format`: members by confirmed spend (G).
///
/// # Errors
/// [`ApiError::Invalid`] for a malformed period or limit.
pub async fn top_members(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let (start, end) = period(&params.from, &params.to)?;
    let limit = limit(&params)?;
    let rows = sqlx::query(
        "SELECT mb.code AS member, COUNT(*) AS count, CAST(SUM(t.gross_rials) AS BIGINT) AS gross_rials, \
         CAST(SUM(t.discount_rials) AS BIGINT) AS discount_rials FROM transactions t \
         JOIN cards c ON c.id = t.card_id JOIN members mb ON mb.id = c.member_id \
         WHERE t.state = 'confirmed' AND t.confirmed_at_ms >= $1 AND t.confirmed_at_ms < $2 \
         GROUP BY mb.code ORDER BY gross_rials DESC, mb.code LIMIT $3",
    )
    .bind(start)
    .bind(end)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(json!({
            "member": column::<String>(&row, "member")?,
            "count": column::<i64>(&row, "count")?,
            "gross_rials": column::<i64>(&row, "gross_rials")?,
            "discount_rials": column::<i64>(&row, "discount_rials")?,
        }));
    }
    let columns = ["member", "count", "gross_rials", "discount_rials"];
    render(&params, "top_members", &columns, out)
}

/// `GET /api/v1/reports/open-holds?limit&format`: pending requests and what they hold, oldest
/// first.
///
/// # Errors
/// [`ApiError::Invalid`] for a malformed limit.
pub async fn open_holds(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let limit = limit(&params)?;
    let rows = sqlx::query(
        "SELECT t.rrn, r.terminal_id, m.code AS merchant, c.code AS card, t.club_rials, \
         t.store_credit_rials, t.created_at_ms, t.hold_expires_at_ms FROM transactions t \
         JOIN terminals r ON r.id = t.terminal_id JOIN merchants m ON m.id = t.merchant_id \
         JOIN cards c ON c.id = t.card_id WHERE t.state = 'pending' \
         ORDER BY t.created_at_ms, t.id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(json!({
            "rrn": column::<String>(&row, "rrn")?,
            "terminal": column::<String>(&row, "terminal_id")?,
            "merchant": column::<String>(&row, "merchant")?,
            "card": column::<String>(&row, "card")?,
            "club_rials": column::<i64>(&row, "club_rials")?,
            "store_credit_rials": column::<i64>(&row, "store_credit_rials")?,
            "created_at_ms": column::<i64>(&row, "created_at_ms")?,
            "hold_expires_at_ms": column::<i64>(&row, "hold_expires_at_ms")?,
        }));
    }
    let columns = [
        "rrn",
        "terminal",
        "merchant",
        "card",
        "club_rials",
        "store_credit_rials",
        "created_at_ms",
        "hold_expires_at_ms",
    ];
    render(&params, "open_holds", &columns, out)
}

/// `GET /api/v1/reports/expiring?days&format`: store credit that lapses within `days` (the
/// notice members get before their benefits lapse), soonest first, then active cards that
/// lapse within `days`; `lapses` is the first Tehran day on which it is no longer usable.
///
/// # Errors
/// [`ApiError::Invalid`] for `days` outside 1..=366.
pub async fn expiring(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let days = params.days.unwrap_or(30);
    if !(1..=DAYS_AHEAD_MAX).contains(&days) {
        return Err(invalid("days", "must be 1..=366"));
    }
    let now = state.clock.now().get();
    let horizon = now + days * DAY_MS;
    let lots = sqlx::query(
        "SELECT c.code AS card, m.code AS merchant, l.remaining_rials, l.expires_at_ms \
         FROM store_credit_lots l JOIN cards c ON c.id = l.card_id \
         JOIN merchants m ON m.id = l.merchant_id WHERE l.remaining_rials > 0 \
         AND l.expires_at_ms IS NOT NULL AND l.expires_at_ms > $1 AND l.expires_at_ms <= $2 \
         ORDER BY l.expires_at_ms, l.id LIMIT $3",
    )
    .bind(now)
    .bind(horizon)
    .bind(ROWS_MAX)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::new();
    for row in lots {
        let ends: i64 = column(&row, "expires_at_ms")?;
        out.push(json!({
            "what": "store_credit",
            "card": column::<String>(&row, "card")?,
            "merchant": column::<String>(&row, "merchant")?,
            "rials": column::<i64>(&row, "remaining_rials")?,
            "lapses": tehran_date(ends).to_string(),
        }));
    }
    // A card is valid through the last day of its expiry month: it lapses on the first day of
    // the next month, which must fall after today and within `days`.
    let today = LocalDateTime::at(state.clock.now(), TEHRAN_UTC_OFFSET_MINUTES).date;
    let last = today.days_since_epoch() + days;
    let cards = sqlx::query(
        "SELECT code, expiry_year, expiry_month FROM cards WHERE status = 'active' \
         ORDER BY expiry_year, expiry_month, code",
    )
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    for row in cards {
        if out.len() >= usize::try_from(ROWS_MAX).unwrap_or(usize::MAX) {
            break;
        }
        let year: i64 = column(&row, "expiry_year")?;
        let month: i64 = column(&row, "expiry_month")?;
        let Some(lapses) = month_after(year, month) else {
            continue;
        };
        let day = lapses.days_since_epoch();
        if day > today.days_since_epoch() && day <= last {
            out.push(json!({
                "what": "card",
                "card": column::<String>(&row, "code")?,
                "merchant": "",
                "rials": 0,
                "lapses": lapses.to_string(),
            }));
        }
    }
    render(
        &params,
        "expiring",
        &["what", "card", "merchant", "rials", "lapses"],
        out,
    )
}

/// Longest inactivity the win-back report takes, in days.
pub const INACTIVE_DAYS_MAX: i64 = 3_650;

/// `GET /api/v1/reports/rfm?limit&format`: every member with a confirmed purchase in the last
/// 365 days, with recency (days since the last one), frequency (purchases) and monetary value
/// (G, rials) over that window, and a score of 1 to 5 for each: ⌈5 × k / n⌉, where n is the
/// number of those members and k how many of them have a value at most the member's (older
/// or equal last purchase, as many or fewer purchases, as much or less spend). So 5 is the top
/// fifth (most recent, most frequent, highest spend), equal values score equally, and a lone
/// member scores 5. Integer arithmetic, rounded up as written. Best first.
///
/// # Errors
/// [`ApiError::Invalid`] for a malformed limit or format.
pub async fn rfm(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let limit = limit(&params)?;
    let now = state.clock.now().get();
    let rows = sqlx::query(&format!(
        "{SCORED} ORDER BY r + f + m DESC, member LIMIT $2"
    ))
    .bind(now - WINDOW_DAYS * DAY_MS)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let last: i64 = column(&row, "last_ms")?;
        out.push(json!({
            "member": column::<String>(&row, "member")?,
            "last_purchase": tehran_date(last).to_string(),
            "recency_days": (now - last).max(0) / DAY_MS,
            "frequency": column::<i64>(&row, "frequency")?,
            "monetary_rials": column::<i64>(&row, "monetary_rials")?,
            "r": column::<i64>(&row, "r")?,
            "f": column::<i64>(&row, "f")?,
            "m": column::<i64>(&row, "m")?,
        }));
    }
    let columns = [
        "member",
        "last_purchase",
        "recency_days",
        "frequency",
        "monetary_rials",
        "r",
        "f",
        "m",
    ];
    render(&params, "rfm", &columns, out)
}

/// `GET /api/v1/reports/win-back?days&limit&format`: members who have bought before but not
/// in the last `days` days (1..=3650, default 90), with their last purchase and lifetime
/// purchases and spend; the biggest spenders first. The list a win-back campaign targets.
///
/// # Errors
/// [`ApiError::Invalid`] for a malformed days, limit or format.
pub async fn win_back(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Response, ApiError> {
    let limit = limit(&params)?;
    let days = params.days.unwrap_or(90);
    if !(1..=INACTIVE_DAYS_MAX).contains(&days) {
        return Err(invalid("days", "must be 1..=3650"));
    }
    let now = state.clock.now().get();
    let rows = sqlx::query(
        "SELECT mb.code AS member, MAX(t.confirmed_at_ms) AS last_ms, COUNT(*) AS purchases, \
         CAST(SUM(t.gross_rials) AS BIGINT) AS gross_rials \
         FROM transactions t JOIN cards c ON c.id = t.card_id \
         JOIN members mb ON mb.id = c.member_id WHERE t.state = 'confirmed' \
         GROUP BY mb.code HAVING MAX(t.confirmed_at_ms) < $1 \
         ORDER BY gross_rials DESC, mb.code LIMIT $2",
    )
    .bind(now - days * DAY_MS)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let last: i64 = column(&row, "last_ms")?;
        out.push(json!({
            "member": column::<String>(&row, "member")?,
            "last_purchase": tehran_date(last).to_string(),
            "days_inactive": (now - last).max(0) / DAY_MS,
            "purchases": column::<i64>(&row, "purchases")?,
            "gross_rials": column::<i64>(&row, "gross_rials")?,
        }));
    }
    let columns = [
        "member",
        "last_purchase",
        "days_inactive",
        "purchases",
        "gross_rials",
    ];
    render(&params, "win_back", &columns, out)
}

/// The Tehran calendar day of an instant.
fn tehran_date(millis: i64) -> CivilDate {
    LocalDateTime::at(UnixMillis::new(millis), TEHRAN_UTC_OFFSET_MINUTES).date
}

/// The first day of the month after `year`-`month`.
fn month_after(year: i64, month: i64) -> Option<CivilDate> {
    let (year, month) = if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    CivilDate::new(u16::try_from(year).ok()?, u8::try_from(month).ok()?, 1).ok()
}

pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        problems: vec![(field.to_owned(), message.to_owned())],
    }
}

/// `[start, end)` in Unix milliseconds for `from..=to` (Tehran days; either may be absent).
pub(crate) fn period(from: &Option<String>, to: &Option<String>) -> Result<(i64, i64), ApiError> {
    let day = |field: &str, text: &Option<String>| -> Result<Option<i64>, ApiError> {
        text.as_deref()
            .map(|text| {
                CivilDate::parse(text)
                    .map(CivilDate::days_since_epoch)
                    .map_err(|error| invalid(field, error.reason))
            })
            .transpose()
    };
    let from = day("from", from)?;
    let to = day("to", to)?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(invalid("from", "must not be after to"));
        }
    }
    let start = from.map_or(i64::MIN, |days| days * DAY_MS - OFFSET_MS);
    let end = to.map_or(i64::MAX, |days| (days + 1) * DAY_MS - OFFSET_MS);
    Ok((start, end))
}

fn limit(params: &Params) -> Result<i64, ApiError> {
    let limit = params.limit.unwrap_or(ROWS_MAX);
    if (1..=ROWS_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(invalid("limit", "must be 1..=1000"))
    }
}

/// JSON `{name: rows}`, or CSV with a header line of `columns`.
fn render(
    params: &Params,
    name: &str,
    columns: &[&str],
    rows: Vec<Value>,
) -> Result<Response, ApiError> {
    match params.format.as_deref().unwrap_or("json") {
        "json" => Ok(Json(json!({ name: rows })).into_response()),
        "csv" => {
            let mut text = columns.join(",");
            text.push('\n');
            for row in &rows {
                let cells: Vec<String> = columns
                    .iter()
                    .map(|column| match row.get(*column) {
                        Some(Value::String(s)) => csv_cell(s),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    })
                    .collect();
                let _ = writeln!(text, "{}", cells.join(","));
            }
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], text).into_response())
        }
        _ => Err(invalid("format", "must be json or csv")),
    }
}

/// A CSV cell: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-` or
/// `@` is prefixed with `'` so a spreadsheet never runs it as a formula.
pub(crate) fn csv_cell(text: &str) -> String {
    let guarded = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}
