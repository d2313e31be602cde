//! Campaigns: define, preview, run once, report.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{invalid, only};
use crate::api::error::ApiError;
use crate::api::{body_object, ApiState};
use crate::config::CouponConfig;
use crate::domain::{CivilDate, RuleKind};
use crate::engagement::campaign::{self, Occasion, RunError};

use super::{check_code, created, date, name, problems_or, save, t, text, window, Bind};

const CAMPAIGN_FIELDS: &[&str] = &[
    "name",
    "segment",
    "occasion",
    "starts_on",
    "ends_on",
    "coupon",
    "sms_fa",
    "sms_en",
];

fn campaign_view(campaign: &campaign::Campaign, coupon: Option<Value>) -> Value {
    json!({
        "code": campaign.code,
        "name": campaign.name,
        "segment": campaign.segment,
        "occasion": campaign.occasion.as_ref().map(Occasion::to_json),
        "starts_on": campaign.starts_on.to_string(),
        "ends_on": campaign.ends_on.to_string(),
        "coupon": coupon,
        "sms_fa": campaign.sms_fa,
        "sms_en": campaign.sms_en,
        "state": campaign.state,
    })
}

async fn load_campaign(
    state: &ApiState,
    code: &str,
) -> Result<(campaign::Campaign, Option<Value>), ApiError> {
    let campaign = campaign::load(&state.pool, code)
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::NotFound { what: "campaign" })?;
    let coupon = campaign.coupon_json.clone();
    Ok((campaign, coupon))
}

/// `GET /api/v1/campaigns`.
///
/// # Errors
/// [`ApiError::Store`].
pub async fn list_campaigns(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM campaigns ORDER BY starts_on, code")
            .fetch_all(&state.pool)
            .await
            .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        let (campaign, coupon) = load_campaign(&state, &code).await?;
        out.push(campaign_view(&campaign, coupon));
    }
    Ok(Json(json!({ "campaigns": out })).into_response())
}

/// `GET /api/v1/campaigns/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn show_campaign(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (campaign, coupon) = load_campaign(&state, &code).await?;
    Ok(Json(campaign_view(&campaign, coupon)).into_response())
}

/// `PUT /api/v1/campaigns/{code}`: defines or redefines a campaign that has not run yet.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad field; [`ApiError::Conflict`] once it started.
pub async fn put_campaign(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let body = body_object(&body)?;
    only(&body, CAMPAIGN_FIELDS)?;
    let mut problems = Vec::new();
    let name = name(&body, &mut problems);
    let segment = body.get("segment").and_then(Value::as_str).unwrap_or("");
    let segment_id: Option<i64> = sqlx::query_scalar("SELECT id FROM segments WHERE code = $1")
        .bind(segment)
        .fetch_optional(&state.pool)
        .await
        .map_err(ApiError::store)?;
    if segment_id.is_none() {
        problems.push((
            "segment".to_owned(),
            "required, a segment's code".to_owned(),
        ));
    }
    let occasion = match body.get("occasion") {
        None | Some(Value::Null) => None,
        Some(value) => match Occasion::parse(value) {
            Ok(occasion) => Some(occasion),
            Err(message) => {
                problems.push(("occasion".to_owned(), message));
                None
            }
        },
    };
    let from = body
        .get("starts_on")
        .and_then(|_| date(&body, "starts_on", &mut problems));
    let to = body
        .get("ends_on")
        .and_then(|_| date(&body, "ends_on", &mut problems));
    let (from, to) = occasion_dates(&state, occasion.as_ref(), (from, to), &mut problems).await?;
    if from.is_none() && !body.contains_key("starts_on") {
        problems.push((
            "starts_on".to_owned(),
            "required, YYYY-MM-DD (or an occasion that has a date)".to_owned(),
        ));
    }
    if to.is_none() && !body.contains_key("ends_on") {
        problems.push((
            "ends_on".to_owned(),
            "required, YYYY-MM-DD (or an occasion that has a date)".to_owned(),
        ));
    }
    window(from, to, &mut problems);
    let coupon = coupon_of(&body, &mut problems);
    let sms_fa = text(&body, "sms_fa", &mut problems);
    let sms_en = text(&body, "sms_en", &mut problems);
    if coupon.is_none() && sms_fa.is_none() && sms_en.is_none() && problems.is_empty() {
        problems.push((
            "coupon".to_owned(),
            "a campaign gives a coupon, sends an SMS, or both".to_owned(),
        ));
    }
    problems_or(problems)?;
    let (Some(segment_id), Some(from), Some(to)) = (segment_id, from, to) else {
        return Err(invalid("segment", "required"));
    };
    still_scheduled(&state, &code).await?;
    let detail = Value::Object(body.clone());
    let now = state.clock.now().get();
    let new = save(
        &state,
        "campaigns",
        "campaign",
        &code,
        &operator.name,
        &detail,
        (
            "UPDATE campaigns SET name = $2, segment_id = $3, occasion = $4, starts_on = $5, \
             ends_on = $6, coupon = $7, sms_fa = $8, sms_en = $9, updated_at_ms = $10, \
             operator = $11 WHERE code = $1 AND state = 'scheduled'",
            "INSERT INTO campaigns (code, name, segment_id, occasion, starts_on, ends_on, coupon, \
             sms_fa, sms_en, state, updated_at_ms, operator) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'scheduled', $10, $11)",
        ),
        vec![
            t(&code),
            t(&name),
            Bind::Int(segment_id),
            Bind::Text(occasion.as_ref().map(|o| o.to_json().to_string())),
            t(&from.to_string()),
            t(&to.to_string()),
            Bind::Text(coupon.as_ref().map(Value::to_string)),
            Bind::Text(sms_fa),
            Bind::Text(sms_en),
            Bind::Int(now),
            t(&operator.name),
        ],
    )
    .await?;
    let (campaign, coupon) = load_campaign(&state, &code).await?;
    Ok(created(new, campaign_view(&campaign, coupon)))
}

/// An occasion's dates where the request gives none: a holiday's day (which must be a holiday
/// of the calendar), an event's window (which must exist). Problems are added to `problems`.
async fn occasion_dates(
    state: &ApiState,
    occasion: Option<&Occasion>,
    (mut from, mut to): (Option<CivilDate>, Option<CivilDate>),
    problems: &mut Vec<(String, String)>,
) -> Result<(Option<CivilDate>, Option<CivilDate>), ApiError> {
    match occasion {
        Some(Occasion::Holiday(day)) => {
            if !state
                .engagement
                .calendar
                .holidays()
                .any(|(date, _)| date == *day)
            {
                problems.push((
                    "occasion".to_owned(),
                    format!("{day} is not a holiday of the calendar"),
                ));
            }
            from = from.or(Some(*day));
            to = to.or(Some(*day));
        }
        Some(Occasion::Event(event)) => {
            let window: Option<(String, String)> =
                sqlx::query_as("SELECT starts_on, ends_on FROM occasions WHERE code = $1")
                    .bind(event)
                    .fetch_optional(&state.pool)
                    .await
                    .map_err(ApiError::store)?;
            match window {
                Some((starts, ends)) => {
                    from = from.or_else(|| CivilDate::parse(&starts).ok());
                    to = to.or_else(|| CivilDate::parse(&ends).ok());
                }
                None => problems.push(("occasion".to_owned(), format!("unknown occasion {event}"))),
            }
        }
        _ => {}
    }
    Ok((from, to))
}

/// The request's coupon as it will be stored, if it is a valid coupon: a percent coupon must
/// have a cap, so the campaign has a cost ceiling. Problems are added to `problems`.
fn coupon_of(body: &Map<String, Value>, problems: &mut Vec<(String, String)>) -> Option<Value> {
    match body.get("coupon") {
        None | Some(Value::Null) => None,
        Some(value) => match serde_json::from_value::<CouponConfig>(value.clone()) {
            Ok(config) => match config.template() {
                Ok(template) => {
                    if matches!(template.kind, RuleKind::Percent(_))
                        && template.discount_rials_max.is_none()
                    {
                        problems.push((
                            "coupon.discount_rials_max".to_owned(),
                            "required for a percent coupon, so the campaign has a cost ceiling"
                                .to_owned(),
                        ));
                    }
                    Some(value.clone())
                }
                Err(message) => {
                    problems.push((format!("coupon.{message}"), "invalid".to_owned()));
                    None
                }
            },
            Err(error) => {
                problems.push(("coupon".to_owned(), error.to_string()));
                None
            }
        },
    }
}

/// Refuses a change to a campaign that has started (409); a new or scheduled one may change.
async fn still_scheduled(state: &ApiState, code: &str) -> Result<(), ApiError> {
    let state_now: Option<String> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE code = $1")
            .bind(code)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
    if state_now.as_deref().is_some_and(|s| s != "scheduled") {
        return Err(ApiError::Conflict {
            message: "the campaign has started; it cannot be changed".to_owned(),
        });
    }
    Ok(())
}

/// `GET /api/v1/campaigns/{code}/preview`: who it would reach now and what it could cost.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn preview_campaign(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (campaign, _) = load_campaign(&state, &code).await?;
    let preview = campaign::preview(&state.pool, &campaign, state.clock.now())
        .await
        .map_err(ApiError::store)?;
    Ok(Json(preview).into_response())
}

/// `POST /api/v1/campaigns/{code}/run`: runs it now, once (the engagement job also runs it on
/// its first day). A campaign that ran already answers 200 with nothing reached.
///
/// # Errors
/// [`ApiError::NotFound`]; [`ApiError::Conflict`] outside its window.
pub async fn run_campaign(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let outcome = campaign::run(
        &state.pool,
        &state.credits,
        &code,
        state.clock.now(),
        &operator.name,
    )
    .await
    .map_err(|error| match error {
        RunError::Unknown => ApiError::NotFound { what: "campaign" },
        RunError::OutsideWindow { .. } => ApiError::Conflict {
            message: error.to_string(),
        },
        RunError::Store(cause) => ApiError::store(cause),
    })?;
    let (campaign, _) = load_campaign(&state, &code).await?;
    let report = campaign::report(&state.pool, &campaign)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(json!({
        "campaign": code,
        "reached": outcome.reached,
        "already_reached": outcome.already,
        "coupons_issued": outcome.coupons,
        "messages_queued": outcome.messages,
        "report": report,
    }))
    .into_response())
}

/// `GET /api/v1/campaigns/{code}/report`.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn report_campaign(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (campaign, _) = load_campaign(&state, &code).await?;
    let report = campaign::report(&state.pool, &campaign)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(report).into_response())
}
