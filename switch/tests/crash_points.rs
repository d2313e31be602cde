//! Goal: `kill -9` at any moment loses nothing answered `00` and captures nothing twice
//! (docs/design.md section 6), over many crash points rather than one.
//!
//! Method: the real `lsw-switch` binary on a temporary SQLite file, killed with SIGKILL once a
//! random number of answers has arrived while a pipeline of purchases and confirms of earlier approvals is in
//! flight, 24 times in a row, each time restarted on the same file. A blocking terminal keeps
//! every `00` it heard across rounds. At the end it retransmits every answered message (it
//! must get the identical bytes), confirms every approval still unconfirmed, and the database
//! is checked: every approved purchase is stored and captured exactly once, the conservation
//! invariants hold, and the card's club ledger is its opening balance minus what was
//! captured. The delays come from one seed (`LSW_CRASH_SEED`, printed) so a failure replays
//! the same schedule, as far as the operating system's timing allows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use protocol::terminal::Outgoing;
use protocol::{Pan, ProcessingCode, ResponseCode, Rrn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::Row;

/// The rich card's opening club balance in `data/network.json`.
const OPENING: i64 = 2_000_000;
/// Each purchase: 1 000 rials, 10% discount, the club pays the 900 rials left.
const CLUB_PER_PURCHASE: i64 = 900;
const ROUNDS: usize = 24;

/// The conservation invariants (the simulator's `check`, which this crate cannot use): each
/// query lists the rows that break one.
const INVARIANTS: &[(&str, &str)] = &[
    (
        "club movements sum to the ledger",
        "SELECT b.card_id FROM club_balances b \
         LEFT JOIN (SELECT card_id, CAST(SUM(delta_rials) AS BIGINT) AS total FROM balance_movements \
                    WHERE account = 'club' GROUP BY card_id) m ON m.card_id = b.card_id \
         WHERE COALESCE(m.total, 0) <> b.ledger_rials",
    ),
    (
        "store-credit lots sum to the ledger",
        "SELECT a.card_id FROM store_credit_accounts a \
         LEFT JOIN (SELECT card_id, merchant_id, CAST(SUM(remaining_rials) AS BIGINT) AS total \
                    FROM store_credit_lots GROUP BY card_id, merchant_id) l \
           ON l.card_id = a.card_id AND l.merchant_id = a.merchant_id \
         WHERE COALESCE(l.total, 0) <> a.ledger_rials",
    ),
    (
        "club holds are exactly the pending transactions' club amounts",
        "SELECT b.card_id FROM club_balances b \
         LEFT JOIN (SELECT card_id, CAST(SUM(club_rials) AS BIGINT) AS total FROM transactions \
                    WHERE state = 'pending' GROUP BY card_id) p ON p.card_id = b.card_id \
         WHERE COALESCE(p.total, 0) <> b.held_rials",
    ),
    (
        "every confirmed transaction has exactly one capture",
        "SELECT t.id FROM transactions t LEFT JOIN captures c ON c.txn_id = t.id \
         WHERE t.state = 'confirmed' AND c.txn_id IS NULL",
    ),
    (
        "captures belong to confirmed transactions",
        "SELECT c.txn_id FROM captures c JOIN transactions t ON t.id = c.txn_id \
         WHERE t.state <> 'confirmed'",
    ),
    (
        "captured club money moved exactly once",
        "SELECT c.txn_id FROM captures c LEFT JOIN \
           (SELECT txn_id, -CAST(SUM(delta_rials) AS BIGINT) AS taken FROM balance_movements \
            WHERE kind = 'capture' AND account = 'club' GROUP BY txn_id) m \
           ON m.txn_id = c.txn_id \
         WHERE COALESCE(m.taken, 0) <> c.club_rials",
    ),
    (
        "no balance or hold below zero, no hold above its ledger",
        "SELECT card_id FROM club_balances \
         WHERE ledger_rials < 0 OR held_rials < 0 OR held_rials > ledger_rials",
    ),
];

fn frame(message: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    protocol::frame::encode(message, &mut out).unwrap();
    out
}

/// Reads frames until the connection ends (the switch was killed) or goes quiet.
fn read_all(mut stream: TcpStream, count: Arc<AtomicUsize>) -> Vec<Bytes> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    loop {
        while let Some(frame) = protocol::frame::decode(&mut buf).unwrap() {
            frames.push(frame);
            count.store(frames.len(), Ordering::SeqCst);
        }
        let mut chunk = [0_u8; 8192];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return frames,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one message and waits for its answer.
fn exchange(stream: &mut TcpStream, buf: &mut BytesMut, message: &[u8]) -> Bytes {
    stream.write_all(&frame(message)).unwrap();
    loop {
        if let Some(frame) = protocol::frame::decode(buf).unwrap() {
            return frame;
        }
        let mut chunk = [0_u8; 4096];
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// What the terminal heard answered `00`, kept across crashes.
#[derive(Default)]
struct Heard {
    /// Approved purchases: the request, its response bytes, its RRN.
    approved: Vec<(Outgoing, Bytes, Rrn)>,
    /// Confirms answered `00`: the confirm, its response bytes, the index of its purchase.
    confirmed: Vec<(Outgoing, Bytes, usize)>,
}

impl Heard {
    fn is_confirmed(&self, purchase: usize) -> bool {
        self.confirmed.iter().any(|(_, _, of)| *of == purchase)
    }
}

/// After a restart: every approval and confirm heard so far is stored (captured once), and
/// the conservation invariants hold.
async fn check_after_restart(url: &str, heard: &Heard, round: usize) {
    let pool = switch::store::connect(url, 1, "").await.unwrap();
    for (out, _, rrn) in &heard.approved {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions WHERE rrn = $1")
            .bind(rrn.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(
            stored, 1,
            "round {round}: approved stan {} not stored",
            out.stan
        );
    }
    for (out, _, purchase) in &heard.confirmed {
        let rrn = heard.approved[*purchase].2;
        let captures: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM captures c JOIN transactions t ON t.id = c.txn_id \
             WHERE t.rrn = $1",
        )
        .bind(rrn.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            captures, 1,
            "round {round}: confirm stan {} not captured once",
            out.stan
        );
    }
    for (name, query) in INVARIANTS {
        let breaches = sqlx::query(query).fetch_all(&pool).await.unwrap();
        assert!(
            breaches.is_empty(),
            "round {round}: {name}: {} rows",
            breaches.len()
        );
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_answer_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    kill_9_at_random_moments(&sqlite_url(&dir.path().join("lsw.db")), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_loses_no_answer_on_postgres() {
    let Some(server) = database_url() else {
        return;
    };
    let url = switch::store::create_database(&server, "lsw_crash")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    kill_9_at_random_moments(&url, dir.path()).await;
}

async fn kill_9_at_random_moments(url: &str, dir: &std::path::Path) {
    let seed = std::env::var("LSW_CRASH_SEED")
        .ok()
        .map_or(0x5eed, |s| s.parse::<u64>().unwrap());
    println!("crash points: LSW_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let (listen, admin) = (free_port(), free_port());
    import_on(url, &dir.join("network.json"), listen, admin);

    let mut terminal = counter();
    let keys = terminal.keys().clone();
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let mut heard = Heard::default();
    let mut kills_mid_stream = 0;

    for round in 0..ROUNDS {
        let mut child = serve_on(url, listen, admin);
        // Start-up projected whatever the kill left in the journal: nothing answered is
        // missing and the invariants hold, before any new traffic.
        check_after_restart(url, &heard, round).await;
        let stream = TcpStream::connect(listen).unwrap();
        let heard_count = Arc::new(AtomicUsize::new(0));
        let reader = {
            let stream = stream.try_clone().unwrap();
            let count = heard_count.clone();
            std::thread::spawn(move || read_all(stream, count))
        };
        // The pipeline: new purchases, and confirms of approvals not yet confirmed.
        let mut sent: HashMap<u32, (Outgoing, Option<usize>)> = HashMap::new();
        let mut wire: Vec<BytesMut> = Vec::new();
        for (index, (purchase, _, rrn)) in heard.approved.iter().enumerate() {
            if !heard.is_confirmed(index) && rng.gen_bool(0.6) {
                let confirm = terminal.confirm(purchase, *rrn, now_seconds()).unwrap();
                wire.push(frame(&confirm.bytes));
                sent.insert(confirm.stan.get(), (confirm, Some(index)));
            }
        }
        for _ in 0..rng.gen_range(5..=60) {
            let out = terminal
                .purchase(
                    ProcessingCode::ClubPurchase,
                    Some(1_000),
                    &pan,
                    now_seconds(),
                    rng.gen(),
                )
                .unwrap();
            wire.push(frame(&out.bytes));
            sent.insert(out.stan.get(), (out, None));
        }
        // Written one frame at a time with random gaps, so answers come back batch by batch
        // while later requests are still on their way; the kill comes once a random number of
        // answers has arrived (none: after a random delay), so it lands mid-stream however fast
        // the switch commits.
        let gap = Duration::from_micros(rng.gen_range(0..=2_000));
        let kill_after = rng.gen_range(0..sent.len());
        let delay = Duration::from_micros(rng.gen_range(0..=20_000));
        let mut writer = stream;
        let sender = std::thread::spawn(move || {
            for piece in wire {
                if writer.write_all(&piece).is_err() {
                    return;
                }
                std::thread::sleep(gap);
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        loop {
            let heard_now = heard_count.load(Ordering::SeqCst);
            let due = if kill_after == 0 {
                started.elapsed() >= delay
            } else {
                heard_now >= kill_after
            };
            if due || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        sender.join().unwrap();
        let answers = reader.join().unwrap();
        if answers.len() < sent.len() {
            kills_mid_stream += 1;
        }
        for bytes in answers {
            let response = parse(&bytes, &keys);
            let (out, confirms) = sent
                .get(&response.stan.get())
                .unwrap_or_else(|| panic!("round {round}: answer to nothing sent"))
                .clone();
            assert_eq!(
                response.code,
                ResponseCode::Approved,
                "round {round}: {response:?}"
            );
            match confirms {
                Some(purchase) => heard.confirmed.push((out, bytes, purchase)),
                None => {
                    let rrn = response.rrn.unwrap();
                    heard.approved.push((out, bytes, rrn));
                }
            }
        }
    }
    println!("crash points: {kills_mid_stream} of {ROUNDS} kills came while answers were due");
    assert!(
        kills_mid_stream >= ROUNDS / 2,
        "only {kills_mid_stream} of {ROUNDS} kills came while answers were due"
    );

    // The last start: every answer again, identical; every approval confirmed.
    let mut child = serve_on(url, listen, admin);
    let mut stream = TcpStream::connect(listen).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = BytesMut::new();
    for (out, first, _) in &heard.approved {
        let again = exchange(&mut stream, &mut buf, &out.bytes);
        assert_eq!(&again, first, "purchase stan {} answered anew", out.stan);
    }
    for (out, first, _) in &heard.confirmed {
        let again = exchange(&mut stream, &mut buf, &out.bytes);
        assert_eq!(&again, first, "confirm stan {} answered anew", out.stan);
    }
    for index in 0..heard.approved.len() {
        if heard.is_confirmed(index) {
            continue;
        }
        let (purchase, _, rrn) = &heard.approved[index];
        let confirm = terminal.confirm(purchase, *rrn, now_seconds()).unwrap();
        let answer = parse(&exchange(&mut stream, &mut buf, &confirm.bytes), &keys);
        assert_eq!(answer.code, ResponseCode::Approved, "confirm of {rrn:?}");
    }
    // The database is written behind the answers (journal mode); then a last kill.
    wait_projected(admin);
    child.kill().unwrap();
    child.wait().unwrap();

    let pool = switch::store::connect(url, 1, "").await.unwrap();
    for (out, _, rrn) in &heard.approved {
        let row = sqlx::query(
            "SELECT t.stan, t.state, (SELECT count(*) FROM captures c WHERE c.txn_id = t.id) \
             AS captures FROM transactions t WHERE t.rrn = $1",
        )
        .bind(rrn.as_str())
        .fetch_optional(&pool)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("approved purchase stan {} is not stored", out.stan));
        assert_eq!(row.get::<i64, _>("stan"), i64::from(out.stan.get()));
        assert_eq!(row.get::<String, _>("state"), "confirmed", "rrn {rrn:?}");
        assert_eq!(row.get::<i64, _>("captures"), 1, "rrn {rrn:?}");
    }
    for (name, query) in INVARIANTS {
        let breaches = sqlx::query(query).fetch_all(&pool).await.unwrap();
        assert!(breaches.is_empty(), "{name}: {} rows", breaches.len());
    }
    let captured: i64 =
        sqlx::query_scalar("SELECT COALESCE(CAST(SUM(club_rials) AS BIGINT), 0) FROM captures")
            .fetch_one(&pool)
            .await
            .unwrap();
    let captures: i64 = sqlx::query_scalar("SELECT count(*) FROM captures")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(captures >= i64::try_from(heard.approved.len()).unwrap());
    assert_eq!(captured, captures * CLUB_PER_PURCHASE);
    let ledger: i64 = sqlx::query_scalar(
        "SELECT ledger_rials FROM club_balances b JOIN cards c ON c.id = b.card_id \
         WHERE c.last4 = '1112'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(ledger, OPENING - captured, "ledger = opening - captured");
    println!(
        "{ROUNDS} kills ({kills_mid_stream} mid-stream): {} approvals, {} confirms heard, \
         {captures} captures",
        heard.approved.len(),
        heard.confirmed.len()
    );
    pool.close().await;
}
