//! Callers: the authenticated principals that may use the gate.
//!
//! A caller has a name, roles (`decide`, `read`, `approve`, `admin`), the
//! actors it may speak for (exact ids and `prefix*` patterns) and a bearer
//! token. Tokens are 256 random bits, shown once (at creation or rotation),
//! kept only as their SHA-256, and never logged. A caller is what the log's
//! governance entries say (`caller.add`, `caller.rotate` and `caller.attest`
//! carry the token's SHA-256, `caller.revoke` ends it; `governed.rs` reads
//! them); the ledger's [`ledger::State`] keeps a record of each beside the
//! log, which the gate compares with the log but never relies on. This
//! module keeps the live ones in memory, indexed by token digest.
//!
//! Looking a token up by its SHA-256 leaks nothing about stored tokens
//! through timing (an attacker would need digest preimages); the final
//! comparison of the two digests is constant-time anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Gate, GateError};

pub use protocol::{Caller, CallerList, Role};

/// A caller authorized for one role, and how it authenticated (receipts
/// record it). Only the gate's authentication makes one (there is no public
/// constructor), and the entry points that decide or evaluate take one, so
/// no path into them — HTTP, AuthZEN, a gateway running the gate in its
/// process — can skip the role check.
#[derive(Clone, Debug)]
pub struct Authorized {
    caller: Arc<Caller>,
    via: &'static str,
    role: Role,
    /// The principal the caller says it acts for (recorded, granting
    /// nothing: the caller still speaks only for its own actors).
    on_behalf_of: Option<Arc<protocol::OnBehalfOf>>,
}

impl Authorized {
    /// Authorizes `caller` (live, as just looked up) for `role`.
    pub(crate) fn new(
        caller: Arc<Caller>,
        via: &'static str,
        role: Role,
    ) -> Result<Authorized, GateError> {
        if caller.has(role) {
            Ok(Authorized {
                caller,
                via,
                role,
                on_behalf_of: None,
            })
        } else {
            Err(GateError::Forbidden(format!(
                "caller {} lacks the {role} role",
                caller.name
            )))
        }
    }

    /// The caller.
    #[must_use]
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// How it authenticated: `token`, `mtls`, `peer_uid`, `in_process`.
    #[must_use]
    pub fn via(&self) -> &'static str {
        self.via
    }

    /// The role it was authorized for.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// The same caller, saying it acts for `principal`, which it
    /// authenticated itself (the MCP gateway, for an OAuth client):
    /// receipts record it as `derived.caller.on_behalf_of`. It grants
    /// nothing, so anyone may say it; what it is worth is the caller's word.
    #[must_use]
    pub fn on_behalf_of(self, principal: protocol::OnBehalfOf) -> Authorized {
        Authorized {
            on_behalf_of: Some(Arc::new(principal)),
            ..self
        }
    }

    /// The principal the caller says it acts for, if any.
    #[must_use]
    pub fn principal(&self) -> Option<&protocol::OnBehalfOf> {
        self.on_behalf_of.as_deref()
    }

    /// The caller and how it authenticated.
    pub(crate) fn into_parts(self) -> (Arc<Caller>, &'static str) {
        (self.caller, self.via)
    }

    /// `Ok` if it was authorized for `role`, else 403.
    pub(crate) fn require(&self, role: Role) -> Result<(), GateError> {
        if self.role == role {
            Ok(())
        } else {
            Err(GateError::Forbidden(format!(
                "caller {} was authorized for {}, not {role}",
                self.caller.name, self.role
            )))
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

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The live callers, by token digest: an index of what the log says
/// (`governed.rs`), rebuilt whenever that changes.
pub(crate) struct Callers {
    by_digest: RwLock<HashMap<[u8; 32], Arc<Caller>>>,
    /// Serializes this gate's changes to callers.
    changes: Mutex<()>,
}

impl Callers {
    pub(crate) fn new() -> Callers {
        Callers {
            by_digest: RwLock::new(HashMap::new()),
            changes: Mutex::new(()),
        }
    }

    /// Indexes the live callers of `all` (what the log says), replacing
    /// the index.
    pub(crate) fn set(&self, all: &BTreeMap<String, Caller>) {
        let mut map = HashMap::new();
        for caller in all.values().filter(|c| c.revoked_at.is_none()) {
            let mut d = [0u8; 32];
            if hex::decode_to_slice(&caller.token_sha256, &mut d).is_ok() {
                map.insert(d, Arc::new(caller.clone()));
            }
        }
        *self.by_digest.write().expect("callers lock") = map;
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
}

/// Caller changes: each a governance entry in the log first (carrying the
/// new token's SHA-256, so a gate takes the grant from the log alone), then
/// the store's record (a mirror for people and tools), then the log read to
/// that entry, which is what indexes the change.
impl Gate {
    /// Adds a caller with a new token; returns it and the token (the only
    /// time the token is shown). Blocking.
    pub(crate) fn add_caller(
        &self,
        by: &str,
        name: &str,
        roles: BTreeSet<Role>,
        actors: Vec<String>,
    ) -> Result<(Caller, String), GateError> {
        check_name(name)?;
        for a in &actors {
            check_actor_pattern(a)?;
        }
        if roles.is_empty() {
            return Err(GateError::BadInput(
                "a caller needs at least one role (decide, read, approve, admin, redeem)".into(),
            ));
        }
        let token = keyfile::new_token();
        let token_sha256 = hex::encode(digest(&token));
        let _one_at_a_time = self.auth.callers.changes.lock().expect("callers lock");
        self.read_log()?;
        if self.governance.with(|g| g.callers.contains_key(name)) {
            return Err(GateError::BadInput(format!(
                "a caller named {name:?} exists (rotate its token, or revoke it)"
            )));
        }
        self.record_blocking(
            protocol::GovernanceAction::CallerAdd,
            by,
            serde_json::json!({
                "name": name, "roles": roles, "actors": actors, "token_sha256": token_sha256,
            }),
        )?;
        let caller = self.caller_logged(name)?;
        if caller.token_sha256 != token_sha256 {
            return Err(GateError::BadInput(format!(
                "caller {name:?} was added by another gate at the same time; this token is not its"
            )));
        }
        self.mirror(&caller)?;
        Ok((caller.public(), token))
    }

    /// Revokes caller `name`: it authenticates no more, its record stays.
    /// Blocking.
    pub(crate) fn revoke_caller(&self, by: &str, name: &str) -> Result<Caller, GateError> {
        self.change_caller(
            by,
            protocol::GovernanceAction::CallerRevoke,
            name,
            serde_json::json!({ "name": name }),
        )
        .map(|c| c.public())
    }

    /// Gives caller `name` a new token (the old one stops working); returns
    /// the caller and the new token. Blocking.
    pub(crate) fn rotate_caller(
        &self,
        by: &str,
        name: &str,
    ) -> Result<(Caller, String), GateError> {
        let token = keyfile::new_token();
        let token_sha256 = hex::encode(digest(&token));
        let subject = serde_json::json!({ "name": name, "token_sha256": token_sha256 });
        let caller =
            self.change_caller(by, protocol::GovernanceAction::CallerRotate, name, subject)?;
        if caller.revoked_at.is_some() {
            return Err(GateError::BadInput(format!(
                "caller {name:?} is revoked; add a new caller instead"
            )));
        }
        if caller.token_sha256 != token_sha256 {
            return Err(GateError::BadInput(format!(
                "caller {name:?} was changed by another gate at the same time; this token is not its"
            )));
        }
        Ok((caller.public(), token))
    }

    /// Records `action` on caller `name` and returns the caller as the log
    /// then says. A revoked caller is left as it is (nothing is recorded).
    fn change_caller(
        &self,
        by: &str,
        action: protocol::GovernanceAction,
        name: &str,
        subject: serde_json::Value,
    ) -> Result<Caller, GateError> {
        let _one_at_a_time = self.auth.callers.changes.lock().expect("callers lock");
        let caller = self.caller_logged(name)?;
        if caller.revoked_at.is_some() {
            return Ok(caller);
        }
        self.record_blocking(action, by, subject)?;
        let caller = self.caller_logged(name)?;
        self.mirror(&caller)?;
        Ok(caller)
    }

    /// Caller `name` as the log says, read to its latest checkpoint.
    fn caller_logged(&self, name: &str) -> Result<Caller, GateError> {
        self.read_log()?;
        self.governance
            .with(|g| g.callers.get(name).cloned())
            .ok_or_else(|| GateError::NotFound(format!("no caller {name:?}")))
    }

    /// Writes the store's record of `caller` (what the log says).
    fn mirror(&self, caller: &Caller) -> Result<(), GateError> {
        let bytes = serde_json::to_vec(caller).expect("serializable");
        let state = self.records();
        if !state.put_caller(&caller.name, &bytes, true)? {
            state.put_caller(&caller.name, &bytes, false)?;
        }
        Ok(())
    }

    /// Every caller, by name, without token digests: what the log says.
    pub(crate) fn list_callers(&self) -> Vec<Caller> {
        self.governance
            .with(|g| g.callers.values().map(Caller::public).collect())
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
