//! The top-up callbacks report (`GET /api/v1/reports/top-up-callbacks`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::reports::period;
use crate::api::surveys::tehran_time;
use crate::api::{column, ApiState};

use super::{Outcome, RECENT_MAX};

/// The report's query.
#[derive(Debug, Deserialize)]
pub struct ReportParams {
    /// First Tehran day, `YYYY-MM-DD`.
    pub from: Option<String>,
    /// Last Tehran day.
    pub to: Option<String>,
}

/// `GET /api/v1/reports/top-up-callbacks?from=&to=`: callbacks received in the period by
/// outcome, the rials credited, and the newest callbacks.
///
/// # Errors
/// [`ApiError::Invalid`] for a bad period.
pub async fn report(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<ReportParams>,
) -> Result<Response, ApiError> {
    let (start, end) = period(&params.from, &params.to)?;
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT outcome, COUNT(*), CAST(COALESCE(SUM(amount_rials), 0) AS BIGINT) \
         FROM top_up_callbacks WHERE received_at_ms >= $1 AND received_at_ms < $2 \
         GROUP BY outcome",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut outcomes = Map::new();
    for outcome in Outcome::ALL {
        let count = counts
            .iter()
            .find(|(name, _, _)| name == outcome.as_str())
            .map_or(0, |(_, count, _)| *count);
        outcomes.insert(outcome.as_str().to_owned(), json!(count));
    }
    let credited = counts
        .iter()
        .find(|(name, _, _)| name == Outcome::Accepted.as_str())
        .map_or(0, |(_, _, sum)| *sum);
    let rows = sqlx::query(
        "SELECT k.received_at_ms, k.outcome, k.payment_reference, o.reference AS order_reference, \
         k.amount_rials, k.currency FROM top_up_callbacks k \
         LEFT JOIN top_up_orders o ON o.id = k.order_id \
         WHERE k.received_at_ms >= $1 AND k.received_at_ms < $2 \
         ORDER BY k.id DESC LIMIT $3",
    )
    .bind(start)
    .bind(end)
    .bind(RECENT_MAX)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut recent = Vec::with_capacity(rows.len());
    for row in &rows {
        recent.push(json!({
            "received_at": tehran_time(column(row, "received_at_ms")?),
            "outcome": column::<String>(row, "outcome")?,
            "payment_reference": column::<Option<String>>(row, "payment_reference")?,
            "order_reference": column::<Option<String>>(row, "order_reference")?,
            "amount_rials": column::<Option<i64>>(row, "amount_rials")?,
            "currency": column::<Option<String>>(row, "currency")?,
        }));
    }
    Ok(Json(json!({
        "from": params.from,
        "to": params.to,
        "outcomes": outcomes,
        "credited_rials": credited,
        "recent": recent,
    }))
    .into_response())
}
