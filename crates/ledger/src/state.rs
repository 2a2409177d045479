//! State that is not the log: a small key-value space beside it, in the same
//! backend, for whatever its user keeps there (the gate: its records —
//! policy bundles, callers, approval requests, snapshots; `gate/src/records.rs`).
//! What the values mean is the user's, as what the leaves mean is.
//!
//! Keys are a [`Namespace`] (a one-byte prefix: a lowercase ASCII letter the
//! log's own keys do not use, see the crate docs) and the user's key bytes.
//! Every write is durable when it returns. Writes through one `State` are
//! serialized, and [`State::exclusive`] holds that order across a read and
//! the write it guards; [`State::swap`] is a compare-and-swap in the store
//! itself, atomic across every process sharing it (PostgreSQL).

use std::sync::{Arc, Mutex};

use crate::store::StateStore;
use crate::Error;

/// The prefixes of the log's own keys (`h`, `e`, `i`, `c`; and `l`, which
/// logs written before 2026-12-08 used for a leaf-hash index and still hold).
const LOG_PREFIXES: &[u8] = b"heilc";

/// A namespace of the state: a one-byte key prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Namespace(u8);

impl Namespace {
    /// The namespace with this prefix.
    ///
    /// # Panics
    ///
    /// If `prefix` is not a lowercase ASCII letter, or is one of the log's
    /// (in a `const`, at compile time).
    #[must_use]
    pub const fn new(prefix: u8) -> Namespace {
        assert!(
            prefix.is_ascii_lowercase(),
            "a namespace is a lowercase ASCII letter"
        );
        let mut i = 0;
        while i < LOG_PREFIXES.len() {
            assert!(prefix != LOG_PREFIXES[i], "the log's keys use this prefix");
            i += 1;
        }
        Namespace(prefix)
    }

    /// Every namespace there can be (copying the whole state).
    pub(crate) fn all() -> impl Iterator<Item = Namespace> {
        (b'a'..=b'z')
            .filter(|p| !LOG_PREFIXES.contains(p))
            .map(Namespace)
    }

    /// Its prefix byte.
    pub(crate) fn prefix(self) -> u8 {
        self.0
    }

    fn key(self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + key.len());
        k.push(self.0);
        k.extend_from_slice(key);
        k
    }
}

/// Keys and values, in key order.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The state beside the log. Get it from [`crate::Ledger::state`].
pub struct State {
    store: Arc<dyn StateStore>,
    /// Serializes writers.
    lock: Mutex<()>,
}

/// The state while [`State::exclusive`] holds its writers' lock.
pub struct Exclusive<'a> {
    store: &'a dyn StateStore,
}

impl Exclusive<'_> {
    /// The value of `key` in `ns`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.store.state_get(&ns.key(key))
    }

    /// Writes `value` under `key` in `ns`, durably.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put(&self, ns: Namespace, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.store.state_put(&[(&ns.key(key), value)])
    }
}

impl State {
    pub(crate) fn new(store: Arc<dyn StateStore>) -> State {
        State {
            store,
            lock: Mutex::new(()),
        }
    }

    /// The value of `key` in `ns`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn get(&self, ns: Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        self.store.state_get(&ns.key(key))
    }

    /// Every key (without the prefix) and value in `ns`, in key order.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn scan(&self, ns: Namespace) -> Result<Pairs, Error> {
        Ok(self
            .store
            .state_scan(&[ns.0])?
            .into_iter()
            .map(|(mut k, v)| {
                k.remove(0);
                (k, v)
            })
            .collect())
    }

    /// Writes `value` under `key` in `ns`, durably.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put(&self, ns: Namespace, key: &[u8], value: &[u8]) -> Result<(), Error> {
        self.exclusive(|s| s.put(ns, key, value))
    }

    /// Runs `f` with the writers' lock held: a read in it and the write it
    /// guards cannot interleave with another write through this `State`.
    ///
    /// # Errors
    ///
    /// `f`'s.
    pub fn exclusive<T>(
        &self,
        f: impl FnOnce(&Exclusive<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let _guard = self.lock.lock().expect("state lock");
        f(&Exclusive {
            store: self.store.as_ref(),
        })
    }

    /// Deletes `key` in `ns` durably and as far as the backend can: its
    /// bytes gone from the store's files (RocksDB: flushed and compacted),
    /// not only unreachable. For erasing personal data.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn erase(&self, ns: Namespace, key: &[u8]) -> Result<(), Error> {
        let _guard = self.lock.lock().expect("state lock");
        self.store.state_erase(&ns.key(key))
    }

    /// Compare-and-swap: writes `new` under `key` in `ns`, durably, only if
    /// the value is `expected` (`None`: absent); whether it wrote. Atomic in
    /// the store, across every process that shares it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn swap(
        &self,
        ns: Namespace,
        key: &[u8],
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, Error> {
        let _guard = self.lock.lock().expect("state lock");
        self.store.state_swap(&ns.key(key), expected, new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_is_a_letter_the_log_does_not_use() {
        let all: Vec<u8> = Namespace::all().map(|n| n.0).collect();
        assert_eq!(all.len(), 26 - LOG_PREFIXES.len());
        assert!(all.iter().all(|p| !LOG_PREFIXES.contains(p)));
        assert!(std::panic::catch_unwind(|| Namespace::new(b'e')).is_err());
        assert!(std::panic::catch_unwind(|| Namespace::new(b'P')).is_err());
    }
}
