//! LSTI-1, the terminal wire contract (docs/protocol.md), with no I/O.
//!
//! Layout:
//! - [`frame`]: the 2-byte length prefix and the 2048-byte cap; [`codec`] adapts it to
//!   `tokio_util::codec` (feature `codec`).
//! - [`spec`], [`bitmap`], [`field`], [`builder`]: the ISO 8583 field codec: a const spec table,
//!   a zero-copy parser over `Bytes` and a builder into `BytesMut`.
//! - [`field7`], [`field54`], [`field90`]: the structured fields.
//! - [`keys`], [`envelope`], [`mac`]: HKDF key derivation, the field-62 identity envelope and the
//!   truncated HMAC-SHA256 MAC.
//! - [`pan`], [`ids`], [`codes`]: validated newtypes for wire values.
//! - [`message`], [`response`]: typed requests validated against docs/protocol.md section 4 and the
//!   response builder.
//! - [`terminal`]: the terminal side: building requests as a terminal does.
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing)]

pub mod bitmap;
pub mod builder;
#[cfg(feature = "codec")]
pub mod codec;
pub mod codes;
pub mod envelope;
pub mod field;
pub mod field54;
pub mod field7;
pub mod field90;
pub mod frame;
pub mod ids;
pub mod keys;
pub mod mac;
pub mod message;
pub mod pan;
pub mod response;
pub mod spec;
pub mod terminal;

pub use codes::{Mti, NetworkCode, ProcessingCode, ResponseCode};
pub use field::RawMessage;
pub use field7::TransmissionTime;
pub use field90::OriginalData;
pub use ids::{Amount, ApprovalCode, Currency, Ksi, Rrn, Stan, TerminalId};
pub use keys::{Tmk, WorkingKeys};
pub use message::{Body, Kind, Reject, Request};
pub use pan::Pan;
