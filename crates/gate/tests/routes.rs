//! The router without a socket: every route is in schemas/openapi.json and
//! every OpenAPI path is a route that answers (not the router's 404 or 405).

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gate::{Config, Gate, ROUTES};
use http_body_util::BodyExt;
use tower::ServiceExt;

fn openapi_routes() -> BTreeSet<(String, String)> {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../schemas/openapi.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for (p, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), p.clone()));
        }
    }
    out
}

#[test]
fn openapi_documents_exactly_the_routes() {
    let routes: BTreeSet<(String, String)> = ROUTES
        .iter()
        // OpenAPI has no wildcard segments; the tile path is one `{path}` parameter.
        .map(|(m, p)| (m.to_string(), p.replace("{*path}", "{path}")))
        .collect();
    let documented = openapi_routes();
    assert_eq!(
        routes.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "routes missing from openapi.json"
    );
    assert_eq!(
        documented.difference(&routes).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "openapi.json documents routes that do not exist"
    );
}

#[tokio::test]
async fn every_route_is_served_by_the_router() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let gate = Gate::open(&config).unwrap().gate;
    let app = gate::router(gate);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{receipt_id}", "00")
            .replace("{size}", "0")
            .replace("{version}", &format!("sha256:{}", "0".repeat(64)))
            .replace("{*path}", "0/000");
        let request = Request::builder()
            .method(*method)
            .uri(format!("{concrete}?index=0&old=1"))
            .body(Body::empty())
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        // The router's own 404/405 have empty bodies; every handler's error has a body.
        assert!(
            !(matches!(
                status,
                StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
            ) && body.is_empty()),
            "{method} {path}: the router does not serve it ({status})"
        );
    }
    let unknown = Request::builder()
        .uri("/v1/nothing")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(unknown).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

/// A log that cannot commit: 503, no decision claimed, nothing in the log;
/// once the fault clears, the same request decides normally.
#[tokio::test]
async fn a_failed_append_is_503_and_claims_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let failing = Arc::new(AtomicBool::new(true));
    let f = failing.clone();
    let fault: ledger::WriteFault =
        Arc::new(move |_, _| f.load(Ordering::SeqCst).then(|| "disk on fire".to_string()));
    let gate = Gate::open_with_fault(&config, Some(fault)).unwrap().gate;
    let app = gate::router(gate.clone());
    let body = serde_json::json!({
        "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
        "action": "transfer", "target": {"amount": 5}, "idempotency_key": "k",
    })
    .to_string();
    let post = || {
        Request::builder()
            .method("POST")
            .uri("/v1/decisions")
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let response = app.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(err["error"], "unavailable");
    assert!(err.get("decision").is_none());
    assert_eq!(gate.ledger().latest().checkpoint.size, 0);
    failing.store(false, Ordering::SeqCst);
    let response = app.oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gate.ledger().latest().checkpoint.size, 1);
}

#[test]
fn the_example_config_file_is_the_defaults() {
    let path = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../tollgate.example.toml");
    let c = Config::load(Some(&path), |_| None).unwrap();
    let d = Config::default();
    assert_eq!(
        (c.mode, c.listen, &c.data_dir, &c.origin, &c.gate_key_name),
        (d.mode, d.listen, &d.data_dir, &d.origin, &d.gate_key_name)
    );
    assert_eq!(
        (
            c.batch_max,
            c.batch_wait_us,
            c.hash_cache_mb,
            c.eval_timeout_ms,
            c.example_policy
        ),
        (
            d.batch_max,
            d.batch_wait_us,
            d.hash_cache_mb,
            d.eval_timeout_ms,
            d.example_policy
        )
    );
    // Environment overrides the file; sidecar refuses a public address.
    let env = |k: &str| (k == "TOLLGATE_LISTEN").then(|| "0.0.0.0:9000".to_string());
    let err = Config::load(Some(&path), env).unwrap_err().to_string();
    assert!(err.contains("sidecar"), "{err}");
    let env = |k: &str| match k {
        "TOLLGATE_LISTEN" => Some("0.0.0.0:9000".to_string()),
        "TOLLGATE_MODE" => Some("central".to_string()),
        _ => None,
    };
    assert_eq!(Config::load(Some(&path), env).unwrap().listen.port(), 9000);
}

#[test]
fn the_embedded_examples_are_the_example_directories() {
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/policies");
    for (embedded, name) in [
        (gate::example_bundle(), "rego"),
        (gate::example_cedar_bundle(), "cedar"),
    ] {
        let on_disk = policy::Bundle::from_dir(&dir.join(name)).unwrap();
        assert_eq!(embedded.version(), on_disk.version(), "{name}");
    }
}

/// Every field of `Config` has an environment override and a line in the
/// example file, and a bad or unknown value names its variable.
#[test]
fn every_setting_has_an_environment_override() {
    // serde names every field it expects when it meets an unknown one.
    let err = toml::from_str::<Config>("no_such_setting = 1")
        .unwrap_err()
        .to_string();
    let fields: BTreeSet<String> = err
        .split("expected one of ")
        .nth(1)
        .expect("serde lists the fields")
        .split(", ")
        .map(|f| f.trim().trim_matches('`').to_string())
        .collect();
    let table: BTreeSet<String> = gate::config::SETTINGS
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(fields, table, "config::SETTINGS is the fields of Config");
    let example = std::fs::read_to_string(
        Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
            .join("../../tollgate.example.toml"),
    )
    .unwrap();
    for s in &table {
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{s} ="))),
            "tollgate.example.toml lacks {s}"
        );
    }
    let one = |var: &'static str, value: &'static str| {
        move |k: &str| (k == var).then(|| value.to_string())
    };
    let c = Config::load(None, one("TOLLGATE_WITNESS_INTERVAL_MS", "25")).unwrap();
    assert_eq!(c.witness_interval_ms, 25);
    let c = Config::load(None, one("TOLLGATE_WITNESS_REFRESH_S", "7")).unwrap();
    assert_eq!(c.witness_refresh_s, 7);
    let c = Config::load(None, one("TOLLGATE_LOG_FORMAT", "json")).unwrap();
    assert_eq!(c.log_format, "json");
    for (var, value) in [
        ("TOLLGATE_BATCH_MAX", "many"),
        ("TOLLGATE_EXAMPLE_POLICY", "yes"),
        ("TOLLGATE_MODE", "cloud"),
        ("TOLLGATE_LISTEN", "localhost"),
    ] {
        let err = Config::load(None, one(var, value)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{var}=")), "{err}");
    }
}
