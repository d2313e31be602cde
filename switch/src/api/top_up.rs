//! Online club-card top-ups (docs/top-up.md): an order for a card
//! (`POST /api/v1/cards/{code}/top-up-orders`, `GET /api/v1/top-up-orders/{reference}`), the
//! payment gateway's signed callback that pays it (`POST /api/v1/payments/callback`) and the
//! report of every callback received (`GET /api/v1/reports/top-up-callbacks`).
//!
//! An accepted callback becomes a club credit through the engine, keyed `top-up:<order>`: the
//! credit, the order's move to `paid` and the callback's row are one group-commit transaction,
//! and the key lets an order be credited once however many callbacks race for it. Every other
//! callback changes nothing but its own row in `top_up_callbacks`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{
    amount, idempotency_key, invalid, keyed_response, only, run, TOP_UP_KEY_PREFIX,
};
use crate::api::error::ApiError;
use crate::api::surveys::{refusal, tehran_time, SIGNATURE_HEADER};
use crate::api::{body_object, column, ApiState};
use crate::committer::{CreditFailure, Operation};
use crate::domain::{CardId, Rials, UnixMillis};
use crate::engine::credit::{Credit, CreditOutcome, CreditRefusal, TopUpPayment};
use crate::survey::InboundSecret;

mod callback;
mod report;

pub use callback::{parse_callback, Callback};
pub use report::{report, ReportParams};

/// The only currency of the club account.
pub const CURRENCY: &str = "IRR";
/// Longest payment or order reference, in characters.
pub const REFERENCE_CHARS_MAX: usize = 64;
/// Callbacks the report lists, newest first.
pub const RECENT_MAX: i64 = 50;
/// The operator name of the audit rows and credits a callback makes.
pub const GATEWAY_OPERATOR: &str = "payment-gateway";

/// What the top-up routes need (docs/config.md).
#[derive(Debug, Clone)]
pub struct TopUpSettings {
    /// How long after its creation an order may be paid.
    pub order_timeout_ms: i64,
    /// The callback's secret; without it the callback answers 503.
    pub gateway_secret: Option<InboundSecret>,
}

/// What became of one callback; each is one row of `top_up_callbacks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The order was paid and the card credited, now.
    Accepted,
    /// This payment reference was accepted before: nothing more.
    Duplicate,
    /// The order was paid by another payment: the gateway took the money twice.
    AlreadyPaid,
    /// No order has this reference.
    UnknownOrder,
    /// The order's time to be paid had passed.
    Late,
    /// The amount is not the order's.
    AmountMismatch,
    /// The currency is not the order's.
    CurrencyMismatch,
    /// The gateway reports the payment failed or was cancelled.
    NotPaid,
    /// The engine refused the credit (the balance would pass its maximum).
    Refused,
    /// The signature is missing or wrong.
    BadSignature,
    /// Signed, but not a callback.
    Malformed,
}

impl Outcome {
    /// Every outcome, in the report's order.
    pub const ALL: [Outcome; 11] = [
        Outcome::Accepted,
        Outcome::Duplicate,
        Outcome::AlreadyPaid,
        Outcome::UnknownOrder,
        Outcome::Late,
        Outcome::AmountMismatch,
        Outcome::CurrencyMismatch,
        Outcome::NotPaid,
        Outcome::Refused,
        Outcome::BadSignature,
        Outcome::Malformed,
    ];

    /// Its name in the table, the answer and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::AlreadyPaid => "already_paid",
            Outcome::UnknownOrder => "unknown_order",
            Outcome::Late => "late",
            Outcome::AmountMismatch => "amount_mismatch",
            Outcome::CurrencyMismatch => "currency_mismatch",
            Outcome::NotPaid => "not_paid",
            Outcome::Refused => "refused",
            Outcome::BadSignature => "bad_signature",
            Outcome::Malformed => "malformed",
        }
    }
}

/// An order as stored.
#[derive(Debug, Clone)]
struct OrderRow {
    id: i64,
    reference: String,
    idempotency_key: String,
    card_id: i64,
    card: String,
    amount_rials: i64,
    currency: String,
    state: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    payment_reference: Option<String>,
    paid_at_ms: Option<i64>,
}

const ORDER_SELECT: &str =
    "SELECT o.id, o.reference, o.idempotency_key, o.card_id, c.code AS card, \
     o.amount_rials, o.currency, o.state, o.created_at_ms, o.expires_at_ms, o.payment_reference, \
     o.paid_at_ms FROM top_up_orders o JOIN cards c ON c.id = o.card_id";

impl OrderRow {
    fn view(&self) -> Value {
        json!({
            "reference": self.reference,
            "card": self.card,
            "amount_rials": self.amount_rials,
            "currency": self.currency,
            "state": self.state,
            "created_at": tehran_time(self.created_at_ms),
            "expires_at": tehran_time(self.expires_at_ms),
            "payment_reference": self.payment_reference,
            "paid_at": self.paid_at_ms.map(tehran_time),
        })
    }
}

async fn order_where(
    state: &ApiState,
    condition: &str,
    value: &str,
) -> Result<Option<OrderRow>, ApiError> {
    let row = sqlx::query(&format!("{ORDER_SELECT} WHERE {condition} = $1"))
        .bind(value)
        .fetch_optional(&state.pool)
        .await
        .map_err(ApiError::store)?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(OrderRow {
        id: column(&row, "id")?,
        reference: column(&row, "reference")?,
        idempotency_key: column(&row, "idempotency_key")?,
        card_id: column(&row, "card_id")?,
        card: column(&row, "card")?,
        amount_rials: column(&row, "amount_rials")?,
        currency: column(&row, "currency")?,
        state: column(&row, "state")?,
        created_at_ms: column(&row, "created_at_ms")?,
        expires_at_ms: column(&row, "expires_at_ms")?,
        payment_reference: column(&row, "payment_reference")?,
        paid_at_ms: column(&row, "paid_at_ms")?,
    }))
}

/// `POST /api/v1/cards/{code}/top-up-orders` with `{"amount_rials": n, "currency": "IRR"}`
/// (currency optional) and an `Idempotency-Key`: `201` with the order and its reference, which
/// the payment gateway's callback names; a retry with the same key and body is `200` with the
/// same order.
///
/// # Errors
/// [`ApiError::Invalid`] for a missing key or a bad field; [`ApiError::NotFound`] for an unknown
/// card; [`ApiError::Conflict`] for a blocked card or a key used for another order.
pub async fn create_order(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = body_object(&body)?;
    only(&body, &["amount_rials", "currency"])?;
    let amount = amount(&body)?;
    match body.get("currency") {
        None => {}
        Some(Value::String(currency)) if currency == CURRENCY => {}
        Some(_) => return Err(invalid("currency", "the club account is in IRR only")),
    }
    let card: Option<(i64, String)> =
        sqlx::query_as("SELECT id, status FROM cards WHERE code = $1")
            .bind(&code)
            .fetch_optional(&state.pool)
            .await
            .map_err(ApiError::store)?;
    let (card_id, status) = card.ok_or(ApiError::NotFound { what: "card" })?;
    if let Some(order) = order_where(&state, "o.idempotency_key", &key).await? {
        return replay(&order, card_id, amount);
    }
    if status != "active" {
        return Err(ApiError::Conflict {
            message: "the card is blocked".to_owned(),
        });
    }
    let now = state.clock.now().get();
    let reference = format!("TU{}", hex::encode_upper(rand::random::<[u8; 10]>()));
    let inserted = sqlx::query(
        "INSERT INTO top_up_orders (reference, idempotency_key, card_id, amount_rials, currency, \
         state, created_at_ms, expires_at_ms, operator) \
         VALUES ($1, $2, $3, $4, $5, 'created', $6, $7, $8)",
    )
    .bind(&reference)
    .bind(&key)
    .bind(card_id)
    .bind(amount.get())
    .bind(CURRENCY)
    .bind(now)
    .bind(now.saturating_add(state.top_up.order_timeout_ms))
    .bind(&operator.name)
    .execute(&state.pool)
    .await;
    if let Err(error) = inserted {
        // The same key at the same moment: the other request's order is the answer.
        return match order_where(&state, "o.idempotency_key", &key).await? {
            Some(order) => replay(&order, card_id, amount),
            None => Err(ApiError::store(error)),
        };
    }
    let order = order_where(&state, "o.reference", &reference)
        .await?
        .ok_or_else(|| ApiError::store("the new order was not found"))?;
    info!(order = %reference, card = %code, amount = amount.get(), "top-up order created");
    Ok(keyed_response(CreditOutcome::Applied, order.view()))
}

/// The answer to a repeated order key: the order, or `409` when the key named another.
fn replay(order: &OrderRow, card_id: i64, amount: Rials) -> Result<Response, ApiError> {
    if order.card_id == card_id && order.amount_rials == amount.get() {
        Ok(keyed_response(CreditOutcome::Repeated, order.view()))
    } else {
        Err(ApiError::Conflict {
            message: format!(
                "idempotency key {} was used for another order",
                order.idempotency_key
            ),
        })
    }
}

/// `GET /api/v1/top-up-orders/{reference}`.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown reference.
pub async fn show_order(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let order = order_where(&state, "o.reference", &reference)
        .await?
        .ok_or(ApiError::NotFound {
            what: "top-up order",
        })?;
    Ok(Json(order.view()).into_response())
}

/// `POST /api/v1/payments/callback`, signed by the gateway (`X-Signature`: HMAC-SHA256 of the
/// body, hex). 503 without a configured secret (nothing recorded); 401 for a missing or wrong
/// signature and 400 for a signed body that is not a callback (both recorded, nothing else
/// changed); otherwise 200 with the outcome, which says whether the card was credited now.
///
/// # Errors
/// [`ApiError::Store`] when the database or the committer fails: nothing was recorded, and the
/// gateway should post again.
pub async fn callback(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(secret) = state.top_up.gateway_secret.as_ref() else {
        return Ok(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "payment callbacks are not configured",
        ));
    };
    let now = state.clock.now();
    let body_sha256 = hex::encode(Sha256::digest(&body));
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !secret.verifies(&body, signature) {
        record(&state, now, Outcome::BadSignature, None, None, &body_sha256).await?;
        warn!(body_sha256 = %body_sha256, "top-up callback with a missing or wrong signature");
        return Ok(refusal(
            StatusCode::UNAUTHORIZED,
            "missing or wrong signature",
        ));
    }
    let callback = match parse_callback(&body) {
        Ok(callback) => callback,
        Err(problems) => {
            record(&state, now, Outcome::Malformed, None, None, &body_sha256).await?;
            warn!(body_sha256 = %body_sha256, "top-up callback that is not a callback");
            return Ok((
                StatusCode::BAD_REQUEST,
                Json(json!({
                    "error": "not a payment callback",
                    "problems": problems
                        .into_iter()
                        .map(|(field, message)| json!({"field": field, "message": message}))
                        .collect::<Vec<_>>(),
                })),
            )
                .into_response());
        }
    };
    let (outcome, order) = decide(&state, now, &callback, &body_sha256).await?;
    if outcome != Outcome::Accepted {
        // An accepted callback's row was written with its credit.
        record(
            &state,
            now,
            outcome,
            Some(&callback),
            order.as_ref().map(|order| order.id),
            &body_sha256,
        )
        .await?;
    }
    let order_reference = order.as_ref().map(|order| order.reference.as_str());
    if outcome == Outcome::Accepted || outcome == Outcome::Duplicate {
        info!(
            payment = %callback.payment_reference,
            order = ?order_reference,
            amount = callback.amount.get(),
            outcome = outcome.as_str(),
            "top-up callback"
        );
    } else {
        warn!(
            payment = %callback.payment_reference,
            order = %callback.order_reference,
            amount = callback.amount.get(),
            currency = %callback.currency,
            outcome = outcome.as_str(),
            "top-up callback changed nothing"
        );
    }
    Ok(Json(json!({
        "payment_reference": callback.payment_reference,
        "order_reference": callback.order_reference,
        "outcome": outcome.as_str(),
        "credited": outcome == Outcome::Accepted,
    }))
    .into_response())
}

/// The checks, in order (docs/top-up.md), and for a callback that passes them the credit.
async fn decide(
    state: &ApiState,
    now: UnixMillis,
    callback: &Callback,
    body_sha256: &str,
) -> Result<(Outcome, Option<OrderRow>), ApiError> {
    let order = order_where(state, "o.reference", &callback.order_reference).await?;
    let accepted = sqlx::query_scalar::<_, Option<i64>>(
        "SELECT order_id FROM top_up_callbacks WHERE payment_reference = $1 \
         AND outcome = 'accepted'",
    )
    .bind(&callback.payment_reference)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::store)?
    .flatten();
    if accepted.is_some() {
        return Ok((Outcome::Duplicate, order));
    }
    let Some(order) = order else {
        return Ok((Outcome::UnknownOrder, None));
    };
    let outcome = if order.state == "paid" {
        Some(Outcome::AlreadyPaid)
    } else if !callback.paid {
        Some(Outcome::NotPaid)
    } else if callback.currency != order.currency {
        Some(Outcome::CurrencyMismatch)
    } else if callback.amount.get() != order.amount_rials {
        Some(Outcome::AmountMismatch)
    } else if now.get() > order.expires_at_ms {
        Some(Outcome::Late)
    } else {
        None
    };
    if let Some(outcome) = outcome {
        return Ok((outcome, Some(order)));
    }
    let credit = Credit {
        key: format!("{TOP_UP_KEY_PREFIX}{}", order.reference),
        card: CardId::new(order.card_id),
        merchant: None,
        amount: callback.amount,
        expires_at: None,
        operator: GATEWAY_OPERATOR.to_owned(),
        detail: json!({
            "order_reference": order.reference,
            "payment_reference": callback.payment_reference,
            "amount_rials": callback.amount.get(),
        })
        .to_string(),
        top_up: Some(TopUpPayment {
            order: order.id,
            payment_reference: callback.payment_reference.clone(),
            received_at: now,
            body_sha256: body_sha256.to_owned(),
        }),
    };
    let outcome = match run(state, Operation::Credit(credit)).await? {
        Ok(CreditOutcome::Applied) => Outcome::Accepted,
        // Another callback for this order won the race: which one decides the name.
        Ok(CreditOutcome::Repeated) => {
            let paid = order_where(state, "o.reference", &order.reference).await?;
            let by = paid.and_then(|order| order.payment_reference);
            if by.as_deref() == Some(callback.payment_reference.as_str()) {
                Outcome::Duplicate
            } else {
                Outcome::AlreadyPaid
            }
        }
        Err(CreditFailure::Refused(CreditRefusal::TooLarge | CreditRefusal::Zero)) => {
            Outcome::Refused
        }
        Err(_) => return Err(ApiError::store("the top-up's batch failed")),
    };
    Ok((outcome, Some(order)))
}

/// Records a callback that credited nothing.
async fn record(
    state: &ApiState,
    now: UnixMillis,
    outcome: Outcome,
    callback: Option<&Callback>,
    order: Option<i64>,
    body_sha256: &str,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO top_up_callbacks (received_at_ms, outcome, payment_reference, order_id, \
         amount_rials, currency, body_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(now.get())
    .bind(outcome.as_str())
    .bind(callback.map(|c| c.payment_reference.clone()))
    .bind(order)
    .bind(callback.map(|c| c.amount.get()))
    .bind(callback.map(|c| c.currency.clone()))
    .bind(body_sha256)
    .execute(&state.pool)
    .await
    .map_err(ApiError::store)?;
    Ok(())
}
