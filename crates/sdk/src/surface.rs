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
//!   the service is asked to do (targets compared in RFC 8785 form);
//! - is fresh: decided at most `max_age` ago (and not in the future);
//! - was not used before: each receipt id is accepted once; ids are
//!   remembered only until they are stale anyway, so memory is bounded by
//!   `max_age` times the rate of calls.
//!
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
}

/// The tool side's verifier.
pub struct SurfaceVerifier {
    trust: Trust,
    max_age: Duration,
    /// Receipt ids accepted, with when they stop being fresh (ns).
    used: Mutex<HashMap<String, i64>>,
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
            used: Mutex::new(HashMap::new()),
        }
    }

    /// Accept permits decided at most `max_age` ago.
    #[must_use]
    pub fn with_max_age(mut self, max_age: Duration) -> SurfaceVerifier {
        self.max_age = max_age;
        self
    }

    /// Checks the permit in `header` (the header's value, `None` if absent)
    /// for `call` at `now`, and marks it used.
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
        let r = &receipt.request;
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
        let mut used = self.used.lock().expect("used lock");
        used.retain(|_, expires| *expires >= now);
        if used.contains_key(&receipt.receipt_id) {
            return Err(Refused::Used(receipt.receipt_id.clone()));
        }
        used.insert(receipt.receipt_id.clone(), decided.saturating_add(max_age));
        drop(used);
        Ok(receipt)
    }

    /// Receipt ids remembered now (for tests and metrics).
    #[must_use]
    pub fn remembered(&self) -> usize {
        self.used.lock().expect("used lock").len()
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
            let json = if bytes.is_empty() {
                serde_json::Value::Null
            } else {
                match serde_json::from_slice(&bytes) {
                    Ok(v) => v,
                    Err(e) => {
                        return Ok(refuse(
                            StatusCode::BAD_REQUEST,
                            &format!("the body is not JSON: {e}"),
                        ))
                    }
                }
            };
            let call = (layer.call_of)(&parts, &json);
            let header = parts
                .headers
                .get(PERMIT_HEADER)
                .and_then(|v| v.to_str().ok());
            if let Err(refused) = layer.verifier.check(header, &call, SystemTime::now()) {
                return Ok(refuse(StatusCode::FORBIDDEN, &refused.to_string()));
            }
            inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await
        })
    }
}
