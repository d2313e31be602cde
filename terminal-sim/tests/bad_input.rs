//! Goal: bad input never changes state (issue acceptance: malformed frame, bad MAC, wrong-key
//! envelope, PAN or terminal id in clear, stale field 7), each gets its code, and the
//! connection's other requests are still answered; framing faults close only their own
//! connection (docs/protocol.md sections 1 and 7).
//!
//! Method: one connection sends each bad message followed by a good inquiry; the database is
//! compared, table by table, before and after.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use protocol::terminal::Outgoing;
use protocol::{ProcessingCode, ResponseCode};

async fn bad_messages_change_nothing_and_the_connection_goes_on(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut client = harness.client().await;
    let mut t = counter();
    let now = harness.now_seconds();
    let rich = pan(RICH);
    let before = harness.state().await;

    let good = |t: &mut protocol::terminal::Terminal| {
        t.purchase(ProcessingCode::ClubInquiry, None, &pan(RICH), now, nonce(1))
            .unwrap()
    };
    let base = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(10_000),
            &rich,
            now,
            nonce(2),
        )
        .unwrap();

    // A frame whose content cannot be parsed: no response, but the next request is answered.
    client.send(b"GARBAGE!").await.unwrap();
    let next = good(&mut t);
    assert_eq!(
        exchange(&mut client, &t, &next).await.code,
        ResponseCode::Approved
    );

    // Bad MAC.
    let mut bytes = base.bytes.to_vec();
    *bytes.last_mut().unwrap() ^= 0x80;
    let bad_mac = Outgoing {
        bytes: Bytes::from(bytes),
        ..base.clone()
    };
    let (r, _) = client
        .exchange(&bad_mac.bytes, bad_mac.mti, bad_mac.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::Security);

    // Envelope sealed under another terminal's key (MAC right).
    let mut wrong_key = terminal("TRM00001", "0123456789ABCDEF", &[0x33; 32]);
    wrong_key.set_stan(900);
    let sealed_wrong = wrong_key
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(10_000),
            &rich,
            now,
            nonce(3),
        )
        .unwrap();
    let wrong_envelope = with_fields(&t, &sealed_wrong, &[]);
    let (r, _) = client
        .exchange(
            &wrong_envelope.bytes,
            wrong_envelope.mti,
            wrong_envelope.stan,
            Some(t.keys()),
        )
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::Security);

    // PAN in clear, terminal id in clear.
    let base = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(10_000),
            &rich,
            now,
            nonce(4),
        )
        .unwrap();
    let with_pan = with_fields(&t, &base, &[(2, RICH.as_bytes())]);
    let (r, _) = client
        .exchange(&with_pan.bytes, with_pan.mti, with_pan.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::FormatError);
    let base = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(10_000),
            &rich,
            now,
            nonce(5),
        )
        .unwrap();
    let with_tid = with_fields(&t, &base, &[(41, b"TRM00001")]);
    let (r, _) = client
        .exchange(&with_tid.bytes, with_tid.mti, with_tid.stan, Some(t.keys()))
        .await
        .unwrap();
    assert_eq!(r.code, ResponseCode::FormatError);

    // Stale field 7.
    let stale = t
        .purchase(
            ProcessingCode::ClubPurchase,
            Some(10_000),
            &rich,
            now - 600,
            nonce(6),
        )
        .unwrap();
    assert_eq!(
        exchange(&mut client, &t, &stale).await.code,
        ResponseCode::Security
    );

    // Still answered on the same connection; and nothing changed but the answered inquiries,
    // which are not stored.
    let next = good(&mut t);
    assert_eq!(
        exchange(&mut client, &t, &next).await.code,
        ResponseCode::Approved
    );
    assert_eq!(harness.state().await, before);
}

async fn framing_faults_close_only_their_connection(db: Db) {
    let harness = Harness::start_on(db).await;
    let mut t = counter();
    let now = harness.now_seconds();
    let mut bystander = harness.client().await;

    // Zero and oversized length prefixes close at once.
    for prefix in [[0_u8, 0], [0x08, 0x01]] {
        let mut client = harness.client().await;
        client.send_raw(&prefix).await.unwrap();
        assert!(
            client.closed_within(Duration::from_secs(2)).await,
            "{prefix:?}"
        );
    }
    // Three unparseable frames in total (not in a row) close the connection.
    let mut client = harness.client().await;
    for garbage in [&b"HELLO"[..], b"\xff\xff\xff\xff\xff\xff\xff", b"0100"] {
        client.send(garbage).await.unwrap();
        let good = t
            .purchase(ProcessingCode::ClubInquiry, None, &pan(RICH), now, nonce(1))
            .unwrap();
        if garbage != b"0100" {
            assert_eq!(
                exchange(&mut client, &t, &good).await.code,
                ResponseCode::Approved
            );
        }
    }
    assert!(client.closed_within(Duration::from_secs(2)).await);

    // The other connection never noticed.
    let good = t
        .purchase(ProcessingCode::ClubInquiry, None, &pan(RICH), now, nonce(1))
        .unwrap();
    assert_eq!(
        exchange(&mut bystander, &t, &good).await.code,
        ResponseCode::Approved
    );
}

#[tokio::test]
async fn a_frame_cut_short_is_closed_after_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(&dir.path().join("lsw.db"));
    config.frame_read_timeout_ms = 300;
    let clock = std::sync::Arc::new(switch::clock::ManualClock::new(
        switch::domain::UnixMillis::new(START_MS),
    ));
    let running = switch::app::start(&config, &secrets(), clock, None)
        .await
        .unwrap();
    let mut client = terminal_sim::client::Client::connect(running.addr)
        .await
        .unwrap();
    // A length of 200 followed by 50 bytes, then silence.
    let mut bytes = vec![0_u8, 200];
    bytes.extend_from_slice(&[b'0'; 50]);
    client.send_raw(&bytes).await.unwrap();
    assert!(
        !client.closed_within(Duration::from_millis(100)).await,
        "not before the timeout"
    );
    assert!(
        client.closed_within(Duration::from_secs(2)).await,
        "closed after it"
    );
    running.stop().await;
}

on_both!(
    bad_messages_change_nothing_and_the_connection_goes_on,
    framing_faults_close_only_their_connection
);
