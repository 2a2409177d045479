//! The read API: receipts, proofs, checkpoints, C2SP tlog-tiles, policy
//! bundles for replay, and who a caller is.
//!
//! Checkpoints, hash tiles and proofs by index are public (witnesses and
//! monitors need them). What reveals decisions — receipts by id, proofs by
//! receipt id, entry bundles, policy bundles, replay — needs a caller with
//! `read`, unless the configuration says `public_read = true`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use protocol::DecisionResponse;
use serde::Deserialize;

use crate::http::{text, Credentials};
use crate::{Gate, GateError};

/// `GET /v1/receipts/{receipt_id}`: the receipt with a proof to the latest checkpoint.
pub(crate) async fn receipt(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Path(receipt_id): Path<String>,
) -> Result<Json<DecisionResponse>, GateError> {
    gate.auth.may_read(&creds)?;
    gate.receipt(&receipt_id)?
        .map(Json)
        .ok_or_else(|| GateError::NotFound(format!("no receipt {receipt_id}")))
}

/// `GET /v1/whoami`: the caller the request authenticates as (name,
/// roles, actors; never its token digest), whatever its roles. A gateway in
/// front of tools checks its own clients' tokens with it.
pub(crate) async fn whoami(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<crate::callers::Caller>, GateError> {
    let (caller, _) = gate.auth.identify(&creds, None)?;
    Ok(Json(caller.public()))
}

#[derive(Deserialize)]
pub(crate) struct InclusionQuery {
    receipt_id: Option<String>,
    index: Option<u64>,
    size: Option<u64>,
}

/// `GET /v1/proofs/inclusion?receipt_id=…|index=…[&size=…]`: a C2SP
/// tlog-proof bundle to the checkpoint signed at `size` (default: latest).
pub(crate) async fn inclusion(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Query(q): Query<InclusionQuery>,
) -> Result<Response, GateError> {
    let index = match (q.index, q.receipt_id) {
        (Some(i), None) => i,
        (None, Some(id)) => {
            gate.auth.may_read(&creds)?;
            gate.ledger
                .lookup(id.as_bytes())?
                .ok_or_else(|| GateError::NotFound(format!("no receipt {id}")))?
                .0
        }
        _ => {
            return Err(GateError::BadInput(
                "give exactly one of receipt_id and index".into(),
            ))
        }
    };
    Ok(text(gate.proof_bundle(index, q.size)?.to_text()))
}

#[derive(Deserialize)]
pub(crate) struct ConsistencyQuery {
    old: u64,
    new: Option<u64>,
}

/// `GET /v1/proofs/consistency?old=…[&new=…]`: the RFC 9162 consistency
/// proof, one base64 hash per line (as in tlog-witness requests).
pub(crate) async fn consistency(
    State(gate): State<Arc<Gate>>,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Response, GateError> {
    let new = q
        .new
        .unwrap_or_else(|| gate.ledger.latest().checkpoint.size);
    let proof = gate.ledger.consistency_proof(q.old, new)?;
    Ok(text(proof.iter().map(|h| B64.encode(h.0) + "\n").collect()))
}

/// `GET /v1/checkpoints/{size}`: the checkpoint signed at that size.
pub(crate) async fn checkpoint(
    State(gate): State<Arc<Gate>>,
    Path(size): Path<u64>,
) -> Result<Response, GateError> {
    gate.ledger
        .checkpoint(size)?
        .map(text)
        .ok_or_else(|| GateError::NotFound(format!("no checkpoint was signed at size {size}")))
}

/// `GET /log/checkpoint`: the latest signed checkpoint (C2SP tlog-tiles).
pub(crate) async fn latest_checkpoint(State(gate): State<Arc<Gate>>) -> Response {
    let mut r = text(gate.served_checkpoint());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, "no-store".parse().expect("header"));
    r
}

/// `GET /log/tile/…`: hash tiles and entry bundles (C2SP tlog-tiles).
pub(crate) async fn tile(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Path(path): Path<String>,
) -> Result<Response, GateError> {
    let tile = tlog::Tile::parse_path(&format!("tile/{path}"))
        .map_err(|e| GateError::NotFound(format!("tile/{path}: {e}")))?;
    if tile.entries {
        gate.auth.may_read(&creds)?;
    }
    let g = gate.clone();
    let bytes = tokio::task::spawn_blocking(move || g.ledger.tile(&tile))
        .await
        .map_err(|e| GateError::Internal(e.to_string()))??;
    // tlog-tiles: full and partial tiles never change once served.
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /v1/policies/{version}`: the bundle (`.tar.gz`), for replay.
pub(crate) async fn policy_bundle(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Path(version): Path<String>,
) -> Result<Response, GateError> {
    gate.auth.may_read(&creds)?;
    let p = gate
        .records()
        .policy(&version)?
        .ok_or_else(|| GateError::NotFound(format!("policy version {version} is not published")))?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], p.bytes).into_response())
}

/// `GET /v1/contracts/{version}`: a published surface contract (its
/// canonical JSON, whose SHA-256 is the version).
pub(crate) async fn contract(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Path(version): Path<String>,
) -> Result<Response, GateError> {
    gate.auth.may_read(&creds)?;
    let bytes = gate.contract_json(&version)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
