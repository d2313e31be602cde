//! The loyalty switch (DESIGN.md sections 3 to 6 and 8).
//!
//! Layout:
//! - [`domain`]: money, ids, reference-data records (pure).
//! - [`pricing`]: discount, funding split, fee and cashback (pure, DESIGN.md section 4).
//! - [`snapshot`]: the immutable in-memory reference data, swapped whole.
//! - [`import`]: the versioned JSON import file, validated into reference data.
//! - [`store`]: SQLite persistence of reference data, balances, transactions and effects.
#![warn(missing_docs)]

pub mod domain;
pub mod import;
pub mod pricing;
pub mod snapshot;
pub mod store;
