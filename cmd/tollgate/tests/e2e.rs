//! End-to-end: the real `tollgate` binary on 127.0.0.1 port 0 with a real
//! RocksDB directory, real engines and real signatures. Every receipt and
//! checkpoint is verified with the note, tlog and protocol crates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use testkit::Proc;

use note::{Checkpoint, Policy, ProofBundle, SignerKey, VerifierKey};
use protocol::{verify_receipt, Decision, DecisionResponse, ReceiptBody, ReplayResponse};
use serde_json::{json, Value};

struct Server {
    proc: Proc,
    url: String,
    dir: PathBuf,
}

impl Server {
    fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_args_env(dir, extra, &[])
    }

    fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with_args_env(dir, &[], env)
    }

    fn start_with_args_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = testkit::tollgate_serve(&dir.join("data"));
        cmd.args(extra)
            .envs(env.iter().copied())
            .stderr(Stdio::inherit());
        let proc = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
        Server {
            url: proc.url.clone(),
            proc,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGTERM and wait: the graceful path.
    fn stop(self) {
        let status = self.proc.terminate();
        assert!(status.success(), "tollgate exited with {status}");
    }

    fn key(&self, file: &str) -> VerifierKey {
        let skey = std::fs::read_to_string(self.dir.join("data").join(file)).unwrap();
        SignerKey::parse(skey.trim()).unwrap().verifier().clone()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The `demo` caller's token, made on first start.
    fn demo(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/demo.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A POST as the `demo` caller.
    fn post(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let r = ureq::post(&format!("{}{path}", self.url))
            .set("content-type", "application/json")
            .set("authorization", &format!("Bearer {}", self.demo()))
            .send_bytes(body);
        response(r)
    }

    fn decide(&self, request: &Value) -> DecisionResponse {
        let (status, body) = self.post("/v1/decisions", request.to_string().as_bytes());
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.url))
            .set("authorization", &format!("Bearer {}", self.demo()))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    fn get_bytes(&self, path: &str) -> Result<Vec<u8>, u16> {
        match ureq::get(&format!("{}{path}", self.url))
            .set("authorization", &format!("Bearer {}", self.demo()))
            .call()
        {
            Ok(r) => {
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut r.into_reader(), &mut v).unwrap();
                Ok(v)
            }
            Err(ureq::Error::Status(code, _)) => Err(code),
            Err(e) => panic!("{e}"),
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        let text = self.get_text("/log/checkpoint");
        let (cp, _) = Policy::for_log(self.key("log.skey"))
            .verify_checkpoint(text.as_bytes())
            .unwrap();
        cp
    }

    /// `proofcheck audit` of the whole log this gate serves.
    fn audit(&self) {
        testkit::audit(
            &self.url,
            &self.dir.join("data"),
            &self.dir.join("audit.state"),
        );
    }

    /// `tollgate caller add NAME` with `roles`, for `actor`; the file its
    /// token was written to.
    fn add_caller(&self, name: &str, roles: &[&str], actor: &str) -> PathBuf {
        let file = self.dir.join(format!("{name}.token"));
        let mut args = vec!["caller", "add", name, "--actor", actor, "--token-out"];
        args.push(file.to_str().unwrap());
        for r in roles {
            args.extend(["--role", r]);
        }
        let (ok, out) = self.tollgate(&args);
        assert!(ok, "{out}");
        file
    }

    fn tollgate(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--url", &self.url, "--token-file"])
            .arg(self.dir.join("data/admin.token"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }
}

/// POST /v1/decisions over a Unix socket (with a bearer token, or none):
/// the whole raw HTTP answer.
fn unix_decide(sock: &Path, token: Option<&str>, body: &str) -> String {
    use std::io::{Read, Write};
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "POST /v1/decisions HTTP/1.1\r\nhost: gate\r\ncontent-type: application/json\r\n\
         {auth}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = std::os::unix::net::UnixStream::connect(sock).unwrap();
    // One write, so the whole request is queued before the gate reads it.
    // HTTP lets the gate answer (a 401) before reading the body and close;
    // then a write finds the socket closed (EPIPE) or a read finds it reset
    // after the answer: what counts is the answer.
    let closed = |e: &std::io::Error| {
        matches!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        )
    };
    if let Err(e) = stream.write_all(request.as_bytes()) {
        assert!(closed(&e), "writing the request: {e}");
    }
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        assert!(closed(&e), "reading the answer: {e}");
    }
    String::from_utf8(answer).unwrap()
}

fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

/// The demo's usual request: `agent-treasury` transfers `amount`.
fn transfer(amount: u64, key: &str) -> Value {
    intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({ "amount": amount }),
        key,
    )
}

fn intent(actor: &str, surface: &str, action: &str, target: Value, key: &str) -> Value {
    json!({
        "actor": {"id": actor, "kind": "agent"},
        "surface": surface, "action": action, "target": target,
        "idempotency_key": key,
    })
}

/// Verifies a decision response completely: the receipt's gate signature and
/// consistency, its inclusion proof to a log-signed checkpoint, and that the
/// response says what the receipt says.
fn verify(s: &Server, r: &DecisionResponse) -> (ReceiptBody, Checkpoint) {
    let body = verify_receipt(r.receipt.as_bytes(), &s.key("gate.skey")).expect("receipt verifies");
    assert_eq!(body.decision, r.decision);
    assert_eq!(body.receipt_id, r.receipt_id);
    assert_eq!(
        body.policy.as_ref().map(|p| &p.version),
        r.policy_version.as_ref()
    );
    let bundle = ProofBundle::parse(&r.proof).unwrap();
    assert_eq!(bundle.index, r.log_index);
    let cp = bundle
        .verify(
            &tlog::leaf_hash(r.receipt.as_bytes()),
            &Policy::for_log(s.key("log.skey")),
        )
        .expect("inclusion proof verifies");
    assert!(cp.size > r.log_index);
    (body, cp)
}

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
            protocol::Entry::Governance(g) => actions.push(g.action),
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

/// Sidecar mode over a Unix socket: same API, same receipts.
#[test]
fn unix_socket_serves_the_same_api() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gate.sock");
    let s = Server::start_with(dir.path(), &["--unix-socket", sock.to_str().unwrap()]);
    let body = transfer(5, "unix").to_string();
    let answer = unix_decide(&sock, Some(&s.demo()), &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let json = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let r: DecisionResponse = serde_json::from_str(json).unwrap();
    assert_eq!(r.decision, Decision::Permit);
    verify(&s, &r);
    // The TCP listener serves the same log; receipts by id need a caller
    // with read (the demo caller has it).
    let receipt_url = format!("{}/v1/receipts/{}", s.url, r.receipt_id);
    let (status, err) = response(ureq::get(&receipt_url).call());
    assert_eq!((status, err["error"].as_str()), (401, Some("unauthorized")));
    let (status, found) = response(
        ureq::get(&receipt_url)
            .set("authorization", &format!("Bearer {}", s.demo()))
            .call(),
    );
    assert_eq!(
        (status, found["receipt"].as_str()),
        (200, Some(r.receipt.as_str()))
    );
    s.stop();
}

/// Graceful shutdown drains decisions in flight: every request sent before
/// SIGTERM is answered with a verified decision or never started.
#[test]
fn sigterm_drains_in_flight_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let url = s.url.clone();
    let auth = format!("Bearer {}", s.demo());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (url, auth) = (url.clone(), auth.clone());
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                for i in 0.. {
                    let body = transfer(5, &format!("drain-{w}-{i}"));
                    match ureq::post(&format!("{url}/v1/decisions"))
                        .set("authorization", &auth)
                        .send_string(&body.to_string())
                    {
                        Ok(r) => answered.push(r.into_json::<DecisionResponse>().unwrap()),
                        // Refused or reset once the listener closed: never started.
                        Err(ureq::Error::Transport(_)) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let gate_key = s.key("gate.skey");
    let log_key = s.key("log.skey");
    s.stop();
    let mut n = 0;
    for w in workers {
        for r in w.join().unwrap() {
            verify_receipt(r.receipt.as_bytes(), &gate_key).unwrap();
            ProofBundle::parse(&r.proof)
                .unwrap()
                .verify(
                    &tlog::leaf_hash(r.receipt.as_bytes()),
                    &Policy::for_log(log_key.clone()),
                )
                .unwrap();
            n += 1;
        }
    }
    assert!(n > 0);
    // After restart, every answered decision is in the log.
    let s = Server::start(dir.path());
    assert!(s.checkpoint().size >= n);
    s.stop();
}

/// Publishes and activates a Rego policy that loops `n`² times (nothing
/// collected): seconds of work for n = 3000, which the engine's time limit
/// stops.
fn activate_runaway(s: &Server, n: u32) {
    activate_rego(
        s,
        "runaway",
        &format!("n := count([x | some i in numbers.range(1, {n}); some j in numbers.range(1, {n}); x := i * j; x < 0])\n  n > 0"),
    );
}

#[test]
fn a_runaway_policy_is_stopped_at_the_configured_limit_and_is_silence() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_TIMEOUT_MS", "20")]);
    activate_runaway(&s, 3000);
    for key in ["r1", "r2"] {
        let r = s.decide(&intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({}),
            key,
        ));
        assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
        // The gate's limit, not the engine's default of 50 ms.
        assert!(r.reason.contains("limit=20000000ns"), "{}", r.reason);
        verify(&s, &r);
    }
    s.stop();
}

/// Rego's "Local" time zone is UTC in the gate whatever the machine's
/// (`TZ` here says Tokyo), so a decision never depends on where it was made
/// or replayed.
#[test]
fn local_time_in_a_policy_is_utc_on_every_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TZ", "JST-9")]);
    let bundle = rego_bundle(
        &s,
        "tz",
        "package tz\nimport rego.v1\ndefault decision := \"deny\"\ndecision := \"permit\" if {\n  t := input.derived.decided_at_ns\n  time.clock([t, \"Local\"]) == time.clock([t, \"UTC\"])\n}\n",
    );
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let r = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "tz",
    ));
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
}

/// A policy that runs to its time limit occupies an evaluation thread, not
/// a thread serving HTTP: with more slow evaluations in flight than the
/// machine has cores, `/healthz`, checkpoints and metrics are answered
/// before any of them ends.
#[test]
fn a_slow_policy_stalls_neither_healthz_nor_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "2000"),
            ("TOLLGATE_EVAL_THREADS", "1"),
        ],
    );
    activate_runaway(&s, 20_000);
    let s = std::sync::Arc::new(s);
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let r = s.decide(&intent(
                    "agent-treasury",
                    "payments",
                    "transfer",
                    json!({}),
                    &format!("slow-{i}"),
                ));
                (r, std::time::Instant::now())
            })
        })
        .collect();
    wait_for_metric(&s, "tollgate_decisions_pending", 4);
    for _ in 0..10 {
        assert_eq!(s.get_text("/healthz"), "ok\n");
        s.checkpoint();
        assert!(s
            .get_text("/metrics")
            .contains("tollgate_decisions_pending 4"));
    }
    let reads_done = std::time::Instant::now();
    for t in slow {
        let (r, answered) = t.join().unwrap();
        assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
        assert!(r.reason.contains("limit=2000000000ns"), "{}", r.reason);
        assert!(reads_done < answered, "a read waited for a slow evaluation");
    }
    // Rego ran in one evaluation process (`eval_threads` = 1), which the
    // time limit (regorus's own timer) ended each time without stopping it.
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 1"),
        "{metrics}"
    );
}

/// Publishes and activates a Rego policy whose body is `body` (a rule body
/// setting nothing; the decision is PERMIT if it holds).
fn activate_rego(s: &Server, name: &str, body: &str) {
    let bundle = rego_bundle(
        s,
        name,
        &format!("package {name}\nimport rego.v1\ndecision := \"permit\" if {{\n  {body}\n}}\n"),
    );
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
}

/// A Rego bundle directory `name` beside the server's data: `policy.rego`
/// is `source`, the entrypoint `data.<name>.decision`.
fn rego_bundle(s: &Server, name: &str, source: &str) -> PathBuf {
    let bundle = s.dir.join(name);
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(
        bundle.join("tollgate.json"),
        format!(r#"{{"engine": "rego", "entrypoint": "data.{name}.decision"}}"#),
    )
    .unwrap();
    std::fs::write(bundle.join("policy.rego"), source).unwrap();
    bundle
}

/// The processes `pid` started that are running.
fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let list =
            std::fs::read_to_string(task.unwrap().path().join("children")).unwrap_or_default();
        all.extend(list.split_whitespace().map(|c| c.parse::<u32>().unwrap()));
    }
    all
}

/// The gate process's peak resident memory, in MiB.
fn peak_rss_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kb / 1024
}

/// One builtin call can build a large value from a short policy: a format
/// width of 500,000,000 asks `sprintf` for half a gigabyte at once, which
/// no timer interrupts. Rego evaluates in a process capped at
/// `eval_memory_mb`: the decision is SILENCE naming the cap, the gate's own
/// memory stays small, and the next decision gets a new process.
#[test]
fn a_policy_past_eval_memory_mb_is_silence_and_the_gate_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_MEMORY_MB", "64")]);
    activate_rego(
        &s,
        "amplifier",
        "count(sprintf(concat(\"\", [\"%0\", format_int(input.context.width, 10), \"d\"]), [7])) > 0",
    );
    let at = |width: u64, key: &str| {
        let mut i = intent("agent-treasury", "payments", "transfer", json!({}), key);
        i["context"] = json!({ "width": width });
        s.decide(&i)
    };
    let r = at(500_000_000, "wide");
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    assert!(r.reason.contains("eval_memory_mb (64 MiB)"), "{}", r.reason);
    verify(&s, &r);
    let r = at(10, "narrow");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    verify(&s, &r);
    let peak = peak_rss_mb(s.proc.id());
    eprintln!("gate peak RSS {peak} MiB");
    assert!(peak < 256, "the gate's peak RSS is {peak} MiB");
    // An idle evaluation process killed from outside is replaced; the
    // next decision does not pay for it.
    let workers = children(s.proc.id());
    assert_eq!(workers.len(), 1, "{workers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(workers[0]).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = at(11, "after-kill");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_eval_process_failures_total{cause=\"memory\"} 1"),
        "{metrics}"
    );
    s.audit();
    s.stop();
}

/// A Rego policy that compiles in the gate but not within `eval_memory_mb`
/// (here: 6 MB of data) would make every decision SILENCE; activation
/// refuses it, naming the cause, and the active policy stays.
#[test]
fn activation_refuses_a_policy_that_does_not_load_within_eval_memory_mb() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_MEMORY_MB", "16")]);
    let before = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "before",
    ));
    let bundle = rego_bundle(
        &s,
        "big",
        "package big\nimport rego.v1\ndecision := \"permit\" if count(data.rows) > 0\n",
    );
    let rows: Vec<_> = (0..100_000)
        .map(|i| json!({ "id": i, "name": format!("row-{i}") }))
        .collect();
    std::fs::write(
        bundle.join("data.json"),
        json!({ "rows": rows }).to_string(),
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not load in an evaluation process"),
        "{out}"
    );
    assert!(out.contains("eval_memory_mb (16 MiB)"), "{out}");
    let after = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "after",
    ));
    assert_eq!(after.decision, before.decision, "{}", after.reason);
    assert_eq!(after.policy_version, before.policy_version);
    s.stop();
    // Active in a gate that evaluates in its own process, the same policy
    // stops a restart under the cap from serving, with the cause.
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_MEMORY_MB", "0")]);
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let (ok, out) = s.tollgate(&["policy", "activate", &version]);
    assert!(ok, "{out}");
    s.stop();
    let out = testkit::tollgate_serve(&dir.path().join("data"))
        .env("TOLLGATE_EVAL_MEMORY_MB", "16")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("raise eval_memory_mb"), "{stderr}");
    assert!(stderr.contains("eval_memory_mb (16 MiB)"), "{stderr}");
}

/// A single builtin call runs to its end before regorus checks its timer;
/// the gate stops the evaluation process at the time limit instead.
#[test]
fn one_long_builtin_call_is_stopped_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "20"),
            ("TOLLGATE_EVAL_MEMORY_MB", "16384"),
        ],
    );
    // Padding half a gigabyte a character at a time takes seconds.
    activate_rego(&s, "onecall", "count(sprintf(\"%0500000000d\", [7])) > 0");
    let started = std::time::Instant::now();
    let r = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "long",
    ));
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    assert!(
        r.reason.contains("did not answer within 120 ms"),
        "{}",
        r.reason
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    verify(&s, &r);
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_process_failures_total{cause=\"time\"} 1"),
        "{metrics}"
    );
    s.stop();
}

/// Polls `/metrics` until the gauge `name` reads `value`.
fn wait_for_metric(s: &Server, name: &str, value: u64) {
    let line = format!("{name} {value}");
    for _ in 0..500 {
        if s.get_text("/metrics").lines().any(|l| l == line) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{name} never reached {value}");
}

/// Beyond `max_pending_decisions`, a decision request is answered 503
/// `overloaded` with Retry-After at once: nothing evaluated, nothing logged.
#[test]
fn beyond_max_pending_decisions_is_503_overloaded_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "1000"),
            ("TOLLGATE_EVAL_THREADS", "1"),
            ("TOLLGATE_MAX_PENDING_DECISIONS", "2"),
        ],
    );
    activate_runaway(&s, 20_000);
    let before = s.checkpoint().size;
    let s = std::sync::Arc::new(s);
    let admitted: Vec<_> = (0..2)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.decide(&intent(
                    "agent-treasury",
                    "payments",
                    "transfer",
                    json!({}),
                    &format!("admitted-{i}"),
                ))
            })
        })
        .collect();
    wait_for_metric(&s, "tollgate_decisions_pending", 2);
    for i in 0..6 {
        let body = intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({}),
            &format!("refused-{i}"),
        );
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {}", s.demo()))
            .send_string(&body.to_string());
        let Err(ureq::Error::Status(503, r)) = r else {
            panic!("expected 503, got {r:?}");
        };
        assert_eq!(r.header("retry-after"), Some("1"));
        let body: Value = r.into_json().unwrap();
        assert_eq!(body["error"], "overloaded", "{body}");
    }
    for t in admitted {
        assert_eq!(t.join().unwrap().decision, Decision::Silence);
    }
    assert_eq!(
        s.checkpoint().size,
        before + 2,
        "only the admitted two are logged"
    );
    let metrics = s.get_text("/metrics");
    assert!(metrics.contains("tollgate_requests_total{result=\"overloaded\"} 6"));
    assert!(metrics.contains("tollgate_decisions_pending 0"));
}

/// Overload with the example policy: 256 clients, keep-alive, for three
/// seconds against a gate admitting 32 decisions at once. Every answer is a
/// decision or 503 `overloaded`; the log holds exactly the decisions
/// answered; the gate's peak resident memory (VmHWM) is printed and stays
/// under a bound far below what the queued work could take unbounded.
#[test]
fn overload_answers_503_and_keeps_memory_and_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_MAX_PENDING_DECISIONS", "32")]);
    let before = s.checkpoint().size;
    let (url, token) = (s.url.clone(), s.demo());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let clients: Vec<_> = (0..256)
        .map(|c| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let (mut decided, mut overloaded) = (0u64, 0u64);
                let mut i = 0;
                while std::time::Instant::now() < until {
                    i += 1;
                    let body = intent(
                        "agent-treasury",
                        "payments",
                        "transfer",
                        json!({"amount": 5, "currency": "EUR", "to": "acct-1"}),
                        &format!("load-{c}-{i}"),
                    );
                    let r = agent
                        .post(&format!("{url}/v1/decisions"))
                        .set("authorization", &format!("Bearer {token}"))
                        .send_string(&body.to_string());
                    match response(r) {
                        (200, v) => {
                            assert_eq!(v["replayed"], false);
                            decided += 1;
                        }
                        (503, v) if v["error"] == "overloaded" => overloaded += 1,
                        (code, v) => panic!("{code} {v}"),
                    }
                }
                (decided, overloaded)
            })
        })
        .collect();
    let (mut decided, mut overloaded) = (0, 0);
    for c in clients {
        let (d, o) = c.join().unwrap();
        decided += d;
        overloaded += o;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.proc.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!(
        "overload: {decided} decided, {overloaded} overloaded, gate peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(decided > 0 && overloaded > 0, "{decided} / {overloaded}");
    assert_eq!(s.checkpoint().size, before + decided);
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
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

/// Callers through the CLI, and tokens never in the gate's output: the
/// gate runs with its most verbose logging while callers are added, used,
/// rotated and revoked, and neither its stdout nor its stderr holds a token.
#[test]
fn caller_cli_and_no_token_in_the_gate_output() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("gate.out");
    let err_path = dir.path().join("gate.err");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("TOLLGATE_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&out_path).unwrap();
        if let Some(u) = text
            .lines()
            .find_map(|l| l.strip_prefix("tollgate listening on "))
            .filter(|_| text.contains("The log:"))
        {
            break u.to_string();
        }
        assert!(started.elapsed().as_secs() < 60, "the gate did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--url", &url, "--token-file"])
            .arg(dir.path().join("data/admin.token"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let token_file = dir.path().join("sdk.token");
    cli(&[
        "caller",
        "add",
        "sdk",
        "--role",
        "decide",
        "--actor",
        "agent-treasury",
        "--token-out",
        token_file.to_str().unwrap(),
    ]);
    let first = std::fs::read_to_string(&token_file)
        .unwrap()
        .trim()
        .to_string();
    let rotated = cli(&["caller", "rotate", "sdk"]).trim().to_string();
    assert_eq!(rotated.len(), 64, "{rotated}");
    let decide = |token: &str| {
        response(
            ureq::post(&format!("{url}/v1/decisions"))
                .set("authorization", &format!("Bearer {token}"))
                .send_string(&transfer(5, "k").to_string()),
        )
    };
    assert_eq!(decide(&first).0, 401, "the rotated-out token");
    let (status, r) = decide(&rotated);
    assert_eq!((status, r["decision"].as_str()), (200, Some("PERMIT")));
    let list = cli(&["caller", "list"]);
    assert!(list.contains("sdk") && list.contains("demo"), "{list}");
    cli(&["caller", "revoke", "sdk"]);
    assert_eq!(decide(&rotated).0, 401, "revoked");
    assert!(cli(&["caller", "list"]).contains("REVOKED"));
    let demo = std::fs::read_to_string(dir.path().join("data/demo.token")).unwrap();
    let admin = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let output =
        std::fs::read_to_string(&out_path).unwrap() + &std::fs::read_to_string(&err_path).unwrap();
    assert!(
        output.contains("caller added"),
        "the log shows the change:\n{output}"
    );
    for (what, token) in [
        ("first", first.as_str()),
        ("rotated", rotated.as_str()),
        ("demo", demo.trim()),
        ("admin", admin.trim()),
    ] {
        assert!(
            !output.contains(token),
            "the {what} token is in the gate's output"
        );
    }
}

/// The sidecar case: on the Unix socket, a request without a token
/// authenticates as the caller its peer's uid is mapped to (SO_PEERCRED), and
/// the receipt says so; an unmapped peer without a token is refused.
#[test]
fn unix_socket_peer_uid_maps_to_a_caller() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gate.sock");
    // This process's uid: the owner of a file it just created.
    let probe = dir.path().join("uid-probe");
    std::fs::write(&probe, b"").unwrap();
    let uid = std::fs::metadata(&probe).unwrap().uid();
    let ask = |sock: &Path, key: &str| {
        let body = transfer(5, key).to_string();
        unix_decide(sock, None, &body)
    };
    // Unmapped: 401, nothing written.
    let s = Server::start_with(dir.path(), &["--unix-socket", sock.to_str().unwrap()]);
    let before = s.checkpoint().size;
    let answer = ask(&sock, "peer-1");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert_eq!(s.checkpoint().size, before);
    s.stop();
    // Mapped to the demo caller: decided, and the receipt names how.
    let s = Server::start_with_args_env(
        dir.path(),
        &["--unix-socket", sock.to_str().unwrap()],
        &[("TOLLGATE_UNIX_CALLERS", &format!("{uid}=demo"))],
    );
    let answer = ask(&sock, "peer-2");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let r: DecisionResponse =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(r.decision, Decision::Permit);
    let (body, _) = verify(&s, &r);
    assert_eq!(
        body.derived["caller"],
        json!({"name": "demo", "via": "peer_uid"})
    );
    // Over TCP the uid means nothing: no token, 401.
    let (status, _) = response(
        ureq::post(&format!("{}/v1/decisions", s.url)).send_string(&transfer(5, "tcp").to_string()),
    );
    assert_eq!(status, 401);
    s.stop();
}

/// Server limits: 2,000 connections that never finish a request head do not
/// keep a normal caller from being answered, and are closed once the head
/// deadline passes; beyond `max_connections` a new connection is closed at
/// once, and the gate serves again once slots free up.
#[test]
fn slow_connections_are_bounded_and_do_not_starve_callers() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    // This test holds thousands of sockets: lift the soft open-files limit.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_HEADER_READ_TIMEOUT_MS", "3000")]);
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"POST /v1/decisions HTTP/1.1\r\nhost: gate\r\n")
            .unwrap();
        slow.push(c);
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let r = agent
        .post(&format!("{}/v1/decisions", s.url))
        .set("authorization", &format!("Bearer {}", s.demo()))
        .send_string(&transfer(5, "busy").to_string());
    assert_eq!(
        r.map(|r| r.status()).ok(),
        Some(200),
        "a caller beside 2,000 slow connections"
    );
    // Past the head deadline the gate has closed them: reads end.
    std::thread::sleep(Duration::from_millis(3500));
    let mut closed = 0;
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 256];
        // EOF, or the gate's 408 answer then EOF.
        let started = Instant::now();
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if started.elapsed() < Duration::from_secs(1) => {}
                Ok(_) => break,
            }
        }
        if c.read(&mut buf).map_or(true, |n| n == 0) {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        slow.len(),
        "slow connections closed at the head deadline"
    );
    drop(slow);
    s.stop();

    // The cap: with 20 connections open, the 21st is closed at once.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_MAX_CONNECTIONS", "20"),
            ("TOLLGATE_HEADER_READ_TIMEOUT_MS", "1500"),
        ],
    );
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let held: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = agent.get(&format!("{}/healthz", s.url)).call();
    assert!(refused.is_err(), "a connection beyond the cap is closed");
    // Once the held ones reach their deadline, the gate serves again.
    std::thread::sleep(Duration::from_millis(2000));
    let r = agent.get(&format!("{}/healthz", s.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
    s.stop();
}

/// Central mode over TLS: https verified against the test CA; plain HTTP
/// and an untrusting client are refused; a client certificate from the
/// client CA authenticates as its mapped caller (mTLS) and the receipt says
/// so, one from another CA is refused; proofcheck and the CLI speak https.
#[test]
fn tls_and_mutual_tls() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&pki_dir).unwrap();
    std::fs::create_dir_all(&other_dir).unwrap();
    let pki = testkit::Pki::new(&pki_dir, "gate");
    let (cert, key) = pki.issue(
        "gate",
        "gate.test",
        vec!["127.0.0.1".into(), "localhost".into()],
        false,
    );
    let (client_cert, client_key) = pki.issue("client", "agent-sdk.test", vec![], true);
    let other = testkit::Pki::new(&other_dir, "other");
    let (rogue_cert, rogue_key) = other.issue("rogue", "agent-sdk.test", vec![], true);
    let ca = pki.ca_file();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_TLS_CERT", cert.to_str().unwrap()),
            ("TOLLGATE_TLS_KEY", key.to_str().unwrap()),
            ("TOLLGATE_TLS_CLIENT_CA", ca.to_str().unwrap()),
            ("TOLLGATE_TLS_CALLERS", "agent-sdk.test=demo"),
        ],
    );
    assert!(s.url.starts_with("https://"), "{}", s.url);
    let timeout = Duration::from_secs(10);
    let trusting = tls::agent(Some(&ca), timeout).unwrap();
    let body = |key: &str| transfer(5, key).to_string();
    // A bearer token over verified https.
    let (status, r) = response(
        trusting
            .post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {}", s.demo()))
            .send_string(&body("tls-token")),
    );
    assert_eq!((status, r["decision"].as_str()), (200, Some("PERMIT")));
    // Plain HTTP on the TLS port, and a client that does not trust the CA.
    let plain = s.url.replacen("https://", "http://", 1);
    assert!(ureq::get(&format!("{plain}/healthz")).call().is_err());
    let untrusting = tls::agent(None, timeout).unwrap();
    assert!(untrusting
        .get(&format!("{}/healthz", s.url))
        .call()
        .is_err());
    // mTLS: the client certificate is the credential.
    let mtls = tls::agent_with_client_cert(&ca, &client_cert, &client_key, timeout).unwrap();
    let r = mtls
        .post(&format!("{}/v1/decisions", s.url))
        .send_string(&body("tls-mtls"))
        .unwrap();
    let r: DecisionResponse = r.into_json().unwrap();
    assert_eq!(r.decision, Decision::Permit);
    let receipt = verify_receipt(r.receipt.as_bytes(), &s.key("gate.skey")).unwrap();
    assert_eq!(
        receipt.derived["caller"],
        json!({"name": "demo", "via": "mtls"})
    );
    // A certificate from another CA is refused in the handshake.
    let rogue = tls::agent_with_client_cert(&ca, &rogue_cert, &rogue_key, timeout).unwrap();
    assert!(rogue
        .post(&format!("{}/v1/decisions", s.url))
        .send_string(&body("tls-rogue"))
        .is_err());
    // proofcheck and the CLI over https.
    let out = Command::new(testkit::bin("proofcheck"))
        .args(["--token-file"])
        .arg(s.dir.join("data/demo.token"))
        .arg("--ca-file")
        .arg(&ca)
        .args([
            "audit",
            "--log",
            &s.url,
            "--log-key",
            &s.key("log.skey").to_string(),
            "--gate-key",
            &s.key("gate.skey").to_string(),
            "--state",
        ])
        .arg(dir.path().join("audit.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["policy", "list", "--url", &s.url, "--token-file"])
        .arg(s.dir.join("data/admin.token"))
        .arg("--ca-file")
        .arg(&ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A witness monitoring the log over https cosigns it.
    let log_key = s.key("log.skey");
    let mut cmd = Command::new(testkit::bin("witness"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("witness"))
        .args(["--log", &log_key.to_string(), "--monitor", &s.url])
        .args(["--monitor-interval-ms", "50", "--ca-file"])
        .arg(&ca)
        .arg("--token-file")
        .arg(s.dir.join("data/demo.token"))
        .env("WITNESS_LOG", "warn");
    let witness = testkit::Proc::start(cmd, testkit::WITNESS_READY, 0);
    let started = std::time::Instant::now();
    let origin = log_key.name().to_string();
    loop {
        let r = ureq::get(&format!("{}/checkpoint?origin={origin}", witness.url)).call();
        if r.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the witness did not cosign the https log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.stop();
}

/// `listen = "unix:/path"`: the Unix socket only, created 0660 and given to
/// `unix_socket_group`, in a directory the gate owns (one that belongs to
/// another user is refused); decisions are served on it.
#[test]
fn unix_only_listen_makes_a_private_socket() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/gate.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(["serve", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .env("TOLLGATE_UNIX_SOCKET_GROUP", "65534")
        .env("TOLLGATE_LOG", "warn");
    let gate = testkit::Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    assert_eq!(gate.url, format!("unix:{}", sock.display()));
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    let token = std::fs::read_to_string(dir.path().join("data/demo.token")).unwrap();
    let body = transfer(5, "u").to_string();
    let answer = unix_decide(&sock, Some(token.trim()), &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(gate);

    // A socket directory that belongs to another user is refused.
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    let uid = std::fs::metadata(dir.path()).unwrap().uid();
    if uid == 0 {
        std::os::unix::fs::chown(&foreign, Some(65534), None).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--data-dir"])
            .arg(dir.path().join("data2"))
            .arg("--listen")
            .arg(format!("unix:{}", foreign.join("gate.sock").display()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("belongs to uid 65534"), "{err}");
    }
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

/// A bundle declaring a counter over the log: the sum of an actor's
/// permitted transfers in the last 24 h, with a 10,000 limit.
fn quota_bundle(dir: &Path) -> PathBuf {
    let b = dir.join("quota");
    std::fs::create_dir_all(&b).unwrap();
    std::fs::write(
        b.join("tollgate.json"),
        r#"{"engine": "rego", "entrypoint": "data.tollgate.quota.decision",
            "counters": [{"name": "transferred_24h", "surface": "payments", "action": "transfer",
                          "window_seconds": 86400, "sum": "amount"}]}"#,
    )
    .unwrap();
    std::fs::write(
        b.join("policy.rego"),
        "package tollgate.quota\n\nimport rego.v1\n\ndefault decision := \"silence\"\n\n\
         transfer if {\n\tinput.surface == \"payments\"\n\tinput.action == \"transfer\"\n}\n\n\
         decision := \"permit\" if {\n\ttransfer\n\t\
         input.derived.history.transferred_24h + input.target.amount <= 10000\n\
         } else := \"deny\" if transfer\n",
    )
    .unwrap();
    b
}

/// Exact quotas: 200 concurrent transfers of 100 by one actor against a
/// 10,000 daily limit give exactly 100 PERMITs; each receipt records the
/// counter it saw; the same after a restart (the counter read back from
/// the log); replay of every receipt gives its decision.
#[test]
fn counters_over_the_log_are_exact_under_concurrency_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let bundle = quota_bundle(dir.path());
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let transfer = |key: String| {
        intent(
            "agent-quota",
            "payments",
            "transfer",
            json!({"amount": 100, "to": "acct-9"}),
            &key,
        )
    };
    let decided: Vec<DecisionResponse> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let (s, transfer) = (&s, &transfer);
                scope.spawn(move || s.decide(&transfer(format!("t{i}"))))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let permits = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .count();
    assert_eq!(permits, 100, "exactly the transfers that fit");
    assert!(decided
        .iter()
        .all(|r| r.decision == Decision::Permit || r.decision == Decision::Deny));
    // Each receipt records the value it saw; the permits saw 0, 100, …, 9,900.
    let mut seen: Vec<i64> = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .map(|r| {
            verify(&s, r).0.derived["history"]["transferred_24h"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).map(|k| k * 100).collect::<Vec<i64>>());
    for r in decided.iter().filter(|r| r.decision == Decision::Deny) {
        assert_eq!(
            verify(&s, r).0.derived["history"]["transferred_24h"],
            10_000
        );
    }
    // An idempotent retry is answered with its receipt and counts nothing.
    let again = s.decide(&transfer("t0".into()));
    assert!(again.replayed);

    // Across a restart the counter is read back from the log.
    s.stop();
    let s = Server::start(dir.path());
    for i in 0..10 {
        let r = s.decide(&transfer(format!("after-{i}")));
        assert_eq!(r.decision, Decision::Deny, "{}", r.reason);
        assert_eq!(
            verify(&s, &r).0.derived["history"]["transferred_24h"],
            10_000
        );
    }
    let small = s.decide(&intent(
        "agent-quota-2",
        "payments",
        "transfer",
        json!({"amount": 100}),
        "other-actor",
    ));
    assert_eq!(small.decision, Decision::Permit, "counters are per actor");
    // A negative amount never lowers a sum (this quota policy does not
    // refuse one; the examples do): after −1,000,000 the limit still holds.
    for (amount, key, want) in [
        (-1_000_000, "neg-1", Decision::Permit),
        (10_000, "neg-2", Decision::Permit),
        (1, "neg-3", Decision::Deny),
    ] {
        let r = s.decide(&intent(
            "agent-quota-3",
            "payments",
            "transfer",
            json!({"amount": amount}),
            key,
        ));
        assert_eq!(r.decision, want, "{amount}: {}", r.reason);
    }
    // Replay of every receipt: the same decision from what it recorded.
    for r in &decided {
        let (status, replay) = s.post("/v1/replay", serde_json::to_string(r).unwrap().as_bytes());
        assert_eq!(
            (status, replay["same"].clone()),
            (200, json!(true)),
            "{replay}"
        );
    }
    s.audit();
}

/// Approvals: a policy asks for one above 1,000; the answer names the
/// request; a caller with `approve` (never the asker) approves it with a
/// signed log entry; asked again, the PERMIT relies on it (recorded in
/// `derived.approvals`), and it is used once; it binds the exact request.
#[test]
fn approvals_are_logged_bound_to_the_request_and_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let b = dir.path().join("dual");
    std::fs::create_dir(&b).unwrap();
    std::fs::write(
        b.join("tollgate.json"),
        r#"{"engine": "rego", "entrypoint": "data.tollgate.dual.decision"}"#,
    )
    .unwrap();
    std::fs::write(
        b.join("policy.rego"),
        "package tollgate.dual\n\nimport rego.v1\n\ndefault decision := \"silence\"\n\n\
         transfer if {\n\tinput.surface == \"payments\"\n\tinput.action == \"transfer\"\n}\n\n\
         decision := \"permit\" if {\n\ttransfer\n\tinput.target.amount <= 1000\n\
         } else := \"permit\" if {\n\ttransfer\n\t\
         count(object.get(input.derived, \"approvals\", [])) >= 1\n\
         } else := \"approval\" if transfer\n",
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", b.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let alice = s.add_caller("alice", &["approve"], "agent-*");
    let both = s.add_caller("both", &["decide", "approve"], "agent-*");
    let to_acct_9 = |amount: u64, key: &str| {
        intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({"amount": amount, "to": "acct-9"}),
            key,
        )
    };
    let asked = s.decide(&to_acct_9(5000, "k1"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let approval = asked
        .approval
        .clone()
        .unwrap_or_else(|| panic!("no approval request in the answer: {}", asked.reason));
    let id = approval["id"].as_str().unwrap().to_string();
    assert_eq!(approval["state"], "open");
    assert_eq!(approval["approvals"], 1);
    assert_eq!(
        id,
        protocol::approval_id(&verify(&s, &asked).0.request).0,
        "the id is the request's, computable by anyone"
    );
    // Retried with the same key: the same receipt, and how the request stands.
    let again = s.decide(&to_acct_9(5000, "k1"));
    assert!(again.replayed && again.approval.unwrap()["id"] == id.as_str());

    // Votes: by a caller with `approve`, never the one that asked.
    let vote = |file: &Path, verb: &str, id: &str| {
        let args = [
            "approvals",
            verb,
            id,
            "--token-file",
            file.to_str().unwrap(),
        ];
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--url", &s.url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let demo_file = dir.path().join("data/demo.token");
    let (ok, out) = vote(&demo_file, "approve", &id);
    assert!(!ok && out.contains("lacks the approve role"), "{out}");
    let size = s.checkpoint().size;
    let (ok, out) = vote(&alice, "approve", &id);
    assert!(ok && out.contains("approved"), "{out}");
    assert_eq!(
        s.checkpoint().size,
        size + 1,
        "the vote is an entry in the log"
    );
    let (ok, out) = vote(&alice, "approve", &id);
    assert!(!ok && out.contains("already approved"), "{out}");

    // Another amount is another request: the approval does not carry over.
    let other = s.decide(&to_acct_9(5001, "k2"));
    assert_eq!(other.decision, Decision::Silence);
    assert_ne!(other.approval.unwrap()["id"], id.as_str());
    // Asked again: PERMIT, relying on alice's approval, recorded in the receipt.
    let permitted = s.decide(&to_acct_9(5000, "k3"));
    assert_eq!(permitted.decision, Decision::Permit, "{}", permitted.reason);
    let (body, _) = verify(&s, &permitted);
    assert_eq!(body.derived["approvals"][0]["by"], "alice");
    assert_eq!(body.derived["approvals"][0]["entry"], size);
    // Used once: the next ask is SILENCE with a fresh request.
    let after = s.decide(&to_acct_9(5000, "k4"));
    assert_eq!(after.decision, Decision::Silence);
    assert_eq!(after.approval.unwrap()["state"], "open");
    // The caller that asked may not approve its own request.
    let as_both = |intent: &Value| {
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set(
                "authorization",
                &format!("Bearer {}", std::fs::read_to_string(&both).unwrap().trim()),
            )
            .send_string(&intent.to_string())
            .unwrap();
        r.into_json::<Value>().unwrap()
    };
    let mine = as_both(&to_acct_9(7000, "mine"));
    let mine_id = mine["approval"]["id"].as_str().unwrap().to_string();
    let (ok, out) = vote(&both, "approve", &mine_id);
    assert!(!ok && out.contains("may not approve it"), "{out}");
    let (ok, out) = vote(&alice, "reject", &mine_id);
    assert!(ok && out.contains("rejected"), "{out}");
    let (ok, out) = vote(&alice, "approve", &mine_id);
    assert!(!ok && out.contains("is rejected"), "{out}");
    // Nor rely on its own vote by asking another's request itself: demo
    // asks, `both` approves, then `both` asks the same request: SILENCE,
    // its vote not attached. The one that asked still gets its PERMIT.
    let theirs = s.decide(&to_acct_9(8000, "theirs-1"));
    let theirs_id = theirs.approval.unwrap()["id"].as_str().unwrap().to_string();
    let (ok, out) = vote(&both, "approve", &theirs_id);
    assert!(ok && out.contains("approved"), "{out}");
    let own = as_both(&to_acct_9(8000, "own-1"));
    assert_eq!(own["decision"], "SILENCE", "{own}");
    assert!(own["receipt"].as_str().unwrap().contains("\"derived\""));
    assert!(
        !own["receipt"].as_str().unwrap().contains("\"approvals\""),
        "its own vote was attached: {own}"
    );
    let asker = s.decide(&to_acct_9(8000, "theirs-2"));
    assert_eq!(asker.decision, Decision::Permit, "{}", asker.reason);
    assert_eq!(verify(&s, &asker).0.derived["approvals"][0]["by"], "both");
    // Replay of the PERMIT: the same decision from the recorded approvals.
    let (status, replay) = s.post(
        "/v1/replay",
        serde_json::to_string(&permitted).unwrap().as_bytes(),
    );
    assert_eq!(
        (status, replay["same"].clone()),
        (200, json!(true)),
        "{replay}"
    );
    s.audit();
}

/// Polls `ok` for up to ten seconds (a gate follows the shared log every
/// 250 ms).
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Two gates on the PostgreSQL database `url`, the second with the first
/// one's keys, origin and tokens.
fn two_gates(url: &str) -> (tempfile::TempDir, tempfile::TempDir, Server, Server) {
    let env = [("TOLLGATE_LOG_STORE", url)];
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Server::start_with_env(da.path(), &env);
    testkit::copy_gate_identity(&da.path().join("data"), &db.path().join("data")).unwrap();
    let b = Server::start_with_env(db.path(), &env);
    (da, db, a, b)
}

/// A vote over HTTP: the status.
fn vote_on(url: &str, token_file: &Path, id: &str, vote: &str) -> u16 {
    let token = std::fs::read_to_string(token_file).unwrap();
    response(
        ureq::post(&format!("{url}/v1/approvals/{id}"))
            .set("authorization", &format!("Bearer {}", token.trim()))
            .send_string(&json!({ "vote": vote }).to_string()),
    )
    .0
}

/// An approve on one gate and a reject on the other at the same moment, 20
/// times: no vote is ever lost (each is a compare-and-swap of the shared
/// record, under the actor's lock across gates), so every request ends
/// rejected and the next ask on either gate is never PERMIT (before, one
/// vote was lost in 39 of 60 such rounds, and most ended PERMIT); the
/// shared log passes an audit.
#[test]
fn votes_racing_on_two_gates_are_never_lost() {
    let pg = testkit::Postgres::start();
    let (_da, _db, a, b) = two_gates(&pg.url);
    let alice = a.add_caller("alice", &["approve"], "agent-*");
    let bob = a.add_caller("bob", &["approve"], "agent-*");
    eventually("the other gate knows the approvers", || {
        vote_on(
            &b.url,
            &bob,
            "ap-00000000000000000000000000000000",
            "reject",
        ) == 404
    });
    for round in 0..20u64 {
        let asked = a.decide(&transfer(50_000 + round, &format!("race-{round}")));
        assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
        let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
        let (approved, rejected) = std::thread::scope(|scope| {
            let approve = scope.spawn(|| vote_on(&a.url, &alice, &id, "approve"));
            let reject = scope.spawn(|| vote_on(&b.url, &bob, &id, "reject"));
            (approve.join().unwrap(), reject.join().unwrap())
        });
        assert_eq!(rejected, 200, "round {round}: the reject always counts");
        assert!(
            approved == 200 || approved == 400,
            "round {round}: {approved}"
        );
        for (gate, key) in [(&a, "again-a"), (&b, "again-b")] {
            let again = gate.decide(&transfer(50_000 + round, &format!("race-{round}-{key}")));
            assert_ne!(
                again.decision,
                Decision::Permit,
                "round {round}: a lost reject"
            );
        }
    }
    a.audit();
}

/// Two gates on one PostgreSQL log (`log_store`), with the same keys: a
/// decision made on one is the other's idempotent answer, each serves what
/// the other appended; a caller added, revoked, an approval given or a
/// policy activated on one takes effect on the other, whose counters count
/// the first one's PERMITs; and the shared log passes an audit.
#[test]
fn two_gates_share_one_log_on_postgres() {
    let pg = testkit::Postgres::start();
    let (da, _db, a, b) = two_gates(&pg.url);
    let first = a.decide(&transfer(500, "shared-1"));
    assert_eq!(first.decision, Decision::Permit);
    let again = b.decide(&transfer(500, "shared-1"));
    assert!(again.replayed, "the other gate answers with the original");
    assert_eq!(
        (again.receipt_id.as_str(), again.log_index),
        (first.receipt_id.as_str(), first.log_index)
    );
    let second = b.decide(&transfer(500, "shared-2"));
    assert_eq!(second.decision, Decision::Permit);
    assert!(second.log_index > first.log_index);
    let (status, found) = a.post(
        "/v1/replay",
        serde_json::to_string(&second).unwrap().as_bytes(),
    );
    assert_eq!(
        (status, found["same"].clone()),
        (200, json!(true)),
        "{found}"
    );
    // Each learns the other's checkpoints.
    eventually("the gates agree on the checkpoint", || {
        a.checkpoint().size == b.checkpoint().size
    });

    // A caller added on one gate works on the other; revoked, it stops.
    let sdk = a.add_caller("sdk", &["decide"], "agent-treasury");
    let sdk = std::fs::read_to_string(&sdk).unwrap().trim().to_string();
    let as_sdk = |s: &Server, key: &str| {
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {sdk}"))
            .send_string(&transfer(500, key).to_string());
        response(r).0
    };
    eventually("the other gate knows the new caller", || {
        as_sdk(&b, "by-sdk-1") == 200
    });
    let (ok, out) = a.tollgate(&["caller", "revoke", "sdk"]);
    assert!(ok, "{out}");
    eventually("the other gate refuses the revoked caller", || {
        as_sdk(&b, "by-sdk-2") == 401
    });

    // An approval given on one gate lets the other permit (the example
    // policy asks for one approval over 10,000).
    let big = |key: &str| {
        intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({"amount": 20000, "to": "acct-9"}),
            key,
        )
    };
    let asked = a.decide(&big("big-1"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    let alice = a.add_caller("alice", &["approve"], "agent-*");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["approvals", "approve", &id, "--url", &a.url, "--token-file"])
        .arg(&alice)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut tries = 0;
    eventually("the other gate permits on the approval", || {
        tries += 1;
        b.decide(&big(&format!("big-b-{tries}"))).decision == Decision::Permit
    });

    // A policy activated on one gate binds the other's decisions, and its
    // counters count what either gate permitted.
    let bundle = quota_bundle(da.path());
    let (ok, out) = a.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let quota = |amount: u64, key: &str| {
        intent(
            "agent-quota",
            "payments",
            "transfer",
            json!({"amount": amount, "to": "acct-9"}),
            key,
        )
    };
    let mut probes = 0;
    eventually("the other gate binds the activated version", || {
        probes += 1;
        let r = b.decide(&quota(0, &format!("probe-{probes}")));
        verify(&b, &r)
            .0
            .policy
            .is_some_and(|p| p.version == version)
    });
    let first = a.decide(&quota(6000, "q-a"));
    assert_eq!(first.decision, Decision::Permit, "{}", first.reason);
    // Once the other gate has learnt the checkpoint holding that PERMIT
    // (and counted it, in the same pass), 6,000 more is over the limit.
    eventually("the other gate learns the PERMIT's checkpoint", || {
        b.checkpoint().size > first.log_index
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = b.decide(&quota(6000, "q-b"));
    assert_eq!(second.decision, Decision::Deny, "{}", second.reason);
    assert_eq!(
        verify(&b, &second).0.derived["history"]["transferred_24h"],
        6000
    );

    a.audit();
    b.audit();
}

/// `tollgate log copy`: a RocksDB gate's log moved into PostgreSQL. A gate
/// on the database then serves the same tree (same checkpoint), answers an
/// old request with its original receipt, keeps its callers and policy,
/// appends on top, and the log passes an audit; a second copy into the
/// same database is refused.
#[test]
fn an_embedded_log_copied_to_postgres_carries_on_there() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let before: Vec<DecisionResponse> = (0..40)
        .map(|i| s.decide(&transfer(500, &format!("before-{i}"))))
        .collect();
    let (ok, out) = s.tollgate(&["caller", "add", "later", "--role", "read"]);
    assert!(ok, "{out}");
    let checkpoint = s.checkpoint();
    s.stop();
    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["log", "copy", "--from"])
            .arg(dir.path().join("data"))
            .args(["--to", &pg.url])
            .output()
            .unwrap()
    };
    let out = copy();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("copied {} entries", checkpoint.size)),
        "{text}"
    );
    let out = copy();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a log"),
        "{out:?}"
    );

    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_LOG_STORE", pg.url.as_str())]);
    let moved = s.checkpoint();
    assert_eq!((moved.size, moved.root), (checkpoint.size, checkpoint.root));
    let again = s.decide(&transfer(500, "before-7"));
    assert!(again.replayed);
    assert_eq!(
        (again.receipt.as_str(), again.log_index),
        (before[7].receipt.as_str(), before[7].log_index)
    );
    let (ok, out) = s.tollgate(&["caller", "list"]);
    assert!(ok && out.contains("later"), "{out}");
    let after = s.decide(&transfer(500, "after-1"));
    assert_eq!(after.decision, Decision::Permit);
    assert_eq!(after.log_index, checkpoint.size);
    s.audit();
}

/// Exact quotas across gates: 200 concurrent transfers of 100 by one actor,
/// sent alternately to two gates on one PostgreSQL log, against a 10,000
/// daily limit: exactly 100 PERMITs (each decision holds the actor's lock
/// in the database and catches up with the other gate's PERMITs first),
/// and the permits saw 0, 100, …, 9,900.
#[test]
fn counters_are_exact_across_gates_on_one_log() {
    let pg = testkit::Postgres::start();
    let (da, _db, a, b) = two_gates(&pg.url);
    let bundle = quota_bundle(da.path());
    let (ok, out) = a.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let mut probes = 0;
    eventually("the other gate binds the quota policy", || {
        probes += 1;
        let r = b.decide(&intent(
            "agent-probe",
            "payments",
            "transfer",
            json!({"amount": 0}),
            &format!("probe-{probes}"),
        ));
        verify(&b, &r)
            .0
            .policy
            .is_some_and(|p| p.version == version)
    });
    let started = std::time::Instant::now();
    let decided: Vec<DecisionResponse> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let gate = if i % 2 == 0 { &a } else { &b };
                scope.spawn(move || {
                    gate.decide(&intent(
                        "agent-quota",
                        "payments",
                        "transfer",
                        json!({"amount": 100, "to": "acct-9"}),
                        &format!("t{i}"),
                    ))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    eprintln!(
        "200 decisions of one actor under counters over two gates: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut seen: Vec<i64> = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .map(|r| {
            verify(&a, r).0.derived["history"]["transferred_24h"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..100).map(|k| k * 100).collect::<Vec<i64>>(),
        "exactly the transfers that fit, each seeing the ones before"
    );
    assert!(decided
        .iter()
        .all(|r| r.decision == Decision::Permit || r.decision == Decision::Deny));
    a.audit();
}

/// One PERMIT, one execution, in the log: a tool's service redeems the
/// permit it serves; a second redemption (another replica, or a replay) is
/// 409 naming the first; only a PERMIT of the named surface can be
/// redeemed, only by a caller with `redeem`; every redemption is a signed
/// entry, and the audit checks that no permit was redeemed twice.
#[test]
fn a_permit_is_redeemed_once_and_the_log_shows_where() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let svc = std::fs::read_to_string(s.add_caller("payments-svc", &["redeem"], "none")).unwrap();
    let redeem = |token: &str, receipt_id: &str, body: Value| {
        response(
            ureq::post(&format!("{}/v1/permits/{receipt_id}/redeem", s.url))
                .set("authorization", &format!("Bearer {}", token.trim()))
                .send_string(&body.to_string()),
        )
    };
    let permit = s.decide(&transfer(500, "redeem-1"));
    assert_eq!(permit.decision, Decision::Permit);
    let size = s.checkpoint().size;
    let (status, first) = redeem(&svc, &permit.receipt_id, json!({"surface": "payments"}));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["index"], size);
    assert_eq!(first["by"], "caller:payments-svc");
    // Again: refused, naming the first; nothing more in the log.
    let (status, again) = redeem(&svc, &permit.receipt_id, json!({"surface": "payments"}));
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("permit_redeemed")),
        "{again}"
    );
    assert!(again["message"]
        .as_str()
        .unwrap()
        .contains(&format!("log entry {size}")));
    // A retry with the redeemer's own key is the same redemption.
    let other = s.decide(&transfer(500, "redeem-2"));
    let keyed = json!({"surface": "payments", "idempotency_key": "try-1"});
    let (_, made) = redeem(&svc, &other.receipt_id, keyed.clone());
    let (status, retried) = redeem(&svc, &other.receipt_id, keyed);
    assert_eq!((status, &retried), (200, &made));
    // Another surface, a DENY, an unknown receipt, a caller without the role.
    let third = s.decide(&transfer(500, "redeem-3"));
    let (status, e) = redeem(&svc, &third.receipt_id, json!({"surface": "deploy"}));
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("surface"),
        "{e}"
    );
    let denied = s.decide(&transfer(5_000_000, "redeem-4"));
    assert_eq!(denied.decision, Decision::Deny);
    let (status, e) = redeem(&svc, &denied.receipt_id, json!({"surface": "payments"}));
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("DENY"),
        "{e}"
    );
    let (status, _) = redeem(&svc, &"0".repeat(32), json!({"surface": "payments"}));
    assert_eq!(status, 404);
    let (status, _) = redeem(&s.demo(), &third.receipt_id, json!({"surface": "payments"}));
    assert_eq!(status, 403, "the demo caller lacks redeem");
    s.audit();
}

/// What a gate relies on is what the log says: an approval record changed
/// in the database by someone other than a gate (a vote added that names an
/// entry which is no approval of this request) lends nothing. Every ask
/// stays SILENCE, the record is counted as refused in `/metrics`, and the
/// log passes its audit.
#[test]
fn an_approval_record_the_log_does_not_back_lends_nothing() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_LOG_STORE", pg.url.as_str())]);
    let asked = s.decide(&transfer(50_000, "forged-0"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    // Someone with the database's password adds a vote by "alice" that
    // names entry 0 (the start-up's policy.publish).
    let mut db = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let key = [b"r".as_slice(), id.as_bytes()].concat();
    let row = db
        .query_one("SELECT value FROM tollgate_state WHERE key = $1", &[&key])
        .unwrap();
    let mut record: Value = serde_json::from_slice(&row.get::<_, Vec<u8>>(0)).unwrap();
    record["approvals"] = json!([{"by": "alice", "entry": 0, "at": "2026-12-07T00:00:00Z"}]);
    let forged = serde_json::to_vec(&record).unwrap();
    db.execute(
        "UPDATE tollgate_state SET value = $2 WHERE key = $1",
        &[&key, &forged],
    )
    .unwrap();
    // The gate learns the record (it follows the shared state every 250 ms)
    // and refuses it; no ask meanwhile is PERMIT.
    let mut n = 0;
    eventually("the forged record is refused", || {
        n += 1;
        let r = s.decide(&transfer(50_000, &format!("forged-{n}")));
        assert_eq!(
            r.decision,
            Decision::Silence,
            "a forged vote let a PERMIT through"
        );
        s.get_text("/metrics")
            .contains("tollgate_state_records_refused_total{kind=\"approval\"} 1")
    });
    s.audit();
}
