//! `/api/v1/cards`: issue a card (the PAN in the request only), read it (BIN and last four,
//! never the PAN), block, unblock and renew it. A change takes effect on the card's next
//! request (blocked: `62`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::change::{names_in, AuditEntry, Change};
use crate::api::credits;
use crate::api::error::ApiError;
use crate::api::{body_object, find, named, ApiState};
use crate::committer::{CreditFailure, Operation};
use crate::domain::reference::CardRecord;
use crate::domain::{CardExpiry, CardStatus, Code, ReferenceData};
use crate::engine::credit::{CreditOutcome, Transfer};
use crate::import;
use crate::store::reference;

/// `GET /api/v1/cards/{code}`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown code.
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = named(&state, vec![code.clone()]).await?;
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
    writer: Writer,
    state: State<Arc<ApiState>>,
    code: Path<String>,
    status: CardStatus,
) -> Result<Json<Value>, ApiError> {
    let action = match status {
        CardStatus::Blocked => "block",
        CardStatus::Active => "unblock",
    };
    update(writer, state, code, action, json!({}), |card| {
        card.status = status;
        Ok(())
    })
    .await
}

/// `POST /api/v1/cards/{code}/renew` with `{"expiry": "YYYY-MM"}`: a later expiry month, the
/// same card, PAN and balances.
///
/// # Errors
/// [`ApiError::Invalid`] when the month is malformed or not after the current expiry.
pub async fn renew(
    writer: Writer,
    state: State<Arc<ApiState>>,
    code: Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let body = body_object(&body)?;
    let invalid = |message: &str| ApiError::Invalid {
        problems: vec![("expiry".to_owned(), message.to_owned())],
    };
    let text = body
        .get("expiry")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("required, a month YYYY-MM"))?;
    let expiry = CardExpiry::parse(text).map_err(|error| invalid(error.reason))?;
    let detail = json!({ "expiry": text });
    update(writer, state, code, "renew", detail, move |card| {
        if expiry <= card.expiry {
            return Err(invalid("must be after the current expiry"));
        }
        card.expiry = expiry;
        Ok(())
    })
    .await
}

/// `POST /api/v1/cards`: issues a card, `{code, pan, member, expiry, status?, tier?}` as in
/// the import. The PAN is kept only as its keyed token with BIN and last four; it is never
/// answered, logged or audited.
///
/// # Errors
/// [`ApiError::Conflict`] when the code or the PAN is already issued; [`ApiError::Invalid`]
/// per wrong field (a PAN that fails the Luhn check included).
pub async fn issue(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let record = body_object(&body)?;
    let mut detail = record.clone();
    detail.remove("pan");
    let code = record
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mut names = Vec::new();
    names_in(&Value::Object(detail.clone()), &mut names);
    let mut change = Change::begin(&state, names).await?;
    if change.current.ids.cards.keys().any(|c| c.as_str() == code) {
        return Err(ApiError::Conflict {
            message: "a card with this code exists".to_owned(),
        });
    }
    let data = import::parse_over(
        json!({ "cards": [Value::Object(record)] }),
        &state.pan_key,
        &change.current.ids,
    )
    .map_err(ApiError::from_import)?;
    let card = data
        .cards
        .first()
        .ok_or(ApiError::NotFound { what: "card" })?;
    let holder = reference::card_with_token(change.conn(), &card.token).await;
    if holder.map_err(ApiError::store)?.is_some() {
        return Err(ApiError::Conflict {
            message: "this PAN is already issued to another card".to_owned(),
        });
    }
    let body = view(card);
    let entry = AuditEntry {
        action: "issue",
        resource: "card",
        code,
        detail: Value::Object(detail),
    };
    change.save(&operator, &data, entry).await?;
    Ok((StatusCode::CREATED, Json(body)))
}

/// The body of a card replacement: the new card's code and PAN, and its expiry if not the old
/// card's (each as sent, checked as a card record by [`ReplaceRequest::new_card`]).
struct ReplaceRequest {
    new_code: Value,
    pan: Value,
    expiry: Option<Value>,
}

impl ReplaceRequest {
    /// The request in `body`, or the field it does not know.
    fn parse(body: &Bytes) -> Result<ReplaceRequest, ApiError> {
        let body = body_object(body)?;
        if let Some(field) = body
            .keys()
            .find(|field| !["new_code", "pan", "expiry"].contains(&field.as_str()))
        {
            return Err(ApiError::Invalid {
                problems: vec![(field.clone(), "unknown field".to_owned())],
            });
        }
        Ok(ReplaceRequest {
            new_code: body.get("new_code").cloned().unwrap_or(Value::Null),
            pan: body.get("pan").cloned().unwrap_or(Value::Null),
            expiry: body.get("expiry").cloned(),
        })
    }

    /// The new card: the old card's member and tier, validated as an imported card would be
    /// (a problem with its code is reported as `new_code`), and not the old card itself.
    fn new_card(
        &self,
        state: &ApiState,
        change: &Change,
        old: &CardRecord,
    ) -> Result<CardRecord, ApiError> {
        let record = json!({
            "code": self.new_code,
            "pan": self.pan,
            "member": old.member.as_str(),
            "expiry": self.expiry.clone().unwrap_or_else(|| Value::from(old.expiry.to_string())),
            "tier": old.tier.as_ref().map(|tier| tier.as_str()),
        });
        let data = import::parse_over(
            json!({ "cards": [record] }),
            &state.pan_key,
            &change.current.ids,
        )
        .map_err(|error| match ApiError::from_import(error) {
            ApiError::Invalid { problems } => ApiError::Invalid {
                problems: problems
                    .into_iter()
                    .map(|(field, message)| {
                        let field = if field == "code" {
                            "new_code".to_owned()
                        } else {
                            field
                        };
                        (field, message)
                    })
                    .collect(),
            },
            other => other,
        })?;
        let new = data
            .cards
            .first()
            .ok_or(ApiError::NotFound { what: "card" })?
            .clone();
        if new.code == old.code {
            return Err(ApiError::Invalid {
                problems: vec![(
                    "new_code".to_owned(),
                    "must differ from the old card's".to_owned(),
                )],
            });
        }
        Ok(new)
    }
}

/// `POST /api/v1/cards/{code}/replace` with `{"new_code", "pan", "expiry"?}`: issues the new
/// card to the same member and tier (expiry: the old card's unless given), blocks the old one,
/// and moves every balance to the new card: the club balance and each store-credit lot, with its
/// merchant and expiry. The move waits until no pending request holds part of the old card's
/// balances (`409` until then; the old card is already blocked, so none start, and a retry
/// with the same body finishes the move). A retry after success answers `200` and changes
/// nothing.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown card; [`ApiError::Conflict`] when `new_code` names
/// another card, the PAN is issued already, the card was replaced by another, or holds remain.
pub async fn replace(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request = ReplaceRequest::parse(&body)?;
    let mut names = vec![code.clone()];
    if let Some(new_code) = request.new_code.as_str() {
        names.push(new_code.to_owned());
    }
    let mut change = Change::begin(&state, names).await?;
    let old = find(&change.current.data.cards, "card", |card| {
        card.code.as_str() == code
    })?
    .clone();
    let new = request.new_card(&state, &change, &old)?;
    // A card is replaced once: a second replacement by another card is refused before it
    // issues anything.
    let replaced_by = reference::replacement_of(&state.pool, &code)
        .await
        .map_err(ApiError::store)?;
    if replaced_by
        .as_deref()
        .is_some_and(|by| by != new.code.as_str())
    {
        return Err(ApiError::Conflict {
            message: "this card was already replaced by another card".to_owned(),
        });
    }
    let existing = change
        .current
        .data
        .cards
        .iter()
        .find(|c| c.code == new.code);
    let issued = match existing {
        Some(card) if card.token == new.token && card.member == old.member => false,
        Some(_) => {
            return Err(ApiError::Conflict {
                message: "new_code names another card".to_owned(),
            })
        }
        None => {
            let holder = reference::card_with_token(change.conn(), &new.token).await;
            if holder.map_err(ApiError::store)?.is_some() {
                return Err(ApiError::Conflict {
                    message: "this PAN is already issued to another card".to_owned(),
                });
            }
            true
        }
    };
    let detail = json!({ "new_code": new.code.as_str() });
    if issued || old.status != CardStatus::Blocked {
        let mut blocked = old.clone();
        blocked.status = CardStatus::Blocked;
        let cards = if issued {
            vec![new.clone(), blocked]
        } else {
            vec![blocked]
        };
        let data = ReferenceData {
            cards,
            ..ReferenceData::default()
        };
        let entry = AuditEntry {
            action: "replace",
            resource: "card",
            code: code.clone(),
            detail: detail.clone(),
        };
        change.save(&operator, &data, entry).await?;
    } else {
        drop(change);
    }
    let ids = named(&state, vec![old.code.to_string(), new.code.to_string()])
        .await?
        .ids;
    let id_of = |card: &Code| {
        ids.cards
            .get(card)
            .copied()
            .ok_or(ApiError::NotFound { what: "card" })
    };
    let transfer = Transfer {
        from: id_of(&old.code)?,
        to: id_of(&new.code)?,
        operator: operator.name.clone(),
        detail: detail.to_string(),
    };
    let outcome = credits::run(&state, Operation::Transfer(transfer)).await?;
    let mut blocked = old;
    blocked.status = CardStatus::Blocked;
    let answer = json!({ "old": view(&blocked), "new": view(&new) });
    match outcome {
        Ok(CreditOutcome::Applied) => Ok((StatusCode::CREATED, Json(answer))),
        Ok(CreditOutcome::Repeated) => Ok((StatusCode::OK, Json(answer))),
        Err(CreditFailure::System) => Err(ApiError::store("the transfer's batch failed")),
        Err(failure) => Err(ApiError::Conflict {
            message: failure.to_string(),
        }),
    }
}

/// Changes one stored card with `edit` and saves it.
async fn update(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    action: &'static str,
    detail: Value,
    edit: impl FnOnce(&mut CardRecord) -> Result<(), ApiError>,
) -> Result<Json<Value>, ApiError> {
    let change = Change::begin(&state, vec![code.clone()]).await?;
    let mut card = find(&change.current.data.cards, "card", |card| {
        card.code.as_str() == code
    })?
    .clone();
    edit(&mut card)?;
    let body = view(&card);
    let data = ReferenceData {
        cards: vec![card],
        ..ReferenceData::default()
    };
    let entry = AuditEntry {
        action,
        resource: "card",
        code,
        detail,
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
