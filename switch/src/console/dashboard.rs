//! The dashboard: today's purchases and amounts, answers by response code, approved purchases
//! per minute over the last hour and the p99 answer time, open holds, settlement cycles. A
//! merchant operator sees their merchant's figures only (and no network-wide counters).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::console::i18n;
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::ConsoleState;
use crate::domain::time::{DAY_MS, MINUTE_MS, TEHRAN_UTC_OFFSET_MINUTES};
use crate::domain::UnixMillis;
use crate::store::console as store;

/// How long the network's figures of the day are shown before they are read again: 10 s.
pub const NETWORK_FIGURES_MS: i64 = 10_000;

/// The dashboard's figures read from the database at `now_ms`.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Today's totals.
    pub totals: store::Totals,
    /// Purchases per minute of the last hour: (minute index, count).
    pub minutes: Vec<(i64, i64)>,
    /// Open holds: count and amount held.
    pub holds: (i64, i64),
}

/// Reads the dashboard's figures of one merchant, or of the network (`None`).
///
/// # Errors
/// When the database fails.
pub async fn figures(
    pool: &crate::store::Pool,
    merchant: Option<&str>,
    now_ms: i64,
) -> Result<Figures, sqlx::Error> {
    let day_start = day_start(now_ms);
    let totals = store::totals(pool, merchant, day_start, day_start + DAY_MS).await?;
    // Sixty whole minutes ending with the current one (the current minute is the last bar).
    let hour_start = now_ms - 60 * MINUTE_MS + 1;
    let minutes = store::per_minute(pool, merchant, hour_start, now_ms + 1).await?;
    let holds = store::open_holds(pool, merchant).await?;
    Ok(Figures {
        totals,
        minutes,
        holds,
    })
}

/// When the Tehran day of `now_ms` started (the key of the network's kept figures: a new day's
/// figures are never yesterday's).
fn day_start(now_ms: i64) -> i64 {
    let (today, _) = i18n::tehran(now_ms);
    UnixMillis::start_of_local_day(today, TEHRAN_UTC_OFFSET_MINUTES).get()
}

/// The network's figures at `now_ms`, as the kept figures compute them.
fn network_figures(
    state: &ConsoleState,
    now_ms: i64,
) -> impl std::future::Future<Output = Result<Figures, String>> + Send + 'static {
    let pool = state.api.pool.clone();
    async move {
        figures(&pool, None, now_ms)
            .await
            .map_err(|e| e.to_string())
    }
}

/// How long after the switch starts [`start`] begins the day's figures: past the first
/// moments, when readiness and the start-up jobs want the database's connections.
pub const START_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts computing the network's figures [`START_DELAY`] after the switch starts, so the first
/// dashboard shows them at once rather than waiting for a read of the whole day (about 0.2 s at
/// 200,000 transactions a day). Outside a runtime (nothing serves then) it does nothing.
pub fn start(state: &Arc<ConsoleState>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(START_DELAY).await;
        let now = state.api.clock.now().get();
        let _ = state.today.get(
            day_start(now),
            &state.api.clock,
            network_figures(&state, now),
        );
    });
}

/// `GET /console`. A merchant's figures are read for the page (their index ranges are their
/// own); the network's read the whole day's transactions, so they are computed at most every
/// [`NETWORK_FIGURES_MS`] and shown with their time ([`crate::console::computed`]); the first
/// computation starts with the switch ([`start`]).
///
/// # Errors
/// [`Refusal`] when not signed in or the store fails.
pub async fn show(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let pool = &state.api.pool;
    let merchant = ctx.merchant.as_deref();
    let (figures, at_ms) = match merchant {
        Some(_) => (figures(pool, merchant, ctx.now_ms).await?, ctx.now_ms),
        None => {
            let (shown, at) = state
                .today
                .get_or_wait(
                    day_start(ctx.now_ms),
                    &state.api.clock,
                    network_figures(&state, ctx.now_ms),
                )
                .await
                .map_err(|e| Refusal::Api(crate::api::error::ApiError::store(e)))?;
            (Figures::clone(&shown), at)
        }
    };
    let Figures {
        totals,
        minutes,
        holds: (holds, held),
    } = figures;
    let (today, _) = i18n::tehran(ctx.now_ms);
    let cycles = store::cycles(pool, merchant, 5).await?;
    let metrics = if merchant.is_none() {
        state.metrics.as_ref().map(|handle| handle.render())
    } else {
        None
    };
    let codes = metrics.as_deref().map(response_codes).unwrap_or_default();
    let p99 = metrics.as_deref().and_then(p99_ms);
    let mut bars = vec![(String::new(), 0_i64); 60];
    for (minute, count) in minutes {
        if let Some(bar) = usize::try_from(minute).ok().and_then(|m| bars.get_mut(m)) {
            bar.1 = count;
        }
    }
    for (i, bar) in bars.iter_mut().enumerate() {
        if i % 10 == 0 {
            bar.0 = l.digits(&format!("-{}", 60 - i));
        }
    }
    let body = html! {
        h1 { (l.t("dashboard")) }
        h2 { (l.t("today")) " " span id="today-date" { (l.date(today)) } }
        @if at_ms != ctx.now_ms { (layout::as_of(&ctx, at_ms)) }
        div class="cards" id="today-totals" {
            div class="card" { div { (l.t("purchases")) } div class="value" id="today-count" { (l.number(totals.count)) } }
            div class="card" { div { (l.t("gross")) } div class="value" id="today-gross" { (ctx.rials(totals.gross_rials)) } }
            div class="card" { div { (l.t("discount")) } div class="value" { (ctx.rials(totals.discount_rials)) } }
            div class="card" { div { (l.t("fee")) } div class="value" { (ctx.rials(totals.fee_rials)) } }
            div class="card" { div { (l.t("open_holds")) } div class="value" id="open-holds" { (l.number(holds)) " · " (ctx.rials(held)) } }
            @if let Some(p99) = p99 {
                div class="card" { div { (l.t("p99")) } div class="value" id="p99" { (l.digits(&format!("{p99:.1}"))) " ms" } }
            }
        }
        (layout::bar_chart(&ctx, "throughput", l.t("throughput"), &bars))
        @if !codes.is_empty() {
            h2 { (l.t("responses")) }
            table id="response-codes" {
                thead { tr { th { (l.t("code")) } th { (l.t("count")) } } }
                tbody { @for (code, count) in &codes { tr { td { (l.digits(code)) } td class="num" { (l.number(*count)) } } } }
            }
        }
        h2 { (l.t("cycles")) }
        table id="cycles" {
            thead { tr { th { "#" } th { (l.t("time")) } th { (l.t("count")) } th { (l.t("gross")) } th { (l.t("payouts")) } } }
            tbody { @for c in &cycles { tr {
                td { a href=(format!("/console/settlement/{}", c.id)) { (l.number(c.id)) } } td { (c.business_date) } td class="num" { (l.number(c.txn_count)) }
                td class="num" { (ctx.rials(c.gross_rials)) } td class="num" { (ctx.rials(c.payout_rials)) }
            } } }
        }
    };
    Ok(layout::page(&ctx, "dashboard", body).into_response())
}

/// Answers since start by response code, from `lsw_messages_total`.
fn response_codes(text: &str) -> Vec<(String, i64)> {
    let mut codes: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("lsw_messages_total{"))
    {
        let code = line
            .split("response_code=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next());
        let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let (Some(code), Some(value)) = (code, value) {
            let count = format!("{value:.0}").parse::<i64>().unwrap_or(0);
            *codes.entry(code.to_owned()).or_default() += count;
        }
    }
    codes.into_iter().collect()
}

/// The p99 of `lsw_message_duration_seconds` in milliseconds (the exporter's summary, over
/// its recent window).
fn p99_ms(text: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with("lsw_message_duration_seconds{quantile=\"0.99\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map(|seconds| seconds * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_p99_from_the_exposition() {
        let text = "lsw_messages_total{mti=\"0200\",response_code=\"00\"} 5\n\
                    lsw_messages_total{mti=\"0220\",response_code=\"00\"} 3\n\
                    lsw_messages_total{mti=\"0200\",response_code=\"62\"} 1\n\
                    lsw_message_duration_seconds{quantile=\"0.99\"} 0.0042\n";
        assert_eq!(
            response_codes(text),
            vec![("00".to_owned(), 8), ("62".to_owned(), 1)]
        );
        assert_eq!(p99_ms(text).map(|v| (v * 10.0).round()), Some(42.0));
    }
}
