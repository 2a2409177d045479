//! The admin API: publish, activate and list policy versions; add, list,
//! revoke and rotate callers. Every call needs `Authorization: Bearer
//! <token>`: the admin token (compared in constant time) or the token of a
//! caller with the `admin` role.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use policy::{Bundle, CompiledPolicy};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::active::engine_name;
use crate::callers::{Caller, Role};
use crate::http::{json_body, Credentials};
use crate::records::Records;
use crate::{now_ns, Gate, GateError};
use protocol::{CallerToken, NewCaller};

/// Largest bundle upload, in bytes.
const MAX_BUNDLE_UPLOAD: usize = 16 << 20;

/// Who made an admin call, for the gate's log.
fn authorize(gate: &Gate, creds: &Credentials) -> Result<String, GateError> {
    if creds
        .bearer
        .as_ref()
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(gate.admin_token.as_bytes())))
    {
        return Ok("admin-token".into());
    }
    match gate.authenticate(creds, Role::Admin) {
        Ok((caller, _)) => Ok(format!("caller:{}", caller.name)),
        Err(e) => {
            tracing::warn!("admin call refused: {e}");
            Err(e)
        }
    }
}

/// `POST /v1/admin/callers`: adds a caller; answers its token once.
pub(crate) async fn add_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: Body,
) -> Result<Json<CallerToken>, GateError> {
    let by = authorize(&gate, &creds)?;
    let bytes = gate.read_body(body, 64 * 1024).await?;
    let new: NewCaller = json_body(&bytes, "caller")?;
    let (g, who) = (gate.clone(), by.clone());
    let (caller, token) =
        tokio::task::spawn_blocking(move || g.add_caller(&who, &new.name, new.roles, new.actors))
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??;
    tracing::info!(caller = %caller.name, roles = ?caller.roles, actors = ?caller.actors, %by, "caller added");
    Ok(Json(CallerToken { caller, token }))
}

/// `GET /v1/admin/callers`: every caller, revoked ones included, without tokens.
pub(crate) async fn list_callers(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<crate::callers::CallerList>, GateError> {
    authorize(&gate, &creds)?;
    Ok(Json(crate::callers::CallerList {
        callers: gate.list_callers(),
    }))
}

/// `POST /v1/admin/callers/{name}/revoke`: the caller authenticates no more.
pub(crate) async fn revoke_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<Caller>, GateError> {
    let by = authorize(&gate, &creds)?;
    let (g, who, n) = (gate.clone(), by.clone(), name.clone());
    let caller = tokio::task::spawn_blocking(move || g.revoke_caller(&who, &n))
        .await
        .map_err(|e| GateError::Internal(e.to_string()))??;
    tracing::info!(caller = %name, %by, "caller revoked");
    Ok(Json(caller))
}

/// `POST /v1/admin/callers/{name}/rotate`: a new token; the old one stops working.
pub(crate) async fn rotate_caller(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<CallerToken>, GateError> {
    let by = authorize(&gate, &creds)?;
    let (g, who, n) = (gate.clone(), by.clone(), name.clone());
    let (caller, token) = tokio::task::spawn_blocking(move || g.rotate_caller(&who, &n))
        .await
        .map_err(|e| GateError::Internal(e.to_string()))??;
    tracing::info!(caller = %name, %by, "caller token rotated");
    Ok(Json(CallerToken { caller, token }))
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
    creds: Credentials,
    Query(q): Query<PublishQuery>,
    body: Body,
) -> Result<Json<protocol::Published>, GateError> {
    let by = authorize(&gate, &creds)?;
    let bytes = gate.read_body(body, MAX_BUNDLE_UPLOAD).await?;
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
    // A new version is recorded in the log before it is stored; publishing
    // a version again changes nothing and records nothing.
    if Records(g.ledger.state()).policy(&version)?.is_none() {
        g.record(
            protocol::GovernanceAction::PolicyPublish,
            &by,
            json!({"version": version, "engine": engine}),
        )
        .await?;
    }
    let created =
        Records(g.ledger.state()).publish_policy(&version, &bundle.to_tar_gz(), now_ns() as u64)?;
    tracing::info!(%version, engine, created, "policy published");
    Ok(Json(protocol::Published {
        version,
        engine: engine.into(),
        created,
    }))
}

/// `POST /v1/admin/policies/{version}/activate`: switches the active policy
/// atomically; decisions already bound keep their version.
pub(crate) async fn activate(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(version): UrlPath<String>,
) -> Result<Json<protocol::Activation>, GateError> {
    let by = authorize(&gate, &creds)?;
    if !protocol::is_policy_version(&version) {
        return Err(GateError::BadInput(format!(
            "{version:?} is not a policy version (sha256:<64 hex>)"
        )));
    }
    let record = gate.record(
        protocol::GovernanceAction::PolicyActivate,
        &by,
        json!({ "version": version }),
    );
    let previous = gate
        .policies
        .activate(
            &gate.ledger,
            &gate.history,
            |p| gate.evaluators.loads(p),
            &version,
            record,
        )
        .await?;
    tracing::info!(%version, ?previous, "policy activated");
    Ok(Json(protocol::Activation {
        active: version,
        previous,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShadowBody {
    /// The version to evaluate beside the active one; `null`: none.
    version: Option<String>,
}

/// `POST /v1/admin/policies/shadow` `{"version": "sha256:…" | null}`: the
/// policy evaluated beside the active one on every decision, its decision
/// recorded in the receipt (`derived.shadow`) and counted in the metrics,
/// never enforced. A governance entry first, as every admin change.
pub(crate) async fn shadow(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    body: axum::body::Body,
) -> Result<Json<protocol::ShadowChange>, GateError> {
    let by = authorize(&gate, &creds)?;
    let bytes = gate.read_body(body, 64 * 1024).await?;
    let body: ShadowBody = json_body(&bytes, "shadow")?;
    if let Some(v) = &body.version {
        if !protocol::is_policy_version(v) {
            return Err(GateError::BadInput(format!(
                "{v:?} is not a policy version (sha256:<64 hex>)"
            )));
        }
    }
    let record = gate.record(
        protocol::GovernanceAction::PolicyShadow,
        &by,
        json!({ "version": body.version }),
    );
    let previous = gate
        .policies
        .shadow_with(
            &gate.ledger,
            |p| gate.evaluators.loads(p),
            body.version.as_deref(),
            record,
        )
        .await?;
    tracing::info!(version = ?body.version, ?previous, "shadow policy set");
    Ok(Json(protocol::ShadowChange {
        shadow: body.version,
        previous,
    }))
}

/// `GET /v1/admin/policies`: every published version, which one is active.
pub(crate) async fn list(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
) -> Result<Json<protocol::PolicyList>, GateError> {
    authorize(&gate, &creds)?;
    let active = gate.active_policy().map(|a| a.version.clone());
    let shadow = gate.policies.shadow().map(|s| s.version.clone());
    let versions = Records(gate.ledger.state())
        .policy_versions()?
        .into_iter()
        .map(|(version, at)| protocol::PolicyVersion {
            active: active.as_deref() == Some(version.as_str()),
            published_at: protocol::format_rfc3339_ns(at as i64),
            version,
        })
        .collect();
    Ok(Json(protocol::PolicyList {
        active,
        shadow,
        versions,
    }))
}
