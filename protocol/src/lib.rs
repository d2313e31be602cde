//! LSTI-1, the terminal wire contract (PROTOCOL.md), with no I/O.
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
//! - [`message`], [`response`]: typed requests validated against PROTOCOL.md section 4 and the
//!   response builder.
#![deny(missing_docs)]
#![deny(clippy::indexing_slicing)]

pub mod keys;
pub mod pan;

pub use keys::{Tmk, WorkingKeys};
pub use pan::Pan;
