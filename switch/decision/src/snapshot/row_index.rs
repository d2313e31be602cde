//! [`RowIndex`]: positions in a snapshot vector by row id.
//!
//! Row ids are the store's sequential integer keys, so they are nearly dense: a vector indexed
//! by the id finds a position with one load, where a hash map reads its control bytes and then
//! its slot (two cache misses when cold). Ids far beyond the number of rows (an id over
//! twice the rows plus 1024, or below zero) go to a map instead, so a stray large id cannot
//! make the vector huge.

use crate::fast_hash::HashMap;

/// Positions by row id.
#[derive(Debug, Clone)]
pub(super) struct RowIndex {
    /// Position plus one, by id (0: none).
    dense: Vec<u32>,
    /// Ids the vector does not cover.
    sparse: HashMap<i64, u32>,
    /// Ids below this go to `dense`.
    limit: usize,
}

impl RowIndex {
    /// An empty index for about `rows` rows.
    pub(super) fn with_rows(rows: usize) -> RowIndex {
        RowIndex {
            dense: Vec::new(),
            sparse: HashMap::default(),
            limit: rows.saturating_mul(2).saturating_add(1024),
        }
    }

    fn dense_slot(&self, id: i64) -> Option<usize> {
        usize::try_from(id).ok().filter(|slot| *slot < self.limit)
    }

    /// The position of `id`.
    pub(super) fn get(&self, id: i64) -> Option<u32> {
        match self.dense_slot(id) {
            Some(slot) => self
                .dense
                .get(slot)
                .and_then(|stored| stored.checked_sub(1)),
            None => self.sparse.get(&id).copied(),
        }
    }

    /// Records `position` for `id`; false, and nothing changed, when `id` has one already.
    pub(super) fn insert(&mut self, id: i64, position: u32) -> bool {
        if self.get(id).is_some() {
            return false;
        }
        let Some(stored) = position.checked_add(1) else {
            return false;
        };
        match self.dense_slot(id) {
            Some(slot) => {
                if self.dense.len() <= slot {
                    self.dense.resize(slot + 1, 0);
                }
                match self.dense.get_mut(slot) {
                    Some(entry) => *entry = stored,
                    None => return false,
                }
            }
            None => {
                self.sparse.insert(id, position);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::RowIndex;

    #[test]
    fn dense_and_sparse_ids() {
        let mut index = RowIndex::with_rows(10);
        for (position, id) in [1_i64, 2, 7, 0, 1_000_000, -5, 1043, 1044]
            .iter()
            .enumerate()
        {
            assert!(index.insert(*id, u32::try_from(position).unwrap_or(0)));
        }
        assert_eq!(index.get(1), Some(0));
        assert_eq!(index.get(7), Some(2));
        assert_eq!(index.get(0), Some(3));
        assert_eq!(index.get(1_000_000), Some(4));
        assert_eq!(index.get(-5), Some(5));
        assert_eq!(index.get(1043), Some(6));
        assert_eq!(index.get(1044), Some(7));
        assert_eq!(index.get(3), None);
        assert_eq!(index.get(5_000), None);
        assert!(!index.insert(7, 9), "a repeated id is refused");
        assert!(
            !index.insert(1_000_000, 9),
            "a repeated sparse id is refused"
        );
        assert_eq!(index.get(7), Some(2));
        assert!(index.dense.len() <= 1044, "the vector stops at the limit");
    }
}
