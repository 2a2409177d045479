//! The witness binary on 127.0.0.1 port 0 against a real log (the ledger on
//! RocksDB): cosigns growing checkpoints, refuses every bad request with the
//! status C2SP tlog-witness names, refuses forks, keeps its state across a
//! restart.

use std::path::Path;
use std::process::Command;

use testkit::Proc;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ledger::{Ledger, Options};
use note::{Checkpoint, KeyType, Note, Policy, SignerKey, VerifierKey};

struct WitnessProc {
    _proc: Proc,
    url: String,
    key: VerifierKey,
}

impl WitnessProc {
    fn start(dir: &Path, logs: &[&VerifierKey]) -> WitnessProc {
        WitnessProc::start_with(dir, logs, &[])
    }

    fn start_with(dir: &Path, logs: &[&VerifierKey], extra: &[&str]) -> WitnessProc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_witness"));
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .env("WITNESS_LOG", "warn");
        // `--log-key`; a second log by `--log`, the old spelling, which
        // still works for one release.
        for (i, l) in logs.iter().enumerate() {
            let flag = if i == 0 { "--log-key" } else { "--log" };
            cmd.args([flag, &l.to_string()]);
        }
        let proc = Proc::start(cmd, testkit::WITNESS_READY, 1);
        let key = proc.banner[0]
            .trim()
            .strip_prefix("witness key")
            .unwrap()
            .trim()
            .to_string();
        WitnessProc {
            url: proc.url.clone(),
            _proc: proc,
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
    // A second log too, named with the old flag spelling.
    let other = SignerKey::generate("example.test/other", KeyType::Ed25519).unwrap();
    let w = WitnessProc::start(&dir.path().join("w"), &[&lk, other.verifier()]);

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

    // A fork signed with the real log key: a larger checkpoint whose proof
    // cannot verify (422, not cosigned), then one of the same size as the
    // cosigned one with another root (409, per tlog-witness): proof of a fork,
    // kept as evidence, after which the witness cosigns nothing for this log.
    let fork60 = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 60, tlog::leaf_hash(b"fork")),
        &log_key,
    )
    .unwrap();
    let cp60 = grow(&log, 50, 10);
    assert_eq!(
        w.add(
            50,
            &log.consistency_proof(50, 60).unwrap(),
            &fork60.to_text()
        )
        .0,
        422
    );
    let fork50 = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 50, tlog::leaf_hash(b"fork")),
        &log_key,
    )
    .unwrap();
    assert_eq!(w.add(50, &[], &fork50.to_text()).0, 409);
    let (status, body, _) = w.add(50, &log.consistency_proof(50, 60).unwrap(), &cp60);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("stopped"), "{body}");
    let evidence: Vec<_> = std::fs::read_dir(dir.path().join("w/state/evidence"))
        .unwrap()
        .collect();
    assert_eq!(evidence.len(), 1);
    let e = evidence[0].as_ref().unwrap().path();
    assert_eq!(
        std::fs::read_to_string(e.join("offending.checkpoint")).unwrap(),
        fork50.to_text()
    );
    assert!(std::fs::read_to_string(e.join("held.checkpoint"))
        .unwrap()
        .starts_with(&cp50[..cp50.find('\u{2014}').unwrap()]));
    assert_eq!(metric(&w.url, "witness_alerts_total"), 1);
}

/// A log served over HTTP from a ledger, whose `/log/checkpoint` the test can
/// replace with a forged one, whose tiles it can garble, and which it can
/// swap for another ledger (checkpoint and tiles).
struct ServedLog {
    url: String,
    forged: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    garbled_tiles: std::sync::Arc<std::sync::atomic::AtomicBool>,
    other: std::sync::Arc<std::sync::Mutex<Option<Ledger>>>,
}

fn serve(log: Ledger) -> ServedLog {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let forged = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let garbled_tiles = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let other = std::sync::Arc::new(std::sync::Mutex::new(None::<Ledger>));
    let (f, g, o) = (forged.clone(), garbled_tiles.clone(), other.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            let path = req.split(' ').nth(1).unwrap_or("/").to_string();
            let log = o.lock().unwrap().clone().unwrap_or_else(|| log.clone());
            let (status, body) = if path == "/log/checkpoint" {
                let text = f
                    .lock()
                    .unwrap()
                    .clone()
                    .unwrap_or_else(|| log.latest().note.clone());
                ("200 OK", text.into_bytes())
            } else if let Some(t) = path.strip_prefix("/log/") {
                match tlog::Tile::parse_path(t)
                    .ok()
                    .and_then(|t| log.tile(&t).ok())
                {
                    Some(b) if g.load(std::sync::atomic::Ordering::Relaxed) => {
                        ("200 OK", vec![0x5a; b.len()])
                    }
                    Some(b) => ("200 OK", b),
                    None => ("404 Not Found", Vec::new()),
                }
            } else {
                ("404 Not Found", Vec::new())
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    ServedLog {
        url,
        forged,
        garbled_tiles,
        other,
    }
}

/// The value of the counter `name` on the witness's `/metrics`.
fn metric(url: &str, name: &str) -> u64 {
    let text = ureq::get(&format!("{url}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The size of the checkpoint the witness at `url` holds cosigned for the
/// log of `policy` (0 if none verifies).
fn cosigned_size(url: &str, lk: &VerifierKey, policy: &Policy) -> u64 {
    ureq::get(&format!("{url}/checkpoint?origin={}", lk.name()))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|t| policy.verify_checkpoint(t.as_bytes()).ok())
        .map_or(0, |(cp, _)| cp.size)
}

/// Waits until `f` holds (20 s at most).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Only proof halts a monitored log. Garbage, a checkpoint signed by some
/// other key, a stale (older, validly signed) checkpoint and garbled tiles
/// are transient errors, counted, after which honest growth is cosigned
/// again. Then the log serves a larger checkpoint, validly signed, of a tree
/// that does not extend the cosigned one, with that tree's own tiles: the
/// tiles prove the fork, the evidence is kept and cosigning stops.
#[test]
fn monitor_halts_only_on_proof_of_misbehaviour() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::generate("example.test/log", KeyType::Ed25519).unwrap();
    let log = Ledger::open(&dir.path().join("log"), log_key.clone(), Options::default()).unwrap();
    let lk = log.verifier().clone();
    grow(&log, 0, 300);
    let served = serve(log.clone());
    let w = WitnessProc::start_with(
        &dir.path().join("w"),
        &[&lk],
        &["--monitor-interval-ms", "20", "--monitor", &served.url],
    );
    let url = w.url.clone();
    let policy = Policy::parse(&format!("log {lk}\nwitness w {}\nquorum w\n", w.key)).unwrap();
    let cosigned = || cosigned_size(&url, &lk, &policy);
    eventually("size 300 cosigned", || cosigned() == 300);
    grow(&log, 300, 100);
    eventually("size 400 cosigned", || cosigned() == 400);
    let stale = log.checkpoint(300).unwrap().unwrap();
    let impostor = SignerKey::generate("example.test/log", KeyType::Ed25519).unwrap();
    let unsigned = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 5000, tlog::leaf_hash(b"x")),
        &impostor,
    )
    .unwrap()
    .to_text();
    for forged in ["not a checkpoint\n".to_string(), unsigned, stale] {
        let before = metric(&url, "witness_monitor_errors_total");
        *served.forged.lock().unwrap() = Some(forged);
        eventually("a transient error counted", || {
            metric(&url, "witness_monitor_errors_total") > before
        });
    }
    *served.forged.lock().unwrap() = None;
    served
        .garbled_tiles
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let before = metric(&url, "witness_monitor_errors_total");
    grow(&log, 400, 100);
    eventually("garbled tiles counted", || {
        metric(&url, "witness_monitor_errors_total") > before
    });
    assert_eq!(cosigned(), 400);
    served
        .garbled_tiles
        .store(false, std::sync::atomic::Ordering::Relaxed);
    eventually("cosigning resumes at 500", || cosigned() == 500);
    assert_eq!(metric(&url, "witness_alerts_total"), 0);

    // Another tree under the same key: 600 other entries.
    let fork = Ledger::open(&dir.path().join("fork"), log_key, Options::default()).unwrap();
    for i in 0..600 {
        fork.append_blocking(
            format!("other {i}").into_bytes(),
            format!("o{i}").into_bytes(),
        )
        .unwrap();
    }
    *served.other.lock().unwrap() = Some(fork.clone());
    eventually("the fork proven", || {
        metric(&url, "witness_alerts_total") == 1
    });
    let evidence = std::fs::read_dir(dir.path().join("w/state/evidence"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let reason = std::fs::read_to_string(evidence.join("reason")).unwrap();
    assert!(
        reason.contains("the checkpoint of size 600 extends a tree of size 500"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_to_string(evidence.join("offending.checkpoint")).unwrap(),
        fork.latest().note
    );
    // The evidence stands on its own: the proof verifies from the fork's
    // root at 500 to the signed 600, and that root is not the cosigned one.
    let proof: Vec<tlog::Hash> = std::fs::read_to_string(evidence.join("proof"))
        .unwrap()
        .lines()
        .map(|l| tlog::Hash(B64.decode(l).unwrap().try_into().unwrap()))
        .collect();
    let other_root = fork.tree_hash(500).unwrap();
    tlog::verify_consistency(
        500,
        600,
        &other_root,
        &fork.latest().checkpoint.root,
        &proof,
    )
    .unwrap();
    assert_ne!(other_root, log.tree_hash(500).unwrap());
    // Cosigning of that log has stopped, even for honest growth.
    *served.other.lock().unwrap() = None;
    grow(&log, 500, 10);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cosigned(), 500);
}

#[test]
fn monitor_mode_cosigns_by_polling_and_keeps_evidence_of_a_fork() {
    let dir = tempfile::tempdir().unwrap();
    let log_key = SignerKey::generate("example.test/log", KeyType::Ed25519).unwrap();
    let log = Ledger::open(&dir.path().join("log"), log_key.clone(), Options::default()).unwrap();
    let lk = log.verifier().clone();
    grow(&log, 0, 300);
    let served = serve(log.clone());
    let w = WitnessProc::start_with(
        &dir.path().join("w"),
        &[&lk],
        &["--monitor-interval-ms", "20", "--monitor", &served.url],
    );
    let (url, wkey) = (w.url.clone(), w.key.clone());
    let policy = Policy::parse(&format!("log {lk}\nwitness w {wkey}\nquorum w\n")).unwrap();
    let cosigned = || cosigned_size(&url, &lk, &policy);
    // Growth is cosigned without any push; the proofs come from tiles.
    eventually("size 300 cosigned", || cosigned() == 300);
    grow(&log, 300, 500);
    eventually("size 800 cosigned", || cosigned() == 800);

    // The log serves a fork: same size, another root, signed with its key.
    let fork = note::sign_checkpoint(
        &Checkpoint::new(lk.name(), 800, tlog::leaf_hash(b"fork")),
        &log_key,
    )
    .unwrap();
    *served.forged.lock().unwrap() = Some(fork.to_text());
    let evidence = dir.path().join("w/state/evidence");
    eventually("evidence of the fork", || {
        std::fs::read_dir(&evidence).map_or(0, |d| d.count()) > 0
    });
    let e = std::fs::read_dir(&evidence)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read_to_string(e.join("offending.checkpoint")).unwrap(),
        fork.to_text()
    );
    assert!(std::fs::read_to_string(e.join("reason"))
        .unwrap()
        .contains("fork"));
    assert_eq!(metric(&url, "witness_alerts_total"), 1);
    // Cosigning of that log has stopped: honest growth is not cosigned any more.
    *served.forged.lock().unwrap() = None;
    grow(&log, 800, 10);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cosigned(), 800);
}
