//! Test cases a bundle ships (`tests/*.json`), run by `tollgate policy
//! test`: each is a request, the decision time and caller it is decided at,
//! and the decision the policy must give — evaluated exactly as the gate
//! evaluates (the request validated by the contract, the derived context the
//! gate would bind, the gate's version rule), with nothing written.
//!
//! A file holds one case or an array of them:
//!
//! ```json
//! {"name": "a small transfer", "decided_at": "2026-11-25T12:00:00Z",
//!  "caller": "payments-agent", "request": {…},
//!  "expected": "PERMIT", "reason_contains": "optional"}
//! ```

use serde::Deserialize;

use crate::contract::{Decision, EvalInput};
use crate::{Bundle, CompiledPolicy, Error};

/// One case, as a bundle ships it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    decided_at: String,
    /// The caller the gate would record (`derived.caller.name`), `via`
    /// token. Default `test`.
    #[serde(default = "default_caller")]
    caller: String,
    request: serde_json::Value,
    expected: Decision,
    #[serde(default)]
    reason_contains: Option<String>,
    /// The values of the bundle's counters the gate would derive
    /// (`derived.history`); a counter not named here is 0.
    #[serde(default)]
    history: serde_json::Map<String, serde_json::Value>,
    /// The approvals the gate would attach (`derived.approvals`:
    /// `{"by": caller, "entry": log index}` each).
    #[serde(default)]
    approvals: Vec<serde_json::Value>,
}

fn default_caller() -> String {
    "test".into()
}

/// What one case gave.
#[derive(Debug)]
pub struct CaseResult {
    /// The file it is in (`tests/…json`).
    pub file: String,
    /// Its name.
    pub name: String,
    /// The decision expected.
    pub expected: Decision,
    /// The decision the policy gave and its reason.
    pub got: Decision,
    /// The policy's reason.
    pub reason: String,
    /// Whether the decision (and the reason, if the case asks) is as expected.
    pub passed: bool,
}

/// The `derived.history` of a case: every counter the bundle declares, 0
/// unless the case gives its value; `None` if it declares none.
fn history(
    bundle: &Bundle,
    given: &serde_json::Map<String, serde_json::Value>,
) -> Option<serde_json::Value> {
    let counters = &bundle.manifest().counters;
    (!counters.is_empty()).then(|| {
        counters
            .iter()
            .map(|c| {
                let v = given.get(&c.name).cloned().unwrap_or_else(|| 0.into());
                (c.name.clone(), v)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    })
}

/// Runs every case in the bundle's `tests/*.json` against the bundle.
///
/// # Errors
///
/// [`Error::InvalidBundle`] if the bundle ships no cases, a case file is
/// not strict JSON or not cases, or a case's request or time is invalid;
/// compile errors of the bundle itself.
pub fn run_cases(bundle: &Bundle) -> Result<Vec<CaseResult>, Error> {
    let policy = CompiledPolicy::compile(bundle)?;
    let version = bundle.version();
    let mut results = Vec::new();
    for (file, bytes) in bundle.files() {
        let in_tests = file
            .strip_prefix("tests/")
            .is_some_and(|f| !f.contains('/') && f.ends_with(".json"));
        if !in_tests {
            continue;
        }
        let bad = |why: String| Error::InvalidBundle(format!("{file}: {why}"));
        let value = protocol::strict::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let cases: Vec<Case> = match value {
            serde_json::Value::Array(_) => serde_json::from_value(value),
            one => serde_json::from_value(one).map(|c| vec![c]),
        }
        .map_err(|e| bad(e.to_string()))?;
        for case in cases {
            let request = protocol::DecisionRequest::parse(case.request.to_string().as_bytes())
                .map_err(|e| bad(format!("{}: request: {e}", case.name)))?;
            // Whole seconds may be written without the nanoseconds the gate records.
            let decided_at = match case.decided_at.strip_suffix('Z') {
                Some(t) if !t.contains('.') => format!("{t}.000000000Z"),
                _ => case.decided_at.clone(),
            };
            let ns = protocol::parse_rfc3339_ns(&decided_at)
                .map_err(|e| bad(format!("{}: decided_at: {e}", case.name)))?;
            let input = EvalInput {
                request: request.to_value(),
                derived: protocol::policy_derived(&decided_at, ns, &{
                    let mut d = protocol::receipt_derived(
                        policy.actor_attributes(request.actor().id()),
                        &case.caller,
                        protocol::VIA_TOKEN,
                    );
                    if let Some(h) = history(bundle, &case.history) {
                        d["history"] = h;
                    }
                    if !case.approvals.is_empty() {
                        d["approvals"] = serde_json::Value::Array(case.approvals.clone());
                    }
                    d
                }),
            };
            let got = policy.decide(&version, &input);
            let passed = got.decision == case.expected
                && case
                    .reason_contains
                    .as_ref()
                    .is_none_or(|r| got.reason.contains(r.as_str()));
            results.push(CaseResult {
                file: file.clone(),
                name: case.name,
                expected: case.expected,
                got: got.decision,
                reason: got.reason,
                passed,
            });
        }
    }
    if results.is_empty() {
        return Err(Error::InvalidBundle(
            "the bundle ships no test cases (tests/*.json)".into(),
        ));
    }
    Ok(results)
}
