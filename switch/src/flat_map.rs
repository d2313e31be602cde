//! [`FlatMap`]: a hash map whose slots hold key and value together, probed linearly and kept
//! at most half full.
//!
//! Why not std's map for the engine's largest tables: they are read and written at random keys
//! (a club balance per card, a million of them; the per-member daily uses of rules), so each
//! access misses the cache. std's map keeps a control byte per slot apart from the slots: a
//! lookup reads the control group first and the slot after it, two misses in a row, and the
//! insert that follows a failed lookup writes a slot line not read yet, a third. Here the key
//! is compared in the slot: one miss, and the write after a lookup hits the line the lookup
//! brought in. At most half full, a probe seldom leaves its first slot's line; slots are
//! 32-byte aligned, so one of 32 bytes or less never straddles two lines.
//!
//! The price is memory: a slot per two entries at least, where std's map needs 8 per 7 plus a
//! control byte. For a million club balances that is 64 MB against 52 MB.
//!
//! There is no removal of single entries (the engine never removes a balance or a use count);
//! [`FlatMap::retain`] rebuilds the table.

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};

use crate::fast_hash::FastHasher;

/// Slots of a table that has any: small tables are rounded up to this.
const SLOTS_MIN: usize = 16;

/// A hash map with inline slots and linear probing (see the module doc for why).
pub struct FlatMap<K, V> {
    /// A power of two in length (or empty), never more than half full.
    slots: Box<[Slot<K, V>]>,
    /// Entries in use.
    len: usize,
    /// `64 - log2(slots.len())`: the hash's top bits pick the first slot.
    shift: u32,
}

/// One slot, aligned so that a small one never straddles two cache lines.
#[derive(Clone)]
#[repr(align(32))]
struct Slot<K, V>(Option<(K, V)>);

/// The entries of a [`FlatMap`]: [`FlatMap::iter`].
pub struct Iter<'m, K, V> {
    slots: std::slice::Iter<'m, Slot<K, V>>,
}

/// A slot found for a key: [`FlatMap::entry`].
pub struct Entry<'m, K, V> {
    map: &'m mut FlatMap<K, V>,
    at: usize,
    key: K,
}

impl<K: Hash + Eq, V> FlatMap<K, V> {
    /// An empty map that allocates nothing until the first insert.
    pub fn new() -> FlatMap<K, V> {
        FlatMap {
            slots: Box::new([]),
            len: 0,
            shift: 64,
        }
    }

    /// An empty map with room for `entries` without growing.
    pub fn with_capacity(entries: usize) -> FlatMap<K, V> {
        let mut map = FlatMap::new();
        map.reserve(entries);
        map
    }

    /// Entries in the map.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `additional` more entries without growing.
    pub fn reserve(&mut self, additional: usize) {
        let wanted = self.len.saturating_add(additional).saturating_mul(2);
        if wanted <= self.slots.len() {
            return;
        }
        let count = wanted.max(SLOTS_MIN).next_power_of_two();
        let old = std::mem::replace(&mut self.slots, empty_slots(count));
        self.shift = 64 - count.trailing_zeros();
        for Slot(entry) in old.into_vec() {
            if let Some((key, value)) = entry {
                let at = self.vacant_for(&key);
                if let Some(slot) = self.slots.get_mut(at) {
                    slot.0 = Some((key, value));
                }
            }
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &K) -> Option<&V> {
        let at = self.find(key)?;
        match self.slots.get(at) {
            Some(Slot(Some((_, value)))) => Some(value),
            _ => None,
        }
    }

    /// The value of `key`, to change it.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let at = self.find(key)?;
        match self.slots.get_mut(at) {
            Some(Slot(Some((_, value)))) => Some(value),
            _ => None,
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_some()
    }

    /// Sets the value of `key`, returning the one it replaces.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let entry = self.entry(key);
        let at = entry.at;
        let map = entry.map;
        match map.slots.get_mut(at) {
            Some(Slot(Some((_, old)))) => Some(std::mem::replace(old, value)),
            Some(slot) => {
                slot.0 = Some((entry.key, value));
                map.len += 1;
                None
            }
            None => unreachable!("an entry's slot is in the table"),
        }
    }

    /// The slot of `key`, filled or not, to fill it if it is empty.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        self.reserve(1);
        let at = self.slot_for(&key);
        Entry { map: self, at, key }
    }

    /// Removes every entry, keeping the room.
    pub fn clear(&mut self) {
        for slot in self.slots.iter_mut() {
            slot.0 = None;
        }
        self.len = 0;
    }

    /// Keeps only the entries for which `keep` is true (rebuilding the table, with its room).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let count = self.slots.len();
        let old = std::mem::replace(&mut self.slots, empty_slots(count));
        self.len = 0;
        for Slot(entry) in old.into_vec() {
            if let Some((key, mut value)) = entry {
                if keep(&key, &mut value) {
                    let at = self.vacant_for(&key);
                    if let Some(slot) = self.slots.get_mut(at) {
                        slot.0 = Some((key, value));
                        self.len += 1;
                    }
                }
            }
        }
    }

    /// Every entry, in no particular order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            slots: self.slots.iter(),
        }
    }

    /// Every key, in no particular order.
    pub fn keys(&self) -> impl Iterator<Item = &K> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.iter().map(|(_, value)| value)
    }

    /// Every value, to change them, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.slots
            .iter_mut()
            .filter_map(|slot| slot.0.as_mut().map(|(_, value)| value))
    }

    fn start(&self, key: &K) -> usize {
        let hash = BuildHasherDefault::<FastHasher>::default().hash_one(key);
        // The top bits: the hash's last step is a multiplication, which mixes upwards.
        usize::try_from(hash.checked_shr(self.shift).unwrap_or(0)).unwrap_or(0)
    }

    /// The slot holding `key`, if any.
    fn find(&self, key: &K) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let at = self.slot_for(key);
        self.slots.get(at)?.0.as_ref()?;
        Some(at)
    }

    /// The slot holding `key`, or the empty slot that ends its probe. The table is never more
    /// than half full, so a probe always meets an empty slot.
    fn slot_for(&self, key: &K) -> usize {
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = self.start(key);
        for _ in 0..self.slots.len() {
            match self.slots.get(at) {
                Some(Slot(Some((held, _)))) if held != key => at = (at + 1) & mask,
                _ => return at,
            }
        }
        unreachable!("a flat map is never full")
    }

    /// The empty slot that ends the probe of `key`, known to be absent.
    fn vacant_for(&self, key: &K) -> usize {
        let mask = self.slots.len().wrapping_sub(1);
        let mut at = self.start(key);
        for _ in 0..self.slots.len() {
            match self.slots.get(at) {
                Some(Slot(Some(_))) => at = (at + 1) & mask,
                _ => return at,
            }
        }
        unreachable!("a flat map is never full")
    }
}

impl<'m, K, V> Entry<'m, K, V> {
    /// The value, after setting it to `default` if the key had none.
    pub fn or_insert(self, default: V) -> &'m mut V {
        self.or_insert_with(|| default)
    }

    /// The value, after setting it to `make()` if the key had none.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'m mut V {
        let Entry { map, at, key } = self;
        let Some(slot) = map.slots.get_mut(at) else {
            unreachable!("an entry's slot is in the table")
        };
        if slot.0.is_none() {
            map.len += 1;
        }
        let (_, value) = slot.0.get_or_insert_with(|| (key, make()));
        value
    }
}

impl<'m, K, V: Default> Entry<'m, K, V> {
    /// The value, after setting it to the default if the key had none.
    pub fn or_default(self) -> &'m mut V {
        self.or_insert_with(V::default)
    }
}

fn empty_slots<K, V>(count: usize) -> Box<[Slot<K, V>]> {
    std::iter::repeat_with(|| Slot(None)).take(count).collect()
}

impl<K: Hash + Eq, V> Default for FlatMap<K, V> {
    fn default() -> FlatMap<K, V> {
        FlatMap::new()
    }
}

impl<K: Clone, V: Clone> Clone for FlatMap<K, V> {
    fn clone(&self) -> FlatMap<K, V> {
        FlatMap {
            slots: self.slots.clone(),
            len: self.len,
            shift: self.shift,
        }
    }
}

impl<K: Hash + Eq + fmt::Debug, V: fmt::Debug> fmt::Debug for FlatMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Maps are equal when they hold the same entries, whatever their room or order.
impl<K: Hash + Eq, V: PartialEq> PartialEq for FlatMap<K, V> {
    fn eq(&self, other: &FlatMap<K, V>) -> bool {
        self.len == other.len
            && self
                .iter()
                .all(|(key, value)| other.get(key).is_some_and(|theirs| theirs == value))
    }
}

impl<K: Hash + Eq, V: Eq> Eq for FlatMap<K, V> {}

impl<'m, K, V> Iterator for Iter<'m, K, V> {
    type Item = (&'m K, &'m V);

    fn next(&mut self) -> Option<(&'m K, &'m V)> {
        self.slots
            .find_map(|slot| slot.0.as_ref().map(|(key, value)| (key, value)))
    }
}

impl<'m, K: Hash + Eq, V> IntoIterator for &'m FlatMap<K, V> {
    type Item = (&'m K, &'m V);
    type IntoIter = Iter<'m, K, V>;

    fn into_iter(self) -> Iter<'m, K, V> {
        self.iter()
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for FlatMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> FlatMap<K, V> {
        let mut map = FlatMap::new();
        for (key, value) in entries {
            map.insert(key, value);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use super::FlatMap;

    /// Drives a flat map and std's map with the same operations and compares them after each.
    fn check(operations: &[(u64, u32)]) {
        let mut flat: FlatMap<u64, u32> = FlatMap::new();
        let mut std: HashMap<u64, u32> = HashMap::new();
        for (step, &(key, value)) in operations.iter().enumerate() {
            match step % 3 {
                0 => assert_eq!(flat.insert(key, value), std.insert(key, value)),
                1 => *flat.entry(key).or_insert(0) += value,
                _ => {
                    if let Some(old) = flat.get_mut(&key) {
                        *old = old.wrapping_mul(3);
                    }
                }
            }
            if step % 3 == 1 {
                *std.entry(key).or_insert(0) += value;
            }
            if step % 3 == 2 {
                if let Some(old) = std.get_mut(&key) {
                    *old = old.wrapping_mul(3);
                }
            }
            assert_eq!(flat.len(), std.len());
            assert!(flat.len() * 2 <= flat.slots.len());
        }
        for (key, value) in &std {
            assert_eq!(flat.get(key), Some(value));
        }
        assert_eq!(flat.iter().count(), std.len());
        assert_eq!(flat.get(&u64::MAX), std.get(&u64::MAX));
        let evens = |key: &u64| key % 2 == 0;
        flat.retain(|key, _| evens(key));
        std.retain(|key, _| evens(key));
        assert_eq!(flat.len(), std.len());
        for (key, value) in &std {
            assert_eq!(flat.get(key), Some(value));
        }
        let copy: FlatMap<u64, u32> = std.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(copy, flat);
        flat.clear();
        assert!(flat.is_empty());
        assert_eq!(flat.iter().count(), 0);
    }

    #[test]
    fn behaves_like_std_map() {
        check(&[]);
        check(&[(1, 1)]);
        let sequential: Vec<(u64, u32)> = (0..5_000).map(|i| (i / 2, 7)).collect();
        check(&sequential);
        // Keys that share their low bits, and keys that repeat, through several growths.
        let strided: Vec<(u64, u32)> = (0..5_000).map(|i| ((i % 1_500) << 20, 1)).collect();
        check(&strided);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let random: Vec<(u64, u32)> = (0..20_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 4_000, u32::try_from(seed >> 40).unwrap())
            })
            .collect();
        check(&random);
    }

    #[test]
    fn equality_ignores_room_and_order() {
        let mut small: FlatMap<u64, u32> = FlatMap::new();
        let mut large: FlatMap<u64, u32> = FlatMap::with_capacity(1_000);
        for key in 0..10 {
            small.insert(key, 1);
            large.insert(9 - key, 1);
        }
        assert_eq!(small, large);
        large.insert(3, 2);
        assert_ne!(small, large);
    }
}
