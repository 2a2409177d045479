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

/// The admin changes a governance entry records.
pub const GOVERNANCE_ACTIONS: &[&str] = &[
    "policy.publish",
    "policy.activate",
    "policy.shadow",
    "caller.add",
    "caller.revoke",
    "caller.rotate",
    "caller.attest",
    "approval.approve",
    "approval.reject",
    "permit.redeem",
];

/// One admin change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceEntry {
    /// [`GOVERNANCE_FORMAT`].
    pub format: String,
    /// The origin of the log it is appended to.
    pub log: String,
    /// One of [`GOVERNANCE_ACTIONS`].
    pub action: String,
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
    if !GOVERNANCE_ACTIONS.contains(&entry.action.as_str()) {
        return Err(Error::Malformed(format!(
            "unknown governance action {:?}",
            entry.action
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
    use super::{parse_entry, Entry, GovernanceEntry, GOVERNANCE_FORMAT};
    use note::{KeyType, SignerKey};
    use serde_json::json;

    #[test]
    fn governance_entries_round_trip_and_refuse_changes() {
        let key = SignerKey::generate("example.com/gate", KeyType::Ed25519).unwrap();
        let entry = GovernanceEntry {
            format: GOVERNANCE_FORMAT.into(),
            log: "example.com/log".into(),
            action: "caller.add".into(),
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
}
