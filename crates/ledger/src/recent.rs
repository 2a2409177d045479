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
//! Memory: the ring reserves `capacity` slots up front, which the OS backs
//! with pages only as slots are first written (measured: zero-filling the
//! whole reservation at open cost 20% of append throughput), so it grows
//! with the log up to `32 × capacity` bytes and never beyond. After a
//! restart it starts empty at the end of the recovered tree.

use std::sync::RwLock;

use tlog::Hash;

pub(crate) struct RecentHashes {
    ring: RwLock<Ring>,
}

struct Ring {
    /// Reserved for `capacity` slots on first use, filled in order, then
    /// overwritten in place: index `i` is at `(i - origin) % capacity`.
    slots: Vec<[u8; 32]>,
    capacity: u64,
    /// The index the ring (re)started at.
    origin: u64,
    /// One past the newest stored-hash index held.
    end: u64,
    /// How many indexes below `end` are held (at most `capacity`).
    held: u64,
}

impl Ring {
    fn slot(&self, i: u64) -> usize {
        ((i - self.origin) % self.capacity) as usize
    }
}

impl RecentHashes {
    /// A ring of `capacity` hashes (0 disables it), holding nothing yet.
    pub(crate) fn new(capacity: usize) -> RecentHashes {
        RecentHashes {
            ring: RwLock::new(Ring {
                slots: Vec::new(),
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
        if ring.slots.capacity() == 0 {
            // Reserved, not written: the OS maps pages as slots are filled.
            ring.slots = Vec::with_capacity(usize::try_from(ring.capacity).expect("fits"));
        }
        if base != ring.end || ring.held == 0 {
            ring.slots.clear();
            ring.origin = base;
            ring.end = base;
            ring.held = 0;
        }
        for h in hashes {
            let slot = ring.slot(ring.end);
            if slot == ring.slots.len() {
                ring.slots.push(h.0);
            } else {
                ring.slots[slot] = h.0;
            }
            ring.end += 1;
            ring.held = (ring.held + 1).min(ring.capacity);
        }
    }

    /// Fills each empty `out[k]` with the hash at `indexes[k]` if the ring
    /// holds it; leaves the other slots as they are.
    pub(crate) fn fill(&self, indexes: &[u64], out: &mut [Option<Hash>]) {
        let ring = self.ring.read().expect("recent hashes lock");
        if ring.held == 0 {
            return;
        }
        let oldest = ring.end - ring.held;
        for (&i, slot) in indexes.iter().zip(out.iter_mut()) {
            if slot.is_none() && (oldest..ring.end).contains(&i) {
                *slot = Some(Hash(ring.slots[ring.slot(i)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RecentHashes;
    use tlog::Hash;

    fn h(i: u64) -> Hash {
        tlog::leaf_hash(&i.to_be_bytes())
    }

    fn read(r: &RecentHashes, indexes: &[u64]) -> Vec<Option<Hash>> {
        let mut out = vec![None; indexes.len()];
        r.fill(indexes, &mut out);
        out
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
