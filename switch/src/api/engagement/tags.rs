//! Tags: by hand, by file and by rule.

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
use crate::engagement::audience::{self, TagRule};
use crate::store::audit;

use super::{check_code, created, name, problems_or, save, t, Bind, TAG_MEMBERS_MAX};

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
    let detail = json!({"source": source, "added": added, "removed": removed}).to_string();
    let entry = audit::Audited {
        at_ms: now,
        operator,
        action: "assign",
        resource: "tag",
        code: tag.1,
        detail: &detail,
    };
    audit::record(&mut tx, &entry)
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
