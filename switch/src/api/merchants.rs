//! `/api/v1/merchants`: list, read, and create or replace by code (`PUT`). A merchant's JSON
//! is its record in the import format (`docs/import-format.md`), so what `GET` returns can be
//! sent back with `PUT`, and `PUT` validates exactly as an import does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::change::{AuditEntry, Change};
use crate::api::error::ApiError;
use crate::api::{body_object, find, stored, ApiState};
use crate::domain::reference::MerchantRecord;
use crate::domain::MerchantStatus;
use crate::import;

/// `GET /api/v1/merchants`: every merchant, by code.
///
/// # Errors
/// [`ApiError`] when the token is wrong or the store fails.
pub async fn list(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
) -> Result<Json<Value>, ApiError> {
    let loaded = stored(&state).await?;
    let mut merchants: Vec<&MerchantRecord> = loaded.data.merchants.iter().collect();
    merchants.sort_by(|a, b| a.code.cmp(&b.code));
    let items: Vec<Value> = merchants.into_iter().map(view).collect();
    Ok(Json(json!({ "merchants": items })))
}

/// `GET /api/v1/merchants/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = stored(&state).await?;
    let merchant = find(&loaded.data.merchants, "merchant", |merchant| {
        merchant.code.as_str() == code
    })?;
    Ok(Json(view(merchant)))
}

/// `PUT /api/v1/merchants/{code}`: creates the merchant (201) or replaces its record (200).
/// The body is the import record; its `code`, if given, must be the path's.
///
/// # Errors
/// [`ApiError::Invalid`] naming each wrong field; nothing is changed.
pub async fn put(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut record = body_object(&body)?;
    match record.get("code") {
        None => {
            record.insert("code".to_owned(), Value::from(code.clone()));
        }
        Some(given) if given.as_str() == Some(code.as_str()) => {}
        Some(_) => {
            return Err(ApiError::Invalid {
                problems: vec![("code".to_owned(), "must be the code in the path".to_owned())],
            })
        }
    }
    let detail = Value::Object(record.clone());
    let change = Change::begin(&state).await?;
    let exists = change
        .current
        .data
        .merchants
        .iter()
        .any(|m| m.code.as_str() == code);
    let data = import::parse_over(
        json!({ "merchants": [Value::Object(record)] }),
        &state.pan_key,
        &change.current.ids,
    )
    .map_err(ApiError::from_import)?;
    let saved = data
        .merchants
        .first()
        .map(view)
        .ok_or(ApiError::NotFound { what: "merchant" })?;
    let entry = AuditEntry {
        action: if exists { "replace" } else { "create" },
        resource: "merchant",
        code,
        detail,
    };
    change.save(&operator, &data, entry).await?;
    let status = if exists {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)))
}

/// A merchant as the import format writes it.
fn view(merchant: &MerchantRecord) -> Value {
    let profile = &merchant.profile;
    let groups: Vec<&str> = merchant.groups.iter().map(|code| code.as_str()).collect();
    json!({
        "code": merchant.code.as_str(),
        "name": profile.name,
        "iban": profile.iban.as_str(),
        "status": match profile.status {
            MerchantStatus::Active => "active",
            MerchantStatus::Inactive => "inactive",
        },
        "currency": profile.currency.get(),
        "fee_rate": profile.fee.rate().to_string(),
        "fee_rials_min": profile.fee.fee_rials_min().get(),
        "fee_rials_max": profile.fee.fee_rials_max().get(),
        "amount_rials_max": profile.amount_rials_max.get(),
        "cashback_allowed": profile.cashback_allowed,
        "credit_expiry_days": profile.credit_expiry_days,
        "utc_offset_minutes": profile.utc_offset_minutes,
        "groups": groups,
    })
}
