//! Cards: a card's view (BIN and last four, status, balances, history) with its actions
//! (block, unblock, renew, replace, top-up, store-credit grant), shared with the member's view.
//! Every action is the operator API's own handler, so it is validated and audited as the API's
//! is; the forms carry the session's CSRF token and only a write operator sees or may use them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::{json, Value};

use crate::api::auth::{Reader, Writer};
use crate::api::{cards as api_cards, credits, views};
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::transactions::{escape, txn_table};
use crate::console::{json_of, ConsoleState};

/// `GET /console/cards?code=`: the card finder, or straight to the card.
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator.
pub async fn find(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    session.network()?;
    if let Some(code) = query.get("code").filter(|c| !c.is_empty()) {
        let target = format!("/console/cards/{}", super::transactions::escape(code));
        return Ok(Redirect::to(&target).into_response());
    }
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let body = html! {
        h1 { (l.t("cards")) }
        form method="get" action="/console/cards" id="find-card" {
            label { (l.t("card")) " " input name="code"; }
            button type="submit" { (l.t("search")) }
        }
    };
    Ok(layout::page(&ctx, "cards", body).into_response())
}

/// `GET /console/cards/{code}`.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown card; [`Refusal::Forbidden`] for a merchant operator.
pub async fn show(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(code): Path<String>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let view = json_of(
        views::card(
            Reader(session.operator()),
            State(state.api.clone()),
            Path(code.clone()),
            Query(Vec::new()),
        )
        .await,
    )
    .await?;
    let card = view.get("card").cloned().unwrap_or(Value::Null);
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let club = view.get("club").cloned().unwrap_or(Value::Null);
    let history = view
        .get("history")
        .and_then(|h| h.get("items"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let store_credit = view
        .get("store_credit")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let member = text(&card, "member");
    let status = text(&card, "status");
    let body = html! {
        h1 { (l.t("card")) " " (code) }
        table id="card" { tbody {
            tr { th { "BIN" } td { (text(&card, "bin")) } }
            tr { th { "last4" } td { (text(&card, "last4")) } }
            tr { th { (l.t("status")) } td id="card-status" { (status) } }
            tr { th { (l.t("expiry")) } td { (l.digits(&text(&card, "expiry"))) } }
            tr { th { (l.t("member")) } td { a href=(format!("/console/members/{member}")) { (member) } } }
            @for (k, v) in club.as_object().into_iter().flatten() {
                tr { th { (l.t("club")) " · " (k) } td class="num" { (layout::cell(&ctx, k, v)) } }
            }
        } }
        @if !store_credit.is_empty() { h2 { (l.t("store_credit")) } (layout::table(&ctx, "store-credit", &store_credit)) }
        @if ctx.write { (action_forms(&ctx, &format!("/console/cards/{code}"), "actions", &status)) }
        h2 { (l.t("history")) }
        (txn_table(&ctx, &history))
    };
    Ok(layout::page(&ctx, "cards", body).into_response())
}

/// The action forms of a card for a write operator, posting to `{base}/{action}`: block or
/// unblock, renew, top up, grant store credit, replace. Each carries the CSRF token; the money
/// forms carry a fresh idempotency key, so a form sent twice moves the money once.
pub fn action_forms(ctx: &Ctx, base: &str, id: &str, status: &str) -> Markup {
    let l = ctx.locale;
    let key = hex::encode(rand::random::<[u8; 16]>());
    let action = |name: &str| format!("{base}/{name}");
    // The card's own page names its block buttons; a member's page has one form set per card.
    let card_page = id == "actions";
    html! {
        div class="actions" id=(id) {
            @if status == "blocked" {
                form method="post" action=(action("unblock")) class="inline" { (ctx.csrf_field()) button type="submit" class="unblock" id=[card_page.then_some("unblock")] { (l.t("unblock")) } }
            } @else {
                form method="post" action=(action("block")) class="inline" { (ctx.csrf_field()) button type="submit" class="danger block" id=[card_page.then_some("block")] { (l.t("block")) } }
            }
            form method="post" action=(action("renew")) class="renew" { (ctx.csrf_field()) label { (l.t("expiry")) " " input name="expiry" placeholder="YYYY-MM"; } button type="submit" { (l.t("renew")) } }
            form method="post" action=(action("top-up")) class="top-up" { (ctx.csrf_field()) input type="hidden" name="key" value=(key);
                label { (l.t("amount")) " " input name="amount_rials" inputmode="numeric"; } button type="submit" { (l.t("top_up")) } }
            form method="post" action=(action("store-credit")) class="store-credit" { (ctx.csrf_field()) input type="hidden" name="key" value=(key);
                label { (l.t("merchant")) " " input name="merchant"; } label { (l.t("amount")) " " input name="amount_rials" inputmode="numeric"; }
                button type="submit" { (l.t("grant")) } }
            form method="post" action=(action("replace")) class="replace" { (ctx.csrf_field())
                label { (l.t("new_code")) " " input name="new_code"; } label { "PAN " input name="pan" type="password" autocomplete="off"; }
                button type="submit" { (l.t("replace")) } }
        }
    }
}

/// Runs a card action through the operator API's own handler as the signed-in operator:
/// block, unblock, renew, replace, top-up, store-credit. The caller has checked the form.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown action; the API's refusal otherwise.
pub async fn perform(
    session: &Session,
    state: &ConsoleState,
    code: &str,
    action: &str,
    form: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let writer = || Writer(session.operator());
    let api = || State(state.api.clone());
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let amount = || field("amount_rials").trim().parse::<i64>().unwrap_or(0);
    let keyed = || {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&format!("console-{}", field("key"))) {
            headers.insert("idempotency-key", value);
        }
        headers
    };
    let body = |value: Value| Bytes::from(value.to_string());
    let path = || Path(code.to_owned());
    match action {
        "block" => json_of(api_cards::block(writer(), api(), path()).await).await,
        "unblock" => json_of(api_cards::unblock(writer(), api(), path()).await).await,
        "renew" => {
            let b = body(json!({ "expiry": field("expiry") }));
            json_of(api_cards::renew(writer(), api(), path(), b).await).await
        }
        "replace" => {
            let b = body(json!({ "new_code": field("new_code"), "pan": field("pan") }));
            json_of(api_cards::replace(writer(), api(), path(), b).await).await
        }
        "top-up" => {
            let b = body(json!({ "amount_rials": amount() }));
            json_of(credits::top_up(writer(), api(), path(), keyed(), b).await).await
        }
        "store-credit" => {
            let b = body(json!({ "merchant": field("merchant"), "amount_rials": amount() }));
            json_of(credits::grant(writer(), api(), path(), keyed(), b).await).await
        }
        _ => return Err(Refusal::NotFound),
    }?;
    Ok(())
}

/// `POST /console/cards/{code}/{action}`: block, unblock, renew, top-up, store-credit,
/// replace. The CSRF token and the write role are checked before anything else.
///
/// # Errors
/// [`Refusal::Forbidden`] without the token or the role; the API's refusal otherwise.
pub async fn act(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path((code, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    session.check_form(&form)?;
    perform(&session, &state, &code, &action, &form).await?;
    Ok(Redirect::to(&format!("/console/cards/{}", escape(&code))).into_response())
}
