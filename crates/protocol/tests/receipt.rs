//! Receipts: sign, verify, and refuse anything altered.

use note::{KeyType, SignerKey};
use protocol::{parse_receipt, verify_receipt, Decision, DecisionRequest, Error, ReceiptBody};
use serde_json::json;

fn body() -> ReceiptBody {
    let request = DecisionRequest::from_value(json!({
        "actor": {"id": "agent-treasury", "kind": "agent"},
        "surface": "payments", "action": "transfer",
        "target": {"amount": 12.5, "memo": "für \"x\"\n"}, "idempotency_key": "k-1",
    }))
    .unwrap();
    ReceiptBody {
        format: protocol::RECEIPT_FORMAT.into(),
        receipt_id: request.receipt_id(),
        log: "tollgate.local/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: Decision::Deny,
        reason: "deny_transfer".into(),
        policy: None,
        derived: json!({"actor": null}),
        decided_at: protocol::format_rfc3339_ns(1_764_072_000_000_000_000),
    }
}

#[test]
fn signed_receipts_verify_and_round_trip() {
    let key = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let bytes = body().sign(&key).unwrap();
    let text = std::str::from_utf8(&bytes).unwrap();
    assert_eq!(
        text.lines().count(),
        3,
        "one JSON line, a blank line, one signature:\n{text}"
    );
    assert_eq!(verify_receipt(&bytes, key.verifier()).unwrap(), body());
    let derived = body().policy_derived().unwrap();
    assert_eq!(
        derived["decided_at_ns"],
        json!(1_764_072_000_000_000_000_i64)
    );
}

#[test]
fn any_change_is_refused() {
    let key = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let other = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let bytes = body().sign(&key).unwrap();
    assert!(
        verify_receipt(&bytes, other.verifier()).is_err(),
        "wrong key"
    );
    // Flip one bit of every byte in turn: nothing verifies.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        assert!(
            verify_receipt(&b, key.verifier()).is_err(),
            "bit flip at {i} verified"
        );
    }
}

#[test]
fn inconsistent_bodies_are_refused_even_when_signed() {
    let key = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let mut b = body();
    b.request_digest = format!("sha256:{}", "0".repeat(64));
    assert!(matches!(
        verify_receipt(&b.sign(&key).unwrap(), key.verifier()),
        Err(Error::Malformed(_))
    ));
    let mut b = body();
    b.receipt_id = "0".repeat(32);
    assert!(matches!(
        verify_receipt(&b.sign(&key).unwrap(), key.verifier()),
        Err(Error::Malformed(_))
    ));
    // A signed note whose JSON is not canonical.
    let mut n = note::Note::new("{\"b\":1, \"a\":2}\n").unwrap();
    n.sign(&key).unwrap();
    assert!(matches!(
        parse_receipt(n.to_text().as_bytes()),
        Err(Error::NotCanonical)
    ));
}
