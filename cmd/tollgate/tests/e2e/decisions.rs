//! Decisions end to end: PERMIT, DENY and SILENCE signed, logged and replayed; the request
//! contract at the door; idempotency across policy switches and restarts; hostile input; shadow
//! policies and the cases a bundle ships.

use super::*;

#[test]
fn permit_deny_silence_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let cases = [
        (transfer(500, "p"), Decision::Permit),
        (transfer(5_000_000, "d"), Decision::Deny),
        (
            intent(
                "agent-unknown",
                "payments",
                "transfer",
                json!({"amount": 5}),
                "s",
            ),
            Decision::Silence,
        ),
        (
            intent(
                "agent-suspended",
                "payments",
                "transfer",
                json!({"amount": 5}),
                "s2",
            ),
            Decision::Silence,
        ),
    ];
    // First start logged its admin changes (the example policy published
    // and activated, the demo caller added) before any decision.
    let base = s.checkpoint().size;
    assert_eq!(base, 3);
    for (i, (request, want)) in cases.iter().enumerate() {
        let r = s.decide(request);
        assert_eq!(r.decision, *want, "{request}: {}", r.reason);
        assert_eq!(r.log_index, base + i as u64);
        assert!(!r.replayed);
        let (body, _) = verify(&s, &r);
        assert_eq!(body.request["context"], json!({}), "normalized");
        // Replay the saved response: the same decision under the recorded version.
        let (status, replay) = s.post("/v1/replay", serde_json::to_string(&r).unwrap().as_bytes());
        assert_eq!(status, 200, "{replay}");
        let replay: ReplayResponse = serde_json::from_value(replay).unwrap();
        assert!(replay.same, "{replay:?}");
        assert_eq!(replay.recorded, *want);
        // The receipt alone works too.
        let (status, replay) = s.post("/v1/replay", r.receipt.as_bytes());
        assert_eq!((status, replay["same"].clone()), (200, json!(true)));
    }
    // A tampered receipt is refused by replay.
    let r = s.decide(&transfer(1, "t"));
    let forged = r.receipt.replace("\"PERMIT\"", "\"DENY\"");
    assert_eq!(s.post("/v1/replay", forged.as_bytes()).0, 400);
    // Metrics count what happened.
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_decisions_total{decision=\"PERMIT\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("tollgate_decisions_total{decision=\"SILENCE\"} 2"));
    assert!(metrics.contains(&format!("tollgate_log_size {}", base + 5)));
    // Every decision observes its batch's size and its batch's synced write.
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    let decided = count("tollgate_log_batch_size_count");
    assert!(decided >= 4, "{metrics}");
    assert_eq!(count("tollgate_log_write_seconds_count"), decided);
    // Each stage of the new decisions' pipeline took some time, and the
    // commit (an fsync each) more than validation.
    let seconds = |stage: &str| -> f64 {
        let name = format!("tollgate_decision_stage_seconds_total{{stage=\"{stage}\"}}");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name.as_str())?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
    };
    for stage in ["validate", "lookup", "evaluate", "sign", "commit", "answer"] {
        assert!(seconds(stage) > 0.0, "{stage}: {metrics}");
    }
    assert!(seconds("commit") > seconds("validate"), "{metrics}");
    s.stop();
}

#[test]
fn malformed_requests_are_400_with_the_field_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let good = transfer(5, "k");
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (b"not json".to_vec(), ""),
        (b"[]".to_vec(), ""),
        (vec![b' '; 20_000], ""),
        (
            br#"{"actor": {"id": "a", "kind": "agent"}}"#.to_vec(),
            "/surface",
        ),
    ];
    for (field, patch) in [
        (
            "/actor/kind",
            json!({"actor": {"id": "a", "kind": "robot"}}),
        ),
        ("/target/amount", json!({"target": {"amount": 1e300}})),
        ("/target", json!({"target": "acct-9"})),
        ("/idempotency_key", json!({"idempotency_key": ""})),
        (
            "/expected_policy_version",
            json!({"expected_policy_version": "latest"}),
        ),
        ("/extra", json!({"extra": true})),
        (
            "/context/a/b/c/d",
            json!({"context": {"a": {"b": {"c": {"d": {}}}}}}),
        ),
    ] {
        let mut doc = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            doc[k] = v.clone();
        }
        cases.push((doc.to_string().into_bytes(), field));
    }
    // A member named twice: the gate and a tool could read different values.
    cases.push((
        br#"{"actor":{"id":"agent-treasury","kind":"agent"},"surface":"payments","action":"transfer","target":{"amount":5},"idempotency_key":"dup","surface":"deploy"}"#.to_vec(),
        "/surface",
    ));
    cases.push((
        br#"{"actor":{"id":"agent-treasury","kind":"agent"},"surface":"payments","action":"transfer","target":{"amount":5,"amount":50000},"idempotency_key":"dup2"}"#.to_vec(),
        "/target/amount",
    ));
    let base = s.checkpoint().size;
    for (body, field) in &cases {
        let (status, err) = s.post("/v1/decisions", body);
        assert_eq!(status, 400, "{err}");
        assert_eq!(err["error"], "invalid_request");
        assert_eq!(err["field"], *field, "{err}");
        assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(s.checkpoint().size, base, "nothing was written");
    s.stop();
}

#[test]
fn idempotency_policy_switch_restart_and_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let base = s.checkpoint().size;
    let request = transfer(500, "same");
    let first = s.decide(&request);
    let again = s.decide(&request);
    assert!(again.replayed);
    assert_eq!(
        (again.receipt.as_str(), again.log_index),
        (first.receipt.as_str(), first.log_index)
    );
    verify(&s, &again);
    // Same key, different request: 409, nothing added.
    let other = transfer(501, "same");
    let (status, err) = s.post("/v1/decisions", other.to_string().as_bytes());
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("idempotency_conflict"))
    );
    // The key is per actor.
    let r = s.decide(&intent(
        "agent-deployer",
        "payments",
        "transfer",
        json!({"amount": 500}),
        "same",
    ));
    assert_eq!(r.log_index, base + 1);
    assert_eq!(s.checkpoint().size, base + 2);

    // Admin needs the token (or a caller with admin: the demo caller is
    // known but lacks the role, 403).
    let (status, _) = s.post("/v1/admin/policies", b"");
    assert_eq!(status, 403);
    let r = ureq::get(&format!("{}/v1/admin/policies", s.url))
        .set("authorization", "Bearer wrong-token-wrong-token")
        .call();
    assert!(matches!(r, Err(ureq::Error::Status(401, _))));
    let r = ureq::get(&format!("{}/v1/admin/policies", s.url))
        .set("authorization", &format!("Bearer {}", s.token()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // Switch to the Cedar example between two decisions.
    let rego_version = first.policy_version.clone().unwrap();
    let cedar_dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/policies/cedar");
    let (ok, out) = s.tollgate(&[
        "policy",
        "publish",
        cedar_dir.to_str().unwrap(),
        "--activate",
    ]);
    assert!(ok, "{out}");
    let cedar_version = policy::Bundle::from_dir(&cedar_dir).unwrap().version();
    assert!(out.contains(&cedar_version), "{out}");
    let (ok, out) = s.tollgate(&["policy", "list"]);
    assert!(
        ok && out.contains(&format!("* {cedar_version}")) && out.contains(&rego_version),
        "{out}"
    );
    let after = s.decide(&transfer(500, "c"));
    assert_eq!(after.decision, Decision::Permit);
    let (body, _) = verify(&s, &after);
    assert_eq!(
        body.policy
            .as_ref()
            .map(|p| (p.version.as_str(), p.engine.as_str())),
        Some((cedar_version.as_str(), "cedar"))
    );
    let (before, _) = verify(&s, &first);
    assert_eq!(before.policy.unwrap().version, rego_version);
    // Replaying the Rego receipt under Cedar's reign: the same decision,
    // and the old version compiled once however often it is replayed.
    for _ in 0..3 {
        let (status, replay) = s.post(
            "/v1/replay",
            serde_json::to_string(&first).unwrap().as_bytes(),
        );
        assert_eq!(
            (status, replay["same"].clone()),
            (200, json!(true)),
            "{replay}"
        );
    }
    assert!(
        s.get_text("/metrics")
            .contains("tollgate_replay_compiles_total 1"),
        "replay compiled the old version once"
    );
    // A caller pinning the old version gets SILENCE, never the old policy.
    let mut pinned = transfer(500, "pin");
    pinned["expected_policy_version"] = json!(rego_version);
    let r = s.decide(&pinned);
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    // Replay of the Rego receipt fetches the Rego bundle, not the active one.
    let (_, replay) = s.post("/v1/replay", first.receipt.as_bytes());
    assert_eq!(replay["same"], true, "{replay}");
    assert_eq!(replay["policy_version"], json!(rego_version));
    // `tollgate policy activate` switches back: the next decision binds Rego.
    let (ok, out) = s.tollgate(&["policy", "activate", &rego_version]);
    assert!(ok && out.contains(&format!("was {cedar_version}")), "{out}");
    let back = s.decide(&transfer(500, "back"));
    assert_eq!(back.policy_version.as_deref(), Some(rego_version.as_str()));
    let (ok, out) = s.tollgate(&["policy", "activate", &format!("sha256:{}", "0".repeat(64))]);
    assert!(!ok && out.contains("not published"), "{out}");
    let (ok, _) = s.tollgate(&["policy", "activate", &cedar_version]);
    assert!(ok);
    // The bundle by version digests to its version.
    let bytes = s
        .get_bytes(&format!("/v1/policies/{rego_version}"))
        .unwrap();
    assert_eq!(
        policy::Bundle::from_tar_gz(&bytes, None).unwrap().version(),
        rego_version
    );

    // Restart: every receipt and proof survives; the old checkpoint is
    // consistent with the new one.
    let old = s.checkpoint();
    let ids: Vec<(String, String)> = [&first, &after, &r]
        .iter()
        .map(|x| (x.receipt_id.clone(), x.receipt.clone()))
        .collect();
    s.stop();
    let s = Server::start(dir.path());
    assert_eq!(s.checkpoint(), old);
    for (id, receipt) in &ids {
        let (status, found) = response(
            ureq::get(&format!("{}/v1/receipts/{id}", s.url))
                .set("authorization", &format!("Bearer {}", s.demo()))
                .call(),
        );
        assert_eq!(status, 200);
        let found: DecisionResponse = serde_json::from_value(found).unwrap();
        assert_eq!(&found.receipt, receipt);
        verify(&s, &found);
        let proof = s.get_text(&format!("/v1/proofs/inclusion?receipt_id={id}"));
        ProofBundle::parse(&proof)
            .unwrap()
            .verify(
                &tlog::leaf_hash(receipt.as_bytes()),
                &Policy::for_log(s.key("log.skey")),
            )
            .unwrap();
    }
    // The active policy survived the restart too.
    let r2 = s.decide(&transfer(7, "post-restart"));
    assert_eq!(r2.policy_version.as_deref(), Some(cedar_version.as_str()));
    let new = s.checkpoint();
    let proof: Vec<tlog::Hash> = s
        .get_text(&format!(
            "/v1/proofs/consistency?old={}&new={}",
            old.size, new.size
        ))
        .lines()
        .map(|l| {
            use base64::Engine as _;
            tlog::Hash::from_slice(&base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .unwrap()
        })
        .collect();
    tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap();

    // A tiles-only client recomputes the root and reads every receipt.
    struct Tiles<'a>(&'a Server);
    impl tlog::TileSource for Tiles<'_> {
        fn read_tiles(&self, tiles: &[tlog::Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
            tiles
                .iter()
                .map(|t| {
                    self.0
                        .get_bytes(&format!("/log/{}", t.path()))
                        .map_err(|c| format!("{c}").into())
                })
                .collect()
        }
    }
    let root = tlog::tree_hash(new.size, &tlog::TileHashReader::new(new.size, &Tiles(&s))).unwrap();
    assert_eq!(root, new.root);
    let bundle = s
        .get_bytes(&format!(
            "/log/{}",
            tlog::Tile::entries_in_tree(0, new.size).unwrap().path()
        ))
        .unwrap();
    let entries = tlog::decode_entry_bundle(&bundle).unwrap();
    assert_eq!(entries.len() as u64, new.size);
    // Receipts and the admin changes (governance entries), all signed by the gate.
    let mut actions = Vec::new();
    for e in entries {
        let (note, entry) = protocol::parse_entry(e).unwrap();
        note.verify(std::slice::from_ref(&s.key("gate.skey")))
            .unwrap();
        match entry {
            protocol::Entry::Receipt(_) => {
                verify_receipt(e, &s.key("gate.skey")).unwrap();
            }
            protocol::Entry::Governance(g) => actions.push(g.action.as_str()),
        }
    }
    assert_eq!(
        actions,
        [
            "policy.publish",
            "policy.activate",
            "caller.add",
            "policy.publish",
            "policy.activate",
            "policy.activate",
            "policy.activate"
        ],
        "startup's changes, the Cedar switch, back to Rego and to Cedar again \
         (the activation of an unpublished version failed and is not logged)"
    );
    assert_eq!(s.get_bytes("/log/tile/0/x999/001"), Err(404));
    s.stop();
}

/// Hostile input on every route that takes any: each answer is a 4xx that
/// says what is wrong, the gate keeps serving, and the log does not grow.
#[test]
fn hostile_input_on_every_route_is_4xx_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let base = s.checkpoint().size;
    let (demo, admin) = (s.demo(), s.token());
    let nested = "[".repeat(10_000) + &"]".repeat(10_000);
    let tar_gz = |files: &[(&str, &[u8])]| {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // Raw, so a hostile name (`..`) goes in as it is.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            tar.append(&h, *data).unwrap();
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &tar.into_inner().unwrap()).unwrap();
        gz.finish().unwrap()
    };
    let manifest: &[u8] = br#"{"engine": "rego", "entrypoint": "data.x.decision"}"#;
    let zeros = vec![0u8; 64 << 20];
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/v1/decisions", demo.as_str(), nested.clone().into_bytes()),
        ("/v1/decisions", demo.as_str(), vec![0xff, 0xfe, b'{', 0x80]),
        ("/v1/replay", demo.as_str(), b"garbage".to_vec()),
        ("/v1/replay", demo.as_str(), nested.clone().into_bytes()),
        (
            "/v1/replay",
            demo.as_str(),
            br#"{"receipt": 5, "receipt": "x"}"#.to_vec(),
        ),
        ("/v1/admin/callers", admin.as_str(), b"{".to_vec()),
        (
            "/v1/admin/callers",
            admin.as_str(),
            br#"{"name": "x", "roles": ["god"]}"#.to_vec(),
        ),
        (
            "/v1/admin/callers",
            admin.as_str(),
            br#"{"name": "../x", "roles": ["read"]}"#.to_vec(),
        ),
        (
            "/v1/admin/callers",
            admin.as_str(),
            br#"{"name": "x", "roles": ["read"], "actors": ["a*b*"]}"#.to_vec(),
        ),
        (
            "/v1/admin/callers",
            admin.as_str(),
            br#"{"name": "x", "roles": ["read"], "extra": 1}"#.to_vec(),
        ),
        ("/v1/admin/policies", admin.as_str(), b"not gzip".to_vec()),
        (
            "/v1/admin/policies",
            admin.as_str(),
            tar_gz(&[
                ("tollgate.json", manifest),
                ("../escape.rego", b"package x\n"),
            ]),
        ),
        (
            "/v1/admin/policies",
            admin.as_str(),
            tar_gz(&[
                ("tollgate.json", manifest),
                ("p.rego", b"package x\ndecision := \n"),
            ]),
        ),
        (
            "/v1/admin/policies",
            admin.as_str(),
            tar_gz(&[("tollgate.json", manifest), ("bomb.json", &zeros)]),
        ),
        (
            "/v1/admin/policies",
            admin.as_str(),
            tar_gz(&[("tollgate.json", b"{\"engine\": \"prolog\"}")]),
        ),
    ];
    for (path, token, body) in &bodies {
        let r = ureq::post(&format!("{}{path}", s.url))
            .set("authorization", &format!("Bearer {token}"))
            .send_bytes(body);
        let (status, err) = response(r);
        assert!(
            (400..500).contains(&status),
            "{path} ({} bytes): {status} {err}",
            body.len()
        );
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{path}: {status} {err}"
        );
    }
    // Too large: refused at the limit. The gate answers 400 and closes the
    // connection while the client may still be sending, so the client sees
    // either that answer or its write cut off.
    let r = ureq::post(&format!("{}/v1/decisions", s.url))
        .set("authorization", &format!("Bearer {demo}"))
        .send_bytes(&vec![b'{'; 2 << 20]);
    match r {
        Err(ureq::Error::Status(code, _)) => assert_eq!(code, 400),
        Err(ureq::Error::Transport(_)) => {}
        Ok(r) => panic!("an oversized body was answered {}", r.status()),
    }
    for path in [
        "/log/tile/0/x999",
        "/log/tile/../../etc/passwd",
        "/log/tile/entries/000.p/0",
        "/log/tile/99/000",
        "/v1/proofs/inclusion?index=abc",
        "/v1/proofs/inclusion?index=18446744073709551615",
        "/v1/proofs/consistency?old=5&new=2",
        "/v1/proofs/consistency?old=1&new=99999999999",
        "/v1/checkpoints/-1",
        "/v1/checkpoints/99999999999",
        "/v1/policies/sha256:zz",
    ] {
        let status = s.get_bytes(path).expect_err(path);
        assert!((400..500).contains(&status), "{path}: {status}");
    }
    let long_id = "a".repeat(100_000);
    let status = s
        .get_bytes(&format!("/v1/receipts/{long_id}"))
        .expect_err("long id");
    assert!((400..500).contains(&status), "long receipt id: {status}");
    assert_eq!(s.get_text("/healthz"), "ok\n");
    assert_eq!(s.checkpoint().size, base, "nothing was written");
    s.decide(&transfer(5, "after"));
    s.stop();
}

/// `tollgate policy test`: the example bundle passes its own cases; a case
/// expecting otherwise fails the command, naming the case and what the policy
/// gave.
#[test]
fn policy_test_runs_the_cases_a_bundle_ships() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let run = |bundle: &Path| {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["policy", "test"])
            .arg(bundle)
            .output()
            .unwrap()
    };
    let ok = run(&examples.join("cedar"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("11 cases, 0 failed"));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    std::fs::create_dir_all(bundle.join("tests")).unwrap();
    for f in ["tollgate.json", "policy.rego", "data.json"] {
        std::fs::copy(examples.join("rego").join(f), bundle.join(f)).unwrap();
    }
    std::fs::write(
        bundle.join("tests/wrong.json"),
        r#"{"name": "a big transfer", "decided_at": "2026-11-25T12:00:00Z", "expected": "PERMIT",
            "request": {"actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
            "action": "transfer", "target": {"amount": 5000000}, "idempotency_key": "k"}}"#,
    )
    .unwrap();
    let failed = run(&bundle);
    assert!(!failed.status.success());
    let out = String::from_utf8_lossy(&failed.stdout);
    assert!(
        out.contains("FAIL tests/wrong.json: a big transfer — expected PERMIT, got DENY"),
        "{out}"
    );
}

/// `tollgate policy shadow`: a second version evaluated beside the active
/// one on every decision, its decision recorded in the receipt
/// (`derived.shadow`) and counted, never enforced; kept across a restart;
/// `--off` ends it. Replay reproduces the enforced decision.
#[test]
fn a_shadow_policy_is_recorded_and_counted_never_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    // A candidate that denies everything.
    let candidate = dir.path().join("deny-all");
    std::fs::create_dir(&candidate).unwrap();
    std::fs::write(
        candidate.join("tollgate.json"),
        r#"{"engine": "rego", "entrypoint": "data.tollgate.denyall.decision"}"#,
    )
    .unwrap();
    std::fs::write(
        candidate.join("policy.rego"),
        "package tollgate.denyall\n\ndecision := \"deny\"\n\nreason := \"candidate denies all\"\n",
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", candidate.to_str().unwrap()]);
    assert!(ok, "{out}");
    let version = policy::Bundle::from_dir(&candidate).unwrap().version();
    let (ok, out) = s.tollgate(&["policy", "shadow", &version]);
    assert!(ok && out.contains(&version), "{out}");
    let (ok, out) = s.tollgate(&["policy", "list"]);
    assert!(ok && out.contains(&format!("s {version}")), "{out}");
    let r = s.decide(&transfer(500, "shadowed"));
    assert_eq!(
        r.decision,
        Decision::Permit,
        "the active policy is enforced"
    );
    let (body, _) = verify(&s, &r);
    assert_eq!(body.derived["shadow"]["version"], version.as_str());
    assert_eq!(body.derived["shadow"]["engine"], "rego");
    assert_eq!(body.derived["shadow"]["decision"], "DENY");
    assert!(s
        .get_text("/metrics")
        .contains("tollgate_shadow_decisions_total{active=\"PERMIT\",shadow=\"DENY\"} 1"));
    // Replay reproduces the enforced decision from the receipt.
    let (status, replay) = s.post("/v1/replay", serde_json::to_string(&r).unwrap().as_bytes());
    assert_eq!(
        (status, replay["same"].clone()),
        (200, json!(true)),
        "{replay}"
    );

    // Kept across a restart.
    s.stop();
    let s = Server::start(dir.path());
    let r = s.decide(&transfer(500, "after-restart"));
    let (body, _) = verify(&s, &r);
    assert_eq!(body.derived["shadow"]["decision"], "DENY");
    let (ok, out) = s.tollgate(&["policy", "shadow", "--off"]);
    assert!(ok && out.contains("shadow off"), "{out}");
    let r = s.decide(&transfer(500, "unshadowed"));
    let (body, _) = verify(&s, &r);
    assert!(body.derived.get("shadow").is_none(), "{:?}", body.derived);
    // An unpublished version is refused, and nothing changes.
    let (ok, out) = s.tollgate(&["policy", "shadow", &format!("sha256:{}", "0".repeat(64))]);
    assert!(!ok && out.contains("not published"), "{out}");
    // The whole log, its governance entries included, passes an audit.
    s.audit();
}
