//! The surveys report (`GET /api/v1/reports/surveys`), as JSON or CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::reports::{csv_cell, invalid, period};
use crate::api::{column, ApiState};
use crate::domain::survey::{average_score, response_rate};

use super::tehran_time;
use super::{merchant_id, COMMENTS_MAX};

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
