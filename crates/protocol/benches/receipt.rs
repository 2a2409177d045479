//! `make bench`: what an auditor pays per receipt before the signature:
//! parsing, the canonical-form check and the re-derived digest and id.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use note::{KeyType, SignerKey};
use protocol::{parse_receipt, Decision, DecisionRequest, PolicyRef, ReceiptBody};
use serde_json::json;

fn receipts(c: &mut Criterion) {
    // The shape the example policy's receipts have.
    let request = DecisionRequest::from_value(json!({
        "actor": {"id": "agent-treasury", "kind": "agent"},
        "surface": "payments", "action": "transfer",
        "target": {"amount": 500, "to": "acct-9"},
        "context": {"ticket": "OPS-1"},
        "idempotency_key": "k-1",
    }))
    .unwrap();
    let body = ReceiptBody {
        format: protocol::RECEIPT_FORMAT.into(),
        receipt_id: request.receipt_id("demo"),
        log: "tollgate.local/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: Decision::Permit,
        reason: "permit_approved_agent".into(),
        policy: Some(PolicyRef {
            version: format!("sha256:{}", "ab".repeat(32)),
            engine: "rego".into(),
        }),
        derived: json!({"actor": {"approved": true, "surfaces": ["payments", "deploy"]}, "caller": {"name": "demo", "via": "token"}}),
        decided_at: protocol::format_rfc3339_ns(1_764_072_000_123_456_789),
    };
    let key = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let bytes = body.sign(&key).unwrap();
    c.bench_function("parse_receipt", |b| {
        b.iter(|| parse_receipt(black_box(&bytes)).unwrap())
    });
}

criterion_group!(benches, receipts);
criterion_main!(benches);
