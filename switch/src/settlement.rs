//! The read side of settlement (docs/settlement.md), shared by `lsw-settle` (the settlement
//! crate, which closes cycles and writes their files) and the operator console's settlement
//! screens: the cycle arithmetic ([`cycle`]), closed cycles read back ([`store`]), the proof
//! that a cycle adds up ([`reconcile`]), the cycle's files rendered ([`files`]) and what can go
//! wrong ([`error`]).

pub mod cycle;
pub mod error;
pub mod files;
pub mod reconcile;
pub mod store;
