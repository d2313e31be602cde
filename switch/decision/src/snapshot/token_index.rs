//! [`TokenIndex`]: the card rows by PAN token, as a flat open-addressed table of 8-byte slots.
//!
//! Why not a `HashMap<PanToken, u32>`: with a million cards that map is about 75 MB, and a
//! lookup touches its control bytes and then its 36-byte slot, two cache misses before the card
//! row is even read. Here a slot holds only a 32-bit tag of the token's hash and the row index;
//! the token itself is compared in the card row, which the caller reads next anyway. So a
//! lookup is one miss in the table (16 MB for a million cards) plus the row.
//!
//! The table is at most half full, so a probe rarely leaves the slot's cache line. Tags only
//! narrow the search: a match is confirmed by comparing the whole token.

use std::hash::BuildHasher;

use crate::domain::PanToken;
use crate::fast_hash::FastHasher;

/// One slot: a tag of the token's hash and the row index plus one (0: empty).
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    tag: u32,
    row: u32,
}

/// Card row indices by PAN token. Built once, read-only afterwards.
#[derive(Debug, Clone)]
pub(super) struct TokenIndex {
    slots: Box<[Slot]>,
    /// `slots.len() - 1` (the length is a power of two).
    mask: u64,
    /// Slots in use.
    filled: usize,
}

/// Where a token's probe starts, and its tag.
fn place(token: &PanToken) -> (u64, u32) {
    let hash = std::hash::BuildHasherDefault::<FastHasher>::default().hash_one(token);
    let tag = u32::try_from(hash >> 32).unwrap_or(u32::MAX);
    (hash, tag)
}

impl TokenIndex {
    /// An empty index with room for `rows` cards at most half full.
    pub(super) fn with_capacity(rows: usize) -> TokenIndex {
        let len = rows.saturating_mul(2).max(16).next_power_of_two();
        TokenIndex {
            slots: vec![Slot::default(); len].into_boxed_slice(),
            mask: u64::try_from(len - 1).unwrap_or(u64::MAX),
            filled: 0,
        }
    }

    fn start(&self, hash: u64) -> usize {
        usize::try_from(hash & self.mask).unwrap_or(0)
    }

    fn next(&self, at: usize) -> usize {
        usize::try_from(u64::try_from(at + 1).unwrap_or(0) & self.mask).unwrap_or(0)
    }

    /// The row of `token`; `token_at(row)` gives the token of a row already indexed.
    pub(super) fn get<'t>(
        &self,
        token: &PanToken,
        token_at: impl Fn(u32) -> Option<&'t PanToken>,
    ) -> Option<u32> {
        let (hash, tag) = place(token);
        let mut at = self.start(hash);
        // The table is never full (at most half), so an empty slot ends every probe; the count
        // bounds the loop all the same.
        for _ in 0..self.slots.len() {
            let slot = self.slots.get(at)?;
            if slot.row == 0 {
                return None;
            }
            if slot.tag == tag {
                let row = slot.row - 1;
                if token_at(row) == Some(token) {
                    return Some(row);
                }
            }
            at = self.next(at);
        }
        None
    }

    /// The first slot a lookup of `token` reads, as a word (to read it ahead of the lookup).
    pub(super) fn first_slot(&self, token: &PanToken) -> u64 {
        let (hash, _) = place(token);
        self.slots
            .get(self.start(hash))
            .map_or(0, |slot| u64::from(slot.tag) ^ u64::from(slot.row))
    }

    /// Indexes `row` under `token`. Returns false, and changes nothing, when the token is
    /// indexed already or the table is half full.
    pub(super) fn insert<'t>(
        &mut self,
        token: &PanToken,
        row: u32,
        token_at: impl Fn(u32) -> Option<&'t PanToken>,
    ) -> bool {
        let Some(stored) = row.checked_add(1) else {
            return false;
        };
        if self.filled >= self.slots.len() / 2 || self.get(token, &token_at).is_some() {
            return false;
        }
        let (hash, tag) = place(token);
        let mut at = self.start(hash);
        for _ in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(at) else {
                return false;
            };
            if slot.row == 0 {
                *slot = Slot { tag, row: stored };
                self.filled += 1;
                return true;
            }
            at = self.next(at);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::TokenIndex;
    use crate::domain::{PanToken, PanTokenKey};
    use protocol::Pan;

    fn token(n: u32) -> PanToken {
        let key = PanTokenKey::from_bytes([9; 32]);
        let pan = Pan::parse(format!("603799{n:010}").as_bytes()).unwrap();
        PanToken::compute(&key, &pan)
    }

    #[test]
    fn finds_every_row_and_nothing_else() {
        let tokens: Vec<PanToken> = (0..1000).map(token).collect();
        let at = |row: u32| tokens.get(usize::try_from(row).unwrap());
        // Sized for fewer rows than inserted: the table must refuse, not overfill.
        let mut index = TokenIndex::with_capacity(400);
        let mut stored = 0_u32;
        for (row, token) in tokens.iter().enumerate() {
            if index.insert(token, u32::try_from(row).unwrap(), at) {
                stored += 1;
            }
        }
        assert_eq!(stored, 512, "half of 1024 slots");
        let mut index = TokenIndex::with_capacity(tokens.len());
        for (row, token) in tokens.iter().enumerate() {
            assert!(index.insert(token, u32::try_from(row).unwrap(), at));
        }
        for (row, token) in tokens.iter().enumerate() {
            assert_eq!(index.get(token, at), Some(u32::try_from(row).unwrap()));
            assert!(!index.insert(token, 0, at), "a repeated token is refused");
        }
        assert_eq!(index.get(&token(5000), at), None);
    }
}
