//! Governance entries: every admin change (a policy published or activated,
//! a caller added, revoked or rotated) is a signed entry in the same log as
//! the receipts, so an auditor reading the log alone can tell which policy
//! and which grants were in force at any index.
//!
//! Same form as a receipt: a C2SP signed note, by the gate key, whose text is
//! one line of RFC 8785 canonical JSON (schema
//! `schemas/governance.schema.json`), told apart by its `format`.

use note::{Note, SignerKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jcs::canonical;
use crate::receipt::{parse_receipt, ReceiptBody, RECEIPT_FORMAT};
use crate::time::parse_rfc3339_ns;
use crate::Error;

/// The `format` of every governance entry.
pub const GOVERNANCE_FORMAT: &str = "tollgate.governance/v1";

/// What a governance entry records: an admin change, a vote or a redemption.
/// On the wire (and in the signed text) the dotted name, [`Action::as_str`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    /// A policy bundle published: `{version, engine}`.
    #[serde(rename = "policy.publish")]
    PolicyPublish,
    /// A published version made active: `{version}`.
    #[serde(rename = "policy.activate")]
    PolicyActivate,
    /// The shadow version set: `{version}` (null: none).
    #[serde(rename = "policy.shadow")]
    PolicyShadow,
    /// A caller added: `{name, roles, actors, token_sha256}`.
    #[serde(rename = "caller.add")]
    CallerAdd,
    /// A caller revoked: `{name}`.
    #[serde(rename = "caller.revoke")]
    CallerRevoke,
    /// A caller's token rotated: `{name, token_sha256}`.
    #[serde(rename = "caller.rotate")]
    CallerRotate,
    /// The token digest of a caller added before caller entries carried
    /// it, taken from the store once: `{name, token_sha256}`.
    #[serde(rename = "caller.attest")]
    CallerAttest,
    /// An approval: `{id, digest, expires_at, note?}`.
    #[serde(rename = "approval.approve")]
    ApprovalApprove,
    /// A rejection: `{id, digest, expires_at, note?}`.
    #[serde(rename = "approval.reject")]
    ApprovalReject,
    /// A PERMIT redeemed at a surface: `{receipt_id, index, surface, idempotency_key?}`.
    #[serde(rename = "permit.redeem")]
    PermitRedeem,
    /// A surface contract published: `{version, surfaces}`.
    #[serde(rename = "contract.publish")]
    ContractPublish,
    /// A published surface contract made active: `{version}` (null: none).
    #[serde(rename = "contract.activate")]
    ContractActivate,
    /// A committed field's opening erased: `{receipt_id, index, field, reason}`.
    #[serde(rename = "receipt.erase")]
    ReceiptErase,
}

impl Action {
    /// Every action, in the order of the schema's enum.
    pub const ALL: [Action; 13] = [
        Action::PolicyPublish,
        Action::PolicyActivate,
        Action::PolicyShadow,
        Action::CallerAdd,
        Action::CallerRevoke,
        Action::CallerRotate,
        Action::CallerAttest,
        Action::ApprovalApprove,
        Action::ApprovalReject,
        Action::PermitRedeem,
        Action::ContractPublish,
        Action::ContractActivate,
        Action::ReceiptErase,
    ];

    /// The dotted name the entry carries.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Action::PolicyPublish => "policy.publish",
            Action::PolicyActivate => "policy.activate",
            Action::PolicyShadow => "policy.shadow",
            Action::CallerAdd => "caller.add",
            Action::CallerRevoke => "caller.revoke",
            Action::CallerRotate => "caller.rotate",
            Action::CallerAttest => "caller.attest",
            Action::ApprovalApprove => "approval.approve",
            Action::ApprovalReject => "approval.reject",
            Action::PermitRedeem => "permit.redeem",
            Action::ContractPublish => "contract.publish",
            Action::ContractActivate => "contract.activate",
            Action::ReceiptErase => "receipt.erase",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One admin change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceEntry {
    /// [`GOVERNANCE_FORMAT`].
    pub format: String,
    /// The origin of the log it is appended to.
    pub log: String,
    /// What it records.
    pub action: Action,
    /// Who made the change: `admin-token`, `caller:<name>`, or `startup`
    /// (the embedded default's example policy and demo caller).
    pub by: String,
    /// When, RFC 3339 UTC with nanoseconds.
    pub at: String,
    /// What changed: `{version, engine}` for policies; `{name, roles,
    /// actors, token_sha256}` for an added caller, `{name, token_sha256}`
    /// for a rotated one and for `caller.attest` (a caller added before
    /// entries carried the digest: its digest taken from the store once),
    /// `{name}` for a revoked one. `token_sha256` is the SHA-256 of the
    /// caller's token (256 random bits, so the digest gives nothing to
    /// guess from), so a gate takes every grant from the log alone; never
    /// the token.
    pub subject: Value,
}

impl GovernanceEntry {
    /// The canonical text that is signed: RFC 8785 JSON and a newline.
    #[must_use]
    pub fn text(&self) -> String {
        let mut t = canonical(&serde_json::to_value(self).expect("serializable"));
        t.push('\n');
        t
    }

    /// Signs the entry with the gate key: the signed note's bytes, the log leaf.
    ///
    /// # Errors
    ///
    /// [`Error::Note`] if the text is not a valid note (too large).
    pub fn sign(&self, gate_key: &SignerKey) -> Result<Vec<u8>, Error> {
        let mut note = Note::new(self.text())?;
        note.sign(gate_key)?;
        Ok(note.to_text().into_bytes())
    }
}

/// Parses a governance entry without checking its signature: the format, a
/// known action, the time, and that the text is exactly the canonical form.
///
/// # Errors
///
/// [`Error`] naming what is wrong.
pub fn parse_governance(bytes: &[u8]) -> Result<(Note, GovernanceEntry), Error> {
    let note = Note::parse(bytes)?;
    let text = note.text();
    let json = text.trim_end_matches('\n');
    let entry: GovernanceEntry = serde_json::from_str(json)
        .map_err(|e| Error::Malformed(format!("governance entry: {e}")))?;
    if entry.format != GOVERNANCE_FORMAT {
        return Err(Error::Malformed(format!(
            "format {:?}, expected {GOVERNANCE_FORMAT:?}",
            entry.format
        )));
    }
    parse_rfc3339_ns(&entry.at).map_err(Error::Malformed)?;
    if entry.text() != text {
        return Err(Error::NotCanonical);
    }
    Ok((note, entry))
}

/// What a log entry is.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    /// A decision's receipt.
    Receipt(Box<ReceiptBody>),
    /// An admin change.
    Governance(GovernanceEntry),
}

/// Parses any entry of a Tollgate log by its `format`, without checking its
/// signature (see [`parse_receipt`] and [`parse_governance`]).
///
/// # Errors
///
/// [`Error`] naming what is wrong, including an unknown format.
pub fn parse_entry(bytes: &[u8]) -> Result<(Note, Entry), Error> {
    #[derive(Deserialize)]
    struct Format {
        format: String,
    }
    let note = Note::parse(bytes)?;
    let format = serde_json::from_str::<Format>(note.text().trim_end_matches('\n'))
        .map_err(|e| Error::Malformed(format!("entry has no format: {e}")))?
        .format;
    match format.as_str() {
        RECEIPT_FORMAT => parse_receipt(bytes).map(|(n, b)| (n, Entry::Receipt(Box::new(b)))),
        GOVERNANCE_FORMAT => parse_governance(bytes).map(|(n, e)| (n, Entry::Governance(e))),
        other => Err(Error::Malformed(format!("unknown entry format {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_entry, Action, Entry, GovernanceEntry, GOVERNANCE_FORMAT};
    use note::{KeyType, SignerKey};
    use serde_json::json;

    #[test]
    fn governance_entries_round_trip_and_refuse_changes() {
        let key = SignerKey::generate("example.com/gate", KeyType::Ed25519).unwrap();
        let entry = GovernanceEntry {
            format: GOVERNANCE_FORMAT.into(),
            log: "example.com/log".into(),
            action: Action::CallerAdd,
            by: "admin-token".into(),
            at: crate::format_rfc3339_ns(1_764_072_000_000_000_000),
            subject: json!({"name": "sdk", "roles": ["decide"], "actors": ["agent-*"]}),
        };
        let bytes = entry.sign(&key).unwrap();
        let (note, parsed) = parse_entry(&bytes).unwrap();
        note.verify(std::slice::from_ref(key.verifier())).unwrap();
        assert_eq!(parsed, Entry::Governance(entry.clone()));
        let text = String::from_utf8(bytes).unwrap();
        for (from, to) in [("caller.add", "caller.own"), ("\"sdk\"", "\"sdk2\"")] {
            let changed = text.replacen(from, to, 1);
            let refused = parse_entry(changed.as_bytes())
                .and_then(|(n, _)| Ok(n.verify(std::slice::from_ref(key.verifier()))?));
            assert!(refused.is_err(), "{from} -> {to}");
        }
    }

    /// The schema names exactly the actions, as the entries spell them.
    #[test]
    fn the_schema_names_every_action() {
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../../../schemas/governance.schema.json")).unwrap();
        let names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(schema["properties"]["action"]["enum"], json!(names));
        for a in Action::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), json!(a.as_str()));
        }
    }
}
