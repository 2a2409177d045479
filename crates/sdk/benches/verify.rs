//! The SDK's added latency per guarded call, verification included: what
//! `Client::decide` does once the gate's answer is in (`verify_answer`: the
//! receipt's signature and canonical body, the inclusion proof in a log of
//! 2^20 entries to a checkpoint signed by the log key, the request compare),
//! and what the tool's service does per call (`SurfaceVerifier::check`).

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use criterion::{criterion_group, criterion_main, Criterion};
use note::{Checkpoint, KeyType, ProofBundle, SignerKey};
use protocol::{DecisionRequest, DecisionResponse, PolicyRef, ReceiptBody};
use sdk::surface::{Call, SurfaceVerifier};
use sdk::Trust;
use serde_json::json;

fn answer() -> (Trust, DecisionRequest, Vec<u8>, Call) {
    let log_key = SignerKey::generate("bench.example/log", KeyType::Ed25519).unwrap();
    let gate_key = SignerKey::generate("bench.example/gate", KeyType::Ed25519).unwrap();
    let intent = json!({
        "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
        "action": "transfer", "target": {"amount": 500, "to": "acct-9"},
        "context": {"ticket": "OPS-1"}, "idempotency_key": "bench-1",
    });
    let request = DecisionRequest::parse(intent.to_string().as_bytes()).unwrap();
    let decided_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let body = ReceiptBody {
        format: protocol::RECEIPT_FORMAT.into(),
        receipt_id: request.receipt_id("demo"),
        log: "bench.example/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: protocol::Decision::Permit,
        reason: "data.tollgate.example.decision = \"permit\"".into(),
        policy: Some(PolicyRef {
            version: format!("sha256:{}", "ab".repeat(32)),
            engine: "rego".into(),
        }),
        derived: protocol::receipt_derived(
            json!({"approved": true, "surfaces": ["payments"]}),
            "demo",
            protocol::VIA_TOKEN,
        ),
        decided_at: protocol::format_rfc3339_ns(decided_ns),
    };
    let leaf = body.sign(&gate_key).unwrap();
    // A log of 2^20 entries whose last one is this receipt.
    let n: u64 = 1 << 20;
    let mut leaves: Vec<tlog::Hash> = (0..n - 1)
        .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
        .collect();
    leaves.push(tlog::leaf_hash(&leaf));
    let stored = tlog::append_leaves(0, &leaves, &Vec::new()).unwrap();
    let root = tlog::tree_hash(n, &stored).unwrap();
    let proof = tlog::prove_inclusion(n - 1, n, &stored).unwrap();
    let checkpoint =
        note::sign_checkpoint(&Checkpoint::new("bench.example/log", n, root), &log_key)
            .unwrap()
            .to_text();
    let bundle = ProofBundle {
        extra: None,
        index: n - 1,
        proof,
        checkpoint,
    };
    let response = DecisionResponse {
        decision: protocol::Decision::Permit,
        reason: body.reason.clone(),
        receipt_id: body.receipt_id.clone(),
        policy_version: body.policy.as_ref().map(|p| p.version.clone()),
        log_index: n - 1,
        receipt: String::from_utf8(leaf).unwrap(),
        proof: bundle.to_text(),
        replayed: false,
        approval: None,
        openings: None,
    };
    let trust = Trust::new(log_key.verifier().clone(), gate_key.verifier().clone());
    let call = Call {
        surface: "payments".into(),
        action: "transfer".into(),
        target: json!({"amount": 500, "to": "acct-9"}),
    };
    (trust, request, serde_json::to_vec(&response).unwrap(), call)
}

fn bench(c: &mut Criterion) {
    let (trust, request, answer, call) = answer();
    c.bench_function("sdk verify_answer (PERMIT, proof in 2^20)", |b| {
        b.iter(|| sdk::verify_answer(&trust, &request, &answer).unwrap());
    });
    let permit = sdk::verify_answer(&trust, &request, &answer).unwrap();
    let header = permit.header_value();
    c.bench_function(
        "surface check (header decode, verify, match, fresh, unused)",
        |b| {
            b.iter_batched(
                || SurfaceVerifier::new(trust.clone()),
                |v| {
                    v.check(Some(&header), &call, std::time::SystemTime::now())
                        .unwrap()
                },
                criterion::BatchSize::SmallInput,
            );
        },
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
