//! Goal: no message, however malformed, makes any reader of the protocol crate panic, and no
//! reader accepts a message over the frame cap.
//!
//! Method: the input is one message (the bytes after the length prefix). It goes through every
//! step a switch and a terminal apply: parse, request validation, MAC and envelope check under
//! the test vectors' terminal keys, classification, and response parsing with and without keys.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use protocol::field::MESSAGE_BYTES_MAX;
use protocol::response::Response;
use protocol::{mac, RawMessage, Request, TerminalId, Tmk, WorkingKeys};

/// The terminal of `tests/data/lsti1.json`: TMK 00 01 .. 1f, terminal id `TRM00001`, so the
/// seeds from those vectors reach the envelope and past the MAC.
fn terminal() -> &'static (WorkingKeys, TerminalId) {
    static TERMINAL: OnceLock<(WorkingKeys, TerminalId)> = OnceLock::new();
    TERMINAL.get_or_init(|| {
        let mut tmk = [0_u8; 32];
        for (byte, value) in tmk.iter_mut().zip(0_u8..) {
            *byte = value;
        }
        let keys = WorkingKeys::derive(&Tmk::from_bytes(tmk));
        let terminal_id = TerminalId::parse(b"TRM00001").expect("a valid terminal id");
        (keys, terminal_id)
    })
}

fuzz_target!(|data: &[u8]| {
    let (keys, terminal_id) = terminal();
    let Ok(raw) = RawMessage::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(data.len() <= MESSAGE_BYTES_MAX);
    let _ = mac::verify(keys, &raw);
    let _ = Response::parse(&raw, Some(keys));
    let _ = Response::parse(&raw, None);
    if let Ok(request) = Request::from_raw(raw) {
        let _ = request.verify(keys, terminal_id);
        let _ = request.classify();
    }
});
