//! Startup wiring: the data directory, the log and gate keys and the admin
//! token (generated on first start), the ledger's recovery, witnessing, and
//! the active policy (the embedded example published and activated on a log
//! that has none).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;

use ledger::Ledger;
use note::KeyType;
use policy::Bundle;

use crate::active::Policies;
use crate::auth::Authentication;
use crate::callers::{Callers, Role};
use crate::evaluators::Evaluators;
use crate::governed::Governance;
use crate::{now_ns, witnessing, Config, Gate, GateError, Metrics};

/// Why the gate could not start. Each names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The data directory cannot be created.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Other users may read or enter the data directory.
    #[error(
        "data directory {}: mode {mode:o} lets other users in; it holds the signing keys and \
         tokens (chmod 700 {})",
        path.display(),
        path.display()
    )]
    DataDirOpen {
        /// The directory.
        path: std::path::PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A key, token or origin file cannot be read, written or trusted.
    #[error("{0}")]
    KeyFile(#[from] keyfile::Error),
    /// The log cannot be opened or recovered.
    #[error("opening the log in {path}: {source}")]
    Log {
        /// The data directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: ledger::Error,
    },
    /// The witness policy cannot be read or used.
    #[error(transparent)]
    Witnessing(#[from] witnessing::WitnessingError),
    /// The approval webhooks cannot be set up.
    #[error("{0}")]
    Webhooks(String),
    /// The data directory holds a log of another origin than the configuration names.
    #[error(
        "the data directory holds the log {stored:?} ({path}); the configuration says origin = \
         {configured:?}. Use another data directory, or remove the origin setting"
    )]
    OriginMismatch {
        /// The origin file.
        path: std::path::PathBuf,
        /// What it holds.
        stored: String,
        /// What the configuration says.
        configured: String,
    },
    /// The stored policy state cannot be read or the example not stored.
    #[error("policy store: {0}")]
    PolicyStore(#[from] ledger::Error),
    /// The configuration is not usable.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// A startup change could not be recorded in the log.
    #[error("recording a startup change in the log: {0}")]
    Governance(String),
    /// The demo caller could not be created.
    #[error("creating the demo caller: {0}")]
    DemoCaller(String),
    /// The active policy no longer loads.
    #[error("the active policy {version} does not load: {reason}")]
    ActivePolicy {
        /// Its version.
        version: String,
        /// Why.
        reason: String,
    },
}

/// What startup did, for the banner.
pub struct Started {
    /// The gate.
    pub gate: Arc<Gate>,
    /// The `demo` caller was created now, its token in this file.
    pub demo_token_file: Option<std::path::PathBuf>,
    /// The log's origin was generated now (first start, none configured).
    pub origin_generated: bool,
    /// The log key was generated now.
    pub log_key_generated: bool,
    /// The gate key was generated now.
    pub gate_key_generated: bool,
    /// Where the admin token is, if it came from (or went to) a file.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The example policy was published and activated now.
    pub example_activated: Option<String>,
    /// The example surface contract was published and activated now.
    pub example_contract_activated: Option<String>,
}

/// The example Rego bundle (examples/policies/rego), compiled into the binary
/// for the embedded default.
#[must_use]
pub fn example_bundle() -> Bundle {
    embedded_bundle(
        include_bytes!("../../../examples/policies/rego/tollgate.json"),
        &[
            (
                "policy.rego",
                include_bytes!("../../../examples/policies/rego/policy.rego"),
            ),
            (
                "data.json",
                include_bytes!("../../../examples/policies/rego/data.json"),
            ),
            (
                "tests/cases.json",
                include_bytes!("../../../examples/policies/rego/tests/cases.json"),
            ),
        ],
    )
}

/// The example surface contract (examples/contracts/example.json), compiled
/// into the binary.
#[must_use]
pub fn example_contract() -> protocol::Contract {
    protocol::Contract::parse(include_bytes!("../../../examples/contracts/example.json"))
        .expect("example contract")
}

/// The example Cedar bundle (examples/policies/cedar), same meaning as the
/// Rego one, compiled into the binary for `tollgate-bench gate --policy cedar`.
#[must_use]
pub fn example_cedar_bundle() -> Bundle {
    embedded_bundle(
        include_bytes!("../../../examples/policies/cedar/tollgate.json"),
        &[
            (
                "policy.cedar",
                include_bytes!("../../../examples/policies/cedar/policy.cedar"),
            ),
            (
                "schema.cedarschema",
                include_bytes!("../../../examples/policies/cedar/schema.cedarschema"),
            ),
            (
                "entities.json",
                include_bytes!("../../../examples/policies/cedar/entities.json"),
            ),
            (
                "tests/cases.json",
                include_bytes!("../../../examples/policies/cedar/tests/cases.json"),
            ),
        ],
    )
}

fn embedded_bundle(manifest: &[u8], files: &[(&str, &[u8])]) -> Bundle {
    let manifest = serde_json::from_slice(manifest).expect("example manifest");
    let files = files
        .iter()
        .map(|(p, c)| ((*p).to_string(), c.to_vec()))
        .collect();
    Bundle::new(manifest, files).expect("example bundle")
}

impl Gate {
    /// Opens the data directory (creating it, the keys and the admin token on
    /// first start), recovers the log, loads the active policy, and on a log
    /// with no active policy publishes and activates the example bundle if
    /// `config.example_policy`.
    ///
    /// # Errors
    ///
    /// A [`StartupError`] naming what failed: the data directory, key
    /// files, the log's recovery, the witness policy, a stored policy that no
    /// longer compiles.
    pub fn open(config: &Config) -> Result<Started, StartupError> {
        Gate::open_on(config, Ledger::open)
    }

    /// [`Gate::open`] on a RocksDB log that fails as `faults` say (the
    /// `faults` feature, for tests: appends that fail must be 503 and
    /// claim nothing).
    ///
    /// # Errors
    ///
    /// As [`Gate::open`].
    #[cfg(feature = "faults")]
    pub fn open_with_faults(
        config: &Config,
        faults: ledger::faults::Faults,
    ) -> Result<Started, StartupError> {
        Gate::open_on(config, move |path, key, options| {
            Ledger::open_with_faults(path, key, options, faults)
        })
    }

    /// [`Gate::open`], the embedded log opened by `open_log`.
    fn open_on(
        config: &Config,
        open_log: impl FnOnce(
            &std::path::Path,
            note::SignerKey,
            ledger::Options,
        ) -> Result<Ledger, ledger::Error>,
    ) -> Result<Started, StartupError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|source| StartupError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?;
        // The log, the keys and the tokens live here: nobody else may read it.
        let mode = std::fs::metadata(&config.data_dir)
            .map_err(|source| StartupError::DataDir {
                path: config.data_dir.clone(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(StartupError::DataDirOpen {
                path: config.data_dir.clone(),
                mode,
            });
        }
        let (origin, origin_generated) = origin(config)?;
        let (log_key, log_key_generated) =
            keyfile::load_or_generate_key(&config.log_key_path(), &origin, KeyType::Ed25519, true)?;
        let (gate_key, gate_key_generated) = keyfile::load_or_generate_key(
            &config.gate_key_path(),
            &config.gate_key_name,
            KeyType::Ed25519,
            true,
        )?;
        let (admin_token, admin_token_file) = match &config.admin_token {
            Some(t) => (t.clone(), None),
            None => {
                let path = config.admin_token_path();
                let (token, _) = keyfile::load_or_generate_token(&path)?;
                (token, Some(path))
            }
        };
        let options = ledger::Options {
            batch_max: config.batch_max,
            batch_wait: std::time::Duration::from_micros(config.batch_wait_us),
            recent_hashes: config.hash_cache_mb << 15, // 2^20 bytes / 32 per hash
        };
        let ledger = match &config.log_store {
            Some(url) => Ledger::open_postgres(url, log_key, options).map_err(|source| {
                StartupError::Log {
                    path: std::path::PathBuf::from("log_store (PostgreSQL)"),
                    source,
                }
            })?,
            None => open_log(&config.data_dir.join("log"), log_key, options).map_err(|source| {
                StartupError::Log {
                    path: config.data_dir.clone(),
                    source,
                }
            })?,
        };
        let witnessing = match &config.witness_policy {
            Some(path) => Some(Arc::new(witnessing::Witnessing::open(
                path,
                ledger.verifier(),
                config.data_dir.join("cosigned.checkpoint"),
                std::time::Duration::from_millis(config.witness_interval_ms.max(10)),
                std::time::Duration::from_secs(config.witness_refresh_s),
                config.witness_ca_file.as_deref(),
            )?)),
            None => None,
        };
        let webhooks = match &config.approval_webhooks {
            Some(urls) => {
                let secret_file = config
                    .approval_webhook_secret_file
                    .clone()
                    .unwrap_or_else(|| config.data_dir.join("webhook.secret"));
                let (secret, _) = keyfile::load_or_generate_token(&secret_file)?;
                let agent = tls::agent(None, std::time::Duration::from_secs(5))
                    .map_err(|e| StartupError::Webhooks(e.to_string()))?;
                let urls: Vec<String> = urls
                    .split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(str::to_string)
                    .collect();
                if let Some(bad) = urls
                    .iter()
                    .find(|u| !(u.starts_with("http://") || u.starts_with("https://")))
                {
                    return Err(StartupError::Webhooks(format!(
                        "approval_webhooks: {bad:?} is not an http(s) URL"
                    )));
                }
                Some(crate::webhooks::Webhooks::start(
                    urls,
                    secret.into_bytes(),
                    config.public_url.as_deref(),
                    agent,
                ))
            }
            None => None,
        };
        let body_read_timeout = std::time::Duration::from_millis(config.body_read_timeout_ms);
        let followed = ledger.latest().checkpoint.size;
        let metrics = Arc::new(Metrics::default());
        let governance = Governance::open(&ledger, gate_key.verifier(), &metrics);
        let gate = Gate {
            body_read_timeout,
            auth: Authentication::new(
                admin_token,
                config.public_read,
                config.tls_callers.clone(),
                config.unix_caller_uids()?,
                Callers::new(),
            ),
            governance,
            serves_tls: config.tls_cert.is_some(),
            witnessing,
            approvals: crate::approvals::Approvals::new(webhooks),
            ledger,
            commit_key: commit_key(&gate_key),
            gate_key,
            policies: Policies::new(config.eval_timeout(), metrics.clone()),
            contracts: crate::contracts::Contracts::new(config.require_surface_contracts),
            history: crate::history::History::new(),
            followed: tokio::sync::Mutex::new(followed),
            evaluators: rego_placement(config, &metrics),
            admission: Arc::new(tokio::sync::Semaphore::new(config.max_pending_decisions)),
            admission_limit: config.max_pending_decisions,
            metrics,
        };
        let governance_error = |e: GateError| StartupError::Governance(e.to_string());
        let logged = gate.read_log_at_start().map_err(governance_error)?;
        let mut example_activated = None;
        let mut example_activated_contract = None;
        let active = match logged.active {
            Some(version) => Some(version),
            None if config.example_policy => {
                let bundle = example_bundle();
                let version = bundle.version();
                let record = |action: protocol::GovernanceAction, subject| {
                    gate.record_blocking(action, "startup", subject)
                        .map_err(|e| StartupError::Governance(e.to_string()))
                };
                if gate.records().policy(&version)?.is_none() {
                    record(
                        protocol::GovernanceAction::PolicyPublish,
                        serde_json::json!({"version": version, "engine": "rego"}),
                    )?;
                    gate.records().publish_policy(
                        &version,
                        &bundle.to_tar_gz(),
                        now_ns() as u64,
                    )?;
                }
                record(
                    protocol::GovernanceAction::PolicyActivate,
                    serde_json::json!({ "version": version }),
                )?;
                gate.records().activate_policy(&version)?;
                example_activated = Some(version.clone());
                Some(version)
            }
            None => None,
        };
        if let Some(version) = active {
            let active = gate.policies.load(&gate.ledger, &version).map_err(|e| {
                StartupError::ActivePolicy {
                    version: version.clone(),
                    reason: e.to_string(),
                }
            })?;
            gate.history.start(&gate.ledger, &active.counters);
            gate.policies.set(active);
        }
        gate.load_votes()
            .map_err(|e| StartupError::Governance(format!("approval requests: {e}")))?;
        if let Some(version) = logged.shadow {
            let shadow = gate.policies.load(&gate.ledger, &version).map_err(|e| {
                StartupError::ActivePolicy {
                    version: version.clone(),
                    reason: format!("the shadow policy: {e}"),
                }
            })?;
            gate.policies.set_shadow(Some(Arc::new(shadow)));
        }
        if logged.contract.is_none() && config.example_policy && config.example_contract {
            let published = gate.publish_example_contract().map_err(governance_error)?;
            example_activated_contract = Some(published);
        }
        gate.read_log().map_err(governance_error)?;
        gate.take_logged_contract()
            .map_err(|e| StartupError::Governance(format!("the active surface contract: {e}")))?;
        let demo_token_file = if config.example_policy && logged.callers.is_empty() {
            Some(gate.add_demo_caller(&config.demo_token_path())?)
        } else {
            None
        };
        // What startup logged itself, read; the store compared with it.
        gate.read_log().map_err(governance_error)?;
        gate.governance.save(&gate.ledger, &gate.gate_key, true);
        gate.check_records().map_err(governance_error)?;
        Ok(Started {
            gate: Arc::new(gate),
            demo_token_file,
            origin_generated,
            log_key_generated,
            gate_key_generated,
            admin_token_file,
            example_activated,
            example_contract_activated: example_activated_contract,
        })
    }
}

impl Gate {
    /// Publishes and activates the example surface contract, logged as
    /// `startup`. Blocking.
    fn publish_example_contract(&self) -> Result<String, GateError> {
        let contract = example_contract();
        let version = contract.version();
        if self.records().contract(&version)?.is_none() {
            let surfaces: Vec<&String> = contract.surfaces.keys().collect();
            self.record_blocking(
                protocol::GovernanceAction::ContractPublish,
                "startup",
                serde_json::json!({"version": version, "surfaces": surfaces}),
            )?;
            self.records().publish_contract(
                &version,
                contract.canonical().as_bytes(),
                now_ns() as u64,
            )?;
        }
        self.record_blocking(
            protocol::GovernanceAction::ContractActivate,
            "startup",
            serde_json::json!({ "version": version }),
        )?;
        Ok(version)
    }
}

/// The key of committed fields' salts: SHA-256 over a domain tag and the
/// gate's secret key, so it is as secret as the key and the same on every
/// gate that signs for the log.
fn commit_key(gate_key: &note::SignerKey) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"tollgate commitment salt key v1\0");
    h.update(gate_key.to_skey().as_bytes());
    h.finalize().into()
}

/// The actors the `demo` caller may speak for: the example policy's.
pub const DEMO_ACTORS: &str = "agent-*";

impl Gate {
    /// Creates the `demo` caller (decide and read, for the example actors
    /// `agent-*`) and writes its token to `path` (0600). Returns the path.
    fn add_demo_caller(&self, path: &std::path::Path) -> Result<std::path::PathBuf, StartupError> {
        let (_, token) = self
            .add_caller(
                "startup",
                "demo",
                [Role::Decide, Role::Read].into(),
                vec![DEMO_ACTORS.to_string()],
            )
            .map_err(|e| StartupError::DemoCaller(e.to_string()))?;
        keyfile::write_durable(path, format!("{token}\n").as_bytes(), 0o600)?;
        Ok(path.to_path_buf())
    }
}

/// The log's origin: the one the data directory keeps in its `origin` file;
/// on first start the configured one, the name of an existing log key (a data
/// directory from before origins were kept), or a new one unique to this
/// install: `<host>/tollgate-<8 random hex>`. Returns it and whether it was
/// generated now.
fn origin(config: &Config) -> Result<(String, bool), StartupError> {
    let path = config.origin_path();
    let file_error = |reason: String| keyfile::Error {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(stored) => {
            let stored = stored.trim().to_string();
            match &config.origin {
                Some(c) if *c != stored => Err(StartupError::OriginMismatch {
                    path,
                    stored,
                    configured: c.clone(),
                }),
                _ => Ok((stored, false)),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let existing_key = config.log_key_path();
            let (origin, generated) = match &config.origin {
                Some(o) => (o.clone(), false),
                None if existing_key.exists() => {
                    let text = std::fs::read_to_string(&existing_key)
                        .map_err(|e| file_error(e.to_string()))?;
                    let key = note::SignerKey::parse(text.trim())
                        .map_err(|e| file_error(format!("{}: {e}", existing_key.display())))?;
                    (key.verifier().name().to_string(), false)
                }
                None => (new_origin(), true),
            };
            keyfile::write_durable(&path, format!("{origin}\n").as_bytes(), 0o600)?;
            Ok((origin, generated))
        }
        Err(e) => Err(file_error(e.to_string()).into()),
    }
}

/// `<host>/tollgate-<8 random hex>`, the host name reduced to what an origin
/// may hold.
fn new_origin() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
        .collect();
    let host = if host.is_empty() {
        "localhost".into()
    } else {
        host
    };
    let id = &keyfile::new_token()[..8];
    format!("{host}/tollgate-{id}")
}

/// Heap the gate may grow by beside its evaluations, its hash cache and
/// its pending decisions: connections' buffers, the upper hash cache (at
/// most ~43 MB).
const GATE_HEAP_ALLOWANCE: u64 = 64 << 20;

/// Heap one admitted decision may hold: a request of at most 16 KiB, parsed,
/// its receipt and its answer.
const PENDING_DECISION_HEAP: u64 = 64 << 10;

/// The evaluators, and where Rego evaluates: in the gate under the heap
/// limit (`eval_isolation = "auto"`, the allocator counting), in worker
/// processes, or in the gate unbounded (`eval_memory_mb = 0`, or a gate
/// embedded as a library without `eval_worker`). The heap limit is set here:
/// the heap now, plus what the gate's own work may add
/// (`hash_cache_mb`, [`PENDING_DECISION_HEAP`] per `max_pending_decisions`,
/// [`GATE_HEAP_ALLOWANCE`]), plus `eval_threads` ×
/// `eval_memory_mb` for the evaluations; from then on it follows the
/// compiled policies (`policy::set_heap_limit`).
fn rego_placement(config: &Config, metrics: &Arc<crate::Metrics>) -> Evaluators {
    let threads = config.eval_threads();
    let workers = config.eval_workers(metrics.clone());
    let in_gate = match &workers {
        None => true,
        Some(_) => config.eval_isolation == crate::Isolation::Auto && policy::heap_accounted(),
    };
    if workers.is_some() && in_gate {
        let heap = policy::heap_bytes().unwrap_or(0);
        let room = (config.eval_memory_mb << 20).saturating_mul(threads as u64);
        let gate = ((config.hash_cache_mb as u64) << 20)
            .saturating_add(
                PENDING_DECISION_HEAP.saturating_mul(config.max_pending_decisions as u64),
            )
            .saturating_add(GATE_HEAP_ALLOWANCE);
        let limit = heap.saturating_add(gate).saturating_add(room);
        policy::set_heap_limit(Some(limit));
        tracing::info!(
            heap_mib = heap >> 20,
            limit_mib = limit >> 20,
            "Rego evaluates in the gate under a heap limit (bundles that refer to an amplifying builtin: in worker processes)"
        );
    } else if workers.is_some() && config.eval_isolation == crate::Isolation::Auto {
        tracing::warn!(
            "the global allocator does not count allocations: every Rego evaluation runs in a worker process"
        );
    }
    Evaluators::new(threads, workers, in_gate, metrics.clone())
}
