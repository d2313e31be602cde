//! Shared fixtures of the criterion benchmarks under `benches/benches/`.
//!
//! Layout:
//! - this file: the frozen LSTI-1 vectors (`parse_mac_open_0100`).
//! - [`network`]: a seeded synthetic network of any size, in memory (`engine_decide_1m_cards`,
//!   `committer_throughput`).
//! - [`traffic`]: a seeded stream of purchases over such a network.
//! - [`memory`]: the process's resident memory.
//!
//! The vectors are the frozen LSTI-1 ones of `protocol/tests/data/lsti1.json` (the bytes an
//! independent terminal produced), compiled into the binary, so every run measures the same
//! message and a bench can never drift from the vectors the codec is tested against. Reading
//! them happens once, outside any timed loop.
// A fixture that does not decode, or a generated record a constructor refuses, is a broken
// build input, not an operating error: failing at once, before any measurement, is right.
#![allow(clippy::expect_used)]

pub mod memory;
pub mod network;
pub mod traffic;

use bytes::Bytes;
use protocol::{Ksi, TerminalId, Tmk, WorkingKeys};
use serde_json::Value;

/// The vector file, as the protocol crate's tests read it.
const VECTORS: &str = include_str!("../../protocol/tests/data/lsti1.json");

/// The vector every `parse_mac_open_0100` measurement uses: a 0100 bank-card purchase with a
/// 16-digit PAN in its envelope (the most common message on the wire).
pub const PURCHASE_0100: &str = "purchase_bank_000000";

/// One request vector and the terminal it comes from.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The message: MTI to MAC, without the length prefix.
    pub message: Bytes,
    /// The message with its 2-byte length prefix, as it arrives on the socket.
    pub framed: Bytes,
    /// The terminal's working keys (derived once: the switch caches them per KSI).
    pub keys: WorkingKeys,
    /// The terminal id bound to the KSI.
    pub terminal_id: TerminalId,
    /// Field 53.
    pub ksi: Ksi,
}

/// The fixture of the positive vector named `name`.
///
/// # Panics
/// When the vector file has no such vector or is malformed (a broken build input).
pub fn fixture(name: &str) -> Fixture {
    let vectors: Value = serde_json::from_str(VECTORS).expect("vector file is json");
    let terminal = &vectors["terminal"];
    let text = |value: &Value| value.as_str().expect("vector value is a string").to_owned();
    let tmk = hex::decode(text(&terminal["tmk"])).expect("tmk is hex");
    let tmk = Tmk::from_slice(&tmk).expect("tmk is 32 bytes");
    let terminal_id =
        TerminalId::parse(text(&terminal["terminal_id"]).as_bytes()).expect("terminal id");
    let ksi = Ksi::parse(text(&terminal["ksi"]).as_bytes()).expect("ksi");
    let vector = vectors["positive"]
        .as_array()
        .expect("positive vectors")
        .iter()
        .find(|vector| vector["name"] == name)
        .expect("vector is present");
    let message = hex::decode(text(&vector["message"])).expect("message is hex");
    let framed = hex::decode(text(&vector["framed"])).expect("framed is hex");
    Fixture {
        message: Bytes::from(message),
        framed: Bytes::from(framed),
        keys: WorkingKeys::derive(&tmk),
        terminal_id,
        ksi,
    }
}
