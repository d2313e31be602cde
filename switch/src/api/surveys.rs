//! Surveys after a purchase (docs/surveys.md): a merchant's survey
//! (`GET`/`PUT /api/v1/merchants/{code}/survey`), the SMS gateway's webhook for replies
//! (`POST /api/v1/sms/inbound`, signed with HMAC-SHA256 rather than a bearer token) and the
//! report (`GET /api/v1/reports/surveys`). None of it touches the engine or the group commit.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::error::ApiError;
use crate::api::{body_object, column, ApiState};
use crate::domain::survey::Scale;
use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{LocalDateTime, UnixMillis};
use crate::store::audit;

mod replies;
mod report;

pub use replies::receive;
pub use report::{report, ReportParams};

/// Longest question, in characters: one SMS part of Persian text is 70 characters, and a
/// survey should fit in a few.
pub const QUESTION_CHARS_MAX: usize = 300;
/// Longest comment prompt, in characters.
pub const PROMPT_CHARS_MAX: usize = 200;
/// Longest delay after a purchase, in minutes: a week.
pub const DELAY_MINUTES_MAX: i64 = 10_080;
/// Most surveys per member and period a cap may allow.
pub const SURVEYS_MAX_LIMIT: i64 = 100;
/// Longest cap period, in days.
pub const PERIOD_DAYS_MAX: i64 = 366;
/// Comments the report lists, newest first.
pub const COMMENTS_MAX: i64 = 20;
/// Longest gateway message id.
pub const MESSAGE_ID_CHARS_MAX: usize = 128;
/// The header carrying the webhook's signature.
pub const SIGNATURE_HEADER: &str = "x-signature";

/// `tehran_time` writes the offset as `+03:30`.
const _: () = assert!(TEHRAN_UTC_OFFSET_MINUTES == 210);

/// The fields a survey's body may have.
const FIELDS: &[&str] = &[
    "question_fa",
    "question_en",
    "comment_prompt_fa",
    "comment_prompt_en",
    "scale_min",
    "scale_max",
    "delay_minutes",
    "surveys_max",
    "period_days",
    "active",
];

/// `GET /api/v1/merchants/{code}/survey`: the merchant's survey.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown merchant or one without a survey.
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let merchant = merchant_id(&state, &code).await?;
    let survey = read(&state, merchant, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "survey" })?;
    Ok(Json(survey))
}

/// `PUT /api/v1/merchants/{code}/survey`: defines or replaces the merchant's survey (201 when
/// new, 200 when replaced), with an audit row, in one transaction. Fields left out take
/// their defaults (docs/surveys.md); unknown fields are refused.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown merchant; [`ApiError::BadJson`] and
/// [`ApiError::Invalid`] for a body that is not a valid survey.
pub async fn put(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let merchant = merchant_id(&state, &code).await?;
    let object = body_object(&body)?;
    let survey = Survey::parse(&object)?;
    let now = state.clock.now().get();
    let mut tx = crate::store::begin_write(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let before: Option<(i64, i64)> =
        sqlx::query_as("SELECT active, active_from_ms FROM surveys WHERE merchant_id = $1")
            .bind(merchant)
            .fetch_optional(&mut *tx)
            .await
            .map_err(ApiError::store)?;
    // Purchases before a survey is switched on are never surveyed: the clock starts when it
    // becomes active, and keeps running while it stays so.
    let active_from = match before {
        Some((1, from)) if survey.active => from,
        _ => now,
    };
    sqlx::query(
        "INSERT INTO surveys (merchant_id, question_fa, question_en, scale_min, scale_max, \
         comment_prompt_fa, comment_prompt_en, delay_minutes, surveys_max, period_days, active, \
         active_from_ms, updated_at_ms, operator) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
         $10, $11, $12, $13, $14) ON CONFLICT (merchant_id) DO UPDATE SET \
         question_fa = excluded.question_fa, question_en = excluded.question_en, \
         scale_min = excluded.scale_min, scale_max = excluded.scale_max, \
         comment_prompt_fa = excluded.comment_prompt_fa, \
         comment_prompt_en = excluded.comment_prompt_en, delay_minutes = excluded.delay_minutes, \
         surveys_max = excluded.surveys_max, period_days = excluded.period_days, \
         active = excluded.active, active_from_ms = excluded.active_from_ms, \
         updated_at_ms = excluded.updated_at_ms, operator = excluded.operator",
    )
    .bind(merchant)
    .bind(survey.question_fa.as_deref())
    .bind(survey.question_en.as_deref())
    .bind(i64::from(survey.scale.min()))
    .bind(i64::from(survey.scale.max()))
    .bind(survey.prompt_fa.as_deref())
    .bind(survey.prompt_en.as_deref())
    .bind(survey.delay_minutes)
    .bind(survey.surveys_max)
    .bind(survey.period_days)
    .bind(i64::from(survey.active))
    .bind(active_from)
    .bind(now)
    .bind(operator.name.as_str())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::store)?;
    let detail = Value::Object(object).to_string();
    let entry = audit::Audited {
        at_ms: now,
        operator: operator.name.as_str(),
        action: audit::create_or_replace(before.is_some()),
        resource: "survey",
        code: code.as_str(),
        detail: &detail,
    };
    audit::record(&mut tx, &entry)
        .await
        .map_err(ApiError::store)?;
    tx.commit().await.map_err(ApiError::store)?;
    let view = read(&state, merchant, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "survey" })?;
    let status = if before.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(view)))
}

/// A survey's fields, validated.
struct Survey {
    question_fa: Option<String>,
    question_en: Option<String>,
    prompt_fa: Option<String>,
    prompt_en: Option<String>,
    scale: Scale,
    delay_minutes: i64,
    surveys_max: i64,
    period_days: i64,
    active: bool,
}

impl Survey {
    fn parse(object: &Map<String, Value>) -> Result<Survey, ApiError> {
        let mut problems = Vec::new();
        for key in object.keys() {
            if !FIELDS.contains(&key.as_str()) {
                problems.push((key.clone(), format!("unknown field `{key}`")));
            }
        }
        let mut text = |field: &str, max: usize| -> Option<String> {
            match object.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    let s = s.trim();
                    if s.is_empty() || s.chars().count() > max || s.chars().any(char::is_control) {
                        problems.push((
                            field.to_owned(),
                            format!("must be 1..={max} characters without control characters"),
                        ));
                        None
                    } else {
                        Some(s.to_owned())
                    }
                }
                Some(_) => {
                    problems.push((field.to_owned(), "must be a string".to_owned()));
                    None
                }
            }
        };
        let question_fa = text("question_fa", QUESTION_CHARS_MAX);
        let question_en = text("question_en", QUESTION_CHARS_MAX);
        let prompt_fa = text("comment_prompt_fa", PROMPT_CHARS_MAX);
        let prompt_en = text("comment_prompt_en", PROMPT_CHARS_MAX);
        if question_fa.is_none()
            && question_en.is_none()
            && !problems.iter().any(|p| p.0.starts_with("question"))
        {
            problems.push((
                "question_fa".to_owned(),
                "one of question_fa and question_en is required".to_owned(),
            ));
        }
        let mut integer =
            |field: &str, default: i64, range: std::ops::RangeInclusive<i64>| match object
                .get(field)
            {
                None => default,
                Some(value) => match value.as_i64().filter(|v| range.contains(v)) {
                    Some(v) => v,
                    None => {
                        problems.push((
                            field.to_owned(),
                            format!("must be an integer {}..={}", range.start(), range.end()),
                        ));
                        default
                    }
                },
            };
        let scale_min = integer("scale_min", 1, 0..=10);
        let scale_max = integer("scale_max", 5, 0..=10);
        let delay_minutes = integer("delay_minutes", 60, 0..=DELAY_MINUTES_MAX);
        let surveys_max = integer("surveys_max", 1, 1..=SURVEYS_MAX_LIMIT);
        let period_days = integer("period_days", 30, 1..=PERIOD_DAYS_MAX);
        let active = match object.get("active") {
            None => true,
            Some(Value::Bool(active)) => *active,
            Some(_) => {
                problems.push(("active".to_owned(), "must be true or false".to_owned()));
                true
            }
        };
        let scale = Scale::new(scale_min, scale_max);
        if let Err(invalid) = scale {
            problems.push(("scale_max".to_owned(), invalid.reason.to_owned()));
        }
        match scale {
            Ok(scale) if problems.is_empty() => Ok(Survey {
                question_fa,
                question_en,
                prompt_fa,
                prompt_en,
                scale,
                delay_minutes,
                surveys_max,
                period_days,
                active,
            }),
            _ => Err(ApiError::Invalid { problems }),
        }
    }
}

/// The row id of the merchant `code`, or 404.
pub(crate) async fn merchant_id(state: &ApiState, code: &str) -> Result<i64, ApiError> {
    sqlx::query_scalar("SELECT id FROM merchants WHERE code = $1")
        .bind(code)
        .fetch_optional(&state.pool)
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::NotFound { what: "merchant" })
}

/// The stored survey as the API writes it.
async fn read(state: &ApiState, merchant: i64, code: &str) -> Result<Option<Value>, ApiError> {
    let row = sqlx::query(
        "SELECT question_fa, question_en, comment_prompt_fa, comment_prompt_en, scale_min, \
         scale_max, delay_minutes, surveys_max, period_days, active, updated_at_ms, operator \
         FROM surveys WHERE merchant_id = $1",
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
        "question_fa": column::<Option<String>>(&row, "question_fa")?,
        "question_en": column::<Option<String>>(&row, "question_en")?,
        "comment_prompt_fa": column::<Option<String>>(&row, "comment_prompt_fa")?,
        "comment_prompt_en": column::<Option<String>>(&row, "comment_prompt_en")?,
        "scale_min": column::<i64>(&row, "scale_min")?,
        "scale_max": column::<i64>(&row, "scale_max")?,
        "delay_minutes": column::<i64>(&row, "delay_minutes")?,
        "surveys_max": column::<i64>(&row, "surveys_max")?,
        "period_days": column::<i64>(&row, "period_days")?,
        "active": column::<i64>(&row, "active")? == 1,
        "updated_at_ms": column::<i64>(&row, "updated_at_ms")?,
        "operator": column::<String>(&row, "operator")?,
    })))
}

/// The API's error shape with a status the shared [`ApiError`] has no kind for (503), or
/// without its bearer challenge (a webhook's 401).
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message, "problems": []}))).into_response()
}

/// `YYYY-MM-DDTHH:MM+03:30`, Tehran time.
pub(crate) fn tehran_time(millis: i64) -> String {
    let local = LocalDateTime::at(UnixMillis::new(millis), TEHRAN_UTC_OFFSET_MINUTES);
    let (hours, minutes) = (local.minute_of_day / 60, local.minute_of_day % 60);
    format!("{}T{hours:02}:{minutes:02}+03:30", local.date)
}
