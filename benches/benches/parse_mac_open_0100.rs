//! Goal: the docs/design.md section 9 target for the request path of the protocol layer: parsing a
//! 0100, checking its MAC and opening its identity envelope takes at most 2 µs (median).
//!
//! Method: criterion over the frozen `purchase_bank_000000` vector, with keys derived once (the
//! switch caches working keys per KSI). Beside the target: building an approved 0110 with its
//! six amount sets and MAC into a reused buffer, and a like-for-like parse-only comparison with
//! the `iso8583_rs` crate, which does no MAC or crypto; and the content fingerprint of the
//! idempotency window, which admission takes on the connection's task (it was the engine's
//! until 2026-12-05). Every input is checked before it is measured, so a bench can never time
//! a failing path.
// `criterion_group!` generates a public function that cannot carry a doc comment.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use benches::network::PAN_KEY;
use benches::{fixture, Fixture, PURCHASE_0100};
use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use iso8583_rs::iso8583::iso_spec::{self, Spec};
use protocol::field54::PurchaseAmounts;
use protocol::message::Request;
use protocol::response::{self, Answer, Response};
use protocol::{Amount, ApprovalCode, Currency, Mti, RawMessage, ResponseCode, Rrn};
use switch::domain::{PanToken, PanTokenKey};
use switch::engine::{fingerprint, CardRef};

/// The iso8583_rs spec of the 0100 (its crate reads specs only from the file `SPEC_FILE` names).
const ISO8583_RS_SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/iso8583_rs_lsti1.yaml");

/// The target: parse, MAC, envelope.
fn parse_mac_open(fixture: &Fixture) -> usize {
    let raw = RawMessage::parse(fixture.message.clone()).unwrap();
    let request = Request::from_raw(raw).unwrap();
    let identity = request
        .verify(&fixture.keys, &fixture.terminal_id)
        .unwrap()
        .unwrap();
    identity.pan.len()
}

/// An approved 0110 with the six amount sets of docs/protocol.md section 5 and its MAC.
fn build_0110(fixture: &Fixture, request: &RawMessage, amounts: &mut BytesMut, out: &mut BytesMut) {
    amounts.clear();
    out.clear();
    PurchaseAmounts {
        discount: Amount::new(125_000).unwrap(),
        fee: Amount::new(18_750).unwrap(),
        store_credit: Amount::ZERO,
        club: Amount::ZERO,
        bank_rest: Amount::new(1_125_000).unwrap(),
        cashback: Amount::new(11_250).unwrap(),
    }
    .write(Currency::IRR, amounts);
    let answer = Answer {
        code: ResponseCode::Approved,
        rrn: Some(Rrn::from_number(632_618_000_001).unwrap()),
        approval: Some(ApprovalCode::parse(b"A1B2C3").unwrap()),
        amounts: Some(amounts),
        switch_time: None,
    };
    response::build(
        out,
        Mti::AuthorizationRequest,
        request,
        &answer,
        Some(&fixture.keys),
    )
    .unwrap();
}

fn iso8583_rs_spec() -> &'static Spec {
    // Edition 2021: `set_var` is safe; it runs once, before any thread reads the environment.
    std::env::set_var("SPEC_FILE", ISO8583_RS_SPEC);
    iso_spec::spec("LSTI1")
}

/// Outside the timed loops: every path measured succeeds and reads what the vector holds.
fn check(fixture: &Fixture, spec: &'static Spec) {
    assert_eq!(parse_mac_open(fixture), 16);
    let raw = RawMessage::parse(fixture.message.clone()).unwrap();
    let mut amounts = BytesMut::with_capacity(128);
    let mut out = BytesMut::with_capacity(512);
    build_0110(fixture, &raw, &mut amounts, &mut out);
    let back = RawMessage::parse(out.split().freeze()).unwrap();
    let parsed = Response::parse(&back, Some(&fixture.keys)).unwrap();
    assert_eq!(parsed.mti, Mti::AuthorizationResponse);
    assert_eq!(parsed.code, ResponseCode::Approved);
    assert_eq!(parsed.amounts.len(), 6);
    assert!(parsed.has_mac);

    let mut data = fixture.message.to_vec();
    let theirs = spec.parse(&mut data).unwrap();
    for number in [3_u8, 4, 7, 11, 49, 53] {
        let ours = std::str::from_utf8(raw.field(number).unwrap()).unwrap();
        assert_eq!(
            theirs.bmp_child_value(u32::from(number)).unwrap(),
            ours,
            "field {number}"
        );
    }
    for number in [62_u8, 64] {
        assert_eq!(
            theirs.bmp_child_value(u32::from(number)).unwrap(),
            hex::encode(raw.field(number).unwrap()),
            "field {number}"
        );
    }
    assert_eq!(
        theirs.get_field_value(&"message_type".to_string()).unwrap(),
        "0100"
    );
}

fn benches(c: &mut Criterion) {
    let fixture = fixture(PURCHASE_0100);
    let spec = iso8583_rs_spec();
    check(&fixture, spec);

    let mut group = c.benchmark_group("parse_mac_open_0100");
    group.bench_function("parse_mac_open_0100", |b| {
        b.iter(|| parse_mac_open(black_box(&fixture)))
    });

    let request = RawMessage::parse(fixture.message.clone()).unwrap();
    let mut amounts = BytesMut::with_capacity(128);
    let mut out = BytesMut::with_capacity(512);
    group.bench_function("build_0110", |b| {
        b.iter(|| {
            build_0110(&fixture, black_box(&request), &mut amounts, &mut out);
            black_box(out.len())
        })
    });

    let parsed = Request::from_raw(request.clone()).unwrap();
    let identity = parsed
        .verify(&fixture.keys, &fixture.terminal_id)
        .unwrap()
        .unwrap();
    let card = CardRef {
        token: PanToken::compute(&PanTokenKey::from_bytes(PAN_KEY), &identity.pan),
        luhn_valid: identity.pan.luhn_valid(),
        terminal_id: *identity.terminal_id.as_bytes(),
    };
    assert_ne!(
        fingerprint(&parsed, Some(&card)),
        fingerprint(&parsed, None)
    );
    group.bench_function("fingerprint_0100", |b| {
        b.iter(|| fingerprint(black_box(&parsed), Some(black_box(&card))))
    });

    let mut data = fixture.message.to_vec();
    group.bench_function("iso8583_rs_parse_0100", |b| {
        b.iter(|| spec.parse(black_box(&mut data)).unwrap().fd_map.len())
    });

    group.bench_function("our_parse_only_0100", |b| {
        b.iter(|| {
            RawMessage::parse(black_box(fixture.message.clone()))
                .unwrap()
                .bitmap()
        })
    });
    group.finish();
}

criterion_group!(parse_mac_open_0100, benches);
criterion_main!(parse_mac_open_0100);
