//! Configuration: defaults for the embedded sidecar, a TOML file, then
//! `TOLLGATE_*` environment variables, each overriding the one before.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the gate listens: a TCP address, or (`unix:/path`) only a Unix
/// socket.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum ListenAddr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// Only this Unix socket, no TCP.
    Unix(PathBuf),
}

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddr, String> {
        match s.strip_prefix("unix:") {
            Some(path) if path.starts_with('/') => Ok(ListenAddr::Unix(path.into())),
            Some(path) => Err(format!(
                "unix:{path}: the socket path must be absolute (unix:/run/tollgate/gate.sock)"
            )),
            None => s.parse().map(ListenAddr::Tcp).map_err(|e| {
                format!("{s:?}: {e}; expected host:port (127.0.0.1:8080) or unix:/path")
            }),
        }
    }
}

impl TryFrom<String> for ListenAddr {
    type Error = String;

    fn try_from(s: String) -> Result<ListenAddr, String> {
        s.parse()
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Where and how the gate runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Beside one agent: loopback addresses (or a Unix socket) only.
    Sidecar,
    /// One service for many agents: any bind address.
    Central,
}

/// Where Rego evaluates (`eval_isolation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    /// In the gate, under a heap limit, unless the bundle refers to a
    /// builtin one call of which can build a large value or run long
    /// (`policy::AMPLIFYING`): those bundles evaluate in worker processes.
    Auto,
    /// Every Rego evaluation in a worker process.
    Process,
}

/// How the gate writes its own log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Declares every setting once — its doc, TOML name, type, default and how
/// its environment override parses — and from that list makes [`Config`],
/// its `Default`, [`SETTINGS`] and `kind`.
macro_rules! settings {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty = $default:expr => $kind:ident, )*) => {
        /// The gate's configuration. Every field has a default; see `tollgate.example.toml`.
        #[derive(Clone, Debug, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[$doc])* pub $name: $ty, )*
            /// The program run as `PROGRAM eval-worker --memory-mb N` for Rego
            /// evaluations. Not a setting: `tollgate serve` sets it to itself
            /// (`/proc/self/exe`). `None` (a gate embedded as a library) evaluates
            /// in the gate's own process whatever `eval_memory_mb` says.
            #[serde(skip)]
            pub eval_worker: Option<PathBuf>,
        }

        impl Default for Config {
            fn default() -> Config {
                Config {
                    $( $name: $default, )*
                    eval_worker: None,
                }
            }
        }

        /// Every setting, by its TOML name; each has the environment override
        /// `TOLLGATE_<NAME>` (upper case). A test holds this table to the fields of
        /// [`Config`] and to `tollgate.example.toml`.
        pub const SETTINGS: &[&str] = &[$( stringify!($name), )*];

        /// How `setting`'s environment value is parsed.
        fn kind(setting: &str) -> Kind {
            match setting {
                $( stringify!($name) => Kind::$kind, )*
                _ => Kind::Text,
            }
        }
    };
}

settings! {
    /// `sidecar` (default) or `central`.
    mode: Mode = Mode::Sidecar => Text,
    /// Where to listen: a TCP address (default `127.0.0.1:8080`; port 0
    /// picks one), or `unix:/path` for the Unix socket only, no TCP.
    listen: ListenAddr = ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080))) => Text,
    /// The group that may use the gate's Unix sockets (created 0660 and
    /// given to it). Default: the gate's own group.
    unix_socket_group: Option<String> = None => Text,
    /// Also listen on this Unix socket (beside TCP).
    unix_socket: Option<PathBuf> = None => Text,
    /// Serve HTTPS on `listen` with this certificate chain (PEM); needs `tls_key`.
    tls_cert: Option<PathBuf> = None => Text,
    /// The private key (PEM) of `tls_cert`.
    tls_key: Option<PathBuf> = None => Text,
    /// With TLS: ask for client certificates and verify them against the
    /// CA certificates in this PEM file (mTLS). Optional for clients: callers
    /// with bearer tokens present none.
    tls_client_ca: Option<PathBuf> = None => Text,
    /// With `tls_client_ca`: a request without a bearer token authenticates
    /// as the caller its verified client certificate's subject common name is
    /// mapped to here: CN → caller name (environment: `cn=name,cn=name`).
    tls_callers: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new() => Map,
    /// On the Unix socket, a request without a bearer token authenticates
    /// as the caller its peer's uid (`SO_PEERCRED`) is mapped to here: uid →
    /// caller name, e.g. `{ "1000" = "agent-sdk" }` (environment:
    /// `1000=agent-sdk,1001=other`). The sidecar case: no token to leak.
    unix_callers: std::collections::BTreeMap<String, String> = std::collections::BTreeMap::new() => Map,
    /// Directory for the RocksDB log, keys and the admin token. Default `./data`.
    data_dir: PathBuf = PathBuf::from("data") => Text,
    /// Where the log lives: unset, RocksDB in `<data_dir>/log`; a
    /// `postgres://…` URL or libpq connection string, a PostgreSQL database
    /// several gates may share (each with the same keys and origin). Its
    /// password, if any, is never printed.
    log_store: Option<String> = None => Text,
    /// The log's origin (checkpoint first line and log key name). Default:
    /// generated on first start (`<host>/tollgate-<8 random hex>`) and kept in
    /// `<data_dir>/origin`, so two installs never share one; once a data
    /// directory has an origin, a different one here is refused.
    origin: Option<String> = None => Text,
    /// The gate key's name (receipt signature line).
    gate_key_name: String = "tollgate.local/gate".into() => Text,
    /// Log key file; default `<data_dir>/log.skey`, generated if absent.
    log_key_file: Option<PathBuf> = None => Text,
    /// Gate key file; default `<data_dir>/gate.skey`, generated if absent.
    gate_key_file: Option<PathBuf> = None => Text,
    /// Admin bearer token. If unset, read from (or generated into)
    /// `<data_dir>/admin.token` (mode 0600).
    admin_token: Option<String> = None => Text,
    /// Group commit: a batch closes at this many appends...
    batch_max: usize = 256 => Integer,
    /// ... or this many microseconds after its first, while an earlier
    /// batch is still being made durable (an idle log closes a batch at once).
    batch_wait_us: u64 = 200 => Integer,
    /// Memory for the log's newest stored hashes, in MiB (64 bytes per leaf):
    /// proofs that need only those read nothing from disk. Grows with the log
    /// up to this, then stays. 0 keeps none.
    hash_cache_mb: usize = 256 => Integer,
    /// Wall-clock limit on one policy evaluation, in milliseconds; past it
    /// the decision is SILENCE. The engine enforces it: Rego checks it
    /// between units of work (a single long builtin call finishes first),
    /// Cedar always terminates in time linear in the policies.
    eval_timeout_ms: u64 = 50 => Integer,
    /// Evaluations that run at once past the first millisecond, each on its
    /// own thread beside the ones that serve HTTP (so a slow policy cannot
    /// stall `/healthz` or reads), or in its own process (see
    /// `eval_isolation`). 0: two per CPU when Rego may evaluate in worker
    /// processes (a thread mostly waits for its process's answer: measured
    /// +13% decisions/s at 64 connections on 2 cores over one per CPU),
    /// else one per CPU.
    eval_threads: usize = 0 => Integer,
    /// Memory one Rego evaluation may use, in MiB. In the gate
    /// (`eval_isolation = "auto"`): Rego evaluations stop, SILENCE, once the
    /// gate's heap is more than `eval_threads` times this above what it was
    /// at start plus what the gate's own work may add (`hash_cache_mb`, 64
    /// KiB per `max_pending_decisions`, 64 MiB) — one limit for the process, checked between units of work;
    /// no single builtin call of a bundle evaluated in the gate can pass it
    /// by much. In a worker process (`tollgate eval-worker`, at most
    /// `eval_threads`): the process's writable memory is capped at this
    /// above what it uses at start; an evaluation past it, or past
    /// `eval_timeout_ms` inside one builtin call, is SILENCE and its worker
    /// is replaced. 0: no bound, every evaluation in the gate (for
    /// policies you trust as you trust the gate's code). Cedar always
    /// evaluates in the gate: its time and memory are linear in the
    /// policies and the input.
    eval_memory_mb: u64 = 256 => Integer,
    /// Where Rego evaluates under `eval_memory_mb`. `auto` (default): in the
    /// gate, unless the bundle refers to a builtin one call of which can
    /// build a large value or run past the time limit (`sprintf`,
    /// `json.marshal`, `replace`, `walk`, …: `policy::AMPLIFYING`), whose
    /// bundles evaluate in worker processes. `process`: every Rego
    /// evaluation in a worker process, which the gate stops at the time
    /// limit whatever runs in it — for deployments whose policy authors are
    /// not trusted (a policy can make one comparison of two deeply shared
    /// values run long, which only stopping a process ends).
    eval_isolation: Isolation = Isolation::Auto => Text,
    /// Decision requests admitted at once, from validation to the answer
    /// (waiting for an evaluation thread or the log included). Beyond it a
    /// request is answered 503 `overloaded` with `Retry-After`, before
    /// anything is evaluated or written.
    max_pending_decisions: usize = 1024 => Integer,
    /// Publish and activate the example Rego bundle when no policy is active,
    /// and on a log with no callers create the `demo` caller (decide and read
    /// for the example actors `agent-*`), its token in `<data_dir>/demo.token`.
    example_policy: bool = true => Boolean,
    /// With `example_policy`: also publish and activate the example surface
    /// contract (`examples/contracts/example.json`: payments, deploy, crm)
    /// when no contract is active. `make run` turns it on.
    example_contract: bool = false => Boolean,
    /// Refuse (400) a decision on a surface the active surface contract
    /// does not cover, or any decision while no contract is active. Default
    /// false: such surfaces are decided without a contract check.
    require_surface_contracts: bool = false => Boolean,
    /// Most connections open at once (TCP and Unix socket each); beyond it
    /// a new connection is closed at once.
    max_connections: usize = 4096 => Integer,
    /// Longest wait for a complete request head, in milliseconds, idle
    /// keep-alive time included: a client that sends none in time is
    /// disconnected.
    header_read_timeout_ms: u64 = 10_000 => Integer,
    /// Longest wait for a request body, in milliseconds (408 after it).
    body_read_timeout_ms: u64 = 10_000 => Integer,
    /// Let anyone read what reveals decisions (receipts by id, entry bundles,
    /// policy bundles, replay). Default false: a caller with `read` is needed.
    /// Checkpoints, hash tiles and proofs by index are always public.
    public_read: bool = false => Boolean,
    /// `text` (default) or `json` structured logs.
    log_format: LogFormat = LogFormat::Text => Text,
    /// A C2SP tlog-policy file naming the witnesses to push checkpoints to
    /// (`witness <name> <vkey> <url>`) and the quorum; this log's `log` line is
    /// added. Unset: no witnesses.
    witness_policy: Option<PathBuf> = None => Text,
    /// How often to check whether the tree grew and push it, in milliseconds.
    witness_interval_ms: u64 = 1000 => Integer,
    /// Push the same checkpoint again after this many idle seconds.
    witness_refresh_s: u64 = 60 => Integer,
    /// For witnesses at https URLs: the CA certificate(s) (PEM) to verify
    /// them against. Default: the system's roots.
    witness_ca_file: Option<PathBuf> = None => Text,
    /// Where to send OpenTelemetry traces (OTLP over HTTP, protobuf): a
    /// collector's base URL, `/v1/traces` appended. Unset: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// and with neither, no tracing.
    otel_endpoint: Option<String> = None => Text,
    /// Where to POST an event when an approval request opens: URLs,
    /// comma-separated (`webhooks.rs`). Unset: no notifications.
    approval_webhooks: Option<String> = None => Text,
    /// The shared secret the events are signed with (HMAC-SHA256). Default:
    /// `<data_dir>/webhook.secret`, generated (0600) on first use.
    approval_webhook_secret_file: Option<PathBuf> = None => Text,
    /// This gate's URL as people reach it (links in webhook events to the
    /// portal). Default: the listen address, with https when `tls_cert` is set.
    public_url: Option<String> = None => Text,
}

/// The longest `eval_timeout_ms` accepted: an evaluation holds one of the
/// few evaluation threads for up to this long.
pub const MAX_EVAL_TIMEOUT_MS: u64 = 10_000;

/// The largest `eval_memory_mb` accepted (1 TiB).
pub const MAX_EVAL_MEMORY_MB: u64 = 1 << 20;

/// What a setting's environment value is parsed as.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Text,
    Integer,
    Boolean,
    /// `key=value,key=value`, a TOML table of strings.
    Map,
}

/// The environment variable that overrides `setting`.
#[must_use]
pub fn env_var(setting: &str) -> String {
    format!("TOLLGATE_{}", setting.to_ascii_uppercase())
}

/// A configuration that cannot be used; each names the file, variable or
/// setting at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("config {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// An environment override does not parse as its setting.
    #[error("{var}={value:?}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A setting's value cannot work or would be unsafe.
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Loads `file` (if given) over the defaults, then applies environment
    /// overrides: `TOLLGATE_<NAME>` for every setting in [`SETTINGS`].
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the file or variable and the problem.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let file_error = |reason: String| ConfigError::File {
                    path: p.to_path_buf(),
                    reason,
                };
                let table: toml::Table =
                    toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
                // Checked alone first, so its errors name the file.
                Config::deserialize(table.clone()).map_err(|e| file_error(e.to_string()))?;
                table
            }
            None => toml::Table::new(),
        };
        for setting in SETTINGS {
            let var = env_var(setting);
            let Some(value) = env(&var) else { continue };
            let env_error = |reason: String| ConfigError::Env {
                var: var.clone(),
                value: value.clone(),
                reason,
            };
            let parsed = match kind(setting) {
                Kind::Text => toml::Value::String(value.clone()),
                Kind::Integer => toml::Value::Integer(
                    value
                        .parse()
                        .map_err(|e: std::num::ParseIntError| env_error(e.to_string()))?,
                ),
                Kind::Boolean => toml::Value::Boolean(
                    value
                        .parse()
                        .map_err(|e: std::str::ParseBoolError| env_error(e.to_string()))?,
                ),
                Kind::Map => toml::Value::Table(
                    value
                        .split(',')
                        .filter(|p| !p.trim().is_empty())
                        .map(|p| {
                            let (k, v) = p
                                .split_once('=')
                                .ok_or_else(|| env_error(format!("{p:?} is not key=value")))?;
                            Ok((k.trim().to_string(), toml::Value::String(v.trim().into())))
                        })
                        .collect::<Result<toml::Table, ConfigError>>()?,
                ),
            };
            let one = toml::Table::from_iter([((*setting).to_string(), parsed.clone())]);
            Config::deserialize(one).map_err(|e| env_error(e.to_string()))?;
            table.insert((*setting).to_string(), parsed);
        }
        let c = Config::deserialize(table).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        c.check()?;
        Ok(c)
    }

    /// Refuses settings that cannot work or would be unsafe.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the setting.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if let ListenAddr::Tcp(addr) = &self.listen {
            if self.mode == Mode::Sidecar && !addr.ip().is_loopback() {
                return invalid(format!(
                    "listen = {addr}: sidecar mode binds loopback addresses only; set mode = \
                     \"central\" to serve other hosts"
                ));
            }
        }
        if matches!(self.listen, ListenAddr::Unix(_)) && self.tls_cert.is_some() {
            return invalid("TLS is served on TCP; listen = \"unix:…\" takes no tls_cert".into());
        }
        if let Some(o) = &self.origin {
            if o.is_empty() || o.chars().any(|c| c.is_whitespace() || c == '+') {
                return invalid(format!(
                    "origin = {o:?}: a log origin is non-empty, without spaces or '+' \
                     (for example \"example.com/tollgate\")"
                ));
            }
        }
        self.unix_caller_uids()?;
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("tls_cert and tls_key go together: give both or neither".into());
        }
        if self.tls_cert.is_none() && (self.tls_client_ca.is_some() || !self.tls_callers.is_empty())
        {
            return invalid("tls_client_ca and tls_callers need tls_cert and tls_key".into());
        }
        if self.batch_max == 0 {
            return invalid("batch_max must be at least 1".into());
        }
        if self.hash_cache_mb > 1 << 20 {
            return invalid(format!(
                "hash_cache_mb = {}: at most {} (1 TiB)",
                self.hash_cache_mb,
                1 << 20
            ));
        }
        if self.max_connections == 0 {
            return invalid("max_connections must be at least 1".into());
        }
        if self.header_read_timeout_ms == 0 || self.body_read_timeout_ms == 0 {
            return invalid(
                "header_read_timeout_ms and body_read_timeout_ms must be at least 1".into(),
            );
        }
        if self.eval_timeout_ms == 0 || self.eval_timeout_ms > MAX_EVAL_TIMEOUT_MS {
            return invalid(format!(
                "eval_timeout_ms = {}: between 1 and {MAX_EVAL_TIMEOUT_MS}",
                self.eval_timeout_ms
            ));
        }
        if self.eval_threads > 1024 {
            return invalid(format!(
                "eval_threads = {}: at most 1024",
                self.eval_threads
            ));
        }
        if self.eval_memory_mb != 0 && !(16..=MAX_EVAL_MEMORY_MB).contains(&self.eval_memory_mb) {
            return invalid(format!(
                "eval_memory_mb = {}: 0 (no bound) or between 16 and {MAX_EVAL_MEMORY_MB}",
                self.eval_memory_mb
            ));
        }
        if self.max_pending_decisions == 0 {
            return invalid("max_pending_decisions must be at least 1".into());
        }
        if let Some(t) = &self.admin_token {
            if t.len() < keyfile::MIN_TOKEN_LEN {
                return invalid(format!(
                    "admin_token must be at least {} characters",
                    keyfile::MIN_TOKEN_LEN
                ));
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

    /// `unix_callers` with the uids parsed.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] for a key that is not a uid.
    pub fn unix_caller_uids(&self) -> Result<std::collections::HashMap<u32, String>, ConfigError> {
        self.unix_callers
            .iter()
            .map(|(uid, name)| {
                uid.parse::<u32>().map(|u| (u, name.clone())).map_err(|_| {
                    ConfigError::Invalid(format!("unix_callers: {uid:?} is not a uid (a number)"))
                })
            })
            .collect()
    }

    /// Where the `demo` caller's token is written on first start.
    #[must_use]
    pub fn demo_token_path(&self) -> PathBuf {
        self.data_dir.join("demo.token")
    }

    /// Where the data directory keeps its log's origin.
    #[must_use]
    pub fn origin_path(&self) -> PathBuf {
        self.data_dir.join("origin")
    }

    /// The admin token file used when `admin_token` is unset.
    #[must_use]
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// The TLS server configuration, if `tls_cert` is set.
    ///
    /// # Errors
    ///
    /// A [`tls::Error`] naming the file that cannot be used.
    pub fn tls(&self) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, tls::Error> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                tls::server_config(cert, key, self.tls_client_ca.as_deref()).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The connection limits.
    #[must_use]
    pub fn limits(&self) -> crate::serve::Limits {
        crate::serve::Limits {
            max_connections: self.max_connections,
            header_read: Duration::from_millis(self.header_read_timeout_ms),
        }
    }

    /// The evaluation time limit.
    #[must_use]
    pub fn eval_timeout(&self) -> Duration {
        Duration::from_millis(self.eval_timeout_ms)
    }

    /// The evaluation processes Rego runs in (all of it under
    /// `eval_isolation = "process"`, else bundles that refer to an amplifying
    /// builtin): `None` if evaluation is unbounded (`eval_memory_mb` = 0 or
    /// no `eval_worker`).
    pub(crate) fn eval_workers(
        &self,
        metrics: std::sync::Arc<crate::Metrics>,
    ) -> Option<crate::workers::Workers> {
        let program = self
            .eval_worker
            .clone()
            .filter(|_| self.eval_memory_mb > 0)?;
        Some(crate::workers::Workers::new(
            program,
            self.eval_threads(),
            self.eval_memory_mb,
            self.eval_timeout(),
            metrics,
        ))
    }

    /// Evaluation threads: `eval_threads`, or if 0 one per CPU, two per
    /// CPU when Rego may evaluate in worker processes (each thread waits on its
    /// process's pipe most of the time, so one per CPU leaves CPUs idle).
    #[must_use]
    pub fn eval_threads(&self) -> usize {
        let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        match self.eval_threads {
            0 if self.eval_worker.is_some() && self.eval_memory_mb > 0 => 2 * cpus,
            0 => cpus,
            n => n,
        }
    }
}
