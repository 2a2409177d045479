//! The evaluation heap limit follows the compiled policies: a policy with
//! large data compiled after the limit was set does not eat the room the
//! evaluations were given, and a dropped one gives its room back.
//!
//! A test binary of its own: the limit is one for the whole process.

use std::collections::BTreeMap;
use std::time::Duration;

use policy::{Bundle, CompiledPolicy, Decision, Engine, EvalInput, Manifest};
use serde_json::json;

const MIB: u64 = 1 << 20;

fn bundle(src: &str, data: Option<&serde_json::Value>) -> Bundle {
    let mut files = BTreeMap::from([("p.rego".to_string(), src.as_bytes().to_vec())]);
    if let Some(d) = data {
        files.insert("data.json".into(), serde_json::to_vec(d).unwrap());
    }
    let m = Manifest {
        engine: Engine::Rego,
        entrypoint: Some("data.t.decision".into()),
        schema: None,
        entities: None,
        counters: Vec::new(),
    };
    Bundle::new(m, files).unwrap()
}

/// Stopped at 20 s, not 50 ms: these tests are about memory.
fn rego(src: &str) -> CompiledPolicy {
    CompiledPolicy::compile(&bundle(src, None))
        .unwrap()
        .with_time_limit(Duration::from_secs(20))
}

fn input(n: u64) -> EvalInput {
    EvalInput {
        request: json!({"n": n}),
        derived: json!({"decided_at_ns": 0}),
    }
}

/// A policy that builds a set of 1000 × `input.n` pairs (no amplifying
/// builtin): its evaluation holds heap in proportion to the request.
const GROWS: &str = "package t\nimport rego.v1\ndecision := \"permit\" if {\n  s := {[i, j] | some i in numbers.range(1, 1000); some j in numbers.range(1, input.n)}\n  count(s) > 0\n}\n";

/// The room the limit leaves the evaluations of [`GROWS`]: growing by a
/// few MiB runs, by far more than 48 MiB is stopped at the limit.
fn keeps_room(grows: &CompiledPolicy) {
    let got = grows.evaluate(&input(10));
    assert_eq!(got.decision, Decision::Permit, "{}", got.reason);
    let got = grows.evaluate(&input(1_000));
    assert_eq!(got.decision, Decision::Silence);
    assert!(
        got.reason.contains("evaluation memory limit"),
        "{}",
        got.reason
    );
}

#[test]
fn the_heap_limit_follows_the_compiled_policies() {
    assert!(
        policy::heap_accounted(),
        "the test needs the counting allocator"
    );
    // A bundle of 14 MB of data (short strings: several times that in
    // regorus's memory), built before the limit is set.
    let blob: Vec<String> = (0..1_600_000).map(|i| format!("{i:x}")).collect();
    let large = bundle(
        "package t\nimport rego.v1\ndecision := \"permit\" if input.n > 0\n",
        Some(&json!({"blob": blob})),
    );
    drop(blob);
    let grows = rego(GROWS);
    let heap = policy::heap_bytes().unwrap();
    policy::set_heap_limit(Some(heap + 48 * MIB));

    // Compiled after the limit was set: counted as the policy's, so the
    // evaluations keep their room.
    let big = CompiledPolicy::compile(&large).unwrap();
    let peak = regorus_mimalloc::global_allocation_stats_snapshot().peak;
    eprintln!(
        "bundle {} MB, kept {} MiB, peak heap {} MiB over the start",
        large.files().values().map(Vec::len).sum::<usize>() / 1_000_000,
        big.heap_bytes() / MIB,
        peak.saturating_sub(heap) / MIB
    );
    drop(large);
    // The heap is past the limit set; the evaluation is not stopped.
    assert!(policy::heap_bytes().unwrap() > heap + 48 * MIB);
    let got = big.evaluate(&input(1));
    assert_eq!(got.decision, Decision::Permit, "{}", got.reason);
    assert!(
        big.heap_bytes() > 48 * MIB,
        "the policy's data is counted: {} MiB",
        big.heap_bytes() / MIB
    );
    // The evaluations have the room they had.
    keeps_room(&grows);

    // Dropped, the large policy gives its room back: the limit is the one
    // set again, so the same growth is stopped again.
    drop(big);
    keeps_room(&grows);
    policy::set_heap_limit(None);
}
