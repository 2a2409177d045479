//! The RocksDB backend (the embedded default): batch writes through the
//! WAL, reads, the state beside the log. The only file that names RocksDB.
//!
//! One key space, one-byte prefixes, big-endian u64s:
//!
//! | key                      | value                                   |
//! |--------------------------|-----------------------------------------|
//! | `h` ‖ stored index       | 32-byte stored hash ([`tlog::stored_hash_index`]) |
//! | `e` ‖ leaf index         | the leaf (entry) bytes                  |
//! | `l` ‖ leaf hash          | reserved: logs written before 2026-12-08 hold a leaf-hash index here that nothing read; left as it is, no longer written |
//! | `i` ‖ idempotency key    | leaf index ‖ leaf hash                  |
//! | `c` ‖ tree size          | the signed checkpoint note of that size |
//! | any other letter ‖ key   | state: a `Namespace` of `State` (`state.rs`) |
//!
//! Every batch writes all of the log's keys in one `WriteBatch`, batches
//! enter the WAL one at a time and in order, and nothing is answered or
//! served before an fsync of the WAL covers it: the state on disk is always
//! exactly some batch, and never one before an acknowledged batch.

use std::path::Path;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use tlog::Hash;

use crate::store::{Batch, IdempotencyRecord, LogStore, StatePairs, StateStore};
use crate::Error;

const HASH: u8 = b'h';
const ENTRY: u8 = b'e';
const IDEMPOTENCY: u8 = b'i';
const CHECKPOINT: u8 = b'c';

fn key_u64(prefix: u8, n: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&n.to_be_bytes());
    k
}

fn key_bytes(prefix: u8, b: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + b.len());
    k.push(prefix);
    k.extend_from_slice(b);
    k
}

fn u64_at(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.get(..8)?.try_into().ok()?))
}

fn storage(e: rocksdb::Error) -> Error {
    Error::Storage(e.to_string())
}

/// The log in one RocksDB key space.
pub(crate) struct RocksStore {
    db: DB,
}

impl RocksStore {
    /// Opens the database a gate wrote in directory `path` (copying it
    /// elsewhere): not created if missing; a database another process holds
    /// open is refused naming the likely cause.
    pub(crate) fn open_existing(path: &Path) -> Result<RocksStore, Error> {
        if !path.join("CURRENT").exists() {
            return Err(Error::NotFound(format!(
                "{} holds no RocksDB log (a gate's is its data directory's log/)",
                path.display()
            )));
        }
        RocksStore::open(path).map_err(|e| match e {
            Error::Storage(why) if why.contains("lock") => Error::Storage(format!(
                "{why}: is the gate that owns {} still running? Stop it first",
                path.display()
            )),
            other => other,
        })
    }

    /// Opens (or creates) the database in directory `path`.
    pub(crate) fn open(path: &Path) -> Result<RocksStore, Error> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        // Keys are prefix ‖ big-endian integers: entries and hashes are written
        // in key order, so compaction is cheap. No compression is compiled in.
        opts.set_compression_type(rocksdb::DBCompressionType::None);
        opts.set_max_background_jobs(2);
        opts.set_write_buffer_size(128 << 20);
        opts.set_enable_pipelined_write(true);
        // A bloom filter over the memtable's whole keys: the idempotency
        // lookup every decision makes is almost always a miss, which then
        // skips the skip list's search (3% of all CPU samples at 64
        // connections before, `perf`).
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.05);
        // RocksDB's default, set because the sequencer relies on it: batches
        // are written unsynced and fsynced later, so after a machine crash the
        // WAL may end in a torn record; recovery must stop there and keep the
        // prefix before it, never skip a hole.
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::PointInTime);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);
        Ok(RocksStore {
            db: DB::open(&opts, path).map_err(storage)?,
        })
    }

    /// Waits until RocksDB has flushed and finished its background
    /// compactions (benchmarks measure reads, not compaction beside them).
    pub(crate) fn wait_for_compaction(&self) -> Result<(), Error> {
        let mut opts = rocksdb::WaitForCompactOptions::default();
        opts.set_flush(true);
        self.db.wait_for_compact(&opts).map_err(storage)
    }

    fn exists(&self, key: &[u8]) -> Result<bool, Error> {
        Ok(self.db.get_pinned(key).map_err(storage)?.is_some())
    }

    /// The batch as one `WriteBatch`.
    ///
    /// Entries and hashes go in as they come (ascending keys); the
    /// random-key index (idempotency) is added last, sorted. The memtable's skip
    /// list reuses the previous insert's position when the next key is close
    /// to it, so runs of neighbouring keys are cheap to insert, and
    /// interleaving the random keys with the sequential ones would break every
    /// run (measured: inserting was most of the writer thread's time).
    fn write_batch(batch: &Batch) -> WriteBatch {
        let mut wb = WriteBatch::default();
        let mut idempotency = Vec::with_capacity(batch.leaves.len());
        for (index, l) in (batch.old_size..).zip(&batch.leaves) {
            wb.put(key_u64(ENTRY, index), &l.leaf);
            let mut v = [0u8; 40];
            v[..8].copy_from_slice(&index.to_be_bytes());
            v[8..].copy_from_slice(&l.leaf_hash.0);
            idempotency.push((key_bytes(IDEMPOTENCY, &l.key), v));
        }
        let base = tlog::stored_hash_count(batch.old_size);
        for (i, h) in (base..).zip(batch.hashes.iter()) {
            wb.put(key_u64(HASH, i), h.0);
        }
        wb.put(
            key_u64(CHECKPOINT, batch.new_size()),
            batch.checkpoint.as_bytes(),
        );
        idempotency.sort_unstable();
        for (k, v) in &idempotency {
            wb.put(k, v);
        }
        wb
    }
}

impl LogStore for RocksStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        let keys: Vec<[u8; 9]> = indexes.iter().map(|&i| key_u64(HASH, i)).collect();
        self.db
            .multi_get(&keys)
            .into_iter()
            .zip(indexes)
            .map(|(v, &i)| match v.map_err(storage)? {
                Some(v) => Hash::from_slice(&v)
                    .ok_or_else(|| Error::Corrupt(format!("stored hash {i} is not 32 bytes"))),
                None => Err(Error::Corrupt(format!("stored hash {i} is missing"))),
            })
            .collect()
    }

    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        let keys: Vec<[u8; 9]> = (start..start + count).map(|i| key_u64(ENTRY, i)).collect();
        self.db
            .multi_get(&keys)
            .into_iter()
            .zip(start..)
            .map(|(v, i)| {
                v.map_err(storage)?
                    .ok_or_else(|| Error::Corrupt(format!("entry {i} is missing")))
            })
            .collect()
    }

    fn has_entry(&self, index: u64) -> Result<bool, Error> {
        self.exists(&key_u64(ENTRY, index))
    }

    fn has_hash(&self, index: u64) -> Result<bool, Error> {
        self.exists(&key_u64(HASH, index))
    }

    fn idempotency(&self, keys: &[&[u8]]) -> Result<Vec<Option<IdempotencyRecord>>, Error> {
        let db_keys: Vec<Vec<u8>> = keys.iter().map(|k| key_bytes(IDEMPOTENCY, k)).collect();
        self.db
            .multi_get(&db_keys)
            .into_iter()
            .map(|v| {
                Ok(match v.map_err(storage)? {
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

    fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        self.db
            .get(key_u64(CHECKPOINT, size))
            .map_err(storage)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt(format!("checkpoint {size} is not UTF-8")))
            })
            .transpose()
    }

    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        let start = key_u64(CHECKPOINT, u64::MAX);
        let mut it = self
            .db
            .iterator(IteratorMode::From(&start, Direction::Reverse));
        match it.next().transpose().map_err(storage)? {
            Some((k, v)) if k.first() == Some(&CHECKPOINT) && k.len() == 9 => {
                let size = u64_at(&k[1..]).expect("9-byte key");
                let note = String::from_utf8(v.to_vec())
                    .map_err(|_| Error::Corrupt(format!("checkpoint {size} is not UTF-8")))?;
                Ok(Some((size, note)))
            }
            _ => Ok(None),
        }
    }

    fn idempotency_records(&self) -> Result<Vec<(Vec<u8>, IdempotencyRecord)>, Error> {
        let mut out = Vec::new();
        for kv in self
            .db
            .iterator(IteratorMode::From(&[IDEMPOTENCY], Direction::Forward))
        {
            let (k, v) = kv.map_err(storage)?;
            if k.first() != Some(&IDEMPOTENCY) {
                break;
            }
            if v.len() != 40 {
                return Err(Error::Corrupt("malformed idempotency record".into()));
            }
            out.push((
                k[1..].to_vec(),
                IdempotencyRecord {
                    index: u64_at(&v).expect("40 bytes"),
                    leaf_hash: Hash::from_slice(&v[8..]).expect("32 bytes"),
                },
            ));
        }
        Ok(out)
    }

    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, Error> {
        let start = key_u64(CHECKPOINT, from);
        let mut out = Vec::new();
        for kv in self
            .db
            .iterator(IteratorMode::From(&start, Direction::Forward))
        {
            let (k, v) = kv.map_err(storage)?;
            if k.first() != Some(&CHECKPOINT) || k.len() != 9 || out.len() == limit {
                break;
            }
            let size = u64_at(&k[1..]).expect("9-byte key");
            let note = String::from_utf8(v.to_vec())
                .map_err(|_| Error::Corrupt(format!("checkpoint {size} is not UTF-8")))?;
            out.push((size, note));
        }
        Ok(out)
    }

    /// One `WriteBatch` into the WAL and the memtable, unsynced: RocksDB
    /// applies all of it or none of it, and batches enter the one WAL in
    /// order, so its point-in-time recovery yields a prefix of them.
    fn insert(&self, batch: &Batch) -> Result<(), Error> {
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db
            .write_opt(RocksStore::write_batch(batch), &wo)
            .map_err(storage)
    }

    /// An fsync of the WAL; RocksDB goes on accepting writes meanwhile.
    fn sync(&self) -> Result<(), Error> {
        self.db.flush_wal(true).map_err(storage)
    }
}

impl StateStore for RocksStore {
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.db.get(key).map_err(storage)
    }

    fn state_put(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), Error> {
        let mut wb = WriteBatch::default();
        for (k, v) in pairs {
            wb.put(k, v);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(wb, &wo).map_err(storage)
    }

    /// Deleted (synced), then the memtable flushed (so the WAL that held
    /// the value is retired and deleted) and the key's range compacted
    /// through the last level (so no table keeps the old value).
    fn state_erase(&self, key: &[u8]) -> Result<(), Error> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.delete_opt(key, &wo).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        let mut end = key.to_vec();
        end.push(0);
        let mut co = rocksdb::CompactOptions::default();
        co.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
        self.db
            .compact_range_opt(Some(key), Some(end.as_slice()), &co);
        Ok(())
    }

    fn state_scan(&self, prefix: &[u8]) -> Result<StatePairs, Error> {
        let mut out = Vec::new();
        for kv in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = kv.map_err(storage)?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tlog::HashReader;

    use super::RocksStore;
    use crate::recent::RecentHashes;
    use crate::store::{Batch, CachedHashes, LogStore, UpperCache, UPPER_LEVEL};

    /// Reads through the upper-level cache give exactly the stored hashes,
    /// cold and warm; only upper levels are cached, never more than capacity.
    #[test]
    fn upper_cache_reads_are_the_stored_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path()).unwrap();
        let n = 3000u64;
        let leaves: Vec<tlog::Hash> = (0..n).map(|i| tlog::leaf_hash(&i.to_be_bytes())).collect();
        let stored = tlog::append_leaves(0, &leaves, &Vec::new()).unwrap();
        store
            .insert(&Batch {
                old_size: 0,
                leaves: Vec::new(),
                hashes: Arc::from(stored.clone()),
                checkpoint: String::new(),
            })
            .unwrap();
        store.sync().unwrap();
        let all: Vec<u64> = (0..stored.len() as u64).rev().collect();
        let upper = (0..stored.len() as u64)
            .filter(|&i| tlog::split_stored_hash_index(i).0 >= UPPER_LEVEL)
            .count();
        assert!(upper > 10);
        let none = RecentHashes::new(0);
        for capacity in [0, 5, 1 << 20] {
            let cache = UpperCache::new(capacity);
            let reader = CachedHashes {
                store: &store,
                upper: &cache,
                recent: &none,
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
        assert!(CachedHashes {
            store: &store,
            upper: &UpperCache::new(10),
            recent: &none,
        }
        .read_hashes(&[stored.len() as u64])
        .is_err());
    }
}
