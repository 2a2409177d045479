//! The witness binary on 127.0.0.1 port 0 against a real log (the ledger on
//! RocksDB): cosigns growing checkpoints, refuses every bad request with the
//! status C2SP tlog-witness names, refuses forks, keeps its state across a
//! restart.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ledger::{Ledger, Options};
use note::{Checkpoint, KeyType, Note, Policy, SignerKey, VerifierKey};

struct WitnessProc {
    child: Child,
    url: String,
    key: VerifierKey,
}

impl WitnessProc {
    fn start(dir: &Path, logs: &[&VerifierKey]) -> WitnessProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_witness"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .env("WITNESS_LOG", "warn")
            .stdout(Stdio::piped());
        for l in logs {
            cmd.args(["--log", &l.to_string()]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("witness listening on ")
            .unwrap()
            .to_string();
        let key = lines
            .next()
            .unwrap()
            .unwrap()
            .trim()
            .strip_prefix("witness key")
            .unwrap()
            .trim()
            .to_string();
        std::thread::spawn(move || for _ in lines {});
        WitnessProc {
            child,
            url,
            key: VerifierKey::parse(&key).unwrap(),
        }
    }

    fn add(
        &self,
        old: u64,
        proof: &[tlog::Hash],
        checkpoint: &str,
    ) -> (u16, String, Option<String>) {
        let mut body = format!("old {old}\n");
        for h in proof {
            body.push_str(&B64.encode(h.0));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(checkpoint);
        match ureq::post(&format!("{}/add-checkpoint", self.url)).send_string(&body) {
            Ok(r) => (r.status(), r.into_string().unwrap(), None),
            Err(ureq::Error::Status(code, r)) => {
                let ct = r.header("content-type").map(str::to_string);
                (code, r.into_string().unwrap(), ct)
            }
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn grow(log: &Ledger, from: usize, n: usize) -> String {
    for i in from..from + n {
        log.append_blocking(
            format!("entry {i}").into_bytes(),
            format!("k{i}").into_bytes(),
        )
        .unwrap();
    }
    log.latest().note.clone()
}

/// The cosigned note verifies under a policy requiring this witness.
fn verify_cosigned(checkpoint: &str, lines: &str, log: &VerifierKey, witness: &VerifierKey) {
    assert!(
        lines.starts_with('\u{2014}') && lines.ends_with('\n'),
        "{lines:?}"
    );
    let mut note = Note::parse(checkpoint.as_bytes()).unwrap();
    let cosigned = format!("{}{lines}", note.to_text());
    note = Note::parse(cosigned.as_bytes()).unwrap();
    let policy = Policy::parse(&format!("log {log}\nwitness w1 {witness}\nquorum w1\n")).unwrap();
    policy.verify_checkpoint(note.to_text().as_bytes()).unwrap();
}

#[test]
fn cosigns_growth_refuses_what_the_spec_refuses_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::generate("example.test/log", KeyType::Ed25519).unwrap();
    let log = Ledger::open(&dir.path().join("log"), log_key.clone(), Options::default()).unwrap();
    let lk = log.verifier().clone();
    let w = WitnessProc::start(&dir.path().join("w"), &[&lk]);

    // First contact: old 0, empty proof.
    let cp5 = grow(&log, 0, 5);
    let (status, lines, _) = w.add(0, &[], &cp5);
    assert_eq!(status, 200, "{lines}");
    verify_cosigned(&cp5, &lines, &lk, &w.key);
    // Growth with a real consistency proof.
    let cp40 = grow(&log, 5, 35);
    let proof = log.consistency_proof(5, 40).unwrap();
    let (status, lines, _) = w.add(5, &proof, &cp40);
    assert_eq!(status, 200, "{lines}");
    verify_cosigned(&cp40, &lines, &lk, &w.key);
    // Resubmitting the same checkpoint is fine (equal sizes, equal roots).
    assert_eq!(w.add(40, &[], &cp40).0, 200);

    // 409 with the size when old is stale; the body is text/x.tlog.size.
    let cp50 = grow(&log, 40, 10);
    let (status, body, ct) = w.add(5, &log.consistency_proof(5, 50).unwrap(), &cp50);
    assert_eq!(
        (status, body.as_str(), ct.as_deref()),
        (409, "40\n", Some("text/x.tlog.size"))
    );
    // 422 for a proof that does not verify.
    let mut bad = log.consistency_proof(40, 50).unwrap();
    bad[0].0[3] ^= 1;
    assert_eq!(w.add(40, &bad, &cp50).0, 422);
    // 400: malformed, old above the checkpoint size.
    assert_eq!(w.add(40, &[], "not a checkpoint\n").0, 400);
    assert_eq!(w.add(60, &[], &cp50).0, 400);
    // 404 unknown origin; 403 signed by a key the witness does not trust.
    let other = SignerKey::generate("other.test/log", KeyType::Ed25519).unwrap();
    let foreign = note::sign_checkpoint(
        &Checkpoint::new("other.test/log", 1, tlog::leaf_hash(b"x")),
        &other,
    )
    .unwrap();
    assert_eq!(w.add(0, &[], &foreign.to_text()).0, 404);
    let impostor = SignerKey::generate("example.test/log", KeyType::Ed25519).unwrap();
    let forged = note::sign_checkpoint(
        &Checkpoint::new("example.test/log", 50, tlog::leaf_hash(b"x")),
        &impostor,
    )
    .unwrap();
    assert_eq!(w.add(40, &[], &forged.to_text()).0, 403);

    // A fork signed with the real log key: the same size as the cosigned one
    // with another root (409, per tlog-witness), and a larger one whose proof
    // cannot verify (422). Neither is cosigned.
    let fork40 = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 40, tlog::leaf_hash(b"fork")),
        &log_key,
    )
    .unwrap();
    assert_eq!(w.add(40, &[], &fork40.to_text()).0, 409);
    let fork50 = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 50, tlog::leaf_hash(b"fork")),
        &log_key,
    )
    .unwrap();
    assert_eq!(
        w.add(
            40,
            &log.consistency_proof(40, 50).unwrap(),
            &fork50.to_text()
        )
        .0,
        422
    );

    // Restart: the witness still holds size 40.
    let url_before = w.url.clone();
    drop(w);
    let w = WitnessProc::start(&dir.path().join("w"), &[&lk]);
    assert_ne!(w.url, url_before);
    let (status, body, _) = w.add(0, &[], &cp50);
    assert_eq!((status, body.as_str()), (409, "40\n"));
    let (status, lines, _) = w.add(40, &log.consistency_proof(40, 50).unwrap(), &cp50);
    assert_eq!(status, 200, "{lines}");
    // GET the latest cosigned checkpoint: the log's signature and ours.
    let latest = ureq::get(&format!("{}/checkpoint?origin={}", w.url, lk.name()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let policy = Policy::parse(&format!("log {lk}\nwitness w1 {}\nquorum w1\n", w.key)).unwrap();
    let (cp, _) = policy.verify_checkpoint(latest.as_bytes()).unwrap();
    assert_eq!(cp.size, 50);
}
