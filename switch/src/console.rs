//! The operator console: server-rendered pages under `/console` on the admin port
//! (docs/console.md). Pages are HTML written with `maud`; the style sheet is embedded in the
//! binary, charts are SVG drawn here, and the browser fetches nothing else, from nowhere else.
//!
//! The console reads and changes through the operator API's own handlers (the same checks,
//! the same audit rows, the same indexed reads), called in process with the signed-in
//! operator; what it adds is sign-in, sessions, CSRF, the merchant role, the two languages and
//! the pricing explanation.
//!
//! Layout:
//! - [`session`]: sign-in (password or API token), the session cookie, CSRF, roles.
//! - [`limit`]: the sign-in rate limit; [`computed`]: figures computed off the request.
//! - [`i18n`]: English and Persian (right to left, Persian digits, Solar Hijri dates).
//! - [`layout`]: the page shell, tables, CSV and SVG charts.
//! - [`dashboard`], [`transactions`], [`cards`], [`members`], [`settlement`], [`engagement`],
//!   [`screens`]: the screens.

pub mod cards;
pub mod computed;
pub mod dashboard;
pub mod engagement;
pub mod i18n;
pub mod layout;
pub mod limit;
pub mod members;
pub mod screens;
pub mod session;
pub mod settlement;
pub mod transactions;

use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::ApiState;

/// What the console's handlers share.
pub struct ConsoleState {
    /// The operator API's state: the console calls its handlers.
    pub api: Arc<ApiState>,
    /// The metrics, for the dashboard's response codes and answer times.
    pub metrics: Option<PrometheusHandle>,
    /// Failed sign-ins per operator name and per address.
    pub limit: limit::SignInLimit,
    /// The network's figures of the day (dashboard), by the day's start.
    pub today: Arc<computed::Computed<i64, dashboard::Figures>>,
    /// The reports page's figures.
    pub reports: Arc<computed::Computed<(), screens::ReportFigures>>,
    /// The loyalty page's figures.
    pub loyalty: Arc<computed::Computed<(), engagement::LoyaltyFigures>>,
    /// Campaigns' reports and previews, by code.
    pub campaigns: Arc<computed::Computed<String, engagement::CampaignFigures>>,
    /// Cycles' reconciliations, by cycle id.
    pub reconciliations: Arc<computed::Computed<i64, crate::settlement::reconcile::Reconciliation>>,
}

impl ConsoleState {
    /// The console's state over the operator API's.
    pub fn new(api: Arc<ApiState>, metrics: Option<PrometheusHandle>) -> ConsoleState {
        ConsoleState {
            api,
            metrics,
            limit: limit::SignInLimit::new(),
            today: Arc::new(computed::Computed::new(
                "today",
                dashboard::NETWORK_FIGURES_MS,
            )),
            reports: Arc::new(computed::Computed::new("reports", screens::REPORTS_MS)),
            loyalty: Arc::new(computed::Computed::new("loyalty", engagement::FIGURES_MS)),
            campaigns: Arc::new(computed::Computed::new("campaigns", engagement::FIGURES_MS)),
            reconciliations: Arc::new(computed::Computed::new(
                "reconciliations",
                settlement::RECONCILIATION_MS,
            )),
        }
    }
}

/// The style sheet, embedded.
pub const STYLE: &str = include_str!("console/console.css");

/// Every route the console serves, as (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/console"),
    ("GET", "/console/static/console.css"),
    ("GET", "/console/sign-in"),
    ("POST", "/console/sign-in"),
    ("POST", "/console/sign-out"),
    ("GET", "/console/settings"),
    ("POST", "/console/settings"),
    ("GET", "/console/transactions"),
    ("GET", "/console/transactions/{id}"),
    ("GET", "/console/cards"),
    ("GET", "/console/cards/{code}"),
    ("POST", "/console/cards/{code}/{action}"),
    ("GET", "/console/members/{code}"),
    ("POST", "/console/members/{code}/cards/{card}/{action}"),
    ("POST", "/console/members/{code}/coupons"),
    ("GET", "/console/merchants"),
    ("GET", "/console/terminals"),
    ("POST", "/console/terminals/{terminal_id}/rotate-key"),
    ("GET", "/console/settlement"),
    ("GET", "/console/settlement/{cycle}"),
    ("GET", "/console/settlement/{cycle}/reconciliation"),
    ("GET", "/console/settlement/{cycle}/files/{file}"),
    ("GET", "/console/loyalty"),
    ("GET", "/console/campaigns/{code}"),
    ("GET", "/console/surveys"),
    ("GET", "/console/reports"),
    ("GET", "/console/audit"),
];

/// The `/console` routes.
pub fn router(state: Arc<ConsoleState>) -> Router {
    dashboard::start(&state);
    Router::new()
        .route("/console", get(dashboard::show))
        .route("/console/static/console.css", get(style))
        .route(
            "/console/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/console/sign-out", post(session::sign_out))
        .route(
            "/console/settings",
            get(session::settings_page).post(session::settings),
        )
        .route("/console/transactions", get(transactions::search))
        .route("/console/transactions/{id}", get(transactions::detail))
        .route("/console/cards", get(cards::find))
        .route("/console/cards/{code}", get(cards::show))
        .route("/console/cards/{code}/{action}", post(cards::act))
        .route("/console/members/{code}", get(members::show))
        .route(
            "/console/members/{code}/cards/{card}/{action}",
            post(members::act),
        )
        .route(
            "/console/members/{code}/coupons",
            post(members::issue_coupon),
        )
        .route("/console/merchants", get(screens::merchants))
        .route("/console/terminals", get(screens::terminals))
        .route(
            "/console/terminals/{terminal_id}/rotate-key",
            post(screens::rotate_key),
        )
        .route("/console/settlement", get(settlement::list))
        .route("/console/settlement/{cycle}", get(settlement::show))
        .route(
            "/console/settlement/{cycle}/reconciliation",
            get(settlement::reconciliation),
        )
        .route(
            "/console/settlement/{cycle}/files/{file}",
            get(settlement::file),
        )
        .route("/console/loyalty", get(engagement::loyalty))
        .route("/console/campaigns/{code}", get(engagement::campaign))
        .route("/console/surveys", get(engagement::surveys))
        .route("/console/reports", get(screens::reports))
        .route("/console/audit", get(screens::audit))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::api::BODY_BYTES_MAX,
        ))
        .with_state(state)
}

async fn style() -> impl IntoResponse {
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
}

/// The JSON body of an API handler's answer, or its error.
///
/// # Errors
/// The handler's [`ApiError`], or a store error when its body cannot be read.
pub async fn json_of(answer: Result<impl IntoResponse, ApiError>) -> Result<Value, ApiError> {
    let response: Response = answer?.into_response();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
        .await
        .map_err(ApiError::store)?;
    let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(ApiError::Invalid {
            problems: vec![(
                String::new(),
                value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("refused")
                    .to_owned(),
            )],
        })
    }
}
