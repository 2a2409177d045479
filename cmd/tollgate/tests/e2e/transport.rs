//! Transports: the Unix socket, HTTPS with mutual TLS.

use super::*;

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
        .args(["--log-key", &log_key.to_string(), "--monitor", &s.url])
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

/// A PEP speaking OpenID AuthZEN 1.0 over HTTP to the real server: the
/// discovery document names the endpoints at the address it was reached by,
/// an evaluation is a decision in the log (its receipt verifies), and the
/// request identifier is echoed and is the decision's idempotency key.
#[test]
fn an_authzen_pep_gets_signed_logged_decisions_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let bundle = examples.join("authzen-rego");
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let pep = s.add_caller("pep", &["decide"], "alice@example.com");
    let token = std::fs::read_to_string(pep).unwrap();

    let (status, metadata) =
        response(ureq::get(&format!("{}/.well-known/authzen-configuration", s.url)).call());
    assert_eq!(status, 200);
    assert_eq!(metadata["policy_decision_point"], s.url.as_str());
    let endpoint = metadata["access_evaluation_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(endpoint, format!("{}/access/v1/evaluation", s.url));

    let size = s.checkpoint().size;
    let answer = ureq::post(&endpoint)
        .set("authorization", &format!("Bearer {}", token.trim()))
        .set("x-request-id", "pep-42")
        .send_string(
            &json!({
                "subject": {"type": "user", "id": "alice@example.com"},
                "resource": {"type": "document", "id": "1"},
                "action": {"name": "can_read"},
            })
            .to_string(),
        )
        .unwrap();
    assert_eq!(answer.header("x-request-id"), Some("pep-42"));
    let decision: Value = answer.into_json().unwrap();
    assert_eq!(decision["decision"], true, "{decision}");
    let response: DecisionResponse = serde_json::from_value(decision["context"].clone()).unwrap();
    let (body, _) = verify(&s, &response);
    assert_eq!(body.request["idempotency_key"], "pep-42");
    assert_eq!(s.checkpoint().size, size + 1);
    s.audit();
}
