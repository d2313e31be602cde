//! The SMS gateway's webhook for survey replies (`POST /api/v1/sms/inbound`, signed with HMAC-SHA256).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tracing::info;

use crate::api::error::ApiError;
use crate::api::{body_object, ApiState};
use crate::domain::survey::{mask_phone, REPLY_CHARS_MAX};
use crate::domain::Phone;
use crate::survey::inbound::{self, Inbound, InboundError};

use super::refusal;
use super::{MESSAGE_ID_CHARS_MAX, SIGNATURE_HEADER};

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
