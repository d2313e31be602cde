//! Loyalty and engagement: tiers with how many members hold each (a chart), campaigns with
//! their coupons issued and redeemed (a chart), segments; a campaign's page with its preview
//! and its report; and the survey report of a merchant. The campaign and survey figures are
//! the operator API's own reports; the tier distribution is
//! [`crate::engagement::audience::tier_distribution`], the rule segments use. Each reads every
//! member, card or campaign member, so they are computed off the request
//! ([`crate::console::computed`]) and shown with their time.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde_json::Value;

use crate::api::auth::{Operator, Reader};
use crate::api::error::ApiError;
use crate::api::{engagement, records, surveys};
use crate::console::computed::Shown;
use crate::console::layout::{self, Ctx};
use crate::console::session::{Refusal, Session};
use crate::console::transactions::escape;
use crate::console::{json_of, ConsoleState};
use crate::domain::time::MINUTE_MS;
use crate::engagement::audience;

/// How long the loyalty page's figures and a campaign's report and preview are shown before
/// they are computed again: 5 minutes.
pub const FIGURES_MS: i64 = 5 * MINUTE_MS;
/// Campaigns whose report the loyalty page charts: the first ones listed.
pub const CHARTED_CAMPAIGNS_MAX: usize = 20;

/// The loyalty page's figures: members per tier, and per charted campaign coupons issued and
/// redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoyaltyFigures {
    /// Members holding each tier, by code.
    pub tiers: Vec<(String, i64)>,
    /// All members (those holding none are the rest).
    pub members: i64,
    /// Per campaign: code, coupons issued, coupons redeemed.
    pub redemption: Vec<(String, i64, i64)>,
}

/// A campaign's report and preview, as the API answers them.
#[derive(Debug, Clone)]
pub struct CampaignFigures {
    /// `GET /api/v1/campaigns/{code}/report`.
    pub report: Value,
    /// `GET /api/v1/campaigns/{code}/preview`.
    pub preview: Value,
}

fn failed(error: ApiError) -> String {
    format!("{error:?}")
}

async fn loyalty_figures(
    state: Arc<ConsoleState>,
    operator: Operator,
    campaigns: Vec<String>,
) -> Result<LoyaltyFigures, String> {
    let (tiers, members) = audience::tier_distribution(&state.api.pool)
        .await
        .map_err(|e| e.to_string())?;
    let mut redemption = Vec::new();
    for code in campaigns.into_iter().take(CHARTED_CAMPAIGNS_MAX) {
        let answer = engagement::report_campaign(
            Reader(operator.clone()),
            State(state.api.clone()),
            Path(code.clone()),
        )
        .await;
        let report = json_of(answer).await.map_err(failed)?;
        let issued = number(&report, "coupons_issued");
        let redeemed = number(&report, "coupons_redeemed");
        redemption.push((code, issued, redeemed));
    }
    Ok(LoyaltyFigures {
        tiers,
        members,
        redemption,
    })
}

async fn campaign_figures(
    state: Arc<ConsoleState>,
    operator: Operator,
    code: String,
) -> Result<CampaignFigures, String> {
    let reader = || Reader(operator.clone());
    let api = || State(state.api.clone());
    let path = || Path(code.clone());
    let report = json_of(engagement::report_campaign(reader(), api(), path()).await)
        .await
        .map_err(failed)?;
    let preview = json_of(engagement::preview_campaign(reader(), api(), path()).await)
        .await
        .map_err(failed)?;
    Ok(CampaignFigures { report, preview })
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
    let codes: Vec<String> = campaigns
        .iter()
        .filter_map(|c| c.get("code").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let compute = loyalty_figures(state.clone(), session.operator(), codes);
    let (figures, at_ms) = match state.loyalty.get((), &state.api.clock, compute) {
        Shown::Ready { value, at_ms } => (value, at_ms),
        Shown::Pending { since_ms } => {
            return Ok(layout::pending(
                &ctx,
                "loyalty",
                html! { (l.t("loyalty")) },
                since_ms,
            ));
        }
        Shown::Failed(cause) => return Err(Refusal::Api(ApiError::store(cause))),
    };
    let held: i64 = figures.tiers.iter().map(|(_, n)| n).sum();
    // Every tier, those no member holds included, then the members holding none.
    let mut tier_bars: Vec<(String, i64)> = tiers
        .iter()
        .filter_map(|t| t.get("code").and_then(Value::as_str))
        .map(|code| {
            let held = figures
                .tiers
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, n)| *n);
            (code.to_owned(), held)
        })
        .collect();
    for (code, n) in &figures.tiers {
        if !tier_bars.iter().any(|(c, _)| c == code) {
            tier_bars.push((code.clone(), *n));
        }
    }
    tier_bars.push((l.t("no_tier").to_owned(), figures.members - held));
    let body = html! {
        h1 { (l.t("loyalty")) }
        h2 { (l.t("tier")) } (layout::table(&ctx, "tiers", &tiers))
        (layout::bar_chart(&ctx, "tier-distribution", l.t("tier_distribution"), &tier_bars))
        (layout::as_of(&ctx, at_ms))
        h2 { (l.t("campaigns")) }
        (campaign_links(&ctx, &campaigns))
        @if !figures.redemption.is_empty() {
            (layout::paired_bar_chart(&ctx, "coupon-redemption", l.t("coupon_redemption"),
                (l.t("coupons_issued"), l.t("coupons_redeemed")), &figures.redemption))
        }
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
    let compute = campaign_figures(state.clone(), session.operator(), code.clone());
    let (figures, at_ms) = match state.campaigns.get(code.clone(), &state.api.clock, compute) {
        Shown::Ready { value, at_ms } => (value, at_ms),
        Shown::Pending { since_ms } => {
            let title = html! { (l.t("campaign")) " " (code) };
            return Ok(layout::pending(&ctx, "loyalty", title, since_ms));
        }
        Shown::Failed(cause) => return Err(Refusal::Api(ApiError::store(cause))),
    };
    let (preview, report) = (&figures.preview, &figures.report);
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
    .map(|(key, label)| (label.to_owned(), number(report, key)));
    let body = html! {
        h1 { (l.t("campaign")) " " (code) }
        (fields(&ctx, "campaign", &shown))
        (layout::as_of(&ctx, at_ms))
        h2 { (l.t("preview")) }
        (fields(&ctx, "preview", preview))
        @if !sample.is_empty() {
            p id="sample" { (l.t("sample")) ": "
                @for (i, member) in sample.iter().enumerate() {
                    @if i > 0 { ", " }
                    a href=(format!("/console/members/{}", escape(member))) { (member) }
                }
            }
        }
        h2 { (l.t("report")) }
        (fields(&ctx, "report", report))
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
