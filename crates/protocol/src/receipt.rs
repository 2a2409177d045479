//! Receipts: C2SP signed notes whose text is one line of RFC 8785 canonical
//! JSON (RFC 8785; schema `schemas/receipt.schema.json`).
//!
//! ```text
//! {"decided_at":"2026-11-25T12:00:00.000000000Z","decision":"PERMIT",...}
//!
//! — tollgate.local/gate <base64 key id ‖ Ed25519 signature>
//! ```
//!
//! The leaf in the log is exactly these bytes. The leaf index is not in the
//! receipt: it comes with the proof, so receipts are signed before sequencing.

use note::{Note, SignerKey, VerifierKey};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::jcs::{canonical, write_string, write_value};
use crate::request::{sha256_digest, DecisionRequest};
use crate::time::parse_rfc3339_ns;
use crate::{Decision, Error};

/// The `format` of every receipt this crate writes.
pub const RECEIPT_FORMAT: &str = "tollgate.receipt/v2";

/// The policy a decision was made under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// The bundle's version: `sha256:<hex>` of its canonical content.
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
}

/// The body of a receipt: everything the gate binds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptBody {
    /// [`RECEIPT_FORMAT`].
    pub format: String,
    /// See [`crate::receipt_id`].
    pub receipt_id: String,
    /// The origin of the log the receipt is appended to.
    pub log: String,
    /// The validated request in normalized form ([`DecisionRequest::to_value`]).
    pub request: Value,
    /// [`DecisionRequest::digest`] of `request`.
    pub request_digest: String,
    /// PERMIT, DENY or SILENCE.
    pub decision: Decision,
    /// Which rules or policies decided, or why it is SILENCE.
    pub reason: String,
    /// The active policy bound to the decision; `null` if none was active.
    pub policy: Option<PolicyRef>,
    /// The context the gate derived: `actor` (the policy data's attributes of
    /// the actor, `null` if none) and `caller` (`{name, via}`: who asked and
    /// how it authenticated).
    pub derived: Value,
    /// The bound decision time, RFC 3339 UTC with nanoseconds. Time builtins
    /// in the policy saw exactly this instant.
    pub decided_at: String,
}

impl ReceiptBody {
    /// The canonical text that is signed: RFC 8785 JSON and a newline.
    #[must_use]
    pub fn text(&self) -> String {
        let (mut text, _) = self.canonical();
        text.push('\n');
        text
    }

    /// The RFC 8785 form of the body (what `jcs::canonical` gives for its
    /// serde JSON, tested), written member by member in sorted order without
    /// building a JSON tree, and where the request lies in it.
    fn canonical(&self) -> (String, std::ops::Range<usize>) {
        let mut out = String::with_capacity(1024);
        let member = |out: &mut String, name: &str| {
            out.push(if out.is_empty() { '{' } else { ',' });
            write_string(out, name);
            out.push(':');
        };
        member(&mut out, "decided_at");
        write_string(&mut out, &self.decided_at);
        member(&mut out, "decision");
        write_string(&mut out, self.decision.as_str());
        member(&mut out, "derived");
        write_value(&mut out, &self.derived);
        member(&mut out, "format");
        write_string(&mut out, &self.format);
        member(&mut out, "log");
        write_string(&mut out, &self.log);
        member(&mut out, "policy");
        match &self.policy {
            None => out.push_str("null"),
            Some(p) => {
                out.push_str("{\"engine\":");
                write_string(&mut out, &p.engine);
                out.push_str(",\"version\":");
                write_string(&mut out, &p.version);
                out.push('}');
            }
        }
        member(&mut out, "reason");
        write_string(&mut out, &self.reason);
        member(&mut out, "receipt_id");
        write_string(&mut out, &self.receipt_id);
        member(&mut out, "request");
        let start = out.len();
        write_value(&mut out, &self.request);
        let request_at = start..out.len();
        member(&mut out, "request_digest");
        write_string(&mut out, &self.request_digest);
        out.push('}');
        (out, request_at)
    }

    /// Signs the receipt with the gate key: the signed note's bytes, which are
    /// the log leaf.
    ///
    /// # Errors
    ///
    /// [`Error::Note`] if the text is not a valid note (too large).
    pub fn sign(&self, gate_key: &SignerKey) -> Result<Vec<u8>, Error> {
        let mut note = Note::new(self.text())?;
        note.sign(gate_key)?;
        Ok(note.to_text().into_bytes())
    }

    /// The `derived` object a policy sees for this receipt: the recorded
    /// derived context plus `decided_at` and `decided_at_ns`. Replay feeds a
    /// policy exactly this.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] if `decided_at` is not the fixed RFC 3339 form.
    pub fn policy_derived(&self) -> Result<Value, Error> {
        let ns = parse_rfc3339_ns(&self.decided_at).map_err(Error::Malformed)?;
        Ok(policy_derived(&self.decided_at, ns, &self.derived))
    }

    /// The name of the caller the receipt records (`derived.caller.name`).
    #[must_use]
    pub fn caller(&self) -> Option<&str> {
        self.derived["caller"]["name"].as_str()
    }
}

/// The `derived` input a policy sees: the decision time as RFC 3339 and UNIX
/// nanoseconds, and what the receipt records in `derived` — the actor's
/// attributes from the policy data, the caller (`{name, via}`), the
/// bundle's counters (`history`) and the approvals attached (`approvals`)
/// when there are any — except the shadow policy's evaluation (`shadow`),
/// which no policy sees.
#[must_use]
pub fn policy_derived(decided_at: &str, decided_at_ns: i64, recorded: &Value) -> Value {
    let mut derived = json!({
        "decided_at": decided_at,
        "decided_at_ns": decided_at_ns,
    });
    for (k, v) in recorded.as_object().into_iter().flatten() {
        if k != "shadow" {
            derived[k] = v.clone();
        }
    }
    derived
}

/// The id of the approval request for a request (in normalized form): the
/// digest of everything but its idempotency key and pinned policy version,
/// so approvals bind the actor, surface, action, target and context and
/// nothing else can reuse them; `ap-` and 32 hex digits.
#[must_use]
pub fn approval_id(request: &Value) -> (String, String) {
    let digest = crate::digest_of(&approval_subject(request));
    let hex = digest.strip_prefix("sha256:").unwrap_or(&digest);
    (format!("ap-{}", &hex[..32]), digest)
}

/// What an approval binds: the request without its idempotency key and
/// pinned policy version.
#[must_use]
pub fn approval_subject(request: &Value) -> Value {
    let mut subject = request.clone();
    if let Some(o) = subject.as_object_mut() {
        o.remove("idempotency_key");
        o.remove("expected_policy_version");
    }
    subject
}

/// How a caller authenticated, as receipts record it (`derived.caller.via`):
/// a bearer token.
pub const VIA_TOKEN: &str = "token";
/// ... or the uid of its Unix-socket peer (`SO_PEERCRED`), mapped to the
/// caller in the gate's configuration.
pub const VIA_PEER_UID: &str = "peer_uid";
/// ... or a verified TLS client certificate whose subject common name is
/// mapped to the caller in the gate's configuration.
pub const VIA_MTLS: &str = "mtls";
/// ... or the gate runs inside the caller's own process (`tollgate mcp
/// stdio --data-dir`), which names the caller from its configuration.
pub const VIA_IN_PROCESS: &str = "in_process";

/// The `derived` object a receipt records: the actor's attributes and the
/// caller.
#[must_use]
pub fn receipt_derived(actor: Value, caller: &str, via: &str) -> Value {
    json!({"actor": actor, "caller": {"name": caller, "via": via}})
}

/// Parses a receipt without checking its signature (the gate reading its own
/// log does this). Checks everything else [`verify_receipt`] checks.
///
/// # Errors
///
/// [`Error`] naming what is wrong.
pub fn parse_receipt(bytes: &[u8]) -> Result<(Note, ReceiptBody), Error> {
    let note = Note::parse(bytes)?;
    let text = note.text();
    let json = text.trim_end_matches('\n');
    let mut body: ReceiptBody = serde_json::from_str(json).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => Error::Malformed(format!("receipt body: {e}")),
        _ => Error::Malformed(format!("receipt text is not JSON: {e}")),
    })?;
    if body.format != RECEIPT_FORMAT {
        return Err(Error::Malformed(format!(
            "format {:?}, expected {RECEIPT_FORMAT:?}",
            body.format
        )));
    }
    let request = DecisionRequest::from_value(std::mem::take(&mut body.request))
        .map_err(|e| Error::Malformed(format!("recorded request: {e}")))?;
    body.request = request.to_value();
    // The text must be exactly the canonical form of the body with the
    // request normalized; one canonicalization checks both and gives the
    // canonical request the digest is over.
    let (canonical_text, request_at) = body.canonical();
    if canonical_text.len() + 1 != text.len() || !text.starts_with(canonical_text.as_str()) {
        // Only on failure: say which of the two it was.
        let as_parsed = serde_json::from_str::<Value>(json).map(|v| canonical(&v));
        return Err(if as_parsed.is_ok_and(|c| c == json) {
            Error::Malformed("recorded request is not in normalized form".into())
        } else {
            Error::NotCanonical
        });
    }
    let request_text = &canonical_text[request_at];
    if sha256_digest(request_text) != body.request_digest {
        return Err(Error::Malformed(
            "request_digest does not match the recorded request".into(),
        ));
    }
    let caller = body
        .caller()
        .ok_or_else(|| Error::Malformed("derived.caller.name is missing".into()))?;
    if request.receipt_id(caller) != body.receipt_id {
        return Err(Error::Malformed(
            "receipt_id does not match the caller, the request's actor and idempotency key".into(),
        ));
    }
    parse_rfc3339_ns(&body.decided_at).map_err(Error::Malformed)?;
    Ok((note, body))
}

/// Verifies a receipt: its gate signature (by `gate_key`), that its text is
/// canonical, and that its body is well formed and self-consistent.
///
/// # Errors
///
/// [`Error::Note`] for a bad or missing signature, otherwise as
/// [`parse_receipt`].
pub fn verify_receipt(bytes: &[u8], gate_key: &VerifierKey) -> Result<ReceiptBody, Error> {
    let (note, body) = parse_receipt(bytes)?;
    note.verify(std::slice::from_ref(gate_key))?;
    Ok(body)
}
