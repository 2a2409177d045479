//! What the gate answers (schemas `decision-response.schema.json`,
//! `error.schema.json`, `replay-response.schema.json`).

use serde::{Deserialize, Serialize};

use crate::Decision;

/// The answer to `POST /v1/decisions`. Saved as a file, it is what
/// `proofcheck receipt` verifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionResponse {
    /// PERMIT, DENY or SILENCE. Dispatch the tool call only on PERMIT.
    pub decision: Decision,
    /// Why.
    pub reason: String,
    /// The receipt's id.
    pub receipt_id: String,
    /// The policy version bound to the decision, if one was active.
    pub policy_version: Option<String>,
    /// The receipt's index in the log.
    pub log_index: u64,
    /// The signed receipt (a C2SP signed note): the log leaf, byte for byte.
    pub receipt: String,
    /// A C2SP tlog-proof bundle: inclusion of the receipt in a signed checkpoint.
    pub proof: String,
    /// True when this is the original receipt returned again for a retried
    /// idempotency key.
    pub replayed: bool,
    /// With a SILENCE that asks for approvals: the approval request (`id`,
    /// `approvals` needed, `role`, `expires_at`, `state`). Not signed: its
    /// `id` is [`crate::approval_id`] of the receipt's request, which a
    /// client can compute itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<serde_json::Value>,
    /// The openings (salt and value) of the fields the receipt commits
    /// (`derived.committed`) that the gate still holds: absent ones were
    /// erased. Not signed: each is checked against its commitment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openings: Option<crate::Openings>,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// A stable code: `invalid_request`, `idempotency_conflict`, `unauthorized`,
    /// `not_found`, `unavailable`, `invalid_policy`, `internal`.
    pub error: String,
    /// What went wrong, for people.
    pub message: String,
    /// For `invalid_request`: JSON Pointer (RFC 6901) to the offending field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answer to `POST /v1/replay`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayResponse {
    /// The receipt's id.
    pub receipt_id: String,
    /// The policy version the receipt recorded.
    pub policy_version: Option<String>,
    /// The recorded decision.
    pub recorded: Decision,
    /// The decision re-derived now from the recorded version and input.
    pub replayed: Decision,
    /// The replay's reason.
    pub reason: String,
    /// Whether the two decisions are the same (and, when the receipt names
    /// a surface contract that was checked, the request still meets it).
    pub same: bool,
    /// The recorded request checked again against the surface contract the
    /// receipt names (`derived.contract`), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<ContractReplay>,
    /// Committed fields whose openings were erased: the policy saw their
    /// values, the replay only their commitments, so it cannot check them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unopened: Vec<String>,
}

/// A receipt's request checked again against its recorded surface contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractReplay {
    /// The contract version the receipt names.
    pub version: String,
    /// Whether the recorded request meets it.
    pub met: bool,
    /// If not, the first value that breaks it and the rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl ReplayResponse {
    /// The comparison of `receipt`'s recorded decision with `replayed`.
    #[must_use]
    pub fn compare(
        receipt: &crate::ReceiptBody,
        replayed: Decision,
        reason: String,
    ) -> ReplayResponse {
        ReplayResponse {
            receipt_id: receipt.receipt_id.clone(),
            policy_version: receipt.policy.as_ref().map(|p| p.version.clone()),
            recorded: receipt.decision,
            replayed,
            reason,
            same: replayed == receipt.decision,
            contract: None,
            unopened: Vec::new(),
        }
    }

    /// With the recorded request checked against its contract (`same`
    /// only if it still meets it).
    #[must_use]
    pub fn with_contract(mut self, contract: Option<ContractReplay>) -> ReplayResponse {
        if let Some(c) = &contract {
            self.same &= c.met;
        }
        self.contract = contract;
        self
    }
}

/// `POST /v1/evaluations`: what the active policy would decide, neither
/// signed nor logged (advice, never a permit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvaluationResponse {
    /// `PERMIT`, `DENY` or `SILENCE`.
    pub decision: Decision,
    /// The policy's reason.
    pub reason: String,
    /// The policy version that was evaluated, if one was.
    pub policy_version: Option<String>,
    /// Always false: nothing was logged.
    pub logged: bool,
}
