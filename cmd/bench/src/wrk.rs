//! `tollgate-bench wrk`: the side-by-side issue 31 closes on, with `wrk` (a
//! load generator nobody here wrote, in C: it leaves the servers more of the
//! two cores than this crate's generator does) driving the gate at its
//! defaults (Rego in the gate), the gate with all of Rego in worker
//! processes, the gate on the example Cedar policy, and Cerbos 0.51 deciding
//! the same transfer (`cerbos.rs`). All four run at once (idle, a server
//! takes no CPU) and each connection count is measured on each in turn, so
//! the rows compared are seconds apart: this VM's speed drifts by tens of
//! percent over minutes, without steal to show for it.
//!
//! Each row: decisions/s, wrk's latency percentiles, the server process's
//! CPU time per decision (its evaluation processes included), the machine's
//! steal, and the gate's decisions/s over Cerbos's at those connections. The gate's requests carry idempotency keys of their own
//! (`bench/wrk/decide.lua`), Cerbos's request ids (`bench/wrk/cerbos.lua`).

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::cerbos::{default_bin, Cerbos};
use crate::gate::{Cpu, Server};

const DECIDE_LUA: &str = include_str!("../../../bench/wrk/decide.lua");
const CERBOS_LUA: &str = include_str!("../../../bench/wrk/cerbos.lua");

/// Arguments.
#[derive(clap::Args)]
pub(crate) struct WrkArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Connection counts (wrk uses two threads, one below two connections).
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
    /// The `tollgate` binary. Default: the one beside this binary.
    #[arg(long)]
    gate_bin: Option<std::path::PathBuf>,
    /// The cerbos binary. Default: the one `make bench` installs.
    #[arg(long)]
    cerbos_bin: Option<std::path::PathBuf>,
    /// Rounds: every server measured once per round, rounds one after
    /// another (this VM's speed drifts; compare within a round).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
}

/// An environment variable the gate is started with.
type Setting = (&'static str, &'static str);

/// The gate's configurations measured: name, policy, environment.
const GATES: [(&str, &str, Option<Setting>); 3] = [
    ("gate rego (defaults)", "rego", None),
    (
        "gate rego, process",
        "rego",
        Some(("TOLLGATE_EVAL_ISOLATION", "process")),
    ),
    ("gate cedar", "cedar", None),
];

/// One server the side by side drives, running until dropped.
struct Peer {
    name: &'static str,
    url: String,
    pid: u32,
    /// The gate's `demo` caller's token (Cerbos: none).
    token: Option<String>,
    _running: Box<dyn std::any::Any>,
}

/// What one wrk run reports.
struct Row {
    requests: u64,
    per_second: f64,
    p50_us: f64,
    p99_us: f64,
    failed: u64,
}

/// wrk's duration ("812.00us", "1.20ms", "2.01s") in µs.
fn micros(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        _ => return None,
    })
}

fn parse(out: &str) -> Result<Row> {
    let field = |prefix: &str| -> Option<&str> {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(prefix.split_whitespace().count()))
    };
    let requests = out
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .context("wrk printed no request count")?;
    let non_2xx: u64 = field("Non-2xx or 3xx responses:")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let socket_errors: u64 = out
        .lines()
        .find(|l| l.trim().starts_with("Socket errors:"))
        .map(|l| {
            l.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let failed = non_2xx + socket_errors;
    let all_per_second: f64 = field("Requests/sec:")
        .and_then(|n| n.parse().ok())
        .context("wrk printed no Requests/sec")?;
    Ok(Row {
        requests,
        // Decisions: answers that were not failures.
        per_second: all_per_second * requests.saturating_sub(failed) as f64
            / requests.max(1) as f64,
        p50_us: field("50%")
            .and_then(micros)
            .context("no 50th percentile")?,
        p99_us: field("99%")
            .and_then(micros)
            .context("no 99th percentile")?,
        failed,
    })
}

/// Runs wrk against `url` with `script` (and `env`), measuring `pids`' CPU.
fn wrk(
    url: &str,
    script: &std::path::Path,
    conns: usize,
    secs: u64,
    env: &[(&str, &str)],
    pids: &[u32],
) -> Result<(Row, Cpu, Cpu)> {
    let before = Cpu::sample(pids);
    let out = Command::new("wrk")
        .arg(format!("-t{}", conns.clamp(1, 2)))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .envs(env.iter().copied())
        .output()
        .context("running wrk (make bench installs it: scripts/install-bench-deps.sh)")?;
    let after = Cpu::sample(pids);
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok((parse(&String::from_utf8_lossy(&out.stdout))?, before, after))
}

pub(crate) fn run(args: WrkArgs) -> Result<()> {
    let scripts = tempfile::tempdir()?;
    let (decide, check) = (
        scripts.path().join("decide.lua"),
        scripts.path().join("cerbos.lua"),
    );
    std::fs::write(&decide, DECIDE_LUA)?;
    std::fs::write(&check, CERBOS_LUA)?;
    let cerbos_bin = match args.cerbos_bin {
        Some(b) => b,
        None => default_bin()?,
    };
    println!(
        "tollgate-bench wrk: {} s per row; server cpu µs: the server's CPU time (user + system, its evaluation processes included) per decision",
        args.duration
    );
    // Every server up first, then each connection count measured on each
    // in turn: rows to compare are seconds apart, not minutes (an idle
    // server takes no CPU).
    let mut servers = Vec::new();
    for (name, policy, env) in GATES {
        let server = Server::start(
            args.gate_bin.as_deref(),
            policy,
            false,
            None,
            None,
            env.as_slice(),
        )?;
        servers.push(Peer {
            name,
            url: server.url.clone(),
            pid: server.child.id(),
            token: Some(std::fs::read_to_string(server.data.join("demo.token"))?),
            _running: Box::new(server),
        });
    }
    let cerbos = Cerbos::start(&cerbos_bin)?;
    servers.push(Peer {
        name: "cerbos 0.51",
        url: format!("http://{}", cerbos.addr),
        pid: cerbos.child.id(),
        token: None,
        _running: Box::new(cerbos),
    });
    for round in 1..=args.rounds.max(1) {
        if args.rounds > 1 {
            println!("\nround {round}");
        }
        println!(
            "\n{:<22} {:>5} {:>11} {:>9} {:>9} {:>8} {:>14} {:>7} {:>9}",
            "server",
            "conns",
            "decisions/s",
            "p50 µs",
            "p99 µs",
            "failed",
            "server cpu µs",
            "steal %",
            "vs cerbos"
        );
        for &conns in &args.connections {
            let mut rows = Vec::new();
            for peer in &servers {
                let run = format!("{round}-{conns}");
                let (script, env) = match &peer.token {
                    Some(t) => (
                        &decide,
                        vec![("TOLLGATE_TOKEN", t.trim()), ("TOLLGATE_RUN", run.as_str())],
                    ),
                    None => (&check, Vec::new()),
                };
                let (row, before, after) =
                    wrk(&peer.url, script, conns, args.duration, &env, &[peer.pid])?;
                let (cpu, steal) = after.since(&before, row.requests.saturating_sub(row.failed));
                rows.push((peer.name, row, cpu, steal));
            }
            let peer = rows.last().map_or(0.0, |r| r.1.per_second);
            for (name, row, cpu, steal) in rows {
                let opt = |v: Option<f64>, digits: usize| {
                    v.map_or("-".to_string(), |v| format!("{v:.digits$}"))
                };
                let ratio =
                    (!name.starts_with("cerbos") && peer > 0.0).then(|| row.per_second / peer);
                println!(
                    "{name:<22} {conns:>5} {:>11.0} {:>9.0} {:>9.0} {:>8} {:>14} {:>7} {:>9}",
                    row.per_second,
                    row.p50_us,
                    row.p99_us,
                    row.failed,
                    opt(cpu, 0),
                    opt(steal, 1),
                    ratio.map_or("-".to_string(), |r| format!("{r:.2}x")),
                );
            }
        }
    }
    drop(servers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_wrk_prints() {
        let out = "Running 2s test @ http://127.0.0.1:1\n  2 threads and 4 connections\n  Latency Distribution\n     50%  812.00us\n     75%    1.20ms\n     90%    2.00ms\n     99%    1.01s\n  9349 requests in 2.00s, 18.2MB read\n  Socket errors: connect 0, read 1, write 0, timeout 2\n  Non-2xx or 3xx responses: 3\nRequests/sec:   4674.50\nTransfer/sec:      9.1MB\n";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 9349);
        // Requests/sec less the six failed of 9349.
        assert!((r.per_second - 4674.5 * 9343.0 / 9349.0).abs() < 1e-9);
        assert!((r.p50_us - 812.0).abs() < 1e-9);
        assert!((r.p99_us - 1.01e6).abs() < 1e-3);
        assert_eq!(r.failed, 6);
        assert!(parse("nothing").is_err());
    }
}
