//! The gate with two real witnesses (the `witness` binary) on loopback: the
//! quorum is met and proof bundles verify under the quorum policy; with one
//! witness down decisions go on and a 1-of-2 quorum is still met; a witness
//! restarted keeps its state and the gate carries on.

use std::path::Path;
use std::process::Command;

use std::time::{Duration, Instant};
use testkit::{bin, Proc};

use note::{Policy, ProofBundle, SignerKey, VerifierKey};
use serde_json::{json, Value};

fn witness(dir: &Path, port: u16, name: &str, log: &VerifierKey) -> Proc {
    let mut cmd = Command::new(bin("witness"));
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--name",
        name,
        "--log-key",
        &log.to_string(),
        "--data-dir",
    ])
    .arg(dir)
    .env("WITNESS_LOG", "error");
    Proc::start(cmd, "witness listening on ", 1)
}

fn witness_key(p: &Proc) -> VerifierKey {
    VerifierKey::parse(
        p.banner[0]
            .trim()
            .strip_prefix("witness key")
            .unwrap()
            .trim(),
    )
    .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A decision as the `demo` caller of the gate whose data directory is `data`.
fn decide(url: &str, data: &Path, key: &str) -> Value {
    let body = json!({"actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
        "action": "transfer", "target": {"amount": 5}, "idempotency_key": key});
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    ureq::post(&format!("{url}/v1/decisions"))
        .set("authorization", &format!("Bearer {}", token.trim()))
        .send_string(&body.to_string())
        .unwrap()
        .into_json()
        .unwrap()
}

/// Waits until /log/checkpoint verifies under `policy` at a size ≥ `size`.
fn wait_cosigned(url: &str, policy: &Policy, size: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = ureq::get(&format!("{url}/log/checkpoint"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        if let Ok((cp, _)) = policy.verify_checkpoint(text.as_bytes()) {
            if cp.size >= size {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of size ≥ {size} cosigned to the quorum:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Writes `key` as a gate's key file (mode 0600), as the gate would.
fn write_key(path: &Path, key: &SignerKey) {
    keyfile::write_durable(path, format!("{}\n", key.to_skey()).as_bytes(), 0o600).unwrap();
}

#[test]
fn two_witnesses_quorum_one_down_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The log key first, so the witnesses can be told whom they witness.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The gate refuses a data directory others may read.
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let log_key = SignerKey::generate("tollgate.local/log", note::KeyType::Ed25519).unwrap();
    write_key(&data.join("log.skey"), &log_key);
    let lk = log_key.verifier().clone();
    let (p1, p2) = (free_port(), free_port());
    let w1 = witness(&dir.path().join("w1"), p1, "witness.test/w1", &lk);
    let w2 = witness(&dir.path().join("w2"), p2, "witness.test/w2", &lk);
    let (k1, k2) = (witness_key(&w1), witness_key(&w2));
    // The gate pushes to both; any one cosignature meets its quorum.
    let policy_file = dir.path().join("witnesses.policy");
    std::fs::write(
        &policy_file,
        format!(
            "witness w1 {k1} {}\nwitness w2 {k2} {}\ngroup any 1 w1 w2\nquorum any\n",
            w1.url, w2.url
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin("tollgate"));
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("TOLLGATE_WITNESS_POLICY", &policy_file)
        .env("TOLLGATE_LOG", "error");
    let config = dir.path().join("gate.toml");
    std::fs::write(&config, "witness_interval_ms = 50\nwitness_refresh_s = 1\n").unwrap();
    cmd.arg("--config").arg(&config);
    let gate = Proc::start(cmd, "tollgate listening on ", 0);

    let both = Policy::parse(&format!(
        "log {lk}\nwitness w1 {k1}\nwitness w2 {k2}\ngroup both 2 w1 w2\nquorum both\n"
    ))
    .unwrap();
    let r = decide(&gate.url, &data, "a");
    let index = r["log_index"].as_u64().unwrap();
    let cosigned = wait_cosigned(&gate.url, &both, index + 1);
    let size = Policy::for_log(lk.clone())
        .verify_checkpoint(cosigned.as_bytes())
        .unwrap()
        .0
        .size;
    // A proof bundle at the cosigned size carries both cosignatures and
    // verifies under the 2-of-2 policy.
    let receipt = r["receipt"].as_str().unwrap();
    let proof = ureq::get(&format!(
        "{}/v1/proofs/inclusion?index={index}&size={size}",
        gate.url
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    ProofBundle::parse(&proof)
        .unwrap()
        .verify(&tlog::leaf_hash(receipt.as_bytes()), &both)
        .unwrap();

    // proofcheck: the saved response alone does not meet the 2-of-2 quorum
    // (its proof is to the batch's checkpoint, signed before any witness saw
    // it); with --log it fetches a proof to the cosigned checkpoint and does.
    let saved = dir.path().join("decision.json");
    std::fs::write(&saved, r.to_string()).unwrap();
    let policy_both = dir.path().join("both.policy");
    std::fs::write(
        &policy_both,
        format!("log {lk}\nwitness w1 {k1}\nwitness w2 {k2}\ngroup both 2 w1 w2\nquorum both\n"),
    )
    .unwrap();
    let gate_key = SignerKey::parse(
        std::fs::read_to_string(data.join("gate.skey"))
            .unwrap()
            .trim(),
    )
    .unwrap();
    let proofcheck = |extra: &[&str]| {
        Command::new(bin("proofcheck"))
            .args([
                "receipt",
                saved.to_str().unwrap(),
                "--log-key",
                &lk.to_string(),
            ])
            .args([
                "--gate-key",
                &gate_key.verifier().to_string(),
                "--witness-policy",
                policy_both.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    assert_eq!(proofcheck(&[]).status.code(), Some(1));
    let out = proofcheck(&["--log", &gate.url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("witness quorum met"));

    // One witness down: decisions go on, and the 1-of-2 quorum is still met.
    drop(w2);
    let any = Policy::parse(&format!(
        "log {lk}\nwitness w1 {k1}\nwitness w2 {k2}\ngroup any 1 w1 w2\nquorum any\n"
    ))
    .unwrap();
    let started = Instant::now();
    let mut last = 0;
    for i in 0..20 {
        last = decide(&gate.url, &data, &format!("b{i}"))["log_index"]
            .as_u64()
            .unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "decisions waited on a witness"
    );
    wait_cosigned(&gate.url, &any, last + 1);

    // w1 restarted on its port keeps its state; the gate carries on with it.
    drop(w1);
    let w1 = witness(&dir.path().join("w1"), p1, "witness.test/w1", &lk);
    assert_eq!(witness_key(&w1), k1, "same key after restart");
    let last = decide(&gate.url, &data, "c")["log_index"].as_u64().unwrap();
    wait_cosigned(&gate.url, &any, last + 1);
    let held = ureq::get(&format!("{}/checkpoint?origin={}", w1.url, lk.name()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        Policy::for_log(lk.clone())
            .verify_checkpoint(held.as_bytes())
            .unwrap()
            .0
            .size
            > last
    );
}

/// Whether the gate at `url` pushes to the witnesses (its metric).
fn pusher(url: &str) -> bool {
    let metrics = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    metrics.lines().any(|l| l == "tollgate_witness_pusher 1")
}

/// Two gates on one PostgreSQL log with one witness: one gate at a time
/// pushes (the holder of the push lease), both serve the checkpoint it got
/// cosigned; SIGKILLed, the pusher's lease passes to the other gate, which
/// gets the newer checkpoints cosigned.
#[test]
fn on_a_shared_log_one_gate_pushes_and_the_duty_moves_when_it_dies() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::generate("tollgate.local/log", note::KeyType::Ed25519).unwrap();
    let datas: Vec<std::path::PathBuf> = (0..2).map(|i| dir.path().join(format!("g{i}"))).collect();
    for d in &datas {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new().mode(0o700).create(d).unwrap();
        write_key(&d.join("log.skey"), &log_key);
    }
    let lk = log_key.verifier().clone();
    let w = witness(&dir.path().join("w"), free_port(), "witness.test/w", &lk);
    let k = witness_key(&w);
    let policy_file = dir.path().join("witnesses.policy");
    std::fs::write(&policy_file, format!("witness w {k} {}\nquorum w\n", w.url)).unwrap();
    let config = dir.path().join("gate.toml");
    std::fs::write(
        &config,
        "witness_interval_ms = 100\nwitness_refresh_s = 1\n",
    )
    .unwrap();
    let start = |data: &Path| {
        let mut cmd = Command::new(bin("tollgate"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .arg("--config")
            .arg(&config)
            .env("TOLLGATE_WITNESS_POLICY", &policy_file)
            .env("TOLLGATE_LOG_STORE", &pg.url)
            .env("TOLLGATE_LOG", "error");
        Proc::start(cmd, "tollgate listening on ", 0)
    };
    let a = start(&datas[0]);
    for f in ["gate.skey", "origin", "admin.token", "demo.token"] {
        std::fs::copy(datas[0].join(f), datas[1].join(f)).unwrap();
    }
    let b = start(&datas[1]);
    let quorum = Policy::parse(&format!("log {lk}\nwitness w {k}\nquorum w\n")).unwrap();

    let r = decide(&a.url, &datas[0], "first");
    let size = r["log_index"].as_u64().unwrap() + 1;
    wait_cosigned(&a.url, &quorum, size);
    wait_cosigned(&b.url, &quorum, size);
    // Exactly one pushes (the lease is renewed every 100 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    let (pushing, other) = loop {
        match (pusher(&a.url), pusher(&b.url)) {
            (true, false) => break (a, b),
            (false, true) => break (b, a),
            both => {
                assert!(Instant::now() < deadline, "pushers: {both:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    drop(pushing); // SIGKILL
                   // (Both data directories hold the same demo token.)
    let r = decide(&other.url, &datas[0], "after");
    let size = r["log_index"].as_u64().unwrap() + 1;
    wait_cosigned(&other.url, &quorum, size);
    assert!(pusher(&other.url), "the survivor pushes now");
}
