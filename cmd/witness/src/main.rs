//! `witness`: the witness daemon. Thin: arguments, key file, wiring.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use note::{KeyType, VerifierKey};

#[derive(Parser)]
#[command(
    name = "witness",
    version,
    about = "A C2SP tlog-witness: cosigns checkpoints that extend what it cosigned before"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /add-checkpoint and GET /checkpoint?origin=… .
    Serve {
        /// Listen address (port 0 picks one).
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// State directory: the witness key (witness.skey, 0600, generated on
        /// first start) and one state file per log.
        #[arg(long, default_value = "witness-data")]
        data_dir: PathBuf,
        /// The witness's key name (used when generating its key).
        #[arg(long, default_value = "witness.local/w1")]
        name: String,
        /// A log to witness: its checkpoint vkey (the key name is the origin).
        /// Repeat for several logs. (`--log` is the old spelling, kept for
        /// one release: `--log` is a URL everywhere else.)
        #[arg(long = "log-key", alias = "log", value_name = "VKEY", required = true)]
        logs: Vec<String>,
        /// Monitor mode: poll this log URL (serving /log/checkpoint and
        /// tlog-tiles) and cosign what is consistent, without any push. On
        /// proof of a fork (two checkpoints signed by the log that cannot both
        /// be true): evidence files under <data-dir>/state/evidence, an alert,
        /// and no more cosignatures for that log. Anything else (unreachable,
        /// unsigned, stale, tiles that prove nothing) is retried. Repeatable.
        #[arg(long = "monitor")]
        monitors: Vec<String>,
        /// How often monitor mode polls, in milliseconds.
        #[arg(long, default_value_t = 1000)]
        monitor_interval_ms: u64,
        /// With an https --monitor URL: the CA certificate(s) (PEM) to verify
        /// the log against. Default: the system's roots.
        #[arg(long, env = "WITNESS_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Monitor mode: a file holding a caller's bearer token, sent with
        /// every fetch. Monitoring needs only the public checkpoint and hash
        /// tiles, so this is for logs behind a gate that asks for one.
        #[arg(long, env = "WITNESS_TOKEN_FILE")]
        token_file: Option<PathBuf>,
    },
}

/// Loads the witness key, or generates it (mode 0600) on first start.
fn main() -> Result<()> {
    let Command::Serve {
        listen,
        data_dir,
        name,
        logs,
        monitors,
        monitor_interval_ms,
        ca_file,
        token_file,
    } = Cli::parse().command;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WITNESS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&data_dir).with_context(|| data_dir.display().to_string())?;
    let (key, _) = keyfile::load_or_generate_key(
        &data_dir.join("witness.skey"),
        &name,
        KeyType::CosignatureV1,
        false,
    )?;
    let logs: Vec<VerifierKey> = logs
        .iter()
        .map(|v| VerifierKey::parse(v).with_context(|| format!("--log-key {v}")))
        .collect::<Result<_>>()?;
    let w = Arc::new(
        witness::Witness::open(key, logs.clone(), &data_dir.join("state"))
            .map_err(anyhow::Error::msg)?,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        // Handlers before the banner, so an early SIGTERM still shuts down cleanly.
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        println!("witness listening on http://{}", listener.local_addr()?);
        println!("  witness key   {}", w.verifier());
        for l in &logs {
            println!("  witnessing    {}", l.name());
        }
        for m in monitors {
            println!("  monitoring    {m}");
            let interval = std::time::Duration::from_millis(monitor_interval_ms.max(10));
            let agent = tls::agent(ca_file.as_deref(), std::time::Duration::from_secs(10))?;
            let token = match &token_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .with_context(|| format!("--token-file {}", f.display()))?,
                ),
                None => None,
            };
            tokio::spawn(
                witness::Monitor::new(&m)
                    .with_agent(agent)
                    .with_token(token.as_deref())
                    .run(w.clone(), interval),
            );
        }
        std::io::stdout().flush()?;
        axum::serve(listener, witness::router(w))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            })
            .await?;
        Ok(())
    })
}
