//! What the crash-loop, disk-full and shared-log tests share: the request
//! they send (the test kit has the rest: `testkit::decide`, `testkit::consistent`).

#![allow(dead_code)] // each test crate uses what it needs

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
