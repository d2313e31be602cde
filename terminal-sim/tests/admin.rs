//! Goal: the admin port serves `/healthz`, `/readyz` and Prometheus `/metrics`, and the
//! metrics count what the switch answered (docs/design.md section 8), with low-cardinality labels.
//!
//! Method: an in-process switch with the Prometheus recorder installed (once for this test
//! binary), a purchase and a bad frame over TCP, then plain HTTP GETs on the admin port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use protocol::{ProcessingCode, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .unwrap();
    switch::metrics::describe();
    let dir = tempfile::tempdir().unwrap();
    let config = config(&dir.path().join("lsw.db"));
    let clock = Arc::new(switch::clock::ManualClock::new(
        switch::domain::UnixMillis::new(START_MS),
    ));
    let pool = switch::store::open(&config.database_url).await.unwrap();
    let s = secrets();
    switch::import::import_text(
        &pool,
        NETWORK,
        &s.kek,
        &s.pan_key,
        switch::domain::UnixMillis::new(START_MS),
    )
    .await
    .unwrap();
    pool.close().await;
    let running = switch::app::start(&config, &s, clock, Some(handle))
        .await
        .unwrap();

    let mut client = terminal_sim::client::Client::connect(running.addr)
        .await
        .unwrap();
    let mut t = counter();
    let (_, r) = purchase(
        &mut client,
        &mut t,
        ProcessingCode::ClubPurchase,
        10_000,
        RICH,
        START_MS / 1000,
    )
    .await;
    assert_eq!(r.code, ResponseCode::Approved);
    client.send(b"NOT ISO").await.unwrap();
    let (_, r) = purchase(
        &mut client,
        &mut t,
        ProcessingCode::ClubPurchase,
        10_000,
        BLOCKED,
        START_MS / 1000,
    )
    .await;
    assert_eq!(r.code, ResponseCode::CardBlocked);

    assert_eq!(
        get(running.admin_addr, "/healthz").await.0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        get(running.admin_addr, "/readyz").await.0,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        get(running.admin_addr, "/nothing").await.0,
        "HTTP/1.1 404 Not Found"
    );
    let (status, body) = get(running.admin_addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    for wanted in [
        "lsw_messages_total{mti=\"0200\",response_code=\"00\"} 1",
        "lsw_messages_total{mti=\"0200\",response_code=\"62\"} 1",
        "lsw_frames_rejected_total{reason=\"unparseable\"} 1",
        "lsw_connections_open 1",
        "lsw_message_duration_seconds",
        "lsw_commit_batch_size",
        "lsw_commit_seconds",
    ] {
        assert!(body.contains(wanted), "{wanted} missing from:\n{body}");
    }
    // No card, terminal or STAN ever becomes a label.
    assert!(!body.contains("TRM0"), "terminal id in a label");
    assert!(!body.contains(RICH), "card in metrics");
    running.stop().await;
}
