//! The RocksDB schema (see the crate docs), reads, and recovery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;

use note::{Checkpoint, Note, SignerKey};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use tlog::{Hash, HashReader, ReadError};

use crate::recent::RecentHashes;
use crate::{Error, SignedCheckpoint};

const HASH: u8 = b'h';
const ENTRY: u8 = b'e';
const LEAF: u8 = b'l';
const IDEMPOTENCY: u8 = b'i';
const CHECKPOINT: u8 = b'c';
/// Policy bundles: `p` ‖ version → published-at (u64 BE UNIX ns) ‖ bundle bytes.
pub(crate) const POLICY: u8 = b'p';
/// The active policy version: the single key `a`.
pub(crate) const ACTIVE_POLICY: &[u8] = b"a";

pub(crate) fn key_u64(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

pub(crate) fn key_bytes(prefix: u8, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + b.len());
    k.push(prefix);
    k.extend_from_slice(b);
    k
}

fn u64_at(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

/// An idempotency record: the leaf an idempotency key was first used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IdempotencyRecord {
    pub(crate) index: u64,
    pub(crate) leaf_hash: Hash,
}

pub(crate) struct Store {
    db: DB,
    upper: UpperCache,
    recent: RecentHashes,
}

/// Stored hashes at this level and above (perfect subtrees of at least 256
/// leaves: the C2SP tile rows above the first) are kept in memory once written
/// or read.
/// Every proof path runs through them, so a proof costs about eight RocksDB
/// reads whatever the size of the log, instead of one per level.
pub(crate) const UPPER_LEVEL: u8 = 8;

/// At most this many upper hashes are kept: 7/8 of 2^20, so the map stays
/// at 2^20 buckets of 41 bytes (≈ 43 MB). A log of n leaves has about n/128
/// upper hashes, so all of them are kept up to ~117M leaves; beyond that the
/// rest are read from RocksDB as before.
pub(crate) const UPPER_CAPACITY: usize = 7 << 17;

/// The upper-level cache. Stored hashes never change once durable, and only
/// durable hashes (made so by this process, or read back from RocksDB) enter
/// it, so it is never stale.
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
/// rest from RocksDB.
pub(crate) struct DbHashes<'a> {
    db: &'a DB,
    upper: &'a UpperCache,
    recent: &'a RecentHashes,
}

impl HashReader for DbHashes<'_> {
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
        let keys: Vec<[u8; 9]> = missing.iter().map(|&k| key_u64(HASH, indexes[k])).collect();
        let mut read = Vec::with_capacity(missing.len());
        for (v, &k) in self.db.multi_get(&keys).into_iter().zip(&missing) {
            let i = indexes[k];
            let h = match v? {
                Some(v) => Hash::from_slice(&v)
                    .ok_or_else(|| format!("stored hash {i} is not 32 bytes"))?,
                None => return Err(format!("stored hash {i} is missing").into()),
            };
            out[k] = h;
            read.push((i, h));
        }
        self.upper.insert(read);
        Ok(out)
    }
}

/// A batch being built: everything one commit writes.
///
/// Entries and hashes go into the `WriteBatch` as they come (ascending keys);
/// the two random-key indexes are held back and added last, each sorted. The
/// memtable's skip list reuses the previous insert's position when the next
/// key is close to it, so runs of neighbouring keys are cheap to insert, and
/// interleaving the random keys with the sequential ones would break every
/// run (measured: inserting was most of the writer thread's time).
pub(crate) struct Batch {
    wb: WriteBatch,
    leaf_index: Vec<([u8; 33], u64)>,
    idempotency: Vec<(Vec<u8>, [u8; 40])>,
}

impl Batch {
    pub(crate) fn new() -> Batch {
        Batch {
            wb: WriteBatch::default(),
            leaf_index: Vec::new(),
            idempotency: Vec::new(),
        }
    }
    pub(crate) fn entry(&mut self, index: u64, leaf: &[u8]) {
        self.wb.put(key_u64(ENTRY, index), leaf);
    }
    pub(crate) fn hash(&mut self, stored_index: u64, h: &Hash) {
        self.wb.put(key_u64(HASH, stored_index), h.0);
    }
    pub(crate) fn leaf_index(&mut self, leaf_hash: &Hash, index: u64) {
        let mut k = [0u8; 33];
        k[0] = LEAF;
        k[1..].copy_from_slice(&leaf_hash.0);
        self.leaf_index.push((k, index));
    }
    pub(crate) fn idempotency(&mut self, key: &[u8], rec: IdempotencyRecord) {
        let mut v = [0u8; 40];
        v[..8].copy_from_slice(&rec.index.to_be_bytes());
        v[8..].copy_from_slice(&rec.leaf_hash.0);
        self.idempotency.push((key_bytes(IDEMPOTENCY, key), v));
    }
    pub(crate) fn checkpoint(&mut self, size: u64, note: &str) {
        self.wb.put(key_u64(CHECKPOINT, size), note.as_bytes());
    }

    /// The whole batch, the held-back index records last, each run sorted.
    /// Equal leaf hashes keep their order (a stable sort), so the last put,
    /// the latest leaf, is the one the index names.
    fn finish(mut self) -> WriteBatch {
        self.leaf_index.sort_by_key(|a| a.0);
        for (k, index) in &self.leaf_index {
            self.wb.put(k, index.to_be_bytes());
        }
        self.idempotency.sort_unstable();
        for (k, v) in &self.idempotency {
            self.wb.put(k, v);
        }
        self.wb
    }
}

impl Store {
    /// Opens the store, keeping the newest `recent_hashes` stored hashes in
    /// memory as they become durable ([`Store::remember`]).
    pub(crate) fn open(path: &Path, recent_hashes: usize) -> Result<Store, Error> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        // Keys are prefix ‖ big-endian integers: entries and hashes are written
        // in key order, so compaction is cheap. No compression is compiled in.
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        opts.set_max_background_jobs(2);
        opts.set_write_buffer_size(128 << 20);
        opts.set_enable_pipelined_write(true);
        // RocksDB's default, set because the sequencer relies on it: batches
        // are written unsynced and fsynced later, so after a machine crash the
        // WAL may end in a torn record; recovery must stop there and keep the
        // prefix before it, never skip a hole.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);
        Ok(Store {
            db: DB::open(&opts, path)?,
            upper: UpperCache::new(UPPER_CAPACITY),
            recent: RecentHashes::new(recent_hashes),
        })
    }

    pub(crate) fn db(&self) -> &DB {
        &self.db
    }

    pub(crate) fn wait_for_compaction(&self) -> Result<(), Error> {
        let mut opts = rocksdb::WaitForCompactOptions::default();
        opts.set_flush(true);
        Ok(self.db.wait_for_compact(&opts)?)
    }

    pub(crate) fn hashes(&self) -> DbHashes<'_> {
        DbHashes {
            db: &self.db,
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

    /// Writes a batch, atomically: RocksDB applies all of it or none of it.
    /// With `sync` it is durable when this returns Ok; without, it is
    /// readable but durable only after the next [`Store::sync`].
    pub(crate) fn write(&self, batch: Batch, sync: bool) -> Result<(), Error> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(batch.finish(), &wo)?;
        Ok(())
    }

    /// Makes every write that returned before this call durable (an fsync of
    /// the WAL). RocksDB goes on accepting writes meanwhile.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        Ok(self.db.flush_wal(true)?)
    }

    pub(crate) fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        self.db
            .get(key_u64(CHECKPOINT, size))?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt(format!("checkpoint {size} is not UTF-8")))
            })
            .transpose()
    }

    /// The stored checkpoint with the largest size.
    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        let start = key_u64(CHECKPOINT, u64::MAX);
        let mut it = self
            .db
            .iterator(IteratorMode::From(&start, Direction::Reverse));
        match it.next().transpose()? {
            Some((k, v)) if k.first() == Some(&CHECKPOINT) && k.len() == 9 => {
                let size = u64_at(&k[1..]).expect("9-byte key");
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| Error::Corrupt(format!("checkpoint {size} is not UTF-8")))?;
                Ok(Some((size, note)))
            }
            _ => Ok(None),
        }
    }

    pub(crate) fn index_of(&self, leaf_hash: &Hash) -> Result<Option<u64>, Error> {
        Ok(self
            .db
            .get(key_bytes(LEAF, &leaf_hash.0))?
            .as_deref()
            .and_then(u64_at))
    }

    /// Looks up idempotency keys; one answer per key, in order.
    pub(crate) fn idempotency(
        &self,
        keys: &[&[u8]],
    ) -> Result<Vec<Option<IdempotencyRecord>>, Error> {
        let db_keys: Vec<Vec<u8>> = keys.iter().map(|k| key_bytes(IDEMPOTENCY, k)).collect();
        self.db
            .multi_get(&db_keys)
            .into_iter()
            .map(|v| {
                Ok(match v? {
                    None => None,
                    Some(v) if v.len() == 40 => Some(IdempotencyRecord {
                        index: u64_at(&v).expect("40 bytes"),
                        leaf_hash: Hash::from_slice(&v[8..]).expect("32 bytes"),
                    }),
                    Some(_) => return Err(Error::Corrupt("malformed idempotency record".into())),
                })
            })
            .collect()
    }

    /// `count` entries starting at `start`; all must exist.
    pub(crate) fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        let keys: Vec<[u8; 9]> = (start..start + count).map(|i| key_u64(ENTRY, i)).collect();
        self.db
            .multi_get(&keys)
            .into_iter()
            .zip(start..)
            .map(|(v, i)| v?.ok_or_else(|| Error::Corrupt(format!("entry {i} is missing"))))
            .collect()
    }

    fn exists(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.db.get_pinned(key)?.is_some())
    }

    /// Recovery, run by every open: the same code path for a clean start and
    /// after a crash. The state is the last checkpoint written (each batch
    /// writes its checkpoint atomically with its data), and it must be
    /// self-consistent:
    /// - the checkpoint verifies with `key` and names `key`'s origin;
    /// - the root recomputed from stored hashes equals the checkpoint's root;
    /// - nothing is stored beyond it (no entry `size`, no hash past the layout).
    ///
    /// An empty directory gets a signed checkpoint of the empty tree, so the
    /// log always has a latest checkpoint.
    pub(crate) fn recover(&self, key: &SignerKey) -> Result<SignedCheckpoint, Error> {
        let origin = key.verifier().name();
        let Some((size, text)) = self.last_checkpoint()? else {
            if self.exists(&key_u64(ENTRY, 0))? || self.exists(&key_u64(HASH, 0))? {
                return Err(Error::Corrupt(
                    "entries are stored but no checkpoint is".into(),
                ));
            }
            let checkpoint = Checkpoint::new(origin, 0, tlog::EMPTY_ROOT);
            let note = note::sign_checkpoint(&checkpoint, key)?.to_text();
            let mut b = Batch::new();
            b.checkpoint(0, &note);
            self.write(b, true)?;
            return Ok(SignedCheckpoint { checkpoint, note });
        };
        let signed = Note::parse(text.as_bytes())?;
        signed
            .verify(std::slice::from_ref(key.verifier()))
            .map_err(|e| {
                Error::Corrupt(format!(
                    "the last checkpoint (size {size}) does not verify with log key {}: {e}; \
                 is this the right key for this data directory?",
                    key.verifier()
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
        if size > 0 && !self.exists(&key_u64(ENTRY, size - 1))? {
            return Err(Error::Corrupt(format!(
                "entry {} of the last checkpoint is missing",
                size - 1
            )));
        }
        if self.exists(&key_u64(ENTRY, size))?
            || self.exists(&key_u64(HASH, tlog::stored_hash_count(size)))?
        {
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

#[cfg(test)]
mod tests {
    use super::{Batch, DbHashes, RecentHashes, Store, UpperCache, UPPER_LEVEL};
    use tlog::HashReader;

    /// Reads through the upper-level cache give exactly the stored hashes,
    /// cold and warm; only upper levels are cached, never more than capacity.
    #[test]
    fn upper_cache_reads_are_the_stored_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let n = 3000u64;
        let leaves: Vec<tlog::Hash> = (0..n).map(|i| tlog::leaf_hash(&i.to_be_bytes())).collect();
        let stored = tlog::append_leaves(0, &leaves, &Vec::new()).unwrap();
        let mut batch = Batch::new();
        for (i, h) in stored.iter().enumerate() {
            batch.hash(i as u64, h);
        }
        store.write(batch, true).unwrap();
        let all: Vec<u64> = (0..stored.len() as u64).rev().collect();
        let upper = (0..stored.len() as u64)
            .filter(|&i| tlog::split_stored_hash_index(i).0 >= UPPER_LEVEL)
            .count();
        assert!(upper > 10);
        for capacity in [0, 5, 1 << 20] {
            let cache = UpperCache::new(capacity);
            let reader = DbHashes {
                db: &store.db,
                upper: &cache,
                recent: &store.recent,
            };
            for _ in 0..2 {
                let got = reader.read_hashes(&all).unwrap();
                assert!(got.iter().rev().eq(stored.iter()), "capacity {capacity}");
            }
            assert_eq!(cache.len(), upper.min(capacity));
            // A proof through a warm cache is the proof from the hashes.
            assert_eq!(
                tlog::prove_inclusion(1234, n, &reader).unwrap(),
                tlog::prove_inclusion(1234, n, &stored).unwrap()
            );
        }
        assert!(DbHashes {
            db: &store.db,
            upper: &UpperCache::new(10),
            recent: &RecentHashes::new(0),
        }
        .read_hashes(&[stored.len() as u64])
        .is_err());
    }
}
