//! Callers: the authenticated principals that may use the gate.
//!
//! A caller has a name, roles (`decide`, `read`, `approve`, `admin`), the
//! actors it may speak for (exact ids and `prefix*` patterns) and a bearer
//! token. Tokens are 256 random bits, shown once (at creation or rotation),
//! stored only as their SHA-256, and never logged. Records live in the
//! ledger's [`ledger::State`] (durable, survive restarts); this module keeps
//! the live ones in memory, indexed by token digest.
//!
//! Looking a token up by its SHA-256 leaks nothing about stored tokens
//! through timing (an attacker would need digest preimages); the final
//! comparison of the two digests is constant-time anyway.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use ledger::Ledger;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::GateError;

/// What a caller may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Ask for decisions (`POST /v1/decisions`).
    Decide,
    /// Read receipts, entry bundles, policy bundles; replay.
    Read,
    /// Approve or reject approval requests.
    Approve,
    /// The admin API: policies and callers.
    Admin,
    /// Redeem PERMITs at a tool's surface (`POST /v1/permits/{id}/redeem`).
    Redeem,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Decide => "decide",
            Role::Read => "read",
            Role::Approve => "approve",
            Role::Admin => "admin",
            Role::Redeem => "redeem",
        })
    }
}

/// A caller as stored (in the ledger's state) and listed (without the
/// token digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    /// Its name: `^[a-z0-9][a-z0-9_.-]{0,63}$`.
    pub name: String,
    /// What it may do.
    pub roles: BTreeSet<Role>,
    /// The actors it may speak for: exact ids, or `prefix*`.
    pub actors: Vec<String>,
    /// Hex SHA-256 of its current token.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub token_sha256: String,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// When its token was last rotated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<String>,
    /// When it was revoked; a revoked caller authenticates no more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl Caller {
    /// Whether it holds `role`.
    #[must_use]
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether it may speak for `actor`: an exact id, or a `prefix*` pattern
    /// whose prefix `actor` starts with.
    #[must_use]
    pub fn may_speak_for(&self, actor: &str) -> bool {
        self.actors.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => actor.starts_with(prefix),
            None => p == actor,
        })
    }

    /// The record without its token digest, for listing.
    #[must_use]
    pub fn public(&self) -> Caller {
        Caller {
            token_sha256: String::new(),
            ..self.clone()
        }
    }
}

/// Checks a caller name.
///
/// # Errors
///
/// [`GateError::BadInput`] saying what a name may be.
pub fn check_name(name: &str) -> Result<(), GateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(GateError::BadInput(format!(
            "caller name {name:?}: 1-64 of a-z 0-9 _ . -, starting with a letter or digit"
        )))
    }
}

/// Checks an actor pattern: an actor id (1-128 printable ASCII, no `*`), or
/// one followed by `*`, or `*` alone (any actor).
///
/// # Errors
///
/// [`GateError::BadInput`] naming the pattern.
pub fn check_actor_pattern(p: &str) -> Result<(), GateError> {
    let stem = p.strip_suffix('*').unwrap_or(p);
    let ok = (!stem.is_empty() || p == "*")
        && stem.len() <= protocol::MAX_ID_CHARS
        && stem.bytes().all(|b| b.is_ascii_graphic() && b != b'*');
    if ok {
        Ok(())
    } else {
        Err(GateError::BadInput(format!(
            "actor pattern {p:?}: an actor id (printable ASCII, up to {} characters), \
             optionally ending in *",
            protocol::MAX_ID_CHARS
        )))
    }
}

/// Records an admin change in the log before it takes effect: (action,
/// subject). Fails closed: if it fails, the change is not made.
pub(crate) type Record<'a> = &'a dyn Fn(&str, serde_json::Value) -> Result<(), GateError>;

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The live callers, by token digest.
pub(crate) struct Callers {
    by_digest: RwLock<HashMap<[u8; 32], Arc<Caller>>>,
    /// Serializes changes, so memory and the stored records agree.
    changes: Mutex<()>,
}

impl Callers {
    /// Loads every caller the ledger's state holds.
    pub(crate) fn load(ledger: &Ledger) -> Result<Callers, ledger::Error> {
        let callers = Callers {
            by_digest: RwLock::new(HashMap::new()),
            changes: Mutex::new(()),
        };
        for (name, bytes) in ledger.state().callers()? {
            let caller: Caller = serde_json::from_slice(&bytes).map_err(|e| {
                ledger::Error::Corrupt(format!("the record of caller {name:?}: {e}"))
            })?;
            callers.index(caller);
        }
        Ok(callers)
    }

    /// Reloads every caller from the ledger's state (a shared log: another
    /// gate may have added, rotated or revoked one). Returns whether
    /// anything changed.
    pub(crate) fn reload(&self, ledger: &Ledger) -> Result<bool, ledger::Error> {
        let _one_at_a_time = self.changes.lock().expect("callers lock");
        let fresh = Callers::load(ledger)?
            .by_digest
            .into_inner()
            .expect("callers lock");
        let mut map = self.by_digest.write().expect("callers lock");
        let same = map.len() == fresh.len()
            && fresh
                .iter()
                .all(|(d, c)| map.get(d).is_some_and(|m| m == c));
        if !same {
            *map = fresh;
        }
        Ok(!same)
    }

    /// Puts a live caller in the index (a revoked one is left out).
    fn index(&self, caller: Caller) {
        let mut map = self.by_digest.write().expect("callers lock");
        map.retain(|_, c| c.name != caller.name);
        if caller.revoked_at.is_some() {
            return;
        }
        let mut d = [0u8; 32];
        if hex::decode_to_slice(&caller.token_sha256, &mut d).is_ok() {
            map.insert(d, Arc::new(caller));
        }
    }

    /// The live caller whose token this is.
    pub(crate) fn authenticate(&self, token: &str) -> Option<Arc<Caller>> {
        let d = digest(token);
        let map = self.by_digest.read().expect("callers lock");
        let (stored, caller) = map.get_key_value(&d)?;
        bool::from(stored.ct_eq(&d)).then(|| caller.clone())
    }

    /// The live (not revoked) caller named `name`.
    pub(crate) fn live(&self, name: &str) -> Option<Arc<Caller>> {
        let map = self.by_digest.read().expect("callers lock");
        map.values().find(|c| c.name == name).cloned()
    }

    /// Whether any caller was ever added.
    pub(crate) fn any(ledger: &Ledger) -> Result<bool, ledger::Error> {
        Ok(!ledger.state().callers()?.is_empty())
    }

    /// Adds a caller with a new token; returns it and the token (the only
    /// time the token is shown).
    pub(crate) fn add(
        &self,
        ledger: &Ledger,
        record: Record<'_>,
        name: &str,
        roles: BTreeSet<Role>,
        actors: Vec<String>,
        now: &str,
    ) -> Result<(Caller, String), GateError> {
        check_name(name)?;
        for a in &actors {
            check_actor_pattern(a)?;
        }
        if roles.is_empty() {
            return Err(GateError::BadInput(
                "a caller needs at least one role (decide, read, approve, admin)".into(),
            ));
        }
        let token = keyfile::new_token();
        let caller = Caller {
            name: name.to_string(),
            roles,
            actors,
            token_sha256: hex::encode(digest(&token)),
            created_at: now.to_string(),
            rotated_at: None,
            revoked_at: None,
        };
        let _one_at_a_time = self.changes.lock().expect("callers lock");
        if ledger.state().caller(name)?.is_some() {
            return Err(GateError::BadInput(format!(
                "a caller named {name:?} exists (rotate its token, or revoke it)"
            )));
        }
        record(
            "caller.add",
            serde_json::json!({"name": name, "roles": caller.roles, "actors": caller.actors}),
        )?;
        let bytes = serde_json::to_vec(&caller).expect("serializable");
        if !ledger.state().put_caller(name, &bytes, true)? {
            return Err(GateError::Internal(format!(
                "caller {name:?} appeared while it was being added"
            )));
        }
        self.index(caller.clone());
        Ok((caller.public(), token))
    }

    /// Revokes caller `name`: it authenticates no more, its record stays.
    pub(crate) fn revoke(
        &self,
        ledger: &Ledger,
        record: Record<'_>,
        name: &str,
        now: &str,
    ) -> Result<Caller, GateError> {
        self.change(ledger, record, "caller.revoke", name, |c| {
            if c.revoked_at.is_none() {
                c.revoked_at = Some(now.to_string());
            }
        })
        .map(|c| c.public())
    }

    /// Gives caller `name` a new token (the old one stops working); returns
    /// the caller and the new token.
    pub(crate) fn rotate(
        &self,
        ledger: &Ledger,
        record: Record<'_>,
        name: &str,
        now: &str,
    ) -> Result<(Caller, String), GateError> {
        let token = keyfile::new_token();
        let caller = self.change(ledger, record, "caller.rotate", name, |c| {
            c.token_sha256 = hex::encode(digest(&token));
            c.rotated_at = Some(now.to_string());
        })?;
        if caller.revoked_at.is_some() {
            return Err(GateError::BadInput(format!(
                "caller {name:?} is revoked; add a new caller instead"
            )));
        }
        Ok((caller.public(), token))
    }

    /// Applies `f` to the stored record of `name`: recorded in the log as
    /// `action`, then durably in the state, then in memory. A revoked caller
    /// is left as it is (and nothing is recorded).
    fn change(
        &self,
        ledger: &Ledger,
        record: Record<'_>,
        action: &str,
        name: &str,
        f: impl FnOnce(&mut Caller),
    ) -> Result<Caller, GateError> {
        let _one_at_a_time = self.changes.lock().expect("callers lock");
        let bytes = ledger
            .state()
            .caller(name)?
            .ok_or_else(|| GateError::NotFound(format!("no caller {name:?}")))?;
        let mut caller: Caller = serde_json::from_slice(&bytes)
            .map_err(|e| GateError::Internal(format!("the record of caller {name:?}: {e}")))?;
        if caller.revoked_at.is_some() {
            return Ok(caller);
        }
        record(action, serde_json::json!({ "name": name }))?;
        f(&mut caller);
        let bytes = serde_json::to_vec(&caller).expect("serializable");
        ledger.state().put_caller(name, &bytes, false)?;
        self.index(caller.clone());
        Ok(caller)
    }

    /// Every caller, by name, without token digests.
    pub(crate) fn list(ledger: &Ledger) -> Result<Vec<Caller>, GateError> {
        ledger
            .state()
            .callers()?
            .into_iter()
            .map(|(name, bytes)| {
                serde_json::from_slice::<Caller>(&bytes)
                    .map(|c| c.public())
                    .map_err(|e| GateError::Internal(format!("the record of caller {name:?}: {e}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::{check_actor_pattern, check_name, Caller, Role};

    #[test]
    fn actor_patterns_bind_exact_ids_and_prefixes() {
        let c = Caller {
            name: "agent-sdk".into(),
            roles: [Role::Decide].into(),
            actors: vec!["agent-treasury".into(), "team-a/*".into()],
            token_sha256: String::new(),
            created_at: String::new(),
            rotated_at: None,
            revoked_at: None,
        };
        assert!(c.may_speak_for("agent-treasury"));
        assert!(!c.may_speak_for("agent-treasury2"));
        assert!(c.may_speak_for("team-a/x"));
        assert!(!c.may_speak_for("team-b/x"));
        assert!(!c.may_speak_for("agent-deployer"));
        for ok in ["a", "agent-*", "*", "x.y/z"] {
            check_actor_pattern(ok).unwrap();
        }
        for bad in ["", "a*b*", "**", "a b", "é"] {
            assert!(check_actor_pattern(bad).is_err(), "{bad:?}");
        }
        for ok in ["demo", "a", "mcp-gateway.1"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "Demo", "-a", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
