//! End-to-end: the real `tollgate` binary on 127.0.0.1 port 0 with a real
//! RocksDB directory, real engines and real signatures. Every receipt and
//! checkpoint is verified with the note, tlog and protocol crates.
//!
//! One test binary, by concern: this file holds the helpers every concern
//! shares (the harness, `testkit::Server`, is the test kit's); each module
//! holds one concern's tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{intent, response, transfer, Proc, Server};

use note::{Checkpoint, Policy, ProofBundle};
use protocol::{verify_receipt, Decision, DecisionResponse, ReceiptBody, ReplayResponse};
use serde_json::{json, Value};

mod callers;
mod contracts;
mod decisions;
mod evaluation;
mod many_gates;
mod one_permit;
mod overload;
mod traces;
mod transport;

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
