//! Enforcement at the execution surface: the tool's own service refuses a
//! call that does not carry a fresh, unused PERMIT for exactly that call.
//!
//! The permit travels in the [`PERMIT_HEADER`] header: the gate's whole
//! decision answer (receipt note and tlog-proof) as JSON, base64url without
//! padding. [`SurfaceVerifier::check`] is the plain function; [`PermitLayer`]
//! wraps any tower service of `http::Request<axum::body::Body>` (axum or
//! hyper). A call is served only if its permit
//! - verifies: gate signature, canonical receipt, tlog-proof to a checkpoint
//!   signed by the log key (and a witness quorum if the trust asks);
//! - says PERMIT;
//! - is for this call: the receipt's surface, action and target equal what
//!   the service is asked to do (targets compared in RFC 8785 form; a field
//!   the receipt commits through the permit's verified opening of it);
//! - is fresh: decided at most `max_age` ago (and not in the future);
//! - was not used before: its [`Redeemer`] records it used, once. The
//!   default, [`InProcess`], remembers receipt ids in this process only
//!   (until they are stale anyway, so memory is bounded by `max_age` times
//!   the rate of calls): **two replicas of a service, or one restarted
//!   within `max_age`, would each accept the same permit once.** For single
//!   use across replicas and restarts use [`AtGate`] (the gate records the
//!   redemption in its log, exactly once, naming the surface; `proofcheck
//!   audit` checks no permit was redeemed twice) or a [`Redeemer`] over a
//!   store of your own that all replicas share.
//!
//! The body is parsed as strict JSON (a duplicate member name, which two
//! parsers could read differently, is refused, as the gate refuses it).
//! Anything else is 403 with a JSON body naming the reason; the handler
//! never runs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64URL, Engine as _};
use protocol::{Decision, DecisionResponse, ReceiptBody};

use crate::{Permit, Trust};

/// The HTTP header that carries a permit to a tool's service.
pub const PERMIT_HEADER: &str = "tollgate-permit";

/// The default freshness window.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);

impl Permit {
    /// The value of the [`PERMIT_HEADER`] that carries this permit.
    #[must_use]
    pub fn header_value(&self) -> String {
        B64URL.encode(serde_json::to_vec(&self.response).expect("serializable"))
    }
}

/// What the service is asked to do, to hold against the permit.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    /// The surface (for example a fixed `payments`).
    pub surface: String,
    /// The action (for example from the route).
    pub action: String,
    /// The target (for example the JSON body).
    pub target: serde_json::Value,
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// No permit header.
    #[error("no permit: the call carries no {PERMIT_HEADER} header")]
    Missing,
    /// The header is not a decision answer.
    #[error("malformed permit: {0}")]
    Malformed(String),
    /// The permit does not verify.
    #[error("the permit does not verify: {0}")]
    Unverified(String),
    /// The permit records DENY or SILENCE.
    #[error("the permit records {0}, not PERMIT")]
    NotPermit(String),
    /// The permit is for another call.
    #[error("the permit is for another call: {0}")]
    Mismatch(String),
    /// The permit is older than the freshness window (or from the future).
    #[error("the permit is not fresh: decided {0}")]
    Stale(String),
    /// The permit was used before.
    #[error("the permit was used before (receipt {0})")]
    Used(String),
    /// The permit could not be recorded as used (the gate unreachable, a
    /// store failing): the call must not run.
    #[error("the permit could not be redeemed: {0}")]
    Unredeemed(String),
    /// The call's body is not strict JSON.
    #[error("the body is not strict JSON: {0}")]
    Body(String),
}

/// Where a [`SurfaceVerifier`] records the permits it accepted, so each
/// runs once. Called only for a verified, fresh PERMIT for the call.
pub trait Redeemer: Send + Sync {
    /// Marks `receipt` used at `surface`. `fresh_until_ns` is when it would
    /// be refused as stale anyway (a store may forget it after).
    ///
    /// # Errors
    ///
    /// [`Refused::Used`] if it was used before; [`Refused::Unredeemed`] if
    /// it could not be recorded.
    fn redeem(
        &self,
        receipt: &ReceiptBody,
        surface: &str,
        fresh_until_ns: i64,
        now_ns: i64,
    ) -> Result<(), Refused>;

    /// Receipt ids held in memory now (for tests and metrics).
    fn remembered(&self) -> usize {
        0
    }
}

/// Single use in this process only (the default): receipt ids are kept in
/// memory until they are stale. Replicas and restarts do not share it.
#[derive(Default)]
pub struct InProcess {
    used: Mutex<HashMap<String, i64>>,
}

impl Redeemer for InProcess {
    fn redeem(
        &self,
        receipt: &ReceiptBody,
        _surface: &str,
        fresh_until_ns: i64,
        now_ns: i64,
    ) -> Result<(), Refused> {
        let mut used = self.used.lock().expect("used lock");
        used.retain(|_, expires| *expires >= now_ns);
        if used.contains_key(&receipt.receipt_id) {
            return Err(Refused::Used(receipt.receipt_id.clone()));
        }
        used.insert(receipt.receipt_id.clone(), fresh_until_ns);
        Ok(())
    }

    fn remembered(&self) -> usize {
        self.used.lock().expect("used lock").len()
    }
}

/// Single use across replicas and restarts: the gate redeems the permit
/// (`POST /v1/permits/{receipt_id}/redeem`, a caller with the `redeem`
/// role), recording it in the log exactly once. Blocking (HTTP).
pub struct AtGate {
    client: crate::Client,
}

impl AtGate {
    /// Redeems through `client` (the gate's URL and a `redeem` caller's token).
    #[must_use]
    pub fn new(client: crate::Client) -> AtGate {
        AtGate { client }
    }
}

impl Redeemer for AtGate {
    fn redeem(
        &self,
        receipt: &ReceiptBody,
        surface: &str,
        _fresh_until_ns: i64,
        _now_ns: i64,
    ) -> Result<(), Refused> {
        match self.client.redeem(&receipt.receipt_id, surface) {
            Ok(_) => Ok(()),
            Err(crate::Redeem::Used(why)) => {
                Err(Refused::Used(format!("{}: {why}", receipt.receipt_id)))
            }
            Err(crate::Redeem::Failed(why)) => Err(Refused::Unredeemed(why)),
        }
    }
}

/// The tool side's verifier.
pub struct SurfaceVerifier {
    trust: Trust,
    max_age: Duration,
    /// Where accepted permits are recorded used.
    redeemer: Arc<dyn Redeemer>,
}

fn now_ns(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl SurfaceVerifier {
    /// A verifier trusting `trust`, accepting permits decided at most
    /// [`DEFAULT_MAX_AGE`] ago.
    #[must_use]
    pub fn new(trust: Trust) -> SurfaceVerifier {
        SurfaceVerifier {
            trust,
            max_age: DEFAULT_MAX_AGE,
            redeemer: Arc::new(InProcess::default()),
        }
    }

    /// Record accepted permits with `redeemer` (for example [`AtGate`])
    /// instead of in this process only.
    #[must_use]
    pub fn with_redeemer(mut self, redeemer: Arc<dyn Redeemer>) -> SurfaceVerifier {
        self.redeemer = redeemer;
        self
    }

    /// Accept permits decided at most `max_age` ago.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> SurfaceVerifier {
        self.max_age = max_age;
        self
    }

    /// Checks the permit in `header` (the header's value, `None` if absent)
    /// for `call` at `now`, and redeems it (marks it used). Blocking if the
    /// redeemer is ([`AtGate`]).
    ///
    /// # Errors
    ///
    /// [`Refused`] saying why.
    pub fn check(
        &self,
        header: Option<&str>,
        call: &Call,
        now: SystemTime,
    ) -> Result<ReceiptBody, Refused> {
        let header = header.ok_or(Refused::Missing)?;
        let bytes = B64URL
            .decode(header.trim())
            .map_err(|e| Refused::Malformed(format!("not base64url: {e}")))?;
        let response: DecisionResponse = serde_json::from_slice(&bytes)
            .map_err(|e| Refused::Malformed(format!("not a decision answer: {e}")))?;
        let verified = verify::verify_decision(
            &response,
            &self.trust.log_key,
            &self.trust.gate_key,
            self.trust.witnesses.as_ref(),
        )
        .map_err(|e| Refused::Unverified(e.to_string()))?;
        let receipt = verified.receipt;
        if receipt.decision != Decision::Permit {
            return Err(Refused::NotPermit(receipt.decision.as_str().into()));
        }
        // Committed fields (sensitive in the surface contract) are compared
        // through their openings, which `verify_decision` checked: a field
        // whose opening is missing cannot show the call is the one permitted.
        let committed = protocol::committed_fields(&receipt.derived);
        let (opened, unopened) = protocol::open_request(
            &receipt.request,
            &committed,
            response
                .openings
                .as_ref()
                .unwrap_or(&protocol::Openings::new()),
        );
        if let Some(field) = unopened.first() {
            return Err(Refused::Mismatch(format!(
                "the receipt commits {field} and the permit carries no opening of it"
            )));
        }
        let r = &opened;
        for (what, got, want) in [
            (
                "surface",
                &r["surface"],
                &serde_json::Value::from(call.surface.as_str()),
            ),
            (
                "action",
                &r["action"],
                &serde_json::Value::from(call.action.as_str()),
            ),
            ("target", &r["target"], &call.target),
        ] {
            if protocol::canonical(got) != protocol::canonical(want) {
                return Err(Refused::Mismatch(format!(
                    "{what} {} permitted, {} asked",
                    protocol::canonical(got),
                    protocol::canonical(want)
                )));
            }
        }
        let decided = protocol::parse_rfc3339_ns(&receipt.decided_at)
            .map_err(|e| Refused::Malformed(format!("decided_at: {e}")))?;
        let now = now_ns(now);
        let max_age = i64::try_from(self.max_age.as_nanos()).unwrap_or(i64::MAX);
        // A permit from the future (beyond a second of clock skew) is refused too.
        if now.saturating_sub(decided) > max_age || decided.saturating_sub(now) > 1_000_000_000 {
            return Err(Refused::Stale(receipt.decided_at.clone()));
        }
        self.redeemer.redeem(
            &receipt,
            &call.surface,
            decided.saturating_add(max_age),
            now,
        )?;
        Ok(receipt)
    }

    /// Receipt ids remembered in this process now (for tests and metrics).
    #[must_use]
    pub fn remembered(&self) -> usize {
        self.redeemer.remembered()
    }
}

/// How a service's HTTP request maps to the call it asks for: from the
/// request head and its body parsed as JSON (`Null` if empty).
pub type CallOf = dyn Fn(&axum::http::request::Parts, &serde_json::Value) -> Call + Send + Sync;

/// A tower layer that puts a [`SurfaceVerifier`] in front of a service.
#[derive(Clone)]
pub struct PermitLayer {
    verifier: Arc<SurfaceVerifier>,
    call_of: Arc<CallOf>,
    body_limit: usize,
}

impl PermitLayer {
    /// Checks every request with `verifier`, the call being `call_of(head,
    /// body)`; bodies up to 64 KiB.
    pub fn new(
        verifier: Arc<SurfaceVerifier>,
        call_of: impl Fn(&axum::http::request::Parts, &serde_json::Value) -> Call
            + Send
            + Sync
            + 'static,
    ) -> PermitLayer {
        PermitLayer {
            verifier,
            call_of: Arc::new(call_of),
            body_limit: 64 << 10,
        }
    }
}

impl<S> tower::Layer<S> for PermitLayer {
    type Service = PermitService<S>;

    fn layer(&self, inner: S) -> PermitService<S> {
        PermitService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`PermitLayer`] makes.
#[derive(Clone)]
pub struct PermitService<S> {
    inner: S,
    layer: PermitLayer,
}

fn refuse(status: StatusCode, reason: &str) -> Response<Body> {
    let body = serde_json::json!({"error": "permit_refused", "message": reason});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a response")
}

impl<S> tower::Service<Request<Body>> for PermitService<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Body>, S::Error>> + Send>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let Ok(bytes) = axum::body::to_bytes(body, layer.body_limit).await else {
                return Ok(refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is too large or could not be read",
                ));
            };
            // Strict: the handler may parse the body with another parser,
            // which must not read a value the permit was not checked for.
            let json = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                match protocol::strict::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        let refused = Refused::Body(e.to_string());
                        return Ok(refuse(StatusCode::FORBIDDEN, &refused.to_string()));
                    }
                }
            };
            let call = (layer.call_of)(&parts, &json);
            let header = parts
                .headers
                .get(PERMIT_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let verifier = layer.verifier.clone();
            // The redeemer may block (a request to the gate).
            let checked = tokio::task::spawn_blocking(move || {
                verifier.check(header.as_deref(), &call, SystemTime::now())
            })
            .await
            .unwrap_or_else(|e| Err(Refused::Unredeemed(format!("the check failed: {e}"))));
            if let Err(refused) = checked {
                return Ok(refuse(StatusCode::FORBIDDEN, &refused.to_string()));
            }
            inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
        })
    }
}
