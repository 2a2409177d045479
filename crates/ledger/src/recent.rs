//! The most recent stored hashes, kept in memory as they are written.
//!
//! The stored-hash layout is append-only and contiguous (a batch adds the
//! indexes `[stored_hash_count(old), stored_hash_count(new))`), so the newest
//! hashes fit a ring indexed by stored-hash index: slot `i % capacity`, one
//! 32-byte hash per slot, no per-entry overhead. While the log has fewer than
//! about `capacity / 2` leaves, every proof is computed from memory; beyond
//! that, proofs of recent leaves are (those a decision's caller and its
//! auditors ask for first) and older ones read the rest from RocksDB.
//!
//! Memory: the ring is one anonymous mapping of `32 × capacity` bytes,
//! reserved when the first hash arrives, which the OS backs with pages only
//! as slots are first written (measured: zero-filling the whole reservation
//! at open cost 20% of append throughput), so it grows with the log up to
//! that size and never beyond. The mapping asks for transparent huge pages:
//! a proof reads ~2·log2(n) slots at random, and with 4 KiB pages each one
//! costs a TLB miss and a page walk. After a restart it starts empty at the
//! end of the recovered tree.

use std::sync::RwLock;

use memmap2::MmapMut;
use tlog::Hash;

/// The newest stored hashes, by stored-hash index.
pub(crate) struct RecentHashes {
    ring: RwLock<Ring>,
}

struct Ring {
    /// `capacity` slots of 32 bytes; `None` until the first hash (or when
    /// `capacity` is zero or the mapping failed: then nothing is held).
    slots: Option<MmapMut>,
    capacity: u64,
    /// The index the ring (re)started at: index `i` is in slot
    /// `(i - origin) % capacity`.
    origin: u64,
    /// One past the newest stored-hash index held.
    end: u64,
    /// How many indexes below `end` are held (at most `capacity`).
    held: u64,
}

impl Ring {
    /// The byte offset of index `i`'s slot (below `32 × capacity`, which
    /// fits a usize: the mapping exists).
    fn slot(&self, i: u64) -> usize {
        let at = i - self.origin;
        // A division (tens of cycles, per hash of every proof) only once the
        // ring has wrapped.
        let at = if at < self.capacity {
            at
        } else {
            at % self.capacity
        };
        at as usize * 32
    }
}

impl RecentHashes {
    /// A ring of `capacity` hashes (0 disables it), holding nothing yet.
    pub(crate) fn new(capacity: usize) -> RecentHashes {
        RecentHashes {
            ring: RwLock::new(Ring {
                slots: None,
                capacity: capacity as u64,
                origin: 0,
                end: 0,
                held: 0,
            }),
        }
    }

    /// Records the hashes stored at `base..base + hashes.len()`, which must
    /// be durable. If `base` does not continue what is held (a batch failed
    /// and the state was recovered in between), the ring starts over at `base`.
    pub(crate) fn extend(&self, base: u64, hashes: &[Hash]) {
        let mut ring = self.ring.write().expect("recent hashes lock");
        if ring.capacity == 0 {
            return;
        }
        if ring.slots.is_none() {
            let Some(map) = map(ring.capacity) else {
                // No memory for the ring: hold nothing, read from RocksDB.
                ring.capacity = 0;
                return;
            };
            ring.slots = Some(map);
        }
        if base != ring.end || ring.held == 0 {
            ring.origin = base;
            ring.end = base;
            ring.held = 0;
        }
        for h in hashes {
            let at = ring.slot(ring.end);
            ring.slots.as_mut().expect("mapped above")[at..at + 32].copy_from_slice(&h.0);
            ring.end += 1;
            ring.held = (ring.held + 1).min(ring.capacity);
        }
    }

    /// Sets `out[k]` to the hash at `indexes[k]` for each position `k` the
    /// ring holds, and appends every other position to `missing`.
    pub(crate) fn fill(&self, indexes: &[u64], out: &mut [Hash], missing: &mut Vec<usize>) {
        let ring = self.ring.read().expect("recent hashes lock");
        let slots = ring.slots.as_ref().filter(|_| ring.held > 0);
        let oldest = ring.end - ring.held;
        if let Some(slots) = slots {
            // Touch every slot first: independent loads that the CPU keeps in
            // flight together, so a proof's cache misses overlap instead of
            // each waiting behind the previous copy.
            let mut touched = 0u8;
            for &i in indexes {
                if (oldest..ring.end).contains(&i) {
                    touched ^= slots[ring.slot(i)];
                }
            }
            std::hint::black_box(touched);
        }
        for (k, (&i, h)) in indexes.iter().zip(out.iter_mut()).enumerate() {
            match slots {
                Some(slots) if (oldest..ring.end).contains(&i) => {
                    let at = ring.slot(i);
                    h.0.copy_from_slice(&slots[at..at + 32]);
                }
                _ => missing.push(k),
            }
        }
    }
}

/// An anonymous mapping for `capacity` slots, asking for huge pages.
fn map(capacity: u64) -> Option<MmapMut> {
    let len = usize::try_from(capacity.checked_mul(32)?).ok()?;
    let map = MmapMut::map_anon(len).ok()?;
    #[cfg(target_os = "linux")]
    {
        // Only a hint: without transparent huge pages it stays 4 KiB pages.
        let _ = map.advise(memmap2::Advice::HugePage);
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::RecentHashes;
    use tlog::Hash;

    fn h(i: u64) -> Hash {
        tlog::leaf_hash(&i.to_be_bytes())
    }

    fn read(r: &RecentHashes, indexes: &[u64]) -> Vec<Option<Hash>> {
        let mut out = vec![Hash([0; 32]); indexes.len()];
        let mut missing = Vec::new();
        r.fill(indexes, &mut out, &mut missing);
        out.into_iter()
            .enumerate()
            .map(|(k, h)| (!missing.contains(&k)).then_some(h))
            .collect()
    }

    #[test]
    fn holds_exactly_the_newest_capacity_hashes() {
        let r = RecentHashes::new(8);
        assert_eq!(read(&r, &[0]), vec![None]);
        r.extend(0, &(0..5).map(h).collect::<Vec<_>>());
        assert_eq!(read(&r, &[0, 4, 5]), vec![Some(h(0)), Some(h(4)), None]);
        // Wrapping around: 0..=4 are overwritten by 8..=12.
        r.extend(5, &(5..13).map(h).collect::<Vec<_>>());
        let all: Vec<u64> = (0..14).collect();
        let want: Vec<Option<Hash>> = (0..14)
            .map(|i| (5..13).contains(&i).then(|| h(i)))
            .collect();
        assert_eq!(read(&r, &all), want);
    }

    #[test]
    fn a_gap_starts_over_and_zero_capacity_holds_nothing() {
        let r = RecentHashes::new(8);
        r.extend(0, &[h(0), h(1)]);
        r.extend(10, &[h(10)]);
        assert_eq!(read(&r, &[0, 1, 10]), vec![None, None, Some(h(10))]);
        let off = RecentHashes::new(0);
        off.extend(0, &[h(0)]);
        assert_eq!(read(&off, &[0]), vec![None]);
    }
}
