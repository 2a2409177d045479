//! The dispatcher: a compiled bundle of either engine behind the contract
//! (`contract.rs`), the gate's version rule, panic containment and replay.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::bounds::HeapShare;
use crate::cedar::CedarPolicy;
use crate::contract::{EvalInput, Evaluation};
use crate::rego::RegoPolicy;
use crate::{Bundle, Engine, Error};

/// Replays a recorded decision: checks that `bundle` is the recorded policy
/// version (its content digest equals `version`), compiles it and evaluates
/// the recorded input. A receipt's decision can be re-derived this way long
/// after the fact.
///
/// # Errors
///
/// [`Error::InvalidBundle`] if the bundle is not that version, or any
/// compile error.
pub fn replay(bundle: &Bundle, version: &str, input: &EvalInput) -> Result<Evaluation, Error> {
    let actual = bundle.version();
    if actual != version {
        return Err(Error::InvalidBundle(format!(
            "bundle is version {actual}, the record names {version}"
        )));
    }
    Ok(CompiledPolicy::compile(bundle)?.decide(version, input))
}

/// Replays a receipt: re-evaluates its recorded request and derived context
/// (decision time included) under `bundle`, which must be the version the
/// receipt recorded. A receipt made while no policy was active replays to
/// SILENCE. The gate's `/v1/replay` and `proofcheck replay` both use this.
///
/// # Errors
///
/// [`Error::InvalidReceipt`] if the receipt names a policy and no bundle is
/// given, or its decision time does not parse; as [`replay`] otherwise.
pub fn replay_receipt(
    receipt: &protocol::ReceiptBody,
    bundle: Option<&Bundle>,
) -> Result<Evaluation, Error> {
    let Some(recorded) = &receipt.policy else {
        return Ok(Evaluation::silence("no policy is active"));
    };
    let bundle = bundle.ok_or_else(|| {
        Error::InvalidReceipt(format!(
            "the receipt names policy {}; no bundle given",
            recorded.version
        ))
    })?;
    let input = EvalInput {
        request: receipt.request.clone(),
        derived: receipt
            .policy_derived()
            .map_err(|e| Error::InvalidReceipt(e.to_string()))?,
    };
    replay(bundle, &recorded.version, &input)
}

/// A compiled bundle, shareable across threads.
pub struct CompiledPolicy {
    compiled: Compiled,
    /// The heap it holds, in the evaluation heap limit while it lives.
    heap: HeapShare,
}

enum Compiled {
    /// Rego via regorus.
    Rego(Box<RegoPolicy>),
    /// Cedar via cedar-policy.
    Cedar(Box<CedarPolicy>),
}

impl CompiledPolicy {
    /// Compiles `bundle`, refusing parse and compile errors, a missing
    /// entrypoint, Cedar policies that fail schema validation, and
    /// non-deterministic builtins.
    ///
    /// # Errors
    ///
    /// [`Error::Compile`], [`Error::NonDeterministic`], [`Error::InvalidBundle`].
    pub fn compile(bundle: &Bundle) -> Result<CompiledPolicy, Error> {
        let bytes = bundle.files().values().map(|f| f.len() as u64).sum();
        let (compiled, heap) = HeapShare::measure(bytes, || -> Result<Compiled, Error> {
            Ok(match bundle.manifest().engine {
                Engine::Rego => Compiled::Rego(Box::new(RegoPolicy::compile(bundle)?)),
                Engine::Cedar => Compiled::Cedar(Box::new(CedarPolicy::compile(bundle)?)),
            })
        });
        Ok(CompiledPolicy {
            compiled: compiled?,
            heap,
        })
    }

    /// The heap its compilation kept (modules, data, entities), as the
    /// evaluation heap limit counts it (0 when the allocator does not count).
    #[must_use]
    pub fn heap_bytes(&self) -> u64 {
        self.heap.bytes()
    }

    /// Stops each evaluation at `limit` of wall-clock time instead of
    /// [`EVAL_TIME_LIMIT`]; past it the evaluation is SILENCE. Rego checks
    /// the limit between units of work (see [`RegoPolicy`]); Cedar needs none,
    /// its evaluation always terminates in time linear in the policies.
    #[must_use]
    pub fn with_time_limit(mut self, limit: Duration) -> CompiledPolicy {
        if let Compiled::Rego(p) = &mut self.compiled {
            p.set_time_limit(limit);
        }
        self
    }

    /// The engine.
    #[must_use]
    pub fn engine(&self) -> Engine {
        match &self.compiled {
            Compiled::Rego(_) => Engine::Rego,
            Compiled::Cedar(_) => Engine::Cedar,
        }
    }

    /// Why this policy must be evaluated in a process of its own, if it must:
    /// the first reference to an amplifying builtin (a Rego bundle; see
    /// `bounds.rs`), as "`name` (file line N)". Cedar: never.
    #[must_use]
    pub fn amplifying(&self) -> Option<&str> {
        match &self.compiled {
            Compiled::Rego(p) => p.amplifying(),
            Compiled::Cedar(_) => None,
        }
    }

    /// The attributes the bundle holds for an actor (Rego: `data.actors[id]`;
    /// Cedar: the attributes of entity `Actor::"id"`), for the derived context.
    #[must_use]
    pub fn actor_attributes(&self, actor_id: &str) -> serde_json::Value {
        match &self.compiled {
            Compiled::Rego(p) => p.actor_attributes(actor_id),
            Compiled::Cedar(p) => p.actor_attributes(actor_id),
        }
    }

    /// The gate's rule, then evaluation: a request that pins an
    /// `expected_policy_version` other than `version` (the version this
    /// policy was compiled from) is SILENCE — a caller can never choose a
    /// policy — and anything else is [`CompiledPolicy::evaluate`]. Decisions
    /// and their replays both go through here.
    #[must_use]
    pub fn decide(&self, version: &str, input: &EvalInput) -> Evaluation {
        self.decide_within(version, input, None)
            .expect("without a slice every evaluation ends")
    }

    /// [`CompiledPolicy::decide`] that gives up after `slice` of wall-clock
    /// time if that is shorter than the limit: `None` if the evaluation needs
    /// longer. Only Rego can need longer; Cedar always finishes. The gate
    /// evaluates this way on the threads that serve HTTP, and hands the rare
    /// policy that needs more than a slice to an evaluation thread.
    #[must_use]
    pub fn decide_within(
        &self,
        version: &str,
        input: &EvalInput,
        slice: Option<Duration>,
    ) -> Option<Evaluation> {
        match input.request.get("expected_policy_version") {
            Some(expected) if expected.as_str() != Some(version) => {
                Some(Evaluation::silence(format!(
                    "the request expects policy version {}, the bound version is {version}",
                    expected.as_str().unwrap_or("(not a string)")
                )))
            }
            _ => self.evaluate_within(input, slice),
        }
    }

    /// Evaluates `input`. Never fails and never hangs: errors, timeouts,
    /// undefined results and panics are SILENCE with the reason. Deterministic:
    /// the same input and bundle give the same evaluation.
    #[must_use]
    pub fn evaluate(&self, input: &EvalInput) -> Evaluation {
        self.evaluate_within(input, None)
            .expect("without a slice every evaluation ends")
    }

    fn evaluate_within(&self, input: &EvalInput, slice: Option<Duration>) -> Option<Evaluation> {
        self.evaluate_unbounded(input, slice)
            .map(Evaluation::bounded)
    }

    fn evaluate_unbounded(&self, input: &EvalInput, slice: Option<Duration>) -> Option<Evaluation> {
        let run = AssertUnwindSafe(|| match &self.compiled {
            Compiled::Rego(p) => p.evaluate_within(input, slice),
            Compiled::Cedar(p) => Some(p.evaluate(input)),
        });
        catch_unwind(run).unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Some(Evaluation::silence(format!("engine panicked: {what}")))
        })
    }
}
