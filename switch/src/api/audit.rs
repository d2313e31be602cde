//! `GET /api/v1/audit`: the newest audit rows, newest first.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::{column, ApiState};

/// Rows returned unless `limit` says fewer; also the most it may ask for.
pub const ROWS_MAX: i64 = 1_000;

/// The query string.
#[derive(Debug, Deserialize)]
pub struct Params {
    /// How many rows, 1..=1000 (default 1000).
    pub limit: Option<i64>,
}

/// `GET /api/v1/audit?limit=N`.
///
/// # Errors
/// [`ApiError::Invalid`] for a limit outside 1..=1000.
pub async fn list(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    let limit = params.limit.unwrap_or(ROWS_MAX);
    if !(1..=ROWS_MAX).contains(&limit) {
        return Err(ApiError::Invalid {
            problems: vec![("limit".to_owned(), "must be 1..=1000".to_owned())],
        });
    }
    let rows = sqlx::query(
        "SELECT id, at_ms, operator, action, resource, resource_code, detail FROM audit_log \
         ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut entries = Vec::with_capacity(rows.len());
    for row in rows {
        let detail: String = column(&row, "detail")?;
        entries.push(json!({
            "id": column::<i64>(&row, "id")?,
            "at_ms": column::<i64>(&row, "at_ms")?,
            "operator": column::<String>(&row, "operator")?,
            "action": column::<String>(&row, "action")?,
            "resource": column::<String>(&row, "resource")?,
            "code": column::<String>(&row, "resource_code")?,
            "detail": serde_json::from_str::<Value>(&detail).unwrap_or(Value::Null),
        }));
    }
    Ok(Json(json!({ "entries": entries })))
}
