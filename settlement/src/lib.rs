//! Settlement (docs/design.md section 7): daily cycles that pay merchants their club-balance takings
//! exactly once, with every rial explained. Run by the `lsw-settle` binary; documented in
//! docs/settlement.md.
//!
//! Layout:
//! - [`calendar`]: working days, Fridays and holidays (pure).
//! - [`cycle`]: cutoffs, amounts and the payout rule (pure).
//! - [`close`]: closing one cycle or every due one, in one transaction each.
//! - [`adjustment`]: the finance team's manual adjustments.
//! - [`store`]: reading cycles back; [`files`]: the payout, summary and exceptions files.
//! - [`reconcile`]: the proof that a cycle adds up; [`error`]: what can go wrong.
//!
//! The cycle arithmetic, reading, reconciliation, file rendering and errors live in the switch
//! crate ([`switch::settlement`]), so the switch's operator console shows cycles,
//! reconciliations and files exactly as this tool does; they are re-exported here under
//! their old names.
#![warn(missing_docs)]

pub mod adjustment;
pub use switch::calendar;
pub mod close;
pub mod files;
pub use switch::settlement::{cycle, error, reconcile, store};

pub use calendar::{Calendar, CalendarError, DayKind};
pub use close::{close, run, Closed, Settings};
pub use cycle::{Amounts, Cutoff};
pub use error::SettleError;
pub use reconcile::{reconcile, Reconciliation};
pub use store::{load_cycle, CycleRecord, CycleRef};
