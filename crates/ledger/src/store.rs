//! The storage seam under the sequencer, and what sits above any store.
//!
//! A backend implements three narrow traits: [`LogStore`] — point reads of
//! stored hashes, entries, the two indexes and checkpoints (and the scans a
//! copy needs); an atomic insert of a prepared [`Batch`] (plain data); a
//! sync that makes every earlier insert durable; [`StateStore`] — the small
//! key-value space of state that is not the log (`state.rs`); and, only a
//! store other writers share, [`Coordination`] — the head's turn, leases,
//! named locks — reached through [`LogStore::coordination`]. RocksDB
//! (`rocks.rs`) and PostgreSQL (`pg.rs`, with coordination) implement them.
//!
//! [`Store`] holds a backend with the in-memory hash caches above it (the
//! ring of recent hashes and the upper-level cache, both filled only with
//! durable hashes), and recovery, which is the same code for every backend.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use note::{Checkpoint, Note, SignerKey};
use tlog::{Hash, HashReader, ReadError};

use crate::recent::RecentHashes;
use crate::{Error, SignedCheckpoint};

/// An idempotency record: the leaf an idempotency key was first used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub(crate) index: u64,
    pub(crate) leaf_hash: Hash,
}

/// One new leaf of a batch.
pub(crate) struct NewLeaf {
    /// The entry bytes.
    pub(crate) leaf: Vec<u8>,
    /// Its RFC 9162 leaf hash.
    pub(crate) leaf_hash: Hash,
    /// The idempotency key it was appended under.
    pub(crate) key: Vec<u8>,
}

/// Everything one commit writes, as plain data: the new leaves (entries,
/// idempotency records), the new stored hashes and the
/// signed checkpoint of the new size. A backend writes all of it or none.
pub(crate) struct Batch {
    /// Tree size before the batch: the index of the first new leaf.
    pub(crate) old_size: u64,
    /// The new leaves, in index order.
    pub(crate) leaves: Vec<NewLeaf>,
    /// The new stored hashes, from `tlog::stored_hash_count(old_size)` on.
    pub(crate) hashes: Arc<[Hash]>,
    /// The signed checkpoint note of size `old_size + leaves.len()`.
    pub(crate) checkpoint: String,
}

impl Batch {
    /// The tree size after the batch.
    pub(crate) fn new_size(&self) -> u64 {
        self.old_size + self.leaves.len() as u64
    }
}

/// Key-value pairs of state, in key order.
pub(crate) type StatePairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A log backend. Reads see every insert that returned; nothing is durable
/// before a [`LogStore::sync`] that started after the insert returned.
/// Inserts come from one thread, in order, so a backend whose writes reach
/// the disk in order holds a prefix of the batches after a crash.
pub(crate) trait LogStore: Send + Sync {
    /// The stored hashes at `indexes`, one per index, in order; a missing
    /// one is an error.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error>;
    /// `count` entries from `start`; all must exist.
    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error>;
    /// Whether entry `index` is stored.
    fn has_entry(&self, index: u64) -> Result<bool, Error>;
    /// Whether stored hash `index` is stored.
    fn has_hash(&self, index: u64) -> Result<bool, Error>;
    /// The idempotency records of `keys`, one answer per key, in order.
    fn idempotency(&self, keys: &[&[u8]]) -> Result<Vec<Option<IdempotencyRecord>>, Error>;
    /// Every idempotency record, with its key (copying the log elsewhere).
    fn idempotency_records(&self) -> Result<Vec<(Vec<u8>, IdempotencyRecord)>, Error>;
    /// The checkpoint note stored for tree size `size`.
    fn checkpoint(&self, size: u64) -> Result<Option<String>, Error>;
    /// The stored checkpoint with the largest size.
    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error>;
    /// Up to `limit` stored checkpoints of size `from` or more, by size
    /// (copying the log elsewhere).
    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, Error>;
    /// Writes a batch atomically: all of it or none of it. Readable when
    /// this returns; durable after the next [`LogStore::sync`].
    fn insert(&self, batch: &Batch) -> Result<(), Error>;
    /// Makes every insert that returned before this call durable.
    fn sync(&self) -> Result<(), Error>;
    /// How the writers of a store other writers share (PostgreSQL) take
    /// turns; `None` on a store of one writer, which has nothing to share.
    fn coordination(&self) -> Option<&dyn Coordination> {
        None
    }
    /// Whether other writers may append to the same store at the same time
    /// (it has [`LogStore::coordination`]). Recovery then does not require
    /// that nothing is stored beyond the last checkpoint it read: another
    /// writer's batch, committed with its own checkpoint, may have landed
    /// since.
    fn shared(&self) -> bool {
        self.coordination().is_some()
    }
}

/// The writers of one shared store taking turns: the log's head for each
/// batch, leases for duties one of them performs, and named locks.
pub(crate) trait Coordination: Send + Sync {
    /// Waits until this writer holds the log's head (see [`Turn`]).
    fn turn(&self) -> Result<Box<dyn Turn>, Error>;
    /// Takes or renews the lease `name` for `holder` for `ttl` (a duty one
    /// writer at a time performs, such as pushing checkpoints to witnesses):
    /// true if `holder` holds it now. A lease its holder stops renewing
    /// passes to the next writer that asks once `ttl` is over.
    fn lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool, Error>;
    /// Waits until this writer holds the lock named `name` across all of
    /// them, and holds it until the returned guard is dropped.
    fn hold(&self, name: &[u8]) -> Result<Box<dyn Send>, Error>;
}

/// The small key-value space beside the log, in the same backend (see
/// `state.rs`, which namespaces it).
pub(crate) trait StateStore: Send + Sync {
    /// A state value.
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error>;
    /// Writes state values atomically and durably.
    fn state_put(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), Error>;
    /// Every state pair whose key starts with `prefix`, in key order.
    fn state_scan(&self, prefix: &[u8]) -> Result<StatePairs, Error>;
    /// Deletes a state value durably and as far as the backend can, so
    /// its bytes are gone from its files, not only unreachable (erasure of
    /// personal data).
    fn state_erase(&self, key: &[u8]) -> Result<(), Error>;
    /// Compare-and-swap of one state value, durably: writes `new` only if
    /// the value is `expected` (`None`: absent); whether it wrote. The
    /// default reads then writes, which is atomic only where one process
    /// owns the store and its writers are serialized (`State` holds its
    /// lock); a store other processes share must override it.
    fn state_swap(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Error> {
        if self.state_get(key)?.as_deref() != expected {
            return Ok(false);
        }
        self.state_put(&[(key, new)])?;
        Ok(true)
    }
}

/// A whole backend: the log and the state beside it.
pub(crate) trait Backend: LogStore + StateStore {}

impl<T: LogStore + StateStore> Backend for T {}

/// The head of a log other writers share, held by one writer for one batch:
/// nobody else appends until the batch is written or the turn is dropped
/// (PostgreSQL: the head row locked by the batch's open transaction). So a
/// batch prepared on [`Turn::head`] can never race another writer's.
pub(crate) trait Turn: Send {
    /// The tree size at the head.
    fn head(&self) -> u64;
    /// Writes `batch` (prepared on [`Turn::head`]) atomically, with the
    /// head moved to its new size, and gives the head up.
    fn insert(self: Box<Self>, batch: &Batch) -> Result<(), Error>;
}

/// Stored hashes at this level and above (perfect subtrees of at least 256
/// leaves: the C2SP tile rows above the first) are kept in memory once written
/// or read.
/// Every proof path runs through them, so a proof costs about eight store
/// reads whatever the size of the log, instead of one per level.
pub(crate) const UPPER_LEVEL: u8 = 8;

/// At most this many upper hashes are kept: 7/8 of 2^20, so the map stays
/// at 2^20 buckets of 41 bytes (≈ 43 MB). A log of n leaves has about n/128
/// upper hashes, so all of them are kept up to ~117M leaves; beyond that the
/// rest are read from the store as before.
pub(crate) const UPPER_CAPACITY: usize = 7 << 17;

/// The upper-level cache. Stored hashes never change once durable, and only
/// durable hashes (made so by this process, or read back from the store)
/// enter it, so it is never stale.
pub(crate) struct UpperCache {
    capacity: usize,
    map: RwLock<HashMap<u64, Hash>>,
}

impl UpperCache {
    pub(crate) fn new(capacity: usize) -> UpperCache {
        UpperCache {
            capacity,
            map: RwLock::new(HashMap::new()),
        }
    }

    fn insert(&self, found: impl IntoIterator<Item = (u64, Hash)>) {
        let mut found = found
            .into_iter()
            .filter(|&(i, _)| tlog::split_stored_hash_index(i).0 >= UPPER_LEVEL)
            .peekable();
        if found.peek().is_none() {
            return;
        }
        let mut map = self.map.write().expect("upper cache lock");
        for (i, h) in found {
            if map.len() >= self.capacity {
                break;
            }
            map.insert(i, h);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.read().expect("upper cache lock").len()
    }
}

/// Stored hashes: the most recent and the upper levels from memory, the
/// rest from the backend.
pub(crate) struct CachedHashes<'a> {
    pub(crate) store: &'a dyn LogStore,
    pub(crate) upper: &'a UpperCache,
    pub(crate) recent: &'a RecentHashes,
}

impl HashReader for CachedHashes<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        // The ring first: one range check per index. (Asking the upper-level
        // map first, which stays in the CPU's caches, was measured slower:
        // 10M leaves 4.1 µs a proof against 2.9 µs, 1M 4.1 against 1.8.)
        let mut out = vec![Hash([0; 32]); indexes.len()];
        // Positions in `indexes` not filled yet.
        let mut missing = Vec::new();
        self.recent.fill(indexes, &mut out, &mut missing);
        if missing.is_empty() {
            return Ok(out);
        }
        {
            let map = self.upper.map.read().expect("upper cache lock");
            missing.retain(|&k| match map.get(&indexes[k]) {
                Some(h) => {
                    out[k] = *h;
                    false
                }
                None => true,
            });
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let wanted: Vec<u64> = missing.iter().map(|&k| indexes[k]).collect();
        let found = self
            .store
            .read_hashes(&wanted)
            .map_err(|e| ReadError::from(e.to_string()))?;
        if found.len() != wanted.len() {
            return Err("the store answered short".into());
        }
        for (&k, h) in missing.iter().zip(&found) {
            out[k] = *h;
        }
        self.upper.insert(wanted.into_iter().zip(found));
        Ok(out)
    }
}

/// A backend with the hash caches above it.
pub(crate) struct Store {
    backend: Arc<dyn LogStore>,
    upper: UpperCache,
    recent: RecentHashes,
}

impl Store {
    /// `backend`, keeping the newest `recent_hashes` stored hashes in memory
    /// as they become durable ([`Store::remember`]).
    pub(crate) fn new(backend: Arc<dyn LogStore>, recent_hashes: usize) -> Store {
        Store {
            backend,
            upper: UpperCache::new(UPPER_CAPACITY),
            recent: RecentHashes::new(recent_hashes),
        }
    }

    pub(crate) fn backend(&self) -> &Arc<dyn LogStore> {
        &self.backend
    }

    pub(crate) fn hashes(&self) -> CachedHashes<'_> {
        CachedHashes {
            store: &*self.backend,
            upper: &self.upper,
            recent: &self.recent,
        }
    }

    /// Keeps hashes just made durable (stored at `base..`) in memory: all of
    /// them in the ring of recent hashes, the upper levels in their cache.
    pub(crate) fn remember(&self, base: u64, hashes: &[Hash]) {
        self.recent.extend(base, hashes);
        self.upper.insert((base..).zip(hashes.iter().copied()));
    }

    /// Recovery, run by every open: the same code path for a clean start and
    /// after a crash, whatever the backend. The state is the last checkpoint
    /// written (each batch writes its checkpoint atomically with its data),
    /// and it must be self-consistent:
    /// - the checkpoint verifies with `key` and names `key`'s origin;
    /// - the root recomputed from stored hashes equals the checkpoint's root;
    /// - nothing is stored beyond it (no entry `size`, no hash past the layout).
    ///
    /// An empty store gets a signed checkpoint of the empty tree, so the log
    /// always has a latest checkpoint.
    pub(crate) fn recover(&self, key: &SignerKey) -> Result<SignedCheckpoint, Error> {
        let b = &*self.backend;
        let origin = key.verifier().name();
        let Some((size, text)) = b.last_checkpoint()? else {
            if b.has_entry(0)? || b.has_hash(0)? {
                return Err(Error::Corrupt(
                    "entries are stored but no checkpoint is".into(),
                ));
            }
            let checkpoint = Checkpoint::new(origin, 0, tlog::EMPTY_ROOT);
            let note = note::sign_checkpoint(&checkpoint, key)?.to_text();
            let first = b.insert(&Batch {
                old_size: 0,
                leaves: Vec::new(),
                hashes: Arc::new([]),
                checkpoint: note.clone(),
            });
            match first {
                Ok(()) => {}
                // Two writers opening an empty shared store at once: the
                // other one's first checkpoint is as good as ours.
                Err(_) if b.shared() => {
                    if let Some((size, text)) = b.last_checkpoint()? {
                        return self.verified(key.verifier(), size, text);
                    }
                    first?;
                }
                Err(e) => return Err(e),
            }
            b.sync()?;
            return Ok(SignedCheckpoint { checkpoint, note });
        };
        self.verified(key.verifier(), size, text)
    }

    /// The checkpoint `text` stored for `size`, checked as recovery checks
    /// it: signed by the log key, of `size` and the key's origin, and its
    /// root recomputed from the stored hashes; nothing stored beyond it,
    /// unless the store is shared (another writer may have appended since).
    pub(crate) fn verified(
        &self,
        verifier: &note::VerifierKey,
        size: u64,
        text: String,
    ) -> Result<SignedCheckpoint, Error> {
        let b = &*self.backend;
        let origin = verifier.name();
        let signed = Note::parse(text.as_bytes())?;
        signed.verify(std::slice::from_ref(verifier)).map_err(|e| {
            Error::Corrupt(format!(
                "the last checkpoint (size {size}) does not verify with log key {verifier}: {e}; \
                 is this the right key for this data directory?"
            ))
        })?;
        let checkpoint = Checkpoint::parse(signed.text())?;
        if checkpoint.size != size || checkpoint.origin != origin {
            return Err(Error::Corrupt(format!(
                "checkpoint stored under size {size} is for {:?} size {}",
                checkpoint.origin, checkpoint.size
            )));
        }
        let root = tlog::tree_hash(size, &self.hashes()).map_err(|e| {
            Error::Corrupt(format!("cannot recompute the root of size {size}: {e}"))
        })?;
        if root != checkpoint.root {
            return Err(Error::Corrupt(format!(
                "root recomputed from stored hashes at size {size} is {root:?}, the signed checkpoint says {:?}",
                checkpoint.root
            )));
        }
        if size > 0 && !b.has_entry(size - 1)? {
            return Err(Error::Corrupt(format!(
                "entry {} of the last checkpoint is missing",
                size - 1
            )));
        }
        if !b.shared() && (b.has_entry(size)? || b.has_hash(tlog::stored_hash_count(size))?) {
            return Err(Error::Corrupt(format!(
                "data is stored beyond the last checkpoint (size {size})"
            )));
        }
        Ok(SignedCheckpoint {
            checkpoint,
            note: text,
        })
    }
}
