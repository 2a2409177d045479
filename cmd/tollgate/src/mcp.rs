//! `tollgate mcp stdio`: the MCP gateway over stdio. Runs the MCP server as
//! a child, speaks MCP on its own stdin/stdout, and lets a `tools/call`
//! through only on a verified PERMIT from the gate (the rules are in the
//! `mcp` crate; this is the I/O).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use mcp::{Action, Gateway, Outcome};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub(crate) struct StdioArgs {
    /// The server's name: the surface its tools' decisions are asked for.
    #[arg(long)]
    server: String,
    /// The actor every call is decided for (the agent behind this client).
    #[arg(long, env = "TOLLGATE_MCP_ACTOR")]
    actor: String,
    /// The gate's URL.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "TOLLGATE_URL")]
    gate: String,
    /// File holding the bearer token of a caller that may decide for the actor.
    #[arg(long, env = "TOLLGATE_TOKEN_FILE")]
    token_file: PathBuf,
    /// The log's checkpoint key (vkey): answers must verify with it.
    #[arg(long, env = "TOLLGATE_LOG_KEY")]
    log_key: String,
    /// The gate's receipt key (vkey): answers must verify with it.
    #[arg(long, env = "TOLLGATE_GATE_KEY")]
    gate_key: String,
    /// With an https gate URL: the CA certificate(s) (PEM) to verify it against.
    #[arg(long, env = "TOLLGATE_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The MCP server's command and its arguments (after `--`).
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

/// Runs the gateway until the client closes its input or the server exits;
/// exits with the server's status.
pub(crate) fn stdio(args: StdioArgs) -> Result<std::process::ExitCode> {
    let trust = sdk::Trust::new(
        note::VerifierKey::parse(&args.log_key).context("--log-key")?,
        note::VerifierKey::parse(&args.gate_key).context("--gate-key")?,
    );
    let token = std::fs::read_to_string(&args.token_file)
        .with_context(|| format!("reading {}", args.token_file.display()))?;
    let gate = sdk::Client::new(&args.gate, trust)
        .with_agent(crate::client::agent(args.ca_file.as_deref())?)
        .with_token(token.trim());
    let session = keyfile::new_token();
    let gateway = Gateway::new(&args.server, &args.actor, &session);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args.command, gateway, Arc::new(gate)))
}

/// Where lines go, and the gate.
#[derive(Clone)]
struct Io {
    gateway: Arc<Mutex<Gateway>>,
    client: mpsc::UnboundedSender<String>,
    server: mpsc::UnboundedSender<String>,
    gate: Arc<sdk::Client>,
}

impl Io {
    /// Carries out `actions`; a decision is asked for off the async threads
    /// and its outcome carried out when it comes.
    fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToClient(line) => drop(self.client.send(line)),
                Action::ToServer(line) => drop(self.server.send(line)),
                Action::Decide(call) => {
                    let io = self.clone();
                    tokio::spawn(async move {
                        let (gate, intent) = (io.gate.clone(), call.intent.clone());
                        let outcome = tokio::task::spawn_blocking(move || decide(&gate, &intent))
                            .await
                            .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
                        let next = io.gateway.lock().expect("gateway").decided(call, outcome);
                        io.act(next);
                    });
                }
            }
        }
    }
}

/// The gate's verified decision on `intent`, as the gateway takes it.
fn decide(gate: &sdk::Client, intent: &serde_json::Value) -> Outcome {
    let json = |r: &protocol::DecisionResponse| serde_json::to_value(r).unwrap_or_default();
    match gate.decide(intent) {
        Ok(permit) => Outcome::Permit(json(permit.response())),
        Err(sdk::Refusal::Deny {
            reason, response, ..
        }) => Outcome::Refused {
            decision: "DENY".into(),
            reason,
            response: json(&response),
        },
        Err(sdk::Refusal::Silence {
            reason, response, ..
        }) => Outcome::Refused {
            decision: "SILENCE".into(),
            reason,
            response: json(&response),
        },
        Err(other) => Outcome::Failed(other.to_string()),
    }
}

async fn run(
    command: Vec<String>,
    gateway: Gateway,
    gate: Arc<sdk::Client>,
) -> Result<std::process::ExitCode> {
    let mut child = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the MCP server {:?}", command[0]))?;
    let mut server_in = child.stdin.take().expect("piped");
    let server_out = child.stdout.take().expect("piped");
    let (to_client, mut client_lines) = mpsc::unbounded_channel::<String>();
    let (to_server, mut server_lines) = mpsc::unbounded_channel::<String>();
    let io = Io {
        gateway: Arc::new(Mutex::new(gateway)),
        client: to_client,
        server: to_server,
        gate,
    };
    // Writers: one line per message, flushed.
    let client_writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(line) = client_lines.recv().await {
            if out.write_all(format!("{line}\n").as_bytes()).await.is_err() {
                break;
            }
            let _ = out.flush().await;
        }
    });
    tokio::spawn(async move {
        while let Some(line) = server_lines.recv().await {
            if server_in
                .write_all(format!("{line}\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            let _ = server_in.flush().await;
        }
        // Dropping stdin tells the server the client is gone.
    });
    // The server's output, to the gateway.
    let from_server = {
        let io = io.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(server_out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                let actions = io.gateway.lock().expect("gateway").from_server(&line);
                io.act(actions);
            }
        })
    };
    // The client's input, to the gateway, until it closes.
    {
        let io = io.clone();
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(line)) if line.trim().is_empty() => {}
                    Ok(Some(line)) => {
                        let actions = io.gateway.lock().expect("gateway").from_client(&line);
                        io.act(actions);
                    }
                    _ => break,
                },
                _ = child.wait() => break,
            }
        }
    }
    // Close the server's stdin (its writer ends when every sender is gone),
    // let it finish, then pass on what it said last.
    drop(io);
    let status = child.wait().await.context("waiting for the MCP server")?;
    let _ = from_server.await;
    let _ = client_writer.await;
    Ok(std::process::ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}
