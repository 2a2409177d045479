//! `tollgate-bench cerbos`: the same load against Cerbos, the peer issue 31
//! measures the gate against.
//!
//! Starts Cerbos (`bench/cerbos`, installed by `scripts/install-bench-deps.sh`)
//! on a fresh directory: a resource policy with the example Rego policy's
//! meaning for a transfer (the actor approved for payments, a positive
//! amount, at most the threshold), its decision log on (the `local` audit
//! backend, written asynchronously). Then drives `POST /api/check/resources`
//! with the same closed loop as `tollgate-bench gate`: the same agent, the
//! same permitted transfer, a new request id each time. Cerbos signs
//! nothing, keeps no Merkle log and answers before its audit entry is
//! durable; the gate does all three before it answers.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::gate::{load, print_header, Cpu, Target};

/// Arguments.
#[derive(clap::Args)]
pub(crate) struct CerbosArgs {
    /// The cerbos binary. Default: the one `make bench` installs under
    /// ~/.cache/tollgate/cerbos.
    #[arg(long)]
    cerbos_bin: Option<std::path::PathBuf>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Closed-loop runs at these connection counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
}

/// The example policy's meaning for `payments`/`transfer`, in Cerbos: the
/// principal's attributes stand for the bundle's `data.actors` entry.
const POLICY: &str = r#"apiVersion: api.cerbos.dev/v1
resourcePolicy:
  version: default
  resource: payments
  rules:
    - actions: ["transfer"]
      effect: EFFECT_ALLOW
      roles: ["agent"]
      condition:
        match:
          all:
            of:
              - expr: P.attr.approved == true
              - expr: '"payments" in P.attr.surfaces'
              - expr: type(R.attr.amount) == int || type(R.attr.amount) == double
              - expr: R.attr.amount > 0
              - expr: R.attr.amount <= 10000
"#;

/// A check of the permitted transfer `tollgate-bench gate` decides.
fn body(run: u32, n: u64) -> Vec<u8> {
    check(run, n, 500)
}

fn check(run: u32, n: u64, amount: u64) -> Vec<u8> {
    format!(
        r#"{{"requestId":"bench-{run}-{n}","principal":{{"id":"agent-treasury","roles":["agent"],"attr":{{"approved":true,"surfaces":["payments"]}}}},"resources":[{{"actions":["transfer"],"resource":{{"kind":"payments","id":"bench-{run}-{n}","attr":{{"amount":{amount},"to":"acct-9","ticket":"OPS-1"}}}}}}]}}"#
    )
    .into_bytes()
}

pub(crate) fn run(args: CerbosArgs) -> Result<()> {
    let bin = match args.cerbos_bin {
        Some(b) => b,
        None => default_bin()?,
    };
    let server = Cerbos::start(&bin)?;
    let addr = server.addr.clone();
    // The policy decides as the gate's example does: this request allowed,
    // one over the threshold not.
    let effect = |amount: u64| -> Result<String> {
        let answer: serde_json::Value = ureq::post(&format!("http://{addr}/api/check/resources"))
            .set("content-type", "application/json")
            .send_bytes(&check(0, amount, amount))?
            .into_json()?;
        Ok(answer["results"][0]["actions"]["transfer"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    };
    if effect(500)? != "EFFECT_ALLOW" || effect(20_000)? != "EFFECT_DENY" {
        bail!("Cerbos does not decide as the example policy does");
    }
    println!(
        "tollgate-bench cerbos against {} ({}), {} s per row",
        server.addr,
        bin.display(),
        args.duration
    );
    println!();
    print_header("cerbos cpu µs");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let target = Target {
        path: "/api/check/resources",
        auth: None,
        body,
    };
    let pids = [server.child.id()];
    for conns in args.connections {
        let before = Cpu::sample(&pids);
        let r = rt.block_on(load(
            std::slice::from_ref(&server.addr),
            &target,
            conns,
            None,
            Duration::from_secs(args.duration),
            std::process::id(),
        ))?;
        let decisions = r.latencies_us.len() as u64;
        let cpu = Cpu::sample(&pids).since(&before, decisions);
        r.print("closed", conns, None, None, cpu);
    }
    println!();
    println!("cerbos cpu µs: the Cerbos process's CPU time (user + system) per decision answered.");
    Ok(())
}

/// The Cerbos binary `make bench` installs (scripts/install-bench-deps.sh).
pub(crate) fn default_bin() -> Result<std::path::PathBuf> {
    Ok(
        std::path::PathBuf::from(std::env::var("HOME").context("HOME")?)
            .join(".cache/tollgate/cerbos/node_modules/@cerbos/cerbos-linux-x64/cerbos-linux-x64"),
    )
}

/// Cerbos on a fresh directory; killed on drop.
pub(crate) struct Cerbos {
    pub(crate) child: Child,
    pub(crate) addr: String,
    _dir: tempfile::TempDir,
}

impl Cerbos {
    pub(crate) fn start(bin: &std::path::Path) -> Result<Cerbos> {
        if !bin.exists() {
            bail!(
                "no Cerbos at {} (make bench installs it: scripts/install-bench-deps.sh)",
                bin.display()
            );
        }
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("policies"))?;
        std::fs::write(dir.path().join("policies/payments.yaml"), POLICY)?;
        let port = || -> Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (http, grpc) = (port()?, port()?);
        let config = format!(
            "server:\n  httpListenAddr: \"127.0.0.1:{http}\"\n  grpcListenAddr: \"127.0.0.1:{grpc}\"\n\
             storage:\n  driver: disk\n  disk:\n    directory: {policies}\n    watchForChanges: false\n\
             audit:\n  enabled: true\n  accessLogsEnabled: false\n  decisionLogsEnabled: true\n  backend: local\n  local:\n    storagePath: {audit}\n",
            policies = dir.path().join("policies").display(),
            audit = dir.path().join("audit").display(),
        );
        std::fs::write(dir.path().join("config.yaml"), config)?;
        let child = Command::new(bin)
            .arg("server")
            .arg(format!(
                "--config={}",
                dir.path().join("config.yaml").display()
            ))
            .arg("--log-level=error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let server = Cerbos {
            child,
            addr: format!("127.0.0.1:{http}"),
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            let health = ureq::get(&format!("http://{}/_cerbos/health", server.addr)).call();
            if health.is_ok() {
                return Ok(server);
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("Cerbos did not answer /_cerbos/health within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Cerbos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
