//! A member's reply to a survey, as the SMS gateway posts it (docs/surveys.md, "Replies"):
//! recorded once per gateway message id, matched by phone to the member's latest open survey,
//! parsed and stored, all in one database transaction.
//!
//! - A message id seen before changes nothing and is answered with the outcome it had.
//! - A score on the scale closes the request with its one response (`answered`).
//! - The first reply that does not parse queues one clarifying message, keyed
//!   `survey-clarify:{request}` (`clarify`); the second is stored as the unparsed response and
//!   closes the request (`unparsed`).
//! - No survey delivered and still open for that phone: `unmatched`; one whose reply window
//!   has passed: `late`. Either is recorded (the phone masked, no text) and changes nothing
//!   else.

use sqlx::Row;

use crate::domain::survey::{mask_phone, parse_reply, Reply, Scale};
use crate::domain::{Locale, Phone, UnixMillis};
use crate::notify::templates::Message;
use crate::store::Pool;

/// A reply as the gateway posted it, validated.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The gateway's id of the message: its idempotency key.
    pub message_id: String,
    /// The sender.
    pub from: Phone,
    /// The text.
    pub text: String,
    /// When the gateway says it received it (kept as written, not trusted for the window).
    pub gateway_received_at: Option<String>,
}

/// What became of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Scored and stored.
    Answered,
    /// Did not parse; a clarifying message was queued.
    Clarify,
    /// Did not parse after the clarifying message; stored as unparsed.
    Unparsed,
    /// No open survey for the sender.
    Unmatched,
    /// The sender's latest survey is past its reply window.
    Late,
}

impl Outcome {
    /// The stored and answered spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Answered => "answered",
            Outcome::Clarify => "clarify",
            Outcome::Unparsed => "unparsed",
            Outcome::Unmatched => "unmatched",
            Outcome::Late => "late",
        }
    }

    fn parse(text: &str) -> Option<Outcome> {
        [
            Outcome::Answered,
            Outcome::Clarify,
            Outcome::Unparsed,
            Outcome::Unmatched,
            Outcome::Late,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == text)
    }

    /// Whether the reply was taken (stored against a survey).
    pub fn is_accepted(self) -> bool {
        matches!(
            self,
            Outcome::Answered | Outcome::Clarify | Outcome::Unparsed
        )
    }
}

/// What the webhook answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The outcome (of the first post, for a repeated message id).
    pub outcome: Outcome,
    /// The message id had been received before: nothing changed now.
    pub duplicate: bool,
}

/// Why a reply was not recorded. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// Another reply to the same survey was being stored at the same moment; sending this one
    /// again gives its real outcome.
    #[error("a concurrent reply to the same survey")]
    Busy,
    /// The database failed.
    #[error("store: {0}")]
    Store(String),
}

fn store(error: impl std::fmt::Display) -> InboundError {
    InboundError::Store(error.to_string())
}

/// Records `inbound`, received at `now`.
///
/// # Errors
/// [`InboundError`]; the transaction is rolled back, so nothing is recorded.
pub async fn receive(
    pool: &Pool,
    now: UnixMillis,
    reply_window_ms: i64,
    inbound: &Inbound,
) -> Result<Received, InboundError> {
    let now = now.get();
    let mut tx = crate::store::begin_write(pool).await.map_err(store)?;
    // The message id first: a repeated post stops here, and a concurrent one waits for this
    // transaction and then stops here.
    let inserted = sqlx::query(
        "INSERT INTO sms_inbound (message_id, phone_masked, received_at_ms, gateway_received_at, \
         outcome) VALUES ($1, $2, $3, $4, 'unmatched') ON CONFLICT (message_id) DO NOTHING",
    )
    .bind(&inbound.message_id)
    .bind(mask_phone(inbound.from.as_str()))
    .bind(now)
    .bind(inbound.gateway_received_at.as_deref())
    .execute(&mut *tx)
    .await
    .map_err(store)?;
    if inserted.rows_affected() == 0 {
        drop(tx);
        let stored: String =
            sqlx::query_scalar("SELECT outcome FROM sms_inbound WHERE message_id = $1")
                .bind(&inbound.message_id)
                .fetch_one(pool)
                .await
                .map_err(store)?;
        let outcome = Outcome::parse(&stored).ok_or_else(|| store("unknown stored outcome"))?;
        return Ok(Received {
            outcome,
            duplicate: true,
        });
    }
    let open = sqlx::query(
        "SELECT r.id, r.state, r.member_id, r.merchant_id, r.txn_id, r.scale_min, r.scale_max, \
         n.delivered_at_ms, m.locale, m.phone FROM survey_requests r \
         JOIN members m ON m.id = r.member_id JOIN notifications n ON n.id = r.notification_id \
         WHERE m.phone = $1 AND r.state IN ('sent', 'clarifying') \
         AND n.delivered_at_ms IS NOT NULL AND n.delivered_at_ms <= $2 \
         ORDER BY n.delivered_at_ms DESC, r.id DESC LIMIT 1",
    )
    .bind(inbound.from.as_str())
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(store)?;
    let outcome = match open {
        None => Outcome::Unmatched,
        Some(row) => {
            let get = |name: &str| row.try_get::<i64, _>(name).map_err(store);
            if now > get("delivered_at_ms")?.saturating_add(reply_window_ms) {
                Outcome::Late
            } else {
                let request = Request {
                    id: get("id")?,
                    member: get("member_id")?,
                    merchant: get("merchant_id")?,
                    txn: get("txn_id")?,
                    state: row.try_get("state").map_err(store)?,
                    scale: Scale::new(get("scale_min")?, get("scale_max")?).map_err(store)?,
                    locale: row.try_get("locale").map_err(store)?,
                    phone: row.try_get("phone").map_err(store)?,
                };
                let outcome = answer(&mut tx, &request, inbound, now).await?;
                sqlx::query(
                    "UPDATE sms_inbound SET member_id = $1, request_id = $2, body = $3 \
                     WHERE message_id = $4",
                )
                .bind(request.member)
                .bind(request.id)
                .bind(&inbound.text)
                .bind(&inbound.message_id)
                .execute(&mut *tx)
                .await
                .map_err(store)?;
                outcome
            }
        }
    };
    sqlx::query("UPDATE sms_inbound SET outcome = $1 WHERE message_id = $2")
        .bind(outcome.as_str())
        .bind(&inbound.message_id)
        .execute(&mut *tx)
        .await
        .map_err(store)?;
    tx.commit().await.map_err(store)?;
    Ok(Received {
        outcome,
        duplicate: false,
    })
}

/// The open request a reply is matched to.
struct Request {
    id: i64,
    member: i64,
    merchant: i64,
    txn: i64,
    state: String,
    scale: Scale,
    locale: String,
    phone: String,
}

/// Parses the reply and stores what it says against `request`.
async fn answer(
    tx: &mut sqlx::AnyConnection,
    request: &Request,
    inbound: &Inbound,
    now: i64,
) -> Result<Outcome, InboundError> {
    let reply = parse_reply(&inbound.text, request.scale);
    let (next, outcome) = match (&reply, request.state.as_str()) {
        (Reply::Scored { .. }, _) => ("answered", Outcome::Answered),
        (Reply::Unparsed, "sent") => ("clarifying", Outcome::Clarify),
        (Reply::Unparsed, _) => ("unparsed", Outcome::Unparsed),
    };
    // The request leaves the state it was read in, or another reply got there first.
    let closed = (next != "clarifying").then_some(now);
    let moved = sqlx::query(
        "UPDATE survey_requests SET state = $1, closed_at_ms = $2 WHERE id = $3 AND state = $4",
    )
    .bind(next)
    .bind(closed)
    .bind(request.id)
    .bind(request.state.as_str())
    .execute(&mut *tx)
    .await
    .map_err(store)?;
    if moved.rows_affected() != 1 {
        return Err(InboundError::Busy);
    }
    let insert_response = "INSERT INTO survey_responses (request_id, member_id, merchant_id, \
         txn_id, message_id, score, comment, unparsed_text, answered_at_ms) VALUES ($1, $2, $3, \
         $4, $5, $6, $7, $8, $9)";
    match reply {
        Reply::Scored { score, comment } => {
            sqlx::query(insert_response)
                .bind(request.id)
                .bind(request.member)
                .bind(request.merchant)
                .bind(request.txn)
                .bind(&inbound.message_id)
                .bind(Some(i64::from(score)))
                .bind(comment)
                .bind(None::<String>)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(store)?;
        }
        Reply::Unparsed if outcome == Outcome::Clarify => {
            let locale = Locale::parse(&request.locale).unwrap_or(Locale::Fa);
            let message = Message::SurveyClarify {
                scale_min: request.scale.min(),
                scale_max: request.scale.max(),
            };
            sqlx::query(
                "INSERT INTO notifications (idempotency_key, member_id, kind, locale, phone, \
                 body, created_at_ms, attempts, next_attempt_at_ms) VALUES ($1, $2, $3, $4, $5, \
                 $6, $7, 0, $7) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(format!("survey-clarify:{}", request.id))
            .bind(request.member)
            .bind(message.kind())
            .bind(locale.as_str())
            .bind(&request.phone)
            .bind(message.render(locale))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(store)?;
        }
        Reply::Unparsed => {
            let text: String = inbound
                .text
                .chars()
                .take(crate::domain::survey::COMMENT_CHARS_MAX)
                .collect();
            sqlx::query(insert_response)
                .bind(request.id)
                .bind(request.member)
                .bind(request.merchant)
                .bind(request.txn)
                .bind(&inbound.message_id)
                .bind(None::<i64>)
                .bind(None::<String>)
                .bind(Some(text))
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(store)?;
        }
    }
    Ok(outcome)
}
