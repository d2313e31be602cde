//! A member's view: their tier, cards (each with its actions for a write operator: block,
//! unblock, renew, replace, top up, grant store credit), club balances, store credit, coupons
//! (with a form to issue one) and the history of all their cards. Every action is the operator
//! API's own handler, as on the card's page ([`cards::perform`]); the forms carry the
//! session's CSRF token, and a POST without it, or from an operator who only reads, is 403.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde_json::{json, Map, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::{coupons, views};
use crate::console::cards::{self, action_forms};
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::transactions::{escape, txn_table};
use crate::console::{json_of, ConsoleState};
use crate::store::console as store;

fn list(view: &Value, key: &str) -> Vec<Value> {
    view.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `GET /console/members/{code}`.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown member; [`Refusal::Forbidden`] for a merchant operator.
pub async fn show(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(code): Path<String>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let view = json_of(
        views::member(
            Reader(session.operator()),
            State(state.api.clone()),
            Path(code.clone()),
            Query(Vec::new()),
        )
        .await,
    )
    .await?;
    let history = view
        .get("history")
        .and_then(|h| h.get("items"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tier = view.get("tier").cloned().unwrap_or(Value::Null);
    let tier_text = match &tier {
        Value::Object(map) => map
            .get("held")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    };
    let cards_list = list(&view, "cards");
    let base = format!("/console/members/{}", escape(&code));
    let key = hex::encode(rand::random::<[u8; 16]>());
    let body = html! {
        h1 { (l.t("member")) " " (code) }
        p { (l.t("tier")) ": " strong id="member-tier" { (tier_text) } }
        h2 { (l.t("cards")) }
        table id="member-cards" {
            thead { tr { th { (l.t("card")) } th { "BIN" } th { "last4" } th { (l.t("status")) } th { (l.t("expiry")) } th { (l.t("tier")) } } }
            tbody { @for card in &cards_list {
                @let card_code = text(card, "code");
                tr data-card=(card_code) {
                    td { a href=(format!("/console/cards/{}", escape(&card_code))) { (card_code) } }
                    td { (text(card, "bin")) } td { (text(card, "last4")) } td class="status" { (text(card, "status")) }
                    td { (l.digits(&text(card, "expiry"))) } td { (text(card, "tier")) }
                }
            } }
        }
        @if ctx.write {
            @for card in &cards_list {
                @let card_code = text(card, "code");
                details class="card-actions" data-card=(card_code) {
                    summary { (l.t("card")) " " (card_code) }
                    (action_forms(&ctx, &format!("{base}/cards/{}", escape(&card_code)), &format!("actions-{card_code}"), &text(card, "status")))
                }
            }
        }
        h2 { (l.t("club")) }
        (layout::table(&ctx, "member-club", &list(&view, "club")))
        h2 { (l.t("store_credit")) }
        (layout::table(&ctx, "member-store-credit", &list(&view, "store_credit")))
        h2 { (l.t("coupon")) }
        (layout::table(&ctx, "coupons", &list(&view, "coupons")))
        @if ctx.write {
            form method="post" action=(format!("{base}/coupons")) id="issue-coupon" class="actions" {
                (ctx.csrf_field()) input type="hidden" name="key" value=(key);
                label { (l.t("percent")) " " input name="percent" inputmode="decimal"; }
                label { (l.t("or")) " " (l.t("amount")) " " input name="fixed_rials" inputmode="numeric"; }
                label { (l.t("discount_max")) " " input name="discount_rials_max" inputmode="numeric"; }
                label { (l.t("valid_days")) " " input name="valid_days" inputmode="numeric" value="30"; }
                label { (l.t("merchant")) " " input name="merchant"; }
                button type="submit" { (l.t("issue_coupon")) }
            }
        }
        h2 { (l.t("history")) }
        (txn_table(&ctx, &history))
    };
    Ok(layout::page(&ctx, "cards", body).into_response())
}

/// `POST /console/members/{code}/cards/{card}/{action}`: a card action from the member's
/// page (the card must be the member's), then back to the member.
///
/// # Errors
/// [`Refusal::Forbidden`] without the CSRF token or the write role; [`Refusal::NotFound`] for
/// a card that is not the member's; the API's refusal otherwise.
pub async fn act(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path((code, card, action)): Path<(String, String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    session.check_form(&form)?;
    let owner = store::card_member(&state.api.pool, &card).await?;
    if owner.as_deref() != Some(code.as_str()) {
        return Err(Refusal::NotFound);
    }
    cards::perform(&session, &state, &card, &action, &form).await?;
    Ok(Redirect::to(&format!("/console/members/{}", escape(&code))).into_response())
}

/// `POST /console/members/{code}/coupons`: issues a manual coupon through the API's handler
/// (its terms are validated there), keyed by the form's idempotency key.
///
/// # Errors
/// [`Refusal::Forbidden`] without the CSRF token or the write role; the API's refusal
/// otherwise (422 naming the bad fields).
pub async fn issue_coupon(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(code): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    session.check_form(&form)?;
    let field = |name: &str| form.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    let number = |name: &str| field(name).map(|v| v.parse::<i64>().map_or(json!(v), |n| json!(n)));
    let mut body = Map::new();
    body.insert("kind".to_owned(), json!("manual"));
    if let Some(percent) = field("percent") {
        body.insert("percent".to_owned(), json!(percent));
    }
    for name in [
        "fixed_rials",
        "discount_rials_max",
        "basket_rials_min",
        "valid_days",
    ] {
        if let Some(value) = number(name) {
            body.insert(name.to_owned(), value);
        }
    }
    if let Some(merchant) = field("merchant") {
        body.insert("merchant".to_owned(), json!(merchant));
    }
    let mut headers = HeaderMap::new();
    let key = format!("console-{}", field("key").unwrap_or_default());
    if let Ok(value) = HeaderValue::from_str(&key) {
        headers.insert("idempotency-key", value);
    }
    json_of(
        coupons::issue(
            Writer(session.operator()),
            State(state.api.clone()),
            Path(code.clone()),
            headers,
            Bytes::from(Value::Object(body).to_string()),
        )
        .await,
    )
    .await?;
    Ok(Redirect::to(&format!("/console/members/{}", escape(&code))).into_response())
}
