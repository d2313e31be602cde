//! `GET /api/v1/audit`: the audit rows, newest first, a page at a time.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::views::Params;
use crate::api::{column, ApiState};

/// Rows returned unless `limit` says fewer; also the most it may ask for.
pub const ROWS_MAX: i64 = 1_000;

/// `GET /api/v1/audit?limit=N&before=ID`: a page of the audit log, newest first; `next` is the
/// `before` of the page after it (null on the last page). One range of the primary key.
///
/// # Errors
/// [`ApiError::Invalid`] for a limit outside 1..=1000, a `before` that is not a positive id,
/// or an unknown parameter.
pub async fn list(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, &["limit", "before"]);
    let limit = params.integer("limit", 1..=ROWS_MAX, ROWS_MAX);
    let before = params.integer("before", 1..=i64::MAX, i64::MAX);
    params.checked()?;
    // Both are given once checked passes; the defaults are the parser's own.
    let (limit, before) = (limit.unwrap_or(ROWS_MAX), before.unwrap_or(i64::MAX));
    let rows = sqlx::query(
        "SELECT id, at_ms, operator, action, resource, resource_code, detail FROM audit_log \
         WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut last = None;
    for row in rows {
        let detail: String = column(&row, "detail")?;
        let id = column::<i64>(&row, "id")?;
        last = Some(id);
        entries.push(json!({
            "id": id,
            "at_ms": column::<i64>(&row, "at_ms")?,
            "operator": column::<String>(&row, "operator")?,
            "action": column::<String>(&row, "action")?,
            "resource": column::<String>(&row, "resource")?,
            "code": column::<String>(&row, "resource_code")?,
            "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
        }));
    }
    let full = i64::try_from(entries.len()).is_ok_and(|len| len == limit);
    let next = last.filter(|_| full);
    Ok(Json(json!({ "entries": entries, "next": next })))
}
