//! The Tollgate gate: the decision API, admin API, read/portal API with
//! C2SP tlog-tiles, and ops endpoints, over axum.
//!
//! In scope: the decision pipeline (validate → bind the active policy →
//! derive context → evaluate → sign the receipt → append to the log →
//! answer with a tlog-proof), idempotency, policy publish/activate, replay,
//! metrics, configuration. Out of scope: Merkle math (`tlog`), notes
//! (`note`), the request contract (`protocol`), engines (`policy`), storage
//! (`ledger`); binaries are in `cmd/`.
//!
//! [`router`] builds the whole HTTP API as a plain function; [`ROUTES`]
//! lists every route, and a test holds `schemas/openapi.json` to it.

mod active;
mod admin;
mod approvals;
mod auth;
pub mod callers;
pub mod config;
mod contracts;
mod decide;
mod error;
mod evaluators;
mod follow;
mod governance;
mod governed;
mod history;
pub mod http;
mod metrics;
mod permits;
pub mod records;
mod replay;
pub mod serve;
mod startup;
mod webhooks;
mod witnessing;
pub mod workers;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ledger::Ledger;
use note::{SignerKey, VerifierKey};

pub use active::ActivePolicy;
pub use config::{Config, ConfigError, Isolation, ListenAddr, LogFormat, Mode};
pub use error::GateError;
pub use http::{router, Credentials, TlsPeer, UnixPeer};
pub use metrics::Metrics;
pub use protocol::NewCaller;
pub use startup::{
    example_bundle, example_cedar_bundle, example_contract, Started, StartupError, DEMO_ACTORS,
};
pub use witnessing::WitnessingError;

/// Every route: (method, path in axum syntax).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/decisions"),
    ("POST", "/v1/replay"),
    ("POST", "/v1/evaluations"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/approvals"),
    ("GET", "/v1/approvals/{id}"),
    ("POST", "/v1/approvals/{id}"),
    ("GET", "/v1/receipts/{receipt_id}"),
    ("POST", "/v1/permits/{receipt_id}/redeem"),
    ("GET", "/v1/proofs/inclusion"),
    ("GET", "/v1/proofs/consistency"),
    ("GET", "/v1/checkpoints/{size}"),
    ("GET", "/v1/policies/{version}"),
    ("GET", "/v1/admin/callers"),
    ("POST", "/v1/admin/callers"),
    ("POST", "/v1/admin/callers/{name}/revoke"),
    ("POST", "/v1/admin/callers/{name}/rotate"),
    ("GET", "/v1/admin/policies"),
    ("POST", "/v1/admin/policies"),
    ("POST", "/v1/admin/policies/{version}/activate"),
    ("POST", "/v1/admin/policies/shadow"),
    ("GET", "/v1/admin/contracts"),
    ("POST", "/v1/admin/contracts"),
    ("POST", "/v1/admin/contracts/{version}/activate"),
    ("POST", "/v1/admin/receipts/{receipt_id}/erase"),
    ("GET", "/v1/contracts/{version}"),
    ("GET", "/log/checkpoint"),
    ("GET", "/log/tile/{*path}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("POST", "/access/v1/evaluation"),
    ("POST", "/access/v1/evaluations"),
    ("GET", "/.well-known/authzen-configuration"),
];

/// The running gate: what every handler shares.
pub struct Gate {
    ledger: Ledger,
    gate_key: SignerKey,
    /// The key of committed fields' salts (`Gate::commit`), derived from
    /// the gate key: every gate of a log commits a request the same way.
    commit_key: [u8; 32],
    /// How long a request body may take to arrive (`body_read_timeout_ms`).
    body_read_timeout: std::time::Duration,
    /// Credentials → caller: tokens, mTLS subjects, Unix peers, the
    /// admin token, `public_read`.
    pub(crate) auth: auth::Authentication,
    /// Whether it serves HTTPS (`tls_cert`): the scheme of the URLs it
    /// publishes about itself.
    serves_tls: bool,
    /// What the log's governance entries say (callers, policy versions).
    governance: governed::Governance,
    policies: active::Policies,
    /// The active surface contract: target and context checked before policy.
    contracts: contracts::Contracts,
    /// The active policy's counters over the log (`derived.history`).
    history: history::History,
    /// On a shared log: the tree size up to which other gates' PERMITs
    /// have been counted (`follow.rs`).
    followed: tokio::sync::Mutex<u64>,
    /// Approval requests: writes, the ones holding votes, webhooks.
    approvals: approvals::Approvals,
    evaluators: evaluators::Evaluators,
    /// Decision (and replay) requests admitted at once:
    /// `max_pending_decisions`.
    admission: Arc<tokio::sync::Semaphore>,
    admission_limit: usize,
    /// Every family of `/metrics` (the parts that count share it).
    metrics: Arc<Metrics>,
    witnessing: Option<Arc<witnessing::Witnessing>>,
}

impl Gate {
    /// Compiles the active and the shadow policy where they will be
    /// evaluated, as activation does: a gate whose `eval_memory_mb` is too
    /// small for them says so at start, instead of answering SILENCE. Call
    /// once, inside a tokio runtime, before serving.
    ///
    /// # Errors
    ///
    /// [`GateError::InvalidPolicy`] naming the policy and why.
    pub async fn check_evaluation(&self) -> Result<(), GateError> {
        for policy in [self.policies.active(), self.policies.shadow()]
            .into_iter()
            .flatten()
        {
            self.evaluators.loads(policy).await?;
        }
        Ok(())
    }

    /// Starts the background work (pushing checkpoints to witnesses). Call
    /// once, inside a tokio runtime.
    pub fn start_background(self: &Arc<Self>) {
        if let Some(w) = &self.witnessing {
            tokio::spawn(w.clone().run(self.ledger.clone()));
        }
        // What the log's governance entries say; on a shared log, what the
        // other gates change.
        tokio::spawn(self.clone().follow());
    }

    /// The checkpoint served at `/log/checkpoint`: with witnesses configured,
    /// the latest one cosigned to the quorum (cosignature lines included) once
    /// there is one; otherwise the latest.
    #[must_use]
    pub fn served_checkpoint(&self) -> String {
        self.witnessing
            .as_ref()
            .and_then(|w| w.cosigned())
            .map_or_else(|| self.ledger.latest().note.clone(), |(_, note)| note)
    }

    /// The log's checkpoint key.
    #[must_use]
    pub fn log_verifier(&self) -> &VerifierKey {
        self.ledger.verifier()
    }

    /// The gate's receipt key.
    #[must_use]
    pub fn gate_verifier(&self) -> &VerifierKey {
        self.gate_key.verifier()
    }

    /// A live (not revoked) caller by name: for a gate run inside its
    /// caller's process (`tollgate mcp stdio --data-dir`), where no
    /// credential crosses a boundary.
    #[must_use]
    pub fn caller(&self, name: &str) -> Option<Arc<callers::Caller>> {
        self.auth.callers.live(name)
    }

    /// The active policy, if any.
    #[must_use]
    pub fn active_policy(&self) -> Option<Arc<ActivePolicy>> {
        self.policies.active()
    }

    /// The active surface contract's version, if any.
    #[must_use]
    pub fn active_contract(&self) -> Option<String> {
        self.contracts.active().map(|c| c.version().to_string())
    }

    /// The ledger.
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

impl Gate {
    /// For a gateway running the gate in its own process: caller `name` as
    /// it is now (a revocation or a role taken away binds the next call),
    /// authorized for `role`.
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] if no live caller has that name;
    /// [`GateError::Forbidden`] if it lacks `role`.
    pub fn authorize_in_process(
        &self,
        name: &str,
        role: callers::Role,
    ) -> Result<callers::Authorized, GateError> {
        self.auth.in_process(name, role)
    }

    /// For a gateway in this process that authenticates its own clients by
    /// their tokens: the live caller whose token this is, authorized for
    /// `role`.
    ///
    /// # Errors
    ///
    /// As [`Gate::authorize_in_process`].
    pub fn authorize_token(
        &self,
        token: &str,
        role: callers::Role,
    ) -> Result<callers::Authorized, GateError> {
        self.auth.by_token(token, role)
    }

    /// The live caller whose bearer token this is, if any (for a gateway
    /// in this process that authenticates its own clients by their tokens).
    #[must_use]
    pub fn caller_by_token(&self, token: &str) -> Option<Arc<callers::Caller>> {
        self.auth.callers.authenticate(token)
    }

    /// Reads a request body of at most `limit` bytes within this gate's
    /// `body_read_timeout_ms` (408 past it; nothing evaluated).
    pub(crate) async fn read_body(
        &self,
        body: axum::body::Body,
        limit: usize,
    ) -> Result<axum::body::Bytes, GateError> {
        http::read_body(body, limit, self.body_read_timeout).await
    }

    /// The URL the gate listens on (after binding): the base of the links
    /// it sends (approval webhooks) unless `public_url` is configured.
    pub fn listening_at(&self, url: &str) {
        if let Some(w) = &self.approvals.webhooks {
            w.listening_at(url);
        }
    }

    /// Where approval webhook events go, if anywhere.
    #[must_use]
    pub fn notifies(&self) -> bool {
        self.approvals.webhooks.is_some()
    }
}

/// Now, in UNIX nanoseconds.
pub(crate) fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_nanos()).expect("clock before 2262")
}
