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

/// The shared accept/refuse corpus (tests/vectors/tollgate/verifier-corpus.json,
/// from `make_corpus.py`): raw answers every verifier of the project must
/// accept or refuse alike. Read as `proofcheck receipt` reads a saved
/// answer: the typed parse (duplicate, unknown or missing members, a float
/// index, a byte-order mark refused), then `verify_decision`.
#[test]
fn the_shared_corpus_is_accepted_and_refused_as_it_says() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/tollgate/verifier-corpus.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        // A case signed with keys of its own names them.
        let key = |k: &str| match case.get(k) {
            Some(v) => VerifierKey::parse(v.as_str().unwrap()).unwrap(),
            None => VerifierKey::parse(v[k].as_str().unwrap()).unwrap(),
        };
        let (log_key, gate_key) = (key("log_key"), key("gate_key"));
        let raw = case["raw"].as_str().unwrap();
        let verdict = verdict(raw.as_bytes(), &log_key, &gate_key);
        let want = case["expect"].as_str().unwrap();
        assert_eq!(
            if verdict.is_ok() { "accept" } else { "refuse" },
            want,
            "{}: {verdict:?}",
            case["name"]
        );
    }
    // The seeded mutations: byte splices of the accepted cases, each with the
    // verdict the Python verifier gives (and the TypeScript one must give).
    let mutations = v["mutations"].as_array().unwrap();
    assert!(mutations.len() >= 300);
    for m in mutations {
        let base = &cases[m["base"].as_u64().unwrap() as usize];
        let key = |k: &str| match base.get(k) {
            Some(v) => VerifierKey::parse(v.as_str().unwrap()).unwrap(),
            None => VerifierKey::parse(v[k].as_str().unwrap()).unwrap(),
        };
        let mut raw = base["raw"].as_str().unwrap().as_bytes().to_vec();
        let at = m["at"].as_u64().unwrap() as usize;
        let remove = m["remove"].as_u64().unwrap() as usize;
        raw.splice(at..at + remove, m["insert"].as_str().unwrap().bytes());
        let verdict = verdict(&raw, &key("log_key"), &key("gate_key"));
        assert_eq!(
            if verdict.is_ok() { "accept" } else { "refuse" },
            m["expect"].as_str().unwrap(),
            "{}: {verdict:?}",
            m["name"]
        );
    }
}

/// Read as `proofcheck receipt` reads a saved answer: the typed parse, then
/// `verify_decision`.
fn verdict(raw: &[u8], log_key: &VerifierKey, gate_key: &VerifierKey) -> Result<(), String> {
    let response = serde_json::from_slice::<DecisionResponse>(raw).map_err(|e| e.to_string())?;
    verify::verify_decision(&response, log_key, gate_key, None).map_err(|e| e.to_string())?;
    Ok(())
}
