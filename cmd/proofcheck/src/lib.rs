//! proofcheck: verify Tollgate receipts, proofs and checkpoints offline, replay
//! decisions, and audit a whole log through C2SP tlog-tiles.
//!
//! In scope: checks over files and the public read API only (checkpoint,
//! tiles, entry bundles, policy bundles). Out of scope: anything of the
//! writer's storage; `proofcheck` never links the ledger, so a bug in the
//! writer cannot hide in the checker.
//!
//! Every check returns [`Error::Failed`] (exit 1: verification failed, with
//! what and where) or [`Error::Io`] (exit 2: could not read or fetch).

mod audit;
mod checks;
mod fetch;
mod whatif;

pub use audit::{audit, AuditReport, AuditState};
pub use checks::{
    check_consistency, check_receipt, parse_hashes, replay, ConsistencyReport, PolicySource,
    ReceiptReport, ReplayReport,
};
pub use fetch::{proof_to_served_checkpoint, Log};
pub use whatif::{what_if, WhatIf};

/// Why a check did not pass.
#[derive(Debug)]
pub enum Error {
    /// Verification failed: the message says what and where.
    Failed(String),
    /// Input could not be read or fetched, or a usage error.
    Io(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Failed(m) => write!(f, "verification failed: {m}"),
            Error::Io(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for Error {}

pub(crate) fn failed<T>(m: impl Into<String>) -> Result<T, Error> {
    Err(Error::Failed(m.into()))
}
