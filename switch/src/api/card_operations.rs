//! `POST /api/v1/card-operations?action=block|unblock|renew`: a list of cards from a file,
//! changed in chunks, with a report of what was done and what was refused, idempotent by its
//! `Idempotency-Key` (docs/operator-api.md, "Bulk card operations").
//!
//! The body is the file as text: one card a line, `code` for `block` and `unblock`,
//! `code,YYYY-MM` for `renew`; blank lines and lines starting with `#` are skipped. A line that
//! cannot be read, or names no card, or a renewal that is not later than the card's expiry, is
//! refused in the report with its line number; the other lines are done. Lines are changed
//! [`CHUNK_CARDS`] at a time, each chunk one change as a single card's is (its own short write
//! transaction, audit rows and delta), so neither the group commit nor the engine waits for a
//! long list.
//!
//! The same key and file again answer the stored report (`200`, `Idempotent-Replayed: true`)
//! and change nothing; the same key with another file or action is `409`. A run cut short (a
//! crash) has stored no report: sending it again finishes it, and the cards the first run
//! changed are then reported as `unchanged`.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::api::auth::Writer;
use crate::api::change::{AuditEntry, Change};
use crate::api::credits::{idempotency_key, invalid, keyed_response};
use crate::api::error::ApiError;
use crate::api::views::Params;
use crate::api::ApiState;
use crate::domain::{CardExpiry, CardStatus, Code, ReferenceData};
use crate::engine::credit::CreditOutcome;

/// Cards one chunk changes: one write transaction of this many cards (and their members'
/// other cards read with them) takes a few milliseconds, so the group commit, which takes its
/// turn after it, is never held longer than by a single change.
pub const CHUNK_CARDS: usize = 256;
/// Most lines one file may have: a run is one request, answered when done.
pub const LINES_MAX: usize = 100_000;
/// Largest file accepted: [`LINES_MAX`] lines of a code and an expiry.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Refusals listed in a report; past it only their count.
pub const REFUSALS_LISTED_MAX: usize = 1_000;

/// What an operation does to each card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Block,
    Unblock,
    Renew,
}

impl Action {
    fn parse(text: Option<&str>) -> Result<Action, ApiError> {
        match text {
            Some("block") => Ok(Action::Block),
            Some("unblock") => Ok(Action::Unblock),
            Some("renew") => Ok(Action::Renew),
            _ => Err(invalid("action", "required: block, unblock or renew")),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Unblock => "unblock",
            Action::Renew => "renew",
        }
    }
}

/// One line of the file that names a card.
struct Line {
    number: usize,
    code: Code,
    expiry: Option<CardExpiry>,
}

/// The report being made.
#[derive(Default)]
struct Report {
    lines: usize,
    done: usize,
    unchanged: usize,
    refused: usize,
    listed: Vec<Value>,
}

impl Report {
    fn refuse(&mut self, line: usize, code: &str, reason: &str) {
        self.refused += 1;
        if self.listed.len() < REFUSALS_LISTED_MAX {
            self.listed
                .push(json!({ "line": line, "code": code, "reason": reason }));
        }
    }
}

/// `POST /api/v1/card-operations?action=…` with the file as the body.
///
/// # Errors
/// [`ApiError::Invalid`] for a missing or wrong action or key, or a file over [`LINES_MAX`]
/// lines; [`ApiError::Conflict`] for a key used with another file or action;
/// [`ApiError::Store`] when the store fails (the chunks done so far stay done).
pub async fn run(
    Writer(operator): Writer,
    State(state): State<Arc<ApiState>>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = Params::new(pairs, &["action"]);
    let action = Action::parse(params.text("action"));
    params.checked()?;
    let action = action?;
    let key = idempotency_key(&headers)?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::BadJson {
        message: "the file is not UTF-8 text".to_owned(),
    })?;
    if text.trim().is_empty() {
        return Err(invalid("body", "the file is empty: one card code a line"));
    }
    let sha = hex::encode(Sha256::digest(&body));
    if let Some(report) = stored(&state, &key, action, &sha).await? {
        return Ok(keyed_response(CreditOutcome::Repeated, report));
    }
    let mut report = Report::default();
    let lines = read_lines(text, action, &mut report)?;
    for chunk in lines.chunks(CHUNK_CARDS) {
        apply(&state, &operator, action, &key, chunk, &mut report).await?;
    }
    report
        .listed
        .sort_by_key(|refusal| refusal["line"].as_u64().unwrap_or(u64::MAX));
    let answer = json!({
        "action": action.as_str(),
        "lines": report.lines,
        "done": report.done,
        "unchanged": report.unchanged,
        "refused": report.refused,
        "refusals": report.listed,
    });
    let saved = sqlx::query(
        "INSERT INTO card_operations (idempotency_key, action, body_sha256, operator, at_ms, \
         report) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&key)
    .bind(action.as_str())
    .bind(&sha)
    .bind(&operator.name)
    .bind(state.clock.now().get())
    .bind(answer.to_string())
    .execute(&state.pool)
    .await
    .map_err(ApiError::store)?;
    if saved.rows_affected() == 0 {
        // The same key ran at once from elsewhere and stored its report first: answer it.
        if let Some(report) = stored(&state, &key, action, &sha).await? {
            return Ok(keyed_response(CreditOutcome::Repeated, report));
        }
    }
    Ok(keyed_response(CreditOutcome::Applied, answer))
}

/// Whether `text` could be a card number (12 to 19 digits), which a report never repeats.
fn looks_like_pan(text: &str) -> bool {
    (12..=19).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The report stored under `key`, when the same action and file made it.
async fn stored(
    state: &ApiState,
    key: &str,
    action: Action,
    sha: &str,
) -> Result<Option<Value>, ApiError> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "SELECT action, body_sha256, report FROM card_operations WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(&state.pool)
    .await
    .map_err(ApiError::store)?;
    match row {
        None => Ok(None),
        Some((stored_action, stored_sha, report)) => {
            if stored_action != action.as_str() || stored_sha != sha {
                return Err(ApiError::Conflict {
                    message: "this Idempotency-Key was used for another file or action".to_owned(),
                });
            }
            serde_json::from_str(&report)
                .map(Some)
                .map_err(ApiError::store)
        }
    }
}

/// The lines that name a card, each once; the others are refused in `report`.
fn read_lines(text: &str, action: Action, report: &mut Report) -> Result<Vec<Line>, ApiError> {
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let raw = raw.trim();
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        report.lines += 1;
        if report.lines > LINES_MAX {
            return Err(invalid("body", "more than 100000 lines; split the file"));
        }
        let (code_text, expiry_text) = match raw.split_once(',') {
            Some((code, expiry)) => (code.trim(), Some(expiry.trim())),
            None => (raw, None),
        };
        if looks_like_pan(code_text) {
            // Not echoed, nor looked up: the report is stored, and a card number is never
            // kept in clear.
            report.refuse(number, "", "looks like a card number; give the card's code");
            continue;
        }
        let Ok(code) = Code::parse(code_text) else {
            // A malformed code is not echoed: it may be anything.
            report.refuse(number, "", "not a card code");
            continue;
        };
        let expiry = match (action, expiry_text) {
            (Action::Renew, Some(text)) => match CardExpiry::parse(text) {
                Ok(expiry) => Some(expiry),
                Err(_) => {
                    report.refuse(number, code.as_str(), "expiry must be a month YYYY-MM");
                    continue;
                }
            },
            (Action::Renew, None) => {
                report.refuse(number, code.as_str(), "a renewal needs code,YYYY-MM");
                continue;
            }
            (_, Some(_)) => {
                report.refuse(number, code.as_str(), "only a code is expected");
                continue;
            }
            (_, None) => None,
        };
        if !seen.insert(code.clone()) {
            report.refuse(
                number,
                code.as_str(),
                "the card is named on an earlier line",
            );
            continue;
        }
        lines.push(Line {
            number,
            code,
            expiry,
        });
    }
    Ok(lines)
}

/// One chunk: one change of the cards it names.
async fn apply(
    state: &ApiState,
    operator: &crate::api::auth::Operator,
    action: Action,
    key: &str,
    chunk: &[Line],
    report: &mut Report,
) -> Result<(), ApiError> {
    let names = chunk
        .iter()
        .map(|line| line.code.as_str().to_owned())
        .collect();
    let change = Change::begin(state, names).await?;
    let mut data = ReferenceData::default();
    let mut entries = Vec::new();
    for line in chunk {
        let Some(card) = change
            .current
            .data
            .cards
            .iter()
            .find(|c| c.code == line.code)
        else {
            report.refuse(line.number, line.code.as_str(), "no card has this code");
            continue;
        };
        let mut card = card.clone();
        match (action, line.expiry) {
            (Action::Block, _) if card.status == CardStatus::Blocked => {
                report.unchanged += 1;
                continue;
            }
            (Action::Unblock, _) if card.status == CardStatus::Active => {
                report.unchanged += 1;
                continue;
            }
            (Action::Block, _) => card.status = CardStatus::Blocked,
            (Action::Unblock, _) => card.status = CardStatus::Active,
            (Action::Renew, Some(expiry)) if expiry == card.expiry => {
                report.unchanged += 1;
                continue;
            }
            (Action::Renew, Some(expiry)) if expiry < card.expiry => {
                report.refuse(
                    line.number,
                    line.code.as_str(),
                    "must be after the current expiry",
                );
                continue;
            }
            (Action::Renew, Some(expiry)) => card.expiry = expiry,
            (Action::Renew, None) => continue, // Refused when the file was read.
        }
        let mut detail = json!({ "idempotency_key": key, "line": line.number });
        if let Some(expiry) = line.expiry {
            detail["expiry"] = Value::from(expiry.to_string());
        }
        entries.push(AuditEntry {
            action: action.as_str(),
            resource: "card",
            code: line.code.as_str().to_owned(),
            detail,
        });
        data.cards.push(card);
        report.done += 1;
    }
    if data.cards.is_empty() {
        return Ok(());
    }
    change.save_many(operator, &data, entries).await?;
    Ok(())
}
