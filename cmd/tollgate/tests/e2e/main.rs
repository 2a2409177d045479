//! End-to-end: the real `tollgate` binary on 127.0.0.1 port 0 with a real
//! RocksDB directory, real engines and real signatures. Every receipt and
//! checkpoint is verified with the note, tlog and protocol crates.
//!
//! One test binary, by concern: this file is the harness (`Server`) and the
//! helpers every concern shares; each module holds one concern's tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use testkit::Proc;

use note::{Checkpoint, Policy, ProofBundle, SignerKey, VerifierKey};
use protocol::{verify_receipt, Decision, DecisionResponse, ReceiptBody, ReplayResponse};
use serde_json::{json, Value};

mod callers;
mod decisions;
mod evaluation;
mod many_gates;
mod one_permit;
mod overload;
mod traces;
mod transport;

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
