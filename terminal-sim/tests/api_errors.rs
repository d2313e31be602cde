//! Goal (issue 24): every error the operator API answers has its one JSON shape
//! (`{"error": "...", "problems": [...]}`), axum's own rejections included: a body over the
//! limit (413), a path that is not UTF-8 (400), a number out of range in a query (400), a
//! method a route does not have (405). And the admin port's deadlines hold: headers that
//! trickle are cut at `HEADER_TIMEOUT`, a body that trickles is refused (400, the same shape)
//! at `BODY_TIMEOUT`.
//!
//! Method: the in-process switch (`common::Harness`), an operator token, raw HTTP/1.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;
use switch::api::auth::{self, Role};
use switch::domain::UnixMillis;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` whole and reads the answer: status, content type, JSON body (`Null` when
/// it is not JSON).
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.unwrap();
    answer(&bytes)
}

fn answer(bytes: &[u8]) -> (u16, String, Value) {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (
        status,
        content_type,
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

fn assert_shape(what: &str, (status, content_type, body): &(u16, String, Value), wanted: u16) {
    assert_eq!(*status, wanted, "{what}: {body}");
    assert_eq!(content_type, "application/json", "{what}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{what}: {body}"
    );
    assert!(body["problems"].is_array(), "{what}: {body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{what}: {body}");
}

async fn token(harness: &Harness) -> String {
    auth::add_token(
        &harness.running().pool,
        "ops",
        Role::Write,
        UnixMillis::new(START_MS),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axums_rejections_answer_in_the_error_shape() {
    let harness = Harness::start().await;
    let addr = harness.running().admin_addr;
    let token = token(&harness).await;
    let head = |method: &str, path: &str, length: usize| {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\nauthorization: Bearer \
             {token}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
        )
    };
    let big = format!(
        "{{\"pad\": \"{}\"}}",
        "x".repeat(switch::api::BODY_BYTES_MAX)
    );
    let mut request = head("POST", "/api/v1/cards", big.len()).into_bytes();
    request.extend_from_slice(big.as_bytes());
    assert_shape("body over the limit", &raw(addr, &request).await, 413);
    let request = head("GET", "/api/v1/cards/%FF%FE%FD", 0);
    assert_shape("path not UTF-8", &raw(addr, request.as_bytes()).await, 400);
    let request = head(
        "GET",
        "/api/v1/reports/top-members?limit=999999999999999999999999",
        0,
    );
    assert_shape(
        "number out of range",
        &raw(addr, request.as_bytes()).await,
        400,
    );
    let request = head("DELETE", "/api/v1/merchants", 0);
    let answered = raw(addr, request.as_bytes()).await;
    assert_shape("method not allowed", &answered, 405);
    // The API's own errors keep their shape, and a path outside the API its bare 404.
    let request = head("GET", "/api/v1/cards/C-NONE", 0);
    assert_shape("no such card", &raw(addr, request.as_bytes()).await, 404);
    let request = head("GET", "/api/v1/nothing", 0);
    assert_eq!(raw(addr, request.as_bytes()).await.0, 404);
}

/// Trickles `bytes` a chunk every `every`, then waits; what the switch answered and when it
/// closed, from the first byte.
async fn trickle(addr: SocketAddr, chunks: Vec<Vec<u8>>, every: Duration) -> (Vec<u8>, Duration) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut scratch = [0_u8; 4096];
    for chunk in chunks.iter().cycle() {
        if stream.write_all(chunk).await.is_err() {
            break;
        }
        match tokio::time::timeout(every, stream.read(&mut scratch)).await {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(read)) => answer.extend_from_slice(&scratch[..read]),
        }
        if started.elapsed() > Duration::from_secs(30) {
            panic!("never closed");
        }
    }
    (answer, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_headers_and_bodies_are_cut_off() {
    let harness = Harness::start().await;
    let addr = harness.running().admin_addr;
    let token = token(&harness).await;
    let headers = tokio::spawn(trickle(
        addr,
        vec![
            b"GET /api/v1/merchants HTTP/1.1\r\n".to_vec(),
            b"x".to_vec(),
        ],
        Duration::from_millis(500),
    ));
    let head = format!(
        "POST /api/v1/cards HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 100000\r\n\r\n{{"
    );
    let body = tokio::spawn(trickle(
        addr,
        vec![head.into_bytes(), b" ".to_vec()],
        Duration::from_secs(1),
    ));
    let (_, header_closed) = headers.await.unwrap();
    let (answered, body_closed) = body.await.unwrap();
    eprintln!(
        "trickled headers closed after {header_closed:?}, a trickled body after {body_closed:?}"
    );
    let header_limit = switch::admin::HEADER_TIMEOUT;
    assert!(
        header_closed >= header_limit - Duration::from_millis(500)
            && header_closed <= header_limit + Duration::from_secs(1),
        "headers cut after {header_closed:?}"
    );
    let body_limit = switch::admin::BODY_TIMEOUT;
    assert!(
        body_closed >= body_limit - Duration::from_millis(500)
            && body_closed <= body_limit + Duration::from_secs(2),
        "body cut after {body_closed:?}"
    );
    assert_shape("body too slow", &answer(&answered), 400);
}
