//! Merchants' repurchase reminders.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::only;
use crate::api::error::ApiError;
use crate::api::{body_object, column, ApiState};
use crate::store::audit;

use super::{created, problems_or, text};

async fn reminder_view(
    state: &ApiState,
    merchant: i64,
    code: &str,
) -> Result<Option<Value>, ApiError> {
    let row = sqlx::query(
        "SELECT days, period_days, text_fa, text_en, active, \
         (SELECT count(*) FROM reminders_sent s WHERE s.merchant_id = r.merchant_id) AS sent \
         FROM reminders r WHERE merchant_id = $1",
    )
    .bind(merchant)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(json!({
        "merchant": code,
        "days": column::<i64>(&row, "days")?,
        "period_days": column::<i64>(&row, "period_days")?,
        "text_fa": column::<Option<String>>(&row, "text_fa")?,
        "text_en": column::<Option<String>>(&row, "text_en")?,
        "active": column::<i64>(&row, "active")? == 1,
        "sent": column::<i64>(&row, "sent")?,
    })))
}

/// `GET /api/v1/merchants/{code}/reminder`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown merchant or one without a reminder.
pub async fn show_reminder(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let id = crate::api::surveys::merchant_id(&state, &code).await?;
    let view = reminder_view(&state, id, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "reminder" })?;
    Ok(Json(view).into_response())
}

/// `PUT /api/v1/merchants/{code}/reminder` with `{"days", "period_days", "text_fa"?,
/// "text_en"?, "active"?}`.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad field.
pub async fn put_reminder(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let id = crate::api::surveys::merchant_id(&state, &code).await?;
    let body = body_object(&body)?;
    only(
        &body,
        &["days", "period_days", "text_fa", "text_en", "active"],
    )?;
    let mut problems = Vec::new();
    let number = |field: &str, max: i64, problems: &mut Vec<(String, String)>| {
        let value = body
            .get(field)
            .and_then(Value::as_i64)
            .filter(|v| (1..=max).contains(v));
        if value.is_none() {
            problems.push((field.to_owned(), format!("required, 1..={max}")));
        }
        value.unwrap_or(1)
    };
    let days = number("days", 3650, &mut problems);
    let period_days = number("period_days", 366, &mut problems);
    let text_fa = text(&body, "text_fa", &mut problems);
    let text_en = text(&body, "text_en", &mut problems);
    if text_fa.is_none() && text_en.is_none() {
        problems.push((
            "text_fa".to_owned(),
            "text_fa or text_en is required".to_owned(),
        ));
    }
    let active = match body.get("active") {
        None => true,
        Some(Value::Bool(active)) => *active,
        Some(_) => {
            problems.push(("active".to_owned(), "true or false".to_owned()));
            true
        }
    };
    problems_or(problems)?;
    let now = state.clock.now().get();
    let mut tx = crate::store::begin_write(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let existed: Option<i64> =
        sqlx::query_scalar("SELECT merchant_id FROM reminders WHERE merchant_id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(ApiError::store)?;
    sqlx::query(
        "INSERT INTO reminders (merchant_id, days, period_days, text_fa, text_en, active, \
         updated_at_ms, operator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (merchant_id) DO UPDATE SET days = excluded.days, \
         period_days = excluded.period_days, text_fa = excluded.text_fa, \
         text_en = excluded.text_en, active = excluded.active, \
         updated_at_ms = excluded.updated_at_ms, operator = excluded.operator",
    )
    .bind(id)
    .bind(days)
    .bind(period_days)
    .bind(&text_fa)
    .bind(&text_en)
    .bind(i64::from(active))
    .bind(now)
    .bind(&operator.name)
    .execute(&mut *tx)
    .await
    .map_err(ApiError::store)?;
    let detail = Value::Object(body).to_string();
    let entry = audit::Audited {
        at_ms: now,
        operator: &operator.name,
        action: audit::create_or_replace(existed.is_some()),
        resource: "reminder",
        code: &code,
        detail: &detail,
    };
    audit::record(&mut tx, &entry)
        .await
        .map_err(ApiError::store)?;
    tx.commit().await.map_err(ApiError::store)?;
    let view = reminder_view(&state, id, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "reminder" })?;
    Ok(created(existed.is_none(), view))
}
