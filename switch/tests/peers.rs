//! Goal (issue 24, acceptance 1): against the real binary, a peer that floods format errors
//! and stops reading is closed within the write deadline plus a second, and one that
//! pipelines requests and never reads their answers is closed by the write deadline, while a
//! good terminal's purchases and confirms keep their p99; SIGTERM with such a peer connected
//! stops accepting at once and exits 0 within the drain time.
//!
//! Method: `lsw-switch serve` as a child process on a temporary SQLite file (`common`). The
//! good terminal makes sequential club purchases, each confirmed (both through the group
//! commit), on its own blocking connection; the p99 of its requests is taken quiet and then
//! while the stalled peers run. A stalled peer sets a 4 KiB receive buffer and never reads.
//! The pipeliner's answers first fill the kernel's buffers before a write of the switch
//! blocks; the outside cannot see that moment, so it is held to the deadline plus a second
//! plus `FILL_ALLOWANCE`, and the close must be counted as a write timeout.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use protocol::terminal::Terminal;
use protocol::{Pan, ProcessingCode, ResponseCode};
use tokio::io::AsyncWriteExt;

/// The write deadline the switch runs with here (the default is 5 s; shorter keeps CI short).
const WRITE_TIMEOUT_MS: u64 = 2_000;
/// Most the switch may take to fill the kernel's socket buffers with a non-reading peer's
/// answers before its writes block (measured 2.3 to 3.2 s on the shared 2-core machine).
const FILL_ALLOWANCE: Duration = Duration::from_secs(5);
/// Purchases per measurement, each confirmed: twice as many requests, each timed.
const PAIRS: usize = 300;
/// Most a p99 may grow under abuse, as a multiple of the quiet p99.
const SLOWDOWN_MAX: u32 = 5;
/// A quiet p99 below this is taken as this: on a shared 2-core machine a few milliseconds
/// times 5 is inside scheduler noise.
const QUIET_P99_FLOOR: Duration = Duration::from_millis(10);

/// The two tests run one at a time: each measures, or bounds, what one switch does under a
/// stalled peer, and the other's flood would share the two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The switch, killed if the test fails before it stops it.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path, env: &[(&str, String)]) -> (Killed, SocketAddr, SocketAddr) {
    let db = dir.join("lsw.db");
    let (listen, admin) = (free_port(), free_port());
    import(&db, &dir.join("network.json"), listen, admin);
    let mut command = switch_command(&db, listen, admin);
    for (name, value) in env {
        command.env(name, value);
    }
    let child = Killed(command.arg("serve").spawn().unwrap());
    wait_listening(listen);
    (child, listen, admin)
}

fn nonce(n: u64) -> [u8; 12] {
    let mut out = [0_u8; 12];
    out[..8].copy_from_slice(&n.to_be_bytes());
    out
}

/// `n` sequential club purchases of 1 000 rials, each confirmed: the time of each request.
fn pairs(wire: &mut Wire, t: &mut Terminal, n: usize, seq: &mut u64) -> Vec<Duration> {
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let keys = t.keys().clone();
    let mut took = Vec::with_capacity(2 * n);
    for _ in 0..n {
        *seq += 1;
        let started = Instant::now();
        let out = t
            .purchase(
                ProcessingCode::ClubPurchase,
                Some(1_000),
                &pan,
                now_seconds(),
                nonce(*seq),
            )
            .unwrap();
        wire.send(&out.bytes).unwrap();
        let response = parse(&wire.receive().unwrap(), &keys);
        assert_eq!(response.code, ResponseCode::Approved, "purchase");
        took.push(started.elapsed());
        let started = Instant::now();
        let confirm = t
            .confirm(&out, response.rrn.unwrap(), now_seconds())
            .unwrap();
        wire.send(&confirm.bytes).unwrap();
        let response = parse(&wire.receive().unwrap(), &keys);
        assert_eq!(response.code, ResponseCode::Approved, "confirm");
        took.push(started.elapsed());
    }
    took
}

fn p99(mut took: Vec<Duration>) -> Duration {
    took.sort();
    took[(took.len() * 99).div_ceil(100) - 1]
}

/// A format-error frame: a club inquiry with a letter in its amount (field 4).
fn format_error_frame(t: &mut Terminal) -> Bytes {
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let out = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(123_456),
            &pan,
            now_seconds(),
            nonce(1),
        )
        .unwrap();
    let mut bytes = out.bytes.to_vec();
    let at = bytes
        .windows(12)
        .position(|w| w == b"000000123456")
        .unwrap();
    bytes[at + 11] = b'X';
    Bytes::from(bytes)
}

fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    protocol::frame::encode(message, &mut out).unwrap();
    out.to_vec()
}

/// Club inquiries of TRM00003, whose merchant is closed (each declined `03`), framed, to
/// pipeline: a peer of its own, sharing nothing with the good terminal but the switch.
fn inquiries(n: usize) -> Vec<u8> {
    let mut t = Terminal::new(
        protocol::TerminalId::parse(b"TRM00003").unwrap(),
        protocol::Ksi::parse(b"0123456789ABCD03").unwrap(),
        protocol::WorkingKeys::derive(&protocol::Tmk::from_slice(&[0xb2; 32]).unwrap()),
    );
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let message = t
            .purchase(
                ProcessingCode::ClubInquiry,
                None,
                &pan,
                now_seconds(),
                nonce(1_000_000 + u64::try_from(i).unwrap()),
            )
            .unwrap();
        out.extend_from_slice(&framed(&message.bytes));
    }
    out
}

/// A connection with a 4 KiB receive buffer that never reads.
async fn deaf(listen: SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(listen).await.unwrap()
}

/// Writes `data` over and over until the switch closes the connection; how long that took
/// from the first write, and how long from the last write that made progress.
async fn flood_until_closed(
    mut stream: tokio::net::TcpStream,
    data: &[u8],
    give_up: Duration,
) -> Option<(Duration, Duration)> {
    let started = Instant::now();
    let mut progress = Instant::now();
    // Whole chunks only: a write abandoned halfway would break the framing.
    for chunk in data.chunks(4096).cycle() {
        match tokio::time::timeout_at((started + give_up).into(), stream.write_all(chunk)).await {
            Ok(Ok(())) => progress = Instant::now(),
            Ok(Err(_)) => return Some((started.elapsed(), progress.elapsed())),
            Err(_) => return None,
        }
    }
    None
}

async fn metric(admin: SocketAddr, series: &str) -> u64 {
    let (status, body) = tokio::task::spawn_blocking(move || http_get(admin, "/metrics"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.trim().parse::<u64>().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_stop_reading_are_closed_and_a_good_terminal_keeps_its_p99() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, listen, admin) = start(
        dir.path(),
        &[("LSW_WRITE_TIMEOUT_MS", WRITE_TIMEOUT_MS.to_string())],
    );
    let good = std::thread::spawn(move || {
        let mut wire = Wire::connect(listen);
        let mut t = counter();
        let mut seq = 0;
        pairs(&mut wire, &mut t, 30, &mut seq);
        let quiet = p99(pairs(&mut wire, &mut t, PAIRS, &mut seq));
        (wire, t, seq, quiet)
    });
    let (mut wire, mut t, mut seq, quiet) = good.join().unwrap();
    let limit = quiet.max(QUIET_P99_FLOOR) * SLOWDOWN_MAX;

    // The format-error frame is answered 30 (read once, to know the flood is what it claims).
    let mut flood_terminal = counter();
    flood_terminal.set_stan(200_000);
    let bad = format_error_frame(&mut flood_terminal);
    let mut check = Wire::connect(listen);
    check.send(&bad).unwrap();
    let answer = parse(&check.receive().unwrap(), flood_terminal.keys());
    assert_eq!(answer.code, ResponseCode::FormatError);
    drop(check);

    let format_before = metric(admin, "lsw_frames_rejected_total{reason=\"format\"}").await;
    let write_before = metric(admin, "lsw_frames_rejected_total{reason=\"write_timeout\"}").await;
    let give_up = Duration::from_millis(WRITE_TIMEOUT_MS * 10);
    let format_flood: Vec<u8> = framed(&bad).repeat(2_000);
    let formats = tokio::spawn(async move {
        let stream = deaf(listen).await;
        flood_until_closed(stream, &format_flood, give_up).await
    });
    let pipelined = inquiries(20_000);
    let stalled = tokio::spawn(async move {
        let stream = deaf(listen).await;
        flood_until_closed(stream, &pipelined, give_up).await
    });
    let measured = std::thread::spawn(move || p99(pairs(&mut wire, &mut t, PAIRS, &mut seq)));
    let (format_closed, _) = formats.await.unwrap().expect("format flooder never closed");
    let (stalled_closed, since_progress) = stalled.await.unwrap().expect("stalled peer kept");
    let busy = measured.join().unwrap();
    eprintln!(
        "quiet p99 {quiet:?}, under the stalled peers {busy:?} (limit {limit:?}); format \
         flooder closed after {format_closed:?}; stalled pipeliner closed after \
         {stalled_closed:?} ({since_progress:?} after its last write went through)"
    );
    let bound = Duration::from_millis(WRITE_TIMEOUT_MS) + Duration::from_secs(1);
    assert!(
        format_closed <= bound,
        "format flooder closed after {format_closed:?}"
    );
    // The pipeliner's answers first fill the kernel's buffers (megabytes on loopback) before
    // a write of the switch blocks; only from then does the deadline run, and the outside
    // cannot see that moment. It is held to the deadline plus a second plus that filling time,
    // at most FILL_ALLOWANCE; what it was attributed to is checked below.
    assert!(
        stalled_closed <= bound + FILL_ALLOWANCE,
        "stalled peer closed after {stalled_closed:?}"
    );
    assert!(busy <= limit, "p99 {busy:?} over {limit:?}");
    assert_eq!(
        metric(admin, "lsw_frames_rejected_total{reason=\"format\"}").await - format_before,
        1
    );
    assert_eq!(
        metric(admin, "lsw_frames_rejected_total{reason=\"write_timeout\"}").await - write_before,
        1
    );
    assert!(metric(admin, "lsw_abuse_total{reason=\"write_timeout\"}").await >= 1);
    term(&child.0);
    assert!(child.0.wait().unwrap().success());
}

fn term(child: &Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stalled_peer_exits_0_within_the_drain_time() {
    let _alone = ONE_AT_A_TIME.lock().await;
    const DRAIN_MS: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    // A write deadline far beyond the drain time: only the drain can end the stalled peer.
    let (mut child, listen, _) = start(
        dir.path(),
        &[
            ("LSW_WRITE_TIMEOUT_MS", "600000".to_string()),
            ("LSW_DRAIN_TIMEOUT_MS", DRAIN_MS.to_string()),
        ],
    );
    // Pipeline, never reading, until the switch has taken nothing for a second: its writer is
    // blocked on this peer (the 600 s write deadline will not free it; only the drain can).
    let pipelined = inquiries(20_000);
    let stream = deaf(listen).await;
    let started = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let written = progress.clone();
    let flood = tokio::spawn(async move {
        let mut stream = stream;
        for chunk in pipelined.chunks(4096).cycle() {
            if stream.write_all(chunk).await.is_err() {
                return started.elapsed();
            }
            let ms = u64::try_from(started.elapsed().as_millis()).unwrap();
            written.store(ms, Ordering::Relaxed);
        }
        unreachable!()
    });
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let idle = started.elapsed().as_millis() - u128::from(progress.load(Ordering::Relaxed));
        if idle > 1_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the peer never stalled"
        );
    }
    assert!(
        !flood.is_finished(),
        "the switch closed the stalled peer before SIGTERM"
    );
    let asked = Instant::now();
    term(&child.0);
    // The listener is closed at once: a new terminal is refused, not queued.
    let mut refused_after = None;
    while asked.elapsed() < Duration::from_secs(2) {
        if std::net::TcpStream::connect(listen).is_err() {
            refused_after = Some(asked.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_millis(DRAIN_MS) + Duration::from_secs(10),
            "the switch did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let exited = asked.elapsed();
    let cut = flood
        .await
        .unwrap()
        .saturating_sub(asked.duration_since(started));
    eprintln!(
        "listener refused after {refused_after:?}; stalled peer cut after {cut:?}; exited \
         {status} after {exited:?}"
    );
    // The stalled peer held the switch until the drain time ran out, and no longer.
    let drain = Duration::from_millis(DRAIN_MS);
    assert!(
        cut >= drain - Duration::from_millis(200) && cut <= drain + Duration::from_secs(1),
        "the stalled peer was cut after {cut:?}"
    );
    assert!(status.success(), "exit status {status}");
    assert!(
        refused_after.is_some_and(|after| after < Duration::from_millis(500)),
        "still accepting after SIGTERM"
    );
    assert!(
        exited <= Duration::from_millis(DRAIN_MS) + Duration::from_secs(2),
        "exit took {exited:?}"
    );
}

/// One GET on a fresh connection: status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}
