//! The active policy, in one place: the compiled version decisions bind,
//! how a published version is loaded (digest checked, compiled, time limit
//! set), and how activation swaps it (durable first, then in memory). Where
//! evaluations run is `evaluators.rs`.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ledger::Ledger;
use policy::{Bundle, CompiledPolicy};

use crate::records::Records;
use crate::GateError;

/// The compiled active policy and its version.
pub struct ActivePolicy {
    /// `sha256:<hex>` of the bundle.
    pub version: String,
    /// The compiled bundle.
    pub compiled: Arc<CompiledPolicy>,
    /// The counters the bundle declares (`derived.history`).
    pub counters: Vec<policy::Counter>,
    /// The published archive (evaluation processes compile their own copy).
    pub archive: Arc<[u8]>,
}

/// How many compiled versions replay keeps (besides the active one).
pub(crate) const REPLAY_CACHE: usize = 8;

/// The gate's policy state: the active version in memory, mirroring the
/// ledger's durable record of it, and the last few versions replay compiled.
pub(crate) struct Policies {
    active: RwLock<Option<Arc<ActivePolicy>>>,
    /// The shadow policy: evaluated beside the active one on every
    /// decision, recorded in the receipt, never enforced.
    shadow: RwLock<Option<Arc<ActivePolicy>>>,
    /// Compiled versions for replay, most recently used last; at most
    /// [`REPLAY_CACHE`].
    replayed: std::sync::Mutex<std::collections::VecDeque<Arc<ActivePolicy>>>,
    /// Where replay's compilations are counted.
    metrics: Arc<crate::Metrics>,
    /// Serializes activations so memory and disk agree on the active version.
    activation: tokio::sync::Mutex<()>,
    eval_timeout: Duration,
}

impl Policies {
    pub(crate) fn new(eval_timeout: Duration, metrics: Arc<crate::Metrics>) -> Policies {
        Policies {
            active: RwLock::new(None),
            shadow: RwLock::new(None),
            replayed: std::sync::Mutex::new(std::collections::VecDeque::new()),
            metrics,
            activation: tokio::sync::Mutex::new(()),
            eval_timeout,
        }
    }

    /// The active policy, if any.
    pub(crate) fn active(&self) -> Option<Arc<ActivePolicy>> {
        self.active.read().expect("active lock").clone()
    }

    /// The shadow policy, if any.
    pub(crate) fn shadow(&self) -> Option<Arc<ActivePolicy>> {
        self.shadow.read().expect("shadow lock").clone()
    }

    /// Sets the shadow policy in memory (startup: what the ledger records).
    pub(crate) fn set_shadow(&self, shadow: Option<Arc<ActivePolicy>>) {
        *self.shadow.write().expect("shadow lock") = shadow;
    }

    /// Makes `version` the shadow policy (`None`: none) as [`Policies::activate`]
    /// makes one active: loaded and compiled first (and `loads` where it
    /// will be evaluated), `record` awaited, stored durably, then swapped in
    /// memory. Returns the previous shadow version.
    pub(crate) async fn shadow_with<L: Future<Output = Result<Arc<ActivePolicy>, GateError>>>(
        &self,
        ledger: &Ledger,
        loads: impl FnOnce(Arc<ActivePolicy>) -> L,
        version: Option<&str>,
        record: impl Future<Output = Result<u64, GateError>>,
    ) -> Result<Option<String>, GateError> {
        let _one_at_a_time = self.activation.lock().await;
        let loaded = match version {
            None => None,
            Some(v) => {
                let (l, v, limit) = (ledger.clone(), v.to_string(), self.eval_timeout);
                let loaded = tokio::task::spawn_blocking(move || load(&l, &v, limit))
                    .await
                    .map_err(|e| GateError::Internal(e.to_string()))??;
                Some(loads(Arc::new(loaded)).await?)
            }
        };
        record.await?;
        let previous = self.shadow().map(|s| s.version.clone());
        Records(ledger.state()).set_shadow_policy(version)?;
        self.set_shadow(loaded);
        Ok(previous)
    }

    /// Sets the active policy in memory (startup: what the ledger records).
    pub(crate) fn set(&self, active: impl Into<Arc<ActivePolicy>>) {
        *self.active.write().expect("active lock") = Some(active.into());
    }

    /// Makes `version` active: loads it (off the async workers, then
    /// `loads` where it will be evaluated: `Evaluators::loads`), awaits
    /// `record` (the governance entry in the log), stores it durably, then
    /// swaps it in memory; one activation at a time. A crash between the
    /// last two restarts on the new version. Returns the previous active
    /// version.
    pub(crate) async fn activate<L: Future<Output = Result<Arc<ActivePolicy>, GateError>>>(
        &self,
        ledger: &Ledger,
        history: &crate::history::History,
        loads: impl FnOnce(Arc<ActivePolicy>) -> L,
        version: &str,
        record: impl Future<Output = Result<u64, GateError>>,
    ) -> Result<Option<String>, GateError> {
        let _one_at_a_time = self.activation.lock().await;
        let (l, v, limit) = (ledger.clone(), version.to_string(), self.eval_timeout);
        let active = tokio::task::spawn_blocking(move || load(&l, &v, limit))
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??;
        let active = loads(Arc::new(active)).await?;
        record.await?;
        let previous = self.active().map(|a| a.version.clone());
        Records(ledger.state()).activate_policy(version)?;
        // The counters the new version declares, read back from the log,
        // and the version itself take effect together.
        let counters = active.counters.clone();
        history.change(ledger, &counters, || self.set(active)).await;
        Ok(previous)
    }

    /// Takes up the active and shadow versions the log names (read by
    /// `governed.rs`: set by another gate on a shared log, or by this one
    /// when its activation failed after its entry was logged), as
    /// [`Policies::activate`] does but recording nothing: the gate that
    /// changed them recorded it. `logged` reads the log and says them; it is
    /// called holding the activation lock, so an activation this gate just
    /// logged is never undone by a reading made before it.
    pub(crate) async fn follow(
        &self,
        ledger: &Ledger,
        history: &crate::history::History,
        logged: impl FnOnce() -> Result<(Option<String>, Option<String>), GateError> + Send + 'static,
    ) -> Result<(), GateError> {
        let _one_at_a_time = self.activation.lock().await;
        let (active, shadow) = tokio::task::spawn_blocking(logged)
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??;
        let load_off = |version: String| {
            let (l, limit) = (ledger.clone(), self.eval_timeout);
            async move {
                tokio::task::spawn_blocking(move || load(&l, &version, limit))
                    .await
                    .map_err(|e| GateError::Internal(e.to_string()))?
            }
        };
        if let Some(v) = active.filter(|v| self.active().is_none_or(|a| a.version != *v)) {
            let active = load_off(v).await?;
            tracing::info!(version = %active.version, "the log names another active policy");
            let counters = active.counters.clone();
            history.change(ledger, &counters, || self.set(active)).await;
        }
        if shadow != self.shadow().map(|s| s.version.clone()) {
            let loaded = match shadow {
                None => None,
                Some(v) => Some(load_off(v).await?),
            };
            self.set_shadow(loaded.map(Arc::new));
        }
        Ok(())
    }

    /// The compiled `version` for replay: the active policy if it is that
    /// version, else from a small cache of recently replayed versions, else
    /// loaded and compiled (and cached, evicting the least recently used).
    /// Blocking: call it off the async workers.
    pub(crate) fn for_replay(
        &self,
        ledger: &Ledger,
        version: &str,
    ) -> Result<Arc<ActivePolicy>, GateError> {
        if let Some(a) = self.active().filter(|a| a.version == version) {
            return Ok(a);
        }
        {
            let mut cache = self.replayed.lock().expect("replay cache lock");
            if let Some(at) = cache.iter().position(|p| p.version == version) {
                let hit = cache.remove(at).expect("present");
                cache.push_back(hit.clone());
                return Ok(hit);
            }
        }
        let loaded = Arc::new(self.load(ledger, version)?);
        self.metrics.replay_compiled();
        let mut cache = self.replayed.lock().expect("replay cache lock");
        if !cache.iter().any(|p| p.version == version) {
            if cache.len() >= REPLAY_CACHE {
                cache.pop_front();
            }
            cache.push_back(loaded.clone());
        }
        Ok(loaded)
    }

    /// Loads a published version with this gate's evaluation time limit.
    pub(crate) fn load(&self, ledger: &Ledger, version: &str) -> Result<ActivePolicy, GateError> {
        load(ledger, version, self.eval_timeout)
    }
}

/// Reads a published bundle, checks its digest and compiles it.
fn load(ledger: &Ledger, version: &str, limit: Duration) -> Result<ActivePolicy, GateError> {
    let (bundle, archive) = bundle_and_archive(ledger, version)?;
    let compiled = CompiledPolicy::compile(&bundle)
        .map_err(|e| GateError::InvalidPolicy(format!("policy {version}: {e}")))?
        .with_time_limit(limit);
    Ok(ActivePolicy {
        version: version.to_string(),
        compiled: Arc::new(compiled),
        counters: bundle.manifest().counters.clone(),
        archive: archive.into(),
    })
}

/// A published bundle by version, checked against its digest, and its
/// archive.
fn bundle_and_archive(ledger: &Ledger, version: &str) -> Result<(Bundle, Vec<u8>), GateError> {
    let stored = Records(ledger.state())
        .policy(version)?
        .ok_or_else(|| GateError::NotFound(format!("policy version {version} is not published")))?;
    let bundle = Bundle::from_tar_gz(&stored.bytes, None)
        .map_err(|e| GateError::Internal(format!("stored policy {version}: {e}")))?;
    if bundle.version() != version {
        return Err(GateError::Internal(format!(
            "stored policy {version} has digest {}",
            bundle.version()
        )));
    }
    Ok((bundle, stored.bytes))
}

/// The engine's name as receipts and the admin API spell it.
pub(crate) fn engine_name(p: &CompiledPolicy) -> &'static str {
    match p.engine() {
        policy::Engine::Rego => "rego",
        policy::Engine::Cedar => "cedar",
    }
}
