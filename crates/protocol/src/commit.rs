//! Receipts that can forget: a value the surface contract marks sensitive
//! is written into the receipt as a salted commitment, never in clear, and
//! the receipt lists which fields are committed (`derived.committed`). The
//! opening (salt and value) is kept beside the log, where it can be erased;
//! the log and every proof stay valid without it.
//!
//! commitment = `sha256:` hex(SHA-256(`tollgate commitment v1` ‖ 0x00 ‖
//! salt (32 bytes) ‖ RFC 8785 canonical JSON of the value)).
//!
//! The gate derives each salt with a key only it holds from the field and
//! the request without its idempotency key and pinned version, so the same
//! request commits the same way: idempotency and approval ids, computed
//! over the receipt's request, still bind the real values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::jcs::canonical;

/// Domain separation of a commitment.
const TAG: &[u8] = b"tollgate commitment v1\0";

/// One committed field's opening: the salt and the value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opening {
    /// 32 bytes, hex.
    pub salt: String,
    /// The value in clear.
    pub value: Value,
}

/// Openings by field (a JSON Pointer into the request, `/target/name`).
pub type Openings = BTreeMap<String, Opening>;

/// The commitment to `value` under `salt`.
#[must_use]
pub fn commitment(salt: &[u8; 32], value: &Value) -> String {
    let mut h = Sha256::new();
    h.update(TAG);
    h.update(salt);
    h.update(canonical(value).as_bytes());
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl Opening {
    /// Whether it opens `commitment`.
    #[must_use]
    pub fn opens(&self, commitment_text: &str) -> bool {
        let mut salt = [0u8; 32];
        hex::decode_to_slice(&self.salt, &mut salt).is_ok()
            && commitment(&salt, &self.value) == commitment_text
    }
}

/// The request with the values at `fields` (those present) replaced by
/// their commitments, the fields committed (sorted) and their openings.
/// `salt` gives each field's salt.
#[must_use]
pub fn commit_request(
    request: &Value,
    fields: &[String],
    salt: impl Fn(&str) -> [u8; 32],
) -> (Value, Vec<String>, Openings) {
    let mut committed = request.clone();
    let mut openings = Openings::new();
    for field in fields {
        if let Some(v) = committed.pointer_mut(field) {
            let s = salt(field);
            let value = std::mem::replace(v, Value::Null);
            *v = Value::String(commitment(&s, &value));
            openings.insert(
                field.clone(),
                Opening {
                    salt: hex::encode(s),
                    value,
                },
            );
        }
    }
    let fields = openings.keys().cloned().collect();
    (committed, fields, openings)
}

/// How one committed field of a receipt stands against the openings given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldStatus {
    /// The opening verifies: the value is the one the receipt committed to.
    Opened,
    /// Committed, opening erased (or not given): the value cannot be read.
    Erased,
}

/// Checks `openings` against the committed fields of a receipt's request:
/// each committed field's status, in order.
///
/// # Errors
///
/// Naming the field, if an opening does not open its commitment, or opens
/// a field the receipt did not commit.
pub fn check_openings(
    request: &Value,
    committed: &[String],
    openings: &Openings,
) -> Result<Vec<(String, FieldStatus)>, String> {
    if let Some(extra) = openings.keys().find(|f| !committed.contains(f)) {
        return Err(format!(
            "an opening for {extra}, which the receipt does not commit"
        ));
    }
    committed
        .iter()
        .map(|field| {
            let text = request
                .pointer(field)
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("the receipt commits {field} but holds no commitment there")
                })?;
            match openings.get(field) {
                None => Ok((field.clone(), FieldStatus::Erased)),
                Some(o) if o.opens(text) => Ok((field.clone(), FieldStatus::Opened)),
                Some(_) => Err(format!(
                    "the opening of {field} does not open its commitment"
                )),
            }
        })
        .collect()
}

/// The fields a receipt commits (`derived.committed`), if any.
#[must_use]
pub fn committed_fields(derived: &Value) -> Vec<String> {
    derived["committed"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A receipt's request with the verified openings put back (for replay):
/// the request, and the committed fields left unopened.
#[must_use]
pub fn open_request(
    request: &Value,
    committed: &[String],
    openings: &Openings,
) -> (Value, Vec<String>) {
    let mut opened = request.clone();
    let mut unopened = Vec::new();
    for field in committed {
        let text = request
            .pointer(field)
            .and_then(Value::as_str)
            .unwrap_or_default();
        match (openings.get(field), opened.pointer_mut(field)) {
            (Some(o), Some(slot)) if o.opens(text) => *slot = o.value.clone(),
            _ => unopened.push(field.clone()),
        }
    }
    (opened, unopened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commits_opens_and_refuses_a_wrong_opening() {
        let request = json!({"target": {"name": "Ada Lovelace", "amount": 5}, "context": {}});
        let fields = vec!["/target/name".to_string(), "/context/email".to_string()];
        let (committed, done, openings) = commit_request(&request, &fields, |_| [7u8; 32]);
        assert_eq!(
            done,
            vec!["/target/name".to_string()],
            "absent fields are not committed"
        );
        let text = committed["target"]["name"].as_str().unwrap();
        assert!(text.starts_with("sha256:") && text.len() == 71);
        assert!(!committed.to_string().contains("Lovelace"));
        assert_eq!(committed["target"]["amount"], 5);
        assert_eq!(
            check_openings(&committed, &done, &openings).unwrap(),
            vec![("/target/name".into(), FieldStatus::Opened)]
        );
        assert_eq!(
            check_openings(&committed, &done, &Openings::new()).unwrap(),
            vec![("/target/name".into(), FieldStatus::Erased)]
        );
        let mut wrong = openings.clone();
        wrong.get_mut("/target/name").unwrap().value = json!("Grace Hopper");
        assert!(check_openings(&committed, &done, &wrong)
            .unwrap_err()
            .contains("does not open"));
        let mut salted = openings.clone();
        salted.get_mut("/target/name").unwrap().salt = hex::encode([8u8; 32]);
        assert!(check_openings(&committed, &done, &salted).is_err());
        let (back, unopened) = open_request(&committed, &done, &openings);
        assert_eq!((back, unopened.len()), (request.clone(), 0));
        let (_, unopened) = open_request(&committed, &done, &Openings::new());
        assert_eq!(unopened, done);
        // The same value under the same salt commits the same way.
        assert_eq!(
            commit_request(&request, &fields, |_| [7u8; 32]).0,
            committed
        );
    }
}
