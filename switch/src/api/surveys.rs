//! Surveys after a purchase (docs/surveys.md): a merchant's survey
//! (`GET`/`PUT /api/v1/merchants/{code}/survey`), the SMS gateway's webhook for replies
//! (`POST /api/v1/sms/inbound`, signed with HMAC-SHA256 rather than a bearer token) and the
//! report (`GET /api/v1/reports/surveys`). None of it touches the engine or the group commit.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tracing::info;

use crate::api::auth::{Reader, Writer};
use crate::api::error::ApiError;
use crate::api::reports::{csv_cell, invalid, period};
use crate::api::{body_object, column, ApiState};
use crate::domain::survey::{average_score, mask_phone, response_rate, Scale, REPLY_CHARS_MAX};
use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{LocalDateTime, Phone, UnixMillis};
use crate::survey::inbound::{self, Inbound, InboundError};

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
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
         VALUES ($1, $2, $3, 'survey', $4, $5)",
    )
    .bind(now)
    .bind(operator.name.as_str())
    .bind(if before.is_some() {
        "replace"
    } else {
        "create"
    })
    .bind(code.as_str())
    .bind(Value::Object(object).to_string())
    .execute(&mut *tx)
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

/// `POST /api/v1/sms/inbound`: a reply the SMS gateway received, signed with
/// `X-Signature: <hex HMAC-SHA256 of the raw body>` under `LSW_SMS_INBOUND_SECRET`.
/// 503 without a configured secret, 401 for a missing or wrong signature (nothing is stored
/// in either case), 400/422 for a body that is not a message, 409 when another reply to the
/// same survey was stored at that moment (send it again), else 200 with the outcome (also for
/// a repeated message id, which changes nothing).
///
/// # Errors
/// [`ApiError`] for a malformed body or a store failure; nothing was recorded.
pub async fn receive(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = state.surveys.inbound_secret.as_ref() else {
        return Ok(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "inbound sms is not configured",
        ));
    };
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !secret.verifies(&body, signature) {
        return Ok(refusal(
            StatusCode::UNAUTHORIZED,
            "missing or wrong signature",
        ));
    }
    let message = parse_inbound(&body_object(&body)?)?;
    let now = state.clock.now();
    let window = state.surveys.reply_window_ms;
    let received = match inbound::receive(&state.pool, now, window, &message).await {
        Ok(received) => received,
        Err(InboundError::Busy) => {
            return Err(ApiError::Conflict {
                message: "another reply to the same survey is being stored; send again".to_owned(),
            })
        }
        Err(InboundError::Store(cause)) => return Err(ApiError::Store { cause }),
    };
    info!(
        phone = %mask_phone(message.from.as_str()),
        outcome = received.outcome.as_str(),
        duplicate = received.duplicate,
        "inbound sms"
    );
    Ok(Json(json!({
        "message_id": message.message_id,
        "outcome": received.outcome.as_str(),
        "accepted": received.outcome.is_accepted(),
        "duplicate": received.duplicate,
    }))
    .into_response())
}

/// The API's error shape with a status the shared [`ApiError`] has no kind for (503), or
/// without its bearer challenge (a webhook's 401).
pub(crate) fn refusal(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message, "problems": []}))).into_response()
}

fn parse_inbound(object: &Map<String, Value>) -> Result<Inbound, ApiError> {
    let mut problems = Vec::new();
    let string = |field: &str| object.get(field).and_then(Value::as_str);
    let message_id = match string("message_id") {
        Some(id)
            if !id.is_empty()
                && id.len() <= MESSAGE_ID_CHARS_MAX
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            id.to_owned()
        }
        _ => {
            problems.push((
                "message_id".to_owned(),
                "must be 1..=128 visible ascii characters".to_owned(),
            ));
            String::new()
        }
    };
    // The reason never repeats the number.
    let from = match string("from").map(Phone::parse) {
        Some(Ok(phone)) => Some(phone),
        Some(Err(invalid)) => {
            problems.push(("from".to_owned(), invalid.reason.to_owned()));
            None
        }
        None => {
            problems.push(("from".to_owned(), "required, a string".to_owned()));
            None
        }
    };
    let text = match string("text") {
        Some(text) if text.chars().count() <= REPLY_CHARS_MAX => text.to_owned(),
        _ => {
            problems.push((
                "text".to_owned(),
                "required, a string of at most 1600 characters".to_owned(),
            ));
            String::new()
        }
    };
    let gateway_received_at = match object.get("received_at") {
        None | Some(Value::Null) => None,
        Some(Value::String(at)) if at.len() <= 64 => Some(at.clone()),
        Some(Value::Number(at)) => Some(at.to_string()),
        Some(_) => {
            problems.push((
                "received_at".to_owned(),
                "must be a string of at most 64 characters or a number".to_owned(),
            ));
            None
        }
    };
    match from {
        Some(from) if problems.is_empty() => Ok(Inbound {
            message_id,
            from,
            text,
            gateway_received_at,
        }),
        _ => Err(ApiError::Invalid { problems }),
    }
}

/// The report's query string.
#[derive(Debug, Deserialize)]
pub struct ReportParams {
    /// The merchant's code (required).
    pub merchant: Option<String>,
    /// First Tehran day, `YYYY-MM-DD` (default: the beginning).
    pub from: Option<String>,
    /// Last Tehran day, inclusive (default: today and beyond).
    pub to: Option<String>,
    /// `json` (default) or `csv`; `Accept: text/csv` asks for CSV too.
    pub format: Option<String>,
}

/// `GET /api/v1/reports/surveys?merchant&from&to&format`: of the surveys sent for the
/// merchant's purchases on the period's days (by when the survey was queued), how many were
/// delivered (`sent`), answered with a score, stored unparsed, or not sent because of the
/// cap; the response rate (answered / sent, 4 places), the distribution of scores, the
/// average score (2 places; both rounded half away from zero) and the newest comments.
///
/// # Errors
/// [`ApiError::Invalid`] for a missing merchant, a malformed period or format;
/// [`ApiError::NotFound`] for an unknown merchant or one without a survey.
pub async fn report(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(params): Query<ReportParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let csv = match params.format.as_deref() {
        Some("csv") => true,
        Some("json") => false,
        Some(_) => return Err(invalid("format", "must be json or csv")),
        None => headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|accept| accept.contains("text/csv")),
    };
    let code = params
        .merchant
        .clone()
        .ok_or_else(|| invalid("merchant", "required"))?;
    let (start, end) = period(&params.from, &params.to)?;
    let merchant = merchant_id(&state, &code).await?;
    let scale: Option<(i64, i64)> =
        sqlx::query_as("SELECT scale_min, scale_max FROM surveys WHERE merchant_id = $1")
            .bind(merchant)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
    let (scale_min, scale_max) = scale.ok_or(ApiError::NotFound { what: "survey" })?;
    let pool = &state.pool;
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .bind(merchant)
            .bind(start)
            .bind(end)
            .fetch_one(pool)
            .await
            .map_err(ApiError::store)
    };
    let sent = count(
        "SELECT COUNT(*) FROM survey_requests r JOIN notifications n ON n.id = r.notification_id \
         WHERE r.merchant_id = $1 AND r.scheduled_at_ms >= $2 AND r.scheduled_at_ms < $3 \
         AND n.delivered_at_ms IS NOT NULL",
    )
    .await?;
    let capped = count(
        "SELECT COUNT(*) FROM survey_requests r WHERE r.merchant_id = $1 \
         AND r.scheduled_at_ms >= $2 AND r.scheduled_at_ms < $3 AND r.state = 'capped'",
    )
    .await?;
    let rows = sqlx::query(
        "SELECT s.score, COUNT(*) AS count FROM survey_responses s \
         JOIN survey_requests r ON r.id = s.request_id WHERE r.merchant_id = $1 \
         AND r.scheduled_at_ms >= $2 AND r.scheduled_at_ms < $3 GROUP BY s.score",
    )
    .bind(merchant)
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
    .map_err(ApiError::store)?;
    let mut distribution: BTreeMap<i64, i64> = (scale_min..=scale_max).map(|s| (s, 0)).collect();
    let (mut answered, mut unparsed, mut sum) = (0_i64, 0_i64, 0_i64);
    for row in rows {
        let n: i64 = column(&row, "count")?;
        match column::<Option<i64>>(&row, "score")? {
            Some(score) => {
                *distribution.entry(score).or_insert(0) += n;
                answered += n;
                sum += score * n;
            }
            None => unparsed += n,
        }
    }
    let comments = sqlx::query(
        "SELECT s.answered_at_ms, s.score, s.comment FROM survey_responses s \
         JOIN survey_requests r ON r.id = s.request_id WHERE r.merchant_id = $1 \
         AND r.scheduled_at_ms >= $2 AND r.scheduled_at_ms < $3 AND s.comment IS NOT NULL \
         ORDER BY s.answered_at_ms DESC, s.request_id DESC LIMIT $4",
    )
    .bind(merchant)
    .bind(start)
    .bind(end)
    .bind(COMMENTS_MAX)
    .fetch_all(pool)
    .await
    .map_err(ApiError::store)?;
    let mut recent = Vec::with_capacity(comments.len());
    for row in comments {
        recent.push(json!({
            "at": tehran_time(column(&row, "answered_at_ms")?),
            "score": column::<Option<i64>>(&row, "score")?,
            "comment": column::<String>(&row, "comment")?,
        }));
    }
    let report = json!({
        "merchant": code,
        "from": params.from,
        "to": params.to,
        "sent": sent,
        "answered": answered,
        "unparsed": unparsed,
        "capped": capped,
        "response_rate": response_rate(answered, sent).to_string(),
        "average_score": average_score(sum, answered).map(|a| a.to_string()),
        "distribution": distribution
            .iter()
            .map(|(score, count)| json!({"score": score, "count": count}))
            .collect::<Vec<_>>(),
        "recent_comments": recent,
    });
    if csv {
        Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&report),
        )
            .into_response())
    } else {
        Ok(Json(json!({ "survey_report": report })).into_response())
    }
}

/// The report as CSV, one value a line: `section,name,value,comment` with the summary, then
/// one `distribution` line per score, then one `comment` line per comment (its time, score
/// and text).
fn to_csv(report: &Value) -> String {
    let mut text = String::from("section,name,value,comment\n");
    let plain = |value: &Value| match value {
        Value::String(s) => csv_cell(s),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    for name in [
        "merchant",
        "from",
        "to",
        "sent",
        "answered",
        "unparsed",
        "capped",
        "response_rate",
        "average_score",
    ] {
        let _ = writeln!(text, "summary,{name},{},", plain(&report[name]));
    }
    for item in report["distribution"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "distribution,{},{},",
            plain(&item["score"]),
            plain(&item["count"])
        );
    }
    for item in report["recent_comments"].as_array().into_iter().flatten() {
        let _ = writeln!(
            text,
            "comment,{},{},{}",
            plain(&item["at"]),
            plain(&item["score"]),
            plain(&item["comment"])
        );
    }
    text
}

/// `YYYY-MM-DDTHH:MM+03:30`, Tehran time.
pub(crate) fn tehran_time(millis: i64) -> String {
    let local = LocalDateTime::at(UnixMillis::new(millis), TEHRAN_UTC_OFFSET_MINUTES);
    let (hours, minutes) = (local.minute_of_day / 60, local.minute_of_day % 60);
    format!("{}T{hours:02}:{minutes:02}+03:30", local.date)
}
