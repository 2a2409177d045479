//! The one evaluation contract both engines implement and the dispatcher
//! (`engine.rs`) uses: what a policy sees ([`EvalInput`]), what it answers
//! ([`Evaluation`], exactly one [`Decision`]) and the limits. Approvals and
//! history extend [`EvalInput::derived`] here.
//!
//! For both engines:
//! - Rego: the manifest's entrypoint rule evaluates to `"permit"`, `"deny"`
//!   or `"silence"`; undefined, any other value, an error, a conflict or a
//!   timeout is SILENCE with the reason.
//! - Cedar: Allow is PERMIT; Deny with at least one satisfied `forbid` is
//!   DENY; Deny with nothing satisfied is SILENCE; any evaluation error is
//!   SILENCE (Cedar skips erroring policies, so an erroring `forbid` must not
//!   let a `permit` through).
//! - An engine panic is SILENCE. Time builtins see the bound decision time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use protocol::Decision;

/// Longest a single evaluation may run before it is SILENCE.
pub const EVAL_TIME_LIMIT: Duration = Duration::from_millis(50);

/// The most bytes one call of a guarded builtin (`concat`) may build; past
/// it the call fails and the evaluation is SILENCE (see `bounds.rs`).
pub const EVAL_BUILT_BYTES: usize = 16 << 20;

/// Every SILENCE that asks for approvals says so in its reason with this
/// mark (both engines' reasons carry it; a test holds them to it), so an
/// auditor sees from the receipt alone that it opened an approval request.
pub const APPROVAL_REASON_MARK: &str = "approval(s)";

/// The longest reason an evaluation records, in bytes; a longer one (a
/// policy whose entrypoint is a large value, named in full) is cut there,
/// at a character boundary, and ends in `…`.
pub const MAX_REASON_BYTES: usize = 4096;

/// A decision and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// Which rules or policies decided, or what failed.
    pub reason: String,
    /// With SILENCE: the policy asks for approvals (see [`ApprovalAsk`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalAsk>,
}

/// What a policy asks for when it wants people to approve a request first.
/// Rego: the entrypoint is `"approval"`, with optional sibling rules
/// `approvals_required` (1–10, default 1) and `approval_ttl_seconds` (60 s
/// to 7 days, default 1 h). Cedar: every forbid policy that denied carries
/// `@approval("N")` (N approvals, default 1; the largest wins) and
/// optionally `@approval_ttl("seconds")` (the smallest wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalAsk {
    /// Approvals needed, from distinct callers with the `approve` role.
    pub count: u32,
    /// How long the request stays open for them.
    pub ttl_seconds: u64,
}

/// The default of [`ApprovalAsk::ttl_seconds`]: one hour.
pub const APPROVAL_TTL_SECONDS: u64 = 3600;
/// Bounds of [`ApprovalAsk::count`] and [`ApprovalAsk::ttl_seconds`].
pub const APPROVAL_COUNT_MAX: u32 = 10;
/// Bounds of [`ApprovalAsk::ttl_seconds`]: 60 s to 7 days.
pub const APPROVAL_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=7 * 24 * 3600;

impl Evaluation {
    /// The reason at most [`MAX_REASON_BYTES`] long (see there).
    #[must_use]
    pub fn bounded(mut self) -> Evaluation {
        if self.reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES - '…'.len_utf8();
            while !self.reason.is_char_boundary(end) {
                end -= 1;
            }
            self.reason.truncate(end);
            self.reason.push('…');
        }
        self
    }

    /// SILENCE, with `reason`.
    pub fn silence(reason: impl Into<String>) -> Evaluation {
        Evaluation {
            decision: Decision::Silence,
            reason: reason.into(),
            approval: None,
        }
    }

    /// `decision` because of `reason`.
    pub fn new(decision: Decision, reason: impl Into<String>) -> Evaluation {
        Evaluation {
            decision,
            reason: reason.into(),
            approval: None,
        }
    }
}

/// What a policy sees: the validated request and the context the gate derived.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalInput {
    /// The validated request: `actor` {id, kind, ...}, `surface`, `action`,
    /// `target`, `context`, ...
    pub request: serde_json::Value,
    /// The derived context. `decided_at_ns` (integer, UNIX nanoseconds) is the
    /// bound decision time that time builtins return.
    pub derived: serde_json::Value,
}

impl EvalInput {
    pub(crate) fn decided_at_ns(&self) -> i64 {
        self.derived["decided_at_ns"].as_i64().unwrap_or(0)
    }
}
