//! Member coupons (docs/loyalty.md): `POST /api/v1/members/{code}/coupons` issues one to a
//! member, `POST /api/v1/coupons/win-back` issues one to every member of the win-back list,
//! `GET /api/v1/members/{code}/coupons` lists a member's. Issues need an `Idempotency-Key`
//! header: a retry with the same key and terms changes nothing (`200`, `Idempotent-Replayed`);
//! the same key with other terms is `409`. The engine issues the coupon in a group commit, with
//! the member's message, and the answer waits until it is durable.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use sqlx::Row;
use tokio::sync::oneshot;

use crate::api::auth::{Reader, Writer};
use crate::api::credits::{idempotency_key, invalid, keyed_response, only};
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::committer::{CreditFailure, CreditJob, Operation};
use crate::domain::time::DAY_MS;
use crate::domain::{
    CardId, CouponKind, CouponTerms, MemberId, MerchantId, Percent, Rials, RuleKind, UnixMillis,
};
use crate::engine::coupon::{CouponIssue, CouponRefusal};
use crate::engine::credit::CreditOutcome;

/// Longest validity of a coupon, in days.
pub const VALID_DAYS_MAX: i64 = 3_650;
/// Longest idempotency key of a bulk issue: each member's coupon is keyed `KEY:member-id`,
/// which must fit the 64 bytes of a coupon key.
pub const BULK_KEY_BYTES_MAX: usize = 40;

/// The terms fields of an issue body.
const TERMS: [&str; 6] = [
    "kind",
    "percent",
    "fixed_rials",
    "basket_rials_min",
    "discount_rials_max",
    "valid_days",
];

/// `POST /api/v1/members/{code}/coupons`.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad field; [`ApiError::NotFound`] for an unknown member or
/// merchant; [`ApiError::Conflict`] for a key used for another coupon.
pub async fn issue(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = crate::api::body_object(&body)?;
    let mut fields = TERMS.to_vec();
    fields.push("merchant");
    only(&body, &fields)?;
    let (kind, terms) = terms(&state, &body).await?;
    let (member, card) = member(&state, &code).await?;
    let issue = CouponIssue {
        key: key.clone(),
        member,
        kind,
        terms,
        card,
        operator: operator.name.clone(),
    };
    let mut answer = body.clone();
    answer.insert("member".to_owned(), json!(code));
    answer.insert("idempotency_key".to_owned(), json!(key));
    answer.insert("expires_at_ms".to_owned(), json!(terms.expires_at.get()));
    let outcome = run(&state, issue).await?;
    Ok(keyed_response(outcome, Value::Object(answer)))
}

/// `POST /api/v1/coupons/win-back`: the body of an issue plus `days`; every member whose last
/// confirmed purchase is more than `days` ago gets one coupon, keyed by the request's key and
/// the member, so running it again issues nothing new.
///
/// # Errors
/// As [`issue`].
pub async fn win_back(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = bulk_key(&headers)?;
    let body = crate::api::body_object(&body)?;
    let mut fields = TERMS.to_vec();
    fields.extend(["merchant", "days"]);
    only(&body, &fields)?;
    let days = body
        .get("days")
        .and_then(Value::as_i64)
        .filter(|days| (1..=VALID_DAYS_MAX).contains(days))
        .ok_or_else(|| invalid("days", "required, 1..=3650"))?;
    let (kind, terms) = terms(&state, &body).await?;
    let now = state.clock.now().get();
    let rows = sqlx::query(
        "SELECT mb.id AS member_id, MIN(c.id) AS card_id FROM transactions t \
         JOIN cards c ON c.id = t.card_id JOIN members mb ON mb.id = c.member_id \
         WHERE t.state = 'confirmed' GROUP BY mb.id HAVING MAX(t.confirmed_at_ms) < $1 \
         ORDER BY mb.id",
    )
    .bind(now - days * DAY_MS)
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut answer = bulk(&state, &operator.name, &key, kind, terms, rows).await?;
    answer.insert("days".to_owned(), json!(days));
    respond(answer)
}

/// `POST /api/v1/coupons/rfm`: the body of an issue plus `r_min`, `f_min`, `m_min` (1..=5,
/// default 1); every member of the RFM report whose three scores reach them gets one coupon,
/// keyed by the request's key and the member, so running it again issues nothing new.
///
/// # Errors
/// As [`issue`].
pub async fn rfm(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = bulk_key(&headers)?;
    let body = crate::api::body_object(&body)?;
    let mut fields = TERMS.to_vec();
    fields.extend(["merchant", "r_min", "f_min", "m_min"]);
    only(&body, &fields)?;
    let mut mins = [1_i64; 3];
    for (min, name) in mins.iter_mut().zip(["r_min", "f_min", "m_min"]) {
        if let Some(value) = body.get(name) {
            *min = value
                .as_i64()
                .filter(|score| (1..=5).contains(score))
                .ok_or_else(|| invalid(name, "1..=5"))?;
        }
    }
    let (kind, terms) = terms(&state, &body).await?;
    let now = state.clock.now().get();
    let rows = sqlx::query(&format!(
        "{} WHERE r >= $2 AND f >= $3 AND m >= $4 ORDER BY member_id",
        crate::engagement::rfm::SCORED
    ))
    .bind(now - crate::engagement::rfm::WINDOW_DAYS * DAY_MS)
    .bind(mins[0])
    .bind(mins[1])
    .bind(mins[2])
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut answer = bulk(&state, &operator.name, &key, kind, terms, rows).await?;
    for (min, name) in mins.iter().zip(["r_min", "f_min", "m_min"]) {
        answer.insert(name.to_owned(), json!(min));
    }
    respond(answer)
}

fn bulk_key(headers: &HeaderMap) -> Result<String, ApiError> {
    let key = idempotency_key(headers)?;
    if key.len() > BULK_KEY_BYTES_MAX {
        return Err(invalid(
            "Idempotency-Key",
            "at most 40 characters for a bulk issue",
        ));
    }
    Ok(key)
}

fn respond(answer: Map<String, Value>) -> Result<Response, ApiError> {
    let status = if answer.get("issued").and_then(Value::as_u64) > Some(0) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Value::Object(answer))).into_response())
}

/// Issues one coupon to the member of each row (`member_id`, `card_id`), keyed `KEY:member`.
async fn bulk(
    state: &ApiState,
    operator: &str,
    key: &str,
    kind: CouponKind,
    terms: CouponTerms,
    rows: Vec<crate::store::DbRow>,
) -> Result<Map<String, Value>, ApiError> {
    // Every issue is queued before any is awaited, so they share group commits.
    let mut waiting = Vec::with_capacity(rows.len());
    for row in rows {
        let member: i64 = row.try_get("member_id").map_err(ApiError::store)?;
        let card: Option<i64> = row.try_get("card_id").map_err(ApiError::store)?;
        let issue = CouponIssue {
            key: format!("{key}:{member}"),
            member: MemberId::new(member),
            kind,
            terms,
            card: card.map(CardId::new),
            operator: operator.to_owned(),
        };
        waiting.push(queue(state, issue).await?);
    }
    let (mut issued, mut repeated) = (0_u64, 0_u64);
    for outcome in waiting {
        match settle(outcome.await)? {
            CreditOutcome::Applied => issued += 1,
            CreditOutcome::Repeated => repeated += 1,
        }
    }
    let mut answer = Map::new();
    answer.insert("idempotency_key".to_owned(), json!(key));
    answer.insert("issued".to_owned(), json!(issued));
    answer.insert("repeated".to_owned(), json!(repeated));
    answer.insert("expires_at_ms".to_owned(), json!(terms.expires_at.get()));
    Ok(answer)
}

/// `GET /api/v1/members/{code}/coupons`: the member's coupons, newest first.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown member.
pub async fn list(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let (member, _) = member(&state, &code).await?;
    let rows = sqlx::query(
        "SELECT c.id, c.kind, c.percent, c.fixed_rials, c.basket_rials_min, \
         c.discount_rials_max, m.code AS merchant, c.issued_at_ms, c.expires_at_ms, c.state, \
         c.txn_id FROM coupons c LEFT JOIN merchants m ON m.id = c.merchant_id \
         WHERE c.member_id = $1 ORDER BY c.id DESC",
    )
    .bind(member.get())
    .fetch_all(&state.pool)
    .await
    .map_err(ApiError::store)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let get_i64 = |name: &str| row.try_get::<Option<i64>, _>(name).map_err(ApiError::store);
        let get_text = |name: &str| {
            row.try_get::<Option<String>, _>(name)
                .map_err(ApiError::store)
        };
        out.push(json!({
            "id": get_i64("id")?,
            "kind": get_text("kind")?,
            "percent": get_text("percent")?,
            "fixed_rials": get_i64("fixed_rials")?,
            "basket_rials_min": get_i64("basket_rials_min")?,
            "discount_rials_max": get_i64("discount_rials_max")?,
            "merchant": get_text("merchant")?,
            "issued_at_ms": get_i64("issued_at_ms")?,
            "expires_at_ms": get_i64("expires_at_ms")?,
            "state": get_text("state")?,
            "txn_id": get_i64("txn_id")?,
        }));
    }
    Ok(Json(json!({ "member": code, "coupons": out })).into_response())
}

/// Issues through the engine and waits until durable.
async fn run(state: &ApiState, issue: CouponIssue) -> Result<CreditOutcome, ApiError> {
    settle(queue(state, issue).await?.await)
}

type Outcome = oneshot::Receiver<Result<CreditOutcome, CreditFailure>>;

async fn queue(state: &ApiState, issue: CouponIssue) -> Result<Outcome, ApiError> {
    let (reply, outcome) = oneshot::channel();
    state
        .credits
        .send(CreditJob {
            operation: Operation::Coupon(issue),
            reply,
        })
        .await
        .map_err(|_| ApiError::store("the committer is not running"))?;
    Ok(outcome)
}

fn settle(
    outcome: Result<Result<CreditOutcome, CreditFailure>, oneshot::error::RecvError>,
) -> Result<CreditOutcome, ApiError> {
    match outcome.map_err(|_| ApiError::store("the committer dropped the coupon"))? {
        Ok(outcome) => Ok(outcome),
        Err(CreditFailure::CouponRefused(CouponRefusal::KeyReused)) => Err(ApiError::Conflict {
            message: "this idempotency key was used for another coupon".to_owned(),
        }),
        Err(CreditFailure::System) => Err(ApiError::store("the coupon's batch failed")),
        Err(other) => Err(ApiError::Conflict {
            message: other.to_string(),
        }),
    }
}

/// The member's row id and the card their messages go by (their lowest active card).
async fn member(state: &ApiState, code: &str) -> Result<(MemberId, Option<CardId>), ApiError> {
    let row = sqlx::query(
        "SELECT m.id, (SELECT MIN(c.id) FROM cards c WHERE c.member_id = m.id \
         AND c.status = 'active') AS card_id FROM members m WHERE m.code = $1",
    )
    .bind(code)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::store)?
    .ok_or(ApiError::NotFound { what: "member" })?;
    let id: i64 = row.try_get("id").map_err(ApiError::store)?;
    let card: Option<i64> = row.try_get("card_id").map_err(ApiError::store)?;
    Ok((MemberId::new(id), card.map(CardId::new)))
}

/// Reads the terms fields; every bad field is named.
async fn terms(
    state: &ApiState,
    body: &Map<String, Value>,
) -> Result<(CouponKind, CouponTerms), ApiError> {
    let mut problems: Vec<(String, String)> = Vec::new();
    let mut bad =
        |field: &str, message: &str| problems.push((field.to_owned(), message.to_owned()));
    let kind = body
        .get("kind")
        .and_then(Value::as_str)
        .and_then(CouponKind::parse);
    if kind.is_none() {
        bad(
            "kind",
            "required: birthday, anniversary, campaign, win_back, referral or manual",
        );
    }
    let amount = |name: &str, min: i64| {
        body.get(name)
            .and_then(Value::as_i64)
            .filter(|value| *value >= min)
            .and_then(Rials::new)
    };
    let discount = match (body.get("percent"), body.get("fixed_rials")) {
        (Some(rate), None) => match rate.as_str().map(Percent::parse) {
            Some(Ok(rate)) if rate.get() > rust_decimal::Decimal::ZERO => {
                Some(RuleKind::Percent(rate))
            }
            _ => {
                bad("percent", "a decimal string above 0 and at most 100");
                None
            }
        },
        (None, Some(_)) => match amount("fixed_rials", 1) {
            Some(fixed) => Some(RuleKind::Fixed(fixed)),
            None => {
                bad("fixed_rials", "an integer 1..=999999999999");
                None
            }
        },
        _ => {
            bad(
                "percent",
                "exactly one of percent and fixed_rials is required",
            );
            None
        }
    };
    let basket = match body.get("basket_rials_min") {
        None => Some(Rials::ZERO),
        Some(_) => amount("basket_rials_min", 0),
    };
    if basket.is_none() {
        bad("basket_rials_min", "an integer 0..=999999999999");
    }
    let cap = match body.get("discount_rials_max") {
        None => Some(None),
        Some(_) => amount("discount_rials_max", 0).map(Some),
    };
    if cap.is_none() {
        bad("discount_rials_max", "an integer 0..=999999999999");
    }
    let days = body
        .get("valid_days")
        .and_then(Value::as_i64)
        .filter(|days| (1..=VALID_DAYS_MAX).contains(days));
    if days.is_none() {
        bad("valid_days", "required, 1..=3650");
    }
    let merchant = match body.get("merchant") {
        None => Some(None),
        Some(code) => match code.as_str() {
            Some(code) => Some(Some(merchant(state, code).await?)),
            None => None,
        },
    };
    if merchant.is_none() {
        problems.push(("merchant".to_owned(), "a merchant code".to_owned()));
    }
    match (kind, discount, basket, cap, days, merchant) {
        (Some(kind), Some(discount), Some(basket), Some(cap), Some(days), Some(merchant))
            if problems.is_empty() =>
        {
            let now = state.clock.now().get();
            let terms = CouponTerms {
                kind: discount,
                basket_rials_min: basket,
                discount_rials_max: cap,
                merchant,
                expires_at: UnixMillis::new(now + days * DAY_MS),
            };
            Ok((kind, terms))
        }
        _ => Err(ApiError::Invalid { problems }),
    }
}

async fn merchant(state: &ApiState, code: &str) -> Result<MerchantId, ApiError> {
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM merchants WHERE code = $1")
        .bind(code)
        .fetch_optional(&state.pool)
        .await
        .map_err(ApiError::store)?;
    id.map(MerchantId::new)
        .ok_or(ApiError::NotFound { what: "merchant" })
}
