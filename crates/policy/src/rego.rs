//! Rego bundles on regorus.

use std::cell::Cell;
use std::num::NonZeroU32;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::Duration;

use regorus::utils::limits::{ExecutionTimerConfig, LimitError};
use regorus::Value;

use crate::contract::{
    ApprovalAsk, Decision, EvalInput, Evaluation, APPROVAL_COUNT_MAX, APPROVAL_TTL_RANGE,
    APPROVAL_TTL_SECONDS, EVAL_TIME_LIMIT,
};
use crate::{Bundle, Error};

/// Builtins whose results depend on more than the input, the bundle and the
/// bound decision time, with their arity. A call to one is refused at
/// publish, found in the parsed modules; and should one slip past that, each
/// is replaced by an extension that fails, so evaluating it is SILENCE.
/// (Of these, this build of regorus compiles in only `rand.intn`.)
const NON_DETERMINISTIC: &[(&str, u8)] = &[
    ("rand.intn", 2),
    ("uuid.rfc4122", 1),
    ("uuid.parse", 1),
    ("http.send", 1),
    ("net.lookup_ip_addr", 1),
    ("opa.runtime", 0),
    ("time.now", 0),
];

thread_local! {
    /// The bound decision time of the evaluation running on this thread;
    /// `time.now_ns()` returns it.
    static DECIDED_AT_NS: Cell<i64> = const { Cell::new(0) };
}

/// A compiled Rego bundle: a template engine and a pool of clones, one per
/// concurrent evaluation.
///
/// The execution timer is cooperative: regorus checks it every 64 units of
/// work, so loops and comprehensions are stopped at the time limit
/// ([`EVAL_TIME_LIMIT`] unless [`RegoPolicy::set_time_limit`] says otherwise)
/// and the evaluation is SILENCE. A single builtin call (say
/// `sprintf("%0500000000d", [1])`) runs to its end first, and nothing here
/// bounds its memory: the gate evaluates Rego in processes it caps and stops
/// (`gate::workers`).
pub struct RegoPolicy {
    entrypoint: String,
    /// Whether the entrypoint's package defines `approvals_required` and
    /// `approval_ttl_seconds` (asking regorus for an undefined rule is an
    /// error, not undefined).
    approval_rules: [bool; 2],
    /// The wall-clock limit of an evaluation.
    limit: Duration,
    template: regorus::Engine,
    pool: Mutex<Vec<regorus::Engine>>,
    actors: serde_json::Value,
    /// The first reference to an amplifying builtin (`bounds.rs`).
    amplifying: Option<String>,
}

impl RegoPolicy {
    pub(crate) fn compile(bundle: &Bundle) -> Result<RegoPolicy, Error> {
        let entrypoint = bundle
            .manifest()
            .entrypoint
            .clone()
            .expect("checked by Bundle::new");
        let mut engine = new_engine()?;
        let modules = bundle.texts_ending(".rego")?;
        let mut any = false;
        for &(file, text) in &modules {
            engine
                .add_policy(file.to_string(), text.to_string())
                .map_err(|e| compile_error(file, &e))?;
            any = true;
        }
        if !any {
            return Err(Error::InvalidBundle(
                "a Rego bundle needs at least one .rego file".into(),
            ));
        }
        let ast = engine
            .get_ast_as_json()
            .map_err(|e| Error::InvalidBundle(format!("reading the parsed modules: {e}")))?;
        let ast: serde_json::Value = serde_json::from_str(&ast)
            .map_err(|e| Error::InvalidBundle(format!("reading the parsed modules: {e}")))?;
        check_deterministic(&ast)?;
        let amplifying = crate::bounds::first_amplifying(&ast);
        let data = bundle_data(bundle)?;
        let actors = data
            .get("actors")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        engine
            .add_data(
                Value::from_json_str(&data.to_string())
                    .map_err(|e| Error::InvalidBundle(e.to_string()))?,
            )
            .map_err(|e| Error::InvalidBundle(format!("data: {e}")))?;
        // The entrypoint must be a rule some module defines.
        let (package, rule) = entrypoint.rsplit_once('.').expect("starts with data.");
        let defines = |rule: &str| {
            modules.iter().any(|(_, text)| {
                let in_package = text
                    .lines()
                    .any(|l| l.trim() == format!("package {}", &package["data.".len()..]));
                in_package
                    && text.lines().any(|l| {
                        let l = l.trim_start();
                        let l = l.strip_prefix("default ").unwrap_or(l);
                        l.strip_prefix(rule).is_some_and(|rest| {
                            rest.starts_with([' ', ':', '=', '[', '{', '\t']) || rest.is_empty()
                        })
                    })
            })
        };
        let approval_rules = [
            defines("approvals_required"),
            defines("approval_ttl_seconds"),
        ];
        if !defines(rule) {
            return Err(Error::Compile {
                file: "tollgate.json".into(),
                line: 0,
                message: format!("entrypoint {entrypoint} is not defined by any module"),
            });
        }
        Ok(RegoPolicy {
            approval_rules,
            entrypoint,
            limit: EVAL_TIME_LIMIT,
            template: engine,
            pool: Mutex::new(Vec::new()),
            actors,
            amplifying,
        })
    }

    /// Stops evaluations at `limit` instead.
    pub(crate) fn set_time_limit(&mut self, limit: Duration) {
        self.limit = limit;
        self.template.set_execution_timer_config(timer(limit));
        self.pool.get_mut().expect("pool").clear();
    }

    pub(crate) fn amplifying(&self) -> Option<&str> {
        self.amplifying.as_deref()
    }

    pub(crate) fn actor_attributes(&self, actor_id: &str) -> serde_json::Value {
        self.actors
            .get(actor_id)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    /// Evaluates `input`, stopped at the limit. With `slice` shorter than the limit: stops at `slice` instead, and
    /// `None` if the evaluation needed longer (nothing else differs: the
    /// evaluation is deterministic).
    pub(crate) fn evaluate_within(
        &self,
        input: &EvalInput,
        slice: Option<Duration>,
    ) -> Option<Evaluation> {
        let slice = slice.filter(|s| *s < self.limit);
        let mut engine = self
            .pool
            .lock()
            .expect("pool")
            .pop()
            .unwrap_or_else(|| self.template.clone());
        engine.set_execution_timer_config(timer(slice.unwrap_or(self.limit)));
        engine.set_input(input_document(input));
        DECIDED_AT_NS.with(|c| c.set(input.decided_at_ns()));
        let result = engine.eval_rule(self.entrypoint.clone());
        let asked = match &result {
            Ok(Value::String(s)) if s.as_ref() == "approval" => {
                Some(self.approval_ask(&mut engine))
            }
            _ => None,
        };
        self.pool.lock().expect("pool").push(engine);
        if let Some(ask) = asked {
            return Some(match ask {
                Ok(ask) => Evaluation {
                    decision: Decision::Silence,
                    reason: format!(
                        "{} = \"approval\": {} approval(s) required",
                        self.entrypoint, ask.count
                    ),
                    approval: Some(ask),
                },
                Err(e) => Evaluation::silence(e),
            });
        }
        let value = match result {
            Ok(v) => v,
            Err(e)
                if slice.is_some()
                    && matches!(
                        e.downcast_ref::<LimitError>(),
                        Some(LimitError::TimeLimitExceeded { .. })
                    ) =>
            {
                return None
            }
            Err(e) => {
                if let Some(LimitError::MemoryLimitExceeded { usage, limit }) =
                    e.downcast_ref::<LimitError>()
                {
                    return Some(Evaluation::silence(format!(
                        "the gate's heap ({} MiB) is past the evaluation memory limit ({} MiB): \
                         stopped (eval_memory_mb)",
                        usage >> 20,
                        limit >> 20
                    )));
                }
                return Some(Evaluation::silence(format!("rego evaluation error: {e}")));
            }
        };
        Some(self.interpret(&value))
    }

    /// The approval a policy asks for: its package's `approvals_required`
    /// and `approval_ttl_seconds`, if defined, within their bounds.
    fn approval_ask(&self, engine: &mut regorus::Engine) -> Result<ApprovalAsk, String> {
        let (package, _) = self.entrypoint.rsplit_once('.').expect("data.<pkg>.<rule>");
        let mut number = |rule: &str, defined: bool, default: u64, range: RangeInclusive<u64>| {
            if !defined {
                return Ok(default);
            }
            match engine.eval_rule(format!("{package}.{rule}")) {
                Ok(Value::Undefined) => Ok(default),
                Ok(v) => v
                    .as_u64()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| format!("{package}.{rule} = {v}, not an integer in {range:?}")),
                Err(e) => Err(format!("{package}.{rule}: {e}")),
            }
        };
        let count = number(
            "approvals_required",
            self.approval_rules[0],
            1,
            1..=u64::from(APPROVAL_COUNT_MAX),
        )?;
        let ttl_seconds = number(
            "approval_ttl_seconds",
            self.approval_rules[1],
            APPROVAL_TTL_SECONDS,
            APPROVAL_TTL_RANGE,
        )?;
        Ok(ApprovalAsk {
            count: u32::try_from(count).unwrap_or(1),
            ttl_seconds,
        })
    }

    /// The entrypoint's value as a decision.
    fn interpret(&self, value: &Value) -> Evaluation {
        match value {
            Value::Undefined => Evaluation::silence(format!("{} is undefined", self.entrypoint)),
            Value::String(s) => {
                let decision = match s.as_ref() {
                    "permit" => Decision::Permit,
                    "deny" => Decision::Deny,
                    "silence" => Decision::Silence,
                    other => {
                        return Evaluation::silence(format!(
                            "{} = {other:?}, not permit, deny, silence or approval",
                            self.entrypoint
                        ))
                    }
                };
                Evaluation::new(decision, format!("{} = {s:?}", self.entrypoint))
            }
            other => Evaluation::silence(format!("{} = {other}, not a string", self.entrypoint)),
        }
    }
}

/// `input`: the request with `derived` beside its members, converted
/// straight from the JSON the gate holds, as regorus's own conversion from
/// `serde_json::Value` would (a test holds them equal) without first
/// copying that JSON.
fn input_document(input: &EvalInput) -> Value {
    match &input.request {
        serde_json::Value::Object(members) => {
            let mut object: std::collections::BTreeMap<Value, Value> = members
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
                .collect();
            object.insert(Value::from("derived"), to_value(&input.derived));
            Value::from(object)
        }
        other => to_value(other),
    }
}

/// A JSON value as regorus's `Value::from(serde_json::Value)` makes it
/// (integers as integers, other numbers as floats; the JSON the gate holds
/// has no non-finite numbers).
fn to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Value::from(u),
            (None, Some(i)) => Value::from(i),
            (None, None) => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(items) => {
            Value::from(items.iter().map(to_value).collect::<Vec<_>>())
        }
        serde_json::Value::Object(members) => Value::from(
            members
                .iter()
                .map(|(k, v)| (Value::from(k.as_str()), to_value(v)))
                .collect::<std::collections::BTreeMap<_, _>>(),
        ),
    }
}

fn timer(limit: Duration) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    }
}

fn compile_error(file: &str, e: &dyn std::fmt::Display) -> Error {
    let message = e.to_string();
    // regorus reports "<file>:<line>:<col>" in its messages.
    let line = message
        .find(&format!("{file}:"))
        .and_then(|at| {
            message[at + file.len() + 1..]
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    Error::Compile {
        file: file.to_string(),
        line,
        message,
    }
}

/// Whether `name` is a builtin refused as non-deterministic.
#[cfg(test)]
pub(crate) fn is_refused(name: &str) -> bool {
    NON_DETERMINISTIC.iter().any(|(b, _)| *b == name)
}

/// Most elements `numbers.range` and `numbers.range_step` may produce. A
/// builtin runs to its end before the evaluation timer is looked at, so
/// `numbers.range(1, input.target.n)` let a caller choose how much memory and
/// time one evaluation takes (3e8 elements: gigabytes, seconds past a 50 ms
/// limit); past this bound the call fails and the decision is SILENCE.
pub const MAX_RANGE_ELEMENTS: i64 = 1_000_000;

/// An engine with the evaluation timer, `time.now_ns()` pinned to the
/// bound decision time, `numbers.range`/`numbers.range_step` bounded
/// ([`MAX_RANGE_ELEMENTS`]), and every non-deterministic builtin replaced by
/// an extension that fails (extensions are looked up before builtins).
pub(crate) fn new_engine() -> Result<regorus::Engine, Error> {
    let mut engine = regorus::Engine::new();
    engine.set_execution_timer_config(timer(EVAL_TIME_LIMIT));
    engine
        .add_extension(
            "time.now_ns".into(),
            0,
            Box::new(|_| Ok(Value::from(DECIDED_AT_NS.with(Cell::get)))),
        )
        .map_err(|e| Error::InvalidBundle(format!("pinning time.now_ns: {e}")))?;
    engine
        .add_extension(
            "numbers.range".into(),
            2,
            Box::new(|args| bounded_range("numbers.range", &args[0], &args[1], 1)),
        )
        .map_err(|e| Error::InvalidBundle(format!("bounding numbers.range: {e}")))?;
    engine
        .add_extension(
            "numbers.range_step".into(),
            3,
            Box::new(|args| {
                let step = integer("numbers.range_step", &args[2])?;
                anyhow::ensure!(
                    step > 0,
                    "numbers.range_step: step must be a positive integer"
                );
                bounded_range("numbers.range_step", &args[0], &args[1], step)
            }),
        )
        .map_err(|e| Error::InvalidBundle(format!("bounding numbers.range_step: {e}")))?;
    engine
        .add_extension(
            "concat".into(),
            2,
            Box::new(|args| crate::bounds::bounded_concat(&args[0], &args[1])),
        )
        .map_err(|e| Error::InvalidBundle(format!("bounding concat: {e}")))?;
    for &(name, arity) in NON_DETERMINISTIC {
        engine
            .add_extension(
                name.into(),
                arity,
                Box::new(move |_| {
                    anyhow::bail!("{name} is non-deterministic and not available to policies")
                }),
            )
            .map_err(|e| Error::InvalidBundle(format!("refusing {name}: {e}")))?;
    }
    Ok(engine)
}

fn integer(builtin: &str, v: &Value) -> anyhow::Result<i64> {
    match v {
        Value::Number(n) if n.is_integer() => n
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("{builtin}: {v} is out of range")),
        other => anyhow::bail!("{builtin}: operand {other} must be an integer"),
    }
}

/// `from` to `to` inclusive, by `step` (> 0) towards `to`, as regorus's
/// `numbers.range`/`numbers.range_step` compute it, refused past
/// [`MAX_RANGE_ELEMENTS`] before anything is allocated.
fn bounded_range(builtin: &str, from: &Value, to: &Value, step: i64) -> anyhow::Result<Value> {
    let (from, to) = (integer(builtin, from)?, integer(builtin, to)?);
    let span = i128::from(to) - i128::from(from);
    let elements = span.abs() / i128::from(step) + 1;
    anyhow::ensure!(
        elements <= i128::from(MAX_RANGE_ELEMENTS),
        "{builtin}: {elements} elements, more than the {MAX_RANGE_ELEMENTS} a policy may build"
    );
    let step = if span >= 0 { step } else { -step };
    let values = (0..elements as i64)
        .map(|i| Value::from(from + i * step))
        .collect::<Vec<_>>();
    Ok(Value::from(values))
}

/// Refuses a call to a non-deterministic builtin, naming file and line,
/// found in the parsed modules (regorus's syntax tree): a name in a string or
/// a comment is not a call, and no layout of the source hides one.
fn check_deterministic(ast: &serde_json::Value) -> Result<(), Error> {
    for module in ast.as_array().into_iter().flatten() {
        if let Some((line, builtin)) = find_call(&module["ast"]) {
            return Err(Error::NonDeterministic {
                file: module["source"]["file"].as_str().unwrap_or("?").into(),
                line,
                builtin,
            });
        }
    }
    Ok(())
}

/// The first call in `node` of a [`NON_DETERMINISTIC`] builtin: its line and name.
fn find_call(node: &serde_json::Value) -> Option<(usize, String)> {
    match node {
        serde_json::Value::Object(fields) => {
            if let Some(call) = fields.get("Call") {
                let name = call_path(&call["fcn"]);
                if let Some(name) = name.filter(|n| NON_DETERMINISTIC.iter().any(|(b, _)| b == n)) {
                    let line = call["span"]["line"].as_u64().unwrap_or(0);
                    return Some((usize::try_from(line).unwrap_or(0), name));
                }
            }
            fields.values().find_map(find_call)
        }
        serde_json::Value::Array(items) => items.iter().find_map(find_call),
        _ => None,
    }
}

/// The dotted name a call's function expression refers to (`rand.intn`,
/// `rand["intn"]`), if it is a plain reference.
pub(crate) fn call_path(fcn: &serde_json::Value) -> Option<String> {
    if let Some(var) = fcn.get("Var") {
        return var["value"].as_str().map(str::to_string);
    }
    if let Some(dot) = fcn.get("RefDot") {
        let field = dot["field"][1].as_str()?;
        return Some(format!("{}.{field}", call_path(&dot["refr"])?));
    }
    if let Some(brack) = fcn.get("RefBrack") {
        let field = brack["index"]["String"]["value"].as_str()?;
        return Some(format!("{}.{field}", call_path(&brack["refr"])?));
    }
    None
}

/// The data document: every `data.json` merged at its directory's path.
fn bundle_data(bundle: &Bundle) -> Result<serde_json::Value, Error> {
    let mut root = serde_json::Value::Object(Default::default());
    for (file, src) in bundle.files_ending("data.json") {
        if file != "data.json" && !file.ends_with("/data.json") {
            continue;
        }
        // Strict: a member named twice is refused (the policy and a reader
        // of the bundle could see different values).
        let doc: serde_json::Value =
            protocol::strict::from_slice(src).map_err(|e| Error::Compile {
                file: file.into(),
                line: e.line(),
                message: e.to_string(),
            })?;
        let mut at = &mut root;
        for part in file
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            at = at
                .as_object_mut()
                .ok_or_else(|| Error::InvalidBundle(format!("{file}: data path conflicts")))?
                .entry(part)
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
        }
        merge(at, doc)
            .map_err(|p| Error::InvalidBundle(format!("{file}: conflicting data at {p}")))?;
    }
    Ok(root)
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) -> Result<(), String> {
    match (into, from) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v).map_err(|p| format!("{k}.{p}"))?,
                    None => {
                        a.insert(k, v);
                    }
                }
            }
            Ok(())
        }
        (into, from) if *into == serde_json::Value::Object(Default::default()) => {
            *into = from;
            Ok(())
        }
        _ => Err(String::new()),
    }
}

/// `x := call` evaluated by this crate's engine and by regorus's own.
#[cfg(test)]
pub(crate) fn ours_and_regorus(call: &str) -> (anyhow::Result<Value>, anyhow::Result<Value>) {
    let src = format!("package t\nx := {call}\n");
    let mut ours = new_engine().unwrap();
    ours.add_policy("p.rego".into(), src.clone()).unwrap();
    let mut theirs = regorus::Engine::new();
    theirs.add_policy("p.rego".into(), src).unwrap();
    (
        ours.eval_rule("data.t.x".into()),
        theirs.eval_rule("data.t.x".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounded ranges give what regorus's builtins give below the bound
    /// and fail past it, before allocating.
    #[test]
    fn ranges_are_regorus_ranges_up_to_the_bound() {
        let cases = [
            "numbers.range(1, 5)",
            "numbers.range(5, 1)",
            "numbers.range(-3, 3)",
            "numbers.range(7, 7)",
            "numbers.range_step(1, 10, 3)",
            "numbers.range_step(10, 1, 3)",
            "numbers.range_step(0, 9, 9)",
            "numbers.range_step(2, 2, 5)",
        ];
        for call in cases {
            let (ours, theirs) = ours_and_regorus(call);
            assert_eq!(ours.unwrap(), theirs.unwrap(), "{call}");
        }
        for call in [
            "numbers.range(1, 1000001)",
            "numbers.range(0, 9223372036854775807)",
            "numbers.range_step(0, 100000000, 2)",
            "numbers.range_step(1, 5, 0)",
            "numbers.range(1.5, 3)",
        ] {
            let mut ours = new_engine().unwrap();
            ours.add_policy("p.rego".into(), format!("package t\nx := {call}\n"))
                .unwrap();
            let err = ours.eval_rule("data.t.x".into()).unwrap_err().to_string();
            assert!(err.contains("numbers.range"), "{call}: {err}");
        }
        let mut ours = new_engine().unwrap();
        ours.add_policy(
            "p.rego".into(),
            "package t\nx := count(numbers.range(1, 1000000))\n".into(),
        )
        .unwrap();
        assert_eq!(
            ours.eval_rule("data.t.x".into()).unwrap(),
            Value::from(1_000_000_i64)
        );
    }

    /// The input document is what regorus makes of the same JSON.
    #[test]
    fn the_input_document_is_regorus_conversion_of_the_request() {
        let request = serde_json::json!({
            "actor": {"id": "agent-1", "kind": "agent"},
            "surface": "payments",
            "target": {"amount": 500, "neg": -3, "big": 18446744073709551615u64, "f": 2.5,
                       "exp": 1e300, "list": [1, "a", null, true, {"x": []}], "empty": {}},
            "context": {},
        });
        let derived = serde_json::json!({"decided_at_ns": 1, "approvals": [{"by": "p"}]});
        let input = EvalInput {
            request: request.clone(),
            derived: derived.clone(),
        };
        let mut expected = request;
        expected["derived"] = derived;
        assert_eq!(input_document(&input), Value::from(expected));
    }

    /// Past the publish-time check, a non-deterministic builtin still cannot
    /// run: the engine every policy compiles into fails the call.
    #[test]
    fn non_deterministic_builtins_fail_when_called() {
        for (src, name) in [
            ("package t\nx := rand.intn(\"s\", 10)\n", "rand.intn"),
            ("package t\nx := uuid.rfc4122(\"s\")\n", "uuid.rfc4122"),
            ("package t\nx := http.send({})\n", "http.send"),
        ] {
            let mut engine = new_engine().unwrap();
            engine.add_policy("p.rego".into(), src.into()).unwrap();
            let err = engine.eval_rule("data.t.x".into()).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
            assert!(err.to_string().contains("non-deterministic"), "{err}");
        }
    }
}
