//! The loyalty switch (docs/design.md sections 3 to 6 and 8).
//!
//! Layout:
//! - [`domain`]: money, ids, reference-data records (pure).
//! - [`pricing`]: discount, funding split, fee and cashback (pure, docs/design.md section 4).
//! - [`snapshot`]: the immutable in-memory reference data, swapped whole.
//! - [`import`]: the versioned JSON import file, validated into reference data.
//! - [`store`]: SQLite persistence of reference data, balances, transactions and effects.
//! - [`engine`]: the two-phase state machine (pure): decisions and effects.
//! - [`fast_hash`]: the hash of the engine's and snapshot's maps; [`huge_pages`]: 2 MiB pages
//!   for them.
//! - [`committer`]: the task that owns the engine and group-commits effects.
//! - [`admission`]: format, MAC and envelope checks of one frame (pure).
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

pub mod abuse;
pub mod admin;
pub mod admission;
pub mod api;
pub mod app;
pub mod calendar;
pub mod clock;
pub mod committer;
pub mod config;
pub mod console;
pub mod domain;
pub mod engagement;
pub mod engine;
pub mod fast_hash;
pub mod huge_pages;
pub mod import;
pub mod journal;
pub mod keycheck;
pub mod logs;
pub mod loyalty;
pub mod metrics;
pub mod notify;
pub mod pricing;
pub mod private;
pub mod server;
pub mod settlement;
pub mod snapshot;
pub mod store;
pub mod survey;
