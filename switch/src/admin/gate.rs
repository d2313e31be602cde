//! What an admin connection passes before HTTP is served on it, and the deadlines it is held
//! to after.
//!
//! 1. At most [`PENDING_MAX`] connections wait for their request line; it must arrive within
//!    [`REQUEST_LINE_TIMEOUT`] of the accept (a slowloris client that trickles its first bytes
//!    is closed there, holding nothing else).
//! 2. A `GET` or `HEAD` of `/healthz` or `/readyz` takes a slot of the health share
//!    ([`HEALTH_CONNECTIONS_MAX`]) and is served one request, its headers within the same
//!    short deadline; anything else (or a probe when that share is full) needs a general slot
//!    ([`CONNECTIONS_MAX`] in all, [`PER_ADDRESS_MAX`] per address), else it is answered 503
//!    in the API's error shape and closed.
//! 3. hyper reads each request's headers within [`HEADER_TIMEOUT`]; [`TimedBody`] fails a
//!    body still arriving after [`BODY_TIMEOUT`]; [`Timed`] closes a connection idle for
//!    [`IDLE_TIMEOUT`] or open for [`LIFETIME_MAX`].

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use super::{
    CONNECTIONS_MAX, HEADER_TIMEOUT, HEALTH_CONNECTIONS_MAX, IDLE_TIMEOUT, LIFETIME_MAX,
    PENDING_MAX, PER_ADDRESS_MAX, REQUEST_LINE_TIMEOUT,
};
use crate::abuse::{AbuseLog, Reason};

/// Longest request line read before deciding; hyper refuses a longer one itself.
const REQUEST_LINE_BYTES_MAX: usize = 8 * 1024;

/// General connections open per address.
type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// The admin port's slots.
pub struct Gate {
    pending: Arc<Semaphore>,
    general: Arc<Semaphore>,
    health: Arc<Semaphore>,
    per_address: Counts,
    /// The admin port's abuse tally.
    pub abuse: AbuseLog,
}

/// A slot held by a served connection; freed (and its address's count lowered) on drop.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    address: Option<(IpAddr, Counts)>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((ip, counts)) = self.address.take() {
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(open) = counts.get_mut(&ip) {
                *open = open.saturating_sub(1);
                if *open == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

impl Default for Gate {
    fn default() -> Gate {
        Gate::new()
    }
}

impl Gate {
    /// Empty slots.
    pub fn new() -> Gate {
        Gate {
            pending: Arc::new(Semaphore::new(PENDING_MAX)),
            general: Arc::new(Semaphore::new(CONNECTIONS_MAX)),
            health: Arc::new(Semaphore::new(HEALTH_CONNECTIONS_MAX)),
            per_address: Arc::default(),
            abuse: AbuseLog::new(),
        }
    }

    /// A slot to wait for a request line in, if one is free.
    pub fn pending(&self) -> Option<OwnedSemaphorePermit> {
        self.pending.clone().try_acquire_owned().ok()
    }

    /// A slot for a connection from `ip` whose request line is a health probe or not, and
    /// whether it is of the health share.
    fn admit(&self, ip: IpAddr, probe: bool) -> Option<(Slot, bool)> {
        if probe {
            if let Ok(permit) = self.health.clone().try_acquire_owned() {
                let slot = Slot {
                    _permit: permit,
                    address: None,
                };
                return Some((slot, true));
            }
        }
        let permit = self.general.clone().try_acquire_owned().ok()?;
        let mut counts = self
            .per_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let open = counts.entry(ip).or_insert(0);
        if *open >= PER_ADDRESS_MAX {
            return None;
        }
        *open += 1;
        let slot = Slot {
            _permit: permit,
            address: Some((ip, self.per_address.clone())),
        };
        Some((slot, false))
    }
}

/// Serves one admin connection through the gate until it closes, or until shutdown and the
/// end of its request in flight.
pub async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    pending: OwnedSemaphorePermit,
    gate: Arc<Gate>,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some((head, probe)) = request_line(&mut stream).await else {
        gate.abuse.note(Reason::AdminTimeout);
        return;
    };
    drop(pending);
    let Some((slot, health)) = gate.admit(peer.ip(), probe) else {
        gate.abuse.note(Reason::AdminRefused);
        refuse(stream).await;
        return;
    };
    let io = Timed::new(Prefixed::new(head, stream), slot);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    if health {
        builder
            .keep_alive(false)
            .header_read_timeout(REQUEST_LINE_TIMEOUT);
    } else {
        builder.header_read_timeout(HEADER_TIMEOUT);
    }
    // The handlers may read the peer's address (the console's sign-in limit).
    let router = tower_layer::Layer::layer(&axum::Extension(ConnectInfo(peer)), router);
    let service = TowerToHyperService::new(router);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let stopping = async {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = served.as_mut() => return,
        () = stopping => served.as_mut().graceful_shutdown(),
    }
    let _ = served.await;
}

/// Reads until the request line is whole (or [`REQUEST_LINE_BYTES_MAX`] bytes came without
/// it) within [`REQUEST_LINE_TIMEOUT`]: the bytes read, and whether the line is a health
/// probe. `None`: the peer was too slow or left.
async fn request_line(stream: &mut TcpStream) -> Option<(Bytes, bool)> {
    let deadline = tokio::time::Instant::now() + REQUEST_LINE_TIMEOUT;
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0_u8; 1024];
    loop {
        if let Some(end) = head.iter().position(|byte| *byte == b'\n') {
            let probe = head.get(..end).is_some_and(is_probe);
            return Some((Bytes::from(head), probe));
        }
        if head.len() >= REQUEST_LINE_BYTES_MAX {
            return Some((Bytes::from(head), false));
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0) | Err(_)) | Err(_) => return None,
            Ok(Ok(read)) => head.extend_from_slice(chunk.get(..read)?),
        }
    }
}

/// `GET /healthz …`, `HEAD /readyz …` and the like.
fn is_probe(line: &[u8]) -> bool {
    let mut words = line.split(|byte| *byte == b' ');
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let path = target
        .split(|byte| *byte == b'?')
        .next()
        .unwrap_or_default();
    matches!(method, b"GET" | b"HEAD") && matches!(path, b"/healthz" | b"/readyz")
}

/// Answers 503 in the API's error shape and closes, without waiting on a peer that does not
/// read.
async fn refuse(mut stream: TcpStream) {
    let body = serde_json::json!({
        "error": "too many admin connections open; try again later",
        "problems": [],
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REQUEST_LINE_TIMEOUT, stream.write_all(answer.as_bytes())).await;
}

/// The stream with the bytes already read in front of it.
pub struct Prefixed {
    head: Bytes,
    stream: TcpStream,
}

impl Prefixed {
    fn new(head: Bytes, stream: TcpStream) -> Prefixed {
        Prefixed { head, stream }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.head.is_empty() {
            return Pin::new(&mut self.stream).poll_read(cx, buf);
        }
        let take = self.head.len().min(buf.remaining());
        let part = self.head.split_to(take);
        buf.put_slice(&part);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// An admin connection with an idle deadline and a lifetime deadline, holding its slot.
pub struct Timed {
    stream: Prefixed,
    idle: Pin<Box<Sleep>>,
    end: Pin<Box<Sleep>>,
    _slot: Slot,
}

impl Timed {
    fn new(stream: Prefixed, slot: Slot) -> Timed {
        Timed {
            stream,
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
            end: Box::pin(tokio::time::sleep(LIFETIME_MAX)),
            _slot: slot,
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

/// A request body that fails once its deadline has passed with data still to come.
pub struct TimedBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
}

impl TimedBody {
    /// `inner`, due whole within `within`.
    pub fn new(inner: Body, within: Duration) -> TimedBody {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// Why a body was cut off.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", super::BODY_TIMEOUT.as_secs())]
pub struct BodyTimedOut;

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending if self.deadline.as_mut().poll(cx).is_ready() => {
                Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut))))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_health_and_readiness_gets_only() {
        assert!(is_probe(b"GET /healthz HTTP/1.1\r"));
        assert!(is_probe(b"HEAD /readyz?x=1 HTTP/1.1\r"));
        assert!(!is_probe(b"GET /metrics HTTP/1.1\r"));
        assert!(!is_probe(b"POST /healthz HTTP/1.1\r"));
        assert!(!is_probe(b"GET /healthzz HTTP/1.1\r"));
        assert!(!is_probe(b""));
    }
}
