//! Replay: a receipt's recorded request and derived context evaluated
//! again under its recorded policy version (and checked again against the
//! surface contract it names), and whether the decision is the same (`POST /v1/replay`, `http/decisions.rs`).

use std::sync::Arc;

use protocol::{verify_receipt, DecisionResponse, ReplayResponse};

use crate::http::json_body;
use crate::{Gate, GateError};

impl Gate {
    /// Verifies `bytes` (a receipt, or a saved decision response) with the
    /// gate key, re-evaluates it as recorded, and compares.
    ///
    /// # Errors
    ///
    /// [`GateError::BadInput`] for a receipt that does not verify;
    /// [`GateError::Overloaded`] (admitted like a decision).
    pub(crate) async fn replay(
        self: &Arc<Self>,
        bytes: &[u8],
    ) -> Result<ReplayResponse, GateError> {
        let receipt = match json_body::<DecisionResponse>(bytes, "decision response") {
            Ok(r) => r.receipt.into_bytes(),
            Err(_) => bytes.to_vec(),
        };
        let body = verify_receipt(&receipt, self.gate_verifier())
            .map_err(|e| GateError::BadInput(format!("receipt: {e}")))?;
        // Admitted like a decision, evaluated like one (on an evaluation thread).
        let _admitted = self.admit()?;
        // Committed fields: opened with the openings still held; the rest
        // are named as what the replay cannot check.
        let committed = protocol::committed_fields(&body.derived);
        let mut body = body;
        let mut unopened = Vec::new();
        if !committed.is_empty() {
            let (g, rid, fields) = (self.clone(), body.receipt_id.clone(), committed.clone());
            let openings = tokio::task::spawn_blocking(move || g.records().openings(&rid, &fields))
                .await
                .map_err(|e| GateError::Internal(e.to_string()))??;
            let (opened, left) = protocol::open_request(&body.request, &committed, &openings);
            body.request = opened;
            unopened = left;
        }
        let replayed = match &body.policy {
            None => policy::replay_receipt(&body, None)
                .map_err(|e| GateError::Internal(format!("replaying: {e}")))?,
            Some(p) => {
                // The recorded version, compiled once and kept (bounded); the
                // recorded request and derived context, decision time included.
                let (g, version) = (self.clone(), p.version.clone());
                let compiled =
                    tokio::task::spawn_blocking(move || g.policies.for_replay(&g.ledger, &version))
                        .await
                        .map_err(|e| GateError::Internal(e.to_string()))??;
                let input = policy::EvalInput {
                    request: body.request.clone(),
                    derived: body
                        .policy_derived()
                        .map_err(|e| GateError::BadInput(format!("receipt: {e}")))?,
                };
                self.evaluators.decide(compiled, input).await
            }
        };
        // The surface contract it names, checked again on the recorded request.
        let contract = match body.derived["contract"].as_str() {
            None => None,
            Some(version) => {
                let (g, version) = (self.clone(), version.to_string());
                let compiled = tokio::task::spawn_blocking(move || {
                    crate::contracts::load(g.records(), &version)
                })
                .await
                .map_err(|e| GateError::Internal(e.to_string()))??;
                Some(compiled.replay(&body.request, &unopened))
            }
        };
        let mut response = ReplayResponse::compare(&body, replayed.decision, replayed.reason)
            .with_contract(contract);
        response.unopened = unopened;
        Ok(response)
    }
}
