//! Policy bundles and the engines behind Tollgate's one evaluation contract.
//!
//! In scope: content-addressed, immutable policy bundles ([`Bundle`]: a
//! directory, or an OPA bundle `.tar.gz` as `opa build` writes it); compiling
//! them for Rego (regorus) or Cedar (cedar-policy), refusing at publish time
//! what would make evaluation fail or be non-deterministic; evaluating a
//! request under a bound decision time to exactly one of PERMIT, DENY or
//! SILENCE with a reason ([`CompiledPolicy::evaluate`]); replay is the same
//! call with the recorded input.
//!
//! Out of scope: the request contract's validation (the `protocol` crate),
//! storage of bundles (the ledger), HTTP.
//!
//! The contract both engines implement is in `contract.rs` ([`EvalInput`] in,
//! [`Evaluation`] out).

mod bounds;
mod bundle;
mod cases;
mod cedar;
mod contract;
mod engine;
mod rego;

pub use bounds::{heap_accounted, heap_bytes, set_heap_limit, AMPLIFYING, BOUNDED, GUARDED};
pub use bundle::{Bundle, Counter, Engine, Manifest, MANIFEST_FILE, MAX_COUNTER_WINDOW_SECONDS};
pub use cases::{run_cases, CaseResult};
pub use contract::{
    ApprovalAsk, Decision, EvalInput, Evaluation, APPROVAL_COUNT_MAX, APPROVAL_REASON_MARK,
    APPROVAL_TTL_RANGE, APPROVAL_TTL_SECONDS, EVAL_BUILT_BYTES, EVAL_TIME_LIMIT, MAX_REASON_BYTES,
};
pub use engine::{replay, replay_receipt, CompiledPolicy};

/// Makes local time UTC in this process (sets `TZ=UTC0`), so a Rego policy
/// that asks for the `"Local"` time zone (`time.clock([ns, "Local"])`)
/// decides the same on every machine and in every replay. Binaries that
/// evaluate policies call it first thing in `main`, before any thread starts.
pub fn use_utc_as_local_time() {
    std::env::set_var("TZ", "UTC0");
}

/// Errors from loading or compiling a bundle. Evaluation never errors: it
/// answers SILENCE with a reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bundle is malformed: missing or bad manifest, unreadable archive.
    #[error("invalid bundle: {0}")]
    InvalidBundle(String),
    /// A policy file does not parse or compile; names the file and line.
    #[error("{file}:{line}: {message}")]
    Compile {
        /// File within the bundle.
        file: String,
        /// 1-based line, 0 if unknown.
        line: usize,
        /// What the engine said.
        message: String,
    },
    /// A policy uses a builtin that would make evaluation non-deterministic.
    #[error("{file}:{line}: builtin {builtin} is not deterministic and is refused")]
    NonDeterministic {
        /// File within the bundle.
        file: String,
        /// 1-based line.
        line: usize,
        /// The builtin.
        builtin: String,
    },
    /// A receipt given for replay is not usable; says why.
    #[error("invalid receipt: {0}")]
    InvalidReceipt(String),
    /// Reading a bundle from disk failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
