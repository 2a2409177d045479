//! `POST /v1/decisions`: the decision pipeline.
//!
//! admit → validate → idempotency → surface contract → bind the active policy and derive
//! context → evaluate (on an evaluation thread; the engine stops at the
//! wall-clock limit) → sign the receipt → append to the log → answer with the
//! receipt and a tlog-proof. Fail closed: anything that goes wrong before the
//! append is a SILENCE receipt with the reason; an append that cannot commit
//! is 503 and no decision is claimed; a request beyond
//! `max_pending_decisions` is 503 `overloaded` before anything is evaluated.

use std::sync::Arc;
use std::time::Instant;

use note::ProofBundle;
use policy::{EvalInput, Evaluation};
use protocol::{
    format_rfc3339_ns, parse_receipt, policy_derived, receipt_derived, Decision, DecisionRequest,
    DecisionResponse, PolicyRef, ReceiptBody, RECEIPT_FORMAT,
};

use crate::active::engine_name;
use crate::approvals::Lifecycle as _;
use crate::callers::{Authorized, Role};
use crate::metrics::{Outcome, Stage};
use crate::{now_ns, Gate, GateError};

/// The reason of the SILENCE receipt for a caller claiming an actor it may
/// not speak for; the policy is not evaluated.
pub const ACTOR_NOT_BOUND: &str = "actor_not_bound_to_caller";

/// A request bound to a policy and evaluated (not yet signed or logged).
struct Bound {
    active: Option<Arc<crate::ActivePolicy>>,
    decided_at: String,
    decided_at_ns: i64,
    derived: serde_json::Value,
    evaluation: Evaluation,
    /// With a shadow policy: its decision beside the enforced one, for the
    /// metrics of decisions (not of unlogged evaluations).
    shadowed: Option<(Decision, Decision)>,
}

impl Gate {
    /// An unlogged evaluation (see `POST /v1/evaluations`).
    ///
    /// # Errors
    ///
    /// [`GateError::Overloaded`], [`GateError::InvalidRequest`] (nothing
    /// evaluated).
    pub async fn evaluate(
        self: &Arc<Self>,
        who: &Authorized,
        body: &[u8],
    ) -> Result<protocol::EvaluationResponse, GateError> {
        who.require(Role::Decide)?;
        let (caller, via) = (who.caller(), who.via());
        let _admitted = self.admit()?;
        let request = DecisionRequest::parse(body)?;
        let span = tracing::info_span!(
            target: telemetry::TARGET,
            "evaluation",
            tollgate.caller = %caller.name,
            tollgate.caller.via = via,
            tollgate.actor.id = request.actor().id(),
            tollgate.surface = request.surface(),
            tollgate.action = request.action(),
            tollgate.decision = tracing::field::Empty,
            tollgate.logged = false,
        );
        let value = request.to_value();
        let contract = self.contracts.check(&value)?;
        let counters = self.history.gate.read().await;
        let approvals = match self.voted_request(&value) {
            Some(id) => self.attachable(&id, &caller.name)?,
            None => None,
        };
        let bound = tracing::Instrument::instrument(
            self.bind_and_evaluate(
                who,
                &request,
                &value,
                (contract.map(|c| c.version().to_string()), &[]),
                &counters,
                approvals,
            ),
            span.clone(),
        )
        .await;
        span.record("tollgate.decision", bound.evaluation.decision.as_str());
        Ok(protocol::EvaluationResponse {
            decision: bound.evaluation.decision,
            reason: bound.evaluation.reason,
            policy_version: bound.active.map(|a| a.version.clone()),
            logged: false,
        })
    }

    /// The pipeline for one request body from an authenticated `caller`
    /// (authenticated `via`, as receipts record it); counts the outcome in
    /// the metrics.
    ///
    /// # Errors
    ///
    /// [`GateError::Overloaded`] (nothing evaluated or written),
    /// [`GateError::InvalidRequest`] (nothing evaluated or written),
    /// [`GateError::Conflict`], [`GateError::Unavailable`] (nothing claimed),
    /// [`GateError::Internal`].
    pub async fn decide(
        self: &Arc<Self>,
        who: &Authorized,
        body: &[u8],
    ) -> Result<DecisionResponse, GateError> {
        let (caller, via) = (who.caller(), who.via());
        let started = Instant::now();
        // Attributes under `tollgate.*`; request targets and contexts never
        // (they may hold personal data).
        let span = tracing::info_span!(
            target: telemetry::TARGET,
            "decision",
            tollgate.caller = %caller.name,
            tollgate.caller.via = via,
            tollgate.actor.id = tracing::field::Empty,
            tollgate.surface = tracing::field::Empty,
            tollgate.action = tracing::field::Empty,
            tollgate.decision = tracing::field::Empty,
            tollgate.reason = tracing::field::Empty,
            tollgate.policy.version = tracing::field::Empty,
            tollgate.policy.engine = tracing::field::Empty,
            tollgate.receipt_id = tracing::field::Empty,
            tollgate.log_index = tracing::field::Empty,
            tollgate.replayed = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let result = match who.require(Role::Decide).and_then(|()| self.admit()) {
            // The pipeline runs as a task of its own that holds the
            // admission: a client that goes away cannot leave work queued
            // beyond the bound.
            Ok(admitted) => {
                let (gate, who, body) = (self.clone(), who.clone(), body.to_vec());
                let pipeline = async move {
                    let _admitted = admitted;
                    gate.decide_once(&who, &body).await
                };
                // Boxed: the pipeline's state is ~4 KB, which spawning
                // would otherwise copy through each of tokio's layers
                // (`memmove` under `tokio::spawn` was ~1 % of the gate's
                // CPU at 64 connections, `perf`).
                let pipeline = tracing::Instrument::instrument(pipeline, span.clone());
                tokio::spawn(Box::pin(pipeline))
                    .await
                    .unwrap_or_else(|e| Err(GateError::Internal(format!("decision task: {e}"))))
            }
            Err(e) => Err(e),
        };
        if !span.is_disabled() {
            match &result {
                Ok((r, _)) => {
                    span.record("tollgate.decision", r.decision.as_str());
                    span.record("tollgate.reason", r.reason.as_str());
                    span.record("tollgate.receipt_id", r.receipt_id.as_str());
                    span.record("tollgate.log_index", r.log_index);
                    span.record("tollgate.replayed", r.replayed);
                    if let Some(v) = &r.policy_version {
                        span.record("tollgate.policy.version", v.as_str());
                    }
                }
                Err(e) => {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", e.status().as_str());
                }
            }
        }
        let outcome = match &result {
            Ok((_, outcome)) => *outcome,
            Err(e) => Outcome::of_error(e),
        };
        self.metrics
            .record(&outcome, started.elapsed().as_secs_f64());
        result.map(|(r, _)| r)
    }

    /// One of the `max_pending_decisions` admissions, or
    /// [`GateError::Overloaded`] if all are taken.
    pub(crate) fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, GateError> {
        self.admission.clone().try_acquire_owned().map_err(|_| {
            GateError::Overloaded(format!(
                "{} requests are already being decided",
                self.admission_limit
            ))
        })
    }

    /// The pipeline: the response and its outcome for the metrics.
    async fn decide_once(
        self: &Arc<Self>,
        who: &Authorized,
        body: &[u8],
    ) -> Result<(DecisionResponse, Outcome), GateError> {
        let caller = who.caller();
        let mut laps = Laps::start();
        // 1. Validate: parse into the contract's types, or 400 with the field.
        let request = tracing::info_span!(target: telemetry::TARGET, "validate")
            .in_scope(|| DecisionRequest::parse(body))?;
        laps.lap(Stage::Validate);
        let span = tracing::Span::current();
        if !span.is_disabled() {
            span.record("tollgate.actor.id", request.actor().id());
            span.record("tollgate.surface", request.surface());
            span.record("tollgate.action", request.action());
        }
        let receipt_id = request.receipt_id(&caller.name);
        let request_value = request.to_value();

        // 2. Idempotency (ARCHITECTURE.md): a committed receipt for this
        //    caller, actor and key answers again if the request is the same,
        //    else 409.
        if let Some((mut found, body)) = self.existing(&receipt_id, &request_value)? {
            // A SILENCE that asked for approvals: how they stand now.
            if found.decision == Decision::Silence {
                let (id, _) = protocol::approval_id(&body.request);
                found.approval = self.approval(&id)?.map(|r| r.summary(now_ns()));
            }
            return Ok((found, Outcome::Replayed));
        }

        // 2b. The surface contract: the target and context meet the active
        //     contract's schemas for this surface and action, or 400 naming
        //     the value and the rule; nothing evaluated or logged. The
        //     fields it marks sensitive are committed in the receipt's
        //     request (the policy sees them in clear).
        let contract = self.contracts.check(&request_value)?;
        let sensitive = contract.as_deref().map_or(&[][..], |c| {
            c.sensitive(request.surface(), request.action())
        });
        // `Some` only with committed fields: the common case moves the
        // request into the receipt without a copy.
        let (committed_request, committed, openings) = if sensitive.is_empty() {
            (None, Vec::new(), protocol::Openings::new())
        } else {
            let (r, fields, openings) = self.commit(&request_value, sensitive);
            (Some(r), fields, openings)
        };
        let contract = contract.map(|c| c.version().to_string());
        let receipt_request = committed_request.as_ref().unwrap_or(&request_value);
        let request_digest = protocol::digest_of(receipt_request);
        laps.lap(Stage::Lookup);

        // 3.–4. Bind, derive, evaluate. Under counters, or with approvals to
        //    attach, this actor's decisions are one at a time from reading
        //    them to the commit (history.rs, approvals.rs), so none passes a
        //    limit another already used, and no approval is used twice.
        let counters = self.history.gate.read().await;
        let approval_id = self.voted_request(receipt_request);
        let _one_at_a_time = match counters.any() || approval_id.is_some() {
            true => Some(self.history.actor(request.actor().id()).lock_owned().await),
            false => None,
        };
        // On a shared log, one at a time across gates too (follow.rs).
        let _held = match &_one_at_a_time {
            Some(_) => self.hold_actor(request.actor().id(), &counters).await?,
            None => None,
        };
        let approvals = match &approval_id {
            // Read under the lock: another decision may have used them.
            Some(id) => self.attachable(id, &caller.name)?,
            None => None,
        };
        let relies_on_approvals = approvals.is_some();
        let Bound {
            active,
            decided_at,
            decided_at_ns,
            derived,
            evaluation,
            shadowed,
        } = tracing::Instrument::instrument(
            self.bind_and_evaluate(
                who,
                &request,
                &request_value,
                (contract, &committed),
                &counters,
                approvals,
            ),
            tracing::info_span!(target: telemetry::TARGET, "evaluate"),
        )
        .await;
        laps.lap(Stage::Evaluate);
        if let Some((enforced, shadow)) = shadowed {
            self.metrics.shadow(enforced, shadow);
        }
        let ask = evaluation.approval;

        // 5. Sign the receipt: its request the committed one if any (the
        //    one in clear is then kept for the conflict path below).
        let (receipt_request, request_value) = match committed_request {
            Some(c) => (c, Some(request_value)),
            None => (request_value, None),
        };
        let body = ReceiptBody {
            format: RECEIPT_FORMAT.into(),
            receipt_id: receipt_id.clone(),
            log: self.ledger.verifier().name().to_string(),
            request: receipt_request,
            request_digest: request_digest.clone(),
            decision: evaluation.decision,
            reason: evaluation.reason,
            policy: active.as_ref().map(|a| PolicyRef {
                version: a.version.clone(),
                engine: engine_name(&a.compiled).into(),
            }),
            derived,
            decided_at,
        };
        if let Some(p) = &body.policy {
            span.record("tollgate.policy.engine", p.engine.as_str());
        }
        let leaf = tracing::info_span!(target: telemetry::TARGET, "sign")
            .in_scope(|| body.sign(&self.gate_key))
            .map_err(|e| GateError::Internal(format!("signing the receipt: {e}")))?;

        // The openings first, so none of a committed receipt is lost (an
        // append that then fails leaves them for its retry, which commits
        // the same way).
        if !openings.is_empty() {
            let (g, rid, o) = (self.clone(), receipt_id.clone(), openings.clone());
            tokio::task::spawn_blocking(move || g.records().put_openings(&rid, &o))
                .await
                .map_err(|e| GateError::Internal(e.to_string()))??;
        }

        laps.lap(Stage::Sign);

        // 6. Append; answered only once durable. The receipt id is the log's
        //    idempotency key, so a concurrent retry with the same key cannot
        //    add a second leaf.
        let commit = self
            .ledger
            .append(leaf.clone(), receipt_id.clone().into_bytes());
        let appended = match tracing::Instrument::instrument(
            commit,
            tracing::info_span!(target: telemetry::TARGET, "commit"),
        )
        .await
        {
            Ok(a) => a,
            Err(ledger::Error::Conflict { .. }) => {
                // A concurrent request with this key committed first.
                return self
                    .existing(&receipt_id, request_value.as_ref().unwrap_or(&body.request))?
                    .map(|(r, _)| (r, Outcome::Replayed))
                    .ok_or_else(|| GateError::Internal("conflicting receipt not found".into()));
            }
            Err(e @ ledger::Error::InvalidAppend(_)) => {
                return Err(GateError::Internal(format!("receipt not appendable: {e}")))
            }
            Err(e) => return Err(GateError::Unavailable(e.to_string())),
        };
        laps.lap(Stage::Commit);
        if body.decision == Decision::Permit && !appended.duplicate && counters.any() {
            counters.record(
                request.actor().id(),
                &body.request,
                decided_at_ns,
                appended.index,
            );
        }
        // Approvals: a PERMIT that relied on them uses them up; a SILENCE
        // that asks for them opens (or shows) the request. The receipt is
        // durable either way; a failure here is logged, never a decision.
        let mut approval = None;
        let uses = body.decision == Decision::Permit && relies_on_approvals;
        let asks = body.decision == Decision::Silence && ask.is_some();
        if !appended.duplicate && (uses || asks) {
            let (gate, r, rid, who) = (
                self.clone(),
                body.request.clone(),
                receipt_id.clone(),
                caller.name.clone(),
            );
            let id = approval_id.clone().unwrap_or_default();
            let decision = body.decision;
            let done = tokio::task::spawn_blocking(move || match (decision, ask) {
                (Decision::Permit, _) => gate.use_approval(&id, &rid).map(|()| None),
                (_, Some(ask)) => gate.open_approval(&r, ask, &who, &rid).map(Some),
                _ => Ok(None),
            })
            .await
            .map_err(|e| GateError::Internal(e.to_string()))
            .and_then(|r| r);
            match done {
                Ok(a) => approval = a,
                Err(e) => tracing::error!(%receipt_id, "approval bookkeeping failed: {e}"),
            }
        }
        let proof = ProofBundle {
            extra: None,
            index: appended.index,
            proof: appended.proof,
            checkpoint: appended.checkpoint.note.clone(),
        }
        .to_text();
        laps.lap(Stage::Answer);
        if !appended.duplicate {
            laps.record(&self.metrics);
        }
        Ok((
            DecisionResponse {
                decision: body.decision,
                reason: body.reason,
                receipt_id,
                policy_version: body.policy.map(|p| p.version),
                log_index: appended.index,
                receipt: String::from_utf8(leaf).expect("receipts are UTF-8"),
                proof,
                replayed: appended.duplicate,
                approval,
                openings: (!openings.is_empty()).then_some(openings),
            },
            if appended.duplicate {
                Outcome::Replayed
            } else {
                Outcome::Decided {
                    decision: body.decision,
                    batch_len: appended.batch_len,
                    write_time: appended.write_time,
                }
            },
        ))
    }

    /// Steps 3 and 4 of the pipeline: bind the active policy and the
    /// decision time, derive the context, evaluate (fail closed). A caller
    /// claiming an actor it may not speak for binds no policy: nothing is
    /// evaluated, and the decision is SILENCE [`ACTOR_NOT_BOUND`].
    async fn bind_and_evaluate(
        &self,
        who: &Authorized,
        request: &DecisionRequest,
        request_value: &serde_json::Value,
        (contract, committed): (Option<String>, &[String]),
        counters: &crate::history::Counters,
        approvals: Option<serde_json::Value>,
    ) -> Bound {
        // 3. Bind the active policy and the decision time; derive context. A
        //    caller claiming an actor it may not speak for binds no policy:
        //    the attempt is logged as evidence, nothing is evaluated.
        let caller = who.caller();
        let bound = caller.may_speak_for(request.actor().id());
        let active = self.active_policy().filter(|_| bound);
        let decided_at_ns = now_ns();
        let decided_at = format_rfc3339_ns(decided_at_ns);
        let actor = active.as_ref().map_or(serde_json::Value::Null, |a| {
            a.compiled.actor_attributes(request.actor().id())
        });
        let mut derived = receipt_derived(actor, &caller.name, who.via());
        if let Some(principal) = who.principal() {
            derived["caller"]["on_behalf_of"] = serde_json::to_value(principal).unwrap_or_default();
        }
        if let Some(version) = contract {
            derived["contract"] = version.into();
        }
        if !committed.is_empty() {
            derived["committed"] = committed.into();
        }
        // The counters' values before this request (recorded in the receipt).
        let history = match (&active, counters.any()) {
            (Some(_), true) => Some(counters.values(request.actor().id(), decided_at_ns)),
            _ => None,
        };
        if let Some(Ok(h)) = &history {
            derived["history"] = h.clone();
        }
        if let Some(a) = approvals.filter(|_| active.is_some()) {
            derived["approvals"] = a;
        }

        // 4. Evaluate, fail closed.
        let mut shadowed = None;
        let evaluation = match &active {
            Some(_) if matches!(history, Some(Err(_))) => {
                Evaluation::silence(history.and_then(Result::err).unwrap_or_default())
            }
            None if !bound => Evaluation::silence(ACTOR_NOT_BOUND),
            None => Evaluation::silence("no policy is active"),
            Some(a) => {
                let input = EvalInput {
                    request: request_value.clone(),
                    derived: policy_derived(&decided_at, decided_at_ns, &derived),
                };
                // On an evaluation thread, not this one: a policy may run to
                // its time limit (eval_timeout_ms), and the threads serving
                // HTTP must stay free for everything else.
                match self.policies.shadow().filter(|s| s.version != a.version) {
                    None => self.evaluators.decide(a.clone(), input).await,
                    // A shadow policy: evaluated beside, on the same input,
                    // recorded and counted, never enforced.
                    Some(s) => {
                        let (enforced, shadow) = tokio::join!(
                            self.evaluators.decide(a.clone(), input.clone()),
                            self.evaluators.decide(s.clone(), input),
                        );
                        shadowed = Some((enforced.decision, shadow.decision));
                        derived["shadow"] = serde_json::json!({
                            "version": s.version,
                            "engine": engine_name(&s.compiled),
                            "decision": shadow.decision,
                            "reason": shadow.reason,
                        });
                        enforced
                    }
                }
            }
        };
        Bound {
            active,
            decided_at,
            decided_at_ns,
            derived,
            evaluation,
            shadowed,
        }
    }

    /// The committed receipt for `receipt_id`, as a response with a proof to
    /// the latest checkpoint, and its body, if it exists and records
    /// `request` (committed as the receipt commits it).
    ///
    /// # Errors
    ///
    /// [`GateError::Conflict`] if it records a different request.
    fn existing(
        &self,
        receipt_id: &str,
        request: &serde_json::Value,
    ) -> Result<Option<(DecisionResponse, ReceiptBody)>, GateError> {
        let Some((found, body)) = self.stored(receipt_id)? else {
            return Ok(None);
        };
        let committed = protocol::committed_fields(&body.derived);
        let digest = if committed.is_empty() {
            protocol::digest_of(request)
        } else {
            protocol::digest_of(&self.commit(request, &committed).0)
        };
        if body.request_digest != digest {
            return Err(GateError::Conflict {
                receipt_id: receipt_id.to_string(),
            });
        }
        Ok(Some((found, body)))
    }

    /// `request` with the values at `fields` committed: the receipt's
    /// request, the fields committed and their openings. Each salt is
    /// HMAC-SHA256 under the gate's commitment key of the field and the
    /// request's approval digest (without idempotency key or pinned
    /// version), so the same request commits the same way.
    pub(crate) fn commit(
        &self,
        request: &serde_json::Value,
        fields: &[String],
    ) -> (serde_json::Value, Vec<String>, protocol::Openings) {
        let (_, digest) = protocol::approval_id(request);
        protocol::commit_request(request, fields, |field| {
            crate::webhooks::hmac_sha256(
                &self.commit_key,
                &[field.as_bytes(), b"\0", digest.as_bytes()].concat(),
            )
        })
    }

    /// A committed receipt by id, with an inclusion proof to the latest checkpoint.
    pub(crate) fn receipt(&self, receipt_id: &str) -> Result<Option<DecisionResponse>, GateError> {
        Ok(self.stored(receipt_id)?.map(|(response, _)| response))
    }

    /// [`Gate::receipt`], and the receipt's body, parsed once.
    fn stored(
        &self,
        receipt_id: &str,
    ) -> Result<Option<(DecisionResponse, ReceiptBody)>, GateError> {
        let Some((index, _)) = self.ledger.lookup(receipt_id.as_bytes())? else {
            return Ok(None);
        };
        let leaf = self.ledger.entry(index)?;
        let (_, body) = parse_receipt(&leaf)
            .map_err(|e| GateError::Internal(format!("stored receipt {receipt_id}: {e}")))?;
        let proof = self.proof_bundle(index, None)?;
        let committed = protocol::committed_fields(&body.derived);
        let openings = match committed.is_empty() {
            true => None,
            false => Some(self.records().openings(&body.receipt_id, &committed)?),
        };
        let response = DecisionResponse {
            decision: body.decision,
            reason: body.reason.clone(),
            receipt_id: body.receipt_id.clone(),
            policy_version: body.policy.as_ref().map(|p| p.version.clone()),
            log_index: index,
            receipt: String::from_utf8(leaf)
                .map_err(|_| GateError::Internal("stored receipt is not UTF-8".into()))?,
            proof: proof.to_text(),
            replayed: true,
            approval: None,
            openings,
        };
        Ok(Some((response, body)))
    }

    /// A tlog-proof bundle for `index` in the checkpoint of `size` (latest if `None`).
    pub(crate) fn proof_bundle(
        &self,
        index: u64,
        size: Option<u64>,
    ) -> Result<ProofBundle, GateError> {
        let latest = self.ledger.latest();
        let cosigned = self.witnessing.as_ref().and_then(|w| w.cosigned());
        let (size, checkpoint) = match size {
            None => (latest.checkpoint.size, latest.note.clone()),
            // The checkpoint cosigned to the quorum at that size, if any, so
            // the bundle carries the witnesses' cosignatures.
            Some(s) if cosigned.as_ref().is_some_and(|c| c.0 == s) => {
                (s, cosigned.expect("checked").1)
            }
            Some(s) => (
                s,
                self.ledger.checkpoint(s)?.ok_or_else(|| {
                    GateError::NotFound(format!("no checkpoint was signed at size {s}"))
                })?,
            ),
        };
        Ok(ProofBundle {
            extra: None,
            index,
            proof: self.ledger.inclusion_proof(index, size)?,
            checkpoint,
        })
    }
}

/// The time a new decision spends in each [`Stage`], recorded once it is
/// decided (a retry answered from the log is not a new decision).
struct Laps {
    last: Instant,
    spent: [std::time::Duration; Stage::ALL.len()],
}

impl Laps {
    fn start() -> Laps {
        Laps {
            last: Instant::now(),
            spent: Default::default(),
        }
    }

    /// The time since the last lap was spent in `stage`.
    fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.spent[stage as usize] += now - self.last;
        self.last = now;
    }

    fn record(&self, metrics: &crate::Metrics) {
        for stage in Stage::ALL {
            metrics.stage(stage, self.spent[stage as usize]);
        }
    }
}
