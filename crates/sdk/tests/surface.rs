//! The tool's own service refuses every call that does not carry a fresh,
//! unused PERMIT for exactly that call; its handler runs once per permit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use note::{SignerKey, VerifierKey};
use sdk::surface::{Call, PermitLayer, SurfaceVerifier, PERMIT_HEADER};
use sdk::{Client, Trust};
use serde_json::{json, Value};
use testkit::Proc;
use tower::ServiceExt as _;

fn key(data: &std::path::Path, file: &str) -> VerifierKey {
    let skey = std::fs::read_to_string(data.join(file)).unwrap();
    SignerKey::parse(skey.trim()).unwrap().verifier().clone()
}

fn intent(amount: u64, key: &str) -> Value {
    json!({
        "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
        "action": "transfer", "target": {"amount": amount, "to": "acct-9"}, "idempotency_key": key,
    })
}

/// The payments service: POST /transfer, body = the target; surface fixed,
/// action from the route.
fn service(verifier: Arc<SurfaceVerifier>, served: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route(
            "/transfer",
            post(move || {
                let served = served.clone();
                async move {
                    served.fetch_add(1, Ordering::SeqCst);
                    "paid"
                }
            }),
        )
        .layer(PermitLayer::new(verifier, |parts, body| Call {
            surface: "payments".into(),
            action: parts.uri.path().trim_start_matches('/').into(),
            target: body.clone(),
        }))
}

async fn call(app: &Router, permit: Option<&str>, target: &Value) -> (StatusCode, String) {
    let mut r = Request::post("/transfer").header("content-type", "application/json");
    if let Some(p) = permit {
        r = r.header(PERMIT_HEADER, p);
    }
    let response = app
        .clone()
        .oneshot(r.body(Body::from(target.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A gate on a fresh data directory, its keys, the demo caller's token
/// and a client as that caller.
struct Started {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    gate: Proc,
    trust: Trust,
    token: String,
    client: Client,
}

fn started() -> Started {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gate = Proc::start(testkit::tollgate_serve(&data), testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    let client = Client::new(&gate.url, trust.clone()).with_token(&token);
    Started {
        dir,
        data,
        gate,
        trust,
        token,
        client,
    }
}

#[tokio::test]
async fn the_surface_serves_only_a_fresh_unused_permit_for_this_call() {
    let Started {
        dir: _dir,
        data,
        gate,
        trust,
        token,
        client,
    } = started();
    let served = Arc::new(AtomicUsize::new(0));
    let verifier = Arc::new(SurfaceVerifier::new(trust.clone()));
    let app = service(verifier.clone(), served.clone());
    let target = json!({"amount": 500, "to": "acct-9"});

    let (c, i) = (client.clone(), intent(500, "s1"));
    let permit = tokio::task::spawn_blocking(move || c.decide(&i))
        .await
        .unwrap()
        .unwrap();
    let header = permit.header_value();
    // The permit for exactly this call: served once.
    assert_eq!(
        call(&app, Some(&header), &target).await,
        (StatusCode::OK, "paid".into())
    );
    // Replayed, missing, or for another amount: refused.
    let (status, body) = call(&app, Some(&header), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("used before"), "{body}");
    let (status, body) = call(&app, None, &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("no permit"), "{body}");
    let (c, i) = (client.clone(), intent(500, "s2"));
    let other = tokio::task::spawn_blocking(move || c.decide(&i))
        .await
        .unwrap()
        .unwrap();
    let (status, body) = call(
        &app,
        Some(&other.header_value()),
        &json!({"amount": 501, "to": "acct-9"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("another call"), "{body}");
    // A DENY receipt (the gate's raw answer, as a buggy agent might send it).
    let url = format!("{}/v1/decisions", gate.url);
    let deny = tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .set("authorization", &format!("Bearer {}", token.trim()))
            .send_string(&intent(5_000_000, "s3").to_string())
            .unwrap()
            .into_string()
            .unwrap()
    })
    .await
    .unwrap();
    let deny_header = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(deny.as_bytes());
    let (status, body) = call(
        &app,
        Some(&deny_header),
        &json!({"amount": 5_000_000, "to": "acct-9"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("DENY"), "{body}");
    // A SILENCE receipt (an unknown actor) likewise.
    let (url, token2) = (
        format!("{}/v1/decisions", gate.url),
        std::fs::read_to_string(data.join("demo.token")).unwrap(),
    );
    let silence = tokio::task::spawn_blocking(move || {
        let mut i = intent(500, "s4");
        i["actor"]["id"] = "agent-unknown".into();
        ureq::post(&url)
            .set("authorization", &format!("Bearer {}", token2.trim()))
            .send_string(&i.to_string())
            .unwrap()
            .into_string()
            .unwrap()
    })
    .await
    .unwrap();
    let silence_header =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(silence.as_bytes());
    let (status, body) = call(&app, Some(&silence_header), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("SILENCE"), "{body}");
    // Forged: one byte of the receipt's signature changed.
    let mut forged: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(other.header_value())
            .unwrap(),
    )
    .unwrap();
    let receipt = forged["receipt"].as_str().unwrap().to_string();
    let at = receipt.rfind(' ').unwrap() + 3;
    let mut bytes = receipt.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    forged["receipt"] = String::from_utf8(bytes).unwrap().into();
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string());
    let (status, body) = call(&app, Some(&forged), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("does not verify"), "{body}");
    // Garbage in the header.
    let (status, body) = call(&app, Some("not-a-permit!"), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("malformed"), "{body}");
    // Stale: a verifier with a 50 ms window refuses a permit 100 ms old.
    let strict = Arc::new(SurfaceVerifier::new(trust).with_max_age(Duration::from_millis(50)));
    let strict_app = service(strict.clone(), served.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = call(&strict_app, Some(&other.header_value()), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("not fresh"), "{body}");
    assert_eq!(
        served.load(Ordering::SeqCst),
        1,
        "the handler ran once, for the one good permit"
    );
    // Memory: only ids that are still fresh are remembered.
    assert_eq!(verifier.remembered(), 1);
    assert_eq!(strict.remembered(), 0);
}

/// The permit header is byte-for-byte the Python SDK's: both produce the
/// `permit_header` of the shared vectors (tests/vectors/tollgate) from the
/// same recorded PERMIT answer.
#[test]
fn the_permit_header_is_the_python_sdks_byte_for_byte() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/tollgate/decisions.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let trust = sdk::Trust::new(
        note::VerifierKey::parse(v["log_key"].as_str().unwrap()).unwrap(),
        note::VerifierKey::parse(v["gate_key"].as_str().unwrap()).unwrap(),
    );
    let answer = v["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["decision"] == "PERMIT")
        .unwrap();
    let receipt = protocol::parse_receipt(answer["receipt"].as_str().unwrap().as_bytes())
        .unwrap()
        .1;
    let request = protocol::DecisionRequest::from_value(receipt.request).unwrap();
    let permit = sdk::verify_answer(&trust, &request, answer.to_string().as_bytes()).unwrap();
    assert_eq!(permit.header_value(), v["permit_header"].as_str().unwrap());
}

/// A caller with the `redeem` role, added through the admin API: its token.
fn redeem_caller(gate: &Proc, data: &std::path::Path, name: &str) -> String {
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let added: Value = ureq::post(&format!("{}/v1/admin/callers", gate.url))
        .set("authorization", &format!("Bearer {}", admin.trim()))
        .send_string(&json!({"name": name, "roles": ["redeem"]}).to_string())
        .unwrap()
        .into_json()
        .unwrap();
    added["token"].as_str().unwrap().to_string()
}

/// Single use across replicas: two services (two processes of one tool, or
/// one restarted) each serve a permit once with the in-process default;
/// redeeming at the gate, only the first serves it, the second is refused
/// naming the first redemption, and the redemption is an entry in the log.
/// A redemption the gate refuses (no redeem role) fails closed; the Python
/// tests add an unreachable gate. And bodies are strict: a
/// permit for 500 never serves a body that also says 999999.
#[tokio::test]
async fn redeemed_at_the_gate_a_permit_runs_once_across_replicas_and_bodies_are_strict() {
    let Started {
        dir: _dir,
        data,
        gate,
        trust,
        token,
        client,
    } = started();
    let decide = |key: &'static str| {
        let (c, i) = (client.clone(), intent(500, key));
        async move {
            tokio::task::spawn_blocking(move || c.decide(&i))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let target = json!({"amount": 500, "to": "acct-9"});
    let served = Arc::new(AtomicUsize::new(0));
    let replica = |redeemer: Option<Arc<dyn sdk::surface::Redeemer>>| {
        let v = SurfaceVerifier::new(trust.clone());
        let v = match redeemer {
            Some(r) => v.with_redeemer(r),
            None => v,
        };
        service(Arc::new(v), served.clone())
    };

    // The default is per process: two replicas serve the same permit twice.
    let permit = decide("r1").await;
    let (a, b) = (replica(None), replica(None));
    assert_eq!(
        call(&a, Some(&permit.header_value()), &target).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&b, Some(&permit.header_value()), &target).await.0,
        StatusCode::OK
    );

    // Redeemed at the gate: once, whichever replica gets it.
    let redeemer_token = redeem_caller(&gate, &data, "payments-svc");
    let at_gate = || -> Option<Arc<dyn sdk::surface::Redeemer>> {
        Some(Arc::new(sdk::surface::AtGate::new(
            Client::new(&gate.url, trust.clone()).with_token(&redeemer_token),
        )))
    };
    let (a, b) = (replica(at_gate()), replica(at_gate()));
    let permit = decide("r2").await;
    let size = gate_size(&gate.url).await;
    assert_eq!(
        call(&a, Some(&permit.header_value()), &target).await.0,
        StatusCode::OK
    );
    assert_eq!(
        gate_size(&gate.url).await,
        size + 1,
        "the redemption is an entry"
    );
    for app in [&b, &a] {
        let (status, body) = call(app, Some(&permit.header_value()), &target).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            body.contains("already redeemed") && body.contains("payments-svc"),
            "{body}"
        );
    }
    // A caller without the role cannot redeem: refused, never served.
    let demo = replica(Some(Arc::new(sdk::surface::AtGate::new(
        Client::new(&gate.url, trust.clone()).with_token(&token),
    ))));
    let (status, body) = call(&demo, Some(&decide("r3").await.header_value()), &target).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body.contains("could not be redeemed") && body.contains("redeem role"),
        "{body}"
    );

    // Strict bodies: a duplicate `amount` is refused before anything else.
    let permit = decide("r4").await;
    let response = a
        .clone()
        .oneshot(
            Request::post("/transfer")
                .header("content-type", "application/json")
                .header(PERMIT_HEADER, permit.header_value())
                .body(Body::from(
                    r#"{"amount": 999999, "to": "acct-9", "amount": 500}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        call(&a, Some(&permit.header_value()), &target).await.0,
        StatusCode::OK
    );
    assert_eq!(served.load(Ordering::SeqCst), 4);
}

/// The size of the gate's latest checkpoint.
async fn gate_size(url: &str) -> u64 {
    let url = format!("{url}/log/checkpoint");
    tokio::task::spawn_blocking(move || {
        let text = ureq::get(&url).call().unwrap().into_string().unwrap();
        text.lines().nth(1).unwrap().parse().unwrap()
    })
    .await
    .unwrap()
}

/// A surface whose contract marks fields sensitive: the receipt holds only
/// commitments, the permit carries their openings, and the call is held
/// to the opened values.
#[tokio::test]
async fn a_permit_for_committed_fields_is_held_to_their_openings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut cmd = testkit::tollgate_serve(&data);
    cmd.env("TOLLGATE_EXAMPLE_CONTRACT", "true");
    let gate = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    let client = Client::new(&gate.url, trust.clone()).with_token(&token);
    let target = json!({"record": "acme", "customer": "Ada Lovelace"});
    let request = json!({
        "actor": {"id": "agent-deployer", "kind": "agent"}, "surface": "crm",
        "action": "update", "target": target, "idempotency_key": "crm-1",
    });
    let permit = tokio::task::spawn_blocking(move || client.decide(&request))
        .await
        .unwrap()
        .unwrap();
    assert!(!permit.response().receipt.contains("Lovelace"));
    let verifier = SurfaceVerifier::new(trust);
    let call = |target: Value| Call {
        surface: "crm".into(),
        action: "update".into(),
        target,
    };
    let now = std::time::SystemTime::now();
    // Another customer than the one committed: refused.
    let other = verifier.check(
        Some(&permit.header_value()),
        &call(json!({"record": "acme", "customer": "Grace Hopper"})),
        now,
    );
    assert!(
        matches!(&other, Err(sdk::surface::Refused::Mismatch(m)) if m.contains("Grace Hopper")),
        "{other:?}"
    );
    // Without the opening the permit cannot show it names this call.
    let mut stripped = permit.response().clone();
    stripped.openings = None;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&stripped).unwrap());
    let bare = verifier.check(Some(&header), &call(target.clone()), now);
    assert!(
        matches!(&bare, Err(sdk::surface::Refused::Mismatch(m)) if m.contains("no opening")),
        "{bare:?}"
    );
    // The call it names: served.
    let receipt = verifier
        .check(Some(&permit.header_value()), &call(target), now)
        .unwrap();
    assert_eq!(receipt.derived["committed"], json!(["/target/customer"]));
}
