//! The loyalty switch (docs/design.md sections 3 to 6 and 8).
//!
//! Layout:
//! - [`domain`], [`pricing`], [`calendar`], [`snapshot`], [`admission`], [`engine`] and
//!   [`fast_hash`] are the `decision` crate's, re-exported: what a request is decided from,
//!   with no I/O.
//! - [`import`]: the versioned JSON import file, validated into reference data.
//! - [`store`]: SQLite persistence of reference data, balances, transactions and effects.
//! - [`huge_pages`]: 2 MiB pages for the engine's and snapshot's maps.
//! - [`committer`]: the task that owns the engine and group-commits effects.
//! - [`server`]: the TCP listener and connection tasks; [`admin`]: metrics, health and the
//!   operator API ([`api`]); [`abuse`]: abuse counted and logged as rate-limited summaries;
//!   [`keycheck`]: the key check values that catch a wrong key at start-up; [`private`]: files
//!   with secrets or card data created 0600.
//! - [`notify`]: the SMS outbox's templates and its dispatcher.
//! - [`loyalty`]: the job that issues occasion coupons and writes expiry notices.
//! - [`survey`]: SMS surveys after a purchase: their scheduler and the members' replies.
//! - [`settlement`]: settlement's cycles read back, reconciled and rendered as files, for
//!   `lsw-settle` and the console.
//! - [`app`]: wiring for `serve` and in-process use; [`config`], [`clock`], [`metrics`],
//!   [`logs`].
#![warn(missing_docs)]

pub use decision::{admission, calendar, domain, engine, fast_hash, pricing, snapshot};

pub mod abuse;
pub mod admin;
pub mod api;
pub mod app;
pub mod clock;
pub mod committer;
pub mod config;
pub mod console;
pub mod engagement;
pub mod huge_pages;
pub mod import;
pub mod journal;
pub mod keycheck;
pub mod logs;
pub mod loyalty;
pub mod metrics;
pub mod notify;
pub mod private;
pub mod server;
pub mod settlement;
pub mod store;
pub mod survey;
