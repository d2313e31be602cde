//! The admin listener: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (database
//! reachable and reference data loaded) and the operator API under `/api/v1`
//! ([`crate::api`]), served by axum's router on the switch's runtime.
//!
//! The port bounds its clients ([`gate`]): a request line within a second of the accept,
//! headers within [`HEADER_TIMEOUT`], a body within [`BODY_TIMEOUT`], at most
//! [`PER_ADDRESS_MAX`] general connections per address and [`CONNECTIONS_MAX`] in all, and a
//! reserved share of [`HEALTH_CONNECTIONS_MAX`] for `/healthz` and `/readyz`, so a connection
//! flood leaves the probes their answer.

pub mod gate;

use std::sync::Arc;
use std::time::Duration;

use crate::store::Pool;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::warn;

use crate::abuse::Reason;
use crate::api::{self, ApiState};

/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin endpoints read.
pub struct AdminState {
    /// Renders the metrics, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The database.
    pub pool: Pool,
    /// The journal's progress, in journal mode: not ready while the projection is past its
    /// bound or failing.
    pub journal: Option<Arc<crate::committer::journaled::JournalState>>,
}

/// The whole admin router: health, metrics, the operator API and the console.
pub fn router(state: Arc<AdminState>, api_state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state.clone())
        .merge(crate::console::router(Arc::new(
            crate::console::ConsoleState::new(api_state.clone(), state.metrics.clone()),
        )))
        .merge(api::router(api_state))
        .layer(axum::middleware::from_fn(body_deadline))
}

/// General admin connections (metrics, the operator API) open at once.
pub const CONNECTIONS_MAX: usize = 64;
/// General admin connections open at once from one address.
pub const PER_ADDRESS_MAX: usize = 32;
/// Connections reserved for `/healthz` and `/readyz`, one request each: a flood of other
/// connections cannot take them, so a liveness probe keeps its answer.
pub const HEALTH_CONNECTIONS_MAX: usize = 32;
/// Connections whose request line has not arrived yet; one more is closed at once.
pub const PENDING_MAX: usize = 256;
/// A connection's request line must arrive within this of its accept; it decides whether
/// the connection is a health probe or a general one.
pub const REQUEST_LINE_TIMEOUT: Duration = Duration::from_secs(1);
/// A request's headers must arrive whole within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A request's body must arrive whole within this.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// An admin connection that sends nothing this long is closed (slow or idle clients).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// No admin connection lives longer than this, however it trickles its bytes.
pub const LIFETIME_MAX: Duration = Duration::from_secs(120);
/// At shutdown, how long open admin connections may finish their requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves admin requests until `shutdown` turns true, then lets open connections finish
/// within [`DRAIN_TIMEOUT`] and closes the rest. Each connection passes the [`gate`] first.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let gate = Arc::new(gate::Gate::new());
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(cause) => {
                warn!(%cause, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Some(pending) = gate.pending() else {
            gate.abuse.note(Reason::AdminRefused);
            drop(stream);
            continue;
        };
        let connection = gate::connection(
            stream,
            peer,
            pending,
            gate.clone(),
            router.clone(),
            shutdown.clone(),
        );
        tasks.spawn(connection);
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {}
    tasks.shutdown().await;
}

/// Fails a request body that has not arrived whole within [`BODY_TIMEOUT`] (the handler's
/// extractor then refuses the request with the API's error shape).
async fn body_deadline(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = Body::new(gate::TimedBody::new(body, BODY_TIMEOUT));
    next.run(Request::from_parts(parts, body)).await
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if let Some(journal) = &state.journal {
        if !journal.healthy() {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "journal projection behind its bound or failing\n",
            );
        }
    }
    let query = sqlx::query("SELECT 1").execute(&state.pool);
    match tokio::time::timeout(READY_TIMEOUT, query).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable\n"),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let body = state
        .metrics
        .as_ref()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
