//! `tollgate-bench gate`: the gate's load generator.
//!
//! Starts a gate (`tollgate serve` from beside this binary, or `--gate-bin`,
//! on a fresh data directory and port 0) unless `--url` names one, then drives `POST /v1/decisions` over HTTP/1.1
//! keep-alive connections:
//! - closed loop: each connection sends its next request when the last one
//!   is answered;
//! - fixed rate: requests are scheduled at a constant rate across
//!   connections and latency counts from the scheduled time, so a slow
//!   answer cannot hide the queueing behind it (no coordinated omission).
//!
//! It also measures, in the same run, the in-process floor per decision: one
//! policy evaluation plus one Ed25519 receipt signature, no HTTP, no log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use policy::{CompiledPolicy, EvalInput};
use protocol::{policy_derived, DecisionRequest, ReceiptBody};

/// Load generator arguments.
#[derive(clap::Args)]
pub(crate) struct BenchArgs {
    /// A running gate to drive. Default: start one on a fresh temporary data directory.
    #[arg(long)]
    url: Option<String>,
    /// The `tollgate` binary to start. Default: the one beside this binary.
    #[arg(long)]
    gate_bin: Option<std::path::PathBuf>,
    /// Engine of the policy the started gate runs: rego (the example) or cedar.
    #[arg(long, default_value = "rego")]
    policy: String,
    /// Surface contract of the started gate: `example` (the example
    /// contract active: every decision's target and context checked
    /// against its payments schema) or `none`.
    #[arg(long, default_value = "none", value_parser = ["none", "example"])]
    contract: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Closed-loop runs at these connection counts.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<usize>,
    /// Fixed-rate runs at these decisions per second (0 to skip).
    #[arg(long, value_delimiter = ',', default_value = "2000")]
    rate: Vec<u64>,
    /// Connections used by fixed-rate runs.
    #[arg(long, default_value_t = 64)]
    rate_connections: usize,
    /// File with the bearer token of a caller that may decide for the
    /// example actors (`agent-*`). Default with --url: none (give one);
    /// without: the started gate's `demo` caller.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// Where the started gates keep their log: `postgres` (a throwaway
    /// PostgreSQL cluster this run starts), a postgres:// URL (an empty
    /// database), or RocksDB in the data directory (default).
    #[arg(long, value_name = "postgres|URL")]
    log_store: Option<String>,
    /// Gates to start on the one log (more than one needs --log-store);
    /// connections are spread over them round-robin.
    #[arg(long, default_value_t = 1)]
    gates: usize,
}

pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let floor = floor(&args.policy)?;
    if args.gates > 1 && args.log_store.is_none() {
        bail!(
            "--gates {} needs --log-store (gates share a log only in PostgreSQL)",
            args.gates
        );
    }
    let pg = match args.log_store.as_deref() {
        Some("postgres") => Some(testkit::Postgres::start()),
        _ => None,
    };
    let log_store = pg
        .as_ref()
        .map(|p| p.url.clone())
        .or(args.log_store.clone());
    let mut servers = Vec::new();
    let urls = match &args.url {
        Some(u) => vec![u.clone()],
        None => {
            for i in 0..args.gates.max(1) {
                let like = servers.first().map(|s: &Server| s.data.clone());
                let s = Server::start(
                    args.gate_bin.as_deref(),
                    &args.policy,
                    args.contract == "example",
                    log_store.as_deref(),
                    like.as_deref(),
                    &[],
                )
                .with_context(|| format!("starting gate {i}"))?;
                servers.push(s);
            }
            if servers.len() > 1 {
                // The others follow the first one's policy within 250 ms.
                std::thread::sleep(Duration::from_millis(600));
            }
            servers.iter().map(|s| s.url.clone()).collect()
        }
    };
    let token_file = match (&args.token_file, servers.first()) {
        (Some(f), _) => f.clone(),
        (None, Some(s)) => s.data.join("demo.token"),
        (None, None) => bail!("--url needs --token-file: a caller's token that may decide"),
    };
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading the token in {}", token_file.display()))?;
    let target = Target {
        path: "/v1/decisions",
        auth: Some(format!("Bearer {}", token.trim()).into()),
        body,
    };
    let addrs = urls
        .iter()
        .map(|u| {
            Ok(u.strip_prefix("http://")
                .context("--url must be http://host:port")?
                .trim_end_matches('/')
                .to_string())
        })
        .collect::<Result<Vec<String>>>()?;
    let store = match (&pg, &args.log_store) {
        (Some(_), _) => "a throwaway PostgreSQL on this machine",
        (None, Some(_)) => "PostgreSQL",
        (None, None) => "RocksDB",
    };
    println!(
        "tollgate-bench gate against {} ({} policy, contract {}, {} gate(s), log in {store}), {} s per row",
        urls.join(" "),
        args.policy,
        args.contract,
        urls.len(),
        args.duration
    );
    println!(
        "in-process floor (1 thread): evaluation {:.1} µs + receipt signature {:.1} µs = {:.1} µs per decision ({:.0}/s per core)",
        floor.0,
        floor.1,
        floor.0 + floor.1,
        1e6 / (floor.0 + floor.1)
    );
    println!();
    print_header("gate cpu µs");
    let gate_pids: Vec<u32> = servers.iter().map(|s| s.child.id()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(args.duration);
    let run_id = std::process::id();
    let rows = args.connections.iter().map(|&c| ("closed", c, None)).chain(
        args.rate
            .iter()
            .filter(|&&r| r > 0)
            .map(|&r| ("rate", args.rate_connections, Some(r))),
    );
    let mut stages = Vec::new();
    for (mode, conns, rate) in rows {
        let before = (GateCounters::scrape(&urls)?, Cpu::sample(&gate_pids));
        let r = rt.block_on(load(&addrs, &target, conns, rate, duration, run_id))?;
        let after = (GateCounters::scrape(&urls)?, Cpu::sample(&gate_pids));
        let decisions = r.latencies_us.len() as u64;
        r.print(
            mode,
            conns,
            rate,
            Some(after.0.since(before.0)),
            after.1.since(&before.1, decisions),
        );
        stages.push((mode, conns, rate, after.0.stages_since(&before.0)));
    }
    println!();
    println!(
        "{:<7} {:>5} {:>7}  wall-clock µs per new decision in each stage of the gate's pipeline",
        "mode", "conns", "rate"
    );
    for (mode, conns, rate, per_stage) in stages {
        let cells: Vec<String> = STAGES
            .iter()
            .zip(per_stage)
            .map(|(name, us)| format!("{name} {us:.0}"))
            .collect();
        println!(
            "{mode:<7} {conns:>5} {:>7}  {}",
            rate.map_or("-".into(), |r| r.to_string()),
            cells.join(", ")
        );
    }
    println!();
    println!(
        "slow fsync %: decisions committed in a batch that took over 2 ms from its log insert to\n\
         the fsync covering it (the gate's tollgate_log_write_seconds). write µs: the mean of\n\
         that time per decision (PostgreSQL: the batch's insert and commit, holding the head).\n\
         gate cpu µs: the gate processes' CPU time (user + system; their Rego evaluation\n\
         processes included) per decision answered, when this run started them (the\n\
         database's own CPU not included). steal %: of the machine's CPU time, what the\n\
         hypervisor took for others (/proc/stat); on a VM it comes in stalls that show up in\n\
         the tail."
    );
    drop(servers);
    drop(pg);
    Ok(())
}

/// The table's header; `cpu` names the CPU column.
pub(crate) fn print_header(cpu: &str) {
    println!(
        "{:<7} {:>5} {:>7} {:>11} {:>8} {:>8} {:>8} {:>8} {:>7} {:>12} {:>8} {:>11} {:>7}",
        "mode",
        "conns",
        "rate",
        "decisions/s",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "errors",
        "slow fsync %",
        "write µs",
        cpu,
        "steal %"
    );
}

/// µs per evaluation and per receipt signature, one thread.
fn floor(engine: &str) -> Result<(f64, f64)> {
    let bundle = match engine {
        "rego" => gate::example_bundle(),
        "cedar" => gate::example_cedar_bundle(),
        other => bail!("--policy {other:?}: expected rego or cedar"),
    };
    let version = bundle.version();
    let compiled = CompiledPolicy::compile(&bundle)?;
    let request = DecisionRequest::parse(&body(0, 0))?;
    let key = note::SignerKey::generate("bench/gate", note::KeyType::Ed25519)?;
    let ns = 1_764_072_000_000_000_000;
    let at = protocol::format_rfc3339_ns(ns);
    let actor = compiled.actor_attributes(request.actor().id());
    let input = EvalInput {
        request: request.to_value(),
        derived: policy_derived(
            &at,
            ns,
            &protocol::receipt_derived(actor.clone(), "bench", "token"),
        ),
    };
    let n = 2000;
    let t = Instant::now();
    let mut evaluation = None;
    for _ in 0..n {
        evaluation = Some(compiled.decide(&version, &input));
    }
    let eval_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    let evaluation = evaluation.expect("n > 0");
    let receipt = ReceiptBody {
        format: protocol::RECEIPT_FORMAT.into(),
        receipt_id: request.receipt_id("bench"),
        log: "bench/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: evaluation.decision,
        reason: evaluation.reason,
        policy: None,
        derived: protocol::receipt_derived(actor, "bench", protocol::VIA_TOKEN),
        decided_at: at,
    };
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(receipt.sign(&key)?);
    }
    let sign_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(n);
    Ok((eval_us, sign_us))
}

/// The request body: a permitted transfer with a unique idempotency key, so
/// every request is a new decision and a new log entry.
fn body(run: u32, n: u64) -> Vec<u8> {
    format!(
        r#"{{"actor":{{"id":"agent-treasury","kind":"agent"}},"surface":"payments","action":"transfer","target":{{"amount":500,"to":"acct-9"}},"context":{{"ticket":"OPS-1"}},"idempotency_key":"bench-{run}-{n}"}}"#
    )
    .into_bytes()
}

pub(crate) struct Results {
    pub(crate) latencies_us: Vec<u32>,
    errors: u64,
    elapsed: Duration,
}

impl Results {
    /// One row of the table [`print_header`] starts; `writes` is the log's
    /// (slow fsync %, write µs), if the server has one.
    pub(crate) fn print(
        mut self,
        mode: &str,
        conns: usize,
        rate: Option<u64>,
        writes: Option<(f64, f64)>,
        cpu: (Option<f64>, Option<f64>),
    ) {
        self.latencies_us.sort_unstable();
        let q = |p: f64| -> u32 {
            if self.latencies_us.is_empty() {
                return 0;
            }
            let i = ((self.latencies_us.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies_us[i.min(self.latencies_us.len() - 1)]
        };
        let show =
            |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        println!(
            "{:<7} {:>5} {:>7} {:>11.0} {:>8} {:>8} {:>8} {:>8} {:>7} {:>12} {:>8} {:>11} {:>7}",
            mode,
            conns,
            rate.map_or("-".into(), |r| r.to_string()),
            self.latencies_us.len() as f64 / self.elapsed.as_secs_f64(),
            q(0.50),
            q(0.90),
            q(0.99),
            q(0.999),
            self.errors,
            show(writes.map(|w| w.0), 2),
            show(writes.map(|w| w.1), 0),
            show(cpu.0, 0),
            show(cpu.1, 2),
        );
    }
}

/// CPU time counters from /proc, in USER_HZ ticks (100 per second on Linux):
/// the gate process's user + system time, and the machine's total and stolen
/// time. `None` where /proc cannot tell (another OS, or no gate process).
pub(crate) struct Cpu {
    gate: Option<u64>,
    machine: Option<(u64, u64)>,
}

impl Cpu {
    pub(crate) fn sample(gate_pids: &[u32]) -> Cpu {
        // Fields after the parenthesised command name: state is field 3,
        // ppid 4, utime and stime 14 and 15, cutime and cstime (children
        // reaped) 16 and 17.
        let fields = |pid: &str| -> Option<Vec<u64>> {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest = &stat[stat.rfind(')')? + 2..];
            // Signed: tpgid (field 8) is -1 without a terminal.
            rest.split_whitespace()
                .skip(1)
                .take(14)
                .map(|x| x.parse::<i64>().ok().map(|v| v.max(0).unsigned_abs()))
                .collect()
        };
        // The gate's own time and its reaped children's, and the time of
        // its live children (the Rego evaluation processes): a worker
        // replaced during the run moves from one to the other.
        let own = |pid: u32| -> Option<u64> {
            let f = fields(&pid.to_string())?;
            Some(f.get(10)? + f.get(11)? + f.get(12)? + f.get(13)?)
        };
        let children: u64 = std::fs::read_dir("/proc")
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().into_string().ok())
                    .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                    .filter_map(|name| fields(&name))
                    .filter(|f| gate_pids.iter().any(|&p| f.first() == Some(&u64::from(p))))
                    .map(|f| f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0);
        let gate = if gate_pids.is_empty() {
            None
        } else {
            gate_pids
                .iter()
                .map(|&p| own(p))
                .sum::<Option<u64>>()
                .map(|g| g + children)
        };
        let machine = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            // cpu user nice system idle iowait irq softirq steal guest guest_nice
            let f: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .take(8)
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            Some((f.iter().sum(), *f.get(7)?))
        });
        Cpu { gate, machine }
    }

    /// The gate's CPU µs per decision and the steal percentage since `before`.
    pub(crate) fn since(&self, before: &Cpu, decisions: u64) -> (Option<f64>, Option<f64>) {
        let gate = match (self.gate, before.gate) {
            (Some(a), Some(b)) if decisions > 0 => {
                Some(a.saturating_sub(b) as f64 * 10_000.0 / decisions as f64)
            }
            _ => None,
        };
        let steal = match (self.machine, before.machine) {
            (Some((total, steal)), Some((total0, steal0))) if total > total0 => {
                Some(100.0 * steal.saturating_sub(steal0) as f64 / (total - total0) as f64)
            }
            _ => None,
        };
        (gate, steal)
    }
}

/// The gates' counters a row reads, summed over the gates: the
/// `tollgate_log_write_seconds` histogram (decisions counted, those whose
/// batch was durable within 2 ms of its insert, the total time), the time
/// per pipeline stage and the decisions made.
#[derive(Clone, Copy)]
struct GateCounters {
    count: u64,
    within_2ms: u64,
    seconds: f64,
    /// `tollgate_decision_stage_seconds_total`, by [`STAGES`].
    stages: [f64; STAGES.len()],
    /// `tollgate_decisions_total`, summed over decisions.
    decided: f64,
}

/// The stages of `tollgate_decision_stage_seconds_total`, in pipeline order.
const STAGES: [&str; 6] = ["validate", "lookup", "evaluate", "sign", "commit", "answer"];

impl GateCounters {
    fn scrape(urls: &[String]) -> Result<GateCounters> {
        let mut sum = GateCounters {
            count: 0,
            within_2ms: 0,
            seconds: 0.0,
            stages: [0.0; STAGES.len()],
            decided: 0.0,
        };
        for url in urls {
            let text = ureq::get(&format!("{url}/metrics")).call()?.into_string()?;
            let value = |name: &str| -> Result<f64> {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                    .with_context(|| format!("the gate's /metrics has no {name}"))
            };
            sum.count += value("tollgate_log_write_seconds_count")? as u64;
            sum.within_2ms += value("tollgate_log_write_seconds_bucket{le=\"0.002\"}")? as u64;
            sum.seconds += value("tollgate_log_write_seconds_sum")?;
            for (i, stage) in STAGES.iter().enumerate() {
                sum.stages[i] += value(&format!(
                    "tollgate_decision_stage_seconds_total{{stage=\"{stage}\"}}"
                ))?;
            }
            sum.decided += text
                .lines()
                .filter(|l| l.starts_with("tollgate_decisions_total{"))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum::<f64>();
        }
        Ok(sum)
    }

    /// Since `before`: µs per new decision in each stage.
    fn stages_since(&self, before: &GateCounters) -> [f64; STAGES.len()] {
        let n = self.decided - before.decided;
        std::array::from_fn(|i| {
            if n > 0.0 {
                (self.stages[i] - before.stages[i]) * 1e6 / n
            } else {
                0.0
            }
        })
    }

    /// Since `before`: the percent of decisions whose write took over 2 ms,
    /// and the mean write time per decision in µs.
    fn since(self, before: GateCounters) -> (f64, f64) {
        let n = self.count.saturating_sub(before.count);
        let fast = self.within_2ms.saturating_sub(before.within_2ms);
        if n == 0 {
            return (0.0, 0.0);
        }
        (
            100.0 * n.saturating_sub(fast) as f64 / n as f64,
            (self.seconds - before.seconds) * 1e6 / n as f64,
        )
    }
}

async fn connect(addr: &str) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What the load generator sends: `POST path` with `body(run, n)` for the
/// n-th request, and `authorization` if given. A request is answered when
/// the status is 200 and the body is read.
pub(crate) struct Target {
    pub(crate) path: &'static str,
    pub(crate) auth: Option<Arc<str>>,
    pub(crate) body: fn(u32, u64) -> Vec<u8>,
}

/// Runs `conns` connections for `duration`: closed loop, or `rate` per second.
pub(crate) async fn load(
    addrs: &[String],
    target: &Target,
    conns: usize,
    rate: Option<u64>,
    duration: Duration,
    run_id: u32,
) -> Result<Results> {
    static ROW: AtomicU64 = AtomicU64::new(0);
    let first = ROW.fetch_add(1, Ordering::Relaxed) << 40;
    let next = Arc::new(AtomicU64::new(first));
    let errors = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    // Fixed rate: a pacer thread (std sleeps are accurate to tens of µs;
    // tokio timers only to 1 ms) releases request n at start + n/rate into a
    // queue the connections share. Latency counts from that due time.
    let paced = rate.map(|r| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        std::thread::spawn(move || {
            for i in 0.. {
                let due = start + Duration::from_nanos(i * 1_000_000_000 / r);
                if due >= deadline {
                    break;
                }
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if tx.send(due).is_err() {
                    break;
                }
            }
        });
        Arc::new(tokio::sync::Mutex::new(rx))
    });
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let addr = &addrs[c % addrs.len()];
        let mut sender = connect(addr).await?;
        let (next, errors, addr, paced, auth, path, body) = (
            next.clone(),
            errors.clone(),
            addr.clone(),
            paced.clone(),
            target.auth.clone(),
            target.path,
            target.body,
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let due = match &paced {
                    Some(q) => match q.lock().await.recv().await {
                        Some(due) => due,
                        None => break,
                    },
                    None if Instant::now() >= deadline => break,
                    None => Instant::now(),
                };
                let n = next.fetch_add(1, Ordering::Relaxed);
                let mut request = hyper::Request::post(path)
                    .header("host", &addr)
                    .header("content-type", "application/json");
                if let Some(auth) = &auth {
                    request = request.header("authorization", &**auth);
                }
                let request = request
                    .body(Full::new(Bytes::from(body(run_id, n))))
                    .expect("request");
                let ok = match sender.send_request(request).await {
                    Ok(resp) => {
                        let status = resp.status();
                        let body_ok = resp.into_body().collect().await.is_ok();
                        status == hyper::StatusCode::OK && body_ok
                    }
                    Err(_) => false,
                };
                if ok {
                    let us = due.elapsed().as_micros();
                    latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    match connect(&addr).await {
                        Ok(s) => sender = s,
                        Err(_) => break,
                    }
                }
            }
            latencies
        });
    }
    let mut latencies_us = Vec::new();
    while let Some(l) = tasks.join_next().await {
        latencies_us.extend(l?);
    }
    Ok(Results {
        latencies_us,
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// A gate started for the benchmark; killed and its data removed on drop.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) url: String,
    /// Its data directory.
    pub(crate) data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts a gate on a fresh data directory: its log in `log_store` if
    /// given, with the keys, origin and tokens of the gate whose data
    /// directory is `like` if given (another gate on the same log).
    pub(crate) fn start(
        gate_bin: Option<&std::path::Path>,
        policy: &str,
        contract: bool,
        log_store: Option<&str>,
        like: Option<&std::path::Path>,
        env: &[(&str, &str)],
    ) -> Result<Server> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        if let Some(like) = like {
            testkit::copy_gate_identity(like, &data)?;
        }
        let exe = match gate_bin {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()?.with_file_name("tollgate"),
        };
        let mut cmd = Command::new(&exe);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("TOLLGATE_LOG", "warn")
            .env("TOLLGATE_EXAMPLE_CONTRACT", contract.to_string())
            .envs(env.iter().copied());
        if let Some(url) = log_store {
            cmd.env("TOLLGATE_LOG_STORE", url);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the gate {}", exe.display()))?;
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let url = loop {
            let Some(line) = lines.next() else {
                bail!("the gate exited before it listened")
            };
            if let Some(u) = line?.strip_prefix("tollgate listening on ") {
                break u.to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        if policy == "cedar" && like.is_none() {
            let token = std::fs::read_to_string(dir.path().join("data/admin.token"))?;
            let bytes = gate::example_cedar_bundle().to_tar_gz();
            let published = post(
                &format!("{url}/v1/admin/policies"),
                token.trim(),
                "application/gzip",
                &bytes,
            )?;
            let version = published["version"].as_str().unwrap_or_default();
            post(
                &format!("{url}/v1/admin/policies/{version}/activate"),
                token.trim(),
                "application/json",
                b"",
            )?;
        }
        Ok(Server {
            child,
            url,
            data,
            _dir: dir,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An admin API call; the answer's JSON.
fn post(url: &str, token: &str, content_type: &str, body: &[u8]) -> Result<serde_json::Value> {
    match ureq::post(url)
        .set("authorization", &format!("Bearer {token}"))
        .set("content-type", content_type)
        .send_bytes(body)
    {
        Ok(r) => Ok(r.into_json()?),
        Err(ureq::Error::Status(code, r)) => {
            bail!("POST {url}: {code} {}", r.into_string().unwrap_or_default())
        }
        Err(e) => bail!("POST {url}: {e}"),
    }
}
