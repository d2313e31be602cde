//! The hash of the engine's and the snapshot's maps: a multiply-rotate hash over 8-byte words
//! (the one rustc uses for its own tables), in place of std's SipHash.
//!
//! Why: a decision makes about a dozen lookups and inserts in maps keyed by row ids, keyed PAN
//! tokens and message keys (docs/design.md section 9 gives it 2 µs). SipHash costs 15 to 40 ns per
//! key; this costs a few.
//!
//! Why it is safe here: SipHash's keying protects a map from keys an attacker chooses to
//! collide. These maps' keys are row ids the store assigns, PAN tokens that are HMACs under
//! the switch's secret key, and message keys of requests whose MAC has already been verified
//! (so only a provisioned terminal can choose them, and it can only slow down its own keys'
//! buckets). The reference data's row ids by code (`RowIds`, a million cards and members,
//! hashed at every start) are keyed by codes only an authenticated operator or import writes.
//! Maps keyed by input that has not been authenticated keep std's hasher.

use std::collections::{HashMap as StdHashMap, HashSet as StdHashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` with [`FastHasher`].
pub type HashMap<K, V> = StdHashMap<K, V, BuildHasherDefault<FastHasher>>;
/// A `HashSet` with [`FastHasher`].
pub type HashSet<K> = StdHashSet<K, BuildHasherDefault<FastHasher>>;

/// A `HashMap` keyed by codes, with [`CodeHasher`].
pub type CodeMap<K, V> = StdHashMap<K, V, BuildHasherDefault<CodeHasher>>;

/// The multiplier: an odd 64-bit constant with well-spread bits (from rustc's `FxHasher`).
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

/// The hasher state: one word, rotated, mixed and multiplied per word written.
#[derive(Debug, Clone, Copy, Default)]
pub struct FastHasher {
    hash: u64,
}

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        words(bytes, |word| self.add(word));
    }

    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    fn write_u16(&mut self, value: u16) {
        self.add(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn write_i64(&mut self, value: i64) {
        self.add(u64::from_le_bytes(value.to_le_bytes()));
    }

    fn write_usize(&mut self, value: usize) {
        self.add(u64::try_from(value).unwrap_or(u64::MAX));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

/// [`FastHasher`] for text keys such as codes: each word's product is folded, its high half
/// into its low half. A table takes its bucket from the low bits, and a product's low bits
/// depend only on the low bits of what was multiplied: for codes like `C-0000001`, whose words
/// differ in their high bytes, [`FastHasher`] left a million codes in about a thousand
/// buckets. The fold costs a 128-bit multiply per word, so the hot path's keys (row ids,
/// tokens, message keys) keep [`FastHasher`]; the reference's row ids by code use this.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodeHasher {
    hash: u64,
}

impl Hasher for CodeHasher {
    fn write(&mut self, bytes: &[u8]) {
        words(bytes, |word| self.fold(word));
    }

    fn write_u8(&mut self, value: u8) {
        self.fold(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.fold(value);
    }

    fn write_usize(&mut self, value: usize) {
        self.fold(u64::try_from(value).unwrap_or(u64::MAX));
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

impl CodeHasher {
    fn fold(&mut self, word: u64) {
        let product = u128::from(self.hash.rotate_left(5) ^ word).wrapping_mul(u128::from(SEED));
        let [low, high] = [product, product >> 64]
            .map(|half| u64::try_from(half & u128::from(u64::MAX)).unwrap_or_default());
        self.hash = low ^ high;
    }
}

/// Each 8-byte little-endian word of `bytes`, the last one padded with zeros.
fn words(bytes: &[u8], mut each: impl FnMut(u64)) {
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0_u8; 8];
        word.copy_from_slice(chunk);
        each(u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0_u8; 8];
        for (slot, byte) in word.iter_mut().zip(rest) {
            *slot = *byte;
        }
        each(u64::from_le_bytes(word));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::FastHasher;

    fn hash_of(value: impl std::hash::Hash) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(value)
    }

    #[test]
    fn spreads_sequential_ids_and_separates_bytes() {
        // Row ids are sequential: their hashes must differ in the bits a table uses (low bits
        // for the bucket, top 7 for the control byte).
        let hashes: Vec<u64> = (1_i64..=1024).map(hash_of).collect();
        let buckets: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        assert!(
            buckets.len() > 600,
            "only {} of 1024 buckets used",
            buckets.len()
        );
        let tags: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(
            tags.len() > 100,
            "only {} of 128 control tags used",
            tags.len()
        );
        // A byte anywhere in a key, including the tail past the last whole word, changes it.
        let key = [7_u8; 13];
        for index in 0..key.len() {
            let mut other = key;
            other[index] = 8;
            assert_ne!(hash_of(key), hash_of(other), "byte {index} ignored");
        }
    }

    #[test]
    fn codes_spread_like_random_keys() {
        // Codes that differ only in a few bytes of a word spread as well as random keys would
        // (about 63 % of the buckets), at the size of the card table too.
        let hasher = BuildHasherDefault::<super::CodeHasher>::default();
        for (count, least) in [(1_usize << 10, 600), (1 << 20, 600_000)] {
            let mask = u64::try_from(count - 1).unwrap();
            let codes: std::collections::HashSet<u64> = (0..count)
                .map(|n| hasher.hash_one(format!("C-{n:07}")) & mask)
                .collect();
            assert!(codes.len() > least, "{} of {count} buckets", codes.len());
        }
    }
}
