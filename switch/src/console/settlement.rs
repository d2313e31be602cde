//! Settlement: the cycles, a cycle's payouts per merchant, its adjustments and exceptions, its
//! reconciliation and its three files. Everything is read, reconciled and rendered by
//! [`crate::settlement`], the code `lsw-settle` runs, so the files downloaded here are the bytes
//! `lsw-settle` writes. A merchant operator sees only their own merchant's line, adjustments
//! and exceptions (and files cut to them); the reconciliation is the network's, so theirs is
//! refused.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::console::computed::Shown;
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::ConsoleState;
use crate::settlement::cycle::Amounts;
use crate::settlement::error::SettleError;
use crate::settlement::store::{self as cycles, CycleRecord, CycleRef, Part};
use crate::settlement::{files, reconcile};
use crate::store::console as store;

/// How long a cycle's reconciliation is shown before it is computed again: 5 minutes.
pub const RECONCILIATION_MS: i64 = 5 * 60_000;

/// Merchant lines (and at most adjustments and exceptions of each kind) shown on one page of
/// a cycle.
pub const LINES_PAGE: i64 = 200;

impl From<SettleError> for Refusal {
    fn from(error: SettleError) -> Refusal {
        match error {
            SettleError::UnknownCycle { .. } => Refusal::NotFound,
            other => Refusal::Api(ApiError::store(other)),
        }
    }
}

/// `GET /console/settlement`: the newest cycles (a merchant operator's own lines), each
/// linking to its page.
///
/// # Errors
/// [`Refusal`] when the store fails.
pub async fn list(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let rows = store::cycles(&state.api.pool, ctx.merchant.as_deref(), 100).await?;
    if query.get("format").is_some_and(|f| f == "csv") {
        let items: Vec<Value> = rows
            .iter()
            .map(|c| {
                json!({
                    "id": c.id, "business_date": c.business_date, "closed_at_ms": c.closed_at_ms,
                    "txn_count": c.txn_count, "gross_rials": c.gross_rials, "payout_rials": c.payout_rials,
                })
            })
            .collect();
        return Ok(layout::csv("settlement", &items));
    }
    let body = html! {
        h1 { (l.t("settlement")) }
        table id="cycles" {
            thead { tr { th { "#" } th { (l.t("business_date")) } th { (l.t("closed_at")) } th { (l.t("count")) }
                th { (l.t("gross")) } th { (l.t("payouts")) } } }
            tbody { @for c in &rows { tr data-cycle=(c.id) {
                td { a href=(format!("/console/settlement/{}", c.id)) { (l.number(c.id)) } }
                td { (date_text(&ctx, &c.business_date)) }
                td { (ctx.instant(c.closed_at_ms)) }
                td class="num" { (l.number(c.txn_count)) }
                td class="num" { (ctx.rials(c.gross_rials)) }
                td class="num" data-rials=(c.payout_rials) { (ctx.rials(c.payout_rials)) }
            } } }
        }
        p { a href="?format=csv" id="csv" { (l.t("download_csv")) } }
    };
    Ok(layout::page(&ctx, "settlement", body).into_response())
}

fn date_text(ctx: &Ctx, text: &str) -> String {
    crate::domain::CivilDate::parse(text).map_or_else(|_| text.to_owned(), |d| ctx.locale.date(d))
}

/// A merchant operator's merchant's row id (`None` for the network).
async fn own_merchant(state: &ConsoleState, session: &Session) -> Result<Option<i64>, Refusal> {
    match session.merchant() {
        None => Ok(None),
        Some(code) => Ok(Some(
            store::merchant_id(&state.api.pool, code)
                .await?
                .ok_or(Refusal::NotFound)?,
        )),
    }
}

/// The part `part` of the cycle `text` names (a date or an id), as this operator may see it.
async fn load(
    state: &ConsoleState,
    session: &Session,
    text: &str,
    mut part: Part,
) -> Result<CycleRecord, Refusal> {
    let reference = CycleRef::parse(text).map_err(|_| Refusal::NotFound)?;
    part.merchant_id = own_merchant(state, session).await?;
    let record = cycles::load_cycle_part(&state.api.pool, &reference, part).await?;
    match part.merchant_id {
        None => Ok(record),
        Some(id) => record.of_merchant(id).ok_or(Refusal::NotFound),
    }
}

fn amount_cells(ctx: &Ctx, a: &Amounts) -> Markup {
    let l = ctx.locale;
    let money = [
        a.gross,
        a.club,
        a.store_credit,
        a.fee,
        a.adjustments,
        a.carried_in,
        a.payout,
        a.carried_out,
    ];
    html! {
        td class="num" { (l.number(a.txn_count)) }
        @for (value, (column, _)) in money.iter().zip(MONEY_COLUMNS) {
            td class="num" data-rials=(value) data-column=(column) { (ctx.rials(*value)) }
        }
    }
}

/// The money columns of a line: the name in `data-column` and the heading's text key.
const MONEY_COLUMNS: [(&str, &str); 8] = [
    ("gross", "gross"),
    ("club", "club_captured"),
    ("store_credit", "store_credit"),
    ("fee", "fee"),
    ("adjustments", "adjustments"),
    ("carried_in", "carried_in"),
    ("payout", "payout"),
    ("carried_out", "carried_out"),
];

fn amount_heads(ctx: &Ctx) -> Markup {
    let l = ctx.locale;
    html! { th { (l.t("count")) } @for (_, key) in MONEY_COLUMNS { th { (l.t(key)) } } }
}

/// `GET /console/settlement/{cycle}?page=`: the cycle's dates and totals, its payouts per
/// merchant ([`LINES_PAGE`] a page), adjustments and exceptions, and links to its
/// reconciliation and files.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown cycle, or one without the merchant operator's line.
pub async fn show(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(text): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let page: i64 = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
        .max(0);
    let part = Part {
        merchant_id: None,
        offset: page.saturating_mul(LINES_PAGE),
        limit: LINES_PAGE,
        with_adjustments: true,
    };
    let cycle = load(&state, &session, &text, part).await?;
    let merchant_id = cycle
        .lines
        .first()
        .map(|l| l.merchant_id)
        .filter(|_| ctx.merchant.is_some());
    let (line_count, adjustment_count) =
        cycles::cycle_counts(&state.api.pool, cycle.id, merchant_id).await?;
    let lines = cycle.lines.iter();
    let more = line_count > part.offset.saturating_add(LINES_PAGE);
    let shown = |count: usize, all: i64| {
        html! {
            @let count = i64::try_from(count).unwrap_or(i64::MAX);
            @if count < all { p class="note" { (l.t("showing")) " " (l.number(count)) " / " (l.number(all)) } }
        }
    };
    let base = format!("/console/settlement/{}", cycle.id);
    let [payout_name, summary_name, exceptions_name] = files::names(cycle.business_date);
    let body = html! {
        h1 { (l.t("cycle")) " " (l.number(cycle.id)) " · " (l.date(cycle.business_date)) }
        table id="cycle" { tbody {
            tr { th { (l.t("business_date")) } td { (l.date(cycle.business_date)) } }
            tr { th { (l.t("cutoff")) } td { (ctx.instant(cycle.cutoff_at.get())) } }
            tr { th { (l.t("closed_at")) } td { (ctx.instant(cycle.closed_at.get())) } }
            tr { th { (l.t("due_date")) } td { (l.date(cycle.due_date)) } }
        } }
        h2 { (l.t("payouts")) " (" (l.number(line_count)) ")" }
        table id="payouts" {
            thead { tr { th { (l.t("merchant")) } th { (l.t("name")) } th { "IBAN" } (amount_heads(&ctx)) } }
            tbody { @for line in lines { tr data-merchant=(line.merchant_code) {
                td { (line.merchant_code) } td { (line.merchant_name) } td { (line.iban) }
                (amount_cells(&ctx, &line.amounts))
            } } }
            tfoot { tr id="totals" { th colspan="3" { (l.t("total")) } (amount_cells(&ctx, &cycle.totals)) } }
        }
        @if page > 0 || more {
            p {
                @if page > 0 { a href=(format!("{base}?page={}", page - 1)) { (l.t("previous_page")) } " " }
                @if more { a href=(format!("{base}?page={}", page + 1)) { (l.t("next_page")) } }
            }
        }
        h2 { (l.t("adjustments")) }
        (shown(cycle.adjustments.len(), adjustment_count))
        table id="adjustments" {
            thead { tr { th { "#" } th { (l.t("merchant")) } th { (l.t("amount")) } th { (l.t("source")) } th { (l.t("reason")) } th { (l.t("time")) } } }
            tbody { @for a in &cycle.adjustments { tr {
                td { (l.number(a.id)) } td { (a.merchant_code) }
                td class="num" data-rials=(a.amount_rials) { (ctx.rials(a.amount_rials)) }
                td { (a.source) } td { (a.reason) } td { (ctx.instant(a.created_at.get())) }
            } } }
        }
        h2 { (l.t("exceptions")) }
        @if i64::try_from(cycle.exceptions.len()).unwrap_or(i64::MAX) >= LINES_PAGE {
            p class="note" { (l.t("first_of_file")) }
        }
        table id="exceptions" {
            thead { tr { th { (l.t("kind")) } th { (l.t("merchant")) } th { (l.t("transactions")) } th { (l.t("rrn")) } th { (l.t("account")) } th { (l.t("amount")) } th { (l.t("time")) } } }
            tbody { @for e in &cycle.exceptions { tr data-kind=(e.kind) {
                td { (e.kind) } td { (e.merchant_code) }
                td { @if let Some(id) = e.txn_id { a href=(format!("/console/transactions/{id}")) { (l.number(id)) } } }
                td { (e.rrn.as_deref().unwrap_or_default()) } td { (e.account) }
                td class="num" data-rials=(e.amount_rials) { (ctx.rials(e.amount_rials)) }
                td { @if let Some(at) = e.at { (ctx.instant(at.get())) } }
            } } }
        }
        h2 { (l.t("files")) }
        ul id="files" {
            li { a href=(format!("{base}/files/payout.csv")) download=(payout_name) { (payout_name) } }
            li { a href=(format!("{base}/files/summary.json")) download=(summary_name) { (summary_name) } }
            li { a href=(format!("{base}/files/exceptions.csv")) download=(exceptions_name) { (exceptions_name) } }
        }
        @if ctx.merchant.is_none() {
            p { a href=(format!("{base}/reconciliation")) id="reconcile" { (l.t("reconcile")) } }
        }
    };
    Ok(layout::page(&ctx, "settlement", body).into_response())
}

/// `GET /console/settlement/{cycle}/files/{file}`: `payout.csv`, `summary.json` or
/// `exceptions.csv`, the bytes `lsw-settle` writes (a merchant operator's cut to their line).
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown cycle or file.
pub async fn file(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path((text, name)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let part = if name == "payout.csv" {
        Part::LINES
    } else {
        Part::ALL
    };
    let cycle = load(&state, &session, &text, part).await?;
    let [payout_name, summary_name, exceptions_name] = files::names(cycle.business_date);
    let (content, file_name, content_type) = match name.as_str() {
        "payout.csv" => (files::payout_csv(&cycle), payout_name, "text/csv"),
        "summary.json" => (
            files::summary_json(&cycle)?,
            summary_name,
            "application/json",
        ),
        "exceptions.csv" => (files::exceptions_csv(&cycle), exceptions_name, "text/csv"),
        _ => return Err(Refusal::NotFound),
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                format!("{content_type}; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        content,
    )
        .into_response())
}

/// `GET /console/settlement/{cycle}/reconciliation`: every equality `lsw-settle reconcile`
/// checks, with both sides. The network's: refused to a merchant operator. Its ledger checks
/// read every card's balance and movements, so it is computed off the request (the page
/// reloads itself until it is done) and kept for [`RECONCILIATION_MS`].
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator; [`Refusal::NotFound`] for an unknown cycle.
pub async fn reconciliation(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(text): Path<String>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let reference = CycleRef::parse(&text).map_err(|_| Refusal::NotFound)?;
    let id = {
        let mut conn = state.api.pool.acquire().await?;
        cycles::find_cycle(&mut conn, &reference)
            .await?
            .ok_or(Refusal::NotFound)?
    };
    let pool = state.api.pool.clone();
    let compute = async move {
        reconcile::reconcile(&pool, &CycleRef::Id(id))
            .await
            .map_err(|e| e.to_string())
    };
    let (result, at_ms) = match state.reconciliations.get(id, &state.api.clock, compute) {
        Shown::Ready { value, at_ms } => (value, at_ms),
        Shown::Pending { since_ms } => {
            let title = html! { (l.t("reconciliation")) " · " (l.t("cycle")) " " (l.number(id)) };
            return Ok(layout::pending(&ctx, "settlement", title, since_ms));
        }
        Shown::Failed(cause) => return Err(Refusal::Api(ApiError::store(cause))),
    };
    let failed = result.differences().count();
    let body = html! {
        h1 { (l.t("reconciliation")) " · " (l.t("cycle")) " " a href=(format!("/console/settlement/{}", result.cycle_id)) { (l.number(result.cycle_id)) } }
        (layout::as_of(&ctx, at_ms))
        @if result.is_balanced() {
            p class="ok" id="balanced" { (l.t("balanced")) ": " (l.number(i64::try_from(result.checks.len()).unwrap_or(i64::MAX))) " " (l.t("checks_hold")) }
        } @else {
            p class="bad" id="not-balanced" { (l.t("not_balanced")) ": " (l.number(i64::try_from(failed).unwrap_or(i64::MAX))) " " (l.t("checks_fail")) }
        }
        table id="checks" {
            thead { tr { th { (l.t("check")) } th { "" } th { (l.t("left")) } th { "" } th { (l.t("right")) } th { "" } } }
            tbody { @for c in &result.checks { tr class=(if c.holds() { "holds" } else { "differs" }) {
                td { (c.name) } td { (c.left_label) } td class="num" { (l.number(c.left)) }
                td { (c.right_label) } td class="num" { (l.number(c.right)) }
                td class=(if c.holds() { "ok" } else { "bad" }) { (if c.holds() { "ok" } else { "DIFF" }) }
            } } }
        }
    };
    Ok(layout::page(&ctx, "settlement", body).into_response())
}
