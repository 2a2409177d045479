//! The admin API's requests and answers (`/v1/admin/…`) and the approval
//! views, as types: the gate writes them and the SDK's admin client and
//! the CLI read them with the same definitions.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// `POST /v1/admin/policies`: the bundle published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The bundle's version (`sha256:…`).
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
    /// False if this version was already published.
    pub created: bool,
}

/// `POST /v1/admin/policies/{version}/activate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The version now active.
    pub active: String,
    /// The one active before, if any.
    pub previous: Option<String>,
}

/// `POST /v1/admin/policies/shadow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowChange {
    /// The version now evaluated beside the active one; `None`: no shadow.
    pub shadow: Option<String>,
    /// The shadow before, if any.
    pub previous: Option<String>,
}

/// `GET /v1/admin/policies`: every published version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyList {
    /// The active version, if any.
    pub active: Option<String>,
    /// The shadow version, if any.
    pub shadow: Option<String>,
    /// Every published version, oldest first.
    pub versions: Vec<PolicyVersion>,
}

/// One published policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `sha256:…`.
    pub version: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// Whether it is the active one.
    pub active: bool,
}

/// `POST /v1/admin/contracts`: the surface contract published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractPublished {
    /// The contract's version (`sha256:…` of its canonical JSON).
    pub version: String,
    /// The surfaces it covers.
    pub surfaces: Vec<String>,
    /// False if this version was already published.
    pub created: bool,
}

/// `POST /v1/admin/contracts/{version}/activate` (`none`: no contract).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractActivation {
    /// The version now active; `None`: none.
    pub active: Option<String>,
    /// The one active before, if any.
    pub previous: Option<String>,
}

/// `GET /v1/admin/contracts`: every published surface contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContractList {
    /// The active version, if any.
    pub active: Option<String>,
    /// Every published version, by version.
    pub versions: Vec<PolicyVersion>,
}

/// `POST /v1/admin/receipts/{receipt_id}/erase` `{field, reason}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The committed field (`/target/name`).
    pub field: String,
    /// Why (logged).
    pub reason: String,
}

/// The answer to an erasure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erasure {
    /// The receipt.
    pub receipt_id: String,
    /// The field whose opening is gone.
    pub field: String,
    /// The log index of the `receipt.erase` entry.
    pub entry: u64,
}

/// One vote on an approval request, as the gate keeps and shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalVote {
    /// The approver (a caller's name).
    pub by: String,
    /// The index of its governance entry in the log.
    pub entry: u64,
    /// When (RFC 3339).
    pub at: String,
    /// The approver's note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// An approval request and its votes, as the gate stores it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRecord {
    /// `ap-` and 32 hex digits.
    pub id: String,
    /// `sha256:` of the approved request ([`crate::approval_subject`]).
    pub digest: String,
    /// The request as approved (no idempotency key, no pinned version).
    pub request: serde_json::Value,
    /// The caller that asked for the decision; it may not approve.
    pub requested_by: String,
    /// The SILENCE receipt that opened it.
    pub receipt_id: String,
    /// Approvals needed.
    pub count: u32,
    /// When it was opened (RFC 3339).
    pub requested_at: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// The same, in UNIX nanoseconds.
    pub expires_at_ns: i64,
    /// The approvals given.
    #[serde(default)]
    pub approvals: Vec<ApprovalVote>,
    /// The rejection, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<ApprovalVote>,
    /// The PERMIT receipt that used the approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<String>,
}

impl ApprovalRecord {
    /// `open` (collecting), `approved` (enough approvals, unused),
    /// `rejected`, `used` or `expired`, at `now_ns`.
    #[must_use]
    pub fn state(&self, now_ns: i64) -> &'static str {
        if self.used_by.is_some() {
            "used"
        } else if self.rejected.is_some() {
            "rejected"
        } else if now_ns >= self.expires_at_ns {
            "expired"
        } else if self.approvals.len() >= self.count as usize {
            "approved"
        } else {
            "open"
        }
    }
}

/// `GET /v1/approvals/{id}` and a vote's answer: the record and its state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalView {
    /// The request, its votes, its use.
    #[serde(flatten)]
    pub record: ApprovalRecord,
    /// `open`, `approved`, `rejected`, `used` or `expired`.
    pub state: String,
}

/// `GET /v1/approvals`: the requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalList {
    /// The live requests (all with `?all=true`).
    pub approvals: Vec<ApprovalView>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_view_is_its_record_and_its_state_on_the_wire() {
        let record = ApprovalRecord {
            id: "ap-1".into(),
            digest: "sha256:00".into(),
            request: serde_json::json!({"surface": "payments"}),
            requested_by: "demo".into(),
            receipt_id: "r".into(),
            count: 1,
            requested_at: "t0".into(),
            expires_at: "t1".into(),
            expires_at_ns: 10,
            approvals: vec![ApprovalVote {
                by: "lead".into(),
                entry: 7,
                at: "t".into(),
                note: None,
            }],
            rejected: None,
            used_by: None,
        };
        let view = ApprovalView {
            state: record.state(5).into(),
            record: record.clone(),
        };
        assert_eq!(view.state, "approved");
        let wire = serde_json::to_value(&view).unwrap();
        assert_eq!(wire["state"], "approved");
        assert_eq!(wire["approvals"][0]["entry"], 7);
        assert_eq!(serde_json::from_value::<ApprovalView>(wire).unwrap(), view);
        // The stored record itself takes no member it does not know.
        let mut stored = serde_json::to_value(&record).unwrap();
        stored["state"] = "open".into();
        assert!(serde_json::from_value::<ApprovalRecord>(stored).is_err());
    }
}

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

/// `GET /v1/admin/callers`: every caller, revoked ones included, without
/// their token digests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallerList {
    /// The callers.
    pub callers: Vec<Caller>,
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

/// `POST /v1/admin/callers` body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCaller {
    /// The caller's name.
    pub name: String,
    /// Its roles.
    pub roles: BTreeSet<Role>,
    /// The actors it may speak for (exact ids, `prefix*`).
    #[serde(default)]
    pub actors: Vec<String>,
}

/// The answer to adding a caller or rotating its token: the only time the
/// token is shown.
#[derive(Debug, Serialize, Deserialize)]
pub struct CallerToken {
    /// The caller (without its token digest).
    pub caller: Caller,
    /// Its bearer token.
    pub token: String,
}
