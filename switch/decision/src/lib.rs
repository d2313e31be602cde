//! What a terminal's request is decided from, with no I/O (docs/design.md sections 3 to 5):
//! the compiler keeps it pure, for this crate depends on no runtime, database or HTTP crate.
//!
//! - [`domain`]: money, ids, reference-data records.
//! - [`pricing`]: discount, funding split, fee and cashback (docs/design.md section 4).
//! - [`calendar`]: working days and the occasions of the year.
//! - [`snapshot`]: the immutable in-memory reference data, swapped whole.
//! - [`admission`]: format, MAC and envelope checks of one frame.
//! - [`engine`]: the two-phase state machine: decisions and effects.
//! - [`fast_hash`]: the hash of the engine's and snapshot's maps.
//!
//! The switch (`lsw-switch`) re-exports each module under its own name, and owns everything
//! that reads a clock, a socket or a database.
#![warn(missing_docs)]

pub mod admission;
pub mod calendar;
pub mod domain;
pub mod engine;
pub mod fast_hash;
pub mod pricing;
pub mod snapshot;
