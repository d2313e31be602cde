//! Goal: several `lsw-switch serve` processes on one PostgreSQL database stay safe (docs/design.md
//! section 6): two terminals of different merchants, each on its own process, spend the same
//! club card concurrently, with confirms, duplicate confirms and reversals sent to the other
//! process, and abandoned holds both processes' sweepers race to release. The balance never
//! goes below zero, every approved hold is captured or released exactly once, and the sum of
//! captures equals the drop in the ledger.
//!
//! Method: the real binary twice, as child processes, on a fresh PostgreSQL database made for
//! this test; two blocking terminals on threads; the database read at the end. Skipped (and
//! says so) when `LSW_TEST_DATABASE_URL` is unset.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use protocol::terminal::{Outgoing, Terminal};
use protocol::{Ksi, Pan, ProcessingCode, ResponseCode, Rrn, TerminalId, Tmk, WorkingKeys};
use sqlx::Row;

/// Purchases each terminal attempts: together more than the card's club balance can pay, so
/// the last ones meet an empty balance.
const ATTEMPTS: u32 = 1_000;
/// The card's opening club balance in this test: about 600 captured purchases.
const OPENING_RIALS: i64 = 600_000;
/// Short, so the abandoned holds expire during the test.
const HOLD_TIMEOUT_MS: &str = "1500";

/// The second merchant's terminal, added to the test network for this test.
const OTHER_KSI: &str = "0123456789ABCD09";
const OTHER_TMK: [u8; 32] = [0xc3; 32];

fn network_with_second_merchant() -> String {
    let mut network: serde_json::Value =
        serde_json::from_str(include_str!("data/network.json")).unwrap();
    let mut merchant = network["merchants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["code"] == "M-A")
        .unwrap()
        .clone();
    merchant["code"] = "M-B".into();
    merchant["name"] = "Second Shop".into();
    merchant["iban"] = "IR970170000000100324200002".into();
    network["merchants"].as_array_mut().unwrap().push(merchant);
    for balance in network["balances"]["club"].as_array_mut().unwrap() {
        if balance["card"] == "C-RICH" {
            balance["amount_rials"] = OPENING_RIALS.into();
        }
    }
    network["terminals"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "terminal_id": "TRM00009",
            "ksi": OTHER_KSI,
            "tmk_hex": OTHER_TMK.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "merchant": "M-B",
            "status": "active",
        }));
    network.to_string()
}

fn other_terminal() -> Terminal {
    Terminal::new(
        TerminalId::parse(b"TRM00009").unwrap(),
        Ksi::parse(OTHER_KSI.as_bytes()).unwrap(),
        WorkingKeys::derive(&Tmk::from_slice(&OTHER_TMK).unwrap()),
    )
}

fn serve_shared(url: &str, listen: SocketAddr, admin: SocketAddr) -> Child {
    let child = switch_command_on(url, listen, admin)
        .env("LSW_HOLD_TIMEOUT_MS", HOLD_TIMEOUT_MS)
        .arg("serve")
        .spawn()
        .unwrap();
    wait_listening(listen);
    child
}

/// What one terminal saw.
#[derive(Default, Debug)]
struct Seen {
    /// Approved purchases by RRN, with what the terminal did next.
    approved: BTreeMap<String, Next>,
    declined_51: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Confirmed,
    Reversed,
    Abandoned,
}

/// One terminal's traffic: purchases on `home`, follow-ups on `home` or `other`.
fn drive(mut terminal: Terminal, home: SocketAddr, other: SocketAddr, seed: u8) -> Seen {
    let keys = terminal.keys().clone();
    let pan = Pan::parse(RICH.as_bytes()).unwrap();
    let mut home_wire = Wire::connect(home);
    let mut other_wire = Wire::connect(other);
    let mut seen = Seen::default();
    let ask = |wire: &mut Wire, out: &Outgoing| {
        wire.send(&out.bytes).unwrap();
        parse(&wire.receive().unwrap(), &keys)
    };
    for i in 0..ATTEMPTS {
        let mut nonce = [seed; 12];
        nonce[..4].copy_from_slice(&i.to_be_bytes());
        let out = terminal
            .purchase(
                ProcessingCode::ClubPurchase,
                Some(1_000),
                &pan,
                now_seconds(),
                nonce,
            )
            .unwrap();
        let response = ask(&mut home_wire, &out);
        match response.code {
            ResponseCode::Approved => {}
            ResponseCode::Insufficient => {
                seen.declined_51 += 1;
                continue;
            }
            code => panic!("purchase {i}: unexpected {code:?}"),
        }
        let rrn: Rrn = response.rrn.unwrap();
        let next = match i % 4 {
            0 => {
                // Confirmed on its own process, then the same confirm again on the other one
                // (a terminal retrying through the load balancer): both 00, one capture.
                let confirm = terminal.confirm(&out, rrn, now_seconds()).unwrap();
                assert_eq!(ask(&mut home_wire, &confirm).code, ResponseCode::Approved);
                assert_eq!(ask(&mut other_wire, &confirm).code, ResponseCode::Approved);
                Next::Confirmed
            }
            1 => {
                let confirm = terminal.confirm(&out, rrn, now_seconds()).unwrap();
                assert_eq!(ask(&mut other_wire, &confirm).code, ResponseCode::Approved);
                Next::Confirmed
            }
            2 => {
                let reversal = terminal.reversal(&out, Some(rrn), now_seconds()).unwrap();
                assert_eq!(ask(&mut other_wire, &reversal).code, ResponseCode::Approved);
                Next::Reversed
            }
            _ => Next::Abandoned,
        };
        seen.approved.insert(rrn.as_str().to_owned(), next);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_spend_one_card_safely() {
    let Some(server) = database_url() else {
        return;
    };
    let url = switch::store::create_database(&server, "lsw_shared")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let network = dir.path().join("network.json");
    std::fs::write(&network, network_with_second_merchant()).unwrap();
    let (a_listen, a_admin, b_listen, b_admin) =
        (free_port(), free_port(), free_port(), free_port());
    let status = switch_command_on(&url, a_listen, a_admin)
        .arg("import")
        .arg(&network)
        .status()
        .unwrap();
    assert!(status.success());
    let mut a = serve_shared(&url, a_listen, a_admin);
    let mut b = serve_shared(&url, b_listen, b_admin);

    let first = std::thread::spawn(move || drive(counter(), a_listen, b_listen, 1));
    let second = std::thread::spawn(move || drive(other_terminal(), b_listen, a_listen, 2));
    let first = first.join().unwrap();
    let second = second.join().unwrap();

    let pool = switch::store::connect(&url, 2, "").await.unwrap();
    // The abandoned holds expire; both sweepers see them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM transactions WHERE state = 'pending'")
                .fetch_one(&pool)
                .await
                .unwrap();
        if pending == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{pending} holds never released");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    a.kill().unwrap();
    b.kill().unwrap();
    a.wait().unwrap();
    b.wait().unwrap();

    let approved = first.approved.len() + second.approved.len();
    assert!(approved > 500, "only {approved} approved");
    assert!(
        first.declined_51 + second.declined_51 > 0,
        "the card never ran out: the test did not reach the edge"
    );

    let balance = sqlx::query(
        "SELECT b.ledger_rials, b.held_rials FROM club_balances b \
         JOIN cards c ON c.id = b.card_id WHERE c.code = 'C-RICH'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let ledger: i64 = balance.get("ledger_rials");
    let held: i64 = balance.get("held_rials");
    assert!(ledger >= 0, "ledger {ledger}");
    assert_eq!(held, 0, "nothing is held once every hold is resolved");
    let captured: i64 =
        sqlx::query_scalar("SELECT COALESCE(CAST(SUM(club_rials) AS BIGINT), 0) FROM captures")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        captured,
        OPENING_RIALS - ledger,
        "the sum of captures is the drop in the ledger"
    );

    // Every approved hold was captured or released exactly once, as the terminal asked.
    let rows = sqlx::query(
        "SELECT t.rrn, t.state, (SELECT count(*) FROM captures c WHERE c.txn_id = t.id) \
         AS captures FROM transactions t",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let stored: BTreeMap<String, (String, i64)> = rows
        .iter()
        .map(|row| {
            (
                row.get::<String, _>("rrn"),
                (row.get::<String, _>("state"), row.get::<i64, _>("captures")),
            )
        })
        .collect();
    assert_eq!(
        stored.len(),
        approved,
        "every approved purchase is stored, nothing else"
    );
    for (rrn, next) in first.approved.iter().chain(second.approved.iter()) {
        let (state, captures) = stored.get(rrn).unwrap_or_else(|| panic!("rrn {rrn} lost"));
        let expected = match next {
            Next::Confirmed => ("confirmed", 1),
            Next::Reversed => ("reversed", 0),
            Next::Abandoned => ("expired", 0),
        };
        assert_eq!(
            (state.as_str(), *captures),
            expected,
            "rrn {rrn} ({next:?})"
        );
    }
    println!(
        "two processes: {approved} approved, {} declined 51, {captured} rials captured",
        first.declined_51 + second.declined_51
    );
}

/// `GET path` on the admin port; the status code.
fn http_status(admin: SocketAddr, path: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(admin) else {
        return 0;
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: switch\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// What the terminal saw while the database went away and came back.
#[derive(Default)]
struct Outage {
    /// Purchases answered 00, with their confirm once it was answered 00.
    approved: Vec<(String, bool)>,
    system_errors: u32,
    /// 00s after the database came back.
    approved_after: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_96_and_recovers() {
    let Some(server) = database_url() else {
        return;
    };
    let url = switch::store::create_database(&server, "lsw_outage")
        .await
        .unwrap();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let network = dir.path().join("network.json");
    let (listen, admin) = (free_port(), free_port());
    import_on(&url, &network, listen, admin);
    let mut child = serve_shared(&url, listen, admin);
    assert_eq!(http_status(admin, "/readyz"), 200);

    let phase = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let seen_phase = phase.clone();
    let traffic = std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        let mut terminal = counter();
        let keys = terminal.keys().clone();
        let pan = Pan::parse(RICH.as_bytes()).unwrap();
        let mut wire = Wire::connect(listen);
        let mut outage = Outage::default();
        let mut unconfirmed: Vec<(usize, Outgoing, Rrn)> = Vec::new();
        let mut i: u32 = 0;
        // Phases: 0 before, 1 gone, 2 back, 3 stop.
        while seen_phase.load(Ordering::SeqCst) < 3 {
            i += 1;
            let mut nonce = [9; 12];
            nonce[..4].copy_from_slice(&i.to_be_bytes());
            let out = terminal
                .purchase(
                    ProcessingCode::ClubPurchase,
                    Some(1_000),
                    &pan,
                    now_seconds(),
                    nonce,
                )
                .unwrap();
            wire.send(&out.bytes).unwrap();
            let response = parse(&wire.receive().unwrap(), &keys);
            match response.code {
                ResponseCode::Approved => {
                    if seen_phase.load(Ordering::SeqCst) == 2 {
                        outage.approved_after += 1;
                    }
                    let rrn = response.rrn.unwrap();
                    outage.approved.push((rrn.as_str().to_owned(), false));
                    unconfirmed.push((outage.approved.len() - 1, out, rrn));
                }
                ResponseCode::SystemError => outage.system_errors += 1,
                code => panic!("purchase {i}: unexpected {code:?}"),
            }
            // Confirms are advices: the terminal resends them until they are answered 00.
            let mut still = Vec::new();
            for (index, original, rrn) in unconfirmed.drain(..) {
                let confirm = terminal.confirm(&original, rrn, now_seconds()).unwrap();
                wire.send(&confirm.bytes).unwrap();
                match parse(&wire.receive().unwrap(), &keys).code {
                    ResponseCode::Approved => outage.approved[index].1 = true,
                    ResponseCode::SystemError => {
                        outage.system_errors += 1;
                        still.push((index, original, rrn));
                    }
                    code => panic!("confirm of {rrn:?}: unexpected {code:?}"),
                }
            }
            unconfirmed = still;
        }
        assert!(
            unconfirmed.is_empty(),
            "confirms still refused after the database came back"
        );
        outage
    });

    use std::sync::atomic::Ordering;
    let admin_pool = switch::store::connect(&server, 1, "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The database goes away for this switch: no new connections, existing ones dropped.
    sqlx::query(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&admin_pool)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&name)
    .execute(&admin_pool)
    .await
    .unwrap();
    phase.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        http_status(admin, "/readyz"),
        503,
        "readyz is red while the database is gone"
    );
    assert_eq!(
        http_status(admin, "/healthz"),
        200,
        "the process itself is alive"
    );
    sqlx::query(&format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"
    ))
    .execute(&admin_pool)
    .await
    .unwrap();
    phase.store(2, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(4)).await;
    phase.store(3, Ordering::SeqCst);
    let outage = traffic.join().unwrap();
    assert_eq!(http_status(admin, "/readyz"), 200, "readyz is green again");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the switch did not exit"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(outage.system_errors > 0, "the outage was never seen");
    assert!(outage.approved_after > 0, "service did not resume");
    let pool = switch::store::connect(&url, 1, "").await.unwrap();
    for (rrn, confirmed) in &outage.approved {
        let row = sqlx::query(
            "SELECT t.state, (SELECT count(*) FROM captures c WHERE c.txn_id = t.id) AS captures \
             FROM transactions t WHERE t.rrn = $1",
        )
        .bind(rrn)
        .fetch_optional(&pool)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("approved rrn {rrn} lost"));
        assert!(*confirmed, "rrn {rrn} was never confirmed");
        assert_eq!(row.get::<String, _>("state"), "confirmed", "rrn {rrn}");
        assert_eq!(row.get::<i64, _>("captures"), 1, "rrn {rrn}");
    }
    let ledger: i64 = sqlx::query_scalar(
        "SELECT b.ledger_rials FROM club_balances b JOIN cards c ON c.id = b.card_id \
         WHERE c.code = 'C-RICH'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let captured: i64 =
        sqlx::query_scalar("SELECT COALESCE(CAST(SUM(club_rials) AS BIGINT), 0) FROM captures")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        captured,
        2_000_000 - ledger,
        "captures are the drop in the ledger"
    );
    println!(
        "outage: {} approved ({} after the database came back), {} answered 96",
        outage.approved.len(),
        outage.approved_after,
        outage.system_errors
    );
}

/// The change stamp: a batch's number on what it writes; an update outside a batch (such as
/// settlement's) keeps the last batch's stamp, so a process that has not read that batch yet
/// still finds the row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_carry_the_stamp_of_the_batch_that_wrote_them() {
    let Some(server) = database_url() else {
        return;
    };
    let url = switch::store::create_database(&server, "lsw_stamp")
        .await
        .unwrap();
    let pool = switch::store::open(&url).await.unwrap();
    let kek = switch::domain::Kek::from_bytes([0x11; 32]);
    let pan_key = switch::domain::PanTokenKey::from_bytes([0x22; 32]);
    switch::import::import_text(
        &pool,
        include_str!("data/network.json"),
        &kek,
        &pan_key,
        switch::domain::UnixMillis::new(1_795_372_200_000),
    )
    .await
    .unwrap();
    let stamp = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT b.change_seq FROM club_balances b JOIN cards c ON c.id = b.card_id \
             WHERE c.code = 'C-RICH'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(stamp().await, 0, "an import is not a batch");

    let mut tx = pool.begin().await.unwrap();
    let seq = switch::store::shared::begin_batch(&mut tx).await.unwrap();
    sqlx::query("UPDATE club_balances SET held_rials = held_rials + 0")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(stamp().await, seq, "the batch's number");

    sqlx::query("UPDATE club_balances SET held_rials = held_rials + 0")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        stamp().await,
        seq,
        "an update outside a batch keeps the stamp"
    );

    let mut tx = pool.begin().await.unwrap();
    let next = switch::store::shared::begin_batch(&mut tx).await.unwrap();
    assert_eq!(next, seq + 1, "batches are numbered in turn");
    tx.rollback().await.unwrap();
    assert_eq!(
        switch::store::shared::current_seq(&mut pool.acquire().await.unwrap())
            .await
            .unwrap(),
        seq,
        "a batch rolled back gives its number back"
    );
}
