//! Where evaluations run: on the calling thread for a slice, then on a
//! bounded pool of blocking threads, or (Rego under `eval_memory_mb`) in the
//! evaluation worker processes of `workers.rs`.

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
    /// Where Rego evaluates when `eval_memory_mb` bounds it.
    pub(crate) workers: Option<Arc<crate::workers::Workers>>,
    /// Where slow evaluations are counted.
    metrics: Arc<crate::Metrics>,
}

impl Evaluators {
    pub(crate) fn new(
        threads: usize,
        workers: Option<crate::workers::Workers>,
        metrics: Arc<crate::Metrics>,
    ) -> Evaluators {
        Evaluators {
            slots: Arc::new(Semaphore::new(threads)),
            workers: workers.map(Arc::new),
            metrics,
        }
    }

    /// `policy`, once it has loaded where it will be evaluated: activation
    /// refuses a Rego policy that does not compile within `eval_memory_mb`
    /// (its decisions would all be SILENCE).
    pub(crate) async fn loads(
        &self,
        policy: Arc<ActivePolicy>,
    ) -> Result<Arc<ActivePolicy>, GateError> {
        if let (Some(workers), policy::Engine::Rego) = (&self.workers, policy.compiled.engine()) {
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
        if let (Some(workers), policy::Engine::Rego) = (&self.workers, policy.compiled.engine()) {
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
