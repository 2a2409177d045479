//! The agent side of Tollgate: ask the gate for a decision, verify the
//! answer independently, and run the tool only on a verified PERMIT.
//!
//! In scope: a blocking client for the decision API over HTTP or HTTPS with
//! a caller's token, connect and answer timeouts, and retries that are safe
//! because they resend the same idempotency key; verification of every
//! answer with `crates/verify` (gate signature, canonical receipt, the
//! tlog-proof to a checkpoint signed by the log key, optionally a
//! tlog-policy witness quorum) plus the check that the receipt's request is
//! the one sent; and [`Client::guard`], which hands the tool a [`Permit`] —
//! a value only a verified PERMIT can construct; and the tool side
//! ([`surface`]): a permit header the agent attaches to an HTTP tool call,
//! and the verifier the tool's service runs (a tower layer, or a plain
//! function). Out of scope so far: the Unix-socket transport and an async
//! client.
//!
//! ```no_run
//! use sdk::{Client, Trust};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = Trust::new(
//!     note::VerifierKey::parse(&std::fs::read_to_string("log.vkey")?)?,
//!     note::VerifierKey::parse(&std::fs::read_to_string("gate.vkey")?)?,
//! );
//! let client = Client::new("http://127.0.0.1:8080", trust)
//!     .with_token(std::fs::read_to_string("data/demo.token")?.trim());
//! let intent = serde_json::json!({
//!     "actor": {"id": "agent-treasury", "kind": "agent"},
//!     "surface": "payments", "action": "transfer",
//!     "target": {"amount": 500, "to": "acct-9"},
//!     "idempotency_key": "invoice-42",
//! });
//! // The closure runs only on a verified PERMIT, and gets the proof of it.
//! let paid = client.guard(&intent, |permit| {
//!     println!("paying under receipt {}", permit.receipt_id());
//! })?;
//! # Ok(()) }
//! ```

pub mod surface;

use std::time::Duration;

use note::{Policy, VerifierKey};
use protocol::{Decision, DecisionRequest, DecisionResponse, ReceiptBody};

/// The keys an answer must verify with.
#[derive(Clone, Debug)]
pub struct Trust {
    log_key: VerifierKey,
    gate_key: VerifierKey,
    witnesses: Option<Policy>,
}

impl Trust {
    /// Trust the log's checkpoint key and the gate's receipt key.
    #[must_use]
    pub fn new(log_key: VerifierKey, gate_key: VerifierKey) -> Trust {
        Trust {
            log_key,
            gate_key,
            witnesses: None,
        }
    }

    /// Also require the checkpoint a proof leads to be cosigned by this
    /// C2SP tlog-policy's witness quorum (the policy must name the log key).
    #[must_use]
    pub fn with_witnesses(mut self, policy: Policy) -> Trust {
        self.witnesses = Some(policy);
        self
    }
}

/// Why a tool was not run. Every case but [`Refusal::Invalid`] is SILENCE
/// or DENY from the agent's point of view: fail closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The gate decided DENY; the verified receipt says why.
    #[error("DENY: {reason} (receipt {receipt_id})")]
    Deny {
        /// The policy's reason.
        reason: String,
        /// The receipt's id.
        receipt_id: String,
        /// The verified receipt.
        receipt: Box<ReceiptBody>,
    },
    /// The gate decided SILENCE (nothing permitted it, or something
    /// failed); the verified receipt says why.
    #[error("SILENCE: {reason} (receipt {receipt_id})")]
    Silence {
        /// Why.
        reason: String,
        /// The receipt's id.
        receipt_id: String,
        /// The verified receipt.
        receipt: Box<ReceiptBody>,
    },
    /// No usable answer: the gate is unreachable, timed out, answered 503
    /// or another error status. Treated as SILENCE; nothing to verify.
    #[error("SILENCE (no decision): {0}")]
    Unavailable(String),
    /// An answer came and did not verify: bad signature, a proof that does
    /// not verify, garbage, or a receipt for another request. Treated as
    /// SILENCE.
    #[error("SILENCE (the answer does not verify): {0}")]
    Unverified(String),
    /// The intent itself is not a valid request (nothing was sent), or the
    /// gate refused it as invalid (400) or as an idempotency conflict (409).
    #[error("invalid intent: {0}")]
    Invalid(String),
}

/// Proof that the gate permitted exactly this call: built only from an
/// answer whose receipt and proof verified and that says PERMIT for the
/// request that was sent. A tool that takes a `&Permit` cannot be called
/// without one.
#[derive(Debug)]
pub struct Permit {
    response: DecisionResponse,
    receipt: ReceiptBody,
    index: u64,
}

impl Permit {
    /// The receipt's id.
    #[must_use]
    pub fn receipt_id(&self) -> &str {
        &self.receipt.receipt_id
    }

    /// The verified receipt.
    #[must_use]
    pub fn receipt(&self) -> &ReceiptBody {
        &self.receipt
    }

    /// The receipt's index in the log.
    #[must_use]
    pub fn log_index(&self) -> u64 {
        self.index
    }

    /// The gate's whole answer (receipt note and tlog-proof), to keep or
    /// to hand to the tool's service.
    #[must_use]
    pub fn response(&self) -> &DecisionResponse {
        &self.response
    }
}

/// A client for one gate.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    trust: Trust,
    retries: u32,
}

impl Client {
    /// A client for the gate at `base` (`http://…` or `https://…`),
    /// verifying answers with `trust`. Defaults: no token, a 2 s connect
    /// and 10 s answer timeout, 2 retries; https verified against the
    /// system's roots.
    #[must_use]
    pub fn new(base: &str, trust: Trust) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            token: None,
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(2))
                .timeout(Duration::from_secs(10))
                .build(),
            trust,
            retries: 2,
        }
    }

    /// Authenticate as the caller whose bearer token this is.
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.trim().to_string());
        self
    }

    /// Use this HTTP(S) agent (for example `tls::agent` with a CA file, or
    /// other timeouts).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> Client {
        self.agent = agent;
        self
    }

    /// Retry this many times after a transport error or a 503 (each retry
    /// resends the same request, so the same idempotency key: the gate
    /// answers the original decision if one was made).
    #[must_use]
    pub fn with_retries(mut self, retries: u32) -> Client {
        self.retries = retries;
        self
    }

    /// Asks the gate for a decision on `intent` and verifies the answer.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] for anything but a verified PERMIT for this intent.
    pub fn decide(&self, intent: &serde_json::Value) -> Result<Permit, Refusal> {
        let body = intent.to_string();
        let request =
            DecisionRequest::parse(body.as_bytes()).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let answer = self.send(&body)?;
        let response: DecisionResponse = serde_json::from_slice(&answer)
            .map_err(|e| Refusal::Unverified(format!("the answer is not a decision: {e}")))?;
        let verified = verify::verify_decision(
            &response,
            &self.trust.log_key,
            &self.trust.gate_key,
            self.trust.witnesses.as_ref(),
        )
        .map_err(|e| Refusal::Unverified(e.to_string()))?;
        if verified.receipt.request != request.to_value() {
            return Err(Refusal::Unverified(
                "the receipt is for another request than the one sent".into(),
            ));
        }
        let receipt = verified.receipt;
        match receipt.decision {
            Decision::Permit => Ok(Permit {
                response,
                index: verified.index,
                receipt,
            }),
            Decision::Deny => Err(Refusal::Deny {
                reason: receipt.reason.clone(),
                receipt_id: receipt.receipt_id.clone(),
                receipt: Box::new(receipt),
            }),
            Decision::Silence => Err(Refusal::Silence {
                reason: receipt.reason.clone(),
                receipt_id: receipt.receipt_id.clone(),
                receipt: Box::new(receipt),
            }),
        }
    }

    /// Runs `tool` only on a verified PERMIT for `intent`, handing it the
    /// [`Permit`]; returns what the tool returned.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] (and the tool is not run) for DENY, SILENCE, an
    /// unreachable or failing gate, or an answer that does not verify.
    pub fn guard<T>(
        &self,
        intent: &serde_json::Value,
        tool: impl FnOnce(&Permit) -> T,
    ) -> Result<T, Refusal> {
        let permit = self.decide(intent)?;
        Ok(tool(&permit))
    }

    /// POSTs the request, retrying transport errors and 503s.
    fn send(&self, body: &str) -> Result<Vec<u8>, Refusal> {
        let url = format!("{}/v1/decisions", self.base);
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50 << attempt.min(5)));
            }
            let mut r = self
                .agent
                .post(&url)
                .set("content-type", "application/json");
            if let Some(t) = &self.token {
                r = r.set("authorization", &format!("Bearer {t}"));
            }
            match r.send_string(body) {
                Ok(resp) => {
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(resp.into_reader(), 1 << 20),
                        &mut bytes,
                    )
                    .map_err(|e| Refusal::Unavailable(format!("reading the answer: {e}")))?;
                    return Ok(bytes);
                }
                Err(ureq::Error::Status(503, r)) => {
                    last = format!("503: {}", r.into_string().unwrap_or_default().trim());
                }
                Err(ureq::Error::Status(code @ (400 | 409), r)) => {
                    return Err(Refusal::Invalid(format!(
                        "{code}: {}",
                        r.into_string().unwrap_or_default().trim()
                    )))
                }
                Err(ureq::Error::Status(code, r)) => {
                    return Err(Refusal::Unavailable(format!(
                        "{code}: {}",
                        r.into_string().unwrap_or_default().trim()
                    )))
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(Refusal::Unavailable(last))
    }
}
