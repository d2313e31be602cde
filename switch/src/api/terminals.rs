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
use crate::api::change::{AuditEntry, Change};
use crate::api::error::ApiError;
use crate::api::{body_object, find, stored, ApiState};
use crate::domain::reference::TerminalRecord;
use crate::domain::TerminalStatus;
use crate::import;

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
    let change = Change::begin(&state).await?;
    let taken = change.current.data.terminals.iter().find(|terminal| {
        terminal.terminal_id.as_str() == terminal_id || terminal.ksi.as_str() == given_ksi
    });
    if let Some(taken) = taken {
        let what = if taken.terminal_id.as_str() == terminal_id {
            "terminal id"
        } else {
            "ksi"
        };
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
    let loaded = stored(&state).await?;
    let terminal = find(&loaded.data.terminals, "terminal", |terminal| {
        terminal.terminal_id.as_str() == terminal_id
    })?;
    Ok(Json(view(terminal)))
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
