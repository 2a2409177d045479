//! The gate's records beside the log, typed: what it keeps in the ledger's
//! namespaced key-value state ([`ledger::State`], which knows nothing of
//! what they mean). What the gate relies on is the log (`governed.rs`);
//! these are its mirror and its stores of bytes too large for an entry.
//!
//! | namespace ‖ key   | value                                              |
//! |-------------------|----------------------------------------------------|
//! | `p` ‖ version     | published-at (u64 BE UNIX ns) ‖ bundle bytes       |
//! | `a`               | the active policy version                          |
//! | `s`               | the shadow policy version (empty: none)            |
//! | `r` ‖ approval id | an approval request and its votes (`protocol::ApprovalRecord` JSON) |
//! | `k` ‖ caller name | the caller's record (`protocol::Caller` JSON)      |
//! | `w`               | the newest checkpoint cosigned to the witness quorum (note text) |
//! | `g`               | the gate's signed snapshot of what the log's governance entries say (note text) |
//! | `t` ‖ version     | published-at (u64 BE UNIX ns) ‖ a surface contract's canonical JSON |
//! | `o` ‖ receipt id ‖ 0x00 ‖ field | the opening of a committed field (`protocol::Opening` JSON) |
//!
//! The keys and values up to `g` are those the ledger kept itself before (a
//! data directory or database written then reads the same). Which surface
//! contract is active has no record: only the log says it (`governed.rs`).

use ledger::{Error, Namespace, State};

const POLICY: Namespace = Namespace::new(b'p');
const ACTIVE_POLICY: Namespace = Namespace::new(b'a');
const SHADOW_POLICY: Namespace = Namespace::new(b's');
const APPROVAL: Namespace = Namespace::new(b'r');
const CALLER: Namespace = Namespace::new(b'k');
const COSIGNED: Namespace = Namespace::new(b'w');
const GOVERNED: Namespace = Namespace::new(b'g');
const CONTRACT: Namespace = Namespace::new(b't');
const OPENING: Namespace = Namespace::new(b'o');

fn opening_key(receipt_id: &str, field: &str) -> Vec<u8> {
    [receipt_id.as_bytes(), b"\0", field.as_bytes()].concat()
}

/// A published policy bundle (or surface contract).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedPolicy {
    /// Its version (content digest).
    pub version: String,
    /// When it was first published, UNIX nanoseconds.
    pub published_at_ns: u64,
    /// The bundle's (contract's) bytes.
    pub bytes: Vec<u8>,
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

fn utf8(v: Vec<u8>, what: &str) -> Result<String, Error> {
    String::from_utf8(v).map_err(|_| Error::Corrupt(format!("{what} is not UTF-8")))
}

/// The gate's records in `state`.
#[derive(Clone, Copy)]
pub struct Records<'a>(pub &'a State);

impl crate::Gate {
    /// This gate's records (in its ledger's state).
    pub(crate) fn records(&self) -> Records<'_> {
        Records(self.ledger.state())
    }
}

impl Records<'_> {
    /// Stores bundle `bytes` as `version`, durably. Publishing a version that
    /// exists keeps the original (versions are content digests, so the bytes
    /// mean the same policy) and returns false.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn publish_policy(&self, version: &str, bytes: &[u8], now_ns: u64) -> Result<bool, Error> {
        self.publish(POLICY, version, bytes, now_ns)
    }

    /// The bundle published as `version`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy(&self, version: &str) -> Result<Option<PublishedPolicy>, Error> {
        self.published(POLICY, version)
    }

    /// Every published bundle's version and publication time, by version.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn policy_versions(&self) -> Result<Vec<(String, u64)>, Error> {
        self.versions(POLICY)
    }

    /// Stores `bytes` as `version` in `ns` (published-at ‖ bytes), durably;
    /// false (and the original kept) if that version exists: versions are
    /// content digests.
    fn publish(
        &self,
        ns: Namespace,
        version: &str,
        bytes: &[u8],
        now_ns: u64,
    ) -> Result<bool, Error> {
        self.0.exclusive(|s| {
            if s.get(ns, version.as_bytes())?.is_some() {
                return Ok(false);
            }
            let mut value = now_ns.to_be_bytes().to_vec();
            value.extend_from_slice(bytes);
            s.put(ns, version.as_bytes(), &value)?;
            Ok(true)
        })
    }

    /// What was published as `version` in `ns`.
    fn published(&self, ns: Namespace, version: &str) -> Result<Option<PublishedPolicy>, Error> {
        self.0
            .get(ns, version.as_bytes())?
            .map(|v| decode(version.as_bytes(), &v))
            .transpose()
    }

    /// Every version published in `ns` and when, by version.
    fn versions(&self, ns: Namespace) -> Result<Vec<(String, u64)>, Error> {
        self.0
            .scan(ns)?
            .into_iter()
            .map(|(k, v)| {
                let p = decode(&k, v.get(..8).unwrap_or(&[]))?;
                Ok((p.version, p.published_at_ns))
            })
            .collect()
    }

    /// Makes `version` the active policy, durably.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it was never published; a storage error.
    pub fn activate_policy(&self, version: &str) -> Result<(), Error> {
        self.0.exclusive(|s| {
            if s.get(POLICY, version.as_bytes())?.is_none() {
                return Err(Error::NotFound(format!(
                    "policy version {version} is not published"
                )));
            }
            s.put(ACTIVE_POLICY, b"", version.as_bytes())
        })
    }

    /// The active policy version, if one was activated.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn active_policy(&self) -> Result<Option<String>, Error> {
        self.0
            .get(ACTIVE_POLICY, b"")?
            .map(|v| utf8(v, "the active policy"))
            .transpose()
    }

    /// Makes `version` the shadow policy (`None`: no shadow), durably.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if it was never published; a storage error.
    pub fn set_shadow_policy(&self, version: Option<&str>) -> Result<(), Error> {
        self.0.exclusive(|s| {
            if let Some(v) = version {
                if s.get(POLICY, v.as_bytes())?.is_none() {
                    return Err(Error::NotFound(format!(
                        "policy version {v} is not published"
                    )));
                }
            }
            s.put(SHADOW_POLICY, b"", version.unwrap_or("").as_bytes())
        })
    }

    /// The shadow policy version, if one is set.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn shadow_policy(&self) -> Result<Option<String>, Error> {
        match self.0.get(SHADOW_POLICY, b"")? {
            Some(v) if !v.is_empty() => utf8(v, "the shadow policy").map(Some),
            _ => Ok(None),
        }
    }

    /// Stores a surface contract's canonical bytes as `version`, durably;
    /// false (and the original kept) if that version exists.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn publish_contract(
        &self,
        version: &str,
        bytes: &[u8],
        now_ns: u64,
    ) -> Result<bool, Error> {
        self.publish(CONTRACT, version, bytes, now_ns)
    }

    /// The surface contract published as `version` (bytes and publication time).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn contract(&self, version: &str) -> Result<Option<PublishedPolicy>, Error> {
        self.published(CONTRACT, version)
    }

    /// Every published surface contract's version and publication time.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn contract_versions(&self) -> Result<Vec<(String, u64)>, Error> {
        self.versions(CONTRACT)
    }

    /// Stores the openings of a receipt's committed fields, durably.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn put_openings(
        &self,
        receipt_id: &str,
        openings: &protocol::Openings,
    ) -> Result<(), Error> {
        self.0.exclusive(|s| {
            for (field, o) in openings {
                let value = serde_json::to_vec(o).expect("serializable");
                s.put(OPENING, &opening_key(receipt_id, field), &value)?;
            }
            Ok(())
        })
    }

    /// The openings the store still holds of `fields` of a receipt.
    ///
    /// # Errors
    ///
    /// A storage error, or a stored opening that does not parse.
    pub fn openings(
        &self,
        receipt_id: &str,
        fields: &[String],
    ) -> Result<protocol::Openings, Error> {
        let mut out = protocol::Openings::new();
        for field in fields {
            if let Some(v) = self.0.get(OPENING, &opening_key(receipt_id, field))? {
                let o = serde_json::from_slice(&v).map_err(|e| {
                    Error::Corrupt(format!("the opening of {field} of {receipt_id}: {e}"))
                })?;
                out.insert(field.clone(), o);
            }
        }
        Ok(out)
    }

    /// Erases the opening of `field` of a receipt: gone from the store's
    /// files, not only unreachable ([`State::erase`]).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn erase_opening(&self, receipt_id: &str, field: &str) -> Result<(), Error> {
        self.0.erase(OPENING, &opening_key(receipt_id, field))
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
        self.0.swap(APPROVAL, id.as_bytes(), expected, record)
    }

    /// Approval request `id`'s record.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn approval(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(APPROVAL, id.as_bytes())
    }

    /// Every approval request's record, by id.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn approvals(&self) -> Result<Vec<Vec<u8>>, Error> {
        Ok(self.0.scan(APPROVAL)?.into_iter().map(|(_, v)| v).collect())
    }

    /// Stores the record of caller `name`, durably. With `create`, a caller
    /// of that name must not exist yet (returns false and writes nothing if
    /// it does); without, it must exist.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] updating a caller that does not exist; a storage error.
    pub fn put_caller(&self, name: &str, record: &[u8], create: bool) -> Result<bool, Error> {
        self.0.exclusive(|s| {
            let exists = s.get(CALLER, name.as_bytes())?.is_some();
            if create && exists {
                return Ok(false);
            }
            if !create && !exists {
                return Err(Error::NotFound(format!("no caller {name:?}")));
            }
            s.put(CALLER, name.as_bytes(), record)?;
            Ok(true)
        })
    }

    /// The record of caller `name`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn caller(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(CALLER, name.as_bytes())
    }

    /// Every caller's name and record, by name.
    ///
    /// # Errors
    ///
    /// A storage error, or a name that is not UTF-8.
    pub fn callers(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.0
            .scan(CALLER)?
            .into_iter()
            .map(|(k, v)| Ok((utf8(k, "a caller name")?, v)))
            .collect()
    }

    /// Records `note`, a checkpoint cosigned to the witness quorum, for the
    /// other gates on a shared log to serve.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_cosigned(&self, note: &str) -> Result<(), Error> {
        self.0.put(COSIGNED, b"", note.as_bytes())
    }

    /// The newest cosigned checkpoint recorded (see [`Records::set_cosigned`]).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn cosigned(&self) -> Result<Option<String>, Error> {
        self.0
            .get(COSIGNED, b"")?
            .map(|v| utf8(v, "the cosigned checkpoint"))
            .transpose()
    }

    /// Records the gate's signed snapshot of what the log's governance
    /// entries say up to some size, so a restart folds only the entries
    /// after it.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn set_governed(&self, note: &[u8]) -> Result<(), Error> {
        self.0.put(GOVERNED, b"", note)
    }

    /// The snapshot recorded by [`Records::set_governed`], if any.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn governed(&self) -> Result<Option<Vec<u8>>, Error> {
        self.0.get(GOVERNED, b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Gate};

    fn ledger_of(dir: &std::path::Path) -> ledger::Ledger {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let config = Config {
            data_dir: dir.to_path_buf(),
            example_policy: false,
            ..Config::default()
        };
        Gate::open(&config).unwrap().gate.ledger.clone()
    }

    /// Publishing, activating and the shadow, and reading them back after a
    /// reopen; a version never published cannot be made active or shadow.
    #[test]
    fn policies_publish_activate_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let l = ledger_of(dir.path());
            let r = Records(l.state());
            assert_eq!(r.active_policy().unwrap(), None);
            assert!(r.publish_policy("sha256:aa", b"bundle a", 5).unwrap());
            assert!(
                !r.publish_policy("sha256:aa", b"other bytes", 6).unwrap(),
                "first publication wins"
            );
            assert!(r.publish_policy("sha256:bb", b"bundle b", 7).unwrap());
            assert!(matches!(
                r.activate_policy("sha256:cc"),
                Err(Error::NotFound(_))
            ));
            assert!(matches!(
                r.set_shadow_policy(Some("sha256:cc")),
                Err(Error::NotFound(_))
            ));
            r.activate_policy("sha256:aa").unwrap();
            r.activate_policy("sha256:bb").unwrap();
            r.set_shadow_policy(Some("sha256:aa")).unwrap();
        }
        let l = ledger_of(dir.path());
        let r = Records(l.state());
        assert_eq!(r.active_policy().unwrap().as_deref(), Some("sha256:bb"));
        assert_eq!(r.shadow_policy().unwrap().as_deref(), Some("sha256:aa"));
        let versions = r.policy_versions().unwrap();
        assert!(
            versions.contains(&("sha256:aa".to_string(), 5)),
            "{versions:?}"
        );
        assert!(
            versions.contains(&("sha256:bb".to_string(), 7)),
            "{versions:?}"
        );
        let a = r.policy("sha256:aa").unwrap().unwrap();
        assert_eq!(
            (a.bytes.as_slice(), a.published_at_ns),
            (&b"bundle a"[..], 5)
        );
        assert_eq!(r.policy("sha256:zz").unwrap(), None);
        r.set_shadow_policy(None).unwrap();
        assert_eq!(r.shadow_policy().unwrap(), None);
    }
}
