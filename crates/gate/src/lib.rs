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
pub mod callers;
pub mod config;
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
pub use config::{Config, ConfigError, ListenAddr, LogFormat, Mode};
pub use error::GateError;
pub use http::{router, Credentials, TlsPeer, UnixPeer};
pub use metrics::Metrics;
pub use protocol::NewCaller;
pub use startup::{example_bundle, example_cedar_bundle, Started, StartupError, DEMO_ACTORS};
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
    /// How long a request body may take to arrive (`body_read_timeout_ms`).
    body_read_timeout: std::time::Duration,
    admin_token: String,
    public_read: bool,
    /// Whether it serves HTTPS (`tls_cert`): the scheme of the URLs it
    /// publishes about itself.
    serves_tls: bool,
    /// Client certificate subjects (common names) and the callers they
    /// authenticate as.
    tls_callers: std::collections::BTreeMap<String, String>,
    /// Unix-socket peer uids and the callers they authenticate as.
    unix_callers: std::collections::HashMap<u32, String>,
    callers: callers::Callers,
    /// What the log's governance entries say (callers, policy versions).
    governance: governed::Governance,
    policies: active::Policies,
    /// The active policy's counters over the log (`derived.history`).
    history: history::History,
    /// On a shared log: the tree size up to which other gates' PERMITs
    /// have been counted (`follow.rs`).
    followed: tokio::sync::Mutex<u64>,
    /// Serializes changes to approval requests (votes, opening, using up).
    approval_writes: std::sync::Mutex<()>,
    /// The ids of live approval requests that hold approvals.
    voted: std::sync::RwLock<std::collections::HashSet<String>>,
    evaluators: evaluators::Evaluators,
    /// Decision (and replay) requests admitted at once:
    /// `max_pending_decisions`.
    admission: Arc<tokio::sync::Semaphore>,
    admission_limit: usize,
    /// Every family of `/metrics` (the parts that count share it).
    metrics: Arc<Metrics>,
    witnessing: Option<Arc<witnessing::Witnessing>>,
    /// With `approval_webhooks`: notifications of approval requests.
    webhooks: Option<webhooks::Webhooks>,
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
        self.callers.live(name)
    }

    /// The active policy, if any.
    #[must_use]
    pub fn active_policy(&self) -> Option<Arc<ActivePolicy>> {
        self.policies.active()
    }

    /// The ledger.
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

impl Gate {
    /// The caller a request authenticates as, if it holds `role`, and how
    /// (receipts record it): the caller whose bearer token it carries, or
    /// without a token, on the Unix socket, the caller its peer's uid is
    /// mapped to (`unix_callers`).
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] saying what is missing: no credential, a
    /// token that is no live caller's, an unmapped uid, or a caller without
    /// `role`.
    pub(crate) fn authenticate(
        &self,
        creds: &http::Credentials,
        role: callers::Role,
    ) -> Result<(Arc<callers::Caller>, &'static str), GateError> {
        Ok(self.authorize(creds, role)?.into_parts())
    }

    /// [`Gate::authenticate`], as the value the entry points that decide
    /// or evaluate take.
    ///
    /// # Errors
    ///
    /// As [`Gate::authenticate`].
    pub(crate) fn authorize(
        &self,
        creds: &http::Credentials,
        role: callers::Role,
    ) -> Result<callers::Authorized, GateError> {
        let (caller, via) = self.identify(creds, Some(role))?;
        let who = callers::Authorized::new(caller, via, role)?;
        match &creds.on_behalf_of {
            None => Ok(who),
            Some(header) => protocol::OnBehalfOf::parse_header(header)
                .map(|p| who.on_behalf_of(p))
                .map_err(GateError::BadInput),
        }
    }

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
        let caller = self.callers.live(name).ok_or_else(|| {
            GateError::Unauthorized(format!("caller {name:?} is no longer live (revoked)"))
        })?;
        callers::Authorized::new(caller, protocol::VIA_IN_PROCESS, role)
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
        let caller = self.callers.authenticate(token).ok_or_else(|| {
            GateError::Unauthorized("the token is no longer a live caller's".into())
        })?;
        callers::Authorized::new(caller, protocol::VIA_IN_PROCESS, role)
    }

    /// The live caller whose bearer token this is, if any (for a gateway
    /// in this process that authenticates its own clients by their tokens).
    #[must_use]
    pub fn caller_by_token(&self, token: &str) -> Option<Arc<callers::Caller>> {
        self.callers.authenticate(token)
    }

    /// The caller a request authenticates as, whatever its roles, and how;
    /// `role` is the one the route needs, for the error without a credential.
    pub(crate) fn identify(
        &self,
        creds: &http::Credentials,
        role: Option<callers::Role>,
    ) -> Result<(Arc<callers::Caller>, &'static str), GateError> {
        Ok(match (&creds.bearer, creds.peer_uid) {
            (Some(token), _) => {
                let caller = self.callers.authenticate(token).ok_or_else(|| {
                    GateError::Unauthorized(
                        "the token is not a live caller's (wrong, rotated or revoked)".into(),
                    )
                })?;
                (caller, protocol::VIA_TOKEN)
            }
            (None, _) if creds.tls_subject.is_some() => {
                let cn = creds.tls_subject.as_deref().unwrap_or_default();
                let name = self.tls_callers.get(cn).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "no bearer token, and the client certificate's subject {cn:?} is \
                         mapped to no caller (tls_callers)"
                    ))
                })?;
                let caller = self.callers.live(name).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "subject {cn:?} is mapped to caller {name:?}, which does not exist or is revoked"
                    ))
                })?;
                (caller, protocol::VIA_MTLS)
            }
            (None, Some(uid)) => {
                let name = self.unix_callers.get(&uid).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "no bearer token, and the socket peer's uid {uid} is mapped to no \
                         caller (unix_callers)"
                    ))
                })?;
                let caller = self.callers.live(name).ok_or_else(|| {
                    GateError::Unauthorized(format!(
                        "uid {uid} is mapped to caller {name:?}, which does not exist or is revoked"
                    ))
                })?;
                (caller, protocol::VIA_PEER_UID)
            }
            (None, None) => {
                let needed = role.map_or_else(String::new, |r| format!(" with the {r} role"));
                return Err(GateError::Unauthorized(format!(
                    "no bearer token: this route needs a caller{needed} \
                     (Authorization: Bearer <token>)"
                )));
            }
        })
    }
}

impl Gate {
    /// Whether the request may read what reveals decisions: a caller with
    /// `read`, or anyone with `public_read = true`.
    ///
    /// # Errors
    ///
    /// [`GateError::Unauthorized`] as [`Gate::authenticate`].
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
        if let Some(w) = &self.webhooks {
            w.listening_at(url);
        }
    }

    /// Where approval webhook events go, if anywhere.
    #[must_use]
    pub fn notifies(&self) -> bool {
        self.webhooks.is_some()
    }

    pub(crate) fn may_read(&self, creds: &http::Credentials) -> Result<(), GateError> {
        if self.public_read {
            return Ok(());
        }
        self.authenticate(creds, callers::Role::Read).map(|_| ())
    }
}

/// Now, in UNIX nanoseconds.
pub(crate) fn now_ns() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_nanos()).expect("clock before 2262")
}
