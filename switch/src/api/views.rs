//! The operations console's reads (docs/operator-api.md, "Reads"): transaction search and
//! detail, a card's and a member's view, the terminal list. Each is a few index lookups or one
//! indexed range per page (`store::views`), never the reference data loaded whole, so they stay
//! fast on a network of a million cards.
//!
//! Query parameters are checked here, each by name: an unknown or repeated one, a limit out of
//! range, a malformed date or code, a BIN without its last four: every problem is answered 422
//! with the parameter as its field, never a bare 400 from the framework or a 500.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Value};

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::domain::time::{DAY_MS, MINUTE_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::{CivilDate, Code};
use crate::store::views::{self, Search, TierRank, TxnState};

/// Transactions a search page lists when `limit` is not given.
pub const TXN_LIMIT_DEFAULT: i64 = 50;
/// Most transactions one search page lists.
pub const TXN_LIMIT_MAX: i64 = 500;
/// Terminals a list page holds when `limit` is not given.
pub const TERMINAL_LIMIT_DEFAULT: i64 = 100;
/// Most terminals one list page holds.
pub const TERMINAL_LIMIT_MAX: i64 = 1_000;

/// The parameters of a transaction search.
const SEARCH_PARAMS: &[&str] = &[
    "rrn", "card", "bin", "last4", "terminal", "merchant", "from", "to", "outcome", "after",
    "limit",
];
/// The parameters of a view's history.
const HISTORY_PARAMS: &[&str] = &["after", "limit"];
/// The parameters of the terminal list.
const TERMINAL_PARAMS: &[&str] = &["after", "merchant", "limit"];

/// A query string's parameters by name, and the problems found so far, each naming its
/// parameter; answered together, so a caller fixes them in one round.
pub(crate) struct Params {
    values: BTreeMap<String, String>,
    problems: Vec<(String, String)>,
}

impl Params {
    /// Takes the pairs of a query string, refusing names not in `allowed` and names given twice.
    pub(crate) fn new(pairs: Vec<(String, String)>, allowed: &[&str]) -> Params {
        let mut params = Params {
            values: BTreeMap::new(),
            problems: Vec::new(),
        };
        for (name, value) in pairs {
            if !allowed.contains(&name.as_str()) {
                // The name is echoed only when it looks like one: a caller who pasted a card
                // number where a name goes must not get it back in the answer.
                let plain =
                    name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_');
                let shown = if plain { name.as_str() } else { "" };
                params.problem(shown, "unknown parameter");
                continue;
            }
            match params.values.entry(name) {
                Entry::Vacant(entry) => {
                    entry.insert(value);
                }
                Entry::Occupied(entry) => {
                    let name = entry.key().clone();
                    params.problem(&name, "given more than once");
                }
            }
        }
        params
    }

    pub(crate) fn problem(&mut self, name: &str, message: &str) {
        self.problems.push((name.to_owned(), message.to_owned()));
    }

    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A code (card, merchant): 1..=64 ASCII letters, digits, `.`, `_` or `-`.
    pub(crate) fn code(&mut self, name: &str) -> Option<String> {
        let text = self.text(name)?.to_owned();
        match Code::parse(&text) {
            Ok(_) => Some(text),
            Err(error) => {
                self.problem(name, error.reason);
                None
            }
        }
    }

    /// Exactly `len` ASCII digits.
    fn digits(&mut self, name: &str, len: usize) -> Option<String> {
        let text = self.text(name)?.to_owned();
        if text.len() == len && text.bytes().all(|b| b.is_ascii_digit()) {
            Some(text)
        } else {
            self.problem(name, &format!("must be {len} digits"));
            None
        }
    }

    /// An RRN: 12 ASCII letters, digits or spaces (field 37).
    fn rrn(&mut self, name: &str) -> Option<String> {
        let text = self.text(name)?.to_owned();
        if text.len() == 12 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ') {
            Some(text)
        } else {
            self.problem(name, "must be 12 letters, digits or spaces");
            None
        }
    }

    /// A terminal id: `min..=8` printable ASCII characters (field 41 is exactly 8).
    fn terminal_id(&mut self, name: &str, min: usize) -> Option<String> {
        let text = self.text(name)?.to_owned();
        let printable = text.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        if (min..=8).contains(&text.len()) && printable {
            Some(text)
        } else if min == 8 {
            self.problem(name, "must be 8 printable ASCII characters");
            None
        } else {
            self.problem(name, "must be 1 to 8 printable ASCII characters");
            None
        }
    }

    /// An integer in `range`, or `default` when not given.
    pub(crate) fn integer(
        &mut self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
        default: i64,
    ) -> Option<i64> {
        let Some(text) = self.text(name) else {
            return Some(default);
        };
        match text.parse::<i64>() {
            Ok(value) if range.contains(&value) => Some(value),
            _ => {
                let message = format!("must be an integer {}..={}", range.start(), range.end());
                self.problem(name, &message);
                None
            }
        }
    }

    /// A Tehran calendar day's first instant, or with `next` the first instant of the day
    /// after (an exclusive end), in Unix ms.
    fn day(&mut self, name: &str, next: bool) -> Option<i64> {
        let text = self.text(name)?.to_owned();
        match CivilDate::parse(&text) {
            Ok(date) => {
                let days = date.days_since_epoch() + i64::from(next);
                let offset_ms = i64::from(TEHRAN_UTC_OFFSET_MINUTES) * MINUTE_MS;
                Some(days * DAY_MS - offset_ms)
            }
            Err(error) => {
                self.problem(name, error.reason);
                None
            }
        }
    }

    /// Ok when no problem was found.
    pub(crate) fn checked(self) -> Result<(), ApiError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                problems: self.problems,
            })
        }
    }
}

/// `after` and `limit` of a transaction list, with `after` resolved to its place in the order.
async fn paging(
    state: &ApiState,
    params: &mut Params,
    search: &mut Search,
) -> Result<(), ApiError> {
    let limit = params.integer("limit", 1..=TXN_LIMIT_MAX, TXN_LIMIT_DEFAULT);
    let after = match params.text("after").map(str::parse::<i64>) {
        None => None,
        Some(Ok(id)) if id > 0 => Some(id),
        Some(_) => {
            params.problem("after", "must be a transaction id (a positive integer)");
            None
        }
    };
    search.limit = limit.unwrap_or(TXN_LIMIT_DEFAULT);
    if let Some(id) = after {
        search.after = views::cursor(&state.pool, id)
            .await
            .map_err(ApiError::store)?;
        if search.after.is_none() {
            params.problem("after", "no such transaction");
        }
    }
    Ok(())
}

/// `GET /api/v1/transactions`: transactions matching every filter given, newest first, a page
/// at a time: `{"items": [...], "next": id or null}`; `next` is the `after` of the next page.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad parameter.
pub async fn search(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, SEARCH_PARAMS);
    let mut search = Search {
        rrn: params.rrn("rrn"),
        card: params.code("card"),
        terminal: params.terminal_id("terminal", 8),
        merchant: params.code("merchant"),
        created_from_ms: params.day("from", false),
        created_before_ms: params.day("to", true),
        ..Search::default()
    };
    let bin = params.digits("bin", 6);
    let last4 = params.digits("last4", 4);
    match (params.text("bin").is_some(), params.text("last4").is_some()) {
        (true, false) => params.problem("last4", "must be given with bin"),
        (false, true) => params.problem("bin", "must be given with last4"),
        _ => {}
    }
    search.bin_last4 = bin.zip(last4);
    if let (Some(from), Some(before)) = (search.created_from_ms, search.created_before_ms) {
        if from >= before {
            params.problem("from", "must not be after to");
        }
    }
    if let Some(text) = params.text("outcome") {
        search.state = TxnState::parse(text);
        if search.state.is_none() {
            params.problem("outcome", "must be pending, confirmed, reversed or expired");
        }
    }
    paging(&state, &mut params, &mut search).await?;
    params.checked()?;
    let page = views::search(&state.pool, &search)
        .await
        .map_err(ApiError::store)?;
    Ok(Json(json!(page)))
}

/// `GET /api/v1/transactions/{id}`: one transaction with its capture (and the lots it drew
/// from), its reversal and the balance movements it caused.
///
/// # Errors
/// [`ApiError::NotFound`] when there is no such transaction (or the id is not a number).
pub async fn show(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found = ApiError::NotFound {
        what: "transaction",
    };
    let Ok(id) = id.parse::<i64>() else {
        return Err(not_found);
    };
    let detail = views::transaction(&state.pool, id)
        .await
        .map_err(ApiError::store)?;
    detail.map(|detail| Json(json!(detail))).ok_or(not_found)
}

/// `GET /api/v1/cards/{code}/view?after&limit`: the card (BIN and last four only), its club
/// balance, its store credit per merchant with the lots that have credit left, its member's
/// coupons and tier, and a page of its history.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown card; [`ApiError::Invalid`] for bad paging.
pub async fn card(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, HISTORY_PARAMS);
    let mut search = Search::default();
    paging(&state, &mut params, &mut search).await?;
    params.checked()?;
    let card = views::card(&state.pool, &code)
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::NotFound { what: "card" })?;
    search.card_id = Some(card.id);
    let (store_credit, lots_more) = views::card_store_credit(&state.pool, card.id)
        .await
        .map_err(ApiError::store)?;
    let (coupons, coupons_more) = views::coupons(&state.pool, card.member_id)
        .await
        .map_err(ApiError::store)?;
    let earned = views::earned_tier(&state.pool, card.member_id)
        .await
        .map_err(ApiError::store)?;
    let history = views::search(&state.pool, &search)
        .await
        .map_err(ApiError::store)?;
    let given = given_tier(&card);
    Ok(Json(json!({
        "card": card,
        "club": card.club,
        "store_credit": store_credit,
        "lots_more": lots_more,
        "coupons": coupons,
        "coupons_more": coupons_more,
        "tier": tier(given.iter().cloned(), earned),
        "history": history,
    })))
}

/// `GET /api/v1/members/{code}/view?after&limit`: the member (phone masked but for its last
/// four digits), their groups, cards with their club balances, store credit per card and
/// merchant, coupons, tier, and a page of the history of all their cards.
///
/// # Errors
/// [`ApiError::NotFound`] for an unknown member; [`ApiError::Invalid`] for bad paging.
pub async fn member(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Path(code): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, HISTORY_PARAMS);
    let mut search = Search::default();
    paging(&state, &mut params, &mut search).await?;
    params.checked()?;
    let member = views::member(&state.pool, &code)
        .await
        .map_err(ApiError::store)?
        .ok_or(ApiError::NotFound { what: "member" })?;
    search.member_id = Some(member.id);
    let cards = views::member_cards(&state.pool, member.id)
        .await
        .map_err(ApiError::store)?;
    let store_credit = views::member_store_credit(&state.pool, member.id)
        .await
        .map_err(ApiError::store)?;
    let (coupons, coupons_more) = views::coupons(&state.pool, member.id)
        .await
        .map_err(ApiError::store)?;
    let earned = views::earned_tier(&state.pool, member.id)
        .await
        .map_err(ApiError::store)?;
    let history = views::search(&state.pool, &search)
        .await
        .map_err(ApiError::store)?;
    let club: Vec<Value> = cards
        .iter()
        .map(|card| {
            json!({
                "card": card.code,
                "ledger_rials": card.club.ledger_rials,
                "held_rials": card.club.held_rials,
                "available_rials": card.club.available_rials,
            })
        })
        .collect();
    let card_list: Vec<Value> = cards
        .iter()
        .map(|card| {
            json!({
                "code": card.code,
                "bin": card.bin,
                "last4": card.last4,
                "status": card.status,
                "expiry": card.expiry,
                "tier": card.tier,
            })
        })
        .collect();
    let tier = tier(cards.iter().filter_map(given_tier), earned);
    Ok(Json(json!({
        "member": {
            "code": member.code,
            "locale": member.locale,
            "phone": member.phone.as_deref().map(mask_phone),
            "groups": member.groups,
        },
        "cards": card_list,
        "club": club,
        "store_credit": store_credit,
        "coupons": coupons,
        "coupons_more": coupons_more,
        "tier": tier,
        "history": history,
    })))
}

/// `GET /api/v1/terminals?after&merchant&limit`: terminals in terminal id order, a page at a
/// time, with their key state, groups and when each was last used.
///
/// # Errors
/// [`ApiError::Invalid`] naming each bad parameter.
pub async fn terminals(
    _reader: Reader,
    State(state): State<Arc<ApiState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let mut params = Params::new(pairs, TERMINAL_PARAMS);
    let after = params.terminal_id("after", 1);
    let merchant = params.code("merchant");
    let limit = params.integer("limit", 1..=TERMINAL_LIMIT_MAX, TERMINAL_LIMIT_DEFAULT);
    params.checked()?;
    let page = views::terminals(
        &state.pool,
        after.as_deref(),
        merchant.as_deref(),
        limit.unwrap_or(TERMINAL_LIMIT_DEFAULT),
        state.clock.now().get(),
    )
    .await
    .map_err(ApiError::store)?;
    Ok(Json(json!(page)))
}

/// The tier a card was given, with its rank.
fn given_tier(card: &views::CardRow) -> Option<TierRank> {
    Some(TierRank {
        code: card.tier.clone()?,
        rank: card.tier_rank.unwrap_or(0),
    })
}

/// `{"given": [...], "earned": code or null, "held": code or null}`: the member holds the
/// better of the tiers their cards were given (a floor) and the one their activity earned; on
/// equal ranks a given tier stands (docs/loyalty.md).
fn tier(given: impl Iterator<Item = TierRank>, earned: Option<TierRank>) -> Value {
    let mut given: Vec<TierRank> = given.collect();
    given.sort_by(|a, b| a.code.cmp(&b.code));
    given.dedup();
    let best_given = given.iter().max_by_key(|tier| tier.rank);
    let held = match (best_given, &earned) {
        (Some(given), Some(earned)) if earned.rank > given.rank => Some(earned),
        (Some(given), _) => Some(given),
        (None, earned) => earned.as_ref(),
    };
    let codes: Vec<&str> = given.iter().map(|tier| tier.code.as_str()).collect();
    json!({
        "given": codes,
        "earned": earned.as_ref().map(|tier| tier.code.as_str()),
        "held": held.map(|tier| tier.code.as_str()),
    })
}

/// A phone number with every character but its last four digits replaced by `*`: enough for
/// an operator to confirm a caller's number, not enough to contact them.
fn mask_phone(phone: &str) -> String {
    let count = phone.chars().count();
    phone
        .chars()
        .enumerate()
        .map(|(index, ch)| {
            if index + 4 >= count && count > 4 {
                ch
            } else {
                '*'
            }
        })
        .collect()
}
