//! `/api/v1/cards`: read a card (BIN and last four only, never the PAN), block and unblock it.
//! Blocking takes effect on the card's next request (`62`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::change::{AuditEntry, Change};
use crate::api::error::ApiError;
use crate::api::{find, stored, ApiState};
use crate::domain::reference::CardRecord;
use crate::domain::{CardStatus, ReferenceData};

/// `GET /api/v1/cards/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = stored(&state).await?;
    let card = find(&loaded.data.cards, "card", |card| {
        card.code.as_str() == code
    })?;
    Ok(Json(view(card)))
}

/// `POST /api/v1/cards/{code}/block`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn block(
    writer: Writer,
    state: State<Arc<ApiState>>,
    code: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(writer, state, code, CardStatus::Blocked).await
}

/// `POST /api/v1/cards/{code}/unblock`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn unblock(
    writer: Writer,
    state: State<Arc<ApiState>>,
    code: Path<String>,
) -> Result<Json<Value>, ApiError> {
    set_status(writer, state, code, CardStatus::Active).await
}

async fn set_status(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    status: CardStatus,
) -> Result<Json<Value>, ApiError> {
    let change = Change::begin(&state).await?;
    let mut card = change
        .current
        .data
        .cards
        .iter()
        .find(|card| card.code.as_str() == code)
        .cloned()
        .ok_or(ApiError::NotFound { what: "card" })?;
    card.status = status;
    let body = view(&card);
    let data = ReferenceData {
        cards: vec![card],
        ..ReferenceData::default()
    };
    let entry = AuditEntry {
        action: match status {
            CardStatus::Blocked => "block",
            CardStatus::Active => "unblock",
        },
        resource: "card",
        code,
        detail: json!({}),
    };
    change.save(&operator, &data, entry).await?;
    Ok(Json(body))
}

/// A card as an operator may see it: no PAN, no token.
fn view(card: &CardRecord) -> Value {
    json!({
        "code": card.code.as_str(),
        "member": card.member.as_str(),
        "bin": String::from_utf8_lossy(&card.bin),
        "last4": String::from_utf8_lossy(&card.last4),
        "status": match card.status {
            CardStatus::Active => "active",
            CardStatus::Blocked => "blocked",
        },
        "expiry": card.expiry.to_string(),
        "tier": card.tier.as_ref().map(|code| code.as_str()),
    })
}
