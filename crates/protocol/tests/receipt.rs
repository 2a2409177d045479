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
        receipt_id: request.receipt_id("demo"),
        log: "tollgate.local/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: Decision::Deny,
        reason: "deny_transfer".into(),
        policy: None,
        derived: json!({"actor": null, "caller": {"name": "demo", "via": "token"}}),
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
    // A signed note whose JSON is a valid body, but not canonical.
    let text = body().text().replacen(",\"", ", \"", 1);
    let mut n = note::Note::new(text).unwrap();
    n.sign(&key).unwrap();
    assert!(matches!(
        parse_receipt(n.to_text().as_bytes()),
        Err(Error::NotCanonical)
    ));
}

/// `ReceiptBody::text` writes the canonical form member by member; it must
/// be exactly RFC 8785 of the body's serde JSON, whatever the body holds.
#[test]
fn receipt_text_is_the_canonical_form_of_the_body() {
    let mut bodies = vec![body()];
    let mut b = body();
    b.policy = Some(protocol::PolicyRef {
        version: format!("sha256:{}", "ab".repeat(32)),
        engine: "cedar".into(),
    });
    b.derived = json!({"actor": {"é": 1, "z": [true, null, 2.5], "a\u{1}": "\u{2028}"}});
    b.reason = "for \"reasons\"\n\u{10000}".into();
    bodies.push(b);
    let mut b = body();
    b.decision = Decision::Silence;
    b.request = json!({"target": {"\u{e000}": 1, "\u{10000}": 2, "a": {}}, "actor": {"id": "x"}});
    bodies.push(b);
    for b in bodies {
        let want = protocol::canonical(&serde_json::to_value(&b).unwrap()) + "\n";
        assert_eq!(b.text(), want);
    }
}

#[test]
fn a_request_not_in_normalized_form_is_named() {
    // Canonical JSON, correct digest and id, but `context` is missing: the
    // normalized form always has it.
    let key = SignerKey::generate("tollgate.local/gate", KeyType::Ed25519).unwrap();
    let mut b = body();
    b.request.as_object_mut().unwrap().remove("context");
    b.request_digest = protocol::digest_of(&b.request);
    let err = verify_receipt(&b.sign(&key).unwrap(), key.verifier()).unwrap_err();
    assert!(err.to_string().contains("normalized form"), "{err}");
}
