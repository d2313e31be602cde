//! Goal: the two-phase rules of docs/protocol.md sections 4 and 7 hold over real TCP: holds,
//! captures, releases and timeouts move ledger and available balances exactly; confirms and
//! reversals answer as the rules say in every state; retransmissions are idempotent.
//!
//! Method: an in-process switch with a manual clock; balances are read back through balance
//! inquiries (what a terminal sees) and the database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use protocol::field54::AmountKind;
use protocol::{ProcessingCode, ResponseCode, Rrn};

use ProcessingCode::*;

async fn balances_move_through_hold_capture_release_and_timeout(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [2_000_000, 2_000_000, 100_000, 100_000]
    );

    // 006700, G = 500 000: discount 50 000, store credit 100 000, club 350 000.
    let (mixed, r) = purchase(&mut client, &mut t, MixedPurchase, 500_000, RICH, now).await;
    check_split(&r, 500_000, [50_000, 7_500, 100_000, 350_000, 0, 7_000]);
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [2_000_000, 1_650_000, 100_000, 0]
    );

    // Confirm: captured; the cashback (2% of 350 000) is issued as store credit.
    let confirm = t.confirm(&mixed, r.rrn.unwrap(), now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [1_650_000, 1_650_000, 7_000, 7_000]
    );

    // A reversal of a pending request releases its hold.
    let (club, r) = purchase(&mut client, &mut t, ClubPurchase, 100_000, RICH, now).await;
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [1_650_000, 1_560_000, 7_000, 7_000]
    );
    let reversal = t.reversal(&club, r.rrn, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &reversal).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [1_650_000, 1_650_000, 7_000, 7_000]
    );

    // A request never confirmed: its hold is released after the confirm timeout (120 s).
    let (late, r) = purchase(&mut client, &mut t, ClubPurchase, 200_000, RICH, now).await;
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [1_650_000, 1_470_000, 7_000, 7_000]
    );
    harness.clock.advance(121_000);
    let later = harness.now_seconds();
    let expired = "SELECT count(*) FROM transactions WHERE state = 'expired'";
    for _ in 0..200 {
        if harness.scalar(expired).await == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(
        harness.scalar(expired).await,
        1,
        "the sweeper released the hold"
    );
    assert_eq!(
        balances(&mut client, &mut t, RICH, later).await,
        [1_650_000, 1_650_000, 7_000, 7_000]
    );

    // Its confirm still arrives: an advice is recorded and captures again (docs/protocol.md 4),
    // and earns its cashback (2% of 180 000).
    let confirm = t.confirm(&late, r.rrn.unwrap(), later).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        balances(&mut client, &mut t, RICH, later).await,
        [1_470_000, 1_470_000, 10_600, 10_600]
    );
    assert_eq!(
        harness.scalar("SELECT count(*) FROM exceptions").await,
        0,
        "covered: no shortfall"
    );
}

async fn confirm_rules(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let (original, r) = purchase(&mut client, &mut t, ClubPurchase, 100_000, RICH, now).await;
    let rrn = r.rrn.unwrap();

    // Field 37 not the original's RRN: 25. Field 4 differs: 13. Neither changes anything.
    let wrong_rrn = t
        .confirm(&original, Rrn::from_number(999_999).unwrap(), now)
        .unwrap();
    assert_eq!(
        exchange(&mut client, &t, &wrong_rrn).await.code,
        ResponseCode::OriginalNotFound
    );
    let mut other_amount = original.clone();
    other_amount.amount = Some(protocol::Amount::new(100_001).unwrap());
    let wrong_amount = t.confirm(&other_amount, rrn, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &wrong_amount).await.code,
        ResponseCode::InvalidAmount
    );
    assert_eq!(harness.scalar("SELECT count(*) FROM captures").await, 0);

    // Confirm, then confirm again under a new STAN: 00, captured once.
    for _ in 0..2 {
        let confirm = t.confirm(&original, rrn, now).unwrap();
        assert_eq!(
            exchange(&mut client, &t, &confirm).await.code,
            ResponseCode::Approved
        );
    }
    assert_eq!(harness.scalar("SELECT count(*) FROM captures").await, 1);
    assert_eq!(harness.scalar("SELECT ledger_rials FROM club_balances WHERE card_id = (SELECT card_id FROM transactions)").await, 1_910_000);

    // Confirming a reversed request: 12.
    let (reversed, r) = purchase(&mut client, &mut t, ClubPurchase, 50_000, RICH, now).await;
    let reversal = t.reversal(&reversed, r.rrn, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &reversal).await.code,
        ResponseCode::Approved
    );
    let confirm = t.confirm(&reversed, r.rrn.unwrap(), now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::InvalidTransaction
    );

    // Confirming a declined request or a balance inquiry: 12.
    let (declined, r) = purchase(&mut client, &mut t, ClubPurchase, 100_000, POOR, now).await;
    assert_eq!(r.code, ResponseCode::Insufficient);
    let confirm = t
        .confirm(&declined, Rrn::from_number(1).unwrap(), now)
        .unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::InvalidTransaction
    );
    let inquiry = t
        .purchase(ClubInquiry, None, &pan(RICH), now, nonce(3))
        .unwrap();
    let r = exchange(&mut client, &t, &inquiry).await;
    let confirm = t.confirm(&inquiry, r.rrn.unwrap(), now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::InvalidTransaction
    );
}

async fn reversal_rules(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();

    // Reversal of a confirmed transaction returns what it captured and claws back cashback.
    let (mixed, r) = purchase(&mut client, &mut t, MixedPurchase, 500_000, RICH, now).await;
    let confirm = t.confirm(&mixed, r.rrn.unwrap(), now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        balances(&mut client, &mut t, RICH, now).await,
        [1_650_000, 1_650_000, 7_000, 7_000]
    );
    for _ in 0..2 {
        // Reversing an already reversed original again: 00, nothing changes.
        let reversal = t.reversal(&mixed, r.rrn, now).unwrap();
        assert_eq!(
            exchange(&mut client, &t, &reversal).await.code,
            ResponseCode::Approved
        );
        assert_eq!(
            balances(&mut client, &mut t, RICH, now).await,
            [2_000_000, 2_000_000, 100_000, 100_000]
        );
    }

    // Cashback already spent when the reversal comes: the shortfall is an exception, never a
    // negative balance. Lots that expire first are used first, so the 90-day cashback lot
    // (18 000) goes before the opening lot, which never expires.
    let (bank, r) = purchase(&mut client, &mut t, BankPurchase, 1_000_000, RICH, now).await;
    assert_eq!(amount(&r, AmountKind::Cashback), 18_000);
    let confirm = t.confirm(&bank, r.rrn.unwrap(), now).unwrap();
    exchange(&mut client, &t, &confirm).await;
    let (spend, r) = purchase(&mut client, &mut t, StoreCreditPurchase, 130_000, RICH, now).await;
    check_split(&r, 130_000, [13_000, 1_950, 117_000, 0, 0, 0]);
    let confirm = t.confirm(&spend, r.rrn.unwrap(), now).unwrap();
    exchange(&mut client, &t, &confirm).await;
    let reversal = t.reversal(&bank, None, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &reversal).await.code,
        ResponseCode::Approved
    );
    assert_eq!(
        harness
            .scalar(
                "SELECT amount_rials FROM exceptions WHERE kind = 'cashback_clawback_shortfall'"
            )
            .await,
        18_000
    );
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM store_credit_lots WHERE remaining_rials < 0")
            .await,
        0
    );

    // A reversal of an original never seen: 00, remembered; the original is then refused (12).
    let ghost = t
        .purchase(ClubPurchase, Some(10_000), &pan(RICH), now, nonce(9))
        .unwrap();
    let reversal = t.reversal(&ghost, None, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &reversal).await.code,
        ResponseCode::Approved
    );
    let r = exchange(&mut client, &t, &ghost).await;
    assert_eq!(r.code, ResponseCode::InvalidTransaction);
    assert_eq!(harness.scalar("SELECT count(*) FROM tombstones").await, 1);
}

async fn retransmissions_are_idempotent(db: Db) {
    let mut harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let out = t
        .purchase(ClubPurchase, Some(100_000), &pan(RICH), now, nonce(1))
        .unwrap();
    let (first, first_bytes) = client
        .exchange(&out.bytes, out.mti, out.stan, Some(t.keys()))
        .await
        .unwrap();
    let (_, again_bytes) = client
        .exchange(&out.bytes, out.mti, out.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(first_bytes, again_bytes, "the same response, byte for byte");
    assert_eq!(harness.scalar("SELECT count(*) FROM transactions").await, 1);

    // After a restart the approved answer is still there.
    let confirm = t.confirm(&out, first.rrn.unwrap(), now).unwrap();
    drop(client);
    harness.restart().await;
    let mut client = harness.client().await;
    let (_, after_restart) = client
        .exchange(&out.bytes, out.mti, out.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(after_restart, first_bytes);

    // An advice resent hours later with its original field 7 gets its stored answer; a
    // request never answered and resent outside the window gets 63.
    let (_, confirm_bytes) = client
        .exchange(&confirm.bytes, confirm.mti, confirm.stan, Some(t.keys()))
        .await
        .unwrap();
    harness.clock.advance(3 * 3600 * 1000);
    let (_, resent) = client
        .exchange(&confirm.bytes, confirm.mti, confirm.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(resent, confirm_bytes);
    assert_eq!(harness.scalar("SELECT count(*) FROM captures").await, 1);
    let stale = t
        .purchase(ClubPurchase, Some(100_000), &pan(RICH), now, nonce(2))
        .unwrap();
    let r = exchange(&mut client, &t, &stale).await;
    assert_eq!(r.code, ResponseCode::Security);
}

async fn a_settled_transaction_is_not_reversed(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let (club, r) = purchase(&mut client, &mut t, ClubPurchase, 100_000, RICH, now).await;
    let rrn = r.rrn.unwrap();
    let confirm = t.confirm(&club, rrn, now).unwrap();
    assert_eq!(
        exchange(&mut client, &t, &confirm).await.code,
        ResponseCode::Approved
    );
    // Settlement closes a cycle beside the running switch (what lsw-settle's close writes).
    sqlx::query("UPDATE transactions SET cycle_id = 1")
        .execute(harness.pool().await)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Reversing it now is 12 (docs/protocol.md section 7) and leaves a late-reversal record; a
    // purchase pipelined right behind it is unaffected.
    let reversal = t.reversal(&club, Some(rrn), now).unwrap();
    let other = t
        .purchase(ClubPurchase, Some(10_000), &pan(RICH), now, nonce(5))
        .unwrap();
    client.send(&reversal.bytes).await.unwrap();
    client.send(&other.bytes).await.unwrap();
    let read = |bytes| {
        let raw = protocol::RawMessage::parse(bytes).unwrap();
        protocol::response::Response::parse(&raw, Some(t.keys())).unwrap()
    };
    let bytes = client
        .wait_for(reversal.mti.response().unwrap(), reversal.stan)
        .await
        .unwrap();
    assert_eq!(read(bytes).code, ResponseCode::InvalidTransaction);
    let bytes = client
        .wait_for(other.mti.response().unwrap(), other.stan)
        .await
        .unwrap();
    assert_eq!(read(bytes).code, ResponseCode::Approved);
    assert_eq!(
        harness
            .scalar("SELECT count(*) FROM exceptions WHERE kind = 'late_reversal'")
            .await,
        1
    );
    assert_eq!(
        harness
            .scalar("SELECT amount_rials FROM exceptions WHERE kind = 'late_reversal'")
            .await,
        90_000
    );
    assert_eq!(
        harness
            .scalar("SELECT CASE WHEN state = 'confirmed' THEN 1 ELSE 0 END FROM transactions WHERE rrn = '000000000001'")
            .await,
        1
    );
}

/// A rule's per-member daily use limit counts what was approved before a restart: the
/// engine rebuilds the count from the stored transactions (it once started from zero).
async fn daily_rule_uses_survive_a_restart(db: Db) {
    let mut network: serde_json::Value = serde_json::from_str(NETWORK).unwrap();
    network["rules"][0]["member_daily_uses_max"] = 2.into();
    let mut harness = Harness::start_network(db, &network.to_string()).await;
    let mut t = counter();
    let now = harness.now_seconds();
    let mut client = harness.client().await;
    for _ in 0..2 {
        let (_, r) = purchase(&mut client, &mut t, BankPurchase, 10_000, RICH, now).await;
        assert_eq!(r.code, ResponseCode::Approved);
        assert_eq!(
            amount(&r, AmountKind::Discount),
            1_000,
            "within the daily uses"
        );
    }
    drop(client);
    harness.restart().await;
    let mut client = harness.client().await;
    let (_, r) = purchase(&mut client, &mut t, BankPurchase, 10_000, RICH, now).await;
    assert_eq!(r.code, ResponseCode::Approved);
    assert_eq!(
        amount(&r, AmountKind::Discount),
        0,
        "the third use of the day gets no discount, restart or not"
    );
}

on_both!(
    daily_rule_uses_survive_a_restart,
    balances_move_through_hold_capture_release_and_timeout,
    confirm_rules,
    reversal_rules,
    retransmissions_are_idempotent,
    a_settled_transaction_is_not_reversed
);
