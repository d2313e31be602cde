//! The admin listener: `/metrics` (Prometheus), `/healthz` (alive), `/readyz` (database
//! reachable and reference data loaded) and the operator API under `/api/v1`
//! ([`crate::api`]), served by axum on the switch's runtime.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::store::Pool;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::warn;

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

/// The whole admin router: health, metrics and the operator API.
pub fn router(state: Arc<AdminState>, api_state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(api::router(api_state))
}

/// Admin connections open at once; one more is accepted and closed at once, so a flood of
/// admin connections cannot exhaust the switch's file descriptors.
pub const CONNECTIONS_MAX: usize = 64;
/// An admin connection that sends nothing this long is closed (slow or idle clients).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// No admin connection lives longer than this, however it trickles its bytes.
pub const LIFETIME_MAX: Duration = Duration::from_secs(120);

/// The admin port's listener: at most [`CONNECTIONS_MAX`] connections, each closed after
/// [`IDLE_TIMEOUT`] without a byte or [`LIFETIME_MAX`] in all (axum's server has no timeouts
/// of its own).
pub struct Bounded {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

impl Bounded {
    /// Bounds `listener`.
    pub fn new(listener: TcpListener) -> Bounded {
        Bounded {
            listener,
            permits: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
        }
    }
}

impl axum::serve::Listener for Bounded {
    type Io = Timed;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Timed, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => match self.permits.clone().try_acquire_owned() {
                    Ok(permit) => return (Timed::new(stream, permit), peer),
                    Err(_) => {
                        warn!(%peer, "admin connection refused: too many open");
                        drop(stream);
                    }
                },
                Err(cause) => {
                    warn!(%cause, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// An admin connection with an idle deadline and a lifetime deadline.
pub struct Timed {
    stream: TcpStream,
    idle: Pin<Box<Sleep>>,
    end: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Timed {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit) -> Timed {
        Timed {
            stream,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            end: Box::pin(tokio::time::sleep(LIFETIME_MAX)),
            _permit: permit,
        }
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.idle.as_mut().poll(cx).is_ready() || self.end.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + IDLE_TIMEOUT;
                    self.idle.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if self.expired(cx) => {
                Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.stream).poll_write(cx, buf) {
            Poll::Pending if self.expired(cx) => {
                Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Serves admin requests until `shutdown` turns true.
pub async fn serve(listener: TcpListener, router: Router, mut shutdown: watch::Receiver<bool>) {
    let stopping = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
    };
    if let Err(cause) = axum::serve(Bounded::new(listener), router)
        .with_graceful_shutdown(stopping)
        .await
    {
        warn!(%cause, "admin listener stopped");
    }
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
