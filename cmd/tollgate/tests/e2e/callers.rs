//! Callers: the CLI that manages them, no token in the gate's output, and a Unix peer's uid mapped
//! to its caller.

use super::*;

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

/// `Tollgate-On-Behalf-Of` (the MCP gateway's OAuth clients): the receipt
/// records the principal beside the caller that asked, which it grants
/// nothing (an actor the caller may not speak for is still not bound); a
/// malformed header is 400 and nothing is written.
#[test]
fn a_principal_the_caller_acts_for_is_recorded_and_grants_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let principal = protocol::OnBehalfOf::oauth("https://as.example", "user-7", Some("desk"))
        .unwrap()
        .header_value();
    let ask = |header: &str, body: &Value| {
        response(
            ureq::post(&format!("{}/v1/decisions", s.url))
                .set("authorization", &format!("Bearer {}", s.demo()))
                .set(protocol::ON_BEHALF_OF_HEADER, header)
                .send_string(&body.to_string()),
        )
    };
    let (status, answer) = ask(&principal, &transfer(5, "obo-1"));
    assert_eq!(status, 200, "{answer}");
    let r: DecisionResponse = serde_json::from_value(answer).unwrap();
    assert_eq!(r.decision, Decision::Permit);
    let (body, _) = verify(&s, &r);
    assert_eq!(
        body.derived["caller"],
        json!({"name": "demo", "via": "token", "on_behalf_of": {
            "via": "oauth", "issuer": "https://as.example", "subject": "user-7", "client": "desk"
        }})
    );
    // The demo caller speaks for agent-* only: a principal changes nothing.
    let mut other = transfer(5, "obo-2");
    other["actor"]["id"] = json!("human-1");
    let (status, answer) = ask(&principal, &other);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["decision"], "SILENCE", "{answer}");
    let before = s.checkpoint().size;
    for bad in [
        r#"{"via":"oauth"}"#,
        r#"{"via":"saml","issuer":"i","subject":"s"}"#,
        "x",
    ] {
        let (status, answer) = ask(bad, &transfer(5, "obo-3"));
        assert_eq!(status, 400, "{bad}: {answer}");
    }
    assert_eq!(s.checkpoint().size, before);
    s.stop();
}
