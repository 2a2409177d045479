//! `tollgate mcp stdio`: the MCP gateway over stdio. Runs the MCP server as
//! a child, speaks MCP on its own stdin/stdout, and lets a `tools/call`
//! through only on a verified PERMIT from the gate (the rules are in the
//! `mcp` crate; this is the I/O).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use mcp::{Action, Gateway};

use crate::decider::{Asker, Decider};

/// What the gateway is given (the `tollgate mcp` flags, in `cmd/tollgate`).
#[derive(Clone, Debug)]
pub struct StdioOptions {
    /// The server's name: the surface its tools' decisions are asked for.
    pub server: String,
    /// The actor every call is decided for (the agent behind this client).
    pub actor: String,
    /// The gate's URL (`--gate`, its old spelling, still works).
    pub gate: String,
    /// File holding the bearer token of a caller that may decide for the actor.
    pub token_file: Option<PathBuf>,
    /// The log's checkpoint key (vkey): answers must verify with it.
    pub log_key: Option<String>,
    /// The gate's receipt key (vkey): answers must verify with it.
    pub gate_key: Option<String>,
    /// Run the gate inside this process on this data directory (as `tollgate
    /// serve --data-dir` would, which must not be running on it) instead of
    /// asking one at --url. Receipts name --caller, `via: in_process`.
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the caller (created with `tollgate caller add`, bound
    /// to the actor) the decisions are asked as.
    pub caller: String,
    /// With an https gate URL: the CA certificate(s) (PEM) to verify it against.
    pub ca_file: Option<PathBuf>,
    /// `tools/list` answers omit the tools the policy denies this actor
    /// outright (each evaluated with the arguments unknown and
    /// `context.listing = true`, never logged); calls are decided as always.
    pub hide_denied: bool,
    /// The MCP server's command and its arguments (after `--`).
    pub command: Vec<String>,
}

/// Runs the gateway until the client closes its input or the server exits;
/// exits with the server's status.
pub fn run(args: StdioOptions) -> Result<std::process::ExitCode> {
    // Decisions are asked from plain threads, through this runtime.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (decider, asker) = match &args.data_dir {
        Some(dir) => {
            let decider = {
                let _in_runtime = runtime.enter();
                Decider::in_process(dir)?
            };
            let gate = decider.gate().expect("in process");
            let Some(found) = gate.caller(&args.caller) else {
                anyhow::bail!(
                    "no live caller {:?} in {}: add one with `tollgate caller add {} \
                     --role decide --actor {}`",
                    args.caller,
                    dir.display(),
                    args.caller,
                    args.actor
                );
            };
            anyhow::ensure!(
                found.may_speak_for(&args.actor),
                "caller {:?} may not decide for actor {:?}",
                args.caller,
                args.actor
            );
            (decider, Asker::Named(args.caller.clone()))
        }
        None => {
            let (Some(log_key), Some(gate_key), Some(token_file)) =
                (&args.log_key, &args.gate_key, &args.token_file)
            else {
                anyhow::bail!(
                    "--log-key, --gate-key and --token-file are needed without --data-dir"
                );
            };
            let token = std::fs::read_to_string(token_file)
                .with_context(|| format!("reading {}", token_file.display()))?;
            let decider = Decider::remote(&args.gate, log_key, gate_key, args.ca_file.as_deref())?;
            (decider, Asker::Token(token.trim().to_string()))
        }
    };
    let session = keyfile::new_token();
    let mut gateway = Gateway::new(&args.server, &args.actor, &session);
    if args.hide_denied {
        gateway = gateway.hide_denied();
    }
    let gate = Asking {
        runtime,
        decider,
        asker,
    };
    serve(&args.command, gateway, Arc::new(gate))
}

/// The gate and who asks it, from the gateway's plain threads.
struct Asking {
    runtime: tokio::runtime::Runtime,
    decider: Decider,
    asker: Asker,
}

/// Where lines go, and the gate. Plain threads and blocking pipes: a line
/// crosses the gateway with no hand-off but the channel to its writer.
#[derive(Clone)]
struct Io {
    gateway: Arc<Mutex<Gateway>>,
    client: mpsc::Sender<Option<String>>,
    server: mpsc::Sender<Option<String>>,
    gate: Arc<Asking>,
}

impl Io {
    /// Carries out `actions`; each decision is asked for on a thread of its
    /// own (the client may send more calls meanwhile) and its outcome
    /// carried out when it comes.
    fn act(&self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToClient(line) => drop(self.client.send(Some(line))),
                Action::ToServer(line) => drop(self.server.send(Some(line))),
                Action::Decide(call) => {
                    let io = self.clone();
                    std::thread::spawn(move || {
                        let span = telemetry::tool_call_span(&call.tool, None, &call.trace);
                        let g = &io.gate;
                        let outcome = g.decider.decide_blocking(
                            &g.runtime,
                            &g.asker,
                            call.intent.clone(),
                            &span,
                        );
                        let next = io.gateway.lock().expect("gateway").decided(call, outcome);
                        io.act(next);
                    });
                }
                Action::Screen(listing) => {
                    let io = self.clone();
                    std::thread::spawn(move || {
                        let denied = listing
                            .intents
                            .iter()
                            .filter(|(_, intent)| {
                                let g = &io.gate;
                                g.decider.denies_blocking(&g.runtime, &g.asker, intent)
                            })
                            .map(|(name, _)| name.clone())
                            .collect();
                        let next = io
                            .gateway
                            .lock()
                            .expect("gateway")
                            .screened(listing, &denied);
                        io.act(next);
                    });
                }
            }
        }
    }
}

/// Writes each line it is sent, newline-terminated and flushed, until it is
/// sent `None` or every sender is gone; then `out` is dropped (for the
/// server: the end of its input).
fn writer(
    out: impl Write + Send + 'static,
    lines: mpsc::Receiver<Option<String>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::new(out);
        for line in lines.iter().map_while(|l| l) {
            let sent = out
                .write_all(line.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
            if sent.is_err() {
                break;
            }
        }
    })
}

/// Feeds each non-empty line of `input` to `handle` until it ends.
fn reader(input: impl Read, mut handle: impl FnMut(&str)) {
    for line in BufReader::new(input).lines() {
        match line {
            Ok(l) if l.trim().is_empty() => {}
            Ok(l) => handle(&l),
            Err(_) => break,
        }
    }
}

fn serve(command: &[String], gateway: Gateway, gate: Arc<Asking>) -> Result<ExitCode> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the MCP server {:?}", command[0]))?;
    let server_in = child.stdin.take().expect("piped");
    let server_out = child.stdout.take().expect("piped");
    let (to_client, client_lines) = mpsc::channel::<Option<String>>();
    let (to_server, server_lines) = mpsc::channel::<Option<String>>();
    let client_writer = writer(std::io::stdout(), client_lines);
    let server_writer = writer(server_in, server_lines);
    let io = Io {
        gateway: Arc::new(Mutex::new(gateway)),
        client: to_client,
        server: to_server,
        gate,
    };
    let from_server = {
        let io = io.clone();
        std::thread::spawn(move || {
            reader(server_out, |line| {
                let actions = io.gateway.lock().expect("gateway").from_server(line);
                io.act(actions);
            });
        })
    };
    // The client's input until it closes; then the server's input is
    // closed (decisions still in flight are not sent on), the server ends,
    // and what it said last reaches the client.
    reader(std::io::stdin(), |line| {
        let actions = io.gateway.lock().expect("gateway").from_client(line);
        io.act(actions);
    });
    let _ = io.server.send(None);
    let _ = server_writer.join();
    let status = child.wait().context("waiting for the MCP server")?;
    let _ = from_server.join();
    let _ = io.client.send(None);
    let _ = client_writer.join();
    Ok(ExitCode::from(
        u8::try_from(status.code().unwrap_or(1)).unwrap_or(1),
    ))
}
