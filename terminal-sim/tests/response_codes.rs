//! Goal: every row of docs/protocol.md's response-code table is produced by the switch over real
//! TCP, with the response's MAC verified (or absent, for an unknown KSI), and approved
//! purchases carry field 54 with G = discount + store credit + club + bank rest.
//!
//! Method: an in-process switch on a temporary SQLite file, provisioned from
//! `tests/data/network.json` through the import path, driven by terminals built from the same
//! file. Each case is one line through `check`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bytes::Bytes;
use common::*;
use protocol::terminal::{Outgoing, Terminal};
use protocol::{Mti, ProcessingCode, RawMessage, ResponseCode};
use terminal_sim::client::Client;

/// Sends `out` and checks the code and whether the response carries a MAC.
async fn check(
    client: &mut Client,
    terminal: &Terminal,
    out: &Outgoing,
    code: ResponseCode,
    mac: bool,
) {
    let keys = mac.then(|| terminal.keys());
    let (response, _) = client
        .exchange(&out.bytes, out.mti, out.stan, keys)
        .await
        .unwrap();
    assert_eq!(response.code, code, "{:?} stan {}", out.mti, out.stan);
    assert_eq!(response.has_mac, mac, "mac presence for {code:?}");
    if code != ResponseCode::Approved {
        assert!(
            response.rrn.is_none() || matches!(out.mti, Mti::ConfirmAdvice | Mti::ReversalAdvice)
        );
        assert!(
            response.approval.is_none(),
            "a decline carries no approval code"
        );
        assert!(response.amounts.is_empty(), "a decline carries no field 54");
    }
}

async fn every_response_code(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let rich = pan(RICH);
    use ProcessingCode::*;
    use ResponseCode::*;

    // 00, with field 54 for each funding.
    let (_, r) = purchase(&mut client, &mut t, BankPurchase, 1_000_000, RICH, now).await;
    check_split(&r, 1_000_000, [100_000, 15_000, 0, 0, 900_000, 18_000]);
    let (_, r) = purchase(
        &mut client,
        &mut t,
        BankPurchaseStoreCredit,
        480_000,
        RICH,
        now,
    )
    .await;
    check_split(&r, 480_000, [48_000, 7_200, 100_000, 0, 332_000, 6_640]);
    let (_, r) = purchase(&mut client, &mut t, ClubPurchase, 350_000, RICH, now).await;
    check_split(&r, 350_000, [35_000, 5_250, 0, 315_000, 0, 6_300]);
    // The 006100 above holds all 100 000 of store credit: 006600 cannot be covered now.
    let out = t
        .purchase(StoreCreditPurchase, Some(50_000), &rich, now, nonce(3))
        .unwrap();
    check(&mut client, &t, &out, Insufficient, true).await;
    // 006700: store credit (none free), then club: 1 000 000 − 100 000 discount.
    let (_, r) = purchase(&mut client, &mut t, MixedPurchase, 1_000_000, RICH, now).await;
    check_split(&r, 1_000_000, [100_000, 15_000, 0, 900_000, 0, 18_000]);

    // 03, 58: merchant and terminal not active.
    let mut shop = closed_shop();
    let out = shop
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(4))
        .unwrap();
    check(&mut client, &shop, &out, MerchantNotActive, true).await;
    let mut off = inactive_terminal();
    let out = off
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(4))
        .unwrap();
    check(&mut client, &off, &out, TerminalNotActive, true).await;

    // 12: a code with the other MTI, an unknown code.
    let out = t
        .financial(
            Mti::AuthorizationRequest,
            *b"006500",
            Some(10_000),
            &rich,
            now,
            nonce(5),
        )
        .unwrap();
    check(&mut client, &t, &out, InvalidTransaction, true).await;
    let out = t
        .financial(
            Mti::FinancialRequest,
            *b"000000",
            Some(10_000),
            &rich,
            now,
            nonce(5),
        )
        .unwrap();
    check(&mut client, &t, &out, InvalidTransaction, true).await;
    let out = t
        .financial(
            Mti::AuthorizationRequest,
            *b"999999",
            Some(10_000),
            &rich,
            now,
            nonce(5),
        )
        .unwrap();
    check(&mut client, &t, &out, InvalidTransaction, true).await;

    // 13: zero amount; an inquiry with an amount; a currency that is not the merchant's.
    let out = t
        .purchase(BankPurchase, Some(0), &rich, now, nonce(6))
        .unwrap();
    check(&mut client, &t, &out, InvalidAmount, true).await;
    let out = t
        .purchase(ClubInquiry, Some(5), &rich, now, nonce(6))
        .unwrap();
    check(&mut client, &t, &out, InvalidAmount, true).await;
    let mut dollars = counter();
    dollars.currency = protocol::Currency::new(840).unwrap();
    dollars.set_stan(500);
    let out = dollars
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(6))
        .unwrap();
    check(&mut client, &dollars, &out, InvalidAmount, true).await;

    // 14: a card not enrolled, a PAN failing Luhn.
    let out = t
        .purchase(
            BankPurchase,
            Some(10_000),
            &pan("4111111111111111"),
            now,
            nonce(8),
        )
        .unwrap();
    check(&mut client, &t, &out, CardNotEnrolled, true).await;
    let out = t
        .purchase(
            BankPurchase,
            Some(10_000),
            &pan("6037991111111113"),
            now,
            nonce(8),
        )
        .unwrap();
    check(&mut client, &t, &out, CardNotEnrolled, true).await;

    // 25: a confirm of an original never seen.
    let ghost = t
        .purchase(BankPurchase, Some(10_000), &rich, now - 50, nonce(9))
        .unwrap();
    let out = t
        .confirm(&ghost, protocol::Rrn::from_number(4242).unwrap(), now)
        .unwrap();
    check(&mut client, &t, &out, OriginalNotFound, true).await;

    // 30: field 41 and field 2 in clear; a field outside the list (42).
    let base = t
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(10))
        .unwrap();
    check(
        &mut client,
        &t,
        &with_fields(&t, &base, &[(41, b"TRM00001")]),
        FormatError,
        true,
    )
    .await;
    let base = t
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(10))
        .unwrap();
    check(
        &mut client,
        &t,
        &with_fields(&t, &base, &[(2, RICH.as_bytes())]),
        FormatError,
        true,
    )
    .await;
    let base = t
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(10))
        .unwrap();
    check(
        &mut client,
        &t,
        &with_fields(&t, &base, &[(42, b"MERCHANT0000001")]),
        FormatError,
        true,
    )
    .await;

    // 51: the club balance does not cover the rest.
    let out = t
        .purchase(ClubPurchase, Some(100_000), &pan(POOR), now, nonce(11))
        .unwrap();
    check(&mut client, &t, &out, Insufficient, true).await;
    // 54, 61, 62.
    let out = t
        .purchase(BankPurchase, Some(10_000), &pan(EXPIRED), now, nonce(12))
        .unwrap();
    check(&mut client, &t, &out, CardExpired, true).await;
    let out = t
        .purchase(BankPurchase, Some(100_000_001), &rich, now, nonce(12))
        .unwrap();
    check(&mut client, &t, &out, OverLimit, true).await;
    let out = t
        .purchase(BankPurchase, Some(10_000), &pan(BLOCKED), now, nonce(12))
        .unwrap();
    check(&mut client, &t, &out, CardBlocked, true).await;

    // 63: bad MAC, unknown KSI (no MAC on the response), clock 301 s off (300 s is fine).
    let out = t
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(13))
        .unwrap();
    let mut bytes = out.bytes.to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    check(
        &mut client,
        &t,
        &Outgoing {
            bytes: Bytes::from(bytes),
            ..out
        },
        Security,
        true,
    )
    .await;
    let mut stranger = terminal("TRM00009", "FEDCBA9876543210", &[0x42; 32]);
    let out = stranger
        .purchase(BankPurchase, Some(10_000), &rich, now, nonce(13))
        .unwrap();
    check(&mut client, &stranger, &out, Security, false).await;
    let out = t
        .purchase(BankPurchase, Some(10_000), &rich, now - 301, nonce(13))
        .unwrap();
    check(&mut client, &t, &out, Security, true).await;
    let out = t
        .purchase(BankPurchase, Some(10_000), &rich, now + 301, nonce(13))
        .unwrap();
    check(&mut client, &t, &out, Security, true).await;
    let out = t
        .purchase(BankPurchase, Some(10_000), &rich, now - 300, nonce(13))
        .unwrap();
    check(&mut client, &t, &out, Approved, true).await;

    // 94: the same KSI, MTI, STAN and field 7 with another amount.
    let first = t
        .purchase(BankPurchase, Some(20_000), &rich, now, nonce(14))
        .unwrap();
    check(&mut client, &t, &first, Approved, true).await;
    t.set_stan(first.stan.get() - 1);
    let other = t
        .purchase(BankPurchase, Some(20_001), &rich, now, nonce(15))
        .unwrap();
    assert_eq!(
        (other.stan, other.transmitted),
        (first.stan, first.transmitted)
    );
    check(&mut client, &t, &other, DuplicateStan, true).await;

    // 96: the database refuses the write; nothing changes, and service resumes by itself.
    let before = harness.state().await;
    const OF_30K: &str = "SELECT count(*) FROM transactions WHERE gross_rials = 30000";
    let stored_before = harness.scalar(OF_30K).await;
    let postgres =
        switch::store::Backend::of_pool(harness.pool().await) == switch::store::Backend::Postgres;
    let refuse: &[&str] = if postgres {
        &[
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'test'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON transactions \
             FOR EACH ROW EXECUTE FUNCTION refuse()",
        ]
    } else {
        &["CREATE TRIGGER refuse BEFORE INSERT ON transactions BEGIN SELECT RAISE(ABORT, 'test'); END"]
    };
    for sql in refuse {
        sqlx::query(sql)
            .execute(harness.pool().await)
            .await
            .unwrap();
    }
    let out = t
        .purchase(BankPurchase, Some(30_000), &rich, now, nonce(16))
        .unwrap();
    if postgres {
        // The database is the commit point: its refusal is the batch's.
        check(&mut client, &t, &out, SystemError, true).await;
        assert_eq!(harness.state().await, before, "a 96 changes nothing");
    } else {
        // The journal is the commit point: the purchase is answered from it, and the
        // database refusing the projection holds back only the projection, which retries.
        check(&mut client, &t, &out, Approved, true).await;
        let journal = harness.running().journal.clone().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(journal.lag() > 0, "the refused record waits in the journal");
        assert!(!journal.healthy(), "a failing projection is not ready");
    }
    sqlx::query(if postgres {
        "DROP TRIGGER refuse ON transactions"
    } else {
        "DROP TRIGGER refuse"
    })
    .execute(&harness.running().pool)
    .await
    .unwrap();
    let out = t
        .purchase(BankPurchase, Some(30_000), &rich, now, nonce(17))
        .unwrap();
    check(&mut client, &t, &out, Approved, true).await;
    if !postgres {
        // Once the database accepts again, both purchases land, once each.
        assert_eq!(harness.scalar(OF_30K).await, stored_before + 2);
    }
}

async fn network_management_answers_with_switch_time(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    for code in [
        protocol::NetworkCode::SignOn,
        protocol::NetworkCode::Echo,
        protocol::NetworkCode::SignOff,
    ] {
        let out = t.network(code, harness.now_seconds()).unwrap();
        let (response, bytes) = client
            .exchange(&out.bytes, out.mti, out.stan, Some(t.keys()))
            .await
            .unwrap();
        assert_eq!(response.code, ResponseCode::Approved);
        let raw = RawMessage::parse(bytes).unwrap();
        // 2026-11-22T18:30:00Z: field 13 = 1122, field 12 = 183000.
        assert_eq!(raw.field(13).unwrap(), b"1122");
        assert_eq!(raw.field(12).unwrap(), b"183000");
        assert_eq!(raw.field(70).unwrap(), code.as_bytes());
    }
}

on_both!(
    every_response_code,
    network_management_answers_with_switch_time
);
