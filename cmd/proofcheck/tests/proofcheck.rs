//! proofcheck against a real served log (the `tollgate` binary on 127.0.0.1
//! port 0): verified decisions, every single-bit tamper refused, split views
//! shown, replay, and a whole-log audit of 100,000 entries, then an
//! incremental one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use testkit::{bin, Proc};

use note::{Checkpoint, SignerKey, VerifierKey};
use proofcheck::{Error, Log};
use serde_json::{json, Value};

struct Gate {
    _proc: Proc,
    url: String,
    data: PathBuf,
}

impl Gate {
    fn start(dir: &Path) -> Gate {
        let data = dir.join("data");
        let proc = Proc::start(testkit::tollgate_serve(&data), testkit::TOLLGATE_READY, 0);
        Gate {
            url: proc.url.clone(),
            _proc: proc,
            data,
        }
    }

    fn skey(&self, file: &str) -> SignerKey {
        SignerKey::parse(
            std::fs::read_to_string(self.data.join(file))
                .unwrap()
                .trim(),
        )
        .unwrap()
    }

    fn vkey(&self, file: &str) -> VerifierKey {
        self.skey(file).verifier().clone()
    }

    /// The `demo` caller's authorization header.
    fn auth(&self) -> String {
        let token = std::fs::read_to_string(self.data.join("demo.token")).unwrap();
        format!("Bearer {}", token.trim())
    }

    fn decide(&self, amount: u64, key: &str) -> Vec<u8> {
        let body = json!({
            "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
            "action": "transfer", "target": {"amount": amount}, "idempotency_key": key,
        });
        let r = ureq::post(&format!("{}/v1/decisions", self.url))
            .set("authorization", &self.auth())
            .send_string(&body.to_string())
            .unwrap();
        r.into_string().unwrap().into_bytes()
    }

    fn checkpoint(&self) -> Vec<u8> {
        ureq::get(&format!("{}/log/checkpoint", self.url))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
            .into_bytes()
    }
}

fn proofcheck(args: &[&str]) -> Output {
    Command::new(bin("proofcheck")).args(args).output().unwrap()
}

fn failed<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(Error::Failed(m)) => m,
        other => panic!("expected a verification failure, got {other:?}"),
    }
}

#[test]
fn receipts_verify_and_every_single_bit_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gate::start(dir.path());
    let (lk, gk) = (g.vkey("log.skey"), g.vkey("gate.skey"));
    let first = g.decide(500, "a");
    let second = g.decide(50_000, "b");
    for saved in [&first, &second] {
        proofcheck::check_receipt(saved, &lk, &gk, None).unwrap();
    }
    // Flip one bit of every byte of the receipt and of the proof (hashes,
    // index, checkpoint body, signatures): nothing verifies.
    let v: Value = serde_json::from_slice(&first).unwrap();
    for field in ["receipt", "proof"] {
        let text = v[field].as_str().unwrap().as_bytes().to_vec();
        for i in 0..text.len() {
            let mut t = text.clone();
            t[i] ^= 0x01;
            let Ok(t) = String::from_utf8(t) else {
                continue;
            };
            let mut w = v.clone();
            w[field] = json!(t);
            let saved = serde_json::to_vec(&w).unwrap();
            failed(proofcheck::check_receipt(&saved, &lk, &gk, None));
        }
    }
    // Every unsigned field the response repeats must be the receipt's.
    for (field, value) in [
        ("reason", json!("permitted, honestly")),
        ("decision", json!("DENY")),
        ("receipt_id", json!("0".repeat(32))),
        ("policy_version", json!(null)),
    ] {
        let mut w = v.clone();
        w[field] = value;
        let m = failed(proofcheck::check_receipt(
            &serde_json::to_vec(&w).unwrap(),
            &lk,
            &gk,
            None,
        ));
        assert!(m.contains(field), "{field}: {m}");
    }
    // Wrong keys, a proof for another index, a truncated file.
    let other = SignerKey::generate(lk.name(), note::KeyType::Ed25519).unwrap();
    failed(proofcheck::check_receipt(
        &first,
        other.verifier(),
        &gk,
        None,
    ));
    failed(proofcheck::check_receipt(
        &first,
        &lk,
        other.verifier(),
        None,
    ));
    let mut swapped = v.clone();
    swapped["proof"] = serde_json::from_slice::<Value>(&second).unwrap()["proof"].clone();
    let m = failed(proofcheck::check_receipt(
        &serde_json::to_vec(&swapped).unwrap(),
        &lk,
        &gk,
        None,
    ));
    assert!(m.contains("index"), "{m}");
    failed(proofcheck::check_receipt(
        &first[..first.len() / 2],
        &lk,
        &gk,
        None,
    ));

    // The binary: exit 0, 1 (with the reason), 2.
    let path = dir.path().join("first.json");
    std::fs::write(&path, &first).unwrap();
    let (lks, gks) = (lk.to_string(), gk.to_string());
    let ok = proofcheck(&[
        "receipt",
        path.to_str().unwrap(),
        "--log-key",
        &lks,
        "--gate-key",
        &gks,
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("verified"));
    std::fs::write(&path, &first[..first.len() - 40]).unwrap();
    let bad = proofcheck(&[
        "receipt",
        path.to_str().unwrap(),
        "--log-key",
        &lks,
        "--gate-key",
        &gks,
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("verification failed"));
    let missing = proofcheck(&[
        "receipt",
        "/nonexistent",
        "--log-key",
        &lks,
        "--gate-key",
        &gks,
    ]);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(proofcheck(&["receipt"]).status.code(), Some(2), "usage");

    // Replay: the recorded version from the gate (policy bundles need a
    // caller with read), and the wrong bundle.
    std::fs::write(&path, &second).unwrap();
    let token_file = g.data.join("demo.token");
    let refused = proofcheck(&[
        "replay",
        path.to_str().unwrap(),
        "--policy",
        &g.url,
        "--gate-key",
        &gks,
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("read role"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let same = proofcheck(&[
        "--token-file",
        token_file.to_str().unwrap(),
        "replay",
        path.to_str().unwrap(),
        "--policy",
        &g.url,
        "--gate-key",
        &gks,
    ]);
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    assert!(String::from_utf8_lossy(&same.stdout).starts_with("same"));
    let cedar = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo"))
        .join("../../examples/policies/cedar");
    let wrong = proofcheck(&[
        "replay",
        path.to_str().unwrap(),
        "--policy",
        cedar.to_str().unwrap(),
    ]);
    assert_eq!(wrong.status.code(), Some(1));
}

#[test]
fn consistency_and_split_views() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gate::start(dir.path());
    let lk = g.vkey("log.skey");
    g.decide(1, "a");
    g.decide(2, "b");
    g.decide(3, "c");
    let old = g.checkpoint();
    for i in 0..20 {
        g.decide(4, &format!("d{i}"));
    }
    let new = g.checkpoint();
    let log = Log::new(&g.url);
    let r = proofcheck::check_consistency(&old, &new, &lk, None, Some(&log)).unwrap();
    // Three decisions after first start's three admin changes, then twenty.
    assert_eq!((r.old_size, r.new_size), (6, 26));
    // The gate's own proof endpoint agrees.
    let proof = ureq::get(&format!("{}/v1/proofs/consistency?old=6&new=26", g.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let hashes = proofcheck::parse_hashes(&proof).unwrap();
    proofcheck::check_consistency(&old, &new, &lk, Some(hashes.clone()), None).unwrap();
    // A rollback, and a proof with one hash changed.
    failed(proofcheck::check_consistency(
        &new,
        &old,
        &lk,
        None,
        Some(&log),
    ));
    let mut bad = hashes;
    bad[0].0[0] ^= 1;
    failed(proofcheck::check_consistency(
        &old,
        &new,
        &lk,
        Some(bad),
        None,
    ));

    // Split view: a second checkpoint of the same size with another root,
    // validly signed with the log key. The failure shows both.
    let cp = Policy::for_log(lk.clone())
        .verify_checkpoint(&new)
        .unwrap()
        .0;
    let forged = Checkpoint::new(&cp.origin, cp.size, tlog::leaf_hash(b"another history"));
    let forged = note::sign_checkpoint(&forged, &g.skey("log.skey"))
        .unwrap()
        .to_text();
    let m = failed(proofcheck::check_consistency(
        &new,
        forged.as_bytes(),
        &lk,
        None,
        Some(&log),
    ));
    assert!(m.contains("split view"), "{m}");
    assert!(
        m.contains(std::str::from_utf8(&new).unwrap()) && m.contains(&forged),
        "{m}"
    );
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, &new).unwrap();
    std::fs::write(&b, &forged).unwrap();
    let out = proofcheck(&[
        "consistency",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--log-key",
        &lk.to_string(),
        "--log",
        &g.url,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("split view"));
}

use note::Policy;

#[test]
fn audit_of_100k_entries_then_incremental() {
    let dir = tempfile::tempdir().unwrap();
    let g = Gate::start(dir.path());
    let (lk, gk) = (g.vkey("log.skey"), g.vkey("gate.skey"));
    let fill = |from: u64, n: u64| {
        let threads = 16;
        std::thread::scope(|s| {
            for t in 0..threads {
                let g = &g;
                s.spawn(move || {
                    let agent = ureq::AgentBuilder::new().build();
                    for i in (from + t..from + n).step_by(threads as usize) {
                        let body = json!({
                            "actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
                            "action": "transfer", "target": {"amount": i % 20_000}, "idempotency_key": format!("k{i}"),
                        });
                        agent.post(&format!("{}/v1/decisions", g.url)).set("authorization", &g.auth()).send_string(&body.to_string()).unwrap();
                    }
                });
            }
        });
    };
    fill(0, 100_000);
    // Entry bundles need a caller with read.
    let m = format!(
        "{:?}",
        proofcheck::audit(&Log::new(&g.url), &lk, &gk, None, &mut |_, _| {}).err()
    );
    assert!(m.contains("401"), "{m}");
    let token = std::fs::read_to_string(g.data.join("demo.token")).unwrap();
    let log = Log::new(&g.url).with_token(Some(&token));
    let state_file = dir.path().join("state.json");
    let mut calls = 0;
    let (report, state) = proofcheck::audit(&log, &lk, &gk, None, &mut |_, _| calls += 1).unwrap();
    // 100,000 decisions after first start's three admin changes.
    assert_eq!(
        (report.size, report.entries_verified, report.previous_size),
        (100_003, 100_003, 0)
    );
    assert_eq!(report.decisions.values().sum::<u64>(), 100_000);
    assert_eq!(
        report.governance,
        [
            ("caller.add", 1),
            ("policy.activate", 1),
            ("policy.publish", 1)
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    );
    assert!(calls > 0);
    eprintln!(
        "audit: {} entries in {:.2} s, {:.0} entries/s",
        report.size, report.seconds, report.entries_per_second
    );
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();

    fill(100_000, 300);
    // The binary, incremental: reads only the 300 new entries.
    let token_file = g.data.join("demo.token");
    let out = proofcheck(&[
        "--json",
        "--token-file",
        token_file.to_str().unwrap(),
        "audit",
        "--log",
        &g.url,
        "--log-key",
        &lk.to_string(),
        "--gate-key",
        &gk.to_string(),
        "--state",
        state_file.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (
            r["size"].as_u64(),
            r["previous_size"].as_u64(),
            r["entries_verified"].as_u64()
        ),
        (Some(100_303), Some(100_003), Some(300))
    );
    // The governance history, from the log alone.
    let out = proofcheck(&[
        "--json",
        "--token-file",
        token_file.to_str().unwrap(),
        "history",
        "--log",
        &g.url,
        "--log-key",
        &lk.to_string(),
        "--gate-key",
        &gk.to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h: Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions: Vec<(u64, &str, &str)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().unwrap(),
                e["action"].as_str().unwrap(),
                e["by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            (0, "policy.publish", "startup"),
            (1, "policy.activate", "startup"),
            (2, "caller.add", "startup")
        ]
    );

    // A state from another history (its edge altered) fails the continuation.
    let mut s: proofcheck::AuditState =
        serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    s.edge[0].1 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
    fill(100_300, 10);
    let m = failed(proofcheck::audit(&log, &lk, &gk, Some(&s), &mut |_, _| {}));
    assert!(m.contains("not an extension"), "{m}");
    // Wrong gate key: every receipt fails.
    let other = SignerKey::generate(gk.name(), note::KeyType::Ed25519).unwrap();
    failed(proofcheck::audit(
        &log,
        &lk,
        other.verifier(),
        None,
        &mut |_, _| {},
    ));
}

/// What-if under a candidate with a lower transfer threshold: the small
/// transfer that was permitted would wait for an approval (SILENCE), the big
/// one still does; the transition table says so with the receipt ids.
#[test]
fn what_if_tallies_how_a_candidate_would_have_decided() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::start(dir.path());
    let small: serde_json::Value = serde_json::from_slice(&gate.decide(500, "w-small")).unwrap();
    let big: serde_json::Value = serde_json::from_slice(&gate.decide(50_000, "w-big")).unwrap();
    gate.decide(20, "w-tiny");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies/rego");
    let candidate = dir.path().join("candidate");
    std::fs::create_dir(&candidate).unwrap();
    for f in ["tollgate.json", "policy.rego"] {
        std::fs::copy(examples.join(f), candidate.join(f)).unwrap();
    }
    let data = std::fs::read_to_string(examples.join("data.json")).unwrap();
    std::fs::write(
        candidate.join("data.json"),
        data.replace(
            "\"transfer_threshold\": 10000",
            "\"transfer_threshold\": 100",
        ),
    )
    .unwrap();
    let token = gate.data.join("demo.token");
    let out = proofcheck(&[
        "--json",
        "--token-file",
        token.to_str().unwrap(),
        "what-if",
        "--log",
        &gate.url,
        "--log-key",
        &gate.vkey("log.skey").to_string(),
        "--gate-key",
        &gate.vkey("gate.skey").to_string(),
        "--policy",
        candidate.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["evaluated"], 3, "{r}");
    let t = &r["transitions"];
    assert_eq!(t["PERMIT → SILENCE"][0], 1, "{r}");
    assert_eq!(t["PERMIT → SILENCE"][1][0], small["receipt_id"], "{r}");
    assert_eq!(t["SILENCE → SILENCE"][1][0], big["receipt_id"], "{r}");
    assert_eq!(t["PERMIT → PERMIT"][0], 1, "{r}");
}
