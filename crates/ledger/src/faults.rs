//! For tests (the `faults` feature): a backend that fails when told, and
//! one in memory. Neither is in a production build; the sequencer and the
//! gate know nothing of them.
//!
//! [`Faults`] wraps any store: before a batch insert (`write`), after one
//! that succeeded (`write_after`: a write the store took whose caller saw
//! an error), and before a sync (`sync`), a hook may say the operation
//! failed. They apply to stores of one writer (a shared store's batches go
//! through its turn). [`MemStore`] keeps the log and its state in memory:
//! everything is durable the moment it is inserted (a crash loses the
//! process anyway), which makes the sequencer's logic testable without a
//! disk.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use note::SignerKey;
use tlog::Hash;

use crate::store::{
    Backend, Batch, Coordination, IdempotencyRecord, LogStore, StatePairs, StateStore,
};
use crate::{Error, Ledger, Options};

/// Decides, before each batch write (or after one, for `write_after`),
/// from the tree size before the batch and its number of new leaves,
/// whether it fails: `Some(reason)`.
pub type WriteFault = Arc<dyn Fn(u64, usize) -> Option<String> + Send + Sync>;

/// Decides, before each sync, whether it fails (which stops the ledger).
pub type SyncFault = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// The faults to inject.
#[derive(Clone, Default)]
pub struct Faults {
    /// Before each batch write: fail it without writing.
    pub write: Option<WriteFault>,
    /// After each batch write that succeeded: report it failed anyway.
    pub write_after: Option<WriteFault>,
    /// Before each sync: fail it.
    pub sync: Option<SyncFault>,
}

/// `inner`, failing as `faults` say.
struct Faulty<B> {
    inner: Arc<B>,
    faults: Faults,
}

impl<B: Backend> LogStore for Faulty<B> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        self.inner.read_hashes(indexes)
    }
    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        self.inner.entries(start, count)
    }
    fn has_entry(&self, index: u64) -> Result<bool, Error> {
        self.inner.has_entry(index)
    }
    fn has_hash(&self, index: u64) -> Result<bool, Error> {
        self.inner.has_hash(index)
    }
    fn idempotency(&self, keys: &[&[u8]]) -> Result<Vec<Option<IdempotencyRecord>>, Error> {
        self.inner.idempotency(keys)
    }
    fn idempotency_records(&self) -> Result<Vec<(Vec<u8>, IdempotencyRecord)>, Error> {
        self.inner.idempotency_records()
    }
    fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        self.inner.checkpoint(size)
    }
    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        self.inner.last_checkpoint()
    }
    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, Error> {
        self.inner.checkpoints_from(from, limit)
    }
    fn insert(&self, batch: &Batch) -> Result<(), Error> {
        let at = (batch.old_size, batch.leaves.len());
        if let Some(reason) = self.faults.write.as_ref().and_then(|f| f(at.0, at.1)) {
            return Err(Error::NotCommitted(format!(
                "injected write failure: {reason}"
            )));
        }
        self.inner.insert(batch)?;
        if let Some(reason) = self.faults.write_after.as_ref().and_then(|f| f(at.0, at.1)) {
            return Err(Error::NotCommitted(format!(
                "injected failure after the write: {reason}"
            )));
        }
        Ok(())
    }
    fn sync(&self) -> Result<(), Error> {
        if let Some(reason) = self.faults.sync.as_ref().and_then(|f| f()) {
            return Err(Error::Storage(format!("injected sync failure: {reason}")));
        }
        self.inner.sync()
    }
    fn coordination(&self) -> Option<&dyn Coordination> {
        self.inner.coordination()
    }
}

impl<B: Backend> StateStore for Faulty<B> {
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.inner.state_get(key)
    }
    fn state_put(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), Error> {
        self.inner.state_put(pairs)
    }
    fn state_erase(&self, key: &[u8]) -> Result<(), Error> {
        self.inner.state_erase(key)
    }
    fn state_scan(&self, prefix: &[u8]) -> Result<StatePairs, Error> {
        self.inner.state_scan(prefix)
    }
    fn state_swap(&self, key: &[u8], expected: Option<&[u8]>, new: &[u8]) -> Result<bool, Error> {
        self.inner.state_swap(key, expected, new)
    }
}

impl Ledger {
    /// [`Ledger::open`] (RocksDB in `path`) with `faults` injected.
    ///
    /// # Errors
    ///
    /// As [`Ledger::open`].
    pub fn open_with_faults(
        path: &Path,
        key: SignerKey,
        options: Options,
        faults: Faults,
    ) -> Result<Ledger, Error> {
        let inner = Arc::new(crate::rocks::RocksStore::open(path)?);
        Ledger::open_on(Arc::new(Faulty { inner, faults }), key, options)
    }

    /// A ledger in memory (nothing on disk), with `faults` injected.
    ///
    /// # Errors
    ///
    /// As [`Ledger::open`] (recovery of the empty log).
    pub fn in_memory(key: SignerKey, options: Options, faults: Faults) -> Result<Ledger, Error> {
        let inner = Arc::new(MemStore::default());
        Ledger::open_on(Arc::new(Faulty { inner, faults }), key, options)
    }
}

/// The log and its state in memory.
#[derive(Default)]
pub struct MemStore {
    log: RwLock<Mem>,
    state: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

#[derive(Default)]
struct Mem {
    hashes: BTreeMap<u64, Hash>,
    entries: BTreeMap<u64, Vec<u8>>,
    idempotency: BTreeMap<Vec<u8>, IdempotencyRecord>,
    checkpoints: BTreeMap<u64, String>,
}

impl LogStore for MemStore {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, Error> {
        let log = self.log.read().expect("mem lock");
        indexes
            .iter()
            .map(|i| {
                log.hashes
                    .get(i)
                    .copied()
                    .ok_or_else(|| Error::Corrupt(format!("stored hash {i} is missing")))
            })
            .collect()
    }
    fn entries(&self, start: u64, count: u64) -> Result<Vec<Vec<u8>>, Error> {
        let log = self.log.read().expect("mem lock");
        (start..start + count)
            .map(|i| {
                log.entries
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| Error::Corrupt(format!("entry {i} is missing")))
            })
            .collect()
    }
    fn has_entry(&self, index: u64) -> Result<bool, Error> {
        Ok(self
            .log
            .read()
            .expect("mem lock")
            .entries
            .contains_key(&index))
    }
    fn has_hash(&self, index: u64) -> Result<bool, Error> {
        Ok(self
            .log
            .read()
            .expect("mem lock")
            .hashes
            .contains_key(&index))
    }
    fn idempotency(&self, keys: &[&[u8]]) -> Result<Vec<Option<IdempotencyRecord>>, Error> {
        let log = self.log.read().expect("mem lock");
        Ok(keys
            .iter()
            .map(|k| log.idempotency.get(*k).copied())
            .collect())
    }
    fn idempotency_records(&self) -> Result<Vec<(Vec<u8>, IdempotencyRecord)>, Error> {
        let log = self.log.read().expect("mem lock");
        Ok(log
            .idempotency
            .iter()
            .map(|(k, r)| (k.clone(), *r))
            .collect())
    }
    fn checkpoint(&self, size: u64) -> Result<Option<String>, Error> {
        Ok(self
            .log
            .read()
            .expect("mem lock")
            .checkpoints
            .get(&size)
            .cloned())
    }
    fn last_checkpoint(&self) -> Result<Option<(u64, String)>, Error> {
        let log = self.log.read().expect("mem lock");
        Ok(log
            .checkpoints
            .last_key_value()
            .map(|(s, n)| (*s, n.clone())))
    }
    fn checkpoints_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, String)>, Error> {
        let log = self.log.read().expect("mem lock");
        Ok(log
            .checkpoints
            .range(from..)
            .take(limit)
            .map(|(s, n)| (*s, n.clone()))
            .collect())
    }
    fn insert(&self, batch: &Batch) -> Result<(), Error> {
        let mut log = self.log.write().expect("mem lock");
        let base = tlog::stored_hash_count(batch.old_size);
        for (i, h) in (base..).zip(batch.hashes.iter()) {
            log.hashes.insert(i, *h);
        }
        for (index, leaf) in (batch.old_size..).zip(&batch.leaves) {
            log.entries.insert(index, leaf.leaf.clone());
            log.idempotency
                .entry(leaf.key.clone())
                .or_insert(IdempotencyRecord {
                    index,
                    leaf_hash: leaf.leaf_hash,
                });
        }
        log.checkpoints
            .insert(batch.new_size(), batch.checkpoint.clone());
        Ok(())
    }
    fn sync(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl StateStore for MemStore {
    fn state_get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.state.read().expect("mem lock").get(key).cloned())
    }
    fn state_erase(&self, key: &[u8]) -> Result<(), Error> {
        self.state.write().expect("mem lock").remove(key);
        Ok(())
    }
    fn state_put(&self, pairs: &[(&[u8], &[u8])]) -> Result<(), Error> {
        let mut state = self.state.write().expect("mem lock");
        for (k, v) in pairs {
            state.insert(k.to_vec(), v.to_vec());
        }
        Ok(())
    }
    fn state_scan(&self, prefix: &[u8]) -> Result<StatePairs, Error> {
        Ok(self
            .state
            .read()
            .expect("mem lock")
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}
