//! Configuration: defaults for the embedded sidecar, a TOML file, then
//! `TOLLGATE_*` environment variables, each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where and how the gate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Beside one agent: loopback addresses (or a Unix socket) only.
    Sidecar,
    /// One service for many agents: any bind address.
    Central,
}

/// The gate's configuration. Every field has a default; see `tollgate.example.toml`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sidecar` (default) or `central`.
    pub mode: Mode,
    /// TCP address to listen on. Default `127.0.0.1:8080`; port 0 picks one.
    pub listen: SocketAddr,
    /// Also (sidecar) or instead listen on this Unix socket.
    pub unix_socket: Option<PathBuf>,
    /// Directory for the RocksDB log, keys and the admin token. Default `./data`.
    pub data_dir: PathBuf,
    /// The log's origin (checkpoint first line and log key name).
    pub origin: String,
    /// The gate key's name (receipt signature line).
    pub gate_key_name: String,
    /// Log key file; default `<data_dir>/log.skey`, generated if absent.
    pub log_key_file: Option<PathBuf>,
    /// Gate key file; default `<data_dir>/gate.skey`, generated if absent.
    pub gate_key_file: Option<PathBuf>,
    /// Admin bearer token. If unset, read from (or generated into)
    /// `<data_dir>/admin.token` (mode 0600).
    pub admin_token: Option<String>,
    /// Group commit: a batch closes at this many appends...
    pub batch_max: usize,
    /// ... or this many microseconds after its first, while an earlier
    /// batch is still being made durable (an idle log closes a batch at once).
    pub batch_wait_us: u64,
    /// Memory for the log's newest stored hashes, in MiB (64 bytes per leaf):
    /// proofs that need only those read nothing from disk. Grows with the log
    /// up to this, then stays. 0 keeps none.
    pub hash_cache_mb: usize,
    /// Wall-clock limit on one policy evaluation, in milliseconds; past it
    /// the decision is SILENCE. The engine enforces it: Rego checks it
    /// between units of work (a single long builtin call finishes first),
    /// Cedar always terminates in time linear in the policies.
    pub eval_timeout_ms: u64,
    /// Publish and activate the example Rego bundle when no policy is active.
    pub example_policy: bool,
    /// `text` (default) or `json` structured logs.
    pub log_format: String,
    /// A C2SP tlog-policy file naming the witnesses to push checkpoints to
    /// (`witness <name> <vkey> <url>`) and the quorum; this log's `log` line is
    /// added. Unset: no witnesses.
    pub witness_policy: Option<PathBuf>,
    /// How often to check whether the tree grew and push it, in milliseconds.
    pub witness_interval_ms: u64,
    /// Push the same checkpoint again after this many idle seconds.
    pub witness_refresh_s: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: Mode::Sidecar,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            unix_socket: None,
            data_dir: PathBuf::from("data"),
            origin: "tollgate.local/log".into(),
            gate_key_name: "tollgate.local/gate".into(),
            log_key_file: None,
            gate_key_file: None,
            admin_token: None,
            batch_max: 256,
            batch_wait_us: 200,
            hash_cache_mb: 256,
            eval_timeout_ms: 50,
            example_policy: true,
            log_format: "text".into(),
            witness_policy: None,
            witness_interval_ms: 1000,
            witness_refresh_s: 60,
        }
    }
}

impl Config {
    /// Loads `file` (if given) over the defaults, then applies environment
    /// overrides: `TOLLGATE_MODE`, `TOLLGATE_LISTEN`, `TOLLGATE_UNIX_SOCKET`,
    /// `TOLLGATE_DATA_DIR`, `TOLLGATE_ORIGIN`, `TOLLGATE_GATE_KEY_NAME`,
    /// `TOLLGATE_ADMIN_TOKEN`, `TOLLGATE_BATCH_MAX`, `TOLLGATE_BATCH_WAIT_US`,
    /// `TOLLGATE_HASH_CACHE_MB`, `TOLLGATE_EVAL_TIMEOUT_MS`, `TOLLGATE_EXAMPLE_POLICY`, `TOLLGATE_LOG_FORMAT`,
    /// `TOLLGATE_WITNESS_POLICY`.
    ///
    /// # Errors
    ///
    /// A message naming the file or variable and the problem.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let mut c = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("config {}: {e}", p.display()))?;
                toml::from_str(&text).map_err(|e| format!("config {}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        fn parse<T: std::str::FromStr>(var: &str, v: &str) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| format!("{var}={v:?}: {e}"))
        }
        for var in [
            "TOLLGATE_MODE",
            "TOLLGATE_LISTEN",
            "TOLLGATE_UNIX_SOCKET",
            "TOLLGATE_DATA_DIR",
            "TOLLGATE_ORIGIN",
            "TOLLGATE_GATE_KEY_NAME",
            "TOLLGATE_ADMIN_TOKEN",
            "TOLLGATE_BATCH_MAX",
            "TOLLGATE_BATCH_WAIT_US",
            "TOLLGATE_HASH_CACHE_MB",
            "TOLLGATE_EVAL_TIMEOUT_MS",
            "TOLLGATE_EXAMPLE_POLICY",
            "TOLLGATE_LOG_FORMAT",
            "TOLLGATE_WITNESS_POLICY",
        ] {
            let Some(v) = env(var) else { continue };
            match var {
                "TOLLGATE_MODE" => {
                    c.mode = match v.as_str() {
                        "sidecar" => Mode::Sidecar,
                        "central" => Mode::Central,
                        _ => return Err(format!("{var}={v:?}: expected sidecar or central")),
                    }
                }
                "TOLLGATE_LISTEN" => c.listen = parse(var, &v)?,
                "TOLLGATE_UNIX_SOCKET" => c.unix_socket = Some(v.into()),
                "TOLLGATE_DATA_DIR" => c.data_dir = v.into(),
                "TOLLGATE_ORIGIN" => c.origin = v,
                "TOLLGATE_GATE_KEY_NAME" => c.gate_key_name = v,
                "TOLLGATE_ADMIN_TOKEN" => c.admin_token = Some(v),
                "TOLLGATE_BATCH_MAX" => c.batch_max = parse(var, &v)?,
                "TOLLGATE_BATCH_WAIT_US" => c.batch_wait_us = parse(var, &v)?,
                "TOLLGATE_HASH_CACHE_MB" => c.hash_cache_mb = parse(var, &v)?,
                "TOLLGATE_EVAL_TIMEOUT_MS" => c.eval_timeout_ms = parse(var, &v)?,
                "TOLLGATE_EXAMPLE_POLICY" => c.example_policy = parse(var, &v)?,
                "TOLLGATE_WITNESS_POLICY" => c.witness_policy = Some(v.into()),
                _ => c.log_format = v,
            }
        }
        c.check()?;
        Ok(c)
    }

    /// Refuses settings that cannot work or would be unsafe.
    ///
    /// # Errors
    ///
    /// A message naming the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.mode == Mode::Sidecar && !self.listen.ip().is_loopback() {
            return Err(format!(
                "listen = {}: sidecar mode binds loopback addresses only; set mode = \"central\" \
                 to serve other hosts",
                self.listen
            ));
        }
        if self.batch_max == 0 {
            return Err("batch_max must be at least 1".into());
        }
        if self.hash_cache_mb > 1 << 20 {
            return Err(format!(
                "hash_cache_mb = {}: at most {} (1 TiB)",
                self.hash_cache_mb,
                1 << 20
            ));
        }
        if self.eval_timeout_ms == 0 {
            return Err("eval_timeout_ms must be at least 1".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "log_format = {:?}: expected text or json",
                self.log_format
            ));
        }
        if let Some(t) = &self.admin_token {
            if t.len() < 16 {
                return Err("admin_token must be at least 16 characters".into());
            }
        }
        Ok(())
    }

    /// The log key file.
    #[must_use]
    pub fn log_key_path(&self) -> PathBuf {
        self.log_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("log.skey"))
    }

    /// The gate key file.
    #[must_use]
    pub fn gate_key_path(&self) -> PathBuf {
        self.gate_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("gate.skey"))
    }

    /// The admin token file used when `admin_token` is unset.
    #[must_use]
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The evaluation time limit.
    #[must_use]
    pub fn eval_timeout(&self) -> Duration {
        Duration::from_millis(self.eval_timeout_ms)
    }
}
