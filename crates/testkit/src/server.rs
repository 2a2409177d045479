//! The running gate for end-to-end tests (`tollgate serve` on port 0 over a
//! fresh data directory) and the requests and checks they share.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use note::{Checkpoint, Policy, SignerKey, VerifierKey};
use protocol::DecisionResponse;
use serde_json::{json, Value};

use crate::Proc;

/// `tollgate serve` on 127.0.0.1 port 0 over `<dir>/data`.
pub struct Server {
    /// The process (killed when dropped).
    pub proc: Proc,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// The directory holding `data/` (and tokens written for tests).
    pub dir: PathBuf,
}

impl Server {
    /// Starts it over `<dir>/data` with the defaults.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, &[])
    }

    /// Starts it with `extra` arguments to `tollgate serve`.
    pub fn start_with(dir: &Path, extra: &[&str]) -> Server {
        Server::start_with_args_env(dir, extra, &[])
    }

    /// Starts it with `env` set (`TOLLGATE_*` settings).
    pub fn start_with_env(dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with_args_env(dir, &[], env)
    }

    /// Starts it with `extra` arguments and `env` set.
    pub fn start_with_args_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = crate::tollgate_serve(&dir.join("data"));
        cmd.args(extra)
            .envs(env.iter().copied())
            .stderr(Stdio::inherit());
        let proc = crate::Proc::start(cmd, crate::TOLLGATE_READY, 0);
        Server {
            url: proc.url.clone(),
            proc,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGTERM and wait: the graceful path.
    pub fn stop(self) {
        let status = self.proc.terminate();
        assert!(status.success(), "tollgate exited with {status}");
    }

    /// The verifier key of the signing key in `data/<file>` (`log.skey`, `gate.skey`).
    pub fn key(&self, file: &str) -> VerifierKey {
        let skey = std::fs::read_to_string(self.dir.join("data").join(file)).unwrap();
        SignerKey::parse(skey.trim()).unwrap().verifier().clone()
    }

    /// The admin token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The `demo` caller's token, made on first start.
    pub fn demo(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/demo.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// A POST as the `demo` caller.
    pub fn post(&self, path: &str, body: &[u8]) -> (u16, Value) {
        let r = ureq::post(&format!("{}{path}", self.url))
            .set("content-type", "application/json")
            .set("authorization", &format!("Bearer {}", self.demo()))
            .send_bytes(body);
        response(r)
    }

    /// A decision as the `demo` caller, which must be answered 200.
    pub fn decide(&self, request: &Value) -> DecisionResponse {
        let (status, body) = self.post("/v1/decisions", request.to_string().as_bytes());
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// A GET as the `demo` caller: the body as text.
    pub fn get_text(&self, path: &str) -> String {
        ureq::get(&format!("{}{path}", self.url))
            .set("authorization", &format!("Bearer {}", self.demo()))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    }

    /// A GET as the `demo` caller: the body, or the status of another answer.
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, u16> {
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

    /// The latest checkpoint, its log signature verified.
    pub fn checkpoint(&self) -> Checkpoint {
        let text = self.get_text("/log/checkpoint");
        let (cp, _) = Policy::for_log(self.key("log.skey"))
            .verify_checkpoint(text.as_bytes())
            .unwrap();
        cp
    }

    /// `proofcheck audit` of the whole log this gate serves.
    pub fn audit(&self) {
        crate::audit(
            &self.url,
            &self.dir.join("data"),
            &self.dir.join("audit.state"),
        );
    }

    /// `tollgate caller add NAME` with `roles`, for `actor`; the file its
    /// token was written to.
    pub fn add_caller(&self, name: &str, roles: &[&str], actor: &str) -> PathBuf {
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

    /// Runs the `tollgate` CLI against this gate as admin: success and output.
    pub fn tollgate(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(crate::bin("tollgate"))
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

/// An answer's status and JSON body (null if it has none).
pub fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("{e}"),
    }
}

/// The demo's usual request: `agent-treasury` transfers `amount`.
pub fn transfer(amount: u64, key: &str) -> Value {
    intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({ "amount": amount }),
        key,
    )
}

/// A decision request by agent `actor` for `surface`/`action` on `target` under `key`.
pub fn intent(actor: &str, surface: &str, action: &str, target: Value, key: &str) -> Value {
    json!({
        "actor": {"id": actor, "kind": "agent"},
        "surface": surface, "action": action, "target": target,
        "idempotency_key": key,
    })
}

/// One POST: the decision, `Err(None)` if the connection failed (the gate
/// died: the outcome is unknown), `Err(Some(status))` for another answer.
pub fn decide(url: &str, token: &str, body: &Value) -> Result<DecisionResponse, Option<u16>> {
    let r = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build()
        .post(&format!("{url}/v1/decisions"))
        .set("authorization", &format!("Bearer {token}"))
        .send_string(&body.to_string());
    match r {
        Ok(r) => Ok(r.into_json().unwrap()),
        Err(ureq::Error::Status(code, _)) => Err(Some(code)),
        Err(_) => Err(None),
    }
}

/// `old` is consistent with `new`, by a proof the gate serves and this test verifies.
pub fn consistent(url: &str, old: &Checkpoint, new: &Checkpoint) {
    if old.size == new.size {
        assert_eq!(old.root, new.root, "two roots at size {}", old.size);
        return;
    }
    let text = ureq::get(&format!(
        "{url}/v1/proofs/consistency?old={}&new={}",
        old.size, new.size
    ))
    .call()
    .unwrap()
    .into_string()
    .unwrap();
    let proof: Vec<tlog::Hash> = text
        .lines()
        .map(|l| {
            use base64::Engine as _;
            tlog::Hash::from_slice(&base64::engine::general_purpose::STANDARD.decode(l).unwrap())
                .unwrap()
        })
        .collect();
    tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
        .unwrap_or_else(|e| panic!("size {} → {}: {e}", old.size, new.size));
}
