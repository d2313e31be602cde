//! Goal (issue 24, acceptance 4): a minute of garbage connections writes fewer than 1,000 log
//! lines at the default level: abuse is counted in the metrics and summarised in the log, one
//! line per reason and interval, never one line per connection.
//!
//! Method: the real `lsw-switch serve` with `RUST_LOG` unset (the default level) and its
//! stderr in a file. Four clients open connection after connection for
//! `LSW_TEST_ABUSE_LOG_SECONDS` (default 10; the acceptance run is 60), each sending one kind
//! of garbage in turn: frames that do not parse, a bad length prefix, format errors, forged
//! MACs, a connection closed at once, and junk on the admin port. Then SIGTERM, and the log's
//! lines are counted against the same bound per second: fewer than 1,000 × seconds / 60.
//! The clients must have made more connections than that bound, so one line per connection
//! (what the switch wrote before) fails.
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
use protocol::{Pan, ProcessingCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLIENTS: u64 = 4;
/// The acceptance bound: lines a minute.
const LINES_PER_MINUTE_MAX: u64 = 1_000;

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    protocol::frame::encode(message, &mut out).unwrap();
    out.to_vec()
}

/// Garbage of each kind, framed.
fn garbage() -> Vec<Vec<u8>> {
    let mut t = counter();
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let out = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(123_456),
            &pan,
            now_seconds(),
            [9; 12],
        )
        .unwrap();
    let mut format = out.bytes.to_vec();
    let at = format
        .windows(12)
        .position(|w| w == b"000000123456")
        .unwrap();
    format[at + 11] = b'X';
    let mut forged = out.bytes.to_vec();
    *forged.last_mut().unwrap() ^= 0x80;
    vec![
        framed(b"GARBAGE GARBAGE GARBAGE").repeat(3),
        vec![0x08, 0x01],
        framed(&format).repeat(16),
        framed(&forged).repeat(16),
        Vec::new(),
    ]
}

async fn one(listen: SocketAddr, admin: SocketAddr, kind: &[u8], n: u64) {
    if n % 6 == 5 {
        if let Ok(mut stream) = TcpStream::connect(admin).await {
            let _ = stream
                .write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
                .await;
            let mut scratch = [0_u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut scratch)).await;
        }
        return;
    }
    let Ok(mut stream) = TcpStream::connect(listen).await else {
        return;
    };
    if stream.write_all(kind).await.is_err() {
        return;
    }
    // Wait for the switch to close it (an empty kind: close at once).
    if !kind.is_empty() {
        let mut scratch = [0_u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.read(&mut scratch)).await
        {
            if read == 0 {
                break;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_connections_write_a_bounded_log() {
    let seconds: u64 = std::env::var("LSW_TEST_ABUSE_LOG_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lsw.db");
    let log = dir.path().join("serve.log");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &dir.path().join("network.json"), listen, admin);
    let mut child = switch_command(&db, listen, admin)
        .env_remove("RUST_LOG")
        .stderr(std::fs::File::create(&log).unwrap())
        .arg("serve")
        .spawn()
        .unwrap();
    wait_listening(listen);

    let kinds = Arc::new(garbage());
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let (kinds, stop, made) = (kinds.clone(), stop.clone(), made.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = client;
            while !stop.load(Ordering::Relaxed) {
                let kind = &kinds[usize::try_from(n % 5).unwrap()];
                one(listen, admin, kind, n).await;
                made.fetch_add(1, Ordering::Relaxed);
                n += CLIENTS;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = u64::try_from(text.lines().count()).unwrap();
    let made = made.load(Ordering::Relaxed);
    let bound = LINES_PER_MINUTE_MAX * seconds / 60;
    eprintln!(
        "{made} garbage connections in {elapsed:?}: {lines} log lines (bound {bound}); the \
         summary lines:\n{}",
        text.lines()
            .filter(|line| line.contains("abuse summary"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        made > bound,
        "only {made} connections: the run proves nothing"
    );
    assert!(lines < bound, "{lines} lines:\n{text}");
    if std::env::var_os("LSW_TEST_SHOW_LOG").is_some() {
        eprintln!("{text}");
    }
}
