//! `tollgate`: the gate binary. Thin: arguments, configuration, wiring.

mod mcp;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use gate::{Config, Gate};
use sdk::admin::{AdminClient, Vote};

// The global allocator is mimalloc, counting what it allocates: regorus's
// `allocator-memory-limits` declares it for every binary that links `policy`,
// and the gate's heap limit on Rego evaluation reads its count
// (`policy::heap_bytes`). Decisions allocate a lot of short-lived values from
// every worker thread; under glibc malloc, malloc/free and arena contention
// were ~18% of the gate's CPU (perf, `tollgate-bench gate`).

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Tollgate: a binding, provable PERMIT/DENY/SILENCE decision for every agent tool call",
    long_about = "Tollgate sits in front of every tool call an AI agent makes. It validates the \
                  intent, evaluates it under the active policy (Rego or Cedar), signs a receipt \
                  and appends it to an RFC 9162 Merkle log before answering with the decision and \
                  an inclusion proof. Dispatch the tool call only on PERMIT."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gate. With no configuration: RocksDB under ./data, keys and an
    /// admin token generated on first start, the example Rego policy active,
    /// listening on 127.0.0.1:8080.
    Serve(ServeArgs),
    /// Publish, activate and list policy versions through the admin API.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Surface contracts: per surface (and action), JSON Schemas the
    /// decision's target and context must meet before policy sees them.
    /// Publish, activate and list them through the admin API.
    Surface {
        #[command(subcommand)]
        command: SurfaceCommand,
    },
    /// Erase the opening of a field a receipt commits (a field the surface
    /// contract marks sensitive): a signed `receipt.erase` entry (who,
    /// which receipt, which field, why) is logged, then the value is
    /// deleted from the store's files. The log and every proof stay valid.
    Erase {
        /// The receipt's id.
        receipt_id: String,
        /// The committed field, a JSON Pointer (`/target/name`).
        #[arg(long)]
        field: String,
        /// Why (logged in the entry).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Add, list, revoke and rotate callers (who may ask for decisions, for
    /// which actors) through the admin API.
    Caller {
        #[command(subcommand)]
        command: CallerCommand,
    },
    /// Approval requests: list them, approve or reject one (as a caller with
    /// the `approve` role: --token-file is that caller's token).
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Put an MCP server behind the gate: every tools/call it is sent needs
    /// a verified PERMIT; everything else passes unchanged.
    Mcp {
        #[command(subcommand)]
        command: McpCommand,
    },
    /// Work on a stopped gate's log directly.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// A Rego evaluation process, started by `tollgate serve` (see
    /// `eval_memory_mb`): frames on stdin, answers on stdout.
    #[command(hide = true)]
    EvalWorker {
        /// Writable memory beyond what the process uses at start, in MiB.
        #[arg(long)]
        memory_mb: u64,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Move an embedded log (RocksDB, a stopped gate's data directory) into
    /// an empty PostgreSQL database, so that many gates can share it
    /// (`log_store`). Every signed checkpoint is copied as it is, with its
    /// root computed again from the entries; the state beside the log
    /// (policies, callers, approvals) follows. The source is not changed.
    Copy {
        /// The gate's data directory (holding log/ and log.skey). Stop the
        /// gate first: RocksDB lets one process open it.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The database: a postgres:// URL or libpq connection string.
        #[arg(long, value_name = "URL")]
        to: String,
        /// The log's signing key file, if not DIR/log.skey. (`--log-key` is
        /// the old spelling, kept for one release: `--log-key` is a
        /// verifier key everywhere else.)
        #[arg(long = "log-skey", alias = "log-key", value_name = "FILE")]
        log_key: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum McpCommand {
    /// Run the server as a child and speak MCP on this process's stdin and
    /// stdout: point the agent's MCP configuration at
    /// `tollgate mcp stdio --server NAME --actor ID ... -- <server command>`
    /// instead of the server command.
    Stdio(mcp::StdioArgs),
    /// A reverse proxy for an MCP server's streamable HTTP endpoint: point
    /// MCP clients at `--listen` instead of the server, each with a
    /// caller's bearer token (`Authorization: Bearer …`): that caller asks
    /// the decisions.
    Http(mcp::HttpArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see tollgate.example.toml). TOLLGATE_* environment
    /// variables override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<gate::ListenAddr>,
    /// Data directory (log, keys, admin token).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also listen on this Unix socket.
    #[arg(long)]
    unix_socket: Option<PathBuf>,
    /// sidecar (loopback only) or central (any address).
    #[arg(long, value_enum)]
    mode: Option<CliMode>,
}

#[derive(clap::Args, Clone)]
struct AdminArgs {
    /// The gate's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TOLLGATE_URL")]
    url: String,
    /// Admin bearer token. Default: read from --token-file.
    #[arg(long, env = "TOLLGATE_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the admin token (the embedded default writes data/admin.token).
    #[arg(long, default_value = "data/admin.token")]
    token_file: PathBuf,
    /// With an https URL: the CA certificate(s) (PEM) to verify the gate
    /// against. Default: the system's roots.
    #[arg(long, env = "TOLLGATE_CA_FILE")]
    ca_file: Option<PathBuf>,
}

impl AdminArgs {
    /// The typed admin client (the SDK's), https verified against
    /// --ca-file or the system's roots.
    fn client(&self) -> Result<AdminClient> {
        let agent = tls::agent(self.ca_file.as_deref(), std::time::Duration::from_secs(60))?;
        Ok(AdminClient::new(&self.url, &self.token()?).with_agent(agent))
    }

    fn token(&self) -> Result<String> {
        match &self.token {
            Some(t) => Ok(t.clone()),
            None => Ok(std::fs::read_to_string(&self.token_file)
                .with_context(|| {
                    format!(
                        "no --token given and {} is unreadable",
                        self.token_file.display()
                    )
                })?
                .trim()
                .to_string()),
        }
    }
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// The open approval requests (every one with --all): id, state,
    /// approvals given and needed, who asked, expiry, and the request.
    List {
        /// Closed ones (used, rejected, expired) too.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Approve a request (a signed entry in the log first).
    Approve {
        /// The request's id (ap-…).
        id: String,
        /// Why, for the log.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Reject a request: it closes (a signed entry in the log first).
    Reject {
        /// The request's id (ap-…).
        id: String,
        /// Why, for the log.
        #[arg(long)]
        note: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Publish a bundle: a directory with tollgate.json, or a .tar.gz (Tollgate
    /// or OPA bundle). Prints its version.
    Publish {
        /// Bundle directory or .tar.gz file.
        bundle: PathBuf,
        /// Also activate it.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a published version the active policy.
    Activate {
        /// The version (sha256:<hex>).
        version: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Evaluate a published version beside the active one on every
    /// decision, never enforced: its decision is recorded in each receipt
    /// (`derived.shadow`) and counted in `tollgate_shadow_decisions_total`.
    Shadow {
        /// The version (sha256:<hex>); omit with --off.
        #[arg(required_unless_present = "off", conflicts_with = "off")]
        version: Option<String>,
        /// Stop evaluating a shadow policy.
        #[arg(long)]
        off: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List published versions; the active one is marked `*`, the shadow `s`.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Run the test cases a bundle ships (tests/*.json: a request, the
    /// decision time and caller, the expected decision) against the bundle,
    /// offline, exactly as the gate would evaluate them. Exits 1 if any fails.
    Test {
        /// Bundle directory or .tar.gz file.
        bundle: PathBuf,
    },
}

#[derive(Subcommand)]
enum SurfaceCommand {
    /// Publish a surface contract (a JSON file, `"format":
    /// "tollgate.contract/v1"`; examples/contracts/example.json is one).
    /// Every schema is compiled first; prints its version.
    Publish {
        /// The contract file.
        file: PathBuf,
        /// Also activate it.
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make a published contract the active one (`none`: no contract).
    /// Every decision after it is checked against it before policy.
    Activate {
        /// The version (sha256:<hex>), or `none`.
        version: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List published contracts; the active one is marked `*`.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum CallerCommand {
    /// Add a caller. Prints its token once (to stdout, or to --token-out);
    /// the gate keeps only its SHA-256.
    Add {
        /// The caller's name (a-z 0-9 _ . -).
        name: String,
        /// A role: decide, read, approve, admin or redeem (repeat for several).
        #[arg(long = "role", required = true, value_parser = parse_role)]
        roles: Vec<protocol::Role>,
        /// An actor it may speak for: an id, or a prefix ending in * (repeat).
        #[arg(long = "actor")]
        actors: Vec<String>,
        /// Write the token to this new file (mode 0600) instead of stdout.
        #[arg(long)]
        token_out: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List callers (revoked ones too; never tokens).
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a caller: its token authenticates no more.
    Revoke {
        /// The caller's name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Give a caller a new token; the old one stops working. Prints the new
    /// token once (to stdout, or to --token-out).
    Rotate {
        /// The caller's name.
        name: String,
        /// Write the token to this new file (mode 0600) instead of stdout.
        #[arg(long)]
        token_out: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `tollgate log copy`.
fn log_copy(from: &Path, to: &str, log_key: Option<PathBuf>) -> Result<()> {
    let key_path = log_key.unwrap_or_else(|| from.join("log.skey"));
    let key = keyfile::load_key(&key_path, None, note::KeyType::Ed25519)?;
    let started = std::time::Instant::now();
    let mut shown = std::time::Instant::now();
    let copied = ledger::copy_to_postgres(&from.join("log"), to, &key, &mut |size, of| {
        if shown.elapsed() >= std::time::Duration::from_secs(2) {
            eprintln!("tollgate: copied {size} of {of} entries");
            shown = std::time::Instant::now();
        }
    })
    .with_context(|| format!("copying the log in {} to the database", from.display()))?;
    println!(
        "copied {} entries and {} checkpoints (every root reproduced from the entries) and {} \
         state records in {:.1} s; point every gate's log_store at the database",
        copied.entries,
        copied.checkpoints,
        copied.state,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    policy::use_utc_as_local_time();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Policy { command } => policy(command),
        Command::Surface { command } => surface(command),
        Command::Erase {
            receipt_id,
            field,
            reason,
            admin,
        } => erase(&receipt_id, &field, &reason, &admin),
        Command::Caller { command } => caller(command),
        Command::Approvals { command } => approvals(command),
        Command::Log {
            command: LogCommand::Copy { from, to, log_key },
        } => log_copy(&from, &to, log_key),
        Command::EvalWorker { memory_mb } => {
            gate::workers::worker_main(memory_mb).context("eval-worker")
        }
        Command::Mcp {
            command: McpCommand::Stdio(args),
        } => {
            // Logs only past warnings (stdout is the protocol), and traces
            // with an OTLP endpoint in the standard variables.
            let _traces = mcp_traces(false);
            match mcpgate::stdio::run(args.into()) {
                Ok(code) => return code,
                Err(e) => Err(e),
            }
        }
        Command::Mcp {
            command: McpCommand::Http(args),
        } => {
            let _traces = mcp_traces(true);
            mcpgate::http::run(args.into())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn approvals(command: ApprovalsCommand) -> Result<()> {
    let (id, vote, note, admin) = match command {
        ApprovalsCommand::List { all, admin } => {
            let r = admin.client()?.approvals(all)?;
            for a in &r.approvals {
                let (r, q) = (&a.record, &a.record.request);
                println!(
                    "{} {:8} {}/{} asked by {} for {} {}.{} {} (expires {})",
                    r.id,
                    a.state,
                    r.approvals.len(),
                    r.count,
                    r.requested_by,
                    q["actor"]["id"].as_str().unwrap_or("?"),
                    q["surface"].as_str().unwrap_or("?"),
                    q["action"].as_str().unwrap_or("?"),
                    q["target"],
                    r.expires_at,
                );
            }
            return Ok(());
        }
        ApprovalsCommand::Approve { id, note, admin } => (id, Vote::Approve, note, admin),
        ApprovalsCommand::Reject { id, note, admin } => (id, Vote::Reject, note, admin),
    };
    let r = admin.client()?.vote(&id, vote, note.as_deref())?;
    println!(
        "{id}: {} ({} of {} approvals)",
        r.state,
        r.record.approvals.len(),
        r.record.count
    );
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let env = |k: &str| std::env::var(k).ok();
    let mut config = Config::load(args.config.as_deref(), env)?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    if let Some(u) = args.unix_socket {
        config.unix_socket = Some(u);
    }
    if let Some(m) = args.mode {
        config.mode = match m {
            CliMode::Sidecar => gate::Mode::Sidecar,
            CliMode::Central => gate::Mode::Central,
        };
    }
    config.check().map_err(anyhow::Error::msg)?;
    // This very binary, even if a newer one has replaced it on disk: the
    // gate and its evaluation processes speak a private protocol.
    config.eval_worker = Some("/proc/self/exe".into());
    let traces = telemetry::endpoint(config.otel_endpoint.as_deref());
    let _traces = init_logging_and_traces(config.log_format, traces.as_deref());
    if let Some(url) = &traces {
        tracing::info!(%url, "sending traces (OTLP over HTTP)");
    }
    raise_open_files(config.max_connections);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_server(config))
}

/// Raises the soft limit on open files to the hard limit, so that
/// `max_connections` (per listener) plus the log's own files fit; says so
/// if they cannot.
fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
        tracing::warn!(soft, hard, "could not raise the open-files limit");
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((soft, hard));
    let need = 2 * max_connections as u64 + 256;
    if soft < need {
        tracing::warn!(
            open_files = soft,
            max_connections,
            "the open-files limit is below what max_connections needs; \
             connections beyond it wait in the kernel's backlog"
        );
    }
}

/// `--mode`, checked by clap (gate::Mode knows no clap).
#[derive(Clone, Copy, clap::ValueEnum)]
enum CliMode {
    Sidecar,
    Central,
}

/// The MCP gateway's logs (stderr; the stdio gateway's only when
/// `TOLLGATE_LOG` asks, as before) and, with `OTEL_EXPORTER_OTLP_ENDPOINT`
/// or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, its traces: a span per
/// `tools/call`, the decision its child.
fn mcp_traces(http: bool) -> Option<telemetry::Exporter> {
    let traces = telemetry::endpoint(None);
    if !http && traces.is_none() && std::env::var_os("TOLLGATE_LOG").is_none() {
        return None;
    }
    init_logging_and_traces(gate::LogFormat::Text, traces.as_deref())
}

/// Logs to stderr (`TOLLGATE_LOG`, default `info`) and, with an OTLP
/// endpoint, traces: the spans of target `telemetry::TARGET` go to the
/// exporter and never to the log. Without an endpoint those spans are
/// disabled at their callsites. The exporter flushes when dropped.
fn init_logging_and_traces(
    format: gate::LogFormat,
    traces: Option<&str>,
) -> Option<telemetry::Exporter> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        .add_directive(
            format!("{}=off", telemetry::TARGET)
                .parse()
                .expect("a directive"),
        );
    // Colours only for a terminal: a log file gets plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = if format == gate::LogFormat::Json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let exporter = traces.and_then(|url| match telemetry::Exporter::start(url, "tollgate") {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("tollgate: traces are off: starting the exporter: {e}");
            None
        }
    });
    let otel = exporter.as_ref().map(|e| {
        e.layer().with_filter(
            tracing_subscriber::filter::Targets::new()
                .with_target(telemetry::TARGET, tracing::Level::TRACE),
        )
    });
    tracing_subscriber::registry().with(fmt).with(otel).init();
    exporter
}

async fn run_server(config: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives as soon as the banner is out
    // must take the graceful path, not the default (terminate at once).
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("installing the SIGINT handler")?;
    let started = Gate::open(&config)?;
    let gate = started.gate.clone();
    gate.check_evaluation().await.context(
        "the policy in force cannot be evaluated here (raise eval_memory_mb, or 0 evaluates in the gate)",
    )?;
    gate.start_background();
    let app = gate::router(gate.clone());
    let (tcp, url) = match &config.listen {
        gate::ListenAddr::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            let scheme = if config.tls_cert.is_some() {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{}", listener.local_addr()?);
            (Some(listener), url)
        }
        gate::ListenAddr::Unix(path) => (None, format!("unix:{}", path.display())),
    };
    let group = config.unix_socket_group.as_deref();
    let mut sockets = Vec::new();
    for path in [&config.listen]
        .into_iter()
        .filter_map(|l| match l {
            gate::ListenAddr::Unix(p) => Some(p),
            gate::ListenAddr::Tcp(_) => None,
        })
        .chain(config.unix_socket.as_ref())
    {
        sockets.push(gate::serve::bind_unix(path, group).map_err(anyhow::Error::msg)?);
    }
    gate.listening_at(&url);
    banner(&config, &started, &url);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let limits = config.limits();
    let tls = config.tls()?;
    if let Some(listener) = tcp {
        servers.spawn(gate::serve::serve(
            listener,
            app.clone(),
            limits,
            tls,
            stop_rx.clone(),
        ));
    }
    for unix in sockets {
        // Each request on the socket carries its peer's uid (SO_PEERCRED),
        // which `unix_callers` may map to a caller.
        servers.spawn(gate::serve::serve(
            unix,
            app.clone(),
            limits,
            None,
            stop_rx.clone(),
        ));
    }
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down: draining in-flight requests");
    let _ = stop_tx.send(true);
    while let Some(r) = servers.join_next().await {
        r??;
    }
    drop(gate);
    tracing::info!("stopped");
    Ok(())
}

fn banner(config: &Config, started: &gate::Started, listening: &str) {
    let gate = &started.gate;
    // What curl is given: the URL, or on a Unix socket the socket and a URL.
    let (curl, url) = match listening.strip_prefix("unix:") {
        Some(path) => (
            format!("curl -s --unix-socket {path}"),
            "http://gate".to_string(),
        ),
        None => ("curl -s".to_string(), listening.to_string()),
    };
    let url = url.as_str();
    println!("tollgate listening on {listening}");
    println!("  mode          {:?}", config.mode);
    if let Some(path) = &config.unix_socket {
        println!("  unix socket   {}", path.display());
    }
    println!("  data          {}", config.data_dir.display());
    println!(
        "  origin        {}{}",
        gate.log_verifier().name(),
        if started.origin_generated {
            "  (generated; kept in the data directory)"
        } else {
            ""
        }
    );
    println!(
        "  log key       {}{}",
        gate.log_verifier(),
        if started.log_key_generated {
            "  (generated)"
        } else {
            ""
        }
    );
    println!(
        "  gate key      {}{}",
        gate.gate_verifier(),
        if started.gate_key_generated {
            "  (generated)"
        } else {
            ""
        }
    );
    match gate.active_policy() {
        Some(a) => println!(
            "  policy        {}{}",
            a.version,
            if started.example_activated.is_some() {
                "  (example Rego bundle, activated now)"
            } else {
                ""
            }
        ),
        None => println!(
            "  policy        none active: every decision is SILENCE until one is activated"
        ),
    }
    match gate.active_contract() {
        Some(v) => println!(
            "  contract      {v}{}",
            if started.example_contract_activated.is_some() {
                "  (example surface contract, activated now: payments, deploy, crm)"
            } else {
                ""
            }
        ),
        None if config.require_surface_contracts => println!(
            "  contract      none active, and require_surface_contracts: every decision is refused (400)"
        ),
        None => println!("  contract      none active: targets are not checked beyond the request contract"),
    }
    if let Some(f) = &started.admin_token_file {
        println!("  admin token   in {}", f.display());
    }
    if let Some(urls) = config
        .approval_webhooks
        .as_deref()
        .filter(|_| gate.notifies())
    {
        println!(
            "  webhooks      approval requests to {urls}, signed with the secret in {}",
            config
                .approval_webhook_secret_file
                .clone()
                .unwrap_or_else(|| config.data_dir.join("webhook.secret"))
                .display()
        );
    }
    println!("  log size      {}", gate.ledger().latest().checkpoint.size);
    let demo = config.demo_token_path();
    if let Some(f) = &started.demo_token_file {
        println!(
            "  demo caller   created now: decide and read for actors {}; its token is in {}",
            gate::DEMO_ACTORS,
            f.display()
        );
    }
    println!();
    println!("Ask for a decision (as the demo caller):");
    println!(
        "  {curl} {url}/v1/decisions -H \"authorization: Bearer $(cat {})\" \
         -H 'content-type: application/json' -d \
         '{{\"actor\":{{\"id\":\"agent-treasury\",\"kind\":\"agent\"}},\"surface\":\"payments\",\
         \"action\":\"transfer\",\"target\":{{\"amount\":500,\"to\":\"acct-9\"}},\"idempotency_key\":\"demo-1\"}}'",
        demo.display()
    );
    println!("The log: {curl} {url}/log/checkpoint   Metrics: {curl} {url}/metrics");
    if !listening.starts_with("unix:") {
        println!(
            "The portal (verify receipts, approve requests, watch the log): {url}/portal/ \
             (pin the log and gate keys above in its Keys page)"
        );
    }
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}

/// Shows a new token: into a new 0600 file, or on stdout.
fn show_token(name: &str, token: &str, out: Option<&std::path::Path>) -> Result<()> {
    match out {
        Some(path) => {
            if path.exists() {
                bail!("{} exists; give a new file for the token", path.display());
            }
            keyfile::write_durable(path, format!("{token}\n").as_bytes(), 0o600)?;
            println!("token of {name} written to {}", path.display());
        }
        None => println!("{token}"),
    }
    Ok(())
}

/// A `--role` value.
fn parse_role(s: &str) -> Result<protocol::Role, String> {
    serde_json::from_value(serde_json::json!(s))
        .map_err(|_| format!("{s:?}: the roles are decide, read, approve, admin and redeem"))
}

fn caller(command: CallerCommand) -> Result<()> {
    match command {
        CallerCommand::Add {
            name,
            roles,
            actors,
            token_out,
            admin,
        } => {
            let new = protocol::NewCaller {
                name: name.clone(),
                roles: roles.into_iter().collect(),
                actors,
            };
            let r = admin.client()?.add_caller(&new)?;
            eprintln!(
                "added caller {name}: roles {}, actors {}",
                serde_json::to_string(&r.caller.roles)?,
                serde_json::to_string(&r.caller.actors)?
            );
            show_token(&name, &r.token, token_out.as_deref())?;
        }
        CallerCommand::List { admin } => {
            let r = admin.client()?.callers()?;
            for c in &r.callers {
                println!(
                    "{:<24} roles {}  actors {}  created {}{}",
                    c.name,
                    serde_json::to_string(&c.roles)?,
                    serde_json::to_string(&c.actors)?,
                    c.created_at,
                    c.revoked_at
                        .as_ref()
                        .map(|t| format!("  REVOKED {t}"))
                        .unwrap_or_default()
                );
            }
        }
        CallerCommand::Revoke { name, admin } => {
            let r = admin.client()?.revoke_caller(&name)?;
            println!(
                "revoked {name} at {}",
                r.revoked_at.as_deref().unwrap_or("?")
            );
        }
        CallerCommand::Rotate {
            name,
            token_out,
            admin,
        } => {
            let r = admin.client()?.rotate_caller(&name)?;
            eprintln!("rotated the token of {name}; the old one no longer works");
            show_token(&name, &r.token, token_out.as_deref())?;
        }
    }
    Ok(())
}

/// Reads a bundle directory or .tar.gz file.
fn read_bundle(path: &std::path::Path) -> Result<policy::Bundle> {
    if path.is_dir() {
        return policy::Bundle::from_dir(path)
            .with_context(|| format!("reading {}", path.display()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    policy::Bundle::from_tar_gz(&bytes, None).with_context(|| format!("reading {}", path.display()))
}

fn erase(receipt_id: &str, field: &str, reason: &str, admin: &AdminArgs) -> Result<()> {
    let e = admin.client()?.erase(receipt_id, field, reason)?;
    println!(
        "erased the opening of {} of receipt {} (logged as entry {})",
        e.field, e.receipt_id, e.entry
    );
    Ok(())
}

fn surface(command: SurfaceCommand) -> Result<()> {
    match command {
        SurfaceCommand::Publish {
            file,
            activate,
            admin,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let client = admin.client()?;
            let published = client.publish_contract(&bytes)?;
            let version = published.version;
            println!(
                "{version} (surfaces {}{})",
                published.surfaces.join(", "),
                if published.created {
                    "; new"
                } else {
                    "; already published"
                }
            );
            if activate {
                client.activate_contract(Some(&version))?;
                println!("activated {version}");
            }
        }
        SurfaceCommand::Activate { version, admin } => {
            let version = (version != "none").then_some(version);
            let r = admin.client()?.activate_contract(version.as_deref())?;
            println!(
                "activated {} (was {})",
                r.active.as_deref().unwrap_or("none"),
                r.previous.as_deref().unwrap_or("none")
            );
        }
        SurfaceCommand::List { admin } => {
            let r = admin.client()?.contracts()?;
            for v in &r.versions {
                let mark = if v.active { "*" } else { " " };
                println!("{mark} {}  published {}", v.version, v.published_at);
            }
        }
    }
    Ok(())
}

fn policy(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Test { bundle } => {
            let loaded = read_bundle(&bundle)?;
            let results = policy::run_cases(&loaded)?;
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                let mark = if r.passed { "ok  " } else { "FAIL" };
                println!(
                    "{mark} {}: {} — expected {}, got {} ({})",
                    r.file,
                    r.name,
                    r.expected.as_str(),
                    r.got.as_str(),
                    r.reason
                );
            }
            println!(
                "{} cases, {} failed ({} {})",
                results.len(),
                failed,
                loaded.version(),
                bundle.display()
            );
            if failed > 0 {
                bail!("{failed} of {} cases failed", results.len());
            }
        }
        PolicyCommand::Publish {
            bundle,
            activate,
            admin,
        } => {
            let bytes = if bundle.is_dir() {
                policy::Bundle::from_dir(&bundle)
                    .with_context(|| format!("reading {}", bundle.display()))?
                    .to_tar_gz()
            } else {
                std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?
            };
            let client = admin.client()?;
            let published = client.publish_policy(&bytes)?;
            let version = published.version;
            println!(
                "{version} ({}{})",
                published.engine,
                if published.created {
                    ", new"
                } else {
                    ", already published"
                }
            );
            if activate {
                client.activate_policy(&version)?;
                println!("activated {version}");
            }
        }
        PolicyCommand::Activate { version, admin } => {
            let r = admin.client()?.activate_policy(&version)?;
            println!(
                "activated {} (was {})",
                r.active,
                r.previous.as_deref().unwrap_or("none")
            );
        }
        PolicyCommand::Shadow {
            version,
            off: _,
            admin,
        } => {
            let r = admin.client()?.set_shadow(version.as_deref())?;
            println!(
                "shadow {} (was {})",
                r.shadow.as_deref().unwrap_or("off"),
                r.previous.as_deref().unwrap_or("none")
            );
        }
        PolicyCommand::List { admin } => {
            let r = admin.client()?.policies()?;
            for v in &r.versions {
                let mark = if v.active {
                    "*"
                } else if r.shadow.as_deref() == Some(v.version.as_str()) {
                    "s"
                } else {
                    " "
                };
                println!("{mark} {}  published {}", v.version, v.published_at);
            }
        }
    }
    Ok(())
}
