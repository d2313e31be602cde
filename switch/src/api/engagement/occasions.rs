//! Operator-defined occasions and the calendar of occasions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{invalid, only};
use crate::api::error::ApiError;
use crate::api::{body_object, ApiState};
use crate::domain::CivilDate;
use crate::engagement::campaign;

use super::{check_code, created, date, name, problems_or, save, t, today, window, Bind};

/// `PUT /api/v1/occasions/{code}` with `{"name", "starts_on", "ends_on"}`: an event of the
/// operator's with a date window.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad field.
pub async fn put_occasion(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let body = body_object(&body)?;
    only(&body, &["name", "starts_on", "ends_on"])?;
    let mut problems = Vec::new();
    let name = name(&body, &mut problems);
    let from = date(&body, "starts_on", &mut problems);
    let to = date(&body, "ends_on", &mut problems);
    window(from, to, &mut problems);
    problems_or(problems)?;
    let (Some(from), Some(to)) = (from, to) else {
        return Err(invalid("starts_on", "required"));
    };
    let view = json!({"code": code, "name": name, "starts_on": from.to_string(), "ends_on": to.to_string()});
    let now = state.clock.now().get();
    let new = save(
        &state,
        "occasions",
        "occasion",
        &code,
        &operator.name,
        &view,
        (
            "UPDATE occasions SET name = $2, starts_on = $3, ends_on = $4, updated_at_ms = $5, \
             operator = $6 WHERE code = $1",
            "INSERT INTO occasions (code, name, starts_on, ends_on, updated_at_ms, operator) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        ),
        vec![
            t(&code),
            t(&name),
            t(&from.to_string()),
            t(&to.to_string()),
            Bind::Int(now),
            t(&operator.name),
        ],
    )
    .await?;
    Ok(created(new, view))
}

/// The calendar's query.
#[derive(Debug, Deserialize)]
pub struct CalendarParams {
    /// First day (default today).
    pub from: Option<String>,
    /// Last day (default 30 days after `from`).
    pub to: Option<String>,
}

/// `GET /api/v1/occasions?from=&to=`: the calendar of occasions in the period: national
/// holidays (from the holiday calendar), the operator's events overlapping it, and per day the
/// members whose birthday or joining anniversary falls on it.
///
/// # Errors
/// [`ApiError::Invalid`] for a bad period (at most 366 days).
pub async fn occasions(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<CalendarParams>,
) -> Result<Response, ApiError> {
    let parse = |field: &str, text: &Option<String>| -> Result<Option<CivilDate>, ApiError> {
        text.as_deref()
            .map(|text| CivilDate::parse(text).map_err(|e| invalid(field, e.reason)))
            .transpose()
    };
    let from = parse("from", &params.from)?.unwrap_or_else(|| today(&state));
    let to = parse("to", &params.to)?
        .unwrap_or_else(|| CivilDate::from_days_since_epoch(from.days_since_epoch() + 30));
    let mut problems = Vec::new();
    window(Some(from), Some(to), &mut problems);
    if !problems.is_empty() {
        return Err(invalid("to", "at most 366 days after from, not before it"));
    }
    let holidays: Vec<Value> = state
        .engagement
        .calendar
        .holidays()
        .filter(|(date, _)| from <= *date && *date <= to)
        .map(|(date, name)| json!({"date": date.to_string(), "name": name}))
        .collect();
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT code, name, starts_on, ends_on FROM occasions WHERE starts_on <= $2 \
         AND ends_on >= $1 ORDER BY starts_on, code",
    )
    .bind(from.to_string())
    .bind(to.to_string())
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let events: Vec<Value> = rows
        .into_iter()
        .map(|(code, name, starts_on, ends_on)| {
            json!({"code": code, "name": name, "starts_on": starts_on, "ends_on": ends_on})
        })
        .collect();
    let members: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT birth_date, joined_on FROM members WHERE birth_date IS NOT NULL \
                        OR joined_on IS NOT NULL",
    )
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut days: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (birth, joined) in members {
        for (text, birthday) in [(birth, true), (joined, false)] {
            let Some(date) = text.and_then(|t| CivilDate::parse(&t).ok()) else {
                continue;
            };
            for day in from.days_since_epoch()..=to.days_since_epoch() {
                let on = CivilDate::from_days_since_epoch(day);
                if campaign::falls_in(date, on, on) {
                    let entry = days.entry(on.to_string()).or_default();
                    if birthday {
                        entry.0 += 1;
                    } else {
                        entry.1 += 1;
                    }
                }
            }
        }
    }
    let members: Vec<Value> = days
        .into_iter()
        .map(|(date, (birthdays, anniversaries))| {
            json!({"date": date, "birthdays": birthdays, "anniversaries": anniversaries})
        })
        .collect();
    Ok(Json(json!({
        "from": from.to_string(),
        "to": to.to_string(),
        "holidays": holidays,
        "events": events,
        "members": members,
    }))
    .into_response())
}
