//! Goal (issue 24, acceptance 1): 200 slowloris connections on the admin port leave
//! `/healthz` answering within 100 ms at every probe, and `/readyz` answering; the slow
//! clients are closed and counted.
//!
//! Method: the real `lsw-switch serve` (`common`). 200 clients on a runtime of their own, from
//! the same address as the probes: half trickle their request line one byte a second, half
//! send a whole request line and then trickle their headers one byte a second; each opens a
//! new connection a second after the switch closes one (so 200 stay open or opening). Meanwhile a probe every 100 ms on a fresh connection asks for
//! `/healthz` (and every fifth for `/readyz`), timed from connect to the end of the answer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 200;
const PROBES: usize = 100;
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_MAX: Duration = Duration::from_millis(100);

/// One slow client: connects, sends `fast` at once and then `slow` a byte a second, and
/// reconnects whenever the switch closes it, until `stop`.
async fn slowloris(
    addr: SocketAddr,
    fast: &'static [u8],
    stop: Arc<AtomicBool>,
    closed: Arc<AtomicU64>,
) {
    let slow = b"x-slow: yes\r\nx-slower: yes\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if stream.write_all(fast).await.is_err() {
            closed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut scratch = [0_u8; 512];
        for byte in slow.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            if stream.write_all(&[*byte]).await.is_err() {
                break;
            }
            // A closed connection reads 0 (or fails) within the second between bytes.
            match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut scratch)).await {
                Err(_) => {}
                Ok(Ok(0) | Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
        closed.fetch_add(1, Ordering::Relaxed);
        // Keeps its connection count, at its own pace: a new one a second after a close.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One probe on a fresh connection: status and how long from connect to the whole answer.
async fn probe(addr: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut text)).await;
    let took = started.elapsed();
    if !matches!(read, Ok(Ok(_))) {
        return (0, took);
    }
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_leaves_health_answering() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsw.db");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &dir.path().join("network.json"), listen, admin);
    let mut child = Killed(serve(&db, listen, admin));
    let wait = Instant::now();
    while probe(admin, "/healthz").await.0 != 200 {
        assert!(
            wait.elapsed() < Duration::from_secs(10),
            "admin port never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let closed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let fast: &'static [u8] = if i % 2 == 0 {
            b"G"
        } else {
            b"GET /api/v1/merchants HTTP/1.1\r\nhost: x\r\n"
        };
        tasks.push(clients.spawn(slowloris(admin, fast, stop.clone(), closed.clone())));
    }
    // Let every slow client connect and take what it can.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut worst = Duration::ZERO;
    let mut failures = Vec::new();
    for i in 0..PROBES {
        let path = if i % 5 == 4 { "/readyz" } else { "/healthz" };
        let (status, took) = probe(admin, path).await;
        if path == "/healthz" {
            worst = worst.max(took);
            if status != 200 || took > PROBE_MAX {
                failures.push((i, status, took));
            }
        } else if status != 200 {
            failures.push((i, status, took));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    stop.store(true, Ordering::Relaxed);
    clients.shutdown_background();
    let closed = closed.load(Ordering::Relaxed);
    eprintln!(
        "{PROBES} probes under {SLOW_CLIENTS} slow clients: worst /healthz {worst:?}; slow \
         connections closed by the switch: {closed}; failures {failures:?}"
    );
    assert!(failures.is_empty(), "probes failed: {failures:?}");
    // The slow clients were really held off: the switch closed them, again and again.
    assert!(
        closed >= u64::try_from(SLOW_CLIENTS).unwrap(),
        "only {closed} closed"
    );
    // The slow clients' last connections hold their address's general slots until the
    // header deadline closes them; then /metrics (a general request) answers again.
    let wait = Instant::now();
    let body = loop {
        let mut stream = TcpStream::connect(admin).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        if head.starts_with("HTTP/1.1 200") {
            break body.to_string();
        }
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            wait.elapsed() < switch::admin::HEADER_TIMEOUT + Duration::from_secs(2),
            "/metrics still refused"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        body.contains("lsw_abuse_total{reason=\"admin_timeout\"}"),
        "slow clients not counted:\n{body}"
    );
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.0.wait().unwrap().success());
}

/// The switch, killed if the test fails before it stops it.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
