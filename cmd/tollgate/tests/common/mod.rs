//! What the crash-loop, disk-full and shared-log tests share: the request
//! they send, a decision that may find its gate dead, and consistency of
//! returned checkpoints.

#![allow(dead_code)] // each test crate uses what it needs

use std::time::Duration;

use note::Checkpoint;
use protocol::DecisionResponse;
use serde_json::{json, Value};

/// A transfer of 5 by `agent-treasury` under idempotency key `key` (the
/// example policy permits it).
pub fn intent(key: &str) -> Value {
    json!({
        "actor": {"id": "agent-treasury", "kind": "agent"},
        "surface": "payments", "action": "transfer",
        "target": {"amount": 5, "currency": "EUR", "to": "acct-1"},
        "idempotency_key": key,
    })
}

/// One POST: the decision, `Err(None)` if the connection failed (the gate
/// died: the outcome is unknown), `Err(Some(status))` for another answer.
pub fn decide(url: &str, token: &str, body: &Value) -> Result<DecisionResponse, Option<u16>> {
    let r = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
        .post(&format!("{url}/v1/decisions"))
        .set("authorization", &format!("Bearer {token}"))
        .send_string(&body.to_string());
    match r {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(code, _)) => Err(Some(code)),
        Err(_) => Err(None),
    }
}

/// `old` is consistent with `new`, by a proof the gate serves and this test verifies.
pub fn consistent(url: &str, old: &Checkpoint, new: &Checkpoint) {
    if old.size == new.size {
        assert_eq!(old.root, new.root, "two roots at size {}", old.size);
        return;
    }
    let text = ureq::get(&format!(
        "{url}/v1/proofs/consistency?old={}&new={}",
        old.size, new.size
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    let proof: Vec<tlog::Hash> = text
        .lines()
        .map(|l| {
            use base64::Engine as _;
            tlog::Hash::from_slice(&base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .unwrap()
        })
        .collect();
    tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .unwrap_or_else(|e| panic!("size {} → {}: {e}", old.size, new.size));
}
