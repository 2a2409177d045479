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
//! function), with permits redeemed in this process or at the gate.
//! Transports: HTTP(S), and the gate's Unix socket (`unix:/path`). Out of
//! scope so far: an async client.
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

pub mod admin;
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
        /// The verified answer (receipt and tlog-proof), to keep as evidence.
        response: Box<DecisionResponse>,
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
        /// The verified answer (receipt and tlog-proof), to keep as evidence.
        response: Box<DecisionResponse>,
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
    /// The answer timeout on the Unix socket.
    unix_timeout: Duration,
    /// How long `decide` waits for approvals a policy asks for.
    approval_wait: Option<Duration>,
    /// The principal this caller says it acts for (`Tollgate-On-Behalf-Of`).
    on_behalf_of: Option<String>,
}

impl Client {
    /// A client for the gate at `base` — `http://…`, `https://…`, or
    /// `unix:/path` for the sidecar's Unix socket (where the gate may know
    /// the caller by its uid, without a token) — verifying answers with
    /// `trust`. Defaults: no token, a 2 s connect and 10 s answer timeout,
    /// 2 retries; https verified against ureq's bundled Mozilla roots (for a
    /// CA file or the system's roots, pass `tls::agent(…)` to
    /// [`Client::with_agent`]).
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
            unix_timeout: Duration::from_secs(10),
            approval_wait: None,
            on_behalf_of: None,
        }
    }

    /// Say, with every request, that the caller acts for `principal`, whom
    /// it authenticated itself (the MCP gateway, for an OAuth client): the
    /// gate records it in receipts as `derived.caller.on_behalf_of`.
    #[must_use]
    pub fn on_behalf_of(mut self, principal: &protocol::OnBehalfOf) -> Client {
        self.on_behalf_of = Some(principal.header_value());
        self
    }

    /// Authenticate as the caller whose bearer token this is.
    #[must_use]
    pub fn with_token(mut self, token: &str) -> Client {
        self.token = Some(token.trim().to_string());
        self
    }

    /// Connect within `connect` and have the whole answer within `answer`
    /// (the defaults are 2 s and 10 s); past either, the call is
    /// [`Refusal::Unavailable`] (retried first).
    #[must_use]
    pub fn with_timeouts(mut self, connect: Duration, answer: Duration) -> Client {
        self.agent = ureq::AgentBuilder::new()
            .timeout_connect(connect)
            .timeout(answer)
            .build();
        self.unix_timeout = answer;
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
        let first = self.decide_once(intent);
        let Some(wait) = self.approval_wait else {
            return first;
        };
        match &first {
            // The policy asks for approvals: wait for them, then ask again.
            Err(Refusal::Silence {
                response, receipt, ..
            }) if response.approval.is_some() => {
                // The id is computed from the verified receipt's request,
                // not taken from the answer's unsigned member.
                let (id, _) = protocol::approval_id(&receipt.request);
                match self.await_approval(&id, wait) {
                    Some(()) => self.decide_once(&approved_intent(intent)),
                    None => first,
                }
            }
            _ => first,
        }
    }

    /// Asks once, without waiting for approvals.
    fn decide_once(&self, intent: &serde_json::Value) -> Result<Permit, Refusal> {
        let body = intent.to_string();
        let request =
            DecisionRequest::parse(body.as_bytes()).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let answer = self.send("/v1/decisions", &body)?;
        verify_answer(&self.trust, &request, &answer)
    }

    /// When a policy asks for approvals (SILENCE naming an approval
    /// request), [`Client::decide`] (and so [`Client::guard`]) waits up to
    /// `wait` for the request to be approved, polling it, and then asks
    /// again with the idempotency key plus `+approved` (the approval binds
    /// the request, not the key). Rejected, expired or not approved in time:
    /// the first SILENCE. Default: no waiting.
    #[must_use]
    pub fn with_approval_wait(mut self, wait: Duration) -> Client {
        self.approval_wait = Some(wait);
        self
    }

    /// Polls approval request `id` until it is approved (`Some`) or closed
    /// or `wait` has passed (`None`).
    fn await_approval(&self, id: &str, wait: Duration) -> Option<()> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match self
                .approval(id)
                .ok()
                .as_ref()
                .and_then(|a| a["state"].as_str())
            {
                Some("approved") => return Some(()),
                Some("open") | None => {}
                Some(_) => return None,
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return None;
            }
            std::thread::sleep(left.min(Duration::from_millis(250)));
        }
    }

    /// Approval request `id` as the gate holds it (`GET /v1/approvals/{id}`;
    /// the caller that asked may read its own).
    ///
    /// # Errors
    ///
    /// The gate's error status, or why it did not answer.
    pub fn approval(&self, id: &str) -> Result<serde_json::Value, String> {
        let (status, body) = self.get(&format!("/v1/approvals/{id}"))?;
        if status != 200 {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
    }

    /// One GET: the status and the body.
    fn get(&self, path: &str) -> Result<(u16, Vec<u8>), String> {
        match self.base.strip_prefix("unix:") {
            Some(socket) => self.unix_request(socket, &format!("GET {path}"), None),
            None => {
                let r = self.agent.get(&format!("{}{path}", self.base));
                self.http(r, None)
            }
        }
    }
}

/// Why a permit was not redeemed ([`Client::redeem`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    /// It was redeemed before (409); the gate names the first redemption.
    Used(String),
    /// No redemption recorded: the gate refused the request, or did not
    /// answer after the retries.
    Failed(String),
}

impl Client {
    /// Redeems the PERMIT `receipt_id` at `surface` (`POST
    /// /v1/permits/{receipt_id}/redeem`, as a caller with the `redeem`
    /// role): the gate records its use in the log, exactly once. Transport
    /// errors and 503s are retried with the same idempotency key, so a
    /// retry of a redemption that did commit is answered as that one.
    ///
    /// # Errors
    ///
    /// [`Redeem::Used`] if it was redeemed before; [`Redeem::Failed`].
    pub fn redeem(&self, receipt_id: &str, surface: &str) -> Result<serde_json::Value, Redeem> {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let body = serde_json::json!({"surface": surface, "idempotency_key": hex::encode(nonce)})
            .to_string();
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        match self.post_retrying(&format!("/v1/permits/{receipt_id}/redeem"), &body) {
            Ok((200, bytes)) => serde_json::from_slice(&bytes)
                .map_err(|e| Redeem::Failed(format!("the answer is not JSON: {e}"))),
            Ok((409, bytes)) => Err(Redeem::Used(text(&bytes))),
            Ok((code, bytes)) => Err(Redeem::Failed(format!("{code}: {}", text(&bytes)))),
            Err(last) => Err(Redeem::Failed(last)),
        }
    }
}

/// The intent asked again once approved: the same request under the
/// idempotency key plus `+approved` (cut to fit the contract's 128).
fn approved_intent(intent: &serde_json::Value) -> serde_json::Value {
    let mut again = intent.clone();
    let key = intent["idempotency_key"].as_str().unwrap_or("");
    let keep = key.len().min(protocol::MAX_ID_CHARS - "+approved".len());
    again["idempotency_key"] = format!("{}+approved", &key[..keep]).into();
    again
}

/// What the active policy would decide, unsigned and unlogged
/// (`POST /v1/evaluations`): advice, never a permit.
pub use protocol::EvaluationResponse as Evaluation;

impl Client {
    /// What the active policy would decide on `intent`, neither signed nor
    /// logged (so nothing to verify, and nothing a tool may act on).
    ///
    /// # Errors
    ///
    /// A [`Refusal`]: `Invalid` for a request outside the contract,
    /// `Unavailable` if the gate does not answer.
    pub fn evaluate(&self, intent: &serde_json::Value) -> Result<Evaluation, Refusal> {
        let body = intent.to_string();
        DecisionRequest::parse(body.as_bytes()).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let answer = self.send("/v1/evaluations", &body)?;
        serde_json::from_slice(&answer)
            .map_err(|e| Refusal::Unverified(format!("the answer is not an evaluation: {e}")))
    }
}

/// Who a credential is, as the gate knows it (`GET /v1/whoami`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Identity {
    /// The caller's name.
    pub name: String,
    /// Its roles (`decide`, `read`, `approve`, `admin`).
    pub roles: Vec<String>,
    /// The actors it may speak for: exact ids or `prefix*`.
    pub actors: Vec<String>,
}

impl Client {
    /// The caller this client's credential authenticates as.
    ///
    /// # Errors
    ///
    /// What went wrong, as text: the gate's 401 (no credential, a token that
    /// is no live caller's), or why the gate did not answer.
    pub fn whoami(&self) -> Result<Identity, String> {
        let (status, body) = self.get("/v1/whoami")?;
        if status != 200 {
            return Err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("the answer is not a caller: {e}"))
    }
}

/// Verifies a gate's answer to `request` (what [`Client::decide`] does once
/// the answer is in): the receipt's signature and body, the tlog-proof to a
/// checkpoint signed by the log key (and the witness quorum if `trust` asks),
/// and that the receipt's request is `request` (fields it commits through
/// their verified openings).
///
/// # Errors
///
/// A [`Refusal`] for anything but a verified PERMIT for `request`.
pub fn verify_answer(
    trust: &Trust,
    request: &DecisionRequest,
    answer: &[u8],
) -> Result<Permit, Refusal> {
    let response: DecisionResponse = serde_json::from_slice(answer)
        .map_err(|e| Refusal::Unverified(format!("the answer is not a decision: {e}")))?;
    let verified = verify::verify_decision(
        &response,
        &trust.log_key,
        &trust.gate_key,
        trust.witnesses.as_ref(),
    )
    .map_err(|e| Refusal::Unverified(e.to_string()))?;
    // Fields the receipt commits are compared through their openings
    // (checked by `verify_decision`); one without an opening cannot be.
    let (opened, unopened) = protocol::open_request(
        &verified.receipt.request,
        &protocol::committed_fields(&verified.receipt.derived),
        response
            .openings
            .as_ref()
            .unwrap_or(&protocol::Openings::new()),
    );
    if opened != request.to_value() || !unopened.is_empty() {
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
            response: Box::new(response),
        }),
        Decision::Silence => Err(Refusal::Silence {
            reason: receipt.reason.clone(),
            receipt_id: receipt.receipt_id.clone(),
            receipt: Box::new(receipt),
            response: Box::new(response),
        }),
    }
}

impl Client {
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
    fn send(&self, path: &str, body: &str) -> Result<Vec<u8>, Refusal> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_string();
        match self.post_retrying(path, body) {
            Ok((200, bytes)) => Ok(bytes),
            Ok((code @ (400 | 409), bytes)) => {
                Err(Refusal::Invalid(format!("{code}: {}", text(&bytes))))
            }
            Ok((code, bytes)) => Err(Refusal::Unavailable(format!("{code}: {}", text(&bytes)))),
            Err(last) => Err(Refusal::Unavailable(last)),
        }
    }

    /// POSTs `body` to `path` (HTTP(S) or the Unix socket), retrying
    /// transport errors and 503s with the very same body: the final status
    /// and body, or the last failure once the retries are spent.
    fn post_retrying(&self, path: &str, body: &str) -> Result<(u16, Vec<u8>), String> {
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50 << attempt.min(5)));
            }
            let answered = match self.base.strip_prefix("unix:") {
                Some(socket) => self.unix_request(socket, &format!("POST {path}"), Some(body)),
                None => self.post_http(path, body),
            };
            match answered {
                Ok((503, bytes)) => {
                    last = format!("503: {}", String::from_utf8_lossy(&bytes).trim());
                }
                Ok(answer) => return Ok(answer),
                Err(transport) => last = transport,
            }
        }
        Err(last)
    }

    /// One POST over HTTP(S): the status and the body, or a transport error.
    fn post_http(&self, path: &str, body: &str) -> Result<(u16, Vec<u8>), String> {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("content-type", "application/json");
        self.http(r, Some(body))
    }

    /// Sends `r` (with the caller's token, and `body` if any) and reads the
    /// status and at most [`MAX_ANSWER`] bytes of the answer.
    fn http(&self, mut r: ureq::Request, body: Option<&str>) -> Result<(u16, Vec<u8>), String> {
        if let Some(t) = &self.token {
            r = r.set("authorization", &format!("Bearer {t}"));
        }
        if let Some(p) = &self.on_behalf_of {
            r = r.set(protocol::ON_BEHALF_OF_HEADER, p);
        }
        for (k, v) in trace_context() {
            r = r.set(k, &v);
        }
        let sent = match body {
            Some(b) => r.send_string(b),
            None => r.call(),
        };
        let resp = match sent {
            Ok(resp) | Err(ureq::Error::Status(_, resp)) => resp,
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(resp.into_reader(), MAX_ANSWER),
            &mut bytes,
        )
        .map_err(|e| format!("reading the answer: {e}"))?;
        Ok((status, bytes))
    }

    /// One request (`"METHOD /route"`, with a JSON body or none) over the
    /// gate's Unix socket: HTTP/1.1, one request per connection, the answer
    /// read to its end within the answer timeout.
    fn unix_request(
        &self,
        path: &str,
        request: &str,
        body: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        use std::io::{Read as _, Write as _};
        let mut stream = std::os::unix::net::UnixStream::connect(path)
            .map_err(|e| format!("connecting to {path}: {e}"))?;
        stream
            .set_read_timeout(Some(self.unix_timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.unix_timeout)))
            .map_err(|e| e.to_string())?;
        let mut auth = self
            .token
            .as_ref()
            .map(|t| format!("authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        if let Some(p) = &self.on_behalf_of {
            auth.push_str(&format!("{}: {p}\r\n", protocol::ON_BEHALF_OF_HEADER));
        }
        for (k, v) in trace_context() {
            auth.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.map_or_else(String::new, |b| {
            format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                b.len()
            )
        });
        let whole = format!(
            "{request} HTTP/1.1\r\nhost: gate\r\n{auth}connection: close\r\n{}",
            if body.is_empty() { "\r\n" } else { &body }
        );
        // One write, so the gate finds the whole request queued. HTTP lets a
        // server answer before it reads the body (a 401) and close: a write
        // that finds the socket closed, or a read that finds it reset once
        // the answer is in, still leaves the gate's answer to read.
        let closed = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
            )
        };
        match stream.write_all(whole.as_bytes()) {
            Err(e) if !closed(&e) => return Err(format!("writing to {path}: {e}")),
            _ => {}
        }
        let mut answer = Vec::new();
        match stream.take(MAX_ANSWER).read_to_end(&mut answer) {
            Err(e) if !closed(&e) || answer.is_empty() => {
                return Err(format!("reading from {path}: {e}"))
            }
            _ => {}
        }
        parse_http_answer(&answer)
    }
}

/// The largest answer read from a gate.
const MAX_ANSWER: u64 = 1 << 20;

/// The status and body of a whole HTTP/1.1 answer (`content-length` or
/// read to the end; chunked bodies are decoded).
fn parse_http_answer(answer: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer has no complete head")?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| "the answer's head is not text")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("the answer has no status line")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = answer[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body).ok_or("the answer's chunked body is malformed")?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        if body.len() < len {
            return Err("the answer ended early".into());
        }
        body.truncate(len);
    }
    Ok((status, body))
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The W3C trace context of the current OpenTelemetry context
/// (`opentelemetry::Context::current()`), as `traceparent` and, if any,
/// `tracestate` headers: every request to the gate carries it, so the
/// gate's decision span is a child of the caller's. Nothing without a valid
/// current span. (With `tracing-opentelemetry`, attach the span's context:
/// `let _cx = tracing::Span::current().context().attach();`.)
fn trace_context() -> Vec<(&'static str, String)> {
    use opentelemetry::trace::TraceContextExt;
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return Vec::new();
    }
    let mut headers = vec![(
        "traceparent",
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        ),
    )];
    let state = sc.trace_state().header();
    if !state.is_empty() {
        headers.push(("tracestate", state));
    }
    headers
}
