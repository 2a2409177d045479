//! The Tollgate gate: the decision API, admin API, read/portal API with
//! C2SP tlog-tiles, and ops endpoints, over axum.
//!
//! In scope: the decision pipeline (validate → bind the active policy →
//! derive context → evaluate → sign the receipt → append to the log →
//! answer with a tlog-proof), idempotency, policy publish/activate, replay,
//! metrics, configuration. Out of scope: Merkle math (`tlog`), notes
//! (`note`), the request contract (`protocol`), engines (`policy`), storage
//! (`ledger`); binaries are in `cmd/`.
//!
//! [`router`] builds the whole HTTP API as a plain function; [`ROUTES`]
//! lists every route, and a test holds `schemas/openapi.json` to it.

mod admin;
mod config;
mod decide;
mod error;
mod metrics;
mod read;
mod witnessing;

use std::os::unix::fs::DirBuilderExt;
use std::sync::{Arc, RwLock};

use axum::routing::{get, post};
use axum::Router;
use ledger::{keyfile, Ledger};
use note::{KeyType, SignerKey, VerifierKey};
use policy::{Bundle, CompiledPolicy};

pub use config::{Config, Mode};
pub use decide::Logged;
pub use error::GateError;
pub use metrics::Metrics;

/// Every route: (method, path in axum syntax).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/decisions"),
    ("POST", "/v1/replay"),
    ("GET", "/v1/receipts/{receipt_id}"),
    ("GET", "/v1/proofs/inclusion"),
    ("GET", "/v1/proofs/consistency"),
    ("GET", "/v1/checkpoints/{size}"),
    ("GET", "/v1/policies/{version}"),
    ("GET", "/v1/admin/policies"),
    ("POST", "/v1/admin/policies"),
    ("POST", "/v1/admin/policies/{version}/activate"),
    ("GET", "/log/checkpoint"),
    ("GET", "/log/tile/{*path}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// The compiled active policy and its version.
pub struct ActivePolicy {
    /// `sha256:<hex>` of the bundle.
    pub version: String,
    /// The compiled bundle.
    pub compiled: Arc<CompiledPolicy>,
}

/// The running gate: what every handler shares.
pub struct Gate {
    ledger: Ledger,
    gate_key: SignerKey,
    admin_token: String,
    active: RwLock<Option<Arc<ActivePolicy>>>,
    /// Serializes activations so memory and disk agree on the active version.
    activation: tokio::sync::Mutex<()>,
    eval_timeout: std::time::Duration,
    metrics: Metrics,
    witnessing: Option<Arc<witnessing::Witnessing>>,
}

/// What startup did, for the banner.
pub struct Started {
    /// The gate.
    pub gate: Arc<Gate>,
    /// The log key was generated now.
    pub log_key_generated: bool,
    /// The gate key was generated now.
    pub gate_key_generated: bool,
    /// Where the admin token is, if it came from (or went to) a file.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// The example policy was published and activated now.
    pub example_activated: Option<String>,
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
        ],
    )
}

/// The example Cedar bundle (examples/policies/cedar), same meaning as the
/// Rego one, compiled into the binary for `tollgate bench --policy cedar`.
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
    /// A message naming what failed: key files, the log's recovery, a stored
    /// policy that no longer compiles.
    pub fn open(config: &Config) -> Result<Started, String> {
        Gate::open_with_fault(config, None)
    }

    /// [`Gate::open`] with a ledger write-fault hook: tests use it to make
    /// appends fail and check that the gate answers 503 and claims nothing.
    ///
    /// # Errors
    ///
    /// As [`Gate::open`].
    pub fn open_with_fault(
        config: &Config,
        write_fault: Option<ledger::WriteFault>,
    ) -> Result<Started, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.data_dir)
            .map_err(|e| format!("data directory {}: {e}", config.data_dir.display()))?;
        let (log_key, log_key_generated) =
            keyfile::load_or_generate(&config.log_key_path(), &config.origin, KeyType::Ed25519)
                .map_err(|e| e.to_string())?;
        let (gate_key, gate_key_generated) = keyfile::load_or_generate(
            &config.gate_key_path(),
            &config.gate_key_name,
            KeyType::Ed25519,
        )
        .map_err(|e| e.to_string())?;
        let (admin_token, admin_token_file) = match &config.admin_token {
            Some(t) => (t.clone(), None),
            None => {
                let path = config.admin_token_path();
                (admin::load_or_generate_token(&path)?, Some(path))
            }
        };
        let options = ledger::Options {
            batch_max: config.batch_max,
            batch_wait: std::time::Duration::from_micros(config.batch_wait_us),
            write_fault,
            sync_fault: None,
            recent_hashes: config.hash_cache_mb << 15, // 2^20 bytes / 32 per hash
        };
        let ledger = Ledger::open(&config.data_dir.join("log"), log_key, options)
            .map_err(|e| format!("opening the log in {}: {e}", config.data_dir.display()))?;
        let witnessing = match &config.witness_policy {
            Some(path) => Some(Arc::new(witnessing::Witnessing::open(
                path,
                ledger.verifier(),
                config.data_dir.join("cosigned.checkpoint"),
                std::time::Duration::from_millis(config.witness_interval_ms.max(10)),
                std::time::Duration::from_secs(config.witness_refresh_s),
            )?)),
            None => None,
        };
        let gate = Gate {
            witnessing,
            ledger,
            gate_key,
            admin_token,
            active: RwLock::new(None),
            activation: tokio::sync::Mutex::new(()),
            eval_timeout: config.eval_timeout(),
            metrics: Metrics::default(),
        };
        let mut example_activated = None;
        let active = match gate.ledger.active_policy().map_err(|e| e.to_string())? {
            Some(version) => Some(version),
            None if config.example_policy => {
                let bundle = example_bundle();
                let version = bundle.version();
                gate.ledger
                    .publish_policy(&version, &bundle.to_tar_gz(), decide::now_ns() as u64)
                    .and_then(|_| gate.ledger.activate_policy(&version))
                    .map_err(|e| e.to_string())?;
                example_activated = Some(version.clone());
                Some(version)
            }
            None => None,
        };
        if let Some(version) = active {
            let compiled = gate
                .load_policy(&version)
                .map_err(|e| format!("the active policy {version} does not load: {e}"))?;
            *gate.active.write().expect("active lock") = Some(Arc::new(compiled));
        }
        Ok(Started {
            gate: Arc::new(gate),
            log_key_generated,
            gate_key_generated,
            admin_token_file,
            example_activated,
        })
    }

    /// Starts the background work (pushing checkpoints to witnesses). Call
    /// once, inside a tokio runtime.
    pub fn start_background(&self) {
        if let Some(w) = &self.witnessing {
            tokio::spawn(w.clone().run(self.ledger.clone()));
        }
    }

    /// The checkpoint served at `/log/checkpoint`: with witnesses configured,
    /// the latest one cosigned to the quorum (cosignature lines included) once
    /// there is one; otherwise the latest.
    #[must_use]
    pub fn served_checkpoint(&self) -> String {
        self.witnessing
            .as_ref()
            .and_then(|w| w.cosigned())
            .map_or_else(|| self.ledger.latest().note.clone(), |(_, note)| note)
    }

    /// The log's checkpoint key.
    #[must_use]
    pub fn log_verifier(&self) -> &VerifierKey {
        self.ledger.verifier()
    }

    /// The gate's receipt key.
    #[must_use]
    pub fn gate_verifier(&self) -> &VerifierKey {
        self.gate_key.verifier()
    }

    /// The active policy, if any.
    #[must_use]
    pub fn active_policy(&self) -> Option<Arc<ActivePolicy>> {
        self.active.read().expect("active lock").clone()
    }

    /// The ledger.
    #[must_use]
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Reads a published bundle and compiles it.
    fn load_policy(&self, version: &str) -> Result<ActivePolicy, GateError> {
        let bundle = self.bundle(version)?;
        let compiled = CompiledPolicy::compile(&bundle)
            .map_err(|e| GateError::InvalidPolicy(format!("policy {version}: {e}")))?
            .with_time_limit(self.eval_timeout);
        Ok(ActivePolicy {
            version: version.to_string(),
            compiled: Arc::new(compiled),
        })
    }

    /// A published bundle by version, checked against its digest.
    fn bundle(&self, version: &str) -> Result<Bundle, GateError> {
        let stored = self.ledger.policy(version)?.ok_or_else(|| {
            GateError::NotFound(format!("policy version {version} is not published"))
        })?;
        let bundle = Bundle::from_tar_gz(&stored.bytes, None)
            .map_err(|e| GateError::Internal(format!("stored policy {version}: {e}")))?;
        if bundle.version() != version {
            return Err(GateError::Internal(format!(
                "stored policy {version} has digest {}",
                bundle.version()
            )));
        }
        Ok(bundle)
    }
}

/// The whole HTTP API.
pub fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/v1/decisions", post(decide::decide))
        .route("/v1/replay", post(read::replay))
        .route("/v1/receipts/{receipt_id}", get(read::receipt))
        .route("/v1/proofs/inclusion", get(read::inclusion))
        .route("/v1/proofs/consistency", get(read::consistency))
        .route("/v1/checkpoints/{size}", get(read::checkpoint))
        .route("/v1/policies/{version}", get(read::policy_bundle))
        .route("/v1/admin/policies", get(admin::list).post(admin::publish))
        .route(
            "/v1/admin/policies/{version}/activate",
            post(admin::activate),
        )
        .route("/log/checkpoint", get(read::latest_checkpoint))
        .route("/log/tile/{*path}", get(read::tile))
        .route("/healthz", get(read::healthz))
        .route("/readyz", get(read::readyz))
        .route("/metrics", get(read::metrics))
        .with_state(gate)
}
