//! `POST /api/v1/cards/{code}/top-ups` and `…/store-credit`: money onto a card outside any
//! purchase. A top-up raises the club balance (money the member paid into the club's
//! account); a grant gives store credit at one merchant, non-cashable, expiring after that
//! merchant's credit days. Both need an `Idempotency-Key` header: a retry with the same key and
//! body is answered the same and changes nothing; the same key with another body is `409`.
//! The engine makes the credit, in a group commit, and the answer waits until it is durable.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use tokio::sync::oneshot;

use crate::api::auth::Writer;
use crate::api::error::ApiError;
use crate::api::{body_object, named, ApiState};
use crate::committer::{CreditFailure, CreditJob, Operation};
use crate::domain::time::DAY_MS;
use crate::domain::Rials;
use crate::engine::credit::{Credit, CreditOutcome, CreditRefusal, CREDIT_KEY_BYTES_MAX};

/// The request header that names a credit.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// `POST /api/v1/cards/{code}/top-ups` with `{"amount_rials": n}`.
///
/// # Errors
/// [`ApiError::Invalid`] for a missing key or a bad amount; [`ApiError::Conflict`] for a key
/// used for another credit; [`ApiError::NotFound`] for an unknown card.
pub async fn top_up(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = operator_key(&headers)?;
    let body = body_object(&body)?;
    only(&body, &["amount_rials"])?;
    let amount = amount(&body)?;
    let loaded = named(&state, vec![code.clone()]).await?;
    let card = find_id(&loaded.ids.cards, &code, "card")?;
    let detail = json!({"idempotency_key": key, "amount_rials": amount.get()});
    let credit = Credit {
        key: key.clone(),
        card,
        merchant: None,
        amount,
        expires_at: None,
        operator: operator.name.clone(),
        detail: detail.to_string(),
        top_up: None,
    };
    let answer = json!({
        "card": code,
        "account": "club",
        "amount_rials": amount.get(),
        "idempotency_key": key,
    });
    submit(&state, credit, answer).await
}

/// `POST /api/v1/cards/{code}/store-credit` with `{"merchant": code, "amount_rials": n}`.
///
/// # Errors
/// As [`top_up`], and [`ApiError::NotFound`] for an unknown merchant.
pub async fn grant(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = operator_key(&headers)?;
    let body = body_object(&body)?;
    only(&body, &["merchant", "amount_rials"])?;
    let amount = amount(&body)?;
    let merchant_code = body
        .get("merchant")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("merchant", "required, a merchant code"))?
        .to_owned();
    let loaded = named(&state, vec![code.clone(), merchant_code.clone()]).await?;
    let card = find_id(&loaded.ids.cards, &code, "card")?;
    let merchant = find_id(&loaded.ids.merchants, &merchant_code, "merchant")?;
    let days = loaded
        .data
        .merchants
        .iter()
        .find(|m| m.code.as_str() == merchant_code)
        .map_or(0, |m| i64::from(m.profile.credit_expiry_days));
    let now = state.clock.now();
    let expires_at = (days > 0).then(|| crate::domain::UnixMillis::new(now.get() + days * DAY_MS));
    let detail = json!({
        "idempotency_key": key,
        "merchant": merchant_code,
        "amount_rials": amount.get(),
    });
    let credit = Credit {
        key: key.clone(),
        card,
        merchant: Some(merchant),
        amount,
        expires_at,
        operator: operator.name.clone(),
        detail: detail.to_string(),
        top_up: None,
    };
    let answer = json!({
        "card": code,
        "account": "store_credit",
        "merchant": merchant_code,
        "amount_rials": amount.get(),
        "idempotency_key": key,
    });
    submit(&state, credit, answer).await
}

/// Hands `operation` to the engine and waits until its batch is durable (or refused).
///
/// # Errors
/// [`ApiError::Store`] when the committer is not running or dropped the operation.
pub async fn run(
    state: &ApiState,
    operation: Operation,
) -> Result<Result<CreditOutcome, CreditFailure>, ApiError> {
    let (reply, outcome) = oneshot::channel();
    state
        .credits
        .send(CreditJob { operation, reply })
        .await
        .map_err(|_| ApiError::store("the committer is not running"))?;
    outcome
        .await
        .map_err(|_| ApiError::store("the committer dropped the operation"))
}

/// Hands the credit to the engine and waits until it is durable.
async fn submit(state: &ApiState, credit: Credit, answer: Value) -> Result<Response, ApiError> {
    match run(state, Operation::Credit(credit)).await? {
        Ok(outcome) => Ok(keyed_response(outcome, answer)),
        Err(CreditFailure::Refused(CreditRefusal::KeyReused)) => Err(ApiError::Conflict {
            message: "this idempotency key was used for another credit".to_owned(),
        }),
        Err(CreditFailure::Refused(refusal)) => Err(invalid("amount_rials", &refusal.to_string())),
        Err(CreditFailure::TransferRefused(refusal)) => Err(ApiError::Conflict {
            message: refusal.to_string(),
        }),
        Err(CreditFailure::CouponRefused(refusal)) => Err(ApiError::Conflict {
            message: refusal.to_string(),
        }),
        Err(CreditFailure::System) => Err(ApiError::store("the credit's batch failed")),
    }
}

/// The answer of a keyed change: `201` when made now, `200` with `Idempotent-Replayed: true`
/// when the same key and content came before.
pub(crate) fn keyed_response(outcome: CreditOutcome, answer: Value) -> Response {
    match outcome {
        CreditOutcome::Applied => (StatusCode::CREATED, Json(answer)).into_response(),
        CreditOutcome::Repeated => {
            let mut response = (StatusCode::OK, Json(answer)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
    }
}

pub(crate) fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        problems: vec![(field.to_owned(), message.to_owned())],
    }
}

pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .unwrap_or_default();
    let printable = key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if key.is_empty() || key.len() > CREDIT_KEY_BYTES_MAX || !printable {
        return Err(invalid(
            "Idempotency-Key",
            "header required: 1..=64 printable ASCII characters",
        ));
    }
    Ok(key.to_owned())
}

/// Keys of online top-ups' credits (docs/top-up.md); an operator's credit may not use them.
pub const TOP_UP_KEY_PREFIX: &str = "top-up:";

/// An operator credit's key: any [`idempotency_key`] outside the online top-ups' keys.
fn operator_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = idempotency_key(headers)?;
    if key.starts_with(TOP_UP_KEY_PREFIX) {
        return Err(invalid(
            "Idempotency-Key",
            "keys starting with top-up: are reserved for online top-ups",
        ));
    }
    Ok(key)
}

pub(crate) fn only(body: &Map<String, Value>, fields: &[&str]) -> Result<(), ApiError> {
    let unknown: Vec<(String, String)> = body
        .keys()
        .filter(|field| !fields.contains(&field.as_str()))
        .map(|field| (field.clone(), "unknown field".to_owned()))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid { problems: unknown })
    }
}

/// The body's `amount_rials`: an integer 1..=999999999999.
pub(crate) fn amount(body: &Map<String, Value>) -> Result<Rials, ApiError> {
    body.get("amount_rials")
        .and_then(Value::as_i64)
        .filter(|amount| *amount > 0)
        .and_then(Rials::new)
        .ok_or_else(|| invalid("amount_rials", "required, an integer 1..=999999999999"))
}

fn find_id<Id: Copy>(
    ids: &crate::fast_hash::CodeMap<crate::domain::Code, Id>,
    code: &str,
    what: &'static str,
) -> Result<Id, ApiError> {
    // A code that cannot be a code names nothing.
    crate::domain::Code::parse(code)
        .ok()
        .and_then(|code| ids.get(&code).copied())
        .ok_or(ApiError::NotFound { what })
}
