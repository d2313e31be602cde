//! Reading ahead: for a group of requests about to be decided, the rows and map slots their
//! decisions will read are read first, in stages, so that their cache misses overlap instead
//! of following one another.
//!
//! Why: with a million cards a decision reads about a dozen places that are not in any cache
//! (the card's token slot, then its row, then its club balance; the merchant's row; the
//! idempotency window's and the transaction maps' slots). Each is a main-memory round trip,
//! and inside one decision most depend on the one before, so they cannot overlap there. Across
//! the requests of a batch they are independent: reading the token slots of sixteen requests
//! one after the other keeps sixteen misses in flight at once, then their card rows, then their
//! balances. This is the engine's share of a group commit (TigerBeetle's state machine
//! prefetches a batch's accounts before it executes the batch, for the same reason).
//!
//! Nothing here changes state or decides anything: [`Engine::prefetch`] only reads, and the
//! decisions that follow read everything again themselves. A stale read (a row the group's
//! earlier decisions change) costs nothing but the read. The values read are folded into one
//! word that the caller passes to [`std::hint::black_box`], so the compiler keeps the loads.

use std::hint::black_box;

use crate::admission::Admitted;
use crate::domain::{CardStatus, MerchantStatus, TerminalStatus};
use crate::engine::decide::Engine;
use crate::engine::state::{MessageKey, TxnId};
use crate::snapshot::{Keyed, Snapshot};

/// Requests read ahead together: enough misses in flight to fill the memory system's queues,
/// few enough that what the first stage read is still cached when its decision runs.
pub const GROUP: usize = 16;

/// What one pass over a group reads: each stage reads what the one before found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The card's token slot, the terminal's and the merchant's rows, and the slots the
    /// request's key (in the answered window) and its transaction id fall in.
    Slots,
    /// The card's row (its slot is cached now).
    Rows,
    /// The card's club balance (its row is cached now).
    Balances,
}

impl Stage {
    /// The stages in the order they run.
    pub const ALL: [Stage; 3] = [Stage::Slots, Stage::Rows, Stage::Balances];
}

impl Engine {
    /// Reads what [`Stage`] `stage` names for `admitted`, the `offset`th request of its group,
    /// and returns a word made of what it read (for [`black_box`]). Changes nothing.
    pub fn prefetch(
        &self,
        snapshot: &Snapshot,
        keyed: Keyed<'_>,
        admitted: &Admitted,
        offset: usize,
        stage: Stage,
    ) -> u64 {
        let request = &admitted.request;
        let card = admitted.card.as_ref();
        let state = &self.state;
        match stage {
            Stage::Slots => {
                let key = MessageKey {
                    ksi: *request.ksi.as_bytes(),
                    mti: request.mti,
                    stan: request.stan,
                    transmitted: request.transmitted_raw,
                };
                let mut word = u64::from(state.answered.contains_key(&key));
                let next = i64::try_from(offset).map_or(state.next_txn, |offset| {
                    state.next_txn.saturating_add(offset)
                });
                word ^= u64::from(state.txns.contains_key(&TxnId(next))) << 2;
                word ^= u64::from(keyed.terminal.status == TerminalStatus::Active) << 3;
                if let Some(merchant) = snapshot.merchant(keyed.terminal.merchant) {
                    // A merchant row spans several cache lines: read a field from each part
                    // the decision uses (status and currency, fee and limits, time zone,
                    // groups).
                    let profile = &merchant.profile;
                    word ^= u64::from(profile.status == MerchantStatus::Active) << 4;
                    word ^= profile.fee.rate().millionths().unsigned_abs();
                    word ^= profile.fee.fee_rials_max().get().unsigned_abs();
                    word ^= profile.amount_rials_max.get().unsigned_abs();
                    word ^= u64::from(profile.cashback_allowed) << 5;
                    word ^= u64::from(profile.utc_offset_minutes.unsigned_abs());
                    word ^= u64::from(profile.currency.get());
                    word ^= merchant
                        .groups
                        .first()
                        .map_or(0, |group| group.get().unsigned_abs());
                }
                if let Some(card) = card {
                    word ^= snapshot.card_slot(&card.token);
                }
                word
            }
            Stage::Rows => card
                .and_then(|card| snapshot.card_by_token(&card.token))
                .map_or(0, |card| {
                    let groups = card.member_groups.first();
                    u64::from(card.status == CardStatus::Blocked)
                        ^ groups.map_or(0, |group| group.get().unsigned_abs())
                }),
            Stage::Balances => card
                .and_then(|card| snapshot.card_by_token(&card.token))
                .and_then(|card| state.club.get(&card.id))
                .map_or(0, |account| account.held.get().unsigned_abs()),
        }
    }
}

/// Reads ahead for `items` (a group of at most [`GROUP`]), stage by stage; `part` gives an
/// item's snapshot, keys and request, or `None` to skip it.
pub fn read_ahead<'a, T: 'a>(
    engine: &Engine,
    items: impl Iterator<Item = &'a T> + Clone,
    part: impl Fn(&'a T) -> Option<(&'a Snapshot, Keyed<'a>, &'a Admitted)>,
) {
    for stage in Stage::ALL {
        for (offset, item) in items.clone().enumerate() {
            if let Some((snapshot, keyed, admitted)) = part(item) {
                black_box(engine.prefetch(snapshot, keyed, admitted, offset, stage));
            }
        }
    }
}
