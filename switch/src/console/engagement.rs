//! Loyalty and engagement: tiers with how many members hold each (a chart), campaigns with
//! their coupons issued and redeemed (a chart), segments; a campaign's page with its preview
//! and its report; and the survey report of a merchant. The campaign and survey figures are
//! the operator API's own reports; the tier distribution is
//! [`crate::engagement::audience::tier_distribution`], the rule segments use, cached
//! ([`TierCache`]) because it reads every card with a tier.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;

use crate::api::auth::Reader;
use crate::api::{engagement, records, surveys};
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::transactions::escape;
use crate::console::{json_of, ConsoleState};
use crate::domain::time::MINUTE_MS;
use crate::engagement::audience;

/// How long a tier distribution is shown before it is computed again (in the background).
pub const TIER_CACHE_MS: i64 = 5 * MINUTE_MS;
/// Campaigns whose report the loyalty page charts: the first ones listed.
pub const CHARTED_CAMPAIGNS_MAX: usize = 20;

/// A tier distribution: members per tier code, all members, and when it was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// Members holding each tier, by code.
    pub tiers: Vec<(String, i64)>,
    /// All members (those holding none are the rest).
    pub members: i64,
    /// When it was read, Unix ms (the switch's clock).
    pub at_ms: i64,
}

/// The newest tier distribution. Older than [`TIER_CACHE_MS`], it is still shown while one
/// task reads it again; the first page computes it.
#[derive(Debug, Default)]
pub struct TierCache {
    slot: Mutex<Option<Arc<Distribution>>>,
    refreshing: Arc<AtomicBool>,
}

impl TierCache {
    async fn read(state: &ConsoleState) -> Result<Arc<Distribution>, sqlx::Error> {
        let (tiers, members) = audience::tier_distribution(&state.api.pool).await?;
        let fresh = Arc::new(Distribution {
            tiers,
            members,
            at_ms: state.api.clock.now().get(),
        });
        *state
            .tiers
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
        Ok(fresh)
    }

    /// The distribution to show now.
    ///
    /// # Errors
    /// The database's error, when there is none to show yet.
    pub async fn get(state: &Arc<ConsoleState>) -> Result<Arc<Distribution>, sqlx::Error> {
        let now = state.api.clock.now().get();
        let held = state
            .tiers
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match held {
            Some(shown) if now - shown.at_ms < TIER_CACHE_MS => Ok(shown),
            Some(stale) => {
                if !state.tiers.refreshing.swap(true, Ordering::SeqCst) {
                    let state = state.clone();
                    tokio::spawn(async move {
                        if let Err(cause) = TierCache::read(&state).await {
                            tracing::warn!(%cause, "console: tier distribution not read");
                        }
                        state.tiers.refreshing.store(false, Ordering::SeqCst);
                    });
                }
                Ok(stale)
            }
            None => TierCache::read(state).await,
        }
    }
}

fn items(value: &Value, key: &str) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find(|v| v.is_array()))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn number(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// `GET /console/loyalty`: tiers and their distribution, campaigns and their coupon
/// redemption, segments.
///
/// # Errors
/// [`Refusal::Forbidden`] for a merchant operator.
pub async fn loyalty(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let reader = || Reader(session.operator());
    let api = || State(state.api.clone());
    let tiers = items(
        &json_of(records::tiers::list(reader(), api(), Query(Vec::new())).await).await?,
        "items",
    );
    let campaigns = items(
        &json_of(engagement::list_campaigns(reader(), api()).await).await?,
        "campaigns",
    );
    let segments = items(
        &json_of(engagement::list_segments(reader(), api()).await).await?,
        "segments",
    );
    let distribution = TierCache::get(&state).await?;
    let held: i64 = distribution.tiers.iter().map(|(_, n)| n).sum();
    let mut tier_bars = distribution.tiers.clone();
    tier_bars.push((l.t("no_tier").to_owned(), distribution.members - held));
    let mut redemption = Vec::new();
    for campaign in campaigns.iter().take(CHARTED_CAMPAIGNS_MAX) {
        let code = campaign
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let path = Path(code.to_owned());
        let report = json_of(engagement::report_campaign(reader(), api(), path).await).await?;
        let issued = number(&report, "coupons_issued");
        let redeemed = number(&report, "coupons_redeemed");
        redemption.push((code.to_owned(), issued, redeemed));
    }
    let body = html! {
        h1 { (l.t("loyalty")) }
        h2 { (l.t("tier")) } (layout::table(&ctx, "tiers", &tiers))
        (layout::bar_chart(&ctx, "tier-distribution", l.t("tier_distribution"), &tier_bars))
        p class="note" { (l.t("as_of")) " " (ctx.instant(distribution.at_ms)) }
        h2 { (l.t("campaigns")) }
        (campaign_links(&ctx, &campaigns))
        (layout::paired_bar_chart(&ctx, "coupon-redemption", l.t("coupon_redemption"),
            (l.t("coupons_issued"), l.t("coupons_redeemed")), &redemption))
        h2 { (l.t("segments")) } (layout::table(&ctx, "segments", &segments))
    };
    Ok(layout::page(&ctx, "loyalty", body).into_response())
}

fn campaign_links(ctx: &Ctx, campaigns: &[Value]) -> Markup {
    let l = ctx.locale;
    let text = |c: &Value, key: &str| {
        c.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    html! {
        table id="campaigns" {
            thead { tr { th { (l.t("code")) } th { (l.t("name")) } th { (l.t("state")) } th { (l.t("from")) } th { (l.t("to")) } } }
            tbody { @for c in campaigns { tr {
                td { a href=(format!("/console/campaigns/{}", escape(&text(c, "code")))) { (text(c, "code")) } }
                td { (text(c, "name")) } td { (text(c, "state")) }
                td { (text(c, "starts_on")) } td { (text(c, "ends_on")) }
            } } }
        }
    }
}

/// A JSON object's plain fields as a two-column table.
fn fields(ctx: &Ctx, id: &str, value: &Value) -> Markup {
    html! {
        table id=(id) { tbody {
            @for (key, v) in value.as_object().into_iter().flatten() {
                @if !v.is_object() && !v.is_array() {
                    tr data-field=(key) { th { (key) } td { (layout::cell(ctx, key, v)) } }
                }
            }
        } }
    }
}

/// `GET /console/campaigns/{code}`: the campaign, its preview (who it would reach now and
/// what it could cost) and its report (members reached, coupons issued and redeemed, messages,
/// revenue), as the API answers them.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown campaign; [`Refusal::Forbidden`] for a merchant
/// operator.
pub async fn campaign(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Path(code): Path<String>,
) -> Result<Response, Refusal> {
    session.network()?;
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    let reader = || Reader(session.operator());
    let api = || State(state.api.clone());
    let path = || Path(code.clone());
    let shown = json_of(engagement::show_campaign(reader(), api(), path()).await).await?;
    let preview = json_of(engagement::preview_campaign(reader(), api(), path()).await).await?;
    let report = json_of(engagement::report_campaign(reader(), api(), path()).await).await?;
    let sample: Vec<String> = preview
        .get("sample")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let funnel = [
        ("members", l.t("reached")),
        ("coupons_issued", l.t("coupons_issued")),
        ("coupons_redeemed", l.t("coupons_redeemed")),
        ("messages_delivered", l.t("messages_delivered")),
    ]
    .map(|(key, label)| (label.to_owned(), number(&report, key)));
    let body = html! {
        h1 { (l.t("campaign")) " " (code) }
        (fields(&ctx, "campaign", &shown))
        h2 { (l.t("preview")) }
        (fields(&ctx, "preview", &preview))
        @if !sample.is_empty() {
            p id="sample" { (l.t("sample")) ": "
                @for (i, member) in sample.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(format!("/console/members/{}", escape(member))) { (member) }
                }
            }
        }
        h2 { (l.t("report")) }
        (fields(&ctx, "report", &report))
        (layout::bar_chart(&ctx, "campaign-funnel", l.t("report"), &funnel))
    };
    Ok(layout::page(&ctx, "loyalty", body).into_response())
}

/// `GET /console/surveys?merchant=&from=&to=`: the survey report of a merchant (a merchant
/// operator's own, whatever they ask), with the scores as a chart and the newest comments.
///
/// # Errors
/// [`Refusal::NotFound`] for an unknown merchant or one without a survey; 422 for a bad
/// period.
pub async fn surveys(
    session: Session,
    State(state): State<Arc<ConsoleState>>,
    Query(mut query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let ctx = Ctx::new(&session, &state);
    let l = ctx.locale;
    if let Some(own) = &ctx.merchant {
        query.insert("merchant".to_owned(), own.clone());
    }
    let given = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    let merchant = given("merchant");
    let report = match &merchant {
        Some(code) => {
            let params = surveys::ReportParams {
                merchant: Some(code.clone()),
                from: given("from"),
                to: given("to"),
                format: None,
            };
            let answer = surveys::report(
                Reader(session.operator()),
                State(state.api.clone()),
                Query(params),
                HeaderMap::new(),
            )
            .await;
            let value = json_of(answer).await?;
            value.get("survey_report").cloned()
        }
        None => None,
    };
    let body = html! {
        h1 { (l.t("surveys")) }
        form method="get" action="/console/surveys" id="survey-report" {
            @if ctx.merchant.is_none() {
                label { (l.t("merchant")) " " input name="merchant" value=(merchant.clone().unwrap_or_default()); }
            }
            label { (l.t("from")) " " input name="from" placeholder="YYYY-MM-DD" value=(given("from").unwrap_or_default()); }
            label { (l.t("to")) " " input name="to" placeholder="YYYY-MM-DD" value=(given("to").unwrap_or_default()); }
            button type="submit" { (l.t("search")) }
        }
        @if let Some(report) = &report { (survey_report(&ctx, report)) }
    };
    Ok(layout::page(&ctx, "surveys", body).into_response())
}

fn survey_report(ctx: &Ctx, report: &Value) -> Markup {
    let l = ctx.locale;
    let scores: Vec<(String, i64)> = items(report, "distribution")
        .iter()
        .map(|row| (l.number(number(row, "score")), number(row, "count")))
        .collect();
    let comments = items(report, "recent_comments");
    html! {
        (fields(ctx, "survey", report))
        (layout::bar_chart(ctx, "survey-scores", l.t("scores"), &scores))
        h2 { (l.t("comments")) }
        (layout::table(ctx, "comments", &comments))
    }
}
