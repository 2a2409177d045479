//! Both engines on the example bundles, publish-time refusals, and the
//! fail-closed edges of the contract.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use policy::{Bundle, CompiledPolicy, Decision, Engine, Error, EvalInput, Manifest};
use serde_json::{json, Value};

fn examples() -> PathBuf {
    Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/policies")
}

fn compile(dir: &str) -> CompiledPolicy {
    CompiledPolicy::compile(&Bundle::from_dir(&examples().join(dir)).unwrap()).unwrap()
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time like 2026-11-25T12:00:00Z.
fn ns(rfc3339: &str) -> i64 {
    // Days from civil date (Howard Hinnant's algorithm), enough for test times.
    let (date, time) = rfc3339.trim_end_matches('Z').split_once('T').unwrap();
    let d: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let t: Vec<i64> = time.split(':').map(|x| x.parse().unwrap()).collect();
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400) + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000_000
}

fn input(policy: &CompiledPolicy, request: Value, at: &str) -> EvalInput {
    let actor = request["actor"]["id"].as_str().unwrap_or("").to_string();
    EvalInput {
        derived: json!({"decided_at": at, "decided_at_ns": ns(at), "actor": policy.actor_attributes(&actor)}),
        request,
    }
}

fn req(actor: &str, surface: &str, action: &str, target: Value, context: Value) -> Value {
    json!({
        "actor": {"id": actor, "kind": "agent"},
        "surface": surface, "action": action, "target": target, "context": context,
        "idempotency_key": "k-1"
    })
}

const NORMAL: &str = "2026-11-25T12:00:00Z";
const FROZEN: &str = "2026-12-24T09:30:00Z";

#[test]
fn both_engines_give_the_same_decision_for_every_case() {
    let rego = compile("rego");
    let cedar = compile("cedar");
    let cases: Vec<(&str, Value, &str, Decision)> = vec![
        (
            "permit: small transfer",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": 500, "to": "acct-9"}),
                json!({}),
            ),
            NORMAL,
            Decision::Permit,
        ),
        (
            "silence asking for an approval: over threshold",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": 50_000}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence asking for an approval: the agent's own word is none",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": 50_000}),
                json!({"dual_control_approved": true}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "deny: over the ceiling",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": 5_000_000}),
                json!({}),
            ),
            NORMAL,
            Decision::Deny,
        ),
        (
            "permit: exactly at threshold",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": 10_000}),
                json!({}),
            ),
            NORMAL,
            Decision::Permit,
        ),
        (
            "silence: unknown actor",
            req(
                "agent-nobody",
                "payments",
                "transfer",
                json!({"amount": 10}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: unknown actor over threshold",
            req(
                "agent-nobody",
                "payments",
                "transfer",
                json!({"amount": 50_000}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: deploy under freeze",
            req(
                "agent-deployer",
                "deploy",
                "deploy",
                json!({"service": "api"}),
                json!({}),
            ),
            FROZEN,
            Decision::Silence,
        ),
        (
            "permit: deploy outside freeze",
            req(
                "agent-deployer",
                "deploy",
                "deploy",
                json!({"service": "api"}),
                json!({}),
            ),
            NORMAL,
            Decision::Permit,
        ),
        (
            "permit: crm under freeze is not change-sensitive",
            req(
                "agent-deployer",
                "crm",
                "update",
                json!({"record": 7}),
                json!({}),
            ),
            FROZEN,
            Decision::Permit,
        ),
        (
            "silence: suspended actor",
            req(
                "agent-suspended",
                "payments",
                "transfer",
                json!({"amount": 10}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: suspended actor over threshold (no approval asked)",
            req(
                "agent-suspended",
                "payments",
                "transfer",
                json!({"amount": 50_000}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: surface not allowed",
            req("agent-treasury", "deploy", "deploy", json!({}), json!({})),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: amount as a string",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({"amount": "5"}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: transfer without amount",
            req(
                "agent-treasury",
                "payments",
                "transfer",
                json!({}),
                json!({}),
            ),
            NORMAL,
            Decision::Silence,
        ),
        (
            "silence: unknown surface",
            req("agent-treasury", "mail", "send", json!({}), json!({})),
            NORMAL,
            Decision::Silence,
        ),
        ("silence: empty input", json!({}), NORMAL, Decision::Silence),
    ];
    for (name, request, at, want) in cases {
        for (engine, p) in [("rego", &rego), ("cedar", &cedar)] {
            let got = p.evaluate(&input(p, request.clone(), at));
            assert_eq!(got.decision, want, "{engine}: {name}: {}", got.reason);
            assert!(!got.reason.is_empty());
            // Both ask for one approval exactly where a person can help.
            let asks = name.starts_with("silence asking");
            assert_eq!(got.approval.is_some(), asks, "{engine}: {name}");
        }
    }
    // With an approval attached: over the threshold is permitted, over the
    // ceiling still denied.
    let big = |amount: i64| {
        req(
            "agent-treasury",
            "payments",
            "transfer",
            json!({ "amount": amount }),
            json!({}),
        )
    };
    for (engine, p) in [("rego", &rego), ("cedar", &cedar)] {
        for (amount, want) in [(50_000, Decision::Permit), (5_000_000, Decision::Deny)] {
            let mut i = input(p, big(amount), NORMAL);
            i.derived["approvals"] = json!([{"by": "alice", "entry": 7}]);
            let got = p.evaluate(&i);
            assert_eq!(got.decision, want, "{engine} {amount}: {}", got.reason);
        }
    }
}

/// The example policies for MCP tools (examples/policies/mcp-rego and
/// mcp-cedar) mean the same: intents as `tollgate mcp` builds them.
#[test]
fn both_mcp_examples_give_the_same_decision_for_every_case() {
    let rego = compile("mcp-rego");
    let cedar = compile("mcp-cedar");
    let tool = |server: &str, action: &str, hints: Value| {
        let mut context = json!({"tool": action, "client": "pytest 1"});
        for (k, v) in hints.as_object().unwrap() {
            context[k] = v.clone();
        }
        req(
            "agent-mcp",
            server,
            action,
            json!({"message": "hi"}),
            context,
        )
    };
    let cases = [
        (
            "read-only tool of a known server",
            tool("everything", "echo", json!({"read_only": true})),
            Decision::Permit,
        ),
        (
            "named tool",
            tool("notes", "write_note", json!({"read_only": false})),
            Decision::Permit,
        ),
        (
            "never get-env",
            tool("everything", "get-env", json!({"read_only": true})),
            Decision::Deny,
        ),
        (
            "destructive",
            tool("notes", "erase_everything", json!({"destructive": true})),
            Decision::Deny,
        ),
        (
            "not read-only, not named",
            tool(
                "everything",
                "toggle-simulated-logging",
                json!({"read_only": false}),
            ),
            Decision::Silence,
        ),
        (
            "no annotations",
            tool("notes", "erase_everything", json!({})),
            Decision::Silence,
        ),
        (
            "unknown server",
            tool("other", "echo", json!({"read_only": true})),
            Decision::Silence,
        ),
    ];
    for (what, request, want) in cases {
        for (engine, p) in [("rego", &rego), ("cedar", &cedar)] {
            let got = p.evaluate(&input(p, request.clone(), NORMAL));
            assert_eq!(got.decision, want, "{engine}: {what}: {}", got.reason);
        }
    }
}

#[test]
fn versions_are_content_addresses() {
    let a = Bundle::from_dir(&examples().join("rego")).unwrap();
    let b = Bundle::from_dir(&examples().join("rego")).unwrap();
    assert_eq!(a.version(), b.version());
    assert!(a.version().starts_with("sha256:") && a.version().len() == 71);
    assert_ne!(
        a.version(),
        Bundle::from_dir(&examples().join("cedar"))
            .unwrap()
            .version()
    );
    // The same content from an archive, in another order with other timestamps.
    let mut files: Vec<(String, Vec<u8>)> = a
        .files()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    files.push((
        "tollgate.json".into(),
        serde_json::to_vec(a.manifest()).unwrap(),
    ));
    files.reverse();
    let archived = Bundle::from_tar_gz(&tar_gz(&files, 1_234_567), None).unwrap();
    assert_eq!(archived.version(), a.version());
    // One byte more anywhere is another version.
    let mut changed = a.files().clone();
    changed.get_mut("data.json").unwrap().push(b'\n');
    assert_ne!(
        Bundle::new(a.manifest().clone(), changed)
            .unwrap()
            .version(),
        a.version()
    );
}

fn tar_gz(files: &[(String, Vec<u8>)], mtime: u64) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        // opa build writes absolute names ("/data.json"), which tar::Builder's
        // path setters refuse; write the name field directly.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        h.set_cksum();
        builder.append(&h, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn opa_bundles_are_accepted_as_opa_build_writes_them() {
    let dir = examples().join("rego");
    let rego = std::fs::read(dir.join("policy.rego")).unwrap();
    let data: Value =
        serde_json::from_slice(&std::fs::read(dir.join("data.json")).unwrap()).unwrap();
    // opa build: /.manifest, /<path>.rego, data.json documents nested by path.
    let manifest = json!({"revision": "", "roots": [""], "metadata": {"tollgate_entrypoint": "tollgate/example/decision"}});
    let files = vec![
        (
            "/.manifest".to_string(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
        ("/example/policy.rego".to_string(), rego),
        (
            "/actors/data.json".to_string(),
            serde_json::to_vec(&data["actors"]).unwrap(),
        ),
        (
            "/data.json".to_string(),
            serde_json::to_vec(&json!({"freeze": data["freeze"], "limits": data["limits"]}))
                .unwrap(),
        ),
    ];
    let bundle = Bundle::from_tar_gz(&tar_gz(&files, 0), None).unwrap();
    assert_eq!(
        bundle.manifest().entrypoint.as_deref(),
        Some("data.tollgate.example.decision")
    );
    let opa = CompiledPolicy::compile(&bundle).unwrap();
    let r = req(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 5_000_000}),
        json!({}),
    );
    assert_eq!(
        opa.evaluate(&input(&opa, r.clone(), NORMAL)).decision,
        Decision::Deny
    );
    let r = req(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 5}),
        json!({}),
    );
    assert_eq!(
        opa.evaluate(&input(&opa, r, NORMAL)).decision,
        Decision::Permit
    );
    // Without metadata the entrypoint comes from the caller; without either it is refused.
    let bare: Vec<_> = files[1..].to_vec();
    assert!(Bundle::from_tar_gz(&tar_gz(&bare, 0), None).is_err());
    let b = Bundle::from_tar_gz(&tar_gz(&bare, 0), Some("data.tollgate.example.decision")).unwrap();
    CompiledPolicy::compile(&b).unwrap();
}

fn rego_bundle(src: &str, entrypoint: &str) -> Result<CompiledPolicy, Error> {
    let files = BTreeMap::from([("p.rego".to_string(), src.as_bytes().to_vec())]);
    let m = Manifest {
        engine: Engine::Rego,
        entrypoint: Some(entrypoint.into()),
        schema: None,
        entities: None,
        counters: Vec::new(),
    };
    CompiledPolicy::compile(&Bundle::new(m, files)?)
}

#[test]
fn publishing_refuses_broken_rego_naming_file_and_line() {
    let err = rego_bundle(
        "package t\n\ndecision := \"permit\" if {\n  input.x ==\n}\n",
        "data.t.decision",
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::Compile { ref file, line, .. } if file == "p.rego" && line >= 4),
        "{err}"
    );
    let err = rego_bundle("package t\n\nother := 1\n", "data.t.decision")
        .err()
        .unwrap();
    assert!(err.to_string().contains("not defined"), "{err}");
    let err = rego_bundle("package t\n\n# rand.intn(\"x\", 1) is fine in a comment\ndecision := \"permit\" if {\n  rand.intn(\"x\", 10) > 5\n}\n", "data.t.decision").err().unwrap();
    assert!(
        matches!(err, Error::NonDeterministic { line: 5, ref builtin, .. } if builtin == "rand.intn"),
        "{err}"
    );
    let err = rego_bundle(
        "package t\ndecision := \"permit\" if http.send({\"url\": \"x\"})\n",
        "data.t.decision",
    )
    .err()
    .unwrap();
    assert!(
        matches!(err, Error::NonDeterministic { line: 2, .. }),
        "{err}"
    );
    // Decided on the parsed modules, not on lines: a `#` in a string before
    // the call does not hide it, a call split over lines is found, and the
    // name inside a string is no call.
    for (src, line) in [
        ("package t\nimport rego.v1\ndecision := \"permit\" if { s := \"#\"; rand.intn(s, 10) > 5 }\n", 3),
        ("package t\nimport rego.v1\ndecision := \"permit\" if {\n  x := rand.intn(\n    \"s\",\n    10)\n  x > 5\n}\n", 4),
        ("package t\nimport rego.v1\ndecision := \"permit\" if { opa.runtime().env.X == \"1\" }\n", 3),
        ("package t\nimport rego.v1\nf(x) := uuid.rfc4122(x)\ndecision := \"permit\" if f(\"a\")\n", 3),
    ] {
        let err = rego_bundle(src, "data.t.decision").err().expect(src);
        assert!(
            matches!(err, Error::NonDeterministic { line: l, .. } if l == line),
            "{src}: {err}"
        );
    }
    rego_bundle(
        "package t\nimport rego.v1\ndecision := \"permit\" if input.note != \"rand.intn(\\\"x\\\", 10)\"\n",
        "data.t.decision",
    )
    .expect("a builtin's name in a string is not a call");
}

#[test]
fn rego_failures_are_silence_with_a_reason() {
    let cases = [
        ("package t\ndecision := \"maybe\"\n", "maybe"),
        ("package t\nimport rego.v1\ndecision := \"permit\" if input.go\n", "undefined"),
        ("package t\nimport rego.v1\ndecision := \"permit\" if input.a\ndecision := \"deny\" if input.b\n", "error"),
        ("package t\ndecision := 7\n", "not a string"),
    ];
    for (src, why) in cases {
        let p = rego_bundle(src, "data.t.decision").unwrap();
        let got = p.evaluate(&EvalInput {
            request: json!({"a": true, "b": true}),
            derived: json!({"decided_at_ns": 0}),
        });
        assert_eq!(got.decision, Decision::Silence, "{src}");
        assert!(got.reason.contains(why), "{src}: {}", got.reason);
    }
}

#[test]
fn an_expensive_rego_policy_is_stopped_and_is_silence() {
    // Nine million iterations: far past the 50 ms timer, which regorus checks between them.
    let src = "package t\nimport rego.v1\ndecision := \"permit\" if {\n  n := count([x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j])\n  n < 0\n}\n";
    let p = rego_bundle(src, "data.t.decision").unwrap();
    let got = p.evaluate(&EvalInput {
        request: json!({}),
        derived: json!({"decided_at_ns": 0}),
    });
    assert_eq!(got.decision, Decision::Silence);
    assert!(got.reason.contains("time limit"), "{}", got.reason);
}

/// A slice shorter than the limit stops an evaluation that needs longer and
/// says so (None), and changes nothing for one that fits; a slice at least
/// as long as the limit is the limit.
#[test]
fn an_evaluation_slice_gives_up_early_and_only_then() {
    let slow = "package t\nimport rego.v1\ndecision := \"permit\" if {\n  n := count([x | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); x := i * j])\n  n < 0\n}\n";
    let slow = rego_bundle(slow, "data.t.decision").unwrap();
    let fast = rego_bundle("package t\ndecision := \"deny\"\n", "data.t.decision").unwrap();
    let input = EvalInput {
        request: json!({}),
        derived: json!({"decided_at_ns": 0}),
    };
    let slice = Some(Duration::from_millis(1));
    assert!(slow.decide_within("v", &input, slice).is_none());
    let whole = slow
        .decide_within("v", &input, Some(Duration::from_secs(60)))
        .expect("a slice past the limit is the limit");
    assert!(whole.reason.contains("time limit"), "{}", whole.reason);
    assert_eq!(
        fast.decide_within("v", &input, slice),
        Some(fast.decide("v", &input))
    );
    // The version rule holds first, whatever the slice.
    let pinned = EvalInput {
        request: json!({"expected_policy_version": "other"}),
        derived: json!({"decided_at_ns": 0}),
    };
    assert_eq!(
        slow.decide_within("v", &pinned, slice).map(|e| e.decision),
        Some(Decision::Silence)
    );
}

fn cedar_bundle(policy: &str, schema: Option<&str>) -> Result<CompiledPolicy, Error> {
    let mut files = BTreeMap::from([("p.cedar".to_string(), policy.as_bytes().to_vec())]);
    if let Some(s) = schema {
        files.insert("s.cedarschema".into(), s.as_bytes().to_vec());
    }
    let m = Manifest {
        engine: Engine::Cedar,
        entrypoint: None,
        schema: schema.map(|_| "s.cedarschema".into()),
        entities: None,
        counters: Vec::new(),
    };
    CompiledPolicy::compile(&Bundle::new(m, files)?)
}

#[test]
fn publishing_refuses_broken_cedar() {
    let schema = std::fs::read_to_string(examples().join("cedar/schema.cedarschema")).unwrap();
    let err = cedar_bundle(
        "permit (principal, action, resource)\nwhen { principal.nope };\n",
        Some(&schema),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("schema validation"), "{err}");
    let err = cedar_bundle(
        "permit (principal, action, resource)\n\nwhen { 1 + };\n",
        None,
    )
    .err()
    .unwrap();
    assert!(matches!(err, Error::Compile { line: 3, .. }), "{err}");
}

#[test]
fn an_erroring_cedar_forbid_never_lets_a_permit_through() {
    let p = cedar_bundle(
        "permit (principal, action, resource);\nforbid (principal, action, resource) when { context.target.amount > 5 };\n",
        None,
    )
    .unwrap();
    let ok = EvalInput {
        request: req("a", "s", "x", json!({"amount": 1}), json!({})),
        derived: json!({"decided_at_ns": 0}),
    };
    assert_eq!(p.evaluate(&ok).decision, Decision::Permit);
    let over = EvalInput {
        request: req("a", "s", "x", json!({"amount": 9}), json!({})),
        derived: json!({"decided_at_ns": 0}),
    };
    assert_eq!(p.evaluate(&over).decision, Decision::Deny);
    let erroring = EvalInput {
        request: req("a", "s", "x", json!({"amount": "9"}), json!({})),
        derived: json!({"decided_at_ns": 0}),
    };
    let got = p.evaluate(&erroring);
    assert_eq!(got.decision, Decision::Silence, "{}", got.reason);
}

#[test]
fn evaluation_is_deterministic_concurrent_and_replayable() {
    let rego = compile("rego");
    let cedar = compile("cedar");
    let deploy = req("agent-deployer", "deploy", "deploy", json!({}), json!({}));
    for p in [&rego, &cedar] {
        // Many threads, alternating decision times: each sees its own bound time.
        std::thread::scope(|s| {
            for t in 0..4 {
                let deploy = deploy.clone();
                s.spawn(move || {
                    for i in 0..200 {
                        let (at, want) = if (i + t) % 2 == 0 {
                            (FROZEN, Decision::Silence)
                        } else {
                            (NORMAL, Decision::Permit)
                        };
                        assert_eq!(p.evaluate(&input(p, deploy.clone(), at)).decision, want);
                    }
                });
            }
        });
        // Replay: the recorded input, serialized and read back, decides the same.
        let original = input(p, deploy.clone(), FROZEN);
        let replayed: EvalInput =
            serde_json::from_str(&serde_json::to_string(&original).unwrap()).unwrap();
        assert_eq!(p.evaluate(&replayed), p.evaluate(&original));
    }
}

#[test]
fn replay_checks_the_recorded_version() {
    let bundle = Bundle::from_dir(&examples().join("cedar")).unwrap();
    let p = CompiledPolicy::compile(&bundle).unwrap();
    let transfer = req(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 5_000_000}),
        json!({}),
    );
    let record = input(&p, transfer, NORMAL);
    let got = policy::replay(&bundle, &bundle.version(), &record).unwrap();
    assert_eq!(got.decision, Decision::Deny);
    assert_eq!(got, p.evaluate(&record));
    let other = Bundle::from_dir(&examples().join("rego")).unwrap();
    let err = policy::replay(&other, &bundle.version(), &record).unwrap_err();
    assert!(err.to_string().contains("the record names"), "{err}");
}

#[test]
fn to_tar_gz_reads_back_to_the_same_version() {
    for engine in ["rego", "cedar"] {
        let dir = examples().join(engine);
        let bundle = Bundle::from_dir(&dir).unwrap();
        let bytes = bundle.to_tar_gz();
        assert_eq!(bytes, bundle.to_tar_gz(), "{engine}: deterministic");
        let back = Bundle::from_tar_gz(&bytes, None).unwrap();
        assert_eq!(back, bundle, "{engine}");
        assert_eq!(back.version(), bundle.version(), "{engine}");
    }
}

/// A bundle whose JSON names a member twice is refused at publish, naming
/// the file and the member: the policy and a reader of the bundle must not
/// see different values.
#[test]
fn publishing_refuses_duplicate_members_in_bundle_json() {
    let files = BTreeMap::from([
        (
            "p.rego".to_string(),
            b"package t\n\ndecision := \"permit\" if data.limit > 1\n".to_vec(),
        ),
        (
            "data.json".to_string(),
            br#"{"limit": 10, "limit": 0}"#.to_vec(),
        ),
    ]);
    let m = Manifest {
        engine: Engine::Rego,
        entrypoint: Some("data.t.decision".into()),
        schema: None,
        entities: None,
        counters: Vec::new(),
    };
    let err = CompiledPolicy::compile(&Bundle::new(m, files).unwrap())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Compile { ref file, ref message, .. }
            if file == "data.json" && message.contains("duplicate member /limit")),
        "{err}"
    );
    let schema = std::fs::read_to_string(examples().join("cedar/schema.cedarschema")).unwrap();
    let policy = std::fs::read_to_string(examples().join("cedar/policy.cedar")).unwrap();
    let files = BTreeMap::from([
        ("policy.cedar".to_string(), policy.into_bytes()),
        ("schema.cedarschema".to_string(), schema.into_bytes()),
        (
            "entities.json".to_string(),
            br#"[{"uid": {"type": "Actor", "id": "a"}, "attrs": {}, "parents": [], "attrs": {}}]"#
                .to_vec(),
        ),
    ]);
    let m = Manifest {
        engine: Engine::Cedar,
        entrypoint: None,
        schema: Some("schema.cedarschema".into()),
        entities: Some("entities.json".into()),
        counters: Vec::new(),
    };
    let err = CompiledPolicy::compile(&Bundle::new(m, files).unwrap())
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("duplicate member /0/attrs"),
        "{err}"
    );
}

/// Every example bundle ships test cases, and they pass; a case that expects
/// otherwise fails, naming what the policy gave.
#[test]
fn the_example_bundles_pass_their_own_cases_and_a_wrong_case_fails() {
    for dir in [
        "rego",
        "cedar",
        "mcp-rego",
        "mcp-cedar",
        "authzen-rego",
        "authzen-cedar",
    ] {
        let bundle = Bundle::from_dir(&examples().join(dir)).unwrap();
        let results = policy::run_cases(&bundle).unwrap();
        assert!(results.len() >= 6, "{dir}");
        for r in &results {
            assert!(
                r.passed,
                "{dir}: {}: got {:?} ({})",
                r.name, r.got, r.reason
            );
        }
    }
    let mut files = Bundle::from_dir(&examples().join("rego"))
        .unwrap()
        .files()
        .clone();
    files.insert(
        "tests/wrong.json".into(),
        br#"{"name": "wrong", "decided_at": "2026-11-25T12:00:00Z", "expected": "PERMIT",
             "request": {"actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
             "action": "transfer", "target": {"amount": 5000000}, "idempotency_key": "k"}}"#
            .to_vec(),
    );
    let manifest = Bundle::from_dir(&examples().join("rego"))
        .unwrap()
        .manifest()
        .clone();
    let results =
        policy::run_cases(&Bundle::new(manifest.clone(), files.clone()).unwrap()).unwrap();
    let wrong = results.iter().find(|r| r.name == "wrong").unwrap();
    assert!(!wrong.passed && wrong.got == Decision::Deny);
    // A case file that is not cases is refused, naming it.
    files.insert(
        "tests/broken.json".into(),
        br#"{"name": "x", "name": "y"}"#.to_vec(),
    );
    let err = policy::run_cases(&Bundle::new(manifest, files).unwrap()).unwrap_err();
    assert!(err.to_string().contains("tests/broken.json"), "{err}");
}

/// Counters a bundle declares reach both engines (Rego `input.derived.history`,
/// Cedar `context.history`), and `policy test` cases give their values (0 if
/// not given); a bad declaration is refused.
#[test]
fn counters_reach_both_engines_and_the_cases() {
    let counter = policy::Counter {
        name: "sent".into(),
        surface: "payments".into(),
        action: Some("transfer".into()),
        window_seconds: 86_400,
        sum: Some("amount".into()),
    };
    let case = |name: &str, sent: Option<i64>, expected: &str| {
        let mut c = json!({"name": name, "decided_at": "2026-11-25T12:00:00Z", "expected": expected,
            "request": {"actor": {"id": "a", "kind": "agent"}, "surface": "payments",
                        "action": "transfer", "target": {"amount": 100}, "idempotency_key": "k"}});
        if let Some(s) = sent {
            c["history"] = json!({ "sent": s });
        }
        c
    };
    let cases = serde_json::to_vec(&json!([
        case("room", Some(900), "PERMIT"),
        case("full", Some(901), "SILENCE"),
        case("zero by default", None, "PERMIT"),
    ]))
    .unwrap();
    let rego = (
        Manifest {
            engine: Engine::Rego,
            entrypoint: Some("data.q.decision".into()),
            schema: None,
            entities: None,
            counters: vec![counter.clone()],
        },
        BTreeMap::from([(
            "q.rego".to_string(),
            b"package q\nimport rego.v1\ndefault decision := \"silence\"\n\
              decision := \"permit\" if input.derived.history.sent + input.target.amount <= 1000\n"
                .to_vec(),
        )]),
    );
    let cedar = (
        Manifest {
            engine: Engine::Cedar,
            entrypoint: None,
            schema: None,
            entities: None,
            counters: vec![counter.clone()],
        },
        BTreeMap::from([(
            "q.cedar".to_string(),
            b"permit (principal, action, resource)\n\
              when { context.history.sent + context.target.amount <= 1000 };\n"
                .to_vec(),
        )]),
    );
    for (manifest, mut files) in [rego, cedar] {
        files.insert("tests/cases.json".into(), cases.clone());
        let results = policy::run_cases(&Bundle::new(manifest.clone(), files).unwrap()).unwrap();
        assert_eq!(results.len(), 3);
        for r in &results {
            assert!(
                r.passed,
                "{:?} {}: got {:?} ({})",
                manifest.engine, r.name, r.got, r.reason
            );
        }
    }
    for bad in [
        policy::Counter {
            name: "Sent".into(),
            ..counter.clone()
        },
        policy::Counter {
            window_seconds: 0,
            ..counter.clone()
        },
        policy::Counter {
            window_seconds: policy::MAX_COUNTER_WINDOW_SECONDS + 1,
            ..counter.clone()
        },
    ] {
        let m = Manifest {
            engine: Engine::Rego,
            entrypoint: Some("data.q.decision".into()),
            schema: None,
            entities: None,
            counters: vec![bad],
        };
        assert!(Bundle::new(m, BTreeMap::new()).is_err());
    }
    let twice = Manifest {
        engine: Engine::Rego,
        entrypoint: Some("data.q.decision".into()),
        schema: None,
        entities: None,
        counters: vec![counter.clone(), counter],
    };
    let err = Bundle::new(twice, BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("declared twice"), "{err}");
}

/// Asking for approvals maps the same way in both engines: Rego's
/// `"approval"` (with `approvals_required` / `approval_ttl_seconds`), Cedar's
/// `@approval("N")` forbid; the approvals attached (`derived.approvals`)
/// then let the policy decide.
#[test]
fn both_engines_ask_for_approvals_and_see_them() {
    let rego = Bundle::new(
        Manifest {
            engine: Engine::Rego,
            entrypoint: Some("data.d.decision".into()),
            schema: None,
            entities: None,
            counters: Vec::new(),
        },
        BTreeMap::from([(
            "d.rego".to_string(),
            b"package d\nimport rego.v1\napprovals_required := 2\napproval_ttl_seconds := 600\n\
              decision := \"permit\" if input.target.amount <= 1000\n\
              else := \"permit\" if count(object.get(input.derived, \"approvals\", [])) >= 2\n\
              else := \"approval\"\n"
                .to_vec(),
        )]),
    )
    .unwrap();
    let cedar = Bundle::new(
        Manifest {
            engine: Engine::Cedar,
            entrypoint: None,
            schema: None,
            entities: None,
            counters: Vec::new(),
        },
        BTreeMap::from([(
            "d.cedar".to_string(),
            b"permit (principal, action, resource);\n\
              @approval(\"2\") @approval_ttl(\"600\")\n\
              forbid (principal, action, resource)\n\
              when { context.target.amount > 1000 } unless { context.approvals >= 2 };\n"
                .to_vec(),
        )]),
    )
    .unwrap();
    for bundle in [rego, cedar] {
        let policy = CompiledPolicy::compile(&bundle).unwrap();
        let ask = |amount: i64, approvals: usize| {
            let mut i = input(
                &policy,
                json!({"actor": {"id": "a", "kind": "agent"}, "surface": "payments",
                       "action": "transfer", "target": {"amount": amount}, "context": {},
                       "idempotency_key": "k"}),
                NORMAL,
            );
            if approvals > 0 {
                i.derived["approvals"] = json!(vec![json!({"by": "alice", "entry": 7}); approvals]);
            }
            policy.evaluate(&i)
        };
        let small = ask(500, 0);
        assert_eq!(
            (small.decision, small.approval),
            (Decision::Permit, None),
            "{}",
            small.reason
        );
        let big = ask(5000, 0);
        assert_eq!(big.decision, Decision::Silence, "{}", big.reason);
        let want = policy::ApprovalAsk {
            count: 2,
            ttl_seconds: 600,
        };
        assert_eq!(big.approval, Some(want), "{}", big.reason);
        // An auditor tells a SILENCE that opened a request by this mark.
        assert!(
            big.reason.contains(policy::APPROVAL_REASON_MARK),
            "{}",
            big.reason
        );
        assert!(!small.reason.contains(policy::APPROVAL_REASON_MARK));
        assert_eq!(ask(5000, 1).decision, Decision::Silence);
        assert_eq!(ask(5000, 2).decision, Decision::Permit);
    }
}

/// A policy whose entrypoint is a large value names it in its reason; the
/// reason is cut at `MAX_REASON_BYTES` (on a character boundary, ending in
/// `…`), so one policy bug cannot write megabytes into every receipt.
#[test]
fn a_reason_naming_a_large_value_is_cut_at_max_reason_bytes() {
    let p = rego_bundle(
        "package t\nimport rego.v1\ndecision := [sprintf(\"é%d\", [i]) | some i in numbers.range(1, 5000)]\n",
        "data.t.decision",
    )
    .unwrap();
    let r = req(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        json!({}),
    );
    let e = p.evaluate(&input(&p, r.clone(), NORMAL));
    assert_eq!(e.decision, Decision::Silence);
    assert!(
        e.reason.starts_with("data.t.decision = [\"é1\""),
        "{}",
        &e.reason[..40]
    );
    assert!(e.reason.ends_with("…"));
    assert!(e.reason.len() <= policy::MAX_REASON_BYTES);
    assert!(e.reason.len() > policy::MAX_REASON_BYTES - 8);
    // Short reasons are untouched.
    let p = rego_bundle("package t\ndecision := 7\n", "data.t.decision").unwrap();
    assert_eq!(
        p.evaluate(&input(&p, r, NORMAL)).reason,
        "data.t.decision = 7, not a string"
    );
}
