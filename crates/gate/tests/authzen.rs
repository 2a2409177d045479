//! The OpenID AuthZEN Authorization API 1.0 endpoints against a real gate
//! (the router, a RocksDB log, the real engines), with the specification's
//! examples as cases: each evaluation is a signed, logged decision whose
//! receipt verifies; `decision` is true only for PERMIT; batches merge
//! defaults and end as their semantic says; errors are as the
//! specification defines them. Both example bundles (Rego and Cedar) answer
//! alike.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gate::{Config, Gate};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

struct Pdp {
    gate: Arc<Gate>,
    app: axum::Router,
    pep: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut r = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "pdp.example.com");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let response = app
        .clone()
        .oneshot(r.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        request_id,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

/// A gate running `examples/policies/<bundle>`, and a PEP caller that may
/// decide for the example's users.
async fn pdp(bundle: &str) -> Pdp {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let gate = Gate::open(&config).unwrap().gate;
    let app = gate::router(gate.clone());
    let admin = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
    let admin = admin.trim();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let tar = policy::Bundle::from_dir(&examples.join(bundle))
        .unwrap()
        .to_tar_gz();
    let published = send(&app, "POST", "/v1/admin/policies", Some(admin), &[], tar).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.text);
    let version = published.json()["version"].as_str().unwrap().to_string();
    let uri = format!("/v1/admin/policies/{version}/activate");
    let activated = send(&app, "POST", &uri, Some(admin), &[], vec![]).await;
    assert_eq!(activated.status, StatusCode::OK, "{}", activated.text);
    let actors = ["alice@example.com", "bob@example.com", "carol@example.com"];
    let caller = json!({"name": "pep", "roles": ["decide"], "actors": actors});
    let added = send(
        &app,
        "POST",
        "/v1/admin/callers",
        Some(admin),
        &[],
        caller.to_string().into_bytes(),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.text);
    let pep = added.json()["token"].as_str().unwrap().to_string();
    Pdp {
        gate,
        app,
        pep,
        _dir: dir,
    }
}

impl Pdp {
    async fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Answer {
        send(
            &self.app,
            "POST",
            path,
            Some(&self.pep),
            headers,
            body.to_string().into_bytes(),
        )
        .await
    }

    /// One Decision's context is a decision response whose receipt verifies
    /// with the gate key and records the request as mapped.
    fn check_proven(&self, decision: &Value) -> protocol::ReceiptBody {
        let context = &decision["context"];
        let receipt = protocol::verify_receipt(
            context["receipt"].as_str().unwrap().as_bytes(),
            self.gate.gate_verifier(),
        )
        .unwrap();
        assert_eq!(
            decision["decision"] == true,
            receipt.decision == protocol::Decision::Permit,
            "true exactly for PERMIT"
        );
        assert_eq!(context["decision"], receipt.decision.as_str());
        assert!(context["proof"].is_string(), "the proof is in the context");
        receipt
    }
}

fn document(id: &str) -> Value {
    json!({"type": "document", "id": id})
}

fn alice() -> Value {
    json!({"type": "user", "id": "alice@example.com"})
}

/// The specification's "three documents, three semantics" example.
fn three_documents(semantic: &str) -> Value {
    json!({
        "subject": alice(),
        "action": {"name": "read"},
        "options": {"evaluations_semantic": semantic},
        "evaluations": [
            {"resource": document("1")},
            {"resource": document("2")},
            {"resource": document("3")},
        ],
    })
}

fn decisions(answer: &Answer) -> Vec<bool> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.json()["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"] == true)
        .collect()
}

async fn the_specification_examples_decide_and_prove(bundle: &str) {
    let pdp = pdp(bundle).await;
    let size = || pdp.gate.ledger().latest().checkpoint.size;

    // One evaluation (the specification's request example, on a document):
    // a decision in the log, its receipt in the context.
    let request = json!({
        "subject": alice(),
        "resource": document("1"),
        "action": {"name": "can_read", "properties": {"method": "GET"}},
        "context": {"time": "1985-10-26T01:22-07:00"},
        "a member this version does not know": true,
    });
    let before = size();
    let id = [("x-request-id", "bfe9eb29-ab87-4ca3-be83-a1d5d8305716")];
    let one = pdp.post("/access/v1/evaluation", &request, &id).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text);
    assert_eq!(one.request_id.as_deref(), Some(id[0].1), "the id is echoed");
    let decision = one.json();
    assert_eq!(decision["decision"], true, "{decision}");
    let receipt = pdp.check_proven(&decision);
    assert_eq!(size(), before + 1, "one entry in the log");
    assert_eq!(
        receipt.request["actor"],
        json!({"id": "alice@example.com", "kind": "human"})
    );
    assert_eq!(receipt.request["surface"], "document");
    assert_eq!(receipt.request["target"], json!({"id": "1"}));
    assert_eq!(
        receipt.request["context"]["authzen"],
        json!({"subject_type": "user", "action_properties": {"method": "GET"}})
    );
    assert_eq!(receipt.request["idempotency_key"], id[0].1);
    // The same request id again: the same decision, not a second one.
    let again = pdp.post("/access/v1/evaluation", &request, &id).await;
    assert_eq!(
        again.json()["context"]["receipt"],
        decision["context"]["receipt"]
    );
    assert_eq!(again.json()["context"]["replayed"], true);
    assert_eq!(size(), before + 1);

    // DENY and SILENCE are both `false`, each proven.
    for (resource, action, want) in [
        (document("2"), "can_read", "DENY"),
        (
            json!({"type": "account", "id": "123"}),
            "can_read",
            "SILENCE",
        ),
        (document("1"), "can_share", "SILENCE"),
    ] {
        let r = json!({"subject": alice(), "resource": resource, "action": {"name": action}});
        let d = pdp.post("/access/v1/evaluation", &r, &[]).await.json();
        assert_eq!(d["decision"], false, "{d}");
        assert_eq!(pdp.check_proven(&d).decision.as_str(), want);
    }

    // The three semantics.
    let all = pdp
        .post(
            "/access/v1/evaluations",
            &three_documents("execute_all"),
            &[],
        )
        .await;
    assert_eq!(decisions(&all), [true, false, true]);
    for d in all.json()["evaluations"].as_array().unwrap() {
        pdp.check_proven(d);
    }
    let deny = pdp
        .post(
            "/access/v1/evaluations",
            &three_documents("deny_on_first_deny"),
            &[],
        )
        .await;
    assert_eq!(decisions(&deny), [true, false]);
    let permit = pdp
        .post(
            "/access/v1/evaluations",
            &three_documents("permit_on_first_permit"),
            &[],
        )
        .await;
    assert_eq!(decisions(&permit), [true]);
    let mut default = three_documents("execute_all");
    default.as_object_mut().unwrap().remove("options");
    let answer = pdp.post("/access/v1/evaluations", &default, &[]).await;
    assert_eq!(
        decisions(&answer),
        [true, false, true],
        "execute_all is the default"
    );

    // Defaults overridden per evaluation; request ids per evaluation.
    let overridden = json!({
        "subject": json!({"type": "user", "id": "carol@example.com"}),
        "action": {"name": "can_read"},
        "evaluations": [
            {"resource": {"type": "document", "id": "notes.md", "properties": {"owner": "carol@example.com"}}},
            {"action": {"name": "can_edit"}, "resource": {"type": "document", "id": "notes.md", "properties": {"owner": "carol@example.com"}}},
            {"action": {"name": "can_delete"}, "resource": {"type": "document", "id": "notes.md", "properties": {"owner": "carol@example.com"}}},
            {"subject": json!({"type": "user", "id": "bob@example.com"}), "action": {"name": "can_delete"}, "resource": document("2")},
        ],
    });
    let batch = [("x-request-id", "batch-1")];
    let answer = pdp
        .post("/access/v1/evaluations", &overridden, &batch)
        .await;
    assert_eq!(decisions(&answer), [true, true, false, true]);
    let keys: Vec<Value> = answer.json()["evaluations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| pdp.check_proven(d).request["idempotency_key"].clone())
        .collect();
    assert_eq!(
        keys,
        [
            json!("batch-1#0"),
            json!("batch-1#1"),
            json!("batch-1#2"),
            json!("batch-1#3")
        ]
    );

    // Without evaluations, the Access Evaluations endpoint is one evaluation.
    let single = json!({"subject": alice(), "resource": document("3"), "action": {"name": "read"}});
    let d = pdp
        .post("/access/v1/evaluations", &single, &[])
        .await
        .json();
    assert_eq!(d["decision"], true, "{d}");

    // One evaluation of a batch that cannot be a decision: false, with the
    // error in its context; the others are decided.
    let mixed = json!({
        "action": {"name": "read"},
        "resource": document("1"),
        "evaluations": [
            {"subject": {"type": "group", "id": "admins"}},
            {"subject": {"type": "user", "id": "has a space"}},
            {"subject": alice()},
        ],
    });
    let answer = pdp.post("/access/v1/evaluations", &mixed, &[]).await;
    assert_eq!(decisions(&answer), [false, false, true]);
    let e = answer.json()["evaluations"].clone();
    assert_eq!(e[0]["context"]["error"]["status"], 400);
    assert!(e[0]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no actor kind"));
    assert!(e[1]["context"]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("actor/id"));

    // A caller may speak only for its actors: SILENCE, false, proven.
    let stranger = json!({"subject": {"type": "user", "id": "eve@elsewhere.org"}, "resource": document("1"), "action": {"name": "read"}});
    let d = pdp
        .post("/access/v1/evaluation", &stranger, &[])
        .await
        .json();
    assert_eq!(d["decision"], false);
    assert_eq!(pdp.check_proven(&d).reason, "actor_not_bound_to_caller");
}

#[tokio::test]
async fn the_specification_examples_decide_and_prove_rego() {
    the_specification_examples_decide_and_prove("authzen-rego").await;
}

#[tokio::test]
async fn the_specification_examples_decide_and_prove_cedar() {
    the_specification_examples_decide_and_prove("authzen-cedar").await;
}

/// Errors of the whole request: an HTTP status and a message string, and
/// nothing decided.
#[tokio::test]
async fn errors_are_a_status_and_a_message_and_decide_nothing() {
    let pdp = pdp("authzen-rego").await;
    let size = pdp.gate.ledger().latest().checkpoint.size;
    let ok = json!({"subject": alice(), "resource": document("1"), "action": {"name": "read"}});
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (
            None,
            ok.to_string().into_bytes(),
            StatusCode::UNAUTHORIZED,
            "no bearer token",
        ),
        (
            Some("0000"),
            ok.to_string().into_bytes(),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            Some(&pdp.pep),
            b"{\"subject\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            Some(&pdp.pep),
            b"[]".to_vec(),
            StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            Some(&pdp.pep),
            br#"{"subject": {"type": "user", "id": "a@example.com", "id": "b@example.com"}}"#
                .to_vec(),
            StatusCode::BAD_REQUEST,
            "duplicate member",
        ),
        (
            Some(&pdp.pep),
            json!({"subject": alice(), "resource": document("1")})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "action is required",
        ),
    ];
    for (token, body, status, says) in cases {
        let a = send(&pdp.app, "POST", "/access/v1/evaluation", token, &[], body).await;
        assert_eq!(a.status, status, "{}", a.text);
        assert!(a.text.contains(says), "{says:?} in {}", a.text);
    }
    let pdp = &pdp;
    let batch = |v: Value| async move { pdp.post("/access/v1/evaluations", &v, &[]).await };
    let missing =
        batch(json!({"action": {"name": "read"}, "evaluations": [{"subject": alice()}]})).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.text.contains("evaluations[0] has no resource"),
        "{}",
        missing.text
    );
    let mut long = three_documents("execute_all");
    long["evaluations"] = Value::Array(vec![json!({"resource": document("1")}); 65]);
    let too_many = batch(long).await;
    assert_eq!(too_many.status, StatusCode::BAD_REQUEST);
    assert!(too_many.text.contains("at most 64"), "{}", too_many.text);
    let unknown = batch(three_documents("first_come")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.text.contains("evaluations_semantic"),
        "{}",
        unknown.text
    );
    assert_eq!(
        pdp.gate.ledger().latest().checkpoint.size,
        size,
        "nothing decided"
    );
}

/// The discovery document names this gate and its two endpoints.
#[tokio::test]
async fn the_configuration_names_the_endpoints() {
    let pdp = pdp("authzen-rego").await;
    let a = send(
        &pdp.app,
        "GET",
        "/.well-known/authzen-configuration",
        None,
        &[],
        vec![],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        json!({
            "policy_decision_point": "http://pdp.example.com",
            "access_evaluation_endpoint": "http://pdp.example.com/access/v1/evaluation",
            "access_evaluations_endpoint": "http://pdp.example.com/access/v1/evaluations",
        })
    );
}
