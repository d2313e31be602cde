//! The engine: pure decisions over the reference snapshot, the balances and the clock
//! (docs/design.md section 5). It returns a response's fields and a list of effects; it does no
//! I/O.
//!
//! - [`answer`]: the fields of an answer, and the response bytes built from them off the
//!   engine's task.
//! - [`balance`]: the balance operations (holds, capture, return and claw-back, lots), each
//!   checked whole before it changes anything; a failed check is a [`balance::BalanceFault`].
//! - [`decide`]: the [`Engine`] and its per-MTI rules; [`credit`]: top-ups and store-credit
//!   grants.
//! - [`coupon`]: member coupons, held, used and given back with their purchase.
//! - [`decline`]: the one mapping from a decline to its response code.
//! - [`effect`]: the effects the committer makes durable.
//! - [`pending`]: the pending holds in expiry order, for the sweeper.
//! - [`prefetch`]: reading a group's rows ahead of its decisions, so their misses overlap.
//! - [`referral`]: referral rewards, and the programme rules the engine applies.
//! - [`state`]: balances, holds, transactions, the idempotency window.
//! - [`tier`]: tiers earned by rolling 12-month activity.
//! - [`txn_table`]: transactions by id, consecutive ids side by side.

pub mod answer;
pub mod balance;
pub mod coupon;
pub mod credit;
pub mod decide;
pub mod decline;
pub mod effect;
pub mod load;
pub mod pending;
pub mod prefetch;
pub mod referral;
pub mod state;
pub mod tier;
pub mod txn_table;

pub use answer::AnswerFields;
pub use balance::BalanceFault;
pub use decide::{fingerprint, CardRef, Decision, Engine, EngineConfig, Swept};
pub use decline::Decline;
pub use effect::Effect;
pub use state::{Fingerprint, MessageKey, State, Txn, TxnId, TxnState};
