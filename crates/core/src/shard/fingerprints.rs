//! [`FingerprintSet`]: the dedup memory of a shard, 64-bit event
//! fingerprints tagged with the event-time generation that lets them expire.
//!
//! A shard holds a fingerprint for every event counted within the dedup
//! horizon, millions of them, so the layout is chosen for bytes per entry:
//! open addressing with linear probing over plain arrays (8 bytes of
//! fingerprint, 1 byte of tag, no control bytes, no per-entry time). The set
//! is split into [`PARTS`] tables by the fingerprint's top bits, and each
//! grows by a third on its own, so a resize copies 1/64 of the set (no
//! memory spike) and the load factor stays between about 0.65 and 0.875
//! instead of the 0.44–0.875 of power-of-two tables.

/// Number of independently grown tables.
const PARTS: usize = 64;
/// Bits of the fingerprint that choose the table.
const PART_BITS: u32 = PARTS.trailing_zeros();
/// A table grows when an insert would fill more than MAX_LOAD of it. At
/// 7/8 a miss probes about 30 slots, but they are adjacent (four cache
/// lines), which costs less than the memory a lower load would hold.
const MAX_LOAD: (usize, usize) = (7, 8);
/// Growth factor (as a fraction): after growing a table is 65 % full.
const GROWTH: (usize, usize) = (4, 3);
/// After a sweep a table shrinks when it is less than a quarter full.
const MIN_LOAD: (usize, usize) = (1, 4);
const MIN_CAPACITY: usize = 16;
/// Marks an empty slot; a fingerprint of 0 is stored as [`ZERO_STAND_IN`].
const EMPTY: u64 = 0;
const ZERO_STAND_IN: u64 = 1;

/// A set of 64-bit fingerprints, each with an 8-bit tag.
#[derive(Clone, Debug)]
pub(crate) struct FingerprintSet {
    parts: Vec<Table>,
}

#[derive(Clone, Debug, Default)]
struct Table {
    keys: Vec<u64>,
    tags: Vec<u8>,
    len: usize,
}

impl Default for FingerprintSet {
    fn default() -> Self {
        FingerprintSet {
            parts: vec![Table::default(); PARTS],
        }
    }
}

fn stored(fingerprint: u64) -> u64 {
    if fingerprint == EMPTY {
        ZERO_STAND_IN
    } else {
        fingerprint
    }
}

impl FingerprintSet {
    fn part(&self, key: u64) -> usize {
        (key >> (64 - PART_BITS)) as usize
    }

    /// Whether `fingerprint` is held.
    #[cfg(test)]
    pub(crate) fn contains(&self, fingerprint: u64) -> bool {
        let key = stored(fingerprint);
        self.parts[self.part(key)].find(key).is_some()
    }

    /// Adds `fingerprint` with `tag`; false (and nothing changes) if it was
    /// already held.
    pub(crate) fn insert(&mut self, fingerprint: u64, tag: u8) -> bool {
        let key = stored(fingerprint);
        let part = self.part(key);
        self.parts[part].insert(key, tag)
    }

    /// Keeps only the fingerprints whose tag `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(u8) -> bool) {
        for table in &mut self.parts {
            table.retain(&keep);
        }
    }

    /// Gives every fingerprint the same tag.
    pub(crate) fn retag_all(&mut self, tag: u8) {
        for table in &mut self.parts {
            table.tags.fill(tag);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.parts.iter().map(|t| t.len).sum()
    }

    /// Bytes of heap the set holds.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.parts.iter().map(|t| t.keys.capacity() * 9).sum()
    }

    /// Every fingerprint with its tag, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, u8)> + '_ {
        self.parts.iter().flat_map(|t| {
            t.keys
                .iter()
                .zip(&t.tags)
                .filter(|(k, _)| **k != EMPTY)
                .map(|(k, tag)| (*k, *tag))
        })
    }
}

impl Table {
    /// The slot a key would like to be in. The top bits chose the table, so
    /// the position comes from the rest (a multiply-shift range reduction,
    /// which works for any capacity).
    fn home(&self, key: u64) -> usize {
        (((key << PART_BITS) as u128 * self.keys.len() as u128) >> 64) as usize
    }

    #[cfg(test)]
    fn find(&self, key: u64) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                EMPTY => return None,
                k if k == key => return Some(i),
                _ => i = if i + 1 == self.keys.len() { 0 } else { i + 1 },
            }
        }
    }

    fn insert(&mut self, key: u64, tag: u8) -> bool {
        if (self.len + 1) * MAX_LOAD.1 > self.keys.len() * MAX_LOAD.0 {
            let grown = (self.keys.len() * GROWTH.0 / GROWTH.1).max(MIN_CAPACITY);
            self.resize(grown);
        }
        let mut i = self.home(key);
        loop {
            match self.keys[i] {
                EMPTY => {
                    self.keys[i] = key;
                    self.tags[i] = tag;
                    self.len += 1;
                    return true;
                }
                k if k == key => return false,
                _ => i = if i + 1 == self.keys.len() { 0 } else { i + 1 },
            }
        }
    }

    /// Places a key known to be absent, with room known to exist.
    fn place(&mut self, key: u64, tag: u8) {
        let mut i = self.home(key);
        while self.keys[i] != EMPTY {
            i = if i + 1 == self.keys.len() { 0 } else { i + 1 };
        }
        self.keys[i] = key;
        self.tags[i] = tag;
    }

    fn resize(&mut self, capacity: usize) {
        let keys = std::mem::replace(&mut self.keys, vec![EMPTY; capacity]);
        let tags = std::mem::replace(&mut self.tags, vec![0; capacity]);
        for (key, tag) in keys.into_iter().zip(tags) {
            if key != EMPTY {
                self.place(key, tag);
            }
        }
    }

    /// Removes the keys `keep` rejects, in place. Linear probing cannot
    /// simply blank a slot (it would cut the probe path of keys behind it),
    /// so after blanking, every remaining key is lifted and placed again,
    /// walking from a slot that was empty before the removals: no probe path
    /// crosses such a slot, so each key's path lies in the part already
    /// walked, where every key is in its final place.
    fn retain(&mut self, keep: &impl Fn(u8) -> bool) {
        let capacity = self.keys.len();
        if self.len == 0 {
            return;
        }
        let start = self
            .keys
            .iter()
            .position(|k| *k == EMPTY)
            .expect("the load factor leaves empty slots");
        let mut removed = 0;
        for i in 0..capacity {
            if self.keys[i] != EMPTY && !keep(self.tags[i]) {
                self.keys[i] = EMPTY;
                removed += 1;
            }
        }
        if removed == 0 {
            return;
        }
        self.len -= removed;
        if self.len * MIN_LOAD.1 < capacity * MIN_LOAD.0 && capacity > MIN_CAPACITY {
            let smaller = (self.len * MAX_LOAD.1 / MAX_LOAD.0 * 3 / 2).max(MIN_CAPACITY);
            self.resize(smaller);
            return;
        }
        for step in 1..=capacity {
            let i = (start + step) % capacity;
            let key = self.keys[i];
            if key != EMPTY {
                self.keys[i] = EMPTY;
                let tag = self.tags[i];
                self.place(key, tag);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A deterministic stream of well-mixed 64-bit values.
    fn mixed(seed: u64) -> impl Iterator<Item = u64> {
        crate::SplitMix64::new(seed)
    }

    #[test]
    fn behaves_like_a_map_through_growth_and_sweeps() {
        let mut set = FingerprintSet::default();
        let mut model: HashMap<u64, u8> = HashMap::new();
        // Crowd one table too, so that probe paths wrap and cluster.
        let keys: Vec<u64> = mixed(7)
            .take(60_000)
            .enumerate()
            .map(|(i, k)| if i % 3 == 0 { k >> PART_BITS } else { k })
            .chain([0, 1, u64::MAX])
            .collect();
        for (round, chunk) in keys.chunks(5_000).enumerate() {
            let tag = round as u8;
            for &k in chunk {
                let fresh = !model.contains_key(&stored(k));
                assert_eq!(set.insert(k, tag), fresh);
                model.entry(stored(k)).or_insert(tag);
            }
            if round % 3 == 2 {
                let cutoff = tag.wrapping_sub(2);
                set.retain(|t| t >= cutoff);
                model.retain(|_, t| *t >= cutoff);
            }
            assert_eq!(set.len(), model.len());
            for &k in &keys {
                assert_eq!(set.contains(k), model.contains_key(&stored(k)), "{k}");
            }
        }
        let mut held: Vec<(u64, u8)> = set.iter().collect();
        let mut expected: Vec<(u64, u8)> = model.into_iter().collect();
        held.sort_unstable();
        expected.sort_unstable();
        assert_eq!(held, expected);
    }

    #[test]
    fn stays_near_nine_bytes_an_entry() {
        let mut set = FingerprintSet::default();
        for k in mixed(1).take(1_000_000) {
            set.insert(k, 0);
        }
        let per_entry = set.heap_bytes() as f64 / set.len() as f64;
        assert!(
            (9.0..=17.0).contains(&per_entry),
            "{per_entry} bytes an entry"
        );
    }
}
