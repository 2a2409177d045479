//! `tollgate-demo` (`make demo`): an agent with a scripted plan (no LLM)
//! calls its tools only through the SDK's `guard`, and its payments tool is
//! an HTTP service that itself refuses any call without a fresh, unused
//! PERMIT for exactly that call. A "buggy fallback" then calls the payments
//! service directly and is refused every time. At the end `proofcheck`
//! verifies every saved decision and audits the whole log.
//!
//! It starts a gate (`tollgate serve`), a witness monitoring it, and the
//! payments service, and stops them all. Exit 0 only if every step did what
//! it says.

use std::io::IsTerminal as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use sdk::surface::{Call, PermitLayer, SurfaceVerifier, PERMIT_HEADER};
use sdk::{Client, Refusal, Trust};
use serde_json::{json, Value};

/// A process started for the demo; killed when dropped.
struct Started {
    child: Child,
    url: String,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin(name: &str) -> Result<PathBuf> {
    let p = std::env::current_exe()?.with_file_name(name);
    if !p.exists() {
        bail!("{} is not built (make demo builds it)", p.display());
    }
    Ok(p)
}

/// Starts `cmd` and waits for the line that starts with `ready`.
fn start(mut cmd: Command, ready: &str) -> Result<Started> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut lines = BufReader::new(child.stdout.take().context("stdout")?).lines();
    let url = loop {
        let Some(line) = lines.next() else {
            bail!("{cmd:?} exited before it was ready")
        };
        if let Some(u) = line?.strip_prefix(ready) {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Ok(Started { child, url })
}

fn vkey(data: &Path, file: &str) -> Result<note::VerifierKey> {
    let skey = std::fs::read_to_string(data.join(file))?;
    Ok(note::SignerKey::parse(skey.trim())?.verifier().clone())
}

/// Counts what the demo checked.
#[derive(Default)]
struct Steps {
    failed: usize,
}

impl Steps {
    fn check(&mut self, ok: bool, what: &str, detail: &str) {
        println!("{} {what}: {detail}", if ok { "  ok  " } else { " FAIL " });
        if !ok {
            self.failed += 1;
        }
    }
}

fn intent(actor: &str, surface: &str, action: &str, target: Value, key: &str) -> Value {
    json!({"actor": {"id": actor, "kind": "agent"}, "surface": surface, "action": action,
           "target": target, "idempotency_key": key})
}

/// Calls the payments service with an optional permit header.
fn pay(url: &str, permit: Option<&str>, target: &Value) -> (u16, String) {
    let mut r = ureq::post(&format!("{url}/transfer")).set("content-type", "application/json");
    if let Some(p) = permit {
        r = r.set(PERMIT_HEADER, p);
    }
    match r.send_string(&target.to_string()) {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Publishes the example Rego bundle with its freeze window moved to around
/// now, activates it, and returns its version.
fn publish_freeze(gate: &str, admin: &str) -> Result<String> {
    // The example bundle, compiled in (the binary may run from anywhere).
    let manifest = serde_json::from_slice(include_bytes!("../../policies/rego/tollgate.json"))?;
    let mut files = std::collections::BTreeMap::new();
    files.insert(
        "policy.rego".to_string(),
        include_bytes!("../../policies/rego/policy.rego").to_vec(),
    );
    files.insert(
        "data.json".to_string(),
        include_bytes!("../../policies/rego/data.json").to_vec(),
    );
    let mut data: Value = serde_json::from_slice(files.get("data.json").context("data.json")?)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let day = 86_400_000_000_000_i64;
    let ns = i64::try_from(now.as_nanos())?;
    data["freeze"]["start"] = protocol::format_rfc3339_ns(ns - day).into();
    data["freeze"]["end"] = protocol::format_rfc3339_ns(ns + day).into();
    files.insert("data.json".into(), serde_json::to_vec_pretty(&data)?);
    let bundle = policy::Bundle::new(manifest, files)?;
    let published: Value = ureq::post(&format!("{gate}/v1/admin/policies"))
        .set("authorization", &format!("Bearer {admin}"))
        .set("content-type", "application/gzip")
        .send_bytes(&bundle.to_tar_gz())?
        .into_json()?;
    let version = published["version"]
        .as_str()
        .context("a version")?
        .to_string();
    ureq::post(&format!("{gate}/v1/admin/policies/{version}/activate"))
        .set("authorization", &format!("Bearer {admin}"))
        .call()?;
    Ok(version)
}

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    println!("Tollgate demo (scratch directory {})", dir.path().display());

    // 1. The gate, and a witness that follows its log.
    let mut gate = Command::new(bin("tollgate")?);
    gate.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("TOLLGATE_LOG", "error");
    let gate = start(gate, "tollgate listening on ")?;
    let (log_key, gate_key) = (vkey(&data, "log.skey")?, vkey(&data, "gate.skey")?);
    let mut witness = Command::new(bin("witness")?);
    witness
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("witness"))
        .args(["--log-key", &log_key.to_string(), "--monitor", &gate.url])
        .args(["--monitor-interval-ms", "100"])
        .env("WITNESS_LOG", "error");
    let witness = start(witness, "witness listening on ")?;
    println!("gate {}  witness {}", gate.url, witness.url);

    // 2. The payments service, behind the surface verifier.
    let trust = Trust::new(log_key.clone(), gate_key.clone());
    let served = Arc::new(AtomicUsize::new(0));
    let verifier = Arc::new(SurfaceVerifier::new(trust.clone()));
    let payments = {
        let served = served.clone();
        let app = axum::Router::new()
            .route(
                "/transfer",
                axum::routing::post(move || {
                    let served = served.clone();
                    async move {
                        served.fetch_add(1, Ordering::SeqCst);
                        "transferred\n"
                    }
                }),
            )
            .layer(PermitLayer::new(verifier, |parts, body| Call {
                surface: "payments".into(),
                action: parts.uri.path().trim_start_matches('/').into(),
                target: body.clone(),
            }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let url = format!("http://{}", listener.local_addr()?);
        std::thread::spawn(move || rt.block_on(async { axum::serve(listener, app).await }));
        url
    };
    println!("payments service {payments} (refuses calls without a permit)\n");

    // 3. The operator publishes the example policy with a change freeze
    //    around now (deploys frozen), and activates it: both admin changes
    //    go into the log before they take effect.
    let admin = std::fs::read_to_string(data.join("admin.token"))?;
    let version = publish_freeze(&gate.url, admin.trim())?;
    println!("policy {version}: the example, with a change freeze around now (activated)\n");

    // 4. The agent's plan, every tool call through guard.
    let token = std::fs::read_to_string(data.join("demo.token"))?;
    let agent = Client::new(&gate.url, trust).with_token(&token);
    let saved = dir.path().join("receipts");
    std::fs::create_dir_all(&saved)?;
    let mut steps = Steps::default();
    let small = json!({"amount": 500, "to": "acct-9"});
    let large = json!({"amount": 5_000_000, "to": "acct-9"});
    let mut used_permit = None;
    let mut deny_answer = None;
    println!("The agent's plan:");
    let plan = [
        (
            "pay 500",
            intent(
                "agent-treasury",
                "payments",
                "transfer",
                small.clone(),
                "plan-1",
            ),
            "PERMIT",
        ),
        (
            "pay 5,000,000 (over the ceiling)",
            intent(
                "agent-treasury",
                "payments",
                "transfer",
                large.clone(),
                "plan-2",
            ),
            "DENY",
        ),
        (
            "update a CRM record",
            intent(
                "agent-deployer",
                "crm",
                "update",
                json!({"record": "acme", "field": "tier"}),
                "plan-3",
            ),
            "PERMIT",
        ),
        (
            "deploy during the freeze",
            intent(
                "agent-deployer",
                "deploy",
                "release",
                json!({"service": "api"}),
                "plan-3b",
            ),
            "SILENCE",
        ),
        (
            "a suspended agent deploys",
            intent(
                "agent-suspended",
                "deploy",
                "release",
                json!({"service": "api"}),
                "plan-4",
            ),
            "SILENCE",
        ),
        (
            "an unknown actor pays",
            intent(
                "agent-unknown",
                "payments",
                "transfer",
                small.clone(),
                "plan-5",
            ),
            "SILENCE",
        ),
    ];
    for (i, (what, intent, want)) in plan.iter().enumerate() {
        let result = agent.guard(intent, |permit| {
            // The tool: payments go to the service with the permit attached;
            // other tools are local.
            let header = permit.header_value();
            let outcome = if intent["surface"] == "payments" {
                let (status, body) = pay(&payments, Some(&header), &intent["target"]);
                format!("service answered {status} {}", body.trim())
            } else {
                "tool ran".to_string()
            };
            (
                header,
                serde_json::to_vec(permit.response()).unwrap_or_default(),
                outcome,
            )
        });
        let (got, detail) = match &result {
            Ok((_, _, outcome)) => ("PERMIT", outcome.clone()),
            Err(Refusal::Deny { reason, .. }) => ("DENY", format!("not run: {reason}")),
            Err(Refusal::Silence { reason, .. }) => ("SILENCE", format!("not run: {reason}")),
            Err(e) => ("error", e.to_string()),
        };
        steps.check(got == *want, &format!("{what} → {got}"), &detail);
        if let Ok((header, response, _)) = result {
            std::fs::write(saved.join(format!("{i}.json")), response)?;
            if i == 0 {
                used_permit = Some(header);
            }
        }
        if *want != "PERMIT" {
            // The raw answer (the same idempotency key: the original
            // receipt), kept for the auditors' check and, for the DENY, as a
            // buggy agent would keep it.
            let answer = ureq::post(&format!("{}/v1/decisions", gate.url))
                .set("authorization", &format!("Bearer {}", token.trim()))
                .send_string(&intent.to_string())?
                .into_string()?;
            std::fs::write(saved.join(format!("{i}.json")), &answer)?;
            if *want == "DENY" {
                deny_answer = Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(answer));
            }
        }
    }
    steps.check(
        served.load(Ordering::SeqCst) == 1,
        "the payments service transferred once",
        &format!("{} transfer(s)", served.load(Ordering::SeqCst)),
    );

    // 5. The buggy fallback calls the payments service directly.
    println!("\nA buggy fallback calls the payments service directly:");
    let other = agent
        .decide(&intent(
            "agent-treasury",
            "payments",
            "transfer",
            small.clone(),
            "plan-6",
        ))
        .map(|p| p.header_value())
        .ok();
    let attempts = [
        ("without a permit", None, small.clone()),
        ("with the DENY receipt", deny_answer.clone(), large.clone()),
        (
            "with a permit for 500, asking 5,000",
            other,
            json!({"amount": 5_000, "to": "acct-9"}),
        ),
        (
            "with the permit already used",
            used_permit.clone(),
            small.clone(),
        ),
    ];
    for (what, permit, target) in attempts {
        let (status, body) = pay(&payments, permit.as_deref(), &target);
        steps.check(status == 403, &format!("{what} → {status}"), body.trim());
    }
    steps.check(
        served.load(Ordering::SeqCst) == 1,
        "still one transfer",
        &format!("{} transfer(s)", served.load(Ordering::SeqCst)),
    );

    // 6. The auditors' side.
    println!("\nproofcheck:");
    let proofcheck = bin("proofcheck")?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&saved)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    for f in files {
        let out = Command::new(&proofcheck)
            .arg("receipt")
            .arg(&f)
            .args([
                "--log-key",
                &log_key.to_string(),
                "--gate-key",
                &gate_key.to_string(),
            ])
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        steps.check(
            out.status.success(),
            &format!(
                "receipt {}",
                f.file_name().unwrap_or_default().to_string_lossy()
            ),
            text.lines().next().unwrap_or_default(),
        );
    }
    let out = Command::new(&proofcheck)
        .arg("--token-file")
        .arg(data.join("demo.token"))
        .args([
            "audit",
            "--log",
            &gate.url,
            "--log-key",
            &log_key.to_string(),
        ])
        .args(["--gate-key", &gate_key.to_string(), "--state"])
        .arg(dir.path().join("audit.json"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    steps.check(
        out.status.success(),
        "audit of the whole log",
        text.lines().next().unwrap_or_default(),
    );
    // The witness cosigned the log (it polls every 100 ms).
    let origin = log_key.name().to_string();
    let mut cosigned = false;
    for _ in 0..50 {
        if ureq::get(&format!("{}/checkpoint?origin={origin}", witness.url))
            .call()
            .is_ok()
        {
            cosigned = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    steps.check(cosigned, "the witness cosigned the log", &origin);

    // 7. A request left for a person: a transfer the policy wants approved.
    let waits = agent.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({"amount": 20_000, "to": "acct-9"}),
        "plan-approval",
    ));
    let approval = match &waits {
        Err(Refusal::Silence { response, .. }) => response.approval.clone(),
        _ => None,
    };
    steps.check(
        approval.is_some(),
        "a 20,000 transfer waits for a person's approval",
        &approval
            .as_ref()
            .map_or("no approval requested".into(), |a| a.to_string()),
    );
    let approver_file = dir.path().join("approver.token");
    let made: Value = ureq::post(&format!("{}/v1/admin/callers", gate.url))
        .set("authorization", &format!("Bearer {}", admin.trim()))
        .send_json(json!({"name": "finance-lead", "roles": ["approve", "read"], "actors": []}))?
        .into_json()?;
    std::fs::write(
        &approver_file,
        format!("{}\n", made["token"].as_str().unwrap_or_default()),
    )?;

    if steps.failed > 0 {
        bail!("{} step(s) did not do what they claim", steps.failed);
    }
    println!("\nevery step did what it claims");
    if std::io::stdout().is_terminal() {
        println!(
            "\nThe gate stays up for you to try the portal: {}/portal/\n  \
             Keys page: log key {log_key}\n             gate key {gate_key}\n  \
             Approvals: sign in as the approver finance-lead (token in {}) and approve the\n  \
             20,000 transfer the agent asked for; Verify: paste a saved answer from {}.\n\
             Press Enter to stop.",
            gate.url,
            approver_file.display(),
            saved.display(),
        );
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    drop(witness);
    drop(gate);
    Ok(())
}
