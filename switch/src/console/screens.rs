//! The list screens: merchants, terminals (with key rotation), reports with charts, and the
//! audit log. Each renders what the operator API's handler answers;
//! `?format=csv` downloads the screen's table.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::Value;

use crate::api::auth::{Operator, Reader, Writer};
use crate::api::error::ApiError;
use crate::api::{audit, records, reports, terminals, views};
use crate::console::computed::Shown;
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::{json_of, ConsoleState};

type Pairs = Vec<(String, String)>;

/// How long the reports are shown before they are computed again: 5 minutes.
pub const REPORTS_MS: i64 = 5 * 60_000;

/// The first list in an answer: the answer itself when it is one, else its first array field.
fn items(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .values()
            .find_map(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn csv_asked(pairs: &Pairs) -> bool {
    pairs.iter().any(|(k, v)| k == "format" && v == "csv")
}

fn without_format(pairs: Pairs) -> Pairs {
    pairs.into_iter().filter(|(k, _)| k != "format").collect()
}

fn list_page(
    ctx: &Ctx,
    current: &'static str,
    id: &str,
    rows: &[Value],
    extra: Markup,
) -> Response {
    let l = ctx.locale;
    let body = html! {
        h1 { (l.t(current)) }
        (extra)
        (layout::table(ctx, id, rows))
        p { a href="?format=csv" id="csv" { (l.t("download_csv")) } }
    };
    layout::page(ctx, current, body).into_response()
}

/// `GET /console/merchants`.
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator.
pub async fn merchants(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let csv = csv_asked(&pairs);
    let value = json_of(
        records::merchants::list(
            Reader(session.operator()),
            State(state.api.clone()),
            Query(without_format(pairs)),
        )
        .await,
    )
    .await?;
    let rows = items(&value);
    if csv {
        return Ok(layout::csv("merchants", &rows));
    }
    Ok(list_page(&ctx, "merchants", "merchants", &rows, html! {}))
}

/// `GET /console/terminals`: the list, with a rotate button per terminal for a write operator.
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator.
pub async fn terminals(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let csv = csv_asked(&pairs);
    let value = json_of(
        views::terminals(
            Reader(session.operator()),
            State(state.api.clone()),
            Query(without_format(pairs)),
        )
        .await,
    )
    .await?;
    let rows = items(&value);
    if csv {
        return Ok(layout::csv("terminals", &rows));
    }
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.get("terminal_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect();
    let extra = html! {
        @if ctx.write {
            div class="actions" {
                @for id in &ids {
                    form method="post" action=(format!("/console/terminals/{id}/rotate-key")) class="inline" {
                        (ctx.csrf_field()) button type="submit" { (l.t("rotate_key")) " " (id) }
                    }
                }
            }
        }
    };
    Ok(list_page(&ctx, "terminals", "terminals", &rows, extra))
}

/// `POST /console/terminals/{terminal_id}/rotate-key`: a new key with the API's default
/// overlap; the new TMK and KSI are shown once, on this page only.
///
/// # Errors
/// [`Refusal::Forbidden`] without the CSRF token or the write role.
pub async fn rotate_key(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(terminal_id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    session.check_form(&form)?;
    let ctx = Ctx::new(&session, &state);
    let value = json_of(
        terminals::rotate(
            Writer(session.operator()),
            State(state.api.clone()),
            Path(terminal_id.clone()),
            Bytes::new(),
        )
        .await,
    )
    .await?;
    let rows = vec![value];
    let body = html! {
        h1 { (ctx.locale.t("rotate_key")) " " (terminal_id) }
        p class="ok" { (ctx.locale.t("done")) }
        (layout::table(&ctx, "rotated", &rows))
    };
    Ok(layout::page(&ctx, "terminals", body).into_response())
}

fn report_params(format: Option<&str>) -> reports::Params {
    reports::Params {
        from: None,
        to: None,
        by: Some("merchant".to_owned()),
        format: format.map(str::to_owned),
        limit: Some(100),
        days: None,
    }
}

/// The network's daily activity by merchant and its RFM scores, as the API reports them.
#[derive(Debug)]
pub struct ReportFigures {
    /// Per day and merchant: count and sums of confirmed transactions (newest 100 rows).
    pub activity: Vec<Value>,
    /// RFM scores (first 100 members).
    pub rfm: Vec<Value>,
}

async fn report_figures(
    state: Arc<ConsoleState>,
    operator: Operator,
) -> Result<ReportFigures, String> {
    let reader = || Reader(operator.clone());
    let api = || State(state.api.clone());
    let failed = |e: ApiError| format!("{e:?}");
    let answer = reports::activity(reader(), api(), Query(report_params(None))).await;
    let activity = items(&json_of(answer).await.map_err(failed)?);
    let answer = reports::rfm(reader(), api(), Query(report_params(None))).await;
    let rfm = items(&json_of(answer).await.map_err(failed)?);
    Ok(ReportFigures { activity, rfm })
}

/// `GET /console/reports`: daily volume and amounts per merchant (a chart and a table; a
/// merchant operator's own rows only) and, for the network, the RFM scores. The API's reports
/// read every confirmed transaction, so they are computed off the request, at most every
/// [`REPORTS_MS`], and shown with their time.
///
/// # Errors
/// [`Refusal`] when the store fails.
pub async fn reports(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let compute = report_figures(state.clone(), session.operator());
    let (figures, at_ms) = match state.reports.get((), &state.api.clock, compute) {
        Shown::Ready { value, at_ms } => (value, at_ms),
        Shown::Pending { since_ms } => {
            return Ok(layout::pending(
                &ctx,
                "reports",
                html! { (l.t("reports")) },
                since_ms,
            ));
        }
        Shown::Failed(cause) => return Err(Refusal::Api(ApiError::store(cause))),
    };
    let mut activity = figures.activity.clone();
    if let Some(own) = &ctx.merchant {
        activity.retain(|row| row.get("merchant").and_then(Value::as_str) == Some(own.as_str()));
    }
    if csv_asked(&pairs) {
        return Ok(layout::csv("activity", &activity));
    }
    let mut per_day: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for row in &activity {
        let day = row.get("day").and_then(Value::as_str).unwrap_or_default();
        let gross = row.get("gross_rials").and_then(Value::as_i64).unwrap_or(0);
        *per_day.entry(day.to_owned()).or_default() += gross;
    }
    let bars: Vec<(String, i64)> = per_day.into_iter().collect();
    let rfm: &[Value] = if ctx.merchant.is_none() {
        &figures.rfm
    } else {
        &[]
    };
    let mut scores = vec![(String::new(), 0_i64); 5];
    for (i, bar) in scores.iter_mut().enumerate() {
        bar.0 = l.digits(&format!("R{}", i + 1));
    }
    for row in rfm {
        let r = row.get("r").and_then(Value::as_i64).unwrap_or(0);
        if let Some(bar) = usize::try_from(r - 1).ok().and_then(|i| scores.get_mut(i)) {
            bar.1 += 1;
        }
    }
    let body = html! {
        h1 { (l.t("reports")) }
        (layout::as_of(&ctx, at_ms))
        (layout::bar_chart(&ctx, "daily-volume", l.t("daily_volume"), &bars))
        (layout::table(&ctx, "activity", &activity))
        p { a href="?format=csv" id="csv" { (l.t("download_csv")) } }
        @if !rfm.is_empty() {
            h2 { (l.t("rfm")) }
            (layout::bar_chart(&ctx, "rfm-chart", l.t("rfm"), &scores))
            (layout::table(&ctx, "rfm", rfm))
        }
    };
    Ok(layout::page(&ctx, "reports", body).into_response())
}

/// `GET /console/audit?before=`: the audit log, newest first, 100 rows a page.
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator.
pub async fn audit(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(pairs): Query<Pairs>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let csv = csv_asked(&pairs);
    let mut query: Pairs = without_format(pairs)
        .into_iter()
        .filter(|(k, _)| k == "before")
        .collect();
    query.push(("limit".to_owned(), "100".to_owned()));
    let value = json_of(
        audit::list(
            Reader(session.operator()),
            State(state.api.clone()),
            Query(query),
        )
        .await,
    )
    .await?;
    let rows = items(&value);
    if csv {
        return Ok(layout::csv("audit", &rows));
    }
    let next = value.get("next").and_then(Value::as_i64);
    let extra = html! {
        @if let Some(next) = next { p { a href=(format!("/console/audit?before={next}")) { (ctx.locale.t("next_page")) } } }
    };
    Ok(list_page(&ctx, "audit", "audit", &rows, extra))
}
