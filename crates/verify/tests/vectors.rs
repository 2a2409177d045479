//! The shared decision vectors (tests/vectors/tollgate/decisions.json,
//! answers of a real gate), read here and by the Python SDK's tests: each
//! verifies, and every single-bit change of its receipt or its tlog-proof is
//! refused.

use note::VerifierKey;
use protocol::DecisionResponse;

fn vectors() -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/tollgate/decisions.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Every single-bit change of `text`, as text; a change that is not UTF-8
/// cannot be a field of a response at all, so it is refused by construction.
fn flips(text: &str) -> impl Iterator<Item = String> + '_ {
    (0..text.len() * 8).filter_map(move |bit| {
        let mut b = text.as_bytes().to_vec();
        b[bit / 8] ^= 1 << (bit % 8);
        String::from_utf8(b).ok()
    })
}

#[test]
fn every_vector_verifies_and_every_single_bit_change_is_refused() {
    let v = vectors();
    let log_key = VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap();
    let gate_key = VerifierKey::parse(v["gate_key"].as_str().unwrap()).unwrap();
    let mut checked = 0;
    for d in v["decisions"].as_array().unwrap() {
        let response: DecisionResponse = serde_json::from_value(d.clone()).unwrap();
        let ok = verify::verify_decision(&response, &log_key, &gate_key, None).unwrap();
        assert_eq!(ok.receipt.decision, response.decision);
        for receipt in flips(&response.receipt) {
            let changed = DecisionResponse {
                receipt,
                ..response.clone()
            };
            assert!(verify::verify_decision(&changed, &log_key, &gate_key, None).is_err());
            checked += 1;
        }
        for proof in flips(&response.proof) {
            let changed = DecisionResponse {
                proof,
                ..response.clone()
            };
            assert!(verify::verify_decision(&changed, &log_key, &gate_key, None).is_err());
            checked += 1;
        }
    }
    assert!(checked > 10_000, "{checked}");
}
