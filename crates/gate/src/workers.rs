//! Rego evaluations in memory-limited processes (`eval_memory_mb`).
//!
//! regorus cannot fail an allocation gracefully, and one builtin call can
//! build a large value from a short policy (`sprintf("%0500000000d", [1])`;
//! or a few rules each doubling a string): evaluated in the gate, such a
//! policy takes the gate's memory or aborts the gate. So the gate evaluates Rego in worker
//! processes (`tollgate eval-worker`, this module's [`worker_main`]) whose
//! writable memory is capped (`RLIMIT_DATA`: what the worker uses once
//! started, plus `eval_memory_mb`). Past the cap an allocation fails and
//! the worker aborts; the gate answers SILENCE, naming the cause, and
//! starts another worker for the next evaluation. The gate also stops a
//! worker still running past the time limit (a single long builtin call
//! that regorus's cooperative timer does not interrupt). Cedar evaluates in
//! time and memory linear in its policies and input and stays in the gate.
//!
//! Each worker compiles the versions it is asked to evaluate (the gate sends
//! the published archive the first time; the worker checks its digest) and
//! keeps the last [`WORKER_VERSIONS`]. One evaluation at a time per worker;
//! at most `eval_threads` workers.
//!
//! Wire format, both ways over the worker's stdin and stdout: frames of
//! `header length: u32 ‖ body length: u32` (little-endian), a JSON header
//! ([`Ask`] from the gate, [`Answer`] from the worker), then the body: the
//! [`EvalInput`] or the bundle archive from the gate, the [`Evaluation`]
//! from the worker.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::{Bundle, CompiledPolicy, EvalInput, Evaluation};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Semaphore;

use crate::active::ActivePolicy;
use crate::metrics::EvalFailure;

/// Compiled versions a worker keeps (the active, the shadow and a few
/// replayed ones), least recently used dropped first.
pub const WORKER_VERSIONS: usize = 10;

/// The largest header either side accepts.
const MAX_HEADER: usize = 64 << 10;
/// The largest body a worker accepts: a bundle archive is at most 16 MiB.
const MAX_ASK_BODY: usize = 32 << 20;
/// The largest body the gate accepts: an evaluation (decision and reason).
const MAX_ANSWER_BODY: usize = 4 << 20;
/// How long a worker may take to compile a version it is sent.
const LOAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long past the evaluation time limit the gate waits before it stops
/// a worker (regorus's own timer normally ends the evaluation first).
const GRACE: Duration = Duration::from_millis(100);

/// What the gate asks a worker.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Ask {
    /// Evaluate the body (an [`EvalInput`]) under `version`.
    Eval {
        /// The policy version.
        version: String,
    },
    /// Compile the body (the bundle archive of `version`).
    Load {
        /// The policy version: the archive's digest must be it.
        version: String,
        /// The evaluation time limit.
        time_limit_ms: u64,
    },
}

/// A worker's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    /// Done; after `eval` the body is the [`Evaluation`].
    Ok,
    /// `eval` of a version the worker does not hold: send `load` first.
    UnknownVersion,
    /// `load` failed.
    Error {
        /// Why.
        message: String,
    },
}

/// The worker process: caps its writable memory at what it uses now plus
/// `memory_mb` MiB, then answers frames on stdin until it closes.
///
/// # Errors
///
/// The limit cannot be set, or stdin/stdout fail or carry a malformed frame.
pub fn worker_main(memory_mb: u64) -> std::io::Result<()> {
    let base = vm_data_bytes()?;
    let cap = base.saturating_add(memory_mb.saturating_mul(1 << 20));
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_DATA, cap, cap)
        .map_err(std::io::Error::other)?;
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    // Most recently used last.
    let mut compiled: Vec<(String, CompiledPolicy)> = Vec::new();
    while let Some((ask, body)) = read_frame(&mut input, MAX_ASK_BODY)? {
        let ask: Ask = serde_json::from_slice(&ask).map_err(std::io::Error::other)?;
        let (answer, body) = match ask {
            Ask::Eval { version } => match compiled.iter().position(|(v, _)| *v == version) {
                None => (Answer::UnknownVersion, Vec::new()),
                Some(at) => {
                    let hit = compiled.remove(at);
                    let evaluation = match serde_json::from_slice::<EvalInput>(&body) {
                        Ok(input) => hit.1.decide(&version, &input),
                        Err(e) => Evaluation::silence(format!("evaluation input: {e}")),
                    };
                    compiled.push(hit);
                    let body = serde_json::to_vec(&evaluation).map_err(std::io::Error::other)?;
                    (Answer::Ok, body)
                }
            },
            Ask::Load {
                version,
                time_limit_ms,
            } => match load(&body, &version, time_limit_ms) {
                Ok(policy) => {
                    compiled.retain(|(v, _)| *v != version);
                    if compiled.len() >= WORKER_VERSIONS {
                        compiled.remove(0);
                    }
                    compiled.push((version, policy));
                    (Answer::Ok, Vec::new())
                }
                Err(message) => (Answer::Error { message }, Vec::new()),
            },
        };
        let header = serde_json::to_vec(&answer).map_err(std::io::Error::other)?;
        output.write_all(&frame(&header, &body))?;
        output.flush()?;
    }
    Ok(())
}

/// Compiles an archive sent by the gate, refusing one that is not `version`.
fn load(archive: &[u8], version: &str, time_limit_ms: u64) -> Result<CompiledPolicy, String> {
    let bundle = Bundle::from_tar_gz(archive, None).map_err(|e| e.to_string())?;
    if bundle.version() != version {
        return Err(format!(
            "the archive is {}, not {version}",
            bundle.version()
        ));
    }
    Ok(CompiledPolicy::compile(&bundle)
        .map_err(|e| e.to_string())?
        .with_time_limit(Duration::from_millis(time_limit_ms)))
}

/// This process's private writable memory (`VmData`), in bytes.
fn vm_data_bytes() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| std::io::Error::other("/proc/self/status has no VmData"))
}

/// A whole frame in one buffer, so sending one is one system call.
fn frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + header.len() + body.len());
    frame.extend(
        u32::try_from(header.len())
            .expect("small header")
            .to_le_bytes(),
    );
    frame.extend(
        u32::try_from(body.len())
            .expect("body under 4 GiB")
            .to_le_bytes(),
    );
    frame.extend(header);
    frame.extend(body);
    frame
}

fn frame_lengths(prefix: [u8; 8], max_body: usize) -> std::io::Result<(usize, usize)> {
    let [h0, h1, h2, h3, b0, b1, b2, b3] = prefix;
    let header = u32::from_le_bytes([h0, h1, h2, h3]) as usize;
    let body = u32::from_le_bytes([b0, b1, b2, b3]) as usize;
    if header > MAX_HEADER || body > max_body {
        return Err(std::io::Error::other(format!(
            "frame of {header} + {body} bytes is over the limit"
        )));
    }
    Ok((header, body))
}

/// One frame, or `None` at a clean end of input.
fn read_frame(r: &mut impl Read, max_body: usize) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut prefix = [0; 8];
    match r.read_exact(&mut prefix) {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let (h, b) = frame_lengths(prefix, max_body)?;
    let (mut header, mut body) = (vec![0; h], vec![0; b]);
    r.read_exact(&mut header)?;
    r.read_exact(&mut body)?;
    Ok(Some((header, body)))
}

/// A running worker, idle between evaluations.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why a worker's evaluation failed.
enum Failure {
    /// It did not answer within this (the gate stops it).
    Time(Duration),
    /// Its pipe failed or carried garbage (it may have aborted).
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl Worker {
    async fn ask(
        &mut self,
        ask: &Ask,
        body: &[u8],
        within: Duration,
    ) -> Result<(Answer, Vec<u8>), Failure> {
        let exchange = async {
            let header = serde_json::to_vec(ask).map_err(std::io::Error::other)?;
            self.stdin.write_all(&frame(&header, body)).await?;
            let mut prefix = [0; 8];
            self.stdout.read_exact(&mut prefix).await?;
            let (h, b) = frame_lengths(prefix, MAX_ANSWER_BODY)?;
            let (mut header, mut body) = (vec![0; h], vec![0; b]);
            self.stdout.read_exact(&mut header).await?;
            self.stdout.read_exact(&mut body).await?;
            let answer = serde_json::from_slice(&header).map_err(std::io::Error::other)?;
            Ok::<_, std::io::Error>((answer, body))
        };
        match tokio::time::timeout(within, exchange).await {
            Err(_) => Err(Failure::Time(within)),
            Ok(r) => Ok(r?),
        }
    }

    /// Compiles `policy` in this worker: `Ok(Err)` says why it does not.
    async fn load(
        &mut self,
        policy: &ActivePolicy,
        limit: Duration,
    ) -> Result<Result<(), String>, Failure> {
        let load = Ask::Load {
            version: policy.version.clone(),
            time_limit_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        };
        match self.ask(&load, &policy.archive, LOAD_TIMEOUT).await? {
            (Answer::Ok, _) => Ok(Ok(())),
            (Answer::Error { message }, _) => Ok(Err(message)),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// `policy`'s decision on `input`, loading the version first if this
    /// worker does not hold it.
    async fn decide(
        &mut self,
        policy: &ActivePolicy,
        input: &[u8],
        limit: Duration,
    ) -> Result<Evaluation, Failure> {
        let eval = Ask::Eval {
            version: policy.version.clone(),
        };
        let mut answer = self.ask(&eval, input, limit + GRACE).await?;
        if let (Answer::UnknownVersion, _) = answer {
            if let Err(message) = self.load(policy, limit).await? {
                return Ok(Evaluation::silence(format!(
                    "policy {} does not load in the evaluation process: {message}",
                    policy.version
                )));
            }
            answer = self.ask(&eval, input, limit + GRACE).await?;
        }
        match answer {
            (Answer::Ok, body) => Ok(serde_json::from_slice(&body).map_err(std::io::Error::other)?),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

fn unexpected(answer: &Answer) -> Failure {
    Failure::Io(std::io::Error::other(format!(
        "unexpected answer {answer:?}"
    )))
}

/// The pool of workers.
pub(crate) struct Workers {
    program: std::path::PathBuf,
    memory_mb: u64,
    limit: Duration,
    idle: Mutex<Vec<Worker>>,
    slots: Arc<Semaphore>,
    /// Where starts and failures are counted.
    metrics: Arc<crate::Metrics>,
}

impl Workers {
    /// At most `count` workers running `program eval-worker`, each with
    /// `memory_mb` MiB, evaluations stopped at `limit`.
    pub(crate) fn new(
        program: std::path::PathBuf,
        count: usize,
        memory_mb: u64,
        limit: Duration,
        metrics: Arc<crate::Metrics>,
    ) -> Workers {
        Workers {
            program,
            memory_mb,
            limit,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(count)),
            metrics,
        }
    }

    fn start(&self) -> std::io::Result<Worker> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(["eval-worker", "--memory-mb", &self.memory_mb.to_string()])
            // Nothing of the gate's environment (it may hold secrets) but
            // what loading the program may need.
            .env_clear();
        if let Some(path) = std::env::var_os("LD_LIBRARY_PATH") {
            command.env("LD_LIBRARY_PATH", path);
        }
        let mut child = command
            // mimalloc otherwise maps 1 GiB of arena at start, which the
            // cap would count as used and then not see being filled.
            .env("MIMALLOC_ARENA_RESERVE", "0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        self.metrics.eval_process_started();
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        Ok(Worker {
            child,
            stdin,
            stdout,
        })
    }

    /// Runs `job` holding one of the `eval_threads` slots, as a task of its
    /// own: a caller that stops waiting cannot cut an exchange with a
    /// worker in half. `failed` makes the answer when no job could run.
    async fn in_task<T, F>(
        self: &Arc<Self>,
        job: impl FnOnce(Arc<Workers>) -> F,
        failed: fn(String) -> T,
    ) -> T
    where
        F: std::future::Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return failed("the evaluators are shut down".into());
        };
        let run = job(self.clone());
        tokio::spawn(async move {
            let _slot = slot;
            run.await
        })
        .await
        .unwrap_or_else(|e| failed(format!("the evaluation task failed: {e}")))
    }

    /// `policy`'s decision on `input` in a worker. Never fails: a worker
    /// that cannot start, aborts (out of memory) or runs out of time makes
    /// the evaluation SILENCE, naming the cause.
    pub(crate) async fn decide(
        self: &Arc<Self>,
        policy: Arc<ActivePolicy>,
        input: EvalInput,
    ) -> Evaluation {
        let job = |this: Arc<Workers>| async move { this.decide_now(&policy, &input).await };
        self.in_task(job, Evaluation::silence).await
    }

    async fn decide_now(&self, policy: &ActivePolicy, input: &EvalInput) -> Evaluation {
        let body = match serde_json::to_vec(input) {
            Ok(b) => b,
            Err(e) => return Evaluation::silence(format!("evaluation input: {e}")),
        };
        let mut worker = match self.take() {
            Ok(w) => w,
            Err(why) => return Evaluation::silence(why),
        };
        match worker.decide(policy, &body, self.limit).await {
            Ok(evaluation) => {
                self.idle.lock().expect("idle workers").push(worker);
                evaluation
            }
            Err(failure) => Evaluation::silence(self.end(worker, failure).await),
        }
    }

    /// Compiles `policy` in a worker as its first evaluation there would:
    /// `Err` says why it does not load (activation refuses such a policy).
    pub(crate) async fn load(self: &Arc<Self>, policy: Arc<ActivePolicy>) -> Result<(), String> {
        let job = |this: Arc<Workers>| async move {
            let mut worker = this.take()?;
            match worker.load(&policy, this.limit).await {
                Ok(loaded) => {
                    this.idle.lock().expect("idle workers").push(worker);
                    loaded
                }
                Err(failure) => Err(this.end(worker, failure).await),
            }
        };
        self.in_task(job, Err).await
    }

    /// An idle worker, or a new one.
    fn take(&self) -> Result<Worker, String> {
        let idle = self.idle.lock().expect("idle workers").pop();
        // One that ended while idle (killed from outside) is not this
        // evaluation's failure.
        let idle = idle.and_then(|mut w| matches!(w.child.try_wait(), Ok(None)).then_some(w));
        idle.map_or_else(|| self.start(), Ok).map_err(|e| {
            self.metrics.eval_process_failed(EvalFailure::Other);
            format!("cannot start an evaluation process: {e}")
        })
    }

    /// Ends a failed worker and says why it failed.
    async fn end(&self, mut worker: Worker, failure: Failure) -> String {
        let io = match failure {
            Failure::Time(within) => {
                let _ = worker.child.kill().await;
                self.metrics.eval_process_failed(EvalFailure::Time);
                let reason = format!(
                    "the evaluation process did not answer within {} ms; it was stopped",
                    within.as_millis()
                );
                tracing::warn!(%reason, "an evaluation process ended");
                return reason;
            }
            Failure::Io(e) => e,
        };
        // A worker that aborted has closed its pipes: its status says why.
        let status = match tokio::time::timeout(Duration::from_secs(1), worker.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = worker.child.kill().await;
                None
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let reason = match status {
            Some(s) if s.signal() == Some(nix::sys::signal::Signal::SIGABRT as i32) => {
                self.metrics.eval_process_failed(EvalFailure::Memory);
                format!(
                    "the evaluation process aborted, as it does when evaluation needs more than eval_memory_mb ({} MiB)",
                    self.memory_mb
                )
            }
            Some(s) => {
                self.metrics.eval_process_failed(EvalFailure::Other);
                format!("the evaluation process failed ({s}): {io}")
            }
            None => {
                self.metrics.eval_process_failed(EvalFailure::Other);
                format!("the evaluation process failed and was stopped: {io}")
            }
        };
        tracing::warn!(%reason, "an evaluation process ended");
        reason
    }
}
