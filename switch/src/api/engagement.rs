//! The operator API of member engagement (docs/campaigns.md): tags (by hand, by file, by
//! rule), segments with a preview, operator-defined occasions and the calendar of occasions,
//! campaigns (define, preview, run once, report) and merchants' repurchase reminders. None of
//! it touches the hot path; coupons go through the engine like every other coupon.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{Map, Value};

use crate::api::credits::invalid;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::calendar::Calendar;
use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{CivilDate, LocalDateTime};
use crate::store::audit;

mod campaigns;
mod occasions;
mod reminders;
mod segments;
mod tags;

pub use campaigns::{
    list_campaigns, preview_campaign, put_campaign, report_campaign, run_campaign, show_campaign,
};
pub use occasions::{occasions, put_occasion, CalendarParams};
pub use reminders::{put_reminder, show_reminder};
pub use segments::{list_segments, preview_segment, put_segment, show_segment};
pub use tags::{apply_tag, import_tag, list_tags, put_tag, show_tag, tag_members};

/// Longest code of a tag, segment, occasion or campaign.
pub const CODE_CHARS_MAX: usize = 32;
/// Longest name.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest SMS text of a campaign or reminder, in characters (a few SMS parts).
pub const TEXT_CHARS_MAX: usize = 480;
/// Most members one tag request or file names.
pub const TAG_MEMBERS_MAX: usize = 10_000;
/// Longest window of a campaign or occasion, and of the occasions calendar, in days.
pub const WINDOW_DAYS_MAX: i64 = 366;

/// What the engagement routes need.
#[derive(Debug, Clone)]
pub struct EngagementSettings {
    /// The holiday calendar (the settlement's file, `holiday_calendar` in docs/config.md).
    pub calendar: Arc<Calendar>,
}

fn check_code(code: &str) -> Result<(), ApiError> {
    let ok = !code.is_empty()
        && code.len() <= CODE_CHARS_MAX
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "code",
            "1..=32 ASCII letters, digits, '.', '_' or '-'",
        ))
    }
}

fn name(body: &Map<String, Value>, problems: &mut Vec<(String, String)>) -> String {
    match body.get("name").and_then(Value::as_str) {
        Some(name) if !name.trim().is_empty() && name.chars().count() <= NAME_CHARS_MAX => {
            name.to_owned()
        }
        _ => {
            problems.push(("name".to_owned(), "required, 1..=100 characters".to_owned()));
            String::new()
        }
    }
}

fn text(
    body: &Map<String, Value>,
    field: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<String> {
    match body.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(text))
            if !text.trim().is_empty() && text.chars().count() <= TEXT_CHARS_MAX =>
        {
            Some(text.clone())
        }
        Some(_) => {
            problems.push((field.to_owned(), "a text of 1..=480 characters".to_owned()));
            None
        }
    }
}

fn date(
    body: &Map<String, Value>,
    field: &str,
    problems: &mut Vec<(String, String)>,
) -> Option<CivilDate> {
    let parsed = body
        .get(field)
        .and_then(Value::as_str)
        .and_then(|text| CivilDate::parse(text).ok());
    if parsed.is_none() {
        problems.push((field.to_owned(), "required, YYYY-MM-DD".to_owned()));
    }
    parsed
}

fn window(from: Option<CivilDate>, to: Option<CivilDate>, problems: &mut Vec<(String, String)>) {
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            problems.push((
                "ends_on".to_owned(),
                "must not be before starts_on".to_owned(),
            ));
        } else if to.days_since_epoch() - from.days_since_epoch() >= WINDOW_DAYS_MAX {
            problems.push((
                "ends_on".to_owned(),
                "a window of at most 366 days".to_owned(),
            ));
        }
    }
}

fn problems_or(problems: Vec<(String, String)>) -> Result<(), ApiError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid { problems })
    }
}

fn today(state: &ApiState) -> CivilDate {
    LocalDateTime::at(state.clock.now(), TEHRAN_UTC_OFFSET_MINUTES).date
}

/// A value bound into a [`save`] statement.
enum Bind {
    Text(Option<String>),
    Int(i64),
}

/// Writes the record `code` of `table` (`update` when it exists, else `insert`, both with
/// `binds` as `$1…`) and its audit row in one transaction; `true` when the record is new.
#[allow(clippy::too_many_arguments)]
async fn save(
    state: &ApiState,
    table: &'static str,
    resource: &'static str,
    code: &str,
    operator: &str,
    detail: &Value,
    (update, insert): (&str, &str),
    binds: Vec<Bind>,
) -> Result<bool, ApiError> {
    let mut tx = crate::store::begin_write(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let exists: Option<i64> =
        sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE code = $1"))
            .bind(code)
            .fetch_optional(&mut *tx)
            .await
            .map_err(ApiError::store)?;
    let mut query = sqlx::query(if exists.is_some() { update } else { insert });
    for bind in binds {
        query = match bind {
            Bind::Text(text) => query.bind(text),
            Bind::Int(value) => query.bind(value),
        };
    }
    query.execute(&mut *tx).await.map_err(ApiError::store)?;
    let detail = detail.to_string();
    let entry = audit::Audited {
        at_ms: state.clock.now().get(),
        operator,
        action: audit::create_or_replace(exists.is_some()),
        resource,
        code,
        detail: &detail,
    };
    audit::record(&mut tx, &entry)
        .await
        .map_err(ApiError::store)?;
    tx.commit().await.map_err(ApiError::store)?;
    Ok(exists.is_none())
}

fn t(text: &str) -> Bind {
    Bind::Text(Some(text.to_owned()))
}

fn created(new: bool, view: Value) -> Response {
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(view)).into_response()
}
