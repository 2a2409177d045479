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
    let dir = private_tempdir();
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
            .replace("{*path}", "0/000")
            .replace("{name}", "demo");
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
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let faults = ledger::faults::Faults {
        write: Some(Arc::new(move |_, _| {
            f.load(Ordering::SeqCst).then(|| "disk on fire".to_string())
        })),
        ..Default::default()
    };
    let gate = Gate::open_with_faults(&config, faults).unwrap().gate;
    failing.store(true, Ordering::SeqCst);
    let base = gate.ledger().latest().checkpoint.size;
    let app = gate::router(gate.clone());
    let body = serde_json::json!({
        "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
        "action": "transfer", "target": {"amount": 5}, "idempotency_key": "k",
    })
    .to_string();
    let token = std::fs::read_to_string(dir.path().join("demo.token")).unwrap();
    let post = || {
        Request::builder()
            .method("POST")
            .uri("/v1/decisions")
            .header("authorization", format!("Bearer {}", token.trim()))
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let response = app.clone().oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(err["error"], "unavailable");
    assert!(err.get("decision").is_none());
    assert_eq!(gate.ledger().latest().checkpoint.size, base);
    failing.store(false, Ordering::SeqCst);
    let response = app.oneshot(post()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(gate.ledger().latest().checkpoint.size, base + 1);
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
    assert_eq!(
        Config::load(Some(&path), env).unwrap().listen,
        gate::ListenAddr::Tcp(([0, 0, 0, 0], 9000).into())
    );
    let env = |k: &str| (k == "TOLLGATE_LISTEN").then(|| "unix:/run/g.sock".to_string());
    assert_eq!(
        Config::load(Some(&path), env).unwrap().listen,
        gate::ListenAddr::Unix("/run/g.sock".into())
    );
    let env = |k: &str| (k == "TOLLGATE_LISTEN").then(|| "unix:g.sock".to_string());
    assert!(
        Config::load(Some(&path), env).is_err(),
        "relative socket path"
    );
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
    assert_eq!(c.log_format, gate::LogFormat::Json);
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

/// Every install gets its own origin, kept across restarts; a configured
/// origin that is not the data directory's is refused.
#[test]
fn fresh_installs_get_different_origins_that_they_keep() {
    let open = |dir: &Path, origin: Option<&str>| {
        let config = Config {
            data_dir: dir.join("data"),
            origin: origin.map(str::to_string),
            example_policy: false,
            hash_cache_mb: 0,
            ..Config::default()
        };
        Gate::open(&config).map(|s| (s.gate.log_verifier().name().to_string(), s.origin_generated))
    };
    let (a, b) = (private_tempdir(), private_tempdir());
    let (origin_a, generated) = open(a.path(), None).unwrap();
    assert!(generated);
    let (origin_b, _) = open(b.path(), None).unwrap();
    assert_ne!(origin_a, origin_b, "two installs share an origin");
    assert!(origin_a.contains("/tollgate-"), "{origin_a}");
    assert_eq!(open(a.path(), None).unwrap(), (origin_a.clone(), false));
    assert_eq!(
        open(a.path(), Some(&origin_a)).unwrap(),
        (origin_a.clone(), false)
    );
    let err = open(a.path(), Some("example.com/other")).expect_err("refused");
    assert!(err.to_string().contains(&origin_a), "{err}");
    let c = private_tempdir();
    assert_eq!(
        open(c.path(), Some("example.com/log")).unwrap(),
        ("example.com/log".to_string(), false)
    );
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    let response = app
        .clone()
        .oneshot(r.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Decisions answer to authenticated callers: 401 without, with a wrong,
/// rotated or revoked token (nothing written); a caller claiming an actor
/// it may not speak for gets a signed SILENCE receipt without evaluation;
/// idempotency keys are the caller's own; callers survive a restart.
#[tokio::test]
async fn decisions_need_a_caller_bound_to_the_actor() {
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let started = Gate::open(&config).unwrap();
    let demo_file = started
        .demo_token_file
        .clone()
        .expect("first start makes demo");
    let demo = std::fs::read_to_string(&demo_file)
        .unwrap()
        .trim()
        .to_string();
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let gate = started.gate;
    let app = gate::router(gate.clone());
    let intent = |actor: &str, key: &str| {
        serde_json::json!({
            "actor": {"id": actor, "kind": "agent"}, "surface": "payments",
            "action": "transfer", "target": {"amount": 5, "to": "acct-1"}, "idempotency_key": key,
        })
    };
    let size = || gate.ledger().latest().checkpoint.size;
    let start = size();
    for token in [None, Some("0".repeat(64).as_str()), Some(admin.as_str())] {
        let (status, err) = call(
            &app,
            "POST",
            "/v1/decisions",
            token,
            &intent("agent-treasury", "a"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(err["error"], "unauthorized");
    }
    assert_eq!(size(), start, "refused requests write nothing");

    let (status, ok) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&demo),
        &intent("agent-treasury", "a"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    assert_eq!(ok["decision"], "PERMIT");
    let receipt = protocol::verify_receipt(
        ok["receipt"].as_str().unwrap().as_bytes(),
        gate.gate_verifier(),
    )
    .unwrap();
    assert_eq!(
        receipt.derived["caller"],
        serde_json::json!({"name": "demo", "via": "token"})
    );

    // A caller for one actor only, added through the admin API.
    let (status, added) = call(
        &app,
        "POST",
        "/v1/admin/callers",
        Some(&admin),
        &serde_json::json!({"name": "deployer-sdk", "roles": ["decide"], "actors": ["agent-deployer"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{added}");
    let deployer = added["token"].as_str().unwrap().to_string();
    assert_eq!(deployer.len(), 64);
    let (_, list) = call(
        &app,
        "GET",
        "/v1/admin/callers",
        Some(&admin),
        &serde_json::Value::Null,
    )
    .await;
    assert!(!list.to_string().contains("token_sha256"), "{list}");
    assert_eq!(list["callers"].as_array().unwrap().len(), 2);
    // Only admins manage callers.
    let (status, _) = call(
        &app,
        "GET",
        "/v1/admin/callers",
        Some(&demo),
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a caller without admin");

    let before = size();
    let (status, r) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&deployer),
        &intent("agent-treasury", "a"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["decision"], "SILENCE");
    assert_eq!(r["reason"], "actor_not_bound_to_caller");
    assert_eq!(
        r["policy_version"],
        serde_json::Value::Null,
        "no policy evaluated"
    );
    assert_eq!(size(), before + 1, "the attempt is evidence in the log");
    assert_ne!(
        r["receipt_id"], ok["receipt_id"],
        "idempotency keys are per caller"
    );

    // Rotation: the old token stops working, the new one works.
    let (status, rotated) = call(
        &app,
        "POST",
        "/v1/admin/callers/deployer-sdk/rotate",
        Some(&admin),
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let new = rotated["token"].as_str().unwrap().to_string();
    let (status, _) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&deployer),
        &intent("agent-deployer", "b"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&new),
        &intent("agent-deployer", "b"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Revocation survives a restart; the demo caller is not created twice.
    let (status, _) = call(
        &app,
        "POST",
        "/v1/admin/callers/deployer-sdk/revoke",
        Some(&admin),
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // Every admin change is a governance entry in the log, by whom.
    let governance: Vec<(String, String)> = (0..size())
        .filter_map(|i| {
            match protocol::parse_entry(&gate.ledger().entry(i).unwrap())
                .unwrap()
                .1
            {
                protocol::Entry::Governance(g) => Some((g.action.to_string(), g.by)),
                protocol::Entry::Receipt(_) => None,
            }
        })
        .collect();
    let want = [
        ("policy.publish", "startup"),
        ("policy.activate", "startup"),
        ("caller.add", "startup"),
        ("caller.add", "admin-token"),
        ("caller.rotate", "admin-token"),
        ("caller.revoke", "admin-token"),
    ];
    assert_eq!(
        governance,
        want.map(|(a, b)| (a.to_string(), b.to_string()))
    );
    drop(app);
    drop(gate);
    let reopened = Gate::open(&config).unwrap();
    assert!(reopened.demo_token_file.is_none());
    let app = gate::router(reopened.gate.clone());
    let after = reopened.gate.ledger().latest().checkpoint.size;
    let (status, _) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&new),
        &intent("agent-deployer", "c"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(reopened.gate.ledger().latest().checkpoint.size, after);
    let (status, again) = call(
        &app,
        "POST",
        "/v1/decisions",
        Some(&demo),
        &intent("agent-treasury", "a"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["receipt_id"], ok["receipt_id"]);
    assert_eq!(again["replayed"], true);
}

/// A data directory other users may read is refused, naming the fix.
#[test]
fn a_data_directory_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = private_tempdir();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = Config {
        data_dir: data.clone(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let err = Gate::open(&config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("chmod 700"), "{err}");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert!(Gate::open(&config).is_ok());
}

/// A temporary directory only its owner may enter, as the gate requires of
/// its data directory.
/// Every route that needs a credential refuses none, a wrong one, a revoked
/// one and one without the route's role (401 each, nothing written); the
/// public routes (checkpoints, hash tiles, proofs by index, ops) need none.
#[tokio::test]
async fn every_protected_route_refuses_missing_wrong_revoked_and_roleless_credentials() {
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let gate = Gate::open(&config).unwrap().gate;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let app = gate::router(gate.clone());
    let token = |name: &'static str, roles: &'static [&'static str]| {
        let app = app.clone();
        let admin = admin.clone();
        async move {
            let (status, made) = call(
                &app,
                "POST",
                "/v1/admin/callers",
                Some(&admin),
                &serde_json::json!({"name": name, "roles": roles, "actors": ["agent-*"]}),
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{made}");
            made["token"].as_str().unwrap().to_string()
        }
    };
    let revoked = token("everything", &["decide", "read", "admin"]).await;
    let reader = token("reader", &["read"]).await;
    let decider = token("decider", &["decide"]).await;
    let (status, _) = call(
        &app,
        "POST",
        "/v1/admin/callers/everything/revoke",
        Some(&admin),
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let size = gate.ledger().latest().checkpoint.size;
    let wrong = "0".repeat(64);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{receipt_id}", "00")
            .replace("{size}", "1")
            .replace("{version}", &format!("sha256:{}", "0".repeat(64)))
            .replace("{name}", "reader");
        let is = |p: &str| *path == p;
        // The route's role, and a live caller without it.
        let (uri, without) = if is("/v1/whoami") {
            // Any live caller: the reader is answered, as itself.
            let (status, body) = call(
                &app,
                method,
                &concrete,
                Some(&reader),
                &serde_json::Value::Null,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["name"], "reader");
            assert_eq!(body["roles"], serde_json::json!(["read"]));
            assert!(body.get("token_sha256").is_none(), "{body}");
            (concrete, Some(wrong.as_str()))
        } else if path.starts_with("/v1/approvals") {
            // Approvers' routes: the decider lacks `approve` (reading a
            // request it asked for is its own, tested in the e2e suite).
            let uri = concrete.replace("{id}", "ap-00000000000000000000000000000000");
            if *method == "GET" && *path == "/v1/approvals/{id}" {
                // Any live caller is identified; a stranger's request is not found.
                for (what, t) in [("no token", None), ("a wrong token", Some(wrong.as_str()))] {
                    let (status, body) =
                        call(&app, method, &uri, t, &serde_json::Value::Null).await;
                    assert_eq!(
                        status,
                        StatusCode::UNAUTHORIZED,
                        "{method} {uri} with {what}: {body}"
                    );
                }
                continue;
            }
            (uri, Some(decider.as_str()))
        } else if is("/v1/permits/{receipt_id}/redeem") {
            // Redeeming needs `redeem`, which the decider lacks.
            (concrete, Some(decider.as_str()))
        } else if is("/v1/decisions") || is("/v1/evaluations") || path.starts_with("/access/") {
            (concrete, Some(reader.as_str()))
        } else if path.starts_with("/v1/admin/")
            || is("/v1/receipts/{receipt_id}")
            || is("/v1/policies/{version}")
            || is("/v1/contracts/{version}")
            || is("/v1/replay")
        {
            // Admin and read routes: the decider has neither role.
            (concrete, Some(decider.as_str()))
        } else if is("/log/tile/{*path}") {
            // Entry bundles reveal decisions; hash tiles are public (below).
            (
                concrete.replace("{*path}", "entries/000.p/1"),
                Some(decider.as_str()),
            )
        } else {
            (format!("{concrete}?index=0&old=1&new=1"), None)
        };
        let Some(without) = without else {
            let (status, body) = call(&app, method, &uri, None, &serde_json::Value::Null).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
            continue;
        };
        // Who the caller is fails: 401; a known caller without the role: 403.
        let roleless = if is("/v1/whoami") {
            (StatusCode::UNAUTHORIZED, "unauthorized")
        } else {
            (StatusCode::FORBIDDEN, "forbidden")
        };
        for (what, t, (want, code)) in [
            ("no token", None, (StatusCode::UNAUTHORIZED, "unauthorized")),
            (
                "a wrong token",
                Some(wrong.as_str()),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            (
                "a revoked caller",
                Some(revoked.as_str()),
                (StatusCode::UNAUTHORIZED, "unauthorized"),
            ),
            ("a caller without the role", Some(without), roleless),
        ] {
            let (status, body) = call(&app, method, &uri, t, &serde_json::Value::Null).await;
            assert_eq!(status, want, "{method} {uri} with {what}: {body}");
            if !path.starts_with("/access/") {
                // AuthZEN's errors are a message string (its spec), ours a code.
                assert_eq!(body["error"], code, "{method} {uri} with {what}");
            }
        }
    }
    let (status, _) = call(
        &app,
        "GET",
        "/log/tile/0/000.p/1",
        None,
        &serde_json::Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "hash tiles are public");
    assert_eq!(
        gate.ledger().latest().checkpoint.size,
        size,
        "nothing was written"
    );
}

/// Admin bodies are strict JSON too: a member named twice is 400, naming it,
/// and nothing is written.
#[tokio::test]
async fn admin_bodies_naming_a_member_twice_are_400() {
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let gate = Gate::open(&config).unwrap().gate;
    let admin = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let app = gate::router(gate.clone());
    let size = gate.ledger().latest().checkpoint.size;
    let body = r#"{"name": "ops", "roles": ["decide"], "actors": ["agent-*"], "name": "admin2"}"#;
    let request = Request::builder()
        .method("POST")
        .uri("/v1/admin/callers")
        .header("authorization", format!("Bearer {admin}"))
        .body(Body::from(body))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let err: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("duplicate member /name"),
        "{err}"
    );
    assert_eq!(gate.ledger().latest().checkpoint.size, size);
}

fn private_tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    dir
}

/// `POST /v1/evaluations` answers what `POST /v1/decisions` would decide
/// (the policy, the caller's binding, the contract) and writes nothing.
#[tokio::test]
async fn evaluations_decide_as_decisions_do_and_write_nothing() {
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        hash_cache_mb: 0,
        ..Config::default()
    };
    let started = Gate::open(&config).unwrap();
    let demo = std::fs::read_to_string(started.demo_token_file.clone().unwrap())
        .unwrap()
        .trim()
        .to_string();
    let gate = started.gate;
    let app = gate::router(gate.clone());
    let intent = |actor: &str, amount: u64| {
        serde_json::json!({
            "actor": {"id": actor, "kind": "agent"}, "surface": "payments",
            "action": "transfer", "target": {"amount": amount, "to": "acct-1"},
            "idempotency_key": format!("{actor}-{amount}"),
        })
    };
    let size = gate.ledger().latest().checkpoint.size;
    let active = gate.active_policy().unwrap().version.clone();
    let mut decided = Vec::new();
    for (actor, amount) in [
        ("agent-treasury", 5),
        ("agent-treasury", 50_000_000),
        ("nobody", 5),
    ] {
        let (status, e) = call(
            &app,
            "POST",
            "/v1/evaluations",
            Some(&demo),
            &intent(actor, amount),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["logged"], false);
        assert_eq!(
            e["policy_version"],
            if actor == "nobody" {
                serde_json::Value::Null
            } else {
                serde_json::json!(active)
            }
        );
        decided.push((e["decision"].clone(), e["reason"].clone()));
    }
    assert_eq!(
        gate.ledger().latest().checkpoint.size,
        size,
        "evaluations write nothing"
    );
    assert_eq!(decided[2].1, "actor_not_bound_to_caller");
    for (k, (actor, amount)) in [
        ("agent-treasury", 5),
        ("agent-treasury", 50_000_000),
        ("nobody", 5),
    ]
    .into_iter()
    .enumerate()
    {
        let (status, d) = call(
            &app,
            "POST",
            "/v1/decisions",
            Some(&demo),
            &intent(actor, amount),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(
            (d["decision"].clone(), d["reason"].clone()),
            decided[k],
            "{actor} {amount}"
        );
    }
    assert_eq!(decided[0].0, "PERMIT");
    let (status, bad) = call(
        &app,
        "POST",
        "/v1/evaluations",
        Some(&demo),
        &serde_json::json!({"actor": {"id": "agent-treasury", "kind": "agent"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
}

/// The portal's page, script and style are served with a strict
/// Content-Security-Policy, and `/portal` leads to `/portal/`.
#[tokio::test]
async fn the_portal_is_served_with_a_strict_content_security_policy() {
    let dir = private_tempdir();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let app = gate::router(Gate::open(&config).unwrap().gate);
    for (path, content_type) in [
        ("/portal/", "text/html"),
        (
            "/portal/receipts/0123456789abcdef0123456789abcdef",
            "text/html",
        ),
        ("/portal/app.js", "text/javascript"),
        ("/portal/portal.css", "text/css"),
    ] {
        let r = app
            .clone()
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let r = app
        .oneshot(
            Request::builder()
                .uri("/portal")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["location"], "/portal/");
}
