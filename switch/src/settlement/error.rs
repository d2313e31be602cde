//! The errors of the settlement library: each names the problem in words a finance operator can
//! act on.

use std::path::PathBuf;

use crate::domain::CivilDate;

use crate::calendar::{CalendarError, DayKind};
use crate::settlement::cycle::AmountError;

/// Why a settlement operation failed. Every failure leaves the database as it was.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The journal's progress could not be read.
    #[error("journal progress: {0}")]
    Ledger(#[from] crate::store::ledger::LedgerError),
    /// The calendar refused a date, or its file is wrong.
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    /// A sum overflowed.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// A journal-mode switch is running and its database has not caught up with the cutoff.
    #[error(
        "the switch's database holds its decisions only up to {projected_before} (fence at \
         {fence_held}), short of the cutoff {cutoff_at}, after waiting {waited_ms} ms; nothing \
         was closed. If the switch is not running, start it: it projects its journal on start"
    )]
    ProjectionBehind {
        /// The cycle's cutoff, local time.
        cutoff_at: String,
        /// Up to when the database holds every decision, local time.
        projected_before: String,
        /// The fence the switch holds, local time.
        fence_held: String,
        /// How long the close waited.
        waited_ms: u64,
    },
    /// No cycle closes on a weekend day or a holiday.
    #[error("{date} is not a working day ({kind}): no cycle closes on it")]
    NotWorkingDay {
        /// The date asked for.
        date: CivilDate,
        /// What it is instead.
        kind: DayKind,
    },
    /// The cutoff of the date has not passed yet.
    #[error("the cycle of {date} closes at {cutoff_at}, which is later than now ({now})")]
    NotYetDue {
        /// The date asked for.
        date: CivilDate,
        /// Its cutoff, local time.
        cutoff_at: String,
        /// The clock, local time.
        now: String,
    },
    /// The date is before the last closed cycle and was never closed itself.
    #[error(
        "{date} was never closed and is before the last closed cycle ({last}): \
         its transactions are already in later cycles"
    )]
    BeforeLastClosed {
        /// The date asked for.
        date: CivilDate,
        /// The last closed business date.
        last: CivilDate,
    },
    /// An earlier working day's cycle is still open: cycles close in date order.
    #[error("the cycle of {open} is not closed yet: close it before {date}, or use `run`")]
    EarlierOpen {
        /// The date asked for.
        date: CivilDate,
        /// The first open working day before it.
        open: CivilDate,
    },
    /// No such cycle.
    #[error("no cycle {cycle}: give a closed business date (YYYY-MM-DD) or a cycle id")]
    UnknownCycle {
        /// What was asked for.
        cycle: String,
    },
    /// No merchant has that code.
    #[error("no merchant with code {code:?}")]
    UnknownMerchant {
        /// The code asked for.
        code: String,
    },
    /// A manual adjustment was refused.
    #[error("adjustment refused: {reason}")]
    BadAdjustment {
        /// Why.
        reason: &'static str,
    },
    /// Stored settlement data contradicts itself (changed outside `lsw-settle`).
    #[error("stored settlement data is inconsistent: {what}")]
    Inconsistent {
        /// What does not add up.
        what: String,
    },
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The summary could not be serialized.
    #[error("cannot build the summary: {0}")]
    Json(#[from] serde_json::Error),
}
