//! Prometheus metrics, text exposition format 0.0.4, kept in atomics.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use protocol::Decision;

/// A histogram with fixed upper bounds.
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            self.counts[i].fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((v * 1e6) as u64, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Bucket bounds for durations, in seconds.
const SECONDS: &[f64] = &[
    0.000_25, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The gate's metrics.
pub struct Metrics {
    decisions: [AtomicU64; 3],
    replayed: AtomicU64,
    rejected: AtomicU64,
    timeouts: AtomicU64,
    internal: AtomicU64,
    conflicts: AtomicU64,
    unauthorized: AtomicU64,
    unavailable: AtomicU64,
    overloaded: AtomicU64,
    latency: Histogram,
    batch: Histogram,
    write: Histogram,
    /// Decisions evaluated under a shadow policy too: [active][shadow].
    shadow: [[AtomicU64; 3]; 3],
    /// State records refused because the log does not back them, by kind.
    refused: [AtomicU64; 4],
    /// Policy bundles replay compiled (the rest came from its cache).
    replay_compiles: AtomicU64,
    /// Evaluations that needed more than the inline slice.
    slow_evaluations: AtomicU64,
    /// Rego evaluation processes started.
    eval_processes_started: AtomicU64,
    /// Evaluations that ended their process, by cause.
    eval_process_failures: [AtomicU64; 3],
    /// Wall-clock nanoseconds new decisions spent in each [`Stage`].
    stage_nanos: [AtomicU64; Stage::ALL.len()],
}

/// A stage of a new decision's pipeline, timed for
/// `tollgate_decision_stage_seconds_total{stage}` (wall clock: waiting
/// included, so the stages of one decision add up to its latency inside the
/// pipeline).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Stage {
    /// Strict parse and validation of the request.
    Validate,
    /// The idempotency lookup and the surface contract's check.
    Lookup,
    /// Binding the policy and derived context, and the evaluation.
    Evaluate,
    /// Building and signing the receipt.
    Sign,
    /// The log append, until the entry is durable and its proof is made.
    Commit,
    /// Counters, approvals and the answer.
    Answer,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub(crate) const ALL: [Stage; 6] = [
        Stage::Validate,
        Stage::Lookup,
        Stage::Evaluate,
        Stage::Sign,
        Stage::Commit,
        Stage::Answer,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::Validate => "validate",
            Stage::Lookup => "lookup",
            Stage::Evaluate => "evaluate",
            Stage::Sign => "sign",
            Stage::Commit => "commit",
            Stage::Answer => "answer",
        }
    }
}

/// What kind of state record was refused because the log does not back it
/// (`tollgate_state_records_refused_total{kind}`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Refused {
    /// A vote an approval record names.
    Approval,
    /// A caller record.
    Caller,
    /// The active or shadow policy pointer.
    Policy,
    /// The gate's governance snapshot.
    Snapshot,
}

impl Refused {
    const ALL: [Refused; 4] = [
        Refused::Approval,
        Refused::Caller,
        Refused::Policy,
        Refused::Snapshot,
    ];

    fn label(self) -> &'static str {
        match self {
            Refused::Approval => "approval",
            Refused::Caller => "caller",
            Refused::Policy => "policy",
            Refused::Snapshot => "snapshot",
        }
    }
}

/// Why an evaluation process ended an evaluation (`tollgate_eval_process_failures_total{cause}`).
#[derive(Clone, Copy, Debug)]
pub(crate) enum EvalFailure {
    /// Past `eval_memory_mb`.
    Memory,
    /// Past the time limit.
    Time,
    /// Anything else.
    Other,
}

impl EvalFailure {
    const ALL: [EvalFailure; 3] = [EvalFailure::Memory, EvalFailure::Time, EvalFailure::Other];

    fn label(self) -> &'static str {
        match self {
            EvalFailure::Memory => "memory",
            EvalFailure::Time => "time",
            EvalFailure::Other => "other",
        }
    }
}

/// What `/metrics` reads at scrape time rather than counts.
pub(crate) struct Gauges {
    /// Entries in the latest checkpoint.
    pub log_size: u64,
    /// Decision and replay requests admitted and not yet answered.
    pub pending: usize,
    /// Whether Rego evaluates in worker processes (their families are shown).
    pub workers: bool,
    /// With witnesses: whether this gate pushes checkpoints to them.
    pub witness_pusher: Option<bool>,
    /// With approval webhooks: events delivered, failed, dropped.
    pub webhooks: Option<[u64; 3]>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            decisions: Default::default(),
            replayed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            internal: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            overloaded: AtomicU64::new(0),
            latency: Histogram::new(SECONDS),
            batch: Histogram::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0]),
            write: Histogram::new(SECONDS),
            shadow: Default::default(),
            refused: Default::default(),
            replay_compiles: AtomicU64::new(0),
            slow_evaluations: AtomicU64::new(0),
            eval_processes_started: AtomicU64::new(0),
            eval_process_failures: Default::default(),
            stage_nanos: Default::default(),
        }
    }
}

/// How one `POST /v1/decisions` ended, for the counters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    /// Decided anew, signed and logged.
    Decided {
        decision: Decision,
        /// Appends in the batch that committed it.
        batch_len: usize,
        /// That batch's time from insert to durable.
        write_time: std::time::Duration,
    },
    /// An idempotent retry answered with the original receipt.
    Replayed,
    /// Invalid: nothing evaluated or written.
    Rejected,
    /// The body did not arrive in time: nothing evaluated or written.
    Timeout,
    /// A fault of the gate's (500).
    Internal,
    /// No caller, or one without the decide role: nothing evaluated or written.
    Unauthorized,
    /// The idempotency key was used for another request.
    Conflict,
    /// The log could not commit: no decision claimed.
    Unavailable,
    /// Beyond `max_pending_decisions`: refused before evaluation.
    Overloaded,
}

impl Outcome {
    /// How a request that failed with `e` is counted.
    pub(crate) fn of_error(e: &crate::GateError) -> Outcome {
        use crate::GateError as E;
        match e {
            E::Conflict { .. } => Outcome::Conflict,
            E::Unavailable(_) => Outcome::Unavailable,
            E::Overloaded(_) => Outcome::Overloaded,
            E::Unauthorized(_) | E::Forbidden(_) => Outcome::Unauthorized,
            E::Timeout(_) => Outcome::Timeout,
            E::Internal(_) => Outcome::Internal,
            E::InvalidRequest(_)
            | E::BadInput(_)
            | E::NotFound(_)
            | E::InvalidPolicy(_)
            | E::Redeemed(_) => Outcome::Rejected,
        }
    }
}

fn index(d: Decision) -> usize {
    match d {
        Decision::Permit => 0,
        Decision::Deny => 1,
        Decision::Silence => 2,
    }
}

impl Metrics {
    /// A decision the shadow policy was evaluated for too.
    pub(crate) fn shadow(&self, active: Decision, shadow: Decision) {
        self.shadow[index(active)][index(shadow)].fetch_add(1, Relaxed);
    }

    /// Replay compiled a bundle (not from its cache).
    pub(crate) fn replay_compiled(&self) {
        self.replay_compiles.fetch_add(1, Relaxed);
    }

    /// An evaluation needed more than the inline slice.
    pub(crate) fn slow_evaluation(&self) {
        self.slow_evaluations.fetch_add(1, Relaxed);
    }

    /// A new decision spent `elapsed` in `stage`.
    pub(crate) fn stage(&self, stage: Stage, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.stage_nanos[stage as usize].fetch_add(nanos, Relaxed);
    }

    /// A Rego evaluation process was started.
    pub(crate) fn eval_process_started(&self) {
        self.eval_processes_started.fetch_add(1, Relaxed);
    }

    /// An evaluation ended its process, for `cause`.
    pub(crate) fn eval_process_failed(&self, cause: EvalFailure) {
        self.eval_process_failures[cause as usize].fetch_add(1, Relaxed);
    }

    /// A state record the log does not back was refused.
    pub(crate) fn record_refused(&self, kind: Refused) {
        self.refused[kind as usize].fetch_add(1, Relaxed);
    }

    /// State records of `kind` refused so far.
    #[cfg(test)]
    pub(crate) fn refused(&self, kind: Refused) -> u64 {
        self.refused[kind as usize].load(Relaxed)
    }

    pub(crate) fn record(&self, outcome: &Outcome, seconds: f64) {
        match outcome {
            Outcome::Decided {
                decision,
                batch_len,
                write_time,
            } => {
                self.decisions[index(*decision)].fetch_add(1, Relaxed);
                self.batch.observe(*batch_len as f64);
                self.write.observe(write_time.as_secs_f64());
                self.latency.observe(seconds);
            }
            Outcome::Replayed => {
                self.replayed.fetch_add(1, Relaxed);
                self.latency.observe(seconds);
            }
            Outcome::Rejected => drop(self.rejected.fetch_add(1, Relaxed)),
            Outcome::Timeout => drop(self.timeouts.fetch_add(1, Relaxed)),
            Outcome::Internal => drop(self.internal.fetch_add(1, Relaxed)),
            Outcome::Conflict => drop(self.conflicts.fetch_add(1, Relaxed)),
            Outcome::Unauthorized => drop(self.unauthorized.fetch_add(1, Relaxed)),
            Outcome::Unavailable => drop(self.unavailable.fetch_add(1, Relaxed)),
            Outcome::Overloaded => drop(self.overloaded.fetch_add(1, Relaxed)),
        }
    }

    /// The exposition text: every family of the gate, the counted ones and
    /// the `gauges` read now.
    pub(crate) fn render(&self, gauges: &Gauges) -> String {
        let log_size = gauges.log_size;
        let mut out = String::new();
        out.push_str(
            "# HELP tollgate_decisions_total Decisions signed and logged, by outcome.\n\
             # TYPE tollgate_decisions_total counter\n",
        );
        for (i, d) in ["PERMIT", "DENY", "SILENCE"].iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_decisions_total{{decision=\"{d}\"}} {}",
                self.decisions[i].load(Relaxed)
            );
        }
        out.push_str(
            "# HELP tollgate_requests_total Decision requests not decided anew, by result.\n\
             # TYPE tollgate_requests_total counter\n",
        );
        for (result, c) in [
            ("replayed", &self.replayed),
            ("invalid", &self.rejected),
            ("timeout", &self.timeouts),
            ("internal", &self.internal),
            ("conflict", &self.conflicts),
            ("unauthorized", &self.unauthorized),
            ("unavailable", &self.unavailable),
            ("overloaded", &self.overloaded),
        ] {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{result=\"{result}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_state_records_refused_total State records refused because the log \
             does not back them (written into the store by anyone but a gate).\n\
             # TYPE tollgate_state_records_refused_total counter"
        );
        for kind in Refused::ALL {
            let _ = writeln!(
                out,
                "tollgate_state_records_refused_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.refused[kind as usize].load(Relaxed)
            );
        }
        self.latency.render(
            &mut out,
            "tollgate_decision_seconds",
            "Time from request to durable, proven decision.",
        );
        self.batch.render(
            &mut out,
            "tollgate_log_batch_size",
            "Appends in the batch that committed each decision.",
        );
        self.write.render(
            &mut out,
            "tollgate_log_write_seconds",
            "Log write of the batch that committed each decision: from its insert until the fsync that covered it returned.",
        );
        out.push_str(
            "# HELP tollgate_shadow_decisions_total Evaluations under the shadow policy beside \
             the active one, by both decisions (equal: they agree).\n\
             # TYPE tollgate_shadow_decisions_total counter\n",
        );
        let names = ["PERMIT", "DENY", "SILENCE"];
        for (a, row) in self.shadow.iter().enumerate() {
            for (s, c) in row.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tollgate_shadow_decisions_total{{active=\"{}\",shadow=\"{}\"}} {}",
                    names[a],
                    names[s],
                    c.load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_log_size Entries in the log's latest checkpoint.\n\
             # TYPE tollgate_log_size gauge\ntollgate_log_size {log_size}"
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_replay_compiles_total Policy bundles replay compiled (the rest came from its cache).\n\
             # TYPE tollgate_replay_compiles_total counter\ntollgate_replay_compiles_total {}",
            self.replay_compiles.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_slow_evaluations_total Evaluations that needed more than the 1 ms slice on an HTTP thread and ran again on an evaluation thread.\n\
             # TYPE tollgate_slow_evaluations_total counter\ntollgate_slow_evaluations_total {}",
            self.slow_evaluations.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP tollgate_decision_stage_seconds_total Wall-clock time new decisions spent in each stage of the pipeline (waiting included).\n\
             # TYPE tollgate_decision_stage_seconds_total counter"
        );
        for stage in Stage::ALL {
            let _ = writeln!(
                out,
                "tollgate_decision_stage_seconds_total{{stage=\"{}\"}} {}",
                stage.label(),
                self.stage_nanos[stage as usize].load(Relaxed) as f64 / 1e9
            );
        }
        if gauges.workers {
            let _ = writeln!(
                out,
                "# HELP tollgate_eval_processes_started_total Rego evaluation processes started (eval_memory_mb).\n\
                 # TYPE tollgate_eval_processes_started_total counter\n\
                 tollgate_eval_processes_started_total {}\n\
                 # HELP tollgate_eval_process_failures_total Evaluations that ended their process: past eval_memory_mb, past the time limit, anything else.\n\
                 # TYPE tollgate_eval_process_failures_total counter",
                self.eval_processes_started.load(Relaxed)
            );
            for cause in EvalFailure::ALL {
                let _ = writeln!(
                    out,
                    "tollgate_eval_process_failures_total{{cause=\"{}\"}} {}",
                    cause.label(),
                    self.eval_process_failures[cause as usize].load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP tollgate_decisions_pending Decision and replay requests admitted and not yet answered (at most max_pending_decisions).\n\
             # TYPE tollgate_decisions_pending gauge\ntollgate_decisions_pending {}",
            gauges.pending
        );
        let spans = telemetry::counts();
        let _ = writeln!(
            out,
            "# HELP tollgate_otel_spans_total OpenTelemetry spans: exported, dropped (the export \
             queue was full; a decision never waits for it) or failed (the collector refused them \
             or could not be reached).\n# TYPE tollgate_otel_spans_total counter"
        );
        for (result, n) in [
            ("exported", spans.exported),
            ("dropped", spans.dropped),
            ("failed", spans.failed),
        ] {
            let _ = writeln!(out, "tollgate_otel_spans_total{{result=\"{result}\"}} {n}");
        }
        if let Some(counts) = gauges.webhooks {
            let _ = writeln!(
                out,
                "# HELP tollgate_webhook_events_total Approval webhook deliveries: delivered (a 2xx), \
                 failed (every retry refused or unreachable) or dropped (the queue was full; a \
                 decision never waits for it).\n# TYPE tollgate_webhook_events_total counter"
            );
            for (result, n) in ["delivered", "failed", "dropped"].iter().zip(counts) {
                let _ = writeln!(
                    out,
                    "tollgate_webhook_events_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        if let Some(pushing) = gauges.witness_pusher {
            let _ = writeln!(
                out,
                "# HELP tollgate_witness_pusher 1 if this gate pushes checkpoints to the witnesses (on a shared log, the holder of the push lease).\n\
                 # TYPE tollgate_witness_pusher gauge\ntollgate_witness_pusher {}",
                u8::from(pushing)
            );
        }
        out
    }
}
