//! Approvals (issue 19): decisions that need people.
//!
//! A policy asks for approvals ([`policy::ApprovalAsk`]): the decision is
//! SILENCE, and once its receipt is durable the gate opens an approval
//! request — id and digest from [`protocol::approval_id`], so it binds the
//! actor, surface, action, target and context and nothing else — kept in
//! the ledger's state (`r` ‖ id). Callers with the `approve` role, never
//! the caller that asked, each counted once, approve or reject it
//! (`POST /v1/approvals/{id}`); each vote is first a signed governance
//! entry in the log (`approval.approve` / `approval.reject`), then stored.
//!
//! When a decision is asked again for the same request (a new idempotency
//! key), the open request's approvals are attached as `derived.approvals`
//! (`{by, entry}`: the approver and its log entry), recorded in the
//! receipt, and the policy decides. A PERMIT that relied on them uses them
//! up: the request is closed (`used_by`) once that receipt is durable, under
//! the actor's lock, so two decisions cannot both use one approval. A
//! rejection closes the request; so does its expiry.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::callers::{Caller, Role};
use crate::{now_ns, Gate, GateError};

/// The approval requests' service state: writes one at a time, the live
/// requests that hold approvals, and where their events are announced.
pub(crate) struct Approvals {
    /// Serializes changes to approval requests (votes, opening, using up).
    writes: std::sync::Mutex<()>,
    /// The ids of live approval requests that hold approvals.
    voted: std::sync::RwLock<std::collections::HashSet<String>>,
    /// With `approval_webhooks`: notifications of approval requests.
    pub(crate) webhooks: Option<crate::webhooks::Webhooks>,
}

impl Approvals {
    pub(crate) fn new(webhooks: Option<crate::webhooks::Webhooks>) -> Approvals {
        Approvals {
            writes: std::sync::Mutex::new(()),
            voted: std::sync::RwLock::new(std::collections::HashSet::new()),
            webhooks,
        }
    }
}

/// One vote on an approval request.
pub(crate) type Vote = protocol::ApprovalVote;

/// An approval request and its votes, as stored.
pub(crate) type Request = protocol::ApprovalRecord;

/// What the gate does with a request over its life: whether it takes votes,
/// how a decision answer and a receipt show it.
pub(crate) trait Lifecycle {
    /// Whether it still takes votes and lends its approvals.
    fn live(&self, now_ns: i64) -> bool;
    /// The record as answered: with its state.
    fn answer(&self, now_ns: i64) -> protocol::ApprovalView;
    /// The approval request as a decision response carries it.
    fn summary(&self, now_ns: i64) -> Value;
    /// The approvals a decision asked by `asker` on this request may rely
    /// on (`derived.approvals`): never the asker's own votes (a caller that
    /// approved another's request cannot then ask it itself and count its
    /// own approval; the auditor refuses such a receipt). `None` if no vote
    /// is left to attach.
    fn attachable(&self, now_ns: i64, asker: &str) -> Option<Value>;
    /// Whether any vote may be attached to someone's decision.
    fn holds_votes(&self, now_ns: i64) -> bool;
}

impl Lifecycle for Request {
    fn live(&self, now_ns: i64) -> bool {
        matches!(self.state(now_ns), "open" | "approved")
    }

    fn answer(&self, now_ns: i64) -> protocol::ApprovalView {
        protocol::ApprovalView {
            state: self.state(now_ns).to_string(),
            record: self.clone(),
        }
    }

    fn summary(&self, now_ns: i64) -> Value {
        json!({
            "id": self.id,
            "approvals": self.count,
            "given": self.approvals.len(),
            "role": "approve",
            "expires_at": self.expires_at,
            "state": self.state(now_ns),
        })
    }

    fn attachable(&self, now_ns: i64, asker: &str) -> Option<Value> {
        let votes: Vec<Value> = self
            .approvals
            .iter()
            .filter(|v| v.by != asker)
            .map(|v| json!({"by": v.by, "entry": v.entry}))
            .collect();
        (self.live(now_ns) && !votes.is_empty()).then_some(Value::Array(votes))
    }

    fn holds_votes(&self, now_ns: i64) -> bool {
        self.live(now_ns) && !self.approvals.is_empty()
    }
}

impl Gate {
    /// The id of the live approval request for `request` (normalized) if it
    /// may hold approvals. While none does, nothing is computed: the
    /// decision path pays one read of an empty set.
    pub(crate) fn voted_request(&self, request: &Value) -> Option<String> {
        let voted = self.approvals.voted.read().expect("voted lock");
        if voted.is_empty() {
            return None;
        }
        let (id, _) = protocol::approval_id(request);
        voted.contains(&id).then_some(id)
    }

    /// The approvals a decision on request `id` asked by `asker` may rely
    /// on now (`derived.approvals`), read from its record — and each vote
    /// one the log lets count (`governed.rs`): an `approval.approve` of this
    /// request by that caller, signed by this gate's key, logged while the
    /// request was open (after the SILENCE that asked, with no rejection,
    /// no PERMIT that used it and no expiry since). A record saying
    /// otherwise (written into the state by anyone but the gate: a vote
    /// invented, a rejection or a use erased, an expiry moved) lends
    /// nothing: it is refused, counted
    /// (`tollgate_state_records_refused_total{kind="approval"}`) and logged.
    pub(crate) fn attachable(&self, id: &str, asker: &str) -> Result<Option<Value>, GateError> {
        let Some(r) = self.approval(id)? else {
            return Ok(None);
        };
        let Some(votes) = r.attachable(now_ns(), asker) else {
            return Ok(None);
        };
        // The log read to its latest checkpoint: a vote, a rejection or a
        // use logged a moment ago counts.
        self.read_log()?;
        let asked = self.governance.asked(&r.digest);
        let now = now_ns();
        for v in r.approvals.iter().filter(|v| v.by != asker) {
            if !asked
                .as_ref()
                .is_some_and(|a| a.counts(v.entry, &v.by, now))
            {
                self.metrics
                    .record_refused(crate::metrics::Refused::Approval);
                tracing::error!(
                    %id,
                    by = %v.by,
                    entry = v.entry,
                    "an approval record names a vote the log does not let count (no such \
                     approval.approve of this request by that caller while it was open, or one \
                     a rejection, a PERMIT or expiry closed); nothing attached"
                );
                return Ok(None);
            }
        }
        Ok(Some(votes))
    }

    /// The live requests that hold approvals, from the ledger's state: at
    /// start-up, and on a shared log whenever the gate follows it (votes
    /// cast on other gates).
    pub(crate) fn load_votes(&self) -> Result<(), GateError> {
        let _one_at_a_time = self.approvals.writes.lock().expect("approvals lock");
        let now = now_ns();
        let mut fresh = std::collections::HashSet::new();
        for bytes in self.records().approvals()? {
            let r: Request = serde_json::from_slice(&bytes)
                .map_err(|e| GateError::Internal(format!("an approval record: {e}")))?;
            if r.holds_votes(now) {
                fresh.insert(r.id);
            }
        }
        *self.approvals.voted.write().expect("voted lock") = fresh;
        Ok(())
    }

    /// Approval request `id`, if there is one.
    pub(crate) fn approval(&self, id: &str) -> Result<Option<Request>, GateError> {
        match self.records().approval(id)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| GateError::Internal(format!("approval record {id}: {e}"))),
        }
    }

    /// Changes approval request `id`'s record with `change` (given the
    /// record as stored, `None` if there is none; it returns the new record,
    /// or `Ok(None)` to leave it), as a compare-and-swap in the store: on a
    /// shared log another gate's change in between makes `change` run again
    /// on the fresh record, so no vote or use is ever lost. Returns the
    /// record as it is after.
    fn change_approval<T>(
        &self,
        id: &str,
        mut change: impl FnMut(Option<Request>) -> Result<(Option<Request>, T), GateError>,
    ) -> Result<T, GateError> {
        for _ in 0..64 {
            let stored = self.records().approval(id)?;
            let current = stored
                .as_deref()
                .map(serde_json::from_slice::<Request>)
                .transpose()
                .map_err(|e| GateError::Internal(format!("approval record {id}: {e}")))?;
            let (new, out) = change(current)?;
            let Some(new) = new else {
                return Ok(out);
            };
            let bytes = serde_json::to_vec(&new).expect("serializable");
            if self
                .records()
                .swap_approval(id, stored.as_deref(), &bytes)?
            {
                return Ok(out);
            }
        }
        Err(GateError::Unavailable(format!(
            "approval request {id} kept changing under this write; try again"
        )))
    }

    /// After a durable SILENCE that asks for approvals: the live request
    /// for it, or a new one. Its summary, for the answer.
    pub(crate) fn open_approval(
        &self,
        request: &Value,
        ask: policy::ApprovalAsk,
        caller: &str,
        receipt_id: &str,
    ) -> Result<Value, GateError> {
        let _one = self.approvals.writes.lock().expect("approval lock");
        let now = now_ns();
        let (id, digest) = protocol::approval_id(request);
        let expires = now.saturating_add(
            i64::try_from(ask.ttl_seconds)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
        );
        let fresh = Request {
            id: id.clone(),
            digest,
            request: protocol::approval_subject(request),
            requested_by: caller.to_string(),
            receipt_id: receipt_id.to_string(),
            count: ask.count,
            requested_at: protocol::format_rfc3339_ns(now),
            expires_at: protocol::format_rfc3339_ns(expires),
            expires_at_ns: expires,
            approvals: Vec::new(),
            rejected: None,
            used_by: None,
        };
        let (summary, opened) =
            self.change_approval(&id, |current| match current.filter(|r| r.live(now)) {
                Some(live) => Ok((None, (live.summary(now), false))),
                None => Ok((Some(fresh.clone()), (fresh.summary(now), true))),
            })?;
        if opened {
            tracing::info!(%id, count = fresh.count, "approval requested");
            if let Some(w) = &self.approvals.webhooks {
                w.approval_opened(&serde_json::to_value(&fresh).expect("serializable"));
            }
        }
        Ok(summary)
    }

    /// After a durable PERMIT that relied on request `id`'s approvals: they
    /// are used up.
    pub(crate) fn use_approval(&self, id: &str, receipt_id: &str) -> Result<(), GateError> {
        let _one = self.approvals.writes.lock().expect("approval lock");
        self.change_approval(id, |current| {
            Ok((
                current.map(|mut r| {
                    r.used_by = Some(receipt_id.to_string());
                    r
                }),
                (),
            ))
        })?;
        self.approvals.voted.write().expect("voted lock").remove(id);
        Ok(())
    }

    /// A vote by `caller`: checked, logged, stored. Blocking. The caller
    /// holds the request's actor lock (this gate's and, on a shared log,
    /// the database's), which decisions relying on the request's approvals
    /// hold too: the order of votes in the log is the order in which they
    /// take effect, and no decision sees a vote or a rejection the log
    /// does not yet have.
    fn vote(
        &self,
        caller: &Caller,
        id: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<protocol::ApprovalView, GateError> {
        let _one = self.approvals.writes.lock().expect("approval lock");
        let now = now_ns();
        let r = self
            .approval(id)?
            .ok_or_else(|| GateError::NotFound(format!("no approval request {id}")))?;
        let may_vote = |r: &Request| {
            if !r.live(now) {
                return Err(GateError::BadInput(format!(
                    "approval request {id} is {}",
                    r.state(now)
                )));
            }
            if caller.name == r.requested_by {
                return Err(GateError::Forbidden(format!(
                    "caller {} asked for the decision and may not approve it",
                    caller.name
                )));
            }
            if r.approvals.iter().any(|v| v.by == caller.name) {
                return Err(GateError::BadInput(format!(
                    "caller {} has already approved {id}",
                    caller.name
                )));
            }
            Ok(())
        };
        may_vote(&r)?;
        let action = if approve {
            protocol::GovernanceAction::ApprovalApprove
        } else {
            protocol::GovernanceAction::ApprovalReject
        };
        // The request's expiry is in the vote, so an auditor can check that no
        // decision relied on the vote after it (the ttl is in no other entry).
        let mut subject = json!({"id": r.id, "digest": r.digest, "expires_at": r.expires_at});
        if let Some(n) = &note {
            subject["note"] = json!(n);
        }
        let entry = self.record_blocking(action, &format!("caller:{}", caller.name), subject)?;
        let vote = Vote {
            by: caller.name.clone(),
            entry,
            at: protocol::format_rfc3339_ns(now),
            note,
        };
        // Stored only on the record as it is now: a vote another gate stored
        // meanwhile is kept, and a request closed meanwhile takes no vote
        // (its entry stays in the log, counted by nobody: the audit knows a
        // vote after a rejection does not count).
        let r = self.change_approval(id, |current| {
            let mut r =
                current.ok_or_else(|| GateError::NotFound(format!("no approval request {id}")))?;
            may_vote(&r).map_err(|e| {
                GateError::BadInput(format!(
                    "{e}: the vote was logged at entry {entry} but does not count"
                ))
            })?;
            if approve {
                r.approvals.push(vote.clone());
            } else {
                r.rejected = Some(vote.clone());
            }
            Ok((Some(r.clone()), r))
        })?;
        let mut voted = self.approvals.voted.write().expect("voted lock");
        if approve {
            voted.insert(r.id.clone());
        } else {
            voted.remove(&r.id);
        }
        drop(voted);
        tracing::info!(%id, by = %caller.name, approve, "approval vote");
        Ok(r.answer(now))
    }
}

impl Gate {
    /// `caller`'s vote on request `id` ([`Gate::vote`]) under the request's
    /// actor lock, here and across gates, so a vote and a decision that
    /// would use the approvals never interleave.
    pub(crate) async fn cast_vote(
        self: &Arc<Self>,
        caller: Arc<Caller>,
        id: String,
        approve: bool,
        note: Option<String>,
    ) -> Result<protocol::ApprovalView, GateError> {
        let actor = self
            .approval(&id)?
            .and_then(|r| r.request["actor"]["id"].as_str().map(str::to_string))
            .ok_or_else(|| GateError::NotFound(format!("no approval request {id}")))?;
        let _local = self.history.actor(&actor).lock_owned().await;
        let _held = self.hold(&format!("actor/{actor}")).await?;
        let gate = self.clone();
        tokio::task::spawn_blocking(move || gate.vote(&caller, &id, approve, note))
            .await
            .map_err(|e| GateError::Internal(e.to_string()))?
    }

    /// Request `id` and its votes, for a caller with `approve` or `admin`,
    /// or the caller that asked.
    pub(crate) fn approval_view(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<protocol::ApprovalView, GateError> {
        let r = self
            .approval(id)?
            .ok_or_else(|| GateError::NotFound(format!("no approval request {id}")))?;
        if !(caller.has(Role::Approve) || caller.has(Role::Admin) || caller.name == r.requested_by)
        {
            return Err(GateError::Forbidden(format!(
                "caller {} neither approves nor asked for {id}",
                caller.name
            )));
        }
        Ok(r.answer(now_ns()))
    }

    /// The live requests (all of them with `all`), for a caller with
    /// `approve` or `admin`.
    pub(crate) fn approval_list(
        &self,
        caller: &Caller,
        all: bool,
    ) -> Result<protocol::ApprovalList, GateError> {
        if !(caller.has(Role::Approve) || caller.has(Role::Admin)) {
            return Err(GateError::Forbidden(format!(
                "caller {} lacks the approve role",
                caller.name
            )));
        }
        let now = now_ns();
        let mut out = Vec::new();
        for bytes in self.records().approvals()? {
            let r: Request = serde_json::from_slice(&bytes)
                .map_err(|e| GateError::Internal(format!("an approval record: {e}")))?;
            if all || r.live(now) {
                out.push(r.answer(now));
            }
        }
        Ok(protocol::ApprovalList { approvals: out })
    }
}
