//! Goal: what the byte-exact vectors cannot show by example: every valid message survives
//! build → frame → parse → verify unchanged, and no byte sequence a peer can send makes the
//! codec panic, buffer or allocate without bound, or accept a changed message as authentic.
//!
//! Method: proptest. Valid requests of every MTI (with random processing codes, amounts, STANs,
//! clocks, keys, nonces and PANs) and responses are built with the crate's own builder and read
//! back field by field. Arbitrary byte streams, arbitrary messages and mutations of the frozen
//! vectors (`tests/data/lsti1.json`) go through every reader: each must return, within its
//! limits, and a changed message must never pass the MAC check. The bounds on buffering are
//! checked structurally, on the buffers' lengths and capacities.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use protocol::bitmap::Bitmap;
use protocol::builder::MessageBuilder;
use protocol::envelope::{self, EnvelopeError, NONCE_BYTES};
use protocol::field::{ParseError, MESSAGE_BYTES_MAX};
use protocol::field54::{self, AmountKind, AmountSet, PurchaseAmounts};
use protocol::frame::{self, FrameError, FRAME_BYTES_MAX, PREFIX_BYTES};
use protocol::ids::AMOUNT_MAX;
use protocol::mac::{self, MacError};
use protocol::message::{Body, Kind, SecurityError};
use protocol::response::{self, Answer, Response};
use protocol::{
    Amount, ApprovalCode, Currency, Ksi, Mti, NetworkCode, OriginalData, Pan, ProcessingCode,
    RawMessage, Request, ResponseCode, Rrn, Stan, TerminalId, Tmk, TransmissionTime, WorkingKeys,
};
use serde_json::Value;

/// Cases per property: enough to cover every MTI and code many times over, while the whole
/// file stays within a few seconds of a debug build.
const CASES: u32 = 512;

/// Unix seconds up to 2100-01-01: any field 7 a terminal can send this century.
const UNIX_MAX: i64 = 4_102_444_800;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    }
}

// ----- Generators of valid messages -----

/// The MTI-specific part of a request to build.
#[derive(Debug, Clone)]
enum Shape {
    /// 0100 or 0200 (the MTI the code asks for); `amount` is `None` only for an inquiry.
    Financial {
        code: ProcessingCode,
        amount: Option<u64>,
    },
    /// 0220 (`rrn` always present) or 0420.
    FollowUp {
        confirm: bool,
        code: ProcessingCode,
        amount: u64,
        rrn: Option<[u8; 12]>,
        original: (Mti, u32, i64),
    },
    /// 0800.
    Network(NetworkCode),
}

/// A request to build, with everything random that a terminal chooses.
#[derive(Debug, Clone)]
struct Case {
    shape: Shape,
    stan: u32,
    unix: i64,
    local_time: bool,
    currency: u16,
    ksi: [u8; 16],
    tmk: [u8; 32],
    nonce: [u8; NONCE_BYTES],
    terminal: [u8; 8],
    pan: Vec<u8>,
    luhn: bool,
}

impl Case {
    fn mti(&self) -> Mti {
        match &self.shape {
            Shape::Financial { code, .. } => code.request_mti(),
            Shape::FollowUp { confirm: true, .. } => Mti::ConfirmAdvice,
            Shape::FollowUp { confirm: false, .. } => Mti::ReversalAdvice,
            Shape::Network(_) => Mti::NetworkRequest,
        }
    }

    fn keys(&self) -> WorkingKeys {
        WorkingKeys::derive(&Tmk::from_bytes(self.tmk))
    }

    fn transmitted(&self) -> [u8; 10] {
        TransmissionTime::from_unix(self.unix).to_digits()
    }
}

fn processing_code() -> impl Strategy<Value = ProcessingCode> {
    prop::sample::select(ProcessingCode::ALL.to_vec())
}

fn network_code() -> impl Strategy<Value = NetworkCode> {
    prop::sample::select(vec![
        NetworkCode::SignOn,
        NetworkCode::SignOff,
        NetworkCode::Echo,
    ])
}

fn alphanumeric(len: usize) -> impl Strategy<Value = Vec<u8>> {
    let chars: Vec<u8> = (b'0'..=b'9')
        .chain(b'A'..=b'Z')
        .chain(b'a'..=b'z')
        .collect();
    prop::collection::vec(prop::sample::select(chars), len)
}

fn shape() -> impl Strategy<Value = Shape> {
    let financial =
        (processing_code(), 1..=AMOUNT_MAX, any::<bool>()).prop_map(|(code, amount, absent)| {
            let amount = match (code.is_inquiry(), absent) {
                (true, true) => None,
                (true, false) => Some(0),
                (false, _) => Some(amount),
            };
            Shape::Financial { code, amount }
        });
    let original = (
        prop::sample::select(vec![Mti::AuthorizationRequest, Mti::FinancialRequest]),
        0..=999_999_u32,
        0..=UNIX_MAX,
    );
    let follow_up = (
        any::<bool>(),
        processing_code(),
        0..=AMOUNT_MAX,
        prop::option::of(alphanumeric(12)),
        original,
    )
        .prop_map(|(confirm, code, amount, rrn, original)| {
            let rrn = rrn.map(|r| <[u8; 12]>::try_from(r).unwrap());
            // A confirm must carry field 37 (docs/protocol.md section 7).
            let rrn = if confirm {
                Some(rrn.unwrap_or(*b"000000000001"))
            } else {
                rrn
            };
            Shape::FollowUp {
                confirm,
                code,
                amount,
                rrn,
                original,
            }
        });
    prop_oneof![
        4 => financial,
        2 => follow_up,
        1 => network_code().prop_map(Shape::Network),
    ]
}

/// 12..=19 digits whose last digit is the Luhn check digit when `luhn`, and any other digit
/// when not (so the flag is exact).
fn pan() -> impl Strategy<Value = (Vec<u8>, bool)> {
    (prop::collection::vec(0..=9_u8, 11..=18), any::<bool>()).prop_map(|(body, luhn)| {
        let mut digits: Vec<u8> = body.iter().map(|d| b'0' + d).collect();
        let check = luhn_check_digit(&digits);
        let last = if luhn { check } else { (check + 1) % 10 };
        digits.push(b'0' + last);
        (digits, luhn)
    })
}

/// The digit that makes `body` + digit pass the Luhn check.
fn luhn_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            let value = u32::from(digit - b'0');
            if position % 2 == 0 {
                let doubled = value * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                value
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).unwrap()
}

fn case() -> impl Strategy<Value = Case> {
    let hex: Vec<u8> = (b'0'..=b'9').chain(b'A'..=b'F').collect();
    let printable: Vec<u8> = (b' '..=b'~').collect();
    (
        shape(),
        (0..=999_999_u32, 0..=UNIX_MAX, any::<bool>(), 0..=999_u16),
        prop::collection::vec(prop::sample::select(hex), 16),
        any::<[u8; 32]>(),
        any::<[u8; NONCE_BYTES]>(),
        prop::collection::vec(prop::sample::select(printable), 8),
        pan(),
    )
        .prop_map(
            |(shape, (stan, unix, local_time, currency), ksi, tmk, nonce, terminal, pan)| Case {
                shape,
                stan,
                unix,
                local_time,
                currency,
                ksi: ksi.try_into().unwrap(),
                tmk,
                nonce,
                terminal: terminal.try_into().unwrap(),
                pan: pan.0,
                luhn: pan.1,
            },
        )
}

/// Builds the request a terminal would send for `case`: the message, without length prefix.
fn build(case: &Case, keys: &WorkingKeys) -> Bytes {
    let mti = case.mti();
    let transmitted = case.transmitted();
    let mut out = BytesMut::new();
    let mut builder = MessageBuilder::new(&mut out, *mti.as_bytes());
    let (code, amount) = match &case.shape {
        Shape::Financial { code, amount } => (Some(*code), *amount),
        Shape::FollowUp { code, amount, .. } => (Some(*code), Some(*amount)),
        Shape::Network(_) => (None, None),
    };
    if let Some(code) = code {
        builder.field(3, code.as_bytes()).unwrap();
    }
    if let Some(amount) = amount {
        builder.digits(4, amount).unwrap();
    }
    builder.field(7, &transmitted).unwrap();
    builder.digits(11, u64::from(case.stan)).unwrap();
    if case.local_time {
        // Optional in requests and ignored (docs/protocol.md section 7).
        builder.field(12, &transmitted[4..]).unwrap();
        builder.field(13, &transmitted[..4]).unwrap();
    }
    if let Shape::FollowUp { rrn: Some(rrn), .. } = &case.shape {
        builder.field(37, rrn).unwrap();
    }
    if code.is_some() {
        builder.digits(49, u64::from(case.currency)).unwrap();
    }
    builder.field(53, &case.ksi).unwrap();
    if let Shape::Financial { .. } = case.shape {
        let aad = envelope::aad(
            *mti.as_bytes(),
            &transmitted,
            Stan::new(case.stan).unwrap(),
            &Ksi::parse(&case.ksi).unwrap(),
        );
        let mut sealed = BytesMut::new();
        envelope::seal(
            keys,
            &case.nonce,
            &aad,
            &TerminalId::parse(&case.terminal).unwrap(),
            &Pan::parse(&case.pan).unwrap(),
            &mut sealed,
        );
        builder.field(62, &sealed).unwrap();
    }
    if let Shape::Network(code) = case.shape {
        builder.field(70, code.as_bytes()).unwrap();
    }
    if let Shape::FollowUp { original, .. } = &case.shape {
        builder
            .field(90, &original_data(*original).to_digits())
            .unwrap();
    }
    builder.finish_with_mac(keys).unwrap();
    out.freeze()
}

fn original_data((mti, stan, unix): (Mti, u32, i64)) -> OriginalData {
    OriginalData {
        mti,
        stan: Stan::new(stan).unwrap(),
        transmitted: TransmissionTime::from_unix(unix).to_digits(),
    }
}

/// Frames `message`, decodes the frame, parses and validates it: the receiving side.
fn receive(message: &[u8]) -> Request {
    let mut framed = BytesMut::new();
    frame::encode(message, &mut framed).unwrap();
    let body = frame::decode(&mut framed).unwrap().unwrap();
    assert!(framed.is_empty());
    assert_eq!(&body[..], message);
    let raw = RawMessage::parse(body).unwrap();
    assert_eq!(raw.defect(), None);
    Request::from_raw(raw).unwrap()
}

fn check_fields(case: &Case, request: &Request) {
    assert_eq!(request.mti, case.mti());
    assert_eq!(request.stan.get(), case.stan);
    assert_eq!(request.transmitted_raw, case.transmitted());
    assert_eq!(request.transmitted, TransmissionTime::from_unix(case.unix));
    // Field 7 has no year: it resolves back to the same instant near its own time.
    assert_eq!(request.transmitted.resolve(case.unix), case.unix);
    assert_eq!(request.ksi.as_bytes(), &case.ksi);
    let currency = Currency::new(case.currency).unwrap();
    match (&case.shape, &request.body) {
        (Shape::Financial { code, amount }, Body::Financial(financial)) => {
            assert_eq!(&financial.code, code.as_bytes());
            assert_eq!(financial.amount.map(Amount::get), *amount);
            assert_eq!(financial.currency, currency);
        }
        (
            Shape::FollowUp {
                code,
                amount,
                rrn,
                original,
                ..
            },
            Body::Confirm(follow_up) | Body::Reversal(follow_up),
        ) => {
            assert_eq!(&follow_up.code, code.as_bytes());
            assert_eq!(follow_up.amount.get(), *amount);
            assert_eq!(follow_up.currency, currency);
            assert_eq!(follow_up.rrn.map(|r| *r.as_bytes()), *rrn);
            assert_eq!(follow_up.original, original_data(*original));
        }
        (Shape::Network(code), Body::Network(sent)) => assert_eq!(sent, code.as_bytes()),
        (shape, body) => panic!("{shape:?} read back as {body:?}"),
    }
}

fn expected_kind(case: &Case) -> Kind {
    match &case.shape {
        Shape::Financial { code, amount } if code.is_inquiry() => {
            assert_eq!(amount.unwrap_or(0), 0);
            Kind::Inquiry { code: *code }
        }
        Shape::Financial { code, amount } => Kind::Purchase {
            code: *code,
            amount: Amount::new(amount.unwrap()).unwrap(),
        },
        Shape::FollowUp { confirm: true, .. } => Kind::Confirm,
        Shape::FollowUp { confirm: false, .. } => Kind::Reversal,
        Shape::Network(code) => Kind::Network(*code),
    }
}

/// What the switch adds to a response, all random.
#[derive(Debug, Clone)]
struct Reply {
    code: ResponseCode,
    rrn: Option<u64>,
    approval: Option<[u8; 6]>,
    amounts: Option<[u64; 6]>,
    switch_time: Option<i64>,
    mac: bool,
}

fn reply() -> impl Strategy<Value = Reply> {
    (
        prop::sample::select(ResponseCode::ALL.to_vec()),
        prop::option::of(0..=999_999_999_999_u64),
        prop::option::of(alphanumeric(6)),
        prop::option::of(any::<[u64; 6]>()),
        prop::option::of(0..=UNIX_MAX),
        any::<bool>(),
    )
        .prop_map(|(code, rrn, approval, amounts, switch_time, mac)| Reply {
            code,
            rrn,
            approval: approval.map(|a| a.try_into().unwrap()),
            amounts: amounts.map(|a| a.map(|x| x % (AMOUNT_MAX + 1))),
            switch_time,
            mac,
        })
}

// ----- Valid messages: build → frame → parse → verify gives back what was built -----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn requests_round_trip(case in case()) {
        let keys = case.keys();
        let message = build(&case, &keys);
        let request = receive(&message);
        check_fields(&case, &request);
        let terminal_id = TerminalId::parse(&case.terminal).unwrap();
        let identity = request.verify(&keys, &terminal_id).unwrap();
        match (&case.shape, identity) {
            (Shape::Financial { .. }, Some(identity)) => {
                prop_assert_eq!(identity.terminal_id, terminal_id);
                prop_assert_eq!(identity.pan.expose_digits(), &case.pan[..]);
                prop_assert_eq!(identity.pan.luhn_valid(), case.luhn);
            }
            (Shape::Financial { .. }, None) => panic!("a financial request opened no envelope"),
            (_, identity) => prop_assert!(identity.is_none()),
        }
        prop_assert_eq!(request.classify().unwrap(), expected_kind(&case));
        // The same message under another terminal's keys never verifies.
        let mut other = case.tmk;
        other[0] ^= 1;
        let other = WorkingKeys::derive(&Tmk::from_bytes(other));
        prop_assert_eq!(
            request.verify(&other, &terminal_id).unwrap_err(),
            SecurityError::Mac(MacError::Mismatch)
        );
    }

    #[test]
    fn an_envelope_names_its_terminal_only(case in case(), flip in 0..8_usize) {
        let keys = case.keys();
        let message = build(&case, &keys);
        let request = receive(&message);
        let mut terminal = case.terminal;
        terminal[flip] = if terminal[flip] == b'X' { b'Y' } else { b'X' };
        let other = TerminalId::parse(&terminal).unwrap();
        let verified = request.verify(&keys, &other);
        match case.shape {
            Shape::Financial { .. } => {
                prop_assert_eq!(verified.unwrap_err(), SecurityError::OtherTerminal);
            }
            // Only 0100 and 0200 carry an envelope: nothing names a terminal in the others.
            Shape::FollowUp { .. } | Shape::Network(_) => prop_assert!(verified.is_ok()),
        }
    }

    #[test]
    fn responses_round_trip(case in case(), reply in reply()) {
        let keys = case.keys();
        let request = RawMessage::parse(build(&case, &keys)).unwrap();
        let mti = case.mti();
        let currency = Currency::new(case.currency).unwrap();
        let mut amounts = BytesMut::new();
        let purchase = reply.amounts.map(|[discount, fee, store_credit, club, bank_rest, cashback]| {
            PurchaseAmounts {
                discount: Amount::new(discount).unwrap(),
                fee: Amount::new(fee).unwrap(),
                store_credit: Amount::new(store_credit).unwrap(),
                club: Amount::new(club).unwrap(),
                bank_rest: Amount::new(bank_rest).unwrap(),
                cashback: Amount::new(cashback).unwrap(),
            }
        });
        if let Some(purchase) = &purchase {
            purchase.write(currency, &mut amounts);
            prop_assert_eq!(amounts.len(), 120);
        }
        let answer = Answer {
            code: reply.code,
            rrn: reply.rrn.map(|r| Rrn::from_number(r).unwrap()),
            approval: reply.approval.map(|a| ApprovalCode::parse(&a).unwrap()),
            amounts: purchase.is_some().then_some(&amounts[..]),
            switch_time: reply.switch_time,
        };
        let mut out = BytesMut::new();
        response::build(&mut out, mti, &request, &answer, reply.mac.then_some(&keys)).unwrap();
        let mut framed = BytesMut::new();
        frame::encode(&out, &mut framed).unwrap();
        let body = frame::decode(&mut framed).unwrap().unwrap();
        let raw = RawMessage::parse(body).unwrap();
        prop_assert_eq!(raw.defect(), None);
        let response = Response::parse(&raw, Some(&keys)).unwrap();
        prop_assert_eq!(Some(response.mti), mti.response());
        prop_assert_eq!(response.stan.get(), case.stan);
        prop_assert_eq!(response.code, reply.code);
        prop_assert_eq!(response.has_mac, reply.mac);
        let echoed_rrn = match &case.shape {
            Shape::FollowUp { rrn, .. } => *rrn,
            Shape::Financial { .. } | Shape::Network(_) => None,
        };
        let rrn = answer.rrn.map(|r| *r.as_bytes()).or(echoed_rrn);
        prop_assert_eq!(response.rrn.map(|r| *r.as_bytes()), rrn);
        prop_assert_eq!(response.approval.map(|a| *a.as_bytes()), reply.approval);
        let has_currency = !matches!(case.shape, Shape::Network(_));
        prop_assert_eq!(response.currency, has_currency.then_some(currency));
        let expected: Vec<AmountSet> = match purchase {
            Some(p) => [
                (AmountKind::Discount, p.discount),
                (AmountKind::MerchantFee, p.fee),
                (AmountKind::StoreCreditUsed, p.store_credit),
                (AmountKind::ClubUsed, p.club),
                (AmountKind::BankRest, p.bank_rest),
                (AmountKind::Cashback, p.cashback),
            ]
            .into_iter()
            .map(|(kind, amount)| AmountSet::new(kind, currency, amount))
            .collect(),
            None => Vec::new(),
        };
        prop_assert_eq!(&response.amounts, &expected);
        // Echoed fields are the request's bytes.
        for number in [3_u8, 4, 7, 11, 49, 53, 70, 90] {
            prop_assert_eq!(raw.field(number), request.field(number), "field {}", number);
        }
        if let Some(now) = reply.switch_time {
            let digits = TransmissionTime::from_unix(now).to_digits();
            prop_assert_eq!(raw.field(12), Some(&digits[4..]));
            prop_assert_eq!(raw.field(13), Some(&digits[..4]));
        }
        // A MAC'd response read with another terminal's keys is refused.
        if reply.mac {
            let mut other = case.tmk;
            other[31] ^= 0x80;
            let other = WorkingKeys::derive(&Tmk::from_bytes(other));
            prop_assert_eq!(
                Response::parse(&raw, Some(&other)).unwrap_err(),
                response::ResponseError::Mac(MacError::Mismatch)
            );
        }
    }
}

// ----- Arbitrary input: every reader returns, within its limits -----

/// One piece of a byte stream: a well-formed frame, or bytes of any kind.
#[derive(Debug, Clone)]
enum Piece {
    Frame(Vec<u8>),
    Junk(Vec<u8>),
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 1..=300).prop_map(Piece::Frame),
        1 => prop::collection::vec(any::<u8>(), 0..=8).prop_map(Piece::Junk),
    ];
    prop::collection::vec(piece, 0..=8).prop_map(|pieces| {
        let mut out = BytesMut::new();
        for piece in pieces {
            match piece {
                Piece::Frame(body) => frame::encode(&body, &mut out).unwrap(),
                Piece::Junk(bytes) => out.extend_from_slice(&bytes),
            }
        }
        out.to_vec()
    })
}

/// What a reader makes of a stream: its frames, then the error that closed it, if any.
#[derive(Debug, PartialEq)]
struct Read {
    frames: Vec<Bytes>,
    error: Option<FrameError>,
    pending: usize,
}

/// Drains every whole frame from `buf`, checking the decoder's bounds at each call.
fn drain(buf: &mut BytesMut, read: &mut Read) {
    while read.error.is_none() {
        let capacity = buf.capacity();
        let len = buf.len();
        match frame::decode(buf) {
            Ok(Some(frame)) => {
                assert!(!frame.is_empty());
                assert!(frame.len() <= FRAME_BYTES_MAX);
                read.frames.push(frame);
            }
            Ok(None) => {
                // Less than one frame is left, and the decoder reserved room for one frame
                // at most.
                assert!(buf.len() < PREFIX_BYTES + FRAME_BYTES_MAX);
                assert_eq!(buf.len(), len);
                assert!(buf.capacity() <= capacity.max(len) + PREFIX_BYTES + FRAME_BYTES_MAX);
                return;
            }
            Err(error) => {
                // A bad prefix is refused before any body is buffered or reserved.
                assert_eq!(buf.len(), len);
                assert_eq!(buf.capacity(), capacity);
                read.error = Some(error);
            }
        }
    }
}

fn read_chunked(stream: &[u8], cuts: &[usize]) -> Read {
    let mut read = Read {
        frames: Vec::new(),
        error: None,
        pending: 0,
    };
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|cut| cut % (stream.len() + 1)).collect();
    ends.push(stream.len());
    ends.sort_unstable();
    for end in ends {
        if read.error.is_some() {
            break;
        }
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        drain(&mut buf, &mut read);
    }
    read.pending = if read.error.is_some() { 0 } else { buf.len() };
    read
}

/// Runs every reader on `message`; none may panic, whatever the bytes.
fn read_everything(message: Bytes, keys: &WorkingKeys, terminal_id: &TerminalId) {
    let len = message.len();
    let raw = match RawMessage::parse(message) {
        Ok(raw) => raw,
        Err(ParseError::TooLong { len: got }) => {
            assert_eq!(got, len);
            assert!(len > MESSAGE_BYTES_MAX);
            return;
        }
        Err(_) => {
            assert!(len <= MESSAGE_BYTES_MAX);
            return;
        }
    };
    assert!(len <= MESSAGE_BYTES_MAX);
    let _ = format!("{raw:?}");
    let _ = mac::verify(keys, &raw);
    let _ = Response::parse(&raw, Some(keys));
    let _ = Response::parse(&raw, None);
    if let Ok(request) = Request::from_raw(raw) {
        let _ = request.verify(keys, terminal_id);
        let _ = request.classify();
    }
}

/// The vectors' terminal and every positive vector's message (requests and responses), read
/// once for the whole file.
struct Vectors {
    keys: WorkingKeys,
    terminal_id: TerminalId,
    messages: Vec<Vec<u8>>,
}

fn vectors() -> &'static Vectors {
    static VECTORS: OnceLock<Vectors> = OnceLock::new();
    VECTORS.get_or_init(|| {
        let vectors: Value = serde_json::from_str(include_str!("data/lsti1.json")).unwrap();
        let terminal = &vectors["terminal"];
        let tmk = hex::decode(terminal["tmk"].as_str().unwrap()).unwrap();
        let terminal_id = terminal["terminal_id"].as_str().unwrap().as_bytes();
        let messages = vectors["positive"]
            .as_array()
            .unwrap()
            .iter()
            .map(|vector| hex::decode(vector["message"].as_str().unwrap()).unwrap())
            .collect();
        Vectors {
            keys: WorkingKeys::derive(&Tmk::from_slice(&tmk).unwrap()),
            terminal_id: TerminalId::parse(terminal_id).unwrap(),
            messages,
        }
    })
}

/// Fields a request or response may carry (docs/protocol.md section 2), secondary bitmap and MACs
/// included.
const LISTED: [u8; 18] = [
    1, 3, 4, 7, 11, 12, 13, 37, 38, 39, 49, 53, 54, 62, 64, 70, 90, 128,
];

/// Bytes shaped like a message: a listed MTI, a random bitmap naming field 11 (mostly limited
/// to the listed fields), then bytes that are mostly digits, so that parsing gets past field 11
/// and validation into the later fields.
fn shaped_message() -> impl Strategy<Value = Vec<u8>> {
    let mti = prop::sample::select(Mti::ALL.to_vec());
    let body_byte = prop_oneof![4 => b'0'..=b'9', 1 => any::<u8>()];
    (
        mti,
        any::<[u8; 16]>(),
        prop::bool::weighted(0.75),
        prop::collection::vec(body_byte, 0..=400),
    )
        .prop_map(|(mti, random, listed_only, body)| {
            let mut bitmap = Bitmap::EMPTY;
            let mut listed = Bitmap::EMPTY;
            for number in LISTED {
                listed.set(number);
            }
            for number in 1..=128_u8 {
                let byte = random[usize::from((number - 1) / 8)];
                let bit = byte & (0x80 >> ((number - 1) % 8)) != 0;
                if bit && (!listed_only || listed.has(number)) {
                    bitmap.set(number);
                }
            }
            bitmap.set(11);
            if listed_only && bitmap.fields().any(|n| n > 64) {
                bitmap.set(1);
            }
            let mut out = mti.as_bytes().to_vec();
            out.extend_from_slice(&bitmap.primary_bytes());
            if bitmap.has(1) {
                out.extend_from_slice(&bitmap.secondary_bytes());
            }
            out.extend_from_slice(&body);
            out
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frame_decoder_never_panics_nor_depends_on_chunking(
        stream in stream(),
        cuts in prop::collection::vec(any::<usize>(), 0..=12),
    ) {
        let whole = read_chunked(&stream, &[]);
        let chunked = read_chunked(&stream, &cuts);
        prop_assert_eq!(&chunked, &whole);
        // Byte by byte is the worst chunking of all.
        let cuts: Vec<usize> = (0..stream.len()).collect();
        prop_assert_eq!(&read_chunked(&stream, &cuts), &whole);
    }

    #[test]
    fn frame_decoder_never_panics_on_junk(
        stream in prop::collection::vec(any::<u8>(), 0..=4200),
        cuts in prop::collection::vec(any::<usize>(), 0..=6),
    ) {
        prop_assert_eq!(read_chunked(&stream, &cuts), read_chunked(&stream, &[]));
    }

    #[test]
    fn parser_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..=4096)) {
        let v = vectors();
        read_everything(Bytes::from(bytes), &v.keys, &v.terminal_id);
    }

    #[test]
    fn parser_never_panics_on_shaped_bytes(bytes in shaped_message()) {
        let v = vectors();
        read_everything(Bytes::from(bytes), &v.keys, &v.terminal_id);
    }

    #[test]
    fn field_readers_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..=200),
        digits in prop::collection::vec(b'0'..=b'9', 0..=45),
        sets in prop::collection::vec(
            (
                prop::sample::select(vec![
                    &b"0040"[..], b"0041", b"6642", b"6543", b"0044", b"6645", b"6501", b"6502",
                    b"6601", b"6602", b"9999",
                ]),
                prop::collection::vec(prop_oneof![9 => b'0'..=b'9', 1 => any::<u8>()], 3),
                prop::sample::select(vec![b'C', b'D', b'X']),
                prop::collection::vec(prop_oneof![9 => b'0'..=b'9', 1 => any::<u8>()], 12),
            ),
            0..=7,
        ),
    ) {
        for input in [&bytes[..], &digits[..]] {
            let _ = field54::parse(input);
            let _ = OriginalData::parse(input);
            let _ = TransmissionTime::parse(input);
            if let Ok(pan) = Pan::parse(input) {
                prop_assert!((12..=19).contains(&pan.len()));
                prop_assert!(pan.expose_digits() == input);
                let _ = (pan.luhn_valid(), pan.masked(), pan.bin(), pan.last4());
            }
        }
        // Field 54 made of plausible sets, some of them wrong.
        let mut text = Vec::new();
        for (kind, currency, sign, amount) in &sets {
            text.extend_from_slice(kind);
            text.extend_from_slice(currency);
            text.push(*sign);
            text.extend_from_slice(amount);
        }
        if let Ok(parsed) = field54::parse(&text) {
            prop_assert!(parsed.len() <= field54::SETS_MAX);
            prop_assert_eq!(parsed.len() * field54::SET_BYTES, text.len());
        }
        // Field 7 and field 90 of well-formed digits: if they parse, they write back the same.
        if let Ok(time) = TransmissionTime::parse(&digits) {
            prop_assert_eq!(&time.to_digits()[..], &digits[..]);
        }
        if let Ok(original) = OriginalData::parse(&digits) {
            prop_assert_eq!(&original.to_digits()[..], &digits[..]);
        }
    }
}

// ----- Mutated vectors: never a panic, and a changed message never verifies -----

/// One edit of a message.
#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, mask: u8 },
    Insert { at: usize, byte: u8 },
    Delete { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 1..=255_u8).prop_map(|(at, mask)| Edit::Flip { at, mask }),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert { at, byte }),
        1 => any::<usize>().prop_map(|at| Edit::Delete { at }),
    ]
}

fn apply(message: &mut Vec<u8>, edit: &Edit) {
    match *edit {
        Edit::Flip { at, mask } if !message.is_empty() => {
            let at = at % message.len();
            message[at] ^= mask;
        }
        Edit::Insert { at, byte } => message.insert(at % (message.len() + 1), byte),
        Edit::Delete { at } if !message.is_empty() => {
            message.remove(at % message.len());
        }
        Edit::Flip { .. } | Edit::Delete { .. } => {}
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_vectors_never_panic_nor_verify(
        edits in prop::collection::vec(edit(), 1..=4),
    ) {
        let Vectors { keys, terminal_id, messages } = vectors();
        for original in messages.iter().cloned() {
            let mut message = original.clone();
            for edit in &edits {
                apply(&mut message, edit);
            }
            let changed = message != original;
            read_everything(Bytes::from(message.clone()), keys, terminal_id);
            if let Ok(raw) = RawMessage::parse(Bytes::from(message)) {
                let verified = mac::verify(keys, &raw);
                if changed {
                    prop_assert!(verified.is_err(), "a changed message verified");
                }
            }
        }
    }

    #[test]
    fn every_mac_covered_byte_is_covered(at in any::<usize>(), mask in 1..=255_u8) {
        let Vectors { keys, terminal_id, messages } = vectors();
        for original in messages.iter().cloned() {
            let raw = RawMessage::parse(Bytes::from(original.clone())).unwrap();
            let Ok(()) = mac::verify(keys, &raw) else {
                continue; // The response to an unknown KSI carries no MAC.
            };
            let mut message = original;
            let at = at % message.len();
            message[at] ^= mask;
            // A message that cannot be read after the change has nothing to verify.
            if let Ok(raw) = RawMessage::parse(Bytes::from(message)) {
                prop_assert!(mac::verify(keys, &raw).is_err());
                if let Ok(request) = Request::from_raw(raw) {
                    prop_assert!(request.verify(keys, terminal_id).is_err());
                }
            }
        }
    }
}

// ----- Bounds on buffering and allocation, checked on the buffers -----

#[test]
fn parser_refuses_messages_over_the_frame_cap() {
    for len in [
        MESSAGE_BYTES_MAX + 1,
        MESSAGE_BYTES_MAX + 2,
        4096,
        65_535,
        1 << 20,
    ] {
        let message = Bytes::from(vec![b'0'; len]);
        assert_eq!(
            RawMessage::parse(message).unwrap_err(),
            ParseError::TooLong { len }
        );
    }
    // A vector padded past the cap is refused on its length, not read.
    let mut padded = vectors().messages[0].clone();
    padded.resize(MESSAGE_BYTES_MAX + 1, b'0');
    assert_eq!(
        RawMessage::parse(Bytes::from(padded)).unwrap_err(),
        ParseError::TooLong {
            len: MESSAGE_BYTES_MAX + 1
        }
    );
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decoder_refuses_bad_prefixes_before_buffering(
        len in prop_oneof![Just(0_u16), (u16::try_from(FRAME_BYTES_MAX).unwrap() + 1)..=u16::MAX],
        body in prop::collection::vec(any::<u8>(), 0..=64),
    ) {
        let mut buf = BytesMut::with_capacity(PREFIX_BYTES + body.len());
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&body);
        let capacity = buf.capacity();
        let expected = if len == 0 {
            FrameError::Empty
        } else {
            FrameError::TooLong { len: usize::from(len) }
        };
        prop_assert_eq!(frame::decode(&mut buf), Err(expected));
        // Nothing consumed, nothing reserved: the caller closes the connection.
        prop_assert_eq!(buf.len(), PREFIX_BYTES + body.len());
        prop_assert_eq!(buf.capacity(), capacity);
    }

    #[test]
    fn decoder_reserves_one_frame_at_most(
        len in 1..=FRAME_BYTES_MAX,
        have in 0..=FRAME_BYTES_MAX,
    ) {
        let have = have % len; // Less than the whole body.
        let fed = PREFIX_BYTES + have;
        let mut buf = BytesMut::with_capacity(fed);
        buf.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        buf.extend_from_slice(&vec![7; have]);
        prop_assert_eq!(frame::decode(&mut buf), Ok(None));
        prop_assert_eq!(buf.len(), fed);
        // Room for the frame announced, and never more than one whole frame beyond what was fed.
        prop_assert!(buf.capacity() >= PREFIX_BYTES + len);
        prop_assert!(buf.capacity() <= fed + PREFIX_BYTES + FRAME_BYTES_MAX);
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would() {
    let mut out = BytesMut::new();
    assert_eq!(frame::encode(b"", &mut out), Err(FrameError::Empty));
    assert_eq!(
        frame::encode(&[0; FRAME_BYTES_MAX + 1], &mut out),
        Err(FrameError::TooLong {
            len: FRAME_BYTES_MAX + 1
        })
    );
    assert!(out.is_empty());
}

#[test]
fn an_envelope_of_another_version_is_refused() {
    // A first byte other than 0x01 is refused before any decryption is tried.
    let keys = &vectors().keys;
    let aad = [b'0'; envelope::AAD_BYTES];
    assert_eq!(
        envelope::open(keys, &[0x02; 48], &aad).unwrap_err(),
        EnvelopeError::Version
    );
    assert_eq!(
        envelope::open(keys, &[], &aad).unwrap_err(),
        EnvelopeError::Length { len: 0 }
    );
    assert_eq!(
        envelope::open(keys, &[0x01; 129], &aad).unwrap_err(),
        EnvelopeError::Length { len: 129 }
    );
}
