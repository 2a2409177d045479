//! State that is not the log: what the gate keeps beside it, durably, in the
//! backend's small key-value space (today the policy bundles and the active
//! version, the callers; approvals and counters are to join them here).
//!
//! Keys, one-byte prefixes that no log key uses (see the crate docs):
//!
//! | key                | value                                              |
//! |--------------------|----------------------------------------------------|
//! | `p` ‖ version      | published-at (u64 BE UNIX ns) ‖ bundle bytes       |
//! | `a`                | the active policy version                          |
//! | `s`                | the shadow policy version (empty: none)            |
//! | `r` ‖ approval id  | an approval request and its votes (the gate's JSON) |
//! | `k` ‖ caller name  | the caller's record (opaque bytes; the gate's JSON) |
//! | `w`                | the newest checkpoint cosigned to the witness quorum (note text) |
//! | `g`                | the gate's signed snapshot of what the log's governance entries say (note text) |
//!
//! Bundles are opaque bytes here; the gate parses them (the `policy` crate)
//! and names them by content digest before storing. Every write is durable
//! when it returns, and writes are serialized, so a check and the write it
//! guards cannot interleave with another writer's.

use std::sync::{Arc, Mutex};

use crate::store::LogStore;
use crate::Error;

/// Policy bundles: `p` ‖ version.
/// Every state key starts with one of these (for copying the state).
pub(crate) const PREFIXES: [&[u8]; 7] = [b"p", b"a", b"s", b"r", b"k", b"w", b"g"];

const POLICY: u8 = b'p';

const COSIGNED: &[u8] = b"w";
/// The gate's snapshot of the governance entries folded: the single key `g`.
const GOVERNED: &[u8] = b"g";
/// The active policy version: the single key `a`.
const ACTIVE_POLICY: &[u8] = b"a";
/// The shadow policy version (evaluated beside the active one, never
/// enforced): the single key `s`, empty when there is none.
const SHADOW_POLICY: &[u8] = b"s";

/// Callers: `k` ‖ name.
const CALLER: u8 = b'k';

/// Approval requests: `r` ‖ id.
const APPROVAL: u8 = b'r';

fn approval_key(id: &str) -> Vec<u8> {
    let mut k = vec![APPROVAL];
    k.extend_from_slice(id.as_bytes());
    k
}

/// A published policy bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPolicy {
    /// Its version (content digest).
    pub version: String,
    /// When it was first published, UNIX nanoseconds.
    pub published_at_ns: u64,
    /// The bundle's bytes.
    pub bytes: Vec<u8>,
}

/// The state beside the log. Get it from [`crate::Ledger::state`].
pub struct State {
    store: Arc<dyn LogStore>,
    /// Serializes writers.
    lock: Mutex<()>,
}

fn policy_key(version: &str) -> Vec<u8> {
    let mut k = vec![POLICY];
    k.extend_from_slice(version.as_bytes());
    k
}

fn caller_key(name: &str) -> Vec<u8> {
    let mut k = vec![CALLER];
    k.extend_from_slice(name.as_bytes());
    k
}

fn decode(version: &[u8], value: &[u8]) -> Result<PublishedPolicy, Error> {
    let corrupt = || Error::Corrupt("malformed policy record".into());
    let version = String::from_utf8(version.to_vec()).map_err(|_| corrupt())?;
    let at = value.get(..8).ok_or_else(corrupt)?;
    Ok(PublishedPolicy {
        version,
        published_at_ns: u64::from_be_bytes(at.try_into().expect("8 bytes")),
        bytes: value[8..].to_vec(),
    })
}

impl State {
    pub(crate) fn new(store: Arc<dyn LogStore>) -> State {
        State {
            store,
            lock: Mutex::new(()),
        }
    }

    /// Stores bundle `bytes` as `version`, durably. Publishing a version that
    /// exists keeps the original (versions are content digests, so the bytes
    /// mean the same policy) and returns false.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn publish_policy(&self, version: &str, bytes: &[u8], now_ns: u64) -> Result<bool, Error> {
        let key = policy_key(version);
        let _guard = self.lock.lock().expect("state lock");
        if self.store.state_get(&key)?.is_some() {
            return Ok(false);
        }
        let mut value = now_ns.to_be_bytes().to_vec();
        value.extend_from_slice(bytes);
        self.store.state_put(&[(&key, &value)])?;
        Ok(true)
    }

    /// The bundle published as `version`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy(&self, version: &str) -> Result<Option<PublishedPolicy>, Error> {
        self.store
            .state_get(&policy_key(version))?
            .map(|v| decode(version.as_bytes(), &v))
            .transpose()
    }

    /// Every published bundle's version and publication time, by version.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy_versions(&self) -> Result<Vec<(String, u64)>, Error> {
        self.store
            .state_scan(&[POLICY])?
            .into_iter()
            .map(|(k, v)| {
                let p = decode(&k[1..], v.get(..8).unwrap_or(&[]))?;
                Ok((p.version, p.published_at_ns))
            })
            .collect()
    }

    /// Makes `version` the active policy, durably and atomically.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it was never published; a storage error.
    pub fn activate_policy(&self, version: &str) -> Result<(), Error> {
        let _guard = self.lock.lock().expect("state lock");
        if self.store.state_get(&policy_key(version))?.is_none() {
            return Err(Error::NotFound(format!(
                "policy version {version} is not published"
            )));
        }
        self.store.state_put(&[(ACTIVE_POLICY, version.as_bytes())])
    }

    /// Makes `version` the shadow policy (`None`: no shadow), durably.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it was never published; a storage error.
    pub fn shadow_policy_set(&self, version: Option<&str>) -> Result<(), Error> {
        let _guard = self.lock.lock().expect("state lock");
        if let Some(v) = version {
            if self.store.state_get(&policy_key(v))?.is_none() {
                return Err(Error::NotFound(format!(
                    "policy version {v} is not published"
                )));
            }
        }
        self.store
            .state_put(&[(SHADOW_POLICY, version.unwrap_or("").as_bytes())])
    }

    /// Replaces approval request `id`'s record with `record`, durably, only
    /// if it is still `expected` (`None`: there is none): whether it did.
    /// Atomic across every gate of a shared log (compare-and-swap in the
    /// store), so two votes on two gates never overwrite each other.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn swap_approval(
        &self,
        id: &str,
        expected: Option<&[u8]>,
        record: &[u8],
    ) -> Result<bool, Error> {
        let _guard = self.lock.lock().expect("state lock");
        self.store.state_swap(&approval_key(id), expected, record)
    }

    /// Approval request `id`'s record.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn approval(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        self.store.state_get(&approval_key(id))
    }

    /// Every approval request's record, by id.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn approvals(&self) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self
            .store
            .state_scan(&[APPROVAL])?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// The shadow policy version, if one is set.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn shadow_policy(&self) -> Result<Option<String>, Error> {
        match self.store.state_get(SHADOW_POLICY)? {
            Some(v) if !v.is_empty() => String::from_utf8(v)
                .map(Some)
                .map_err(|_| Error::Corrupt("shadow policy is not UTF-8".into())),
            _ => Ok(None),
        }
    }

    /// Stores the record of caller `name`, durably. With `create`, a caller
    /// of that name must not exist yet (returns false and writes nothing if
    /// it does); without, it must exist.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] updating a caller that does not exist; a storage error.
    pub fn put_caller(&self, name: &str, record: &[u8], create: bool) -> Result<bool, Error> {
        let key = caller_key(name);
        let _guard = self.lock.lock().expect("state lock");
        let exists = self.store.state_get(&key)?.is_some();
        if create && exists {
            return Ok(false);
        }
        if !create && !exists {
            return Err(Error::NotFound(format!("no caller {name:?}")));
        }
        self.store.state_put(&[(&key, record)])?;
        Ok(true)
    }

    /// The record of caller `name`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn caller(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.store.state_get(&caller_key(name))
    }

    /// Every caller's name and record, by name.
    ///
    /// # Errors
    ///
    /// A storage error, or a name that is not UTF-8.
    pub fn callers(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.store
            .state_scan(&[CALLER])?
            .into_iter()
            .map(|(k, v)| {
                let name = String::from_utf8(k[1..].to_vec())
                    .map_err(|_| Error::Corrupt("a caller name is not UTF-8".into()))?;
                Ok((name, v))
            })
            .collect()
    }

    /// The active policy version, if one was activated.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn active_policy(&self) -> Result<Option<String>, Error> {
        self.store
            .state_get(ACTIVE_POLICY)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt("active policy is not UTF-8".into()))
            })
            .transpose()
    }

    /// Records `note`, a checkpoint cosigned to the witness quorum, for the
    /// other gates on a shared log to serve.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_cosigned(&self, note: &str) -> Result<(), Error> {
        let _guard = self.lock.lock().expect("state lock");
        self.store.state_put(&[(COSIGNED, note.as_bytes())])
    }

    /// The newest cosigned checkpoint recorded (see [`State::set_cosigned`]).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn cosigned(&self) -> Result<Option<String>, Error> {
        self.store
            .state_get(COSIGNED)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt("cosigned checkpoint is not UTF-8".into()))
            })
            .transpose()
    }

    /// Records the gate's signed snapshot of what the log's governance
    /// entries say up to some size (opaque here; the gate signs and checks
    /// it), so a restart folds only the entries after it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_governed(&self, note: &[u8]) -> Result<(), Error> {
        let _guard = self.lock.lock().expect("state lock");
        self.store.state_put(&[(GOVERNED, note)])
    }

    /// The snapshot recorded by [`State::set_governed`], if any.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn governed(&self) -> Result<Option<Vec<u8>>, Error> {
        self.store.state_get(GOVERNED)
    }
}
