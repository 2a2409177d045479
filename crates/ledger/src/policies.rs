//! The policy bundle store: published bundles by version (immutable, kept
//! forever for replay) and the one active version.
//!
//! Bundles are opaque bytes here; the gate parses them (the `policy` crate)
//! and names them by content digest before storing. Every write is synced.

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};

use crate::store::{key_bytes, ACTIVE_POLICY, POLICY};
use crate::{Error, Ledger};

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

fn synced() -> WriteOptions {
    let mut wo = WriteOptions::default();
    wo.set_sync(true);
    wo
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

impl Ledger {
    /// Stores bundle `bytes` as `version`, durably. Publishing a version that
    /// exists keeps the original (versions are content digests, so the bytes
    /// mean the same policy) and returns false.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn publish_policy(&self, version: &str, bytes: &[u8], now_ns: u64) -> Result<bool, Error> {
        let db = self.shared.store.db();
        let key = key_bytes(POLICY, version.as_bytes());
        // One publisher at a time, so the check and the write cannot interleave.
        let _guard = self.shared.policy_lock.lock().expect("policy lock");
        if db.get_pinned(&key)?.is_some() {
            return Ok(false);
        }
        let mut value = now_ns.to_be_bytes().to_vec();
        value.extend_from_slice(bytes);
        db.put_opt(key, value, &synced())?;
        Ok(true)
    }

    /// The bundle published as `version`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy(&self, version: &str) -> Result<Option<PublishedPolicy>, Error> {
        let db = self.shared.store.db();
        db.get(key_bytes(POLICY, version.as_bytes()))?
            .map(|v| decode(version.as_bytes(), &v))
            .transpose()
    }

    /// Every published bundle's version and publication time, by version.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy_versions(&self) -> Result<Vec<(String, u64)>, Error> {
        let db = self.shared.store.db();
        let mut out = Vec::new();
        for kv in db.iterator(IteratorMode::From(&[POLICY], Direction::Forward)) {
            let (k, v) = kv?;
            if k.first() != Some(&POLICY) {
                break;
            }
            let p = decode(&k[1..], v.get(..8).unwrap_or(&[]))?;
            out.push((p.version, p.published_at_ns));
        }
        Ok(out)
    }

    /// Makes `version` the active policy, durably and atomically.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it was never published; a storage error.
    pub fn activate_policy(&self, version: &str) -> Result<(), Error> {
        let db = self.shared.store.db();
        let _guard = self.shared.policy_lock.lock().expect("policy lock");
        if db
            .get_pinned(key_bytes(POLICY, version.as_bytes()))?
            .is_none()
        {
            return Err(Error::NotFound(format!(
                "policy version {version} is not published"
            )));
        }
        let mut wb = WriteBatch::default();
        wb.put(ACTIVE_POLICY, version.as_bytes());
        db.write_opt(wb, &synced())?;
        Ok(())
    }

    /// The active policy version, if one was activated.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn active_policy(&self) -> Result<Option<String>, Error> {
        let db = self.shared.store.db();
        db.get(ACTIVE_POLICY)?
            .map(|v| {
                String::from_utf8(v)
                    .map_err(|_| Error::Corrupt("active policy is not UTF-8".into()))
            })
            .transpose()
    }
}
