//! Segments and their preview.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{invalid, only};
use crate::api::error::ApiError;
use crate::api::{body_object, column, ApiState};
use crate::engagement::audience::{self};
use crate::engagement::segment::Expr;

use super::{check_code, created, name, problems_or, save, t, Bind};

async fn segment_row(state: &ApiState, code: &str) -> Result<Option<(String, Expr)>, ApiError> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, expression FROM segments WHERE code = $1")
            .bind(code)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
    let Some((name, text)) = row else {
        return Ok(None);
    };
    let expr = serde_json::from_str(&text)
        .ok()
        .and_then(|value| Expr::parse(&value).ok())
        .ok_or_else(|| {
            ApiError::store(format!("segment {code}: stored expression does not parse"))
        })?;
    Ok(Some((name, expr)))
}

/// `GET /api/v1/segments`.
///
/// # Errors
/// [`ApiError::Store`].
pub async fn list_segments(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT code, name, expression FROM segments ORDER BY code")
            .fetch_all(&state.pool)
            .await
            .map_err(ApiError::store)?;
    let out: Vec<Value> = rows
        .into_iter()
        .map(|(code, name, expression)| {
            let expression: Value = serde_json::from_str(&expression).unwrap_or(Value::Null);
            json!({"code": code, "name": name, "expression": expression})
        })
        .collect();
    Ok(Json(json!({ "segments": out })).into_response())
}

/// `GET /api/v1/segments/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn show_segment(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (name, expr) = segment_row(&state, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "segment" })?;
    Ok(Json(json!({"code": code, "name": name, "expression": expr.to_json()})).into_response())
}

/// `PUT /api/v1/segments/{code}` with `{"name", "expression"}`: every tag and tier it names
/// must exist.
///
/// # Errors
/// [`ApiError::Invalid`] naming each problem by its path.
pub async fn put_segment(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let body = body_object(&body)?;
    only(&body, &["name", "expression"])?;
    let mut problems = Vec::new();
    let name = name(&body, &mut problems);
    let expr = match Expr::parse(body.get("expression").unwrap_or(&Value::Null)) {
        Ok(expr) => Some(expr),
        Err(more) => {
            problems.extend(more);
            None
        }
    };
    if let Some(expr) = &expr {
        let mut names = Vec::new();
        expr.names("expression", &mut names);
        for (path, what, value) in names {
            let table = if what == "tag" { "tags" } else { "tiers" };
            let known: Option<i64> =
                sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE code = $1"))
                    .bind(&value)
                    .fetch_optional(&state.pool)
                    .await
                    .map_err(ApiError::store)?;
            if known.is_none() {
                problems.push((path, format!("unknown {what} {value}")));
            }
        }
    }
    problems_or(problems)?;
    let Some(expr) = expr else {
        return Err(invalid("expression", "required"));
    };
    let expression = expr.to_json();
    let detail = json!({"name": name, "expression": expression});
    let now = state.clock.now().get();
    let new = save(
        &state,
        "segments",
        "segment",
        &code,
        &operator.name,
        &detail,
        (
            "UPDATE segments SET name = $2, expression = $3, updated_at_ms = $4, operator = $5 \
             WHERE code = $1",
            "INSERT INTO segments (code, name, expression, updated_at_ms, operator) \
             VALUES ($1, $2, $3, $4, $5)",
        ),
        vec![
            t(&code),
            t(&name),
            t(&expression.to_string()),
            Bind::Int(now),
            t(&operator.name),
        ],
    )
    .await?;
    Ok(created(
        new,
        json!({"code": code, "name": name, "expression": expression}),
    ))
}

/// `GET /api/v1/segments/{code}/preview`: how many members are in it now, how many have a
/// phone, what they bought in the last 365 days, and the first 20 members' codes.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn preview_segment(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (_, expr) = segment_row(&state, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "segment" })?;
    let now = state.clock.now();
    let members = audience::segment(&state.pool, now, &expr)
        .await
        .map_err(ApiError::store)?;
    let ids: std::collections::BTreeSet<i64> = members.iter().map(|m| m.id).collect();
    let spend = sqlx::query(
        "SELECT c.member_id, count(*) AS purchases, CAST(SUM(t.gross_rials) AS BIGINT) AS spend \
         FROM transactions t JOIN cards c ON c.id = t.card_id WHERE t.state = 'confirmed' \
         AND t.confirmed_at_ms >= $1 GROUP BY c.member_id",
    )
    .bind(now.get() - crate::engagement::rfm::WINDOW_DAYS * crate::domain::time::DAY_MS)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let (mut purchases, mut total) = (0_i64, 0_i64);
    for row in spend {
        if ids.contains(&column::<i64>(&row, "member_id")?) {
            purchases += column::<i64>(&row, "purchases")?;
            total = total.saturating_add(column::<i64>(&row, "spend")?);
        }
    }
    Ok(Json(json!({
        "segment": code,
        "members": members.len(),
        "with_phone": members.iter().filter(|m| m.phone.is_some()).count(),
        "purchases_365_days": purchases,
        "spend_365_days_rials": total,
        "sample": members.iter().take(20).map(|m| m.code.clone()).collect::<Vec<_>>(),
    }))
    .into_response())
}
