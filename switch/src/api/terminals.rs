//! `/api/v1/terminals`: create a terminal, which makes its TMK (and its KSI when none is
//! given) and returns the TMK once, in that response only; read a terminal, never its key.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rand::RngCore;
use serde_json::{json, Value};
use zeroize::Zeroize;

use crate::api::auth::{Reader, Writer};
use crate::api::change::{names_in, AuditEntry, Change, KeyChange};
use crate::api::error::ApiError;
use crate::api::{body_object, find, named, ApiState};
use crate::domain::reference::TerminalRecord;
use crate::domain::{ReferenceData, TerminalStatus};
use crate::import;
use crate::store::reference;

/// The fields a create request may carry; the TMK is never one of them.
const FIELDS: &[&str] = &["terminal_id", "merchant", "ksi", "status", "groups"];

/// `POST /api/v1/terminals`: `{terminal_id, merchant, ksi?, status?, groups?}`. Answers 201
/// with the terminal and `tmk_hex`, which is not stored in clear and cannot be read again.
///
/// # Errors
/// [`ApiError::Conflict`] when the terminal id or KSI is taken; [`ApiError::Invalid`] per
/// wrong field.
pub async fn create(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut record = body_object(&body)?;
    let unknown: Vec<(String, String)> = record
        .keys()
        .filter(|field| !FIELDS.contains(&field.as_str()))
        .map(|field| (field.clone(), "unknown field".to_owned()))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::Invalid { problems: unknown });
    }
    let mut random = [0_u8; 40];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let (tmk, ksi) = random.split_at(32);
    if !record.contains_key("ksi") {
        record.insert("ksi".to_owned(), Value::from(hex::encode_upper(ksi)));
    }
    let detail = Value::Object(record.clone());
    let terminal_id = record
        .get("terminal_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let given_ksi = record
        .get("ksi")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut tmk_hex = hex::encode(tmk);
    random.zeroize();
    record.insert("tmk_hex".to_owned(), Value::from(tmk_hex.clone()));
    let mut names = Vec::new();
    names_in(&detail, &mut names);
    let mut change = Change::begin(&state, names).await?;
    let id_taken = change
        .current
        .data
        .terminals
        .iter()
        .any(|terminal| terminal.terminal_id.as_str() == terminal_id);
    let ksi_taken = reference::ksi_taken(change.conn(), &given_ksi).await;
    let ksi_taken = match ksi_taken {
        Ok(taken) => taken,
        Err(error) => {
            tmk_hex.zeroize();
            return Err(ApiError::store(error));
        }
    };
    if id_taken || ksi_taken {
        let what = if id_taken { "terminal id" } else { "ksi" };
        tmk_hex.zeroize();
        return Err(ApiError::Conflict {
            message: format!("a terminal with this {what} exists"),
        });
    }
    let parsed = import::parse_over(
        json!({ "terminals": [Value::Object(record)] }),
        &state.pan_key,
        &change.current.ids,
    );
    let data = match parsed {
        Ok(data) => data,
        Err(error) => {
            tmk_hex.zeroize();
            return Err(ApiError::from_import(error));
        }
    };
    let Some(terminal) = data.terminals.first() else {
        tmk_hex.zeroize();
        return Err(ApiError::NotFound { what: "terminal" });
    };
    let mut body = view(terminal);
    let entry = AuditEntry {
        action: "create",
        resource: "terminal",
        code: terminal_id,
        detail,
    };
    if let Err(error) = change.save(&operator, &data, entry).await {
        tmk_hex.zeroize();
        return Err(error);
    }
    if let Value::Object(map) = &mut body {
        map.insert("tmk_hex".to_owned(), Value::from(tmk_hex.clone()));
    }
    tmk_hex.zeroize();
    Ok((StatusCode::CREATED, Json(body)))
}

/// `GET /api/v1/terminals/{terminal_id}`: the terminal without its key.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown terminal id.
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(terminal_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = named(&state, vec![terminal_id.clone()]).await?;
    let terminal = find(&loaded.data.terminals, "terminal", |terminal| {
        terminal.terminal_id.as_str() == terminal_id
    })?;
    Ok(Json(view(terminal)))
}

/// `PUT /api/v1/terminals/{terminal_id}` with any of `{merchant, status, groups}`: changes an
/// existing terminal (move it to another merchant, take it out of service, regroup it); its
/// keys stay as they are (rotate them with `rotate-key`).
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown terminal; [`ApiError::Invalid`] per wrong field.
pub async fn update(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(terminal_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_object(&body)?;
    let mut names = vec![terminal_id.clone()];
    names_in(&Value::Object(body.clone()), &mut names);
    let change = Change::begin(&state, names).await?;
    let mut record = find(&change.current.data.terminals, "terminal", |t| {
        t.terminal_id.as_str() == terminal_id
    })?
    .clone();
    let ids = &change.current.ids;
    let mut problems = Vec::new();
    for (field, value) in &body {
        match field.as_str() {
            "merchant" => match value
                .as_str()
                .and_then(|code| ids.merchants.keys().find(|known| known.as_str() == code))
            {
                Some(code) => record.merchant = code.clone(),
                None => problems.push((field.clone(), "no merchant has this code".to_owned())),
            },
            "status" => match value.as_str() {
                Some("active") => record.status = TerminalStatus::Active,
                Some("inactive") => record.status = TerminalStatus::Inactive,
                _ => problems.push((
                    field.clone(),
                    "must be \"active\" or \"inactive\"".to_owned(),
                )),
            },
            "groups" => {
                let codes: Option<Vec<_>> = value.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|item| {
                            item.as_str().and_then(|code| {
                                ids.terminal_groups
                                    .keys()
                                    .find(|known| known.as_str() == code)
                            })
                        })
                        .collect::<Option<Vec<_>>>()
                });
                match codes {
                    Some(mut codes) => {
                        let named = codes.len();
                        codes.sort();
                        codes.dedup();
                        if codes.len() == named {
                            record.groups = codes.into_iter().cloned().collect();
                        } else {
                            problems.push((field.clone(), "names a code twice".to_owned()));
                        }
                    }
                    None => problems.push((
                        field.clone(),
                        "must be a list of terminal group codes".to_owned(),
                    )),
                }
            }
            _ => problems.push((field.clone(), "unknown field".to_owned())),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid { problems });
    }
    let answer = view(&record);
    let data = ReferenceData {
        terminals: vec![record],
        ..ReferenceData::default()
    };
    let entry = AuditEntry {
        action: "update",
        resource: "terminal",
        code: terminal_id,
        detail: Value::Object(body),
    };
    change.save(&operator, &data, entry).await?;
    Ok(Json(answer))
}

/// Random KSIs tried before a rotation gives up: each is free but for one chance in 2^64.
const KSI_TRIES_MAX: usize = 8;

/// Longest overlap of a rotation: a week, long enough to reach every terminal of a network,
/// short enough that a stolen old key does not stay useful.
pub const OVERLAP_SECONDS_MAX: i64 = 7 * 24 * 3_600;
/// The overlap when none is asked for: a day.
pub const OVERLAP_SECONDS_DEFAULT: i64 = 24 * 3_600;

/// `POST /api/v1/terminals/{terminal_id}/rotate-key` with `{"overlap_seconds": n}` (default a
/// day, at most a week, `0` for none): makes a new TMK and KSI, returned in this response only;
/// the old key keeps working until the overlap ends, then requests under it get `63`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown terminal; [`ApiError::Invalid`] for a bad overlap.
pub async fn rotate(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(terminal_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = if body.is_empty() {
        serde_json::Map::new()
    } else {
        body_object(&body)?
    };
    if let Some(field) = body
        .keys()
        .find(|field| field.as_str() != "overlap_seconds")
    {
        return Err(ApiError::Invalid {
            problems: vec![(field.clone(), "unknown field".to_owned())],
        });
    }
    let overlap = match body.get("overlap_seconds") {
        None => OVERLAP_SECONDS_DEFAULT,
        Some(value) => value
            .as_i64()
            .filter(|seconds| (0..=OVERLAP_SECONDS_MAX).contains(seconds))
            .ok_or_else(|| ApiError::Invalid {
                problems: vec![(
                    "overlap_seconds".to_owned(),
                    "must be an integer 0..=604800".to_owned(),
                )],
            })?,
    };
    let mut change = Change::begin(&state, vec![terminal_id.clone()]).await?;
    let current = find(&change.current.data.terminals, "terminal", |t| {
        t.terminal_id.as_str() == terminal_id
    })?
    .clone();
    let mut random = [0_u8; 40];
    // A random 64-bit KSI repeats one in billions of rotations; the loop is bounded all the
    // same, and a store that claims every KSI is taken is a store failure.
    let mut fresh = None;
    for _ in 0..KSI_TRIES_MAX {
        rand::rngs::OsRng.fill_bytes(&mut random);
        let ksi = hex::encode_upper(random.get(32..).unwrap_or_default());
        let taken = reference::ksi_taken(change.conn(), &ksi).await;
        if !taken.map_err(ApiError::store)? {
            fresh = Some(ksi);
            break;
        }
    }
    let ksi = fresh.ok_or_else(|| ApiError::store("no free ksi found"))?;
    let mut tmk_bytes = [0_u8; 32];
    tmk_bytes.copy_from_slice(random.get(..32).unwrap_or(&[0; 32]));
    random.zeroize();
    let mut rotated = current.clone();
    rotated.ksi = crate::domain::KeySetId::parse(ksi.as_bytes()).map_err(ApiError::store)?;
    rotated.tmk = protocol::Tmk::from_bytes(tmk_bytes);
    let mut tmk_hex = hex::encode(tmk_bytes);
    tmk_bytes.zeroize();
    let previous_ksi = current.ksi.as_str().to_owned();
    let now = state.clock.now().get();
    let valid_until_ms = now + overlap * 1_000;
    let keys = if overlap > 0 {
        KeyChange::KeepPrevious {
            terminal: terminal_id.clone(),
            valid_until_ms,
        }
    } else {
        KeyChange::DropPrevious {
            terminal: terminal_id.clone(),
        }
    };
    let data = ReferenceData {
        terminals: vec![rotated],
        ..ReferenceData::default()
    };
    let entry = AuditEntry {
        action: "rotate_key",
        resource: "terminal",
        code: terminal_id.clone(),
        detail: json!({"new_ksi": ksi, "previous_ksi": previous_ksi, "overlap_seconds": overlap}),
    };
    if let Err(error) = change.save_with(&operator, &data, entry, keys).await {
        tmk_hex.zeroize();
        return Err(error);
    }
    let answer = json!({
        "terminal_id": terminal_id,
        "ksi": ksi,
        "tmk_hex": tmk_hex,
        "previous_ksi": (overlap > 0).then_some(previous_ksi),
        "previous_valid_until_ms": (overlap > 0).then_some(valid_until_ms),
    });
    tmk_hex.zeroize();
    Ok(Json(answer))
}

/// `POST /api/v1/terminals/{terminal_id}/revoke-previous-key`: the previous key of a rotation
/// stops working now (a terminal whose old key may have leaked).
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown terminal.
pub async fn revoke_previous(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(terminal_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let change = Change::begin(&state, vec![terminal_id.clone()]).await?;
    find(&change.current.data.terminals, "terminal", |t| {
        t.terminal_id.as_str() == terminal_id
    })?;
    let revoked = change
        .current
        .previous_keys
        .iter()
        .find(|p| p.terminal.as_str() == terminal_id)
        .map(|p| p.ksi.as_str().to_owned());
    let entry = AuditEntry {
        action: "revoke_previous_key",
        resource: "terminal",
        code: terminal_id.clone(),
        detail: json!({"revoked_ksi": revoked}),
    };
    let keys = KeyChange::DropPrevious {
        terminal: terminal_id.clone(),
    };
    change
        .save_with(&operator, &ReferenceData::default(), entry, keys)
        .await?;
    Ok(Json(
        json!({"terminal_id": terminal_id, "revoked_ksi": revoked}),
    ))
}

/// A terminal without its TMK.
fn view(terminal: &TerminalRecord) -> Value {
    let groups: Vec<&str> = terminal.groups.iter().map(|code| code.as_str()).collect();
    json!({
        "terminal_id": terminal.terminal_id.as_str(),
        "ksi": terminal.ksi.as_str(),
        "merchant": terminal.merchant.as_str(),
        "status": match terminal.status {
            TerminalStatus::Active => "active",
            TerminalStatus::Inactive => "inactive",
        },
        "groups": groups,
    })
}
