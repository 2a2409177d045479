//! The admin API: publish, activate and list policy versions. Every call
//! needs `Authorization: Bearer <token>`, compared in constant time.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use policy::{Bundle, CompiledPolicy};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::active::engine_name;
use crate::http::{bearer, read_body};
use crate::{now_ns, Gate, GateError};

/// Largest bundle upload, in bytes.
const MAX_BUNDLE_UPLOAD: usize = 16 << 20;

fn authorize(gate: &Gate, headers: &HeaderMap) -> Result<(), GateError> {
    let presented = bearer(headers).ok_or(GateError::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(gate.admin_token.as_bytes())) {
        Ok(())
    } else {
        tracing::warn!("admin call with a wrong token refused");
        Err(GateError::Unauthorized)
    }
}

/// The answer to a publish.
#[derive(Debug, Serialize, Deserialize)]
pub struct Published {
    /// The bundle's version.
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
    /// False if this version was already published.
    pub created: bool,
}

#[derive(Deserialize)]
pub(crate) struct PublishQuery {
    /// Rego entrypoint for an OPA bundle without `metadata.tollgate_entrypoint`.
    entrypoint: Option<String>,
}

/// `POST /v1/admin/policies`: body is a bundle `.tar.gz` (a Tollgate bundle
/// with `tollgate.json`, or an OPA bundle). Compiles it (refusing what would
/// fail or be non-deterministic at evaluation) and stores it by version.
pub(crate) async fn publish(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    Query(q): Query<PublishQuery>,
    body: Body,
) -> Result<Json<Published>, GateError> {
    authorize(&gate, &headers)?;
    let bytes = read_body(body, MAX_BUNDLE_UPLOAD).await?;
    let g = gate.clone();
    let (bundle, engine) = tokio::task::spawn_blocking(move || -> Result<_, GateError> {
        let bundle = Bundle::from_tar_gz(&bytes, q.entrypoint.as_deref())
            .map_err(|e| GateError::InvalidPolicy(e.to_string()))?;
        let compiled = CompiledPolicy::compile(&bundle)
            .map_err(|e| GateError::InvalidPolicy(e.to_string()))?;
        Ok((bundle, engine_name(&compiled)))
    })
    .await
    .map_err(|e| GateError::Internal(e.to_string()))??;
    let version = bundle.version();
    let created =
        g.ledger
            .state()
            .publish_policy(&version, &bundle.to_tar_gz(), now_ns() as u64)?;
    tracing::info!(%version, engine, created, "policy published");
    Ok(Json(Published {
        version,
        engine: engine.into(),
        created,
    }))
}

/// `POST /v1/admin/policies/{version}/activate`: switches the active policy
/// atomically; decisions already bound keep their version.
pub(crate) async fn activate(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
    UrlPath(version): UrlPath<String>,
) -> Result<Json<Value>, GateError> {
    authorize(&gate, &headers)?;
    if !protocol::is_policy_version(&version) {
        return Err(GateError::BadInput(format!(
            "{version:?} is not a policy version (sha256:<64 hex>)"
        )));
    }
    let previous = gate.policies.activate(&gate.ledger, &version).await?;
    tracing::info!(%version, ?previous, "policy activated");
    Ok(Json(json!({ "active": version, "previous": previous })))
}

/// `GET /v1/admin/policies`: every published version, which one is active.
pub(crate) async fn list(
    State(gate): State<Arc<Gate>>,
    headers: HeaderMap,
) -> Result<Json<Value>, GateError> {
    authorize(&gate, &headers)?;
    let active = gate.active_policy().map(|a| a.version.clone());
    let versions: Vec<Value> = gate
        .ledger
        .state()
        .policy_versions()?
        .into_iter()
        .map(|(version, at)| {
            json!({
                "version": version,
                "published_at": protocol::format_rfc3339_ns(at as i64),
                "active": active.as_deref() == Some(version.as_str()),
            })
        })
        .collect();
    Ok(Json(json!({ "active": active, "versions": versions })))
}
