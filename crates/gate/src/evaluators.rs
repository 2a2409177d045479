//! Where evaluations run: on the calling thread for a slice, then on a
//! bounded pool of blocking threads, or (a Rego bundle that refers to an
//! amplifying builtin, or every Rego bundle under `eval_isolation =
//! "process"`) in the evaluation worker processes of `workers.rs`.

use std::sync::Arc;
use std::time::Duration;

use policy::{EvalInput, Evaluation};
use tokio::sync::Semaphore;

use crate::active::ActivePolicy;
use crate::GateError;

/// How long an evaluation may run on a thread that serves HTTP before it is
/// stopped and run again, from the start, on an evaluation thread. Policies
/// take tens of µs; handing every one to another thread would cost about as
/// much again (measured: 8.6k → 6.6k decisions/s at 64 connections).
pub(crate) const INLINE_SLICE: Duration = Duration::from_millis(1);

/// Where evaluations run. First on the calling thread for at most
/// [`INLINE_SLICE`]; one that needs longer runs again on one of at most
/// `eval_threads` blocking threads, so a policy that runs to its time limit
/// stalls neither `/healthz` nor reads. Waiting evaluations queue on the
/// semaphore; how many may wait is bounded by admission (`Gate::admit`).
pub(crate) struct Evaluators {
    slots: Arc<Semaphore>,
    /// Where Rego evaluates when `eval_memory_mb` bounds it and the gate
    /// does not (see [`Evaluators::isolates`]).
    pub(crate) workers: Option<Arc<crate::workers::Workers>>,
    /// Whether a Rego bundle that refers to no amplifying builtin evaluates
    /// in the gate (under the heap limit, or unbounded without workers).
    rego_in_gate: bool,
    /// Where slow evaluations are counted.
    metrics: Arc<crate::Metrics>,
}

impl Evaluators {
    pub(crate) fn new(
        threads: usize,
        workers: Option<crate::workers::Workers>,
        rego_in_gate: bool,
        metrics: Arc<crate::Metrics>,
    ) -> Evaluators {
        Evaluators {
            slots: Arc::new(Semaphore::new(threads)),
            workers: workers.map(Arc::new),
            rego_in_gate,
            metrics,
        }
    }

    /// The worker processes `policy` evaluates in, if it does not evaluate
    /// in the gate: Rego, with workers, and either every Rego bundle goes
    /// to them or this one refers to an amplifying builtin.
    pub(crate) fn isolates(&self, policy: &ActivePolicy) -> Option<&Arc<crate::workers::Workers>> {
        let workers = self.workers.as_ref()?;
        let rego = policy.compiled.engine() == policy::Engine::Rego;
        (rego && (!self.rego_in_gate || policy.compiled.amplifying().is_some())).then_some(workers)
    }

    /// `policy`, once it has loaded where it will be evaluated: activation
    /// refuses a Rego policy that does not compile within `eval_memory_mb`
    /// (its decisions would all be SILENCE).
    pub(crate) async fn loads(
        &self,
        policy: Arc<ActivePolicy>,
    ) -> Result<Arc<ActivePolicy>, GateError> {
        if let Some(workers) = self.isolates(&policy) {
            tracing::info!(
                version = %policy.version,
                why = policy.compiled.amplifying().unwrap_or("eval_isolation = \"process\""),
                "the policy evaluates in worker processes"
            );
            workers.load(policy.clone()).await.map_err(|why| {
                GateError::InvalidPolicy(format!(
                    "policy {} does not load in an evaluation process: {why}",
                    policy.version
                ))
            })?;
        }
        Ok(policy)
    }

    /// `policy`'s decision on `input` (see [`CompiledPolicy::decide`]). The
    /// thread's slot is held until the evaluation ends, even if the caller
    /// stops waiting.
    pub(crate) async fn decide(&self, policy: Arc<ActivePolicy>, input: EvalInput) -> Evaluation {
        if let Some(workers) = self.isolates(&policy) {
            return workers.decide(policy, input).await;
        }
        if let Some(done) =
            policy
                .compiled
                .decide_within(&policy.version, &input, Some(INLINE_SLICE))
        {
            return done;
        }
        self.metrics.slow_evaluation();
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return Evaluation::silence("the evaluators are shut down");
        };
        let run = move || {
            let _slot = slot;
            policy.compiled.decide(&policy.version, &input)
        };
        tokio::task::spawn_blocking(run)
            .await
            .unwrap_or_else(|e| Evaluation::silence(format!("the evaluation thread failed: {e}")))
    }
}
