//! [`PendingHolds`]: the pending transactions by (hold expiry in ms, id), in that order, for
//! the sweeper.
//!
//! Why not a `BTreeSet`: every approved purchase adds one, and a hold's expiry is its approval
//! time plus one fixed timeout, so nearly every new key is the largest yet. A queue takes it at
//! its end, in a cache line just written; the B-tree walked down to its last leaf and split it
//! every few inserts (a tenth of a decision's time). A key that is not the largest (the clock
//! set back, a state loaded out of order) goes to a small B-tree beside the queue. A removed
//! key is marked in place and leaves the queue when it reaches the front, so removal is a
//! binary search, as before.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use crate::engine::state::TxnId;

/// A pending hold's key: its expiry (Unix ms) and its transaction.
pub type HoldKey = (i64, TxnId);

/// The pending holds, in key order.
#[derive(Clone, Default)]
pub struct PendingHolds {
    /// Keys in ascending order, the removed ones marked.
    queue: VecDeque<Entry>,
    /// Keys smaller than the queue's last when they came.
    late: BTreeSet<HoldKey>,
    /// Keys held (not removed), in both.
    len: usize,
}

#[derive(Clone, Copy)]
struct Entry {
    key: HoldKey,
    held: bool,
}

impl PendingHolds {
    /// Adds `key`; false when it is held already.
    pub fn insert(&mut self, key: HoldKey) -> bool {
        let in_order = self.queue.back().is_none_or(|last| last.key < key);
        if in_order && !self.late.contains(&key) {
            self.queue.push_back(Entry { key, held: true });
            self.len += 1;
            return true;
        }
        if let Ok(at) = self.queue.binary_search_by_key(&key, |entry| entry.key) {
            let Some(entry) = self.queue.get_mut(at) else {
                return false;
            };
            if entry.held {
                return false;
            }
            entry.held = true;
            self.len += 1;
            return true;
        }
        let added = self.late.insert(key);
        if added {
            self.len += 1;
        }
        added
    }

    /// Removes `key`; false when it was not held.
    pub fn remove(&mut self, key: &HoldKey) -> bool {
        if let Ok(at) = self.queue.binary_search_by_key(key, |entry| entry.key) {
            let Some(entry) = self.queue.get_mut(at) else {
                return false;
            };
            if !entry.held {
                return false;
            }
            entry.held = false;
            self.len -= 1;
            while self.queue.front().is_some_and(|entry| !entry.held) {
                self.queue.pop_front();
            }
            return true;
        }
        let removed = self.late.remove(key);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Whether `key` is held.
    pub fn contains(&self, key: &HoldKey) -> bool {
        match self.queue.binary_search_by_key(key, |entry| entry.key) {
            Ok(at) => self.queue.get(at).is_some_and(|entry| entry.held),
            Err(_) => self.late.contains(key),
        }
    }

    /// The held keys in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = HoldKey> + '_ {
        let mut queued = self
            .queue
            .iter()
            .filter(|entry| entry.held)
            .map(|entry| entry.key)
            .peekable();
        let mut late = self.late.iter().copied().peekable();
        std::iter::from_fn(move || match (queued.peek(), late.peek()) {
            (Some(a), Some(b)) if b < a => late.next(),
            (Some(_), _) => queued.next(),
            (None, _) => late.next(),
        })
    }

    /// Number of held keys.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every key.
    pub fn clear(&mut self) {
        self.queue.clear();
        self.late.clear();
        self.len = 0;
    }
}

impl PartialEq for PendingHolds {
    fn eq(&self, other: &PendingHolds) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for PendingHolds {}

impl fmt::Debug for PendingHolds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any sequence of inserts and removes, keys mostly growing as the engine's do but
        /// with some set back, leaves the same held keys, in the same order, as a `BTreeSet`,
        /// and every call answers as the set's does.
        #[test]
        fn behaves_as_an_ordered_set(
            steps in proptest::collection::vec((0_u8..4, 0_i64..40, 0_i64..6), 1..300),
        ) {
            let mut holds = PendingHolds::default();
            let mut model = BTreeSet::new();
            let mut clock = 0_i64;
            let mut inserted: Vec<HoldKey> = Vec::new();
            for (action, delta, id) in steps {
                match action {
                    // The engine's case: the clock moves on, the key is new and largest.
                    0 | 1 => {
                        clock += delta;
                        let key = (clock, TxnId(id));
                        prop_assert_eq!(holds.insert(key), model.insert(key));
                        inserted.push(key);
                    }
                    // A key set back, or one seen before.
                    2 => {
                        let key = (clock - delta, TxnId(id));
                        prop_assert_eq!(holds.insert(key), model.insert(key));
                        inserted.push(key);
                    }
                    // A removal of a key inserted before (held or not), or of one never seen.
                    _ => {
                        let index = usize::try_from(delta).unwrap();
                        let key = inserted
                            .get(index % inserted.len().max(1))
                            .copied()
                            .unwrap_or((delta, TxnId(id)));
                        prop_assert_eq!(holds.remove(&key), model.remove(&key));
                    }
                }
                prop_assert_eq!(holds.len(), model.len());
                prop_assert_eq!(holds.is_empty(), model.is_empty());
                let listed: Vec<HoldKey> = holds.iter().collect();
                let expected: Vec<HoldKey> = model.iter().copied().collect();
                prop_assert_eq!(listed, expected);
            }
            for key in &inserted {
                prop_assert_eq!(holds.contains(key), model.contains(key));
            }
        }
    }

    #[test]
    fn equal_sets_compare_equal_however_they_were_built() {
        let mut a = PendingHolds::default();
        let mut b = PendingHolds::default();
        for key in [(1, TxnId(1)), (2, TxnId(2)), (3, TxnId(3))] {
            a.insert(key);
        }
        for key in [(3, TxnId(3)), (1, TxnId(1)), (2, TxnId(2)), (4, TxnId(4))] {
            b.insert(key);
        }
        assert_ne!(a, b);
        assert!(b.remove(&(4, TxnId(4))));
        assert_eq!(a, b);
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.iter().count(), 0);
    }
}
