//! `POST /v1/decisions`, `POST /v1/evaluations`, `POST /v1/replay` and
//! `POST /v1/permits/{receipt_id}/redeem`: authenticate, read the body,
//! hand it to the pipeline (`decide.rs`, `replay.rs`, `permits.rs`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::Json;
use protocol::{DecisionResponse, ReplayResponse, MAX_BODY_BYTES};
use serde::Deserialize;

use crate::callers::Role;
use crate::http::{json_body, Credentials};
use crate::metrics::Outcome;
use crate::permits::Redemption;
use crate::{Gate, GateError};

/// `POST /v1/decisions`: a decision (the pipeline: `Gate::decide`).
pub(crate) async fn decide(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<DecisionResponse>, GateError> {
    let who = match gate.auth.authorize(&creds, Role::Decide) {
        Ok(who) => who,
        Err(e) => {
            gate.metrics.record(&Outcome::Unauthorized, 0.0);
            return Err(e);
        }
    };
    match gate.read_body(body, MAX_BODY_BYTES).await {
        Ok(bytes) => gate.decide(&who, &bytes).await.map(Json),
        Err(e) => {
            gate.metrics.record(&Outcome::of_error(&e), 0.0);
            Err(e)
        }
    }
}

/// `POST /v1/evaluations`: what the active policy would decide on a
/// request, evaluated exactly as a decision is (the contract, the caller's
/// binding, the derived context) but neither signed nor logged: advice, never
/// a permit. The MCP gateway's `--hide-denied` lists tools with it.
pub(crate) async fn evaluate(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<protocol::EvaluationResponse>, GateError> {
    let who = gate.auth.authorize(&creds, Role::Decide)?;
    let bytes = gate.read_body(body, MAX_BODY_BYTES).await?;
    gate.evaluate(&who, &bytes).await.map(Json)
}

/// `POST /v1/replay`: body is a receipt (the signed note) or a saved
/// decision response (`Gate::replay`).
pub(crate) async fn replay(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<ReplayResponse>, GateError> {
    gate.auth.may_read(&creds)?;
    let bytes = gate.read_body(body, 256 * 1024).await?;
    gate.replay(&bytes).await.map(Json)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedeemBody {
    /// The surface the permit is honoured at.
    surface: String,
    /// The redeemer's own key for this redemption (its retries send it again).
    #[serde(default)]
    idempotency_key: Option<String>,
}

/// `POST /v1/permits/{receipt_id}/redeem` `{"surface"}`: a caller with
/// `redeem` marks a PERMIT used, exactly once.
pub(crate) async fn redeem(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(receipt_id): UrlPath<String>,
    body: Body,
) -> Result<Json<Redemption>, GateError> {
    let (caller, _) = gate.auth.authenticate(&creds, Role::Redeem)?;
    let bytes = gate.read_body(body, 4 * 1024).await?;
    let body: RedeemBody = json_body(&bytes, "redemption")?;
    gate.redeem(
        &caller,
        &receipt_id,
        &body.surface,
        body.idempotency_key.as_deref(),
    )
    .await
    .map(Json)
}
