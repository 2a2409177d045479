//! `/v1/admin/…`: callers, policies and surface contracts. Every route needs the admin token
//! or a caller with `admin` (`Gate::authorize_admin`); the operations are
//! `admin.rs`'s and `callers.rs`'s.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use protocol::{Caller, CallerList, CallerToken, NewCaller};
use serde::Deserialize;

use crate::http::{json_body, Credentials};
use crate::{Gate, GateError};

/// Largest bundle upload, in bytes.
const MAX_BUNDLE_UPLOAD: usize = 16 << 20;

/// Runs `f` on a blocking thread (the operations write durably).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, GateError> + Send + 'static,
) -> Result<T, GateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GateError::Internal(e.to_string()))?
}

/// `POST /v1/admin/callers`: adds a caller; answers its token once.
pub(crate) async fn add_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<CallerToken>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let bytes = gate.read_body(body, 64 * 1024).await?;
    let new: NewCaller = json_body(&bytes, "caller")?;
    let (g, who) = (gate.clone(), by.clone());
    let (caller, token) =
        blocking(move || g.add_caller(&who, &new.name, new.roles, new.actors)).await?;
    tracing::info!(caller = %caller.name, roles = ?caller.roles, actors = ?caller.actors, %by, "caller added");
    Ok(Json(CallerToken { caller, token }))
}

/// `GET /v1/admin/callers`: every caller, revoked ones included, without tokens.
pub(crate) async fn list_callers(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<CallerList>, GateError> {
    gate.auth.admin(&creds)?;
    Ok(Json(CallerList {
        callers: gate.list_callers(),
    }))
}

/// `POST /v1/admin/callers/{name}/revoke`: the caller authenticates no more.
pub(crate) async fn revoke_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Caller>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let (g, who, n) = (gate.clone(), by.clone(), name.clone());
    let caller = blocking(move || g.revoke_caller(&who, &n)).await?;
    tracing::info!(caller = %name, %by, "caller revoked");
    Ok(Json(caller))
}

/// `POST /v1/admin/callers/{name}/rotate`: a new token; the old one stops working.
pub(crate) async fn rotate_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<CallerToken>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let (g, who, n) = (gate.clone(), by.clone(), name.clone());
    let (caller, token) = blocking(move || g.rotate_caller(&who, &n)).await?;
    tracing::info!(caller = %name, %by, "caller token rotated");
    Ok(Json(CallerToken { caller, token }))
}

#[derive(Deserialize)]
pub(crate) struct PublishQuery {
    /// Rego entrypoint for an OPA bundle without `metadata.tollgate_entrypoint`.
    entrypoint: Option<String>,
}

/// `POST /v1/admin/policies`: body is a bundle `.tar.gz`
/// (`Gate::publish_policy`).
pub(crate) async fn publish(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Query(q): Query<PublishQuery>,
    body: Body,
) -> Result<Json<protocol::Published>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let bytes = gate.read_body(body, MAX_BUNDLE_UPLOAD).await?;
    gate.publish_policy(&by, bytes, q.entrypoint)
        .await
        .map(Json)
}

/// `POST /v1/admin/policies/{version}/activate` (`Gate::activate_policy`).
pub(crate) async fn activate(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(version): UrlPath<String>,
) -> Result<Json<protocol::Activation>, GateError> {
    let by = gate.auth.admin(&creds)?;
    gate.activate_policy(&by, &version).await.map(Json)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShadowBody {
    /// The version to evaluate beside the active one; `null`: none.
    version: Option<String>,
}

/// `POST /v1/admin/policies/shadow` `{"version": "sha256:…" | null}`
/// (`Gate::set_shadow_policy`).
pub(crate) async fn shadow(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<protocol::ShadowChange>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let bytes = gate.read_body(body, 64 * 1024).await?;
    let body: ShadowBody = json_body(&bytes, "shadow")?;
    gate.set_shadow_policy(&by, body.version).await.map(Json)
}

/// `GET /v1/admin/policies`: every published version, which one is active.
pub(crate) async fn list(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<protocol::PolicyList>, GateError> {
    gate.auth.admin(&creds)?;
    gate.policy_list().map(Json)
}

/// `POST /v1/admin/contracts`: body is a surface contract (JSON,
/// `Gate::publish_contract`).
pub(crate) async fn publish_contract(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<protocol::ContractPublished>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let bytes = gate.read_body(body, protocol::MAX_CONTRACT_BYTES).await?;
    gate.publish_contract(&by, &bytes).await.map(Json)
}

/// `POST /v1/admin/contracts/{version}/activate`; `none` deactivates
/// (`Gate::activate_contract`).
pub(crate) async fn activate_contract(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(version): UrlPath<String>,
) -> Result<Json<protocol::ContractActivation>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let version = (version != "none").then_some(version);
    gate.activate_contract(&by, version.as_deref())
        .await
        .map(Json)
}

/// `GET /v1/admin/contracts`: every published contract, which one is active.
pub(crate) async fn list_contracts(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<protocol::ContractList>, GateError> {
    gate.auth.admin(&creds)?;
    gate.contract_list().map(Json)
}

/// `POST /v1/admin/receipts/{receipt_id}/erase` `{field, reason}`
/// (`Gate::erase`).
pub(crate) async fn erase(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(receipt_id): UrlPath<String>,
    body: Body,
) -> Result<Json<protocol::Erasure>, GateError> {
    let by = gate.auth.admin(&creds)?;
    let bytes = gate.read_body(body, 4 * 1024).await?;
    let body: protocol::EraseRequest = json_body(&bytes, "erasure")?;
    let g = gate.clone();
    blocking(move || g.erase(&by, &receipt_id, &body.field, &body.reason))
        .await
        .map(Json)
}
