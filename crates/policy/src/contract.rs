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

/// A decision and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// Which rules or policies decided, or what failed.
    pub reason: String,
}

impl Evaluation {
    /// SILENCE, with `reason`.
    pub fn silence(reason: impl Into<String>) -> Evaluation {
        Evaluation {
            decision: Decision::Silence,
            reason: reason.into(),
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
