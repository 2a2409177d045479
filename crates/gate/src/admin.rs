//! The admin operations on policies — publish, activate, shadow, list.
//! Who may call them (the admin token, or a caller with the `admin` role)
//! is `auth.rs`'s; callers are `callers.rs`'s; the HTTP routes are
//! `http/admin.rs`. Every change is a governance entry in the
//! log first.

use std::sync::Arc;

use policy::{Bundle, CompiledPolicy};
use serde_json::json;

use crate::active::engine_name;
use crate::{now_ns, Gate, GateError};

impl Gate {
    /// Publishes a bundle (`.tar.gz`: a Tollgate bundle with `tollgate.json`,
    /// or an OPA bundle, `entrypoint` naming its Rego entrypoint if its
    /// metadata does not): compiled first (refusing what would fail or be
    /// non-deterministic at evaluation), recorded in the log if new, then
    /// stored by version. Publishing a version again changes nothing.
    pub(crate) async fn publish_policy(
        self: &Arc<Self>,
        by: &str,
        bytes: axum::body::Bytes,
        entrypoint: Option<String>,
    ) -> Result<protocol::Published, GateError> {
        let (bundle, engine) = tokio::task::spawn_blocking(move || -> Result<_, GateError> {
            let bundle = Bundle::from_tar_gz(&bytes, entrypoint.as_deref())
                .map_err(|e| GateError::InvalidPolicy(e.to_string()))?;
            let compiled = CompiledPolicy::compile(&bundle)
                .map_err(|e| GateError::InvalidPolicy(e.to_string()))?;
            Ok((bundle, engine_name(&compiled)))
        })
        .await
        .map_err(|e| GateError::Internal(e.to_string()))??;
        let version = bundle.version();
        let records = self.records();
        if records.policy(&version)?.is_none() {
            self.record(
                protocol::GovernanceAction::PolicyPublish,
                by,
                json!({"version": version, "engine": engine}),
            )
            .await?;
        }
        let created = records.publish_policy(&version, &bundle.to_tar_gz(), now_ns() as u64)?;
        tracing::info!(%version, engine, created, "policy published");
        Ok(protocol::Published {
            version,
            engine: engine.into(),
            created,
        })
    }

    /// Makes `version` active, atomically (decisions already bound keep
    /// theirs), recorded in the log first.
    pub(crate) async fn activate_policy(
        &self,
        by: &str,
        version: &str,
    ) -> Result<protocol::Activation, GateError> {
        policy_version(version)?;
        let record = self.record(
            protocol::GovernanceAction::PolicyActivate,
            by,
            json!({ "version": version }),
        );
        let previous = self
            .policies
            .activate(
                &self.ledger,
                &self.history,
                |p| self.evaluators.loads(p),
                version,
                record,
            )
            .await?;
        tracing::info!(%version, ?previous, "policy activated");
        Ok(protocol::Activation {
            active: version.to_string(),
            previous,
        })
    }

    /// Makes `version` the shadow policy (`None`: none): evaluated beside the
    /// active one on every decision, its decision recorded in the receipt
    /// (`derived.shadow`) and counted, never enforced. Recorded first.
    pub(crate) async fn set_shadow_policy(
        &self,
        by: &str,
        version: Option<String>,
    ) -> Result<protocol::ShadowChange, GateError> {
        if let Some(v) = &version {
            policy_version(v)?;
        }
        let record = self.record(
            protocol::GovernanceAction::PolicyShadow,
            by,
            json!({ "version": version }),
        );
        let previous = self
            .policies
            .shadow_with(
                &self.ledger,
                |p| self.evaluators.loads(p),
                version.as_deref(),
                record,
            )
            .await?;
        tracing::info!(?version, ?previous, "shadow policy set");
        Ok(protocol::ShadowChange {
            shadow: version,
            previous,
        })
    }

    /// Every published version, which one is active and which the shadow.
    pub(crate) fn policy_list(&self) -> Result<protocol::PolicyList, GateError> {
        let active = self.active_policy().map(|a| a.version.clone());
        let shadow = self.policies.shadow().map(|s| s.version.clone());
        let versions = listed(self.records().policy_versions()?, active.as_deref());
        Ok(protocol::PolicyList {
            active,
            shadow,
            versions,
        })
    }
}

/// Published versions (and when) as the admin API lists them, the active
/// one marked: policies' and surface contracts'.
pub(crate) fn listed(
    versions: Vec<(String, u64)>,
    active: Option<&str>,
) -> Vec<protocol::PolicyVersion> {
    versions
        .into_iter()
        .map(|(version, at)| protocol::PolicyVersion {
            active: active == Some(version.as_str()),
            published_at: protocol::format_rfc3339_ns(at as i64),
            version,
        })
        .collect()
}

/// `Ok` if `v` names a policy version (`sha256:<64 hex>`), else 400.
fn policy_version(v: &str) -> Result<(), GateError> {
    if protocol::is_policy_version(v) {
        Ok(())
    } else {
        Err(GateError::BadInput(format!(
            "{v:?} is not a policy version (sha256:<64 hex>)"
        )))
    }
}
