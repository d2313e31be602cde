//! The terminal simulator: speaks LSTI-1 as a real terminal does, with its own keys, envelope
//! and MAC, sharing only the `protocol` crate with the switch over the wire.
//!
//! - [`client`]: a pipelined TCP connection that matches responses by MTI and STAN.
//! - [`fixture`]: terminals and cards read from an import file.
//! - [`load`]: the load generator.
//! - [`check`]: the conservation invariants on a database.
//! - [`network`]: a generated network in the import format.
//! - [`operator`]: a minimal client of the operator API.
//! - [`scenario`]: fault injection against a live switch, each scenario checking its claim.
//! - [`demo`]: the whole product in a minute.
//! - [`simulation`]: the engine and the store on a simulated clock, seeded, with crashes.
#![warn(missing_docs)]

pub mod check;
pub mod client;
pub mod demo;
pub mod fixture;
pub mod load;
pub mod network;
pub mod operator;
pub mod scenario;
pub mod simulation;
