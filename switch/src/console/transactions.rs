//! Transactions: the search (the API's, with its filters and paging; a merchant operator's
//! always narrowed to their merchant) and a transaction's detail with why it was priced so.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;

use crate::api::auth::Reader;
use crate::api::error::ApiError;
use crate::api::views;
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::{json_of, ConsoleState};
use crate::store::console as store;
use crate::store::explain::{self, Explanation};

const FILTERS: &[&str] = &[
    "rrn", "card", "terminal", "merchant", "from", "to", "outcome",
];

/// `GET /console/transactions?rrn=&card=&…&format=csv`.
///
/// # Errors
/// [`Refusal`] when not signed in, or a filter is wrong.
pub async fn search(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let csv = pairs.iter().any(|(k, v)| k == "format" && v == "csv");
    let mut query: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, v)| k != "format" && !v.is_empty())
        .filter(|(k, _)| !(ctx.merchant.is_some() && k == "merchant"))
        .cloned()
        .collect();
    if let Some(merchant) = &ctx.merchant {
        query.push(("merchant".to_owned(), merchant.clone()));
    }
    let answer = views::search(
        Reader(session.operator()),
        State(state.api.clone()),
        Query(query.clone()),
    )
    .await;
    let (items, next, problem) = match json_of(answer).await {
        Ok(value) => (
            value
                .get("items")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            value.get("next").and_then(Value::as_i64),
            None,
        ),
        Err(crate::api::error::ApiError::Invalid { problems }) => {
            (Vec::new(), None, Some(problems))
        }
        Err(other) => return Err(other.into()),
    };
    if csv {
        return Ok(layout::csv("transactions", &items));
    }
    let value_of = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut csv_query = query.clone();
    csv_query.push(("format".to_owned(), "csv".to_owned()));
    let body = html! {
        h1 { (l.t("transactions")) }
        form method="get" action="/console/transactions" id="search" {
            @for name in FILTERS {
                @if !(ctx.merchant.is_some() && *name == "merchant") {
                    label { (name) " " input name=(name) value=(value_of(name)); }
                }
            }
            button type="submit" { (l.t("search")) }
        }
        @if let Some(problems) = &problem {
            ul class="error" { @for (field, message) in problems { li { (field) ": " (message) } } }
        }
        (txn_table(&ctx, &items))
        p {
            a href=(format!("/console/transactions?{}", encode(&csv_query))) id="csv" { (l.t("download_csv")) }
            @if let Some(next) = next {
                " · "
                a href=(format!("/console/transactions?{}&after={next}", encode(&query))) { (l.t("next_page")) }
            }
        }
    };
    Ok(layout::page(&ctx, "transactions", body).into_response())
}

/// A query string of `pairs`, percent-encoded.
pub fn encode(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `text` percent-encoded for a URL.
pub fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Transactions as a table linking to their detail.
pub fn txn_table(ctx: &Ctx, items: &[Value]) -> Markup {
    let l = ctx.locale;
    let text = |item: &Value, key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let number = |item: &Value, key: &str| item.get(key).and_then(Value::as_i64).unwrap_or(0);
    html! {
        table id="transactions" {
            thead { tr {
                th { "#" } th { (l.t("rrn")) } th { (l.t("time")) } th { (l.t("state")) } th { (l.t("terminal")) }
                th { (l.t("merchant")) } th { (l.t("card")) } th { (l.t("gross")) } th { (l.t("discount")) } th { (l.t("bank_rest")) }
            } }
            tbody { @for item in items {
                @let id = number(item, "id");
                tr {
                    td { a href=(format!("/console/transactions/{id}")) { (l.number(id)) } }
                    td class="rrn" { (text(item, "rrn")) }
                    td { (ctx.instant(number(item, "created_at_ms"))) }
                    td { (text(item, "state")) }
                    td { (text(item, "terminal")) }
                    td { (text(item, "merchant")) }
                    td { (text(item, "bin")) "…" (text(item, "last4")) }
                    td class="num" { (ctx.rials(number(item, "gross_rials"))) }
                    td class="num" { (ctx.rials(number(item, "discount_rials"))) }
                    td class="num" { (ctx.rials(number(item, "bank_rest_rials"))) }
                }
            } }
        }
    }
}

/// `GET /console/transactions/{id}`: the detail and its explanation. A merchant operator asking
/// for another merchant's transaction gets 404, as for one that does not exist.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown transaction or another merchant's.
pub async fn detail(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let txn_id: i64 = id.parse().map_err(|_| Refusal::NotFound)?;
    if let Some(own) = &ctx.merchant {
        let merchant = store::txn_merchant(&state.api.pool, txn_id).await?;
        if merchant.as_deref() != Some(own.as_str()) {
            return Err(Refusal::NotFound);
        }
    }
    let value = json_of(
        views::show(
            Reader(session.operator()),
            State(state.api.clone()),
            Path(id),
        )
        .await,
    )
    .await?;
    let explanation = explain::explain(&state.api.pool, txn_id)
        .await
        .map_err(ApiError::store)?
        .ok_or(Refusal::NotFound)?;
    let movements = value
        .get("movements")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let body = html! {
        h1 { (l.t("transactions")) " #" (l.number(txn_id)) }
        (txn_table(&ctx, std::slice::from_ref(&value)))
        h2 { (l.t("explanation")) }
        (explanation_table(&ctx, &explanation))
        @if !movements.is_empty() {
            h2 { (l.t("balance")) }
            (layout::table(&ctx, "movements", &movements))
        }
    };
    Ok(layout::page(&ctx, "transactions", body).into_response())
}

/// The explanation as a table of (what, terms, amount) rows and its verdict.
pub fn explanation_table(ctx: &Ctx, e: &Explanation) -> Markup {
    let l = ctx.locale;
    let rule_terms = e.rule.as_ref().map(|r| {
        let kind = match (&r.percent, r.fixed_rials) {
            (Some(p), _) => format!("{p}%"),
            (None, Some(f)) => ctx.rials(f),
            (None, None) => String::new(),
        };
        let cap = r
            .discount_rials_max
            .map(|c| format!(", ≤ {}", ctx.rials(c)))
            .unwrap_or_default();
        format!(
            "{} ({}): {kind}{cap}, ≥ {} · v{}",
            r.code,
            r.name,
            ctx.rials(r.basket_rials_min),
            r.version
        )
    });
    let coupon_terms = e.coupon.as_ref().map(|c| {
        let kind = match (&c.percent, c.fixed_rials) {
            (Some(p), _) => format!("{p}%"),
            (None, Some(f)) => ctx.rials(f),
            (None, None) => String::new(),
        };
        format!("#{} {}: {kind}", c.id, c.kind)
    });
    let fee_terms = e.fee.as_ref().map(|f| {
        format!(
            "{}% [{} … {}] · v{}",
            f.rate,
            ctx.rials(f.fee_rials_min),
            ctx.rials(f.fee_rials_max),
            f.version
        )
    });
    let tier_terms = e.tier.as_ref().map(|t| {
        format!(
            "{} ({}, {}): {}%",
            t.code, t.name, t.source, t.cashback_rate
        )
    });
    let rows: Vec<(&str, Option<String>, i64, &str)> = vec![
        ("gross", None, e.gross_rials, "x-gross"),
        (
            "rule",
            rule_terms,
            e.discount_rials - e.coupon_rials,
            "x-rule",
        ),
        ("coupon", coupon_terms, e.coupon_rials, "x-coupon"),
        ("discount", None, e.discount_rials, "x-discount"),
        ("store_credit", None, e.store_credit_rials, "x-store"),
        ("club", None, e.club_rials, "x-club"),
        ("bank_rest", None, e.bank_rest_rials, "x-bank"),
        ("fee", fee_terms, e.fee_rials, "x-fee"),
        ("tier", tier_terms, e.cashback_rials, "x-cashback"),
    ];
    html! {
        table id="explanation" {
            tbody {
                @for (key, terms, amount, id) in &rows {
                    tr { th { (l.t(key)) } td { (terms.clone().unwrap_or_default()) } td class="num" id=(id) data-rials=(amount) { (ctx.rials(*amount)) } }
                }
                tr { th { (l.t("snapshot")) } td colspan="2" id="x-version" { (l.number(e.snapshot_version)) } }
                tr { th { (l.t("state")) } td colspan="2" id="x-state" { (e.state) } }
                @if let Some(at) = e.confirmed_at_ms { tr { th { (l.t("capture")) } td colspan="2" { (ctx.instant(at)) } } }
                @if let Some(at) = e.reversed_at_ms { tr { th { (l.t("reversal")) } td colspan="2" { (ctx.instant(at)) } } }
            }
        }
        @if e.adds_up {
            p class="ok" id="adds-up" { (l.t("adds_up")) }
        } @else {
            p class="bad" id="adds-up" { (l.t("does_not_add_up")) }
        }
    }
}
