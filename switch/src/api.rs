//! The operator API (`/api/v1` on the admin port; `docs/operator-api.md`): JSON over HTTP,
//! a bearer token per operator, every change validated as an import is, written with its audit
//! row in one transaction, and then live: the switch's snapshot is rebuilt and swapped, so the
//! next transaction over TCP sees it while those in flight keep the snapshot they started with.
//!
//! Layout:
//! - [`auth`]: operator tokens (stored hashed) and the read and write roles.
//! - [`error`]: the one JSON error shape and its status codes.
//! - [`merchants`], [`terminals`], [`cards`], [`audit`], and [`records`] (tiers, groups and
//!   members): the resources; [`reports`]: activity, top members, open holds, expiring, RFM, win-back.
//! - [`card_operations`]: blocking, unblocking or renewing a list of cards from a file.
//! - [`change`]: how a change is saved, audited and made live; [`credits`]: top-ups and
//!   store-credit grants, which go through the engine; [`surveys`]: surveys after a purchase,
//!   the SMS gateway's webhook for replies and their report.
//! - [`views`]: the operations console's indexed reads: transaction search and detail, card
//!   and member views, the terminal list.

pub mod audit;
pub mod auth;
pub mod card_operations;
pub mod cards;
pub mod change;
pub mod coupons;
pub mod credits;
pub mod engagement;
pub mod error;
pub mod explain;
pub mod merchants;
pub mod records;
pub mod reports;
pub mod surveys;
pub mod terminals;
pub mod top_up;
pub mod views;

use std::sync::Arc;

use crate::store::Pool;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::sync::{watch, Mutex};

use crate::clock::Clock;
use crate::domain::{Kek, PanTokenKey};
use crate::snapshot::Snapshot;

/// The OpenAPI document of this API, served at `/api/v1/openapi.json`; a test checks that
/// it names exactly the routes [`router`] serves.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// Largest request body the API reads: a merchant or terminal record is well under 4 KiB.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// What the API's handlers share.
pub struct ApiState {
    /// The database.
    pub pool: Pool,
    /// Seals the TMKs of new terminals.
    pub kek: Kek,
    /// Tokenises the PANs of new cards.
    pub pan_key: Arc<PanTokenKey>,
    /// Where a changed snapshot is published to the connection tasks.
    pub snapshots: watch::Sender<Arc<Snapshot>>,
    /// The switch's clock (audit rows, import times).
    pub clock: Arc<dyn Clock>,
    /// Serialises changes: each reads the stored reference data, changes it and saves it, so
    /// two at once could otherwise build snapshots from each other's stale reads.
    pub changes: Mutex<()>,
    /// The committer's queue for credits (top-ups, store-credit grants): balances belong to
    /// the engine, so the API asks it rather than writing them itself.
    pub credits: tokio::sync::mpsc::Sender<crate::committer::CreditJob>,
    /// Surveys: the webhook's secret and the reply window (docs/surveys.md).
    pub surveys: crate::survey::SurveySettings,
    /// Top-ups: the order timeout and the payment gateway's secret (docs/top-up.md).
    pub top_up: top_up::TopUpSettings,
    /// Engagement: the holiday calendar (docs/campaigns.md).
    pub engagement: engagement::EngagementSettings,
    /// The journal's progress, in journal mode: requests wait for the projection
    /// ([`fresh_reads`]).
    pub journal: Option<Arc<crate::committer::journaled::JournalState>>,
}

/// How long a request waits for the projection to catch up before it is served anyway.
pub const FRESH_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Journal mode writes the database behind the answers (docs/design.md, "The journal"). Every
/// API request first waits, up to [`FRESH_WAIT`], until everything answered before it arrived
/// is in the database: an operator reads what terminals were answered and what the API itself
/// just did.
async fn fresh_reads(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(journal) = &state.journal {
        if tokio::time::timeout(FRESH_WAIT, journal.wait_projected())
            .await
            .is_err()
        {
            tracing::warn!(
                lag_records = journal.lag(),
                "operator request served before the projection caught up"
            );
        }
    }
    next.run(request).await
}

/// Every route [`router`] serves, as (method, path) with axum's `{name}` placeholders. The
/// OpenAPI test checks the document names exactly these, and that each is served.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/merchants"),
    ("GET", "/api/v1/merchants/{code}"),
    ("PUT", "/api/v1/merchants/{code}"),
    ("POST", "/api/v1/terminals"),
    ("GET", "/api/v1/terminals/{terminal_id}"),
    ("PUT", "/api/v1/terminals/{terminal_id}"),
    ("POST", "/api/v1/terminals/{terminal_id}/rotate-key"),
    (
        "POST",
        "/api/v1/terminals/{terminal_id}/revoke-previous-key",
    ),
    ("GET", "/api/v1/cards/{code}"),
    ("POST", "/api/v1/cards/{code}/block"),
    ("POST", "/api/v1/cards/{code}/unblock"),
    ("GET", "/api/v1/audit"),
    ("POST", "/api/v1/cards"),
    ("POST", "/api/v1/cards/{code}/renew"),
    ("POST", "/api/v1/cards/{code}/replace"),
    ("GET", "/api/v1/rules"),
    ("GET", "/api/v1/rules/{code}"),
    ("PUT", "/api/v1/rules/{code}"),
    ("GET", "/api/v1/tiers"),
    ("GET", "/api/v1/tiers/{code}"),
    ("PUT", "/api/v1/tiers/{code}"),
    ("GET", "/api/v1/merchant-groups"),
    ("GET", "/api/v1/merchant-groups/{code}"),
    ("PUT", "/api/v1/merchant-groups/{code}"),
    ("GET", "/api/v1/member-groups"),
    ("GET", "/api/v1/member-groups/{code}"),
    ("PUT", "/api/v1/member-groups/{code}"),
    ("GET", "/api/v1/terminal-groups"),
    ("GET", "/api/v1/terminal-groups/{code}"),
    ("PUT", "/api/v1/terminal-groups/{code}"),
    ("GET", "/api/v1/members"),
    ("GET", "/api/v1/members/{code}"),
    ("PUT", "/api/v1/members/{code}"),
    ("GET", "/api/v1/members/{code}/coupons"),
    ("POST", "/api/v1/members/{code}/coupons"),
    ("POST", "/api/v1/coupons/win-back"),
    ("POST", "/api/v1/coupons/rfm"),
    ("POST", "/api/v1/cards/{code}/top-ups"),
    ("POST", "/api/v1/cards/{code}/store-credit"),
    ("GET", "/api/v1/reports/activity"),
    ("GET", "/api/v1/reports/top-members"),
    ("GET", "/api/v1/reports/open-holds"),
    ("GET", "/api/v1/reports/expiring"),
    ("GET", "/api/v1/reports/rfm"),
    ("GET", "/api/v1/reports/win-back"),
    ("GET", "/api/v1/merchants/{code}/survey"),
    ("PUT", "/api/v1/merchants/{code}/survey"),
    ("POST", "/api/v1/sms/inbound"),
    ("GET", "/api/v1/reports/surveys"),
    ("POST", "/api/v1/cards/{code}/top-up-orders"),
    ("GET", "/api/v1/top-up-orders/{reference}"),
    ("POST", "/api/v1/payments/callback"),
    ("GET", "/api/v1/reports/top-up-callbacks"),
    ("GET", "/api/v1/tags"),
    ("GET", "/api/v1/tags/{code}"),
    ("PUT", "/api/v1/tags/{code}"),
    ("POST", "/api/v1/tags/{code}/members"),
    ("POST", "/api/v1/tags/{code}/import"),
    ("POST", "/api/v1/tags/{code}/apply"),
    ("GET", "/api/v1/segments"),
    ("GET", "/api/v1/segments/{code}"),
    ("PUT", "/api/v1/segments/{code}"),
    ("GET", "/api/v1/segments/{code}/preview"),
    ("GET", "/api/v1/occasions"),
    ("PUT", "/api/v1/occasions/{code}"),
    ("GET", "/api/v1/campaigns"),
    ("GET", "/api/v1/campaigns/{code}"),
    ("PUT", "/api/v1/campaigns/{code}"),
    ("GET", "/api/v1/campaigns/{code}/preview"),
    ("POST", "/api/v1/campaigns/{code}/run"),
    ("GET", "/api/v1/campaigns/{code}/report"),
    ("GET", "/api/v1/merchants/{code}/reminder"),
    ("PUT", "/api/v1/merchants/{code}/reminder"),
    ("GET", "/api/v1/transactions"),
    ("GET", "/api/v1/transactions/{id}"),
    ("GET", "/api/v1/transactions/{id}/explanation"),
    ("GET", "/api/v1/cards/{code}/view"),
    ("GET", "/api/v1/members/{code}/view"),
    ("GET", "/api/v1/terminals"),
    ("POST", "/api/v1/card-operations"),
];

/// The `/api/v1` routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .merge(reference_routes())
        .merge(loyalty_routes())
        .merge(engagement_routes())
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            fresh_reads,
        ))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// The reference data's routes: merchants, terminals, cards, rules, tiers, groups, members,
/// the audit log and the read views.
fn reference_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/merchants", get(records::merchants::list))
        .route(
            "/api/v1/merchants/{code}",
            get(records::merchants::show).put(records::merchants::put),
        )
        .route(
            "/api/v1/terminals",
            get(views::terminals).post(terminals::create),
        )
        .route(
            "/api/v1/terminals/{terminal_id}",
            get(terminals::show).put(terminals::update),
        )
        .route(
            "/api/v1/terminals/{terminal_id}/rotate-key",
            post(terminals::rotate),
        )
        .route(
            "/api/v1/terminals/{terminal_id}/revoke-previous-key",
            post(terminals::revoke_previous),
        )
        .route("/api/v1/cards/{code}", get(cards::show))
        .route("/api/v1/cards/{code}/block", post(cards::block))
        .route("/api/v1/cards/{code}/unblock", post(cards::unblock))
        .route("/api/v1/audit", get(audit::list))
        .route("/api/v1/cards", post(cards::issue))
        .route("/api/v1/cards/{code}/renew", post(cards::renew))
        .route(
            "/api/v1/card-operations",
            // A file of up to 100,000 cards: the one route with a larger body than a record's.
            post(card_operations::run).layer(axum::extract::DefaultBodyLimit::max(
                card_operations::BODY_BYTES_MAX,
            )),
        )
        .route("/api/v1/cards/{code}/replace", post(cards::replace))
        .route("/api/v1/rules", get(records::rules::list))
        .route(
            "/api/v1/rules/{code}",
            get(records::rules::show).put(records::rules::put),
        )
        .route("/api/v1/tiers", get(records::tiers::list))
        .route(
            "/api/v1/tiers/{code}",
            get(records::tiers::show).put(records::tiers::put),
        )
        .route(
            "/api/v1/merchant-groups",
            get(records::merchant_groups::list),
        )
        .route(
            "/api/v1/merchant-groups/{code}",
            get(records::merchant_groups::show).put(records::merchant_groups::put),
        )
        .route("/api/v1/member-groups", get(records::member_groups::list))
        .route(
            "/api/v1/member-groups/{code}",
            get(records::member_groups::show).put(records::member_groups::put),
        )
        .route(
            "/api/v1/terminal-groups",
            get(records::terminal_groups::list),
        )
        .route(
            "/api/v1/terminal-groups/{code}",
            get(records::terminal_groups::show).put(records::terminal_groups::put),
        )
        .route("/api/v1/members", get(records::members::list))
        .route(
            "/api/v1/members/{code}",
            get(records::members::show).put(records::members::put),
        )
        .route("/api/v1/transactions", get(views::search))
        .route("/api/v1/transactions/{id}", get(views::show))
        .route("/api/v1/transactions/{id}/explanation", get(explain::show))
        .route("/api/v1/cards/{code}/view", get(views::card))
        .route("/api/v1/members/{code}/view", get(views::member))
}

/// The loyalty programme's routes: coupons, credits, reports, surveys and online top-ups.
fn loyalty_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route(
            "/api/v1/members/{code}/coupons",
            get(coupons::list).post(coupons::issue),
        )
        .route("/api/v1/coupons/win-back", post(coupons::win_back))
        .route("/api/v1/coupons/rfm", post(coupons::rfm))
        .route("/api/v1/cards/{code}/top-ups", post(credits::top_up))
        .route("/api/v1/cards/{code}/store-credit", post(credits::grant))
        .route("/api/v1/reports/activity", get(reports::activity))
        .route("/api/v1/reports/top-members", get(reports::top_members))
        .route("/api/v1/reports/open-holds", get(reports::open_holds))
        .route("/api/v1/reports/expiring", get(reports::expiring))
        .route("/api/v1/reports/rfm", get(reports::rfm))
        .route("/api/v1/reports/win-back", get(reports::win_back))
        .route(
            "/api/v1/merchants/{code}/survey",
            get(surveys::show).put(surveys::put),
        )
        .route("/api/v1/sms/inbound", post(surveys::receive))
        .route("/api/v1/reports/surveys", get(surveys::report))
        .route(
            "/api/v1/cards/{code}/top-up-orders",
            post(top_up::create_order),
        )
        .route("/api/v1/top-up-orders/{reference}", get(top_up::show_order))
        .route("/api/v1/payments/callback", post(top_up::callback))
        .route("/api/v1/reports/top-up-callbacks", get(top_up::report))
}

/// Member engagement's routes: tags, segments, occasions, campaigns and reminders.
fn engagement_routes() -> Router<Arc<ApiState>> {
    Router::new()
        .route("/api/v1/tags", get(engagement::list_tags))
        .route(
            "/api/v1/tags/{code}",
            get(engagement::show_tag).put(engagement::put_tag),
        )
        .route("/api/v1/tags/{code}/members", post(engagement::tag_members))
        .route("/api/v1/tags/{code}/import", post(engagement::import_tag))
        .route("/api/v1/tags/{code}/apply", post(engagement::apply_tag))
        .route("/api/v1/segments", get(engagement::list_segments))
        .route(
            "/api/v1/segments/{code}",
            get(engagement::show_segment).put(engagement::put_segment),
        )
        .route(
            "/api/v1/segments/{code}/preview",
            get(engagement::preview_segment),
        )
        .route("/api/v1/occasions", get(engagement::occasions))
        .route("/api/v1/occasions/{code}", put(engagement::put_occasion))
        .route("/api/v1/campaigns", get(engagement::list_campaigns))
        .route(
            "/api/v1/campaigns/{code}",
            get(engagement::show_campaign).put(engagement::put_campaign),
        )
        .route(
            "/api/v1/campaigns/{code}/preview",
            get(engagement::preview_campaign),
        )
        .route(
            "/api/v1/campaigns/{code}/run",
            post(engagement::run_campaign),
        )
        .route(
            "/api/v1/campaigns/{code}/report",
            get(engagement::report_campaign),
        )
        .route(
            "/api/v1/merchants/{code}/reminder",
            get(engagement::show_reminder).put(engagement::put_reminder),
        )
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

/// The body as a JSON object.
///
/// # Errors
/// [`error::ApiError::BadJson`] when it is not JSON or not an object.
pub fn body_object(
    body: &[u8],
) -> Result<serde_json::Map<String, serde_json::Value>, error::ApiError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(error::ApiError::BadJson {
            message: "expected an object".to_owned(),
        }),
        Err(error) => Err(error::ApiError::BadJson {
            message: format!("line {} column {}", error.line(), error.column()),
        }),
    }
}

/// The one record of `records` that `matches`, or 404 naming `what`.
///
/// # Errors
/// [`error::ApiError::NotFound`] when none matches.
pub fn find<'r, T>(
    records: &'r [T],
    what: &'static str,
    matches: impl Fn(&T) -> bool,
) -> Result<&'r T, error::ApiError> {
    records
        .iter()
        .find(|record| matches(record))
        .ok_or(error::ApiError::NotFound { what })
}

/// One column of a row a report or list read, with a store failure as the API's error.
///
/// # Errors
/// [`error::ApiError::Store`] when the column is missing or of another type.
pub fn column<'r, T>(row: &'r crate::store::DbRow, name: &str) -> Result<T, error::ApiError>
where
    T: sqlx::Decode<'r, crate::store::Db> + sqlx::Type<crate::store::Db>,
{
    sqlx::Row::try_get(row, name).map_err(error::ApiError::store)
}

/// The stored records whose code is one of `names` (see
/// [`crate::store::reference::load_named`]), for a read: index lookups, never the whole
/// reference data.
///
/// # Errors
/// [`error::ApiError::Store`] when the database fails.
pub async fn named(
    state: &ApiState,
    names: Vec<String>,
) -> Result<crate::domain::LoadedReference, error::ApiError> {
    let mut tx = state.pool.begin().await.map_err(error::ApiError::store)?;
    let loaded = crate::store::reference::load_named(&mut tx, &state.kek, &names)
        .await
        .map_err(error::ApiError::store)?;
    tx.commit().await.map_err(error::ApiError::store)?;
    Ok(loaded)
}
