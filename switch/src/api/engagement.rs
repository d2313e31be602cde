//! The operator API of member engagement (docs/campaigns.md): tags (by hand, by file, by
//! rule), segments with a preview, operator-defined occasions and the calendar of occasions,
//! campaigns (define, preview, run once, report) and merchants' repurchase reminders. None of
//! it touches the hot path; coupons go through the engine like every other coupon.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{invalid, only};
use crate::api::error::ApiError;
use crate::api::{body_object, column, ApiState};
use crate::calendar::Calendar;
use crate::config::CouponConfig;
use crate::domain::time::TEHRAN_UTC_OFFSET_MINUTES;
use crate::domain::{CivilDate, LocalDateTime, RuleKind};
use crate::engagement::audience::{self, TagRule};
use crate::engagement::campaign::{self, Occasion, RunError};
use crate::engagement::segment::Expr;

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
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(state.clock.now().get())
    .bind(operator)
    .bind(if exists.is_some() {
        "replace"
    } else {
        "create"
    })
    .bind(resource)
    .bind(code)
    .bind(detail.to_string())
    .execute(&mut *tx)
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

// ---- Tags --------------------------------------------------------------------------------

async fn tag_view(state: &ApiState, code: &str) -> Result<Option<(i64, Value)>, ApiError> {
    let row = sqlx::query(
        "SELECT t.id, t.code, t.name, t.rule, \
         (SELECT count(*) FROM member_tags m WHERE m.tag_id = t.id) AS members, \
         (SELECT count(*) FROM member_tags m WHERE m.tag_id = t.id AND m.source = 'rule') AS by_rule \
         FROM tags t WHERE t.code = $1",
    )
    .bind(code)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let rule: Option<String> = column(&row, "rule")?;
    let rule = rule.and_then(|text| serde_json::from_str::<Value>(&text).ok());
    Ok(Some((
        column(&row, "id")?,
        json!({
            "code": column::<String>(&row, "code")?,
            "name": column::<String>(&row, "name")?,
            "rule": rule,
            "members": column::<i64>(&row, "members")?,
            "members_by_rule": column::<i64>(&row, "by_rule")?,
        }),
    )))
}

async fn tag_id(state: &ApiState, code: &str) -> Result<i64, ApiError> {
    Ok(tag_view(state, code)
        .await?
        .ok_or(ApiError::NotFound { what: "tag" })?
        .0)
}

/// `GET /api/v1/tags`.
///
/// # Errors
/// [`ApiError::Store`].
pub async fn list_tags(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
) -> Result<Response, ApiError> {
    let codes: Vec<String> = sqlx::query_scalar("SELECT code FROM tags ORDER BY code")
        .fetch_all(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(codes.len());
    for code in codes {
        if let Some((_, view)) = tag_view(&state, &code).await? {
            out.push(view);
        }
    }
    Ok(Json(json!({ "tags": out })).into_response())
}

/// `GET /api/v1/tags/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`].
pub async fn show_tag(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (_, view) = tag_view(&state, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "tag" })?;
    Ok(Json(view).into_response())
}

/// `PUT /api/v1/tags/{code}` with `{"name", "rule"?}`: creates (201) or replaces (200).
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad field (a rule's merchant must exist).
pub async fn put_tag(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_code(&code)?;
    let body = body_object(&body)?;
    only(&body, &["name", "rule"])?;
    let mut problems = Vec::new();
    let name = name(&body, &mut problems);
    let rule = match body.get("rule") {
        None | Some(Value::Null) => None,
        Some(value) => match TagRule::parse(value) {
            Ok(rule) => Some(rule),
            Err(more) => {
                problems.extend(more);
                None
            }
        },
    };
    if let Some(TagRule::BoughtAt { merchant, .. }) = &rule {
        let known: Option<i64> = sqlx::query_scalar("SELECT id FROM merchants WHERE code = $1")
            .bind(merchant)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
        if known.is_none() {
            problems.push((
                "rule.bought_at.merchant".to_owned(),
                "unknown merchant".to_owned(),
            ));
        }
    }
    problems_or(problems)?;
    let rule_text = rule.as_ref().map(|rule| rule.to_json().to_string());
    let detail = json!({"name": name, "rule": rule.as_ref().map(TagRule::to_json)});
    let now = state.clock.now().get();
    let new = save(
        &state,
        "tags",
        "tag",
        &code,
        &operator.name,
        &detail,
        (
            "UPDATE tags SET name = $2, rule = $3, updated_at_ms = $4, operator = $5 WHERE code = $1",
            "INSERT INTO tags (code, name, rule, updated_at_ms, operator) VALUES ($1, $2, $3, $4, $5)",
        ),
        vec![t(&code), t(&name), Bind::Text(rule_text), Bind::Int(now), t(&operator.name)],
    )
    .await?;
    let (_, view) = tag_view(&state, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "tag" })?;
    Ok(created(new, view))
}

/// Member ids of `codes`, or every unknown code as a problem under `field`.
async fn member_ids(state: &ApiState, codes: &[(String, String)]) -> Result<Vec<i64>, ApiError> {
    let mut ids = Vec::with_capacity(codes.len());
    let mut problems = Vec::new();
    for (field, code) in codes {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM members WHERE code = $1")
            .bind(code)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
        match id {
            Some(id) => ids.push(id),
            None => problems.push((field.clone(), format!("unknown member {code}"))),
        }
    }
    problems_or(problems)?;
    Ok(ids)
}

/// Adds and removes the tag `tag` in one transaction with its audit row.
async fn change_members(
    state: &ApiState,
    tag: (i64, &str),
    add: &[i64],
    remove: &[i64],
    source: &'static str,
    operator: &str,
) -> Result<(u64, u64), ApiError> {
    let now = state.clock.now().get();
    let mut tx = crate::store::begin_write(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let mut added = 0;
    for member in add {
        added += sqlx::query(
            "INSERT INTO member_tags (member_id, tag_id, source, assigned_at_ms, operator) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (member_id, tag_id) DO NOTHING",
        )
        .bind(member)
        .bind(tag.0)
        .bind(source)
        .bind(now)
        .bind(operator)
        .execute(&mut *tx)
        .await
        .map_err(ApiError::store)?
        .rows_affected();
    }
    let mut removed = 0;
    for member in remove {
        removed += sqlx::query("DELETE FROM member_tags WHERE member_id = $1 AND tag_id = $2")
            .bind(member)
            .bind(tag.0)
            .execute(&mut *tx)
            .await
            .map_err(ApiError::store)?
            .rows_affected();
    }
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
         VALUES ($1, $2, 'assign', 'tag', $3, $4)",
    )
    .bind(now)
    .bind(operator)
    .bind(tag.1)
    .bind(json!({"source": source, "added": added, "removed": removed}).to_string())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::store)?;
    tx.commit().await.map_err(ApiError::store)?;
    Ok((added, removed))
}

/// `POST /api/v1/tags/{code}/members` with `{"add": [member codes], "remove": [...]}`: by
/// hand. All or nothing: an unknown member is named and nothing changes.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown tag, [`ApiError::Invalid`] naming each bad entry.
pub async fn tag_members(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tag = tag_id(&state, &code).await?;
    let body = body_object(&body)?;
    only(&body, &["add", "remove"])?;
    let mut lists = Vec::new();
    let mut problems = Vec::new();
    for field in ["add", "remove"] {
        let mut codes = Vec::new();
        match body.get(field) {
            None => {}
            Some(Value::Array(items)) if items.len() <= TAG_MEMBERS_MAX => {
                for (index, item) in items.iter().enumerate() {
                    match item.as_str() {
                        Some(member) => {
                            codes.push((format!("{field}[{index}]"), member.to_owned()))
                        }
                        None => {
                            problems.push((format!("{field}[{index}]"), "a member code".to_owned()))
                        }
                    }
                }
            }
            Some(_) => problems.push((
                field.to_owned(),
                "a list of at most 10000 member codes".to_owned(),
            )),
        }
        lists.push(codes);
    }
    problems_or(problems)?;
    let add = member_ids(&state, &lists[0]).await?;
    let remove = member_ids(&state, &lists[1]).await?;
    let (added, removed) = change_members(
        &state,
        (tag, &code),
        &add,
        &remove,
        "manual",
        &operator.name,
    )
    .await?;
    Ok(Json(json!({"tag": code, "added": added, "removed": removed})).into_response())
}

/// `POST /api/v1/tags/{code}/import` with a text body: one member code per line (an optional
/// first line `member`, blank lines and `#` comments skipped). All or nothing: each bad line
/// is named (`line 3`) and nothing changes; importing the same file again adds nothing.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown tag, [`ApiError::Invalid`] naming each bad line.
pub async fn import_tag(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let tag = tag_id(&state, &code).await?;
    let Ok(text) = std::str::from_utf8(&body) else {
        return Err(invalid("body", "not UTF-8 text"));
    };
    let mut codes = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim().trim_end_matches(',').trim();
        if line.is_empty() || line.starts_with('#') || (index == 0 && line == "member") {
            continue;
        }
        codes.push((format!("line {}", index + 1), line.to_owned()));
    }
    if codes.len() > TAG_MEMBERS_MAX {
        return Err(invalid("body", "at most 10000 members per file"));
    }
    let add = member_ids(&state, &codes).await?;
    let (added, _) =
        change_members(&state, (tag, &code), &add, &[], "file", &operator.name).await?;
    Ok(Json(json!({"tag": code, "lines": codes.len(), "added": added})).into_response())
}

/// `POST /api/v1/tags/{code}/apply`: runs the tag's rule now (the engagement job also does,
/// every run).
///
/// # Errors
/// [`ApiError::NotFound`]; [`ApiError::Conflict`] when the tag has no rule.
pub async fn apply_tag(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (tag, view) = tag_view(&state, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "tag" })?;
    let rule = view
        .get("rule")
        .and_then(|rule| TagRule::parse(rule).ok())
        .ok_or_else(|| ApiError::Conflict {
            message: "the tag has no rule".to_owned(),
        })?;
    let (added, removed) =
        audience::apply_rule(&state.pool, tag, &rule, state.clock.now(), &operator.name)
            .await
            .map_err(ApiError::store)?;
    Ok(Json(json!({"tag": code, "added": added, "removed": removed})).into_response())
}

// ---- Segments ----------------------------------------------------------------------------

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
    .bind(now.get() - crate::api::reports::RFM_WINDOW_DAYS * crate::domain::time::DAY_MS)
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

// ---- Occasions ---------------------------------------------------------------------------

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

// ---- Campaigns ---------------------------------------------------------------------------

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
    let mut from = body
        .get("starts_on")
        .and_then(|_| date(&body, "starts_on", &mut problems));
    let mut to = body
        .get("ends_on")
        .and_then(|_| date(&body, "ends_on", &mut problems));
    match &occasion {
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
    let coupon = match body.get("coupon") {
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
    };
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
    let state_now: Option<String> =
        sqlx::query_scalar("SELECT state FROM campaigns WHERE code = $1")
            .bind(&code)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
    if state_now.as_deref().is_some_and(|s| s != "scheduled") {
        return Err(ApiError::Conflict {
            message: "the campaign has started; it cannot be changed".to_owned(),
        });
    }
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

// ---- Reminders ---------------------------------------------------------------------------

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
    sqlx::query(
        "INSERT INTO audit_log (at_ms, operator, action, resource, resource_code, detail) \
         VALUES ($1, $2, $3, 'reminder', $4, $5)",
    )
    .bind(now)
    .bind(&operator.name)
    .bind(if existed.is_some() {
        "replace"
    } else {
        "create"
    })
    .bind(&code)
    .bind(Value::Object(body).to_string())
    .execute(&mut *tx)
    .await
    .map_err(ApiError::store)?;
    tx.commit().await.map_err(ApiError::store)?;
    let view = reminder_view(&state, id, &code)
        .await?
        .ok_or(ApiError::NotFound { what: "reminder" })?;
    Ok(created(existed.is_none(), view))
}
