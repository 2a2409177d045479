//! Tollgate's wire contract: decision requests, receipts and responses.
//!
//! In scope: the request contract (ARCHITECTURE.md, `schemas/`) parsed into types that cannot
//! hold an invalid request ([`DecisionRequest`]), with errors that name the
//! field; RFC 8785 canonical JSON ([`canonical`]); receipt bodies, signing
//! and verification as C2SP signed notes ([`ReceiptBody`], [`verify_receipt`]);
//! response and error bodies; the decision-time format.
//!
//! Out of scope: evaluation (the `policy` crate), storage (the ledger), HTTP
//! (the gate). The JSON Schemas in `schemas/` state the same contract; the
//! tests hold the two to one corpus.
//!
//! Specs: RFC 8785 (JCS), C2SP signed-note, RFC 3339, RFC 6901 (field paths).

mod admin;
mod commit;
mod contract;
mod delegation;
mod governance;
mod jcs;
mod receipt;
mod request;
mod response;
pub mod strict;
mod time;

use serde::{Deserialize, Serialize};

pub use admin::{
    Activation, ApprovalList, ApprovalRecord, ApprovalView, ApprovalVote, Caller, CallerList,
    CallerToken, ContractActivation, ContractList, ContractPublished, EraseRequest, Erasure,
    NewCaller, PolicyList, PolicyVersion, Published, Role, ShadowChange,
};
pub use commit::{
    check_openings, commit_request, commitment, committed_fields, open_request, FieldStatus,
    Opening, Openings,
};
pub use contract::{
    ActionRules, CompiledContract, Contract, ContractError, SurfaceRules, CONTRACT_FORMAT,
    MAX_CONTRACT_BYTES,
};
pub use delegation::{OnBehalfOf, MAX_PRINCIPAL_CHARS, ON_BEHALF_OF_HEADER, VIA_OAUTH};
pub use governance::{
    parse_entry, parse_governance, Action as GovernanceAction, Entry, GovernanceEntry,
    GOVERNANCE_FORMAT,
};
pub use jcs::canonical;
pub use receipt::{
    approval_id, approval_subject, parse_receipt, policy_derived, receipt_derived, verify_receipt,
    PolicyRef, ReceiptBody, RECEIPT_FORMAT, VIA_IN_PROCESS, VIA_MTLS, VIA_PEER_UID, VIA_TOKEN,
};
pub use request::{
    digest_of, is_policy_version, receipt_id, Actor, ActorKind, DecisionRequest, RequestError,
    MAX_BODY_BYTES, MAX_DEPTH, MAX_ID_CHARS, MAX_ITEMS, MAX_KEY_CHARS, MAX_NAME_CHARS,
    MAX_SAFE_INTEGER, MAX_STRING_CHARS,
};
pub use response::{
    ContractReplay, DecisionResponse, ErrorBody, EvaluationResponse, ReplayResponse,
};
pub use time::{format_rfc3339_ns, parse_rfc3339_ns};

/// The three decisions. Nothing else exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// A policy explicitly permitted the call.
    Permit,
    /// A policy explicitly denied it.
    Deny,
    /// Nothing permitted it, or evaluation failed: fail closed.
    Silence,
}

impl Decision {
    /// The wire name: `PERMIT`, `DENY` or `SILENCE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Permit => "PERMIT",
            Decision::Deny => "DENY",
            Decision::Silence => "SILENCE",
        }
    }
}

/// Errors reading or verifying receipts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The signed note is malformed or its signature does not verify.
    #[error("receipt note: {0}")]
    Note(#[from] note::Error),
    /// The receipt text is JSON but not in RFC 8785 canonical form.
    #[error("receipt text is not RFC 8785 canonical JSON")]
    NotCanonical,
    /// The body is not a well-formed, self-consistent receipt; says why.
    #[error("malformed receipt: {0}")]
    Malformed(String),
}

/// The token of an `Authorization` header value using the `Bearer` scheme
/// (RFC 6750 §2.1; the scheme name is case-insensitive, RFC 9110 §11.1),
/// or `None` for another scheme or an empty token.
#[must_use]
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod bearer_tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_matched_whatever_its_case() {
        for v in ["Bearer t0k", "bearer t0k", "BEARER t0k", "Bearer   t0k "] {
            assert_eq!(bearer_token(v), Some("t0k"), "{v:?}");
        }
        for v in [
            "Basic dXNlcg==",
            "Bearer",
            "Bearer ",
            "Bearert0k",
            "",
            "Bearer2 t0k",
        ] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
