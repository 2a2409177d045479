//! Surface contracts: the active contract's schemas checked before policy
//! (400 naming the value and the rule, nothing logged), recorded in the
//! receipt, published and activated as governance entries, taken from the
//! log at restart, checked again by replay and proofcheck.

use super::*;

/// The example contract, activated at start (`example_contract`).
fn with_example(dir: &Path) -> Server {
    Server::start_with_env(dir, &[("TOLLGATE_EXAMPLE_CONTRACT", "true")])
}

/// A refused decision: 400 `invalid_request` naming `field`, its message
/// naming `rule`; and nothing was logged.
fn refused(s: &Server, request: &Value, field: &str, rule: &str) {
    let before = s.checkpoint().size;
    let (status, body) = s.post("/v1/decisions", request.to_string().as_bytes());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert_eq!(body["field"], field, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(&format!("rule \"{rule}\"")), "{message}");
    assert_eq!(s.checkpoint().size, before, "nothing logged");
}

#[test]
fn the_active_contract_checks_targets_before_policy_and_receipts_name_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_example(dir.path());
    let (ok, out) = s.tollgate(&["surface", "list"]);
    assert!(ok, "{out}");
    let example = out
        .lines()
        .find_map(|l| l.strip_prefix("* "))
        .and_then(|l| l.split_whitespace().next())
        .expect("an active contract")
        .to_string();

    // Met: decided, and the receipt names the contract.
    let r = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 500, "currency": "EUR", "to": "acct-9"}),
        "c-ok",
    ));
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    let (body, _) = verify(&s, &r);
    assert_eq!(body.derived["contract"], example.as_str());

    // Broken: 400 naming the value and the rule, nothing evaluated or logged.
    let pay = |target: Value| intent("agent-treasury", "payments", "transfer", target, "c-bad");
    refused(&s, &pay(json!({"amount": "5"})), "/target/amount", "type");
    refused(&s, &pay(json!({"amount": 0})), "/target/amount", "minimum");
    refused(&s, &pay(json!({"amount": 12.5})), "/target/amount", "type");
    refused(
        &s,
        &pay(json!({"amount": 5, "to": "bob"})),
        "/target/to",
        "pattern",
    );
    refused(&s, &pay(json!({"to": "acct-1"})), "/target", "required");
    refused(
        &s,
        &pay(json!({"amount": 5, "bcc": "x"})),
        "/target",
        "additionalProperties",
    );
    let mut ticket = pay(json!({"amount": 5}));
    ticket["context"] = json!({"ticket": "not a ticket"});
    refused(&s, &ticket, "/context/ticket", "pattern");
    refused(
        &s,
        &intent(
            "agent-deployer",
            "deploy",
            "release",
            json!({"service": "API!"}),
            "c-d",
        ),
        "/target/service",
        "pattern",
    );
    // The unlogged evaluation is held to the same contract.
    let (status, body) = s.post(
        "/v1/evaluations",
        pay(json!({"amount": "5"})).to_string().as_bytes(),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("/target/amount")),
        "{body}"
    );

    // A surface the contract does not list is decided as before, unnamed.
    let r = s.decide(&intent(
        "agent-treasury",
        "email",
        "send",
        json!({"to": 1}),
        "c-free",
    ));
    let (body, _) = verify(&s, &r);
    assert!(body.derived.get("contract").is_none(), "{:?}", body.derived);

    // Replay checks the recorded request against the recorded contract.
    let permit = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 500, "to": "acct-9"}),
        "c-ok2",
    ));
    let saved = dir.path().join("permit.json");
    std::fs::write(&saved, serde_json::to_vec(&permit).unwrap()).unwrap();
    let (status, replay) = s.post("/v1/replay", permit.receipt.as_bytes());
    assert_eq!(status, 200, "{replay}");
    let replay: ReplayResponse = serde_json::from_value(replay).unwrap();
    assert!(replay.same);
    let checked = replay.contract.expect("the contract checked");
    assert_eq!(
        (checked.version.as_str(), checked.met),
        (example.as_str(), true)
    );
    // proofcheck: fetched from the gate, or from a file (whose digest must
    // be the recorded version).
    let gate_key = s.key("gate.skey").to_string();
    let demo = dir.path().join("data/demo.token");
    let proofcheck = |extra: &[&str]| {
        let out = Command::new(testkit::bin("proofcheck"))
            .args(["--token-file", demo.to_str().unwrap(), "replay"])
            .arg(&saved)
            .args(["--gate-key", &gate_key])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = proofcheck(&["--policy", &s.url]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!("meets surface contract {example}")),
        "{out}"
    );
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let bundle = examples.join("policies/rego");
    let file = examples.join("contracts/example.json");
    let (code, out) = proofcheck(&[
        "--policy",
        bundle.to_str().unwrap(),
        "--contract",
        file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("meets surface contract"), "{out}");
    let (code, out) = proofcheck(&["--policy", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("was not checked"), "{out}");

    // A stricter contract published and activated through the CLI: every
    // decision after it is held to it.
    let strict = dir.path().join("strict.json");
    let mut c = gate::example_contract();
    c.surfaces
        .get_mut("payments")
        .unwrap()
        .target
        .as_mut()
        .unwrap()["properties"]["amount"]["maximum"] = json!(100);
    std::fs::write(&strict, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let (ok, out) = s.tollgate(&["surface", "publish", strict.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let strict_version = c.version();
    assert!(
        out.contains(&format!("activated {strict_version}")),
        "{out}"
    );
    refused(
        &s,
        &pay(json!({"amount": 500})),
        "/target/amount",
        "maximum",
    );
    let (ok, out) = s.tollgate(&["surface", "list"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("* {strict_version}")) && out.contains(&format!("  {example}")),
        "{out}"
    );
    // Published contracts are served by version, canonical.
    let served = s
        .get_bytes(&format!("/v1/contracts/{strict_version}"))
        .unwrap();
    assert_eq!(protocol::Contract::parse(&served).unwrap(), c);
    // None active: the string reaches the policy again (which must defend).
    let (ok, out) = s.tollgate(&["surface", "activate", "none"]);
    assert!(ok, "{out}");
    let r = s.decide(&pay(json!({"amount": "5"})));
    assert_eq!(r.decision, Decision::Silence);
    // A version never published is refused, naming it.
    let (ok, out) = s.tollgate(&["surface", "activate", &format!("sha256:{}", "0".repeat(64))]);
    assert!(!ok && out.contains("not published"), "{out}");

    // What the log says survives a restart (without the example setting).
    let (ok, out) = s.tollgate(&["surface", "activate", &strict_version]);
    assert!(ok, "{out}");
    s.stop();
    let s = Server::start(dir.path());
    let after = intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 500}),
        "c-after",
    );
    refused(&s, &after, "/target/amount", "maximum");
    s.audit();
    let history = Command::new(testkit::bin("proofcheck"))
        .args(["history", "--log", &s.url, "--log-key"])
        .arg(s.key("log.skey").to_string())
        .args(["--gate-key", &gate_key])
        .args(["--token-file", demo.to_str().unwrap()])
        .output()
        .unwrap();
    let history = String::from_utf8_lossy(&history.stdout);
    assert_eq!(history.matches("contract.publish").count(), 2, "{history}");
    assert_eq!(history.matches("contract.activate").count(), 4, "{history}");
}

#[test]
fn contracts_can_be_required_and_bad_ones_are_refused_at_publish() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[("TOLLGATE_REQUIRE_SURFACE_CONTRACTS", "true")],
    );
    // None active: every decision refused, nothing logged.
    let before = s.checkpoint().size;
    let (status, body) = s.post("/v1/decisions", transfer(5, "r-1").to_string().as_bytes());
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("/surface")),
        "{body}"
    );
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("require_surface_contracts"));

    // A schema that is not one, a look-ahead pattern, an unknown member:
    // refused at publish, naming where; nothing logged.
    for (bad, names) in [
        (
            json!({"format": "tollgate.contract/v1", "surfaces": {"payments": {"target": {"type": "nope"}}}}),
            "surfaces/payments/target",
        ),
        (
            json!({"format": "tollgate.contract/v1", "surfaces": {"p": {"target": {"pattern": "(?=a)"}}}}),
            "surfaces/p/target",
        ),
        (
            json!({"format": "tollgate.contract/v1", "surfaces": {"p": {"targets": {}}}}),
            "unknown field",
        ),
    ] {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, bad.to_string()).unwrap();
        let (ok, out) = s.tollgate(&["surface", "publish", file.to_str().unwrap()]);
        assert!(!ok && out.contains(names), "{out}");
    }
    assert_eq!(s.checkpoint().size, before, "nothing logged");

    let file = dir.path().join("example.json");
    std::fs::write(&file, gate::example_contract().canonical()).unwrap();
    let (ok, out) = s.tollgate(&["surface", "publish", file.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    assert_eq!(s.decide(&transfer(5, "r-2")).decision, Decision::Permit);
    // Covered surfaces only.
    let (status, body) = s.post(
        "/v1/decisions",
        intent("agent-treasury", "email", "send", json!({}), "r-3")
            .to_string()
            .as_bytes(),
    );
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("/surface")),
        "{body}"
    );
}

/// Whether any file under `dir` holds `needle`.
fn found_in_files(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(found_in_files(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            hits.push(path);
        }
    }
    hits
}

#[test]
fn sensitive_fields_are_committed_verified_and_erasable() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_example(dir.path());
    let (customer, email) = ("Ada Lovelace 7f3a9c", "ada.7f3a9c@example.org");
    let update = |customer: &str, key: &str| {
        intent(
            "agent-deployer",
            "crm",
            "update",
            json!({"record": "acme", "customer": customer, "email": email}),
            key,
        )
    };
    let r = s.decide(&update(customer, "pii-1"));
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    // The receipt commits both fields, holds neither in clear; the policy
    // decided on the values.
    assert!(!r.receipt.contains(customer) && !r.receipt.contains(email));
    let (body, _) = verify(&s, &r);
    assert_eq!(
        body.derived["committed"],
        json!(["/target/customer", "/target/email"])
    );
    let (log_key, gate_key) = (s.key("log.skey"), s.key("gate.skey"));
    let v = verify::verify_decision(&r, &log_key, &gate_key, None).unwrap();
    let opened = protocol::FieldStatus::Opened;
    assert_eq!(
        v.committed,
        vec![
            ("/target/customer".into(), opened.clone()),
            ("/target/email".into(), opened.clone())
        ]
    );
    assert_eq!(
        r.openings.as_ref().unwrap()["/target/customer"].value,
        customer
    );
    // A wrong opening is refused, naming the field.
    let mut wrong = r.clone();
    wrong
        .openings
        .as_mut()
        .unwrap()
        .get_mut("/target/customer")
        .unwrap()
        .value = json!("Grace Hopper");
    let e = verify::verify_decision(&wrong, &log_key, &gate_key, None).unwrap_err();
    assert!(e.to_string().contains("/target/customer"), "{e}");
    // Idempotency binds the real values: the same request is answered
    // again, another customer under the same key is a conflict.
    let again = s.decide(&update(customer, "pii-1"));
    assert_eq!(
        (again.receipt_id.as_str(), again.replayed),
        (r.receipt_id.as_str(), true)
    );
    let (status, _) = s.post(
        "/v1/decisions",
        update("Grace Hopper", "pii-1").to_string().as_bytes(),
    );
    assert_eq!(status, 409);

    // Erased: logged with who, which and why; the opening gone.
    let reason = "erasure request 12 (GDPR art. 17)";
    let (ok, out) = s.tollgate(&[
        "erase",
        &r.receipt_id,
        "--field",
        "/target/customer",
        "--reason",
        reason,
    ]);
    assert!(ok, "{out}");
    let (ok, out) = s.tollgate(&[
        "erase",
        &r.receipt_id,
        "--field",
        "/target/customer",
        "--reason",
        reason,
    ]);
    assert!(!ok && out.contains("erased before"), "{out}");
    let (ok, out) = s.tollgate(&[
        "erase",
        &r.receipt_id,
        "--field",
        "/target/record",
        "--reason",
        reason,
    ]);
    assert!(!ok && out.contains("commits no field"), "{out}");
    let saved: DecisionResponse = serde_json::from_slice(
        &s.get_bytes(&format!("/v1/receipts/{}", r.receipt_id))
            .unwrap(),
    )
    .unwrap();
    let v = verify::verify_decision(&saved, &log_key, &gate_key, None).unwrap();
    assert_eq!(
        v.committed,
        vec![
            ("/target/customer".into(), protocol::FieldStatus::Erased),
            ("/target/email".into(), opened)
        ]
    );
    // proofcheck says the same of the saved answer.
    let file = dir.path().join("saved.json");
    std::fs::write(&file, serde_json::to_vec(&saved).unwrap()).unwrap();
    let out = Command::new(testkit::bin("proofcheck"))
        .arg("receipt")
        .arg(&file)
        .args([
            "--log-key",
            &log_key.to_string(),
            "--gate-key",
            &gate_key.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("/target/customer: committed, opening erased"),
        "{text}"
    );
    assert!(
        text.contains("/target/email: committed, opening verified"),
        "{text}"
    );
    // Replay says what it can no longer check.
    let (status, replay) = s.post("/v1/replay", r.receipt.as_bytes());
    assert_eq!(status, 200, "{replay}");
    let replay: ReplayResponse = serde_json::from_value(replay).unwrap();
    assert_eq!(replay.unopened, vec!["/target/customer".to_string()]);
    assert!(
        replay.contract.unwrap().met,
        "the unopened field is not held against the contract"
    );

    // The log still audits; the erasure is in its history.
    s.audit();
    let data = dir.path().join("data");
    s.stop();
    // The erased value is nowhere in the data directory; the one not
    // erased is (so the scan can find what is there).
    assert_eq!(
        found_in_files(&data, customer.as_bytes()),
        Vec::<PathBuf>::new()
    );
    assert!(!found_in_files(&data, email.as_bytes()).is_empty());
}

/// Approvals bind the real values of committed fields: the SILENCE that
/// asks and the PERMIT that relies on the vote commit the same request the
/// same way, another value is another request, and the audit agrees.
#[test]
fn approvals_of_requests_with_committed_fields_bind_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let s = with_example(dir.path());
    let mut c = gate::example_contract();
    c.surfaces.get_mut("payments").unwrap().sensitive = vec!["/target/memo".into()];
    let file = dir.path().join("memo.json");
    std::fs::write(&file, serde_json::to_vec(&c).unwrap()).unwrap();
    let (ok, out) = s.tollgate(&["surface", "publish", file.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let alice = s.add_caller("alice", &["approve"], "agent-*");
    let pay = |memo: &str, key: &str| {
        intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({"amount": 20000, "to": "acct-9", "memo": memo}),
            key,
        )
    };
    // Over the example policy's threshold: SILENCE asking for an approval.
    let asked = s.decide(&pay("rent for Ada 11aa", "a1"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    // (Spaces: no hex digest or base64 signature can hold the marker by chance.)
    assert!(!asked.receipt.contains("rent for Ada"));
    let id = asked.approval.clone().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id, protocol::approval_id(&verify(&s, &asked).0.request).0);
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args([
            "approvals",
            "approve",
            &id,
            "--token-file",
            alice.to_str().unwrap(),
            "--url",
            &s.url,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another memo is another request.
    let other = s.decide(&pay("rent for Grace 22bb", "a2"));
    assert_eq!(other.decision, Decision::Silence);
    assert_ne!(other.approval.unwrap()["id"], id.as_str());
    // The same request under another key: PERMIT, relying on alice's vote.
    let permitted = s.decide(&pay("rent for Ada 11aa", "a3"));
    assert_eq!(permitted.decision, Decision::Permit, "{}", permitted.reason);
    let (body, _) = verify(&s, &permitted);
    assert_eq!(body.derived["approvals"][0]["by"], "alice");
    assert_eq!(body.derived["committed"], json!(["/target/memo"]));
    s.audit();
}
