//! `make bench`: one evaluation per engine on the example bundles, and
//! throughput with two worker threads sharing one compiled policy.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use policy::{Bundle, CompiledPolicy, EvalInput};
use serde_json::json;

fn compiled(dir: &str) -> CompiledPolicy {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/policies")
        .join(dir);
    CompiledPolicy::compile(&Bundle::from_dir(&path).unwrap()).unwrap()
}

fn input(p: &CompiledPolicy) -> EvalInput {
    EvalInput {
        request: json!({
            "actor": {"id": "agent-treasury", "kind": "agent"},
            "surface": "payments", "action": "transfer",
            "target": {"amount": 500, "to": "acct-9"}, "context": {"ticket": "T-1"},
            "idempotency_key": "k"
        }),
        derived: json!({"decided_at": "2026-11-25T12:00:00Z", "decided_at_ns": 1_795_608_000_000_000_000i64,
                        "actor": p.actor_attributes("agent-treasury")}),
    }
}

fn evaluate(c: &mut Criterion) {
    for engine in ["rego", "cedar"] {
        let p = compiled(engine);
        let i = input(&p);
        let mut g = c.benchmark_group(format!("evaluate_{engine}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("one_thread", |b| b.iter(|| p.evaluate(black_box(&i))));
        g.bench_function("two_workers", |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..iters / 2 {
                                black_box(p.evaluate(&i));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4));
    targets = evaluate
}
criterion_main!(benches);
