//! The admin listener: `/metrics` (Prometheus), `/healthz` (alive) and `/readyz` (database
//! reachable and reference data loaded), over a minimal HTTP/1.1 responder. The operator API
//! will grow here.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::SqlitePool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::warn;

/// Largest request head read from an admin client; longer ones are answered 431 and closed.
pub const REQUEST_BYTES_MAX: usize = 8192;
/// How long an admin client may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// What the admin endpoints read.
pub struct AdminState {
    /// Renders the metrics, when a recorder is installed.
    pub metrics: Option<PrometheusHandle>,
    /// The database.
    pub pool: SqlitePool,
}

/// Serves admin requests until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT * 2, answer(stream, &state)).await;
                });
            }
            Err(cause) => {
                warn!(%cause, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, state: &AdminState) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > REQUEST_BYTES_MAX {
            return reply(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "too large\n",
            )
            .await;
        }
        let read = tokio::time::timeout(REQUEST_TIMEOUT, stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => head.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
            Ok(Err(error)) => return Err(error),
        }
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or(&[]);
    let path = parts.next().unwrap_or(&[]);
    if method != b"GET" {
        return reply(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n",
        )
        .await;
    }
    match path {
        b"/healthz" => reply(&mut stream, "200 OK", "text/plain", "ok\n").await,
        b"/readyz" => {
            let query = sqlx::query("SELECT 1").execute(&state.pool);
            match tokio::time::timeout(READY_TIMEOUT, query).await {
                Ok(Ok(_)) => reply(&mut stream, "200 OK", "text/plain", "ready\n").await,
                _ => {
                    reply(
                        &mut stream,
                        "503 Service Unavailable",
                        "text/plain",
                        "database unreachable\n",
                    )
                    .await
                }
            }
        }
        b"/metrics" => {
            let body = state
                .metrics
                .as_ref()
                .map(PrometheusHandle::render)
                .unwrap_or_default();
            reply(&mut stream, "200 OK", "text/plain; version=0.0.4", &body).await
        }
        _ => reply(&mut stream, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn reply(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
