//! The JSON Schema in schemas/ and the Rust types accept and reject exactly
//! the same documents: the shared corpus (tests/corpus), then generated
//! documents around every limit.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use protocol::{DecisionRequest, ReceiptBody};
use serde_json::{json, Value};

fn root() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo")).join("../..")
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn request_schema() -> jsonschema::Validator {
    jsonschema::validator_for(&load(&root().join("schemas/decision-request.schema.json"))).unwrap()
}

fn corpus(kind: &str) -> Vec<(String, Value)> {
    let dir = root().join("tests/corpus").join(kind);
    let mut docs: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                load(&p),
            )
        })
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}

#[test]
fn corpus_accepted_by_both() {
    let schema = request_schema();
    let docs = corpus("accept");
    assert!(docs.len() >= 20);
    for (name, doc) in docs {
        let typed = DecisionRequest::from_value(doc.clone());
        assert!(typed.is_ok(), "{name}: types reject: {typed:?}");
        assert!(schema.is_valid(&doc), "{name}: schema rejects");
        // Parsing is idempotent on the normalized form.
        let again = DecisionRequest::from_value(typed.unwrap().to_value()).unwrap();
        assert!(
            schema.is_valid(&again.to_value()),
            "{name}: normalized form"
        );
    }
}

#[test]
fn corpus_rejected_by_both_with_a_field() {
    let schema = request_schema();
    let docs = corpus("reject");
    assert!(docs.len() >= 40);
    for (name, doc) in docs {
        let err = DecisionRequest::from_value(doc.clone()).expect_err(&name);
        assert!(!schema.is_valid(&doc), "{name}: schema accepts");
        // Every rejection of a field names it; only whole-body problems have "".
        if doc.is_object() {
            assert!(err.field.starts_with('/'), "{name}: {err}");
        }
    }
}

#[test]
fn errors_name_the_field() {
    let base = load(&root().join("tests/corpus/accept/full.json"));
    let cases = [
        (
            "/actor/kind",
            json!({"actor": {"id": "a", "kind": "robot"}}),
        ),
        ("/target/a/b", json!({"target": {"a": {"b": 1e300}}})),
        (
            "/context/x~1y",
            json!({"context": {"x/y": "z".repeat(2000)}}),
        ),
        ("/priority", json!({"priority": 1})),
    ];
    for (field, patch) in cases {
        let mut doc = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let err = DecisionRequest::from_value(doc).unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }
    let big = vec![b' '; protocol::MAX_BODY_BYTES + 1];
    assert_eq!(DecisionRequest::parse(&big).unwrap_err().field, "");
    assert_eq!(DecisionRequest::parse(b"{").unwrap_err().field, "");
}

/// Values near the free-form limits: depth up to 6, up to 66 items, strings
/// and keys around their limits, numbers around 2^53.
fn free_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        prop_oneof![
            Just(9_007_199_254_740_991_i64),
            Just(9_007_199_254_740_992_i64),
            Just(-9_007_199_254_740_992_i64),
            any::<i32>().prop_map(i64::from)
        ]
        .prop_map(Value::from),
        (-1e17f64..1e17).prop_map(Value::from),
        (1020usize..1030).prop_map(|n| Value::from("é".repeat(n))),
        "[a-z]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 200, 66, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            (60usize..67, inner.clone()).prop_map(|(n, v)| Value::Array(vec![v; n])),
            prop::collection::btree_map(
                prop_oneof!["[a-z]{0,3}", (126usize..131).prop_map(|n| "k".repeat(n))],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn schema_and_types_agree_on_generated_documents(
        target in free_value(),
        context in free_value(),
        id in prop_oneof!["[!-~]{1,3}", "[ -~]{0,130}", "\\PC{1,4}"],
        surface in prop_oneof!["[a-z][a-z0-9_.-]{0,3}", "[A-Za-z0-9 _]{0,66}"],
        kind in prop_oneof![Just("agent"), Just("human"), Just("robot")],
    ) {
        let doc = json!({
            "actor": {"id": id, "kind": kind},
            "surface": surface, "action": "go",
            "target": target, "context": context, "idempotency_key": "k",
        });
        let typed = DecisionRequest::from_value(doc.clone());
        let schema = request_schema();
        prop_assert_eq!(typed.is_ok(), schema.is_valid(&doc), "types: {:?}", typed.err());
    }
}

#[test]
fn receipt_bodies_match_the_receipt_schema() {
    let request =
        DecisionRequest::from_value(load(&root().join("tests/corpus/accept/full.json"))).unwrap();
    let body = ReceiptBody {
        format: protocol::RECEIPT_FORMAT.into(),
        receipt_id: request.receipt_id("demo"),
        log: "tollgate.local/log".into(),
        request: request.to_value(),
        request_digest: request.digest(),
        decision: protocol::Decision::Permit,
        reason: "permitted".into(),
        policy: Some(protocol::PolicyRef {
            version: format!("sha256:{}", "0".repeat(64)),
            engine: "rego".into(),
        }),
        derived: json!({"actor": {"approved": true}, "caller": {"name": "demo", "via": "token"}}),
        decided_at: protocol::format_rfc3339_ns(1_764_072_000_000_000_001),
    };
    let request_schema = load(&root().join("schemas/decision-request.schema.json"));
    let validator = jsonschema::options()
        .with_resource(
            "https://tollgate.dev/schemas/decision-request.schema.json",
            jsonschema::Resource::from_contents(request_schema).unwrap(),
        )
        .build(&load(&root().join("schemas/receipt.schema.json")))
        .unwrap();
    let text = body.text();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert!(
        validator.is_valid(&v),
        "{:?}",
        validator
            .iter_errors(&v)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let mut bad = v.clone();
    bad["decision"] = json!("MAYBE");
    assert!(!validator.is_valid(&bad));
    // With a shadow policy's evaluation recorded beside.
    let mut shadowed = v.clone();
    shadowed["derived"]["shadow"] = json!({
        "version": format!("sha256:{}", "1".repeat(64)), "engine": "cedar",
        "decision": "DENY", "reason": "candidate"
    });
    assert!(validator.is_valid(&shadowed));
    shadowed["derived"]["shadow"]["decision"] = json!("MAYBE");
    assert!(!validator.is_valid(&shadowed));
    // With the counters the policy saw.
    let mut counted = v.clone();
    counted["derived"]["history"] = json!({"transferred_24h": 9900});
    assert!(validator.is_valid(&counted));
    counted["derived"]["history"]["transferred_24h"] = json!("a lot");
    assert!(!validator.is_valid(&counted));
    // With the principal the caller acts for, as the gate records it.
    let principal =
        protocol::OnBehalfOf::oauth("https://as.example", "user-7", Some("desk")).unwrap();
    let mut delegated = v.clone();
    delegated["derived"]["caller"]["on_behalf_of"] = serde_json::to_value(&principal).unwrap();
    assert!(validator.is_valid(&delegated));
    delegated["derived"]["caller"]["on_behalf_of"]["subject"] = json!("a\"b");
    assert!(!validator.is_valid(&delegated));
    delegated["derived"]["caller"]["on_behalf_of"] =
        json!({"via": "saml", "issuer": "i", "subject": "s"});
    assert!(!validator.is_valid(&delegated));
}
