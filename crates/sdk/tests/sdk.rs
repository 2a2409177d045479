//! The SDK against the real gate and against gates that misbehave: the tool
//! runs exactly once per verified PERMIT and never otherwise.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use note::{SignerKey, VerifierKey};
use sdk::{Client, Refusal, Trust};
use serde_json::{json, Value};
use testkit::Proc;

fn key(data: &std::path::Path, file: &str) -> VerifierKey {
    let skey = std::fs::read_to_string(data.join(file)).unwrap();
    SignerKey::parse(skey.trim()).unwrap().verifier().clone()
}

fn intent(actor: &str, amount: u64, key: &str) -> Value {
    json!({
        "actor": {"id": actor, "kind": "agent"}, "surface": "payments", "action": "transfer",
        "target": {"amount": amount, "to": "acct-9"}, "idempotency_key": key,
    })
}

/// A fake gate on 127.0.0.1:0 that answers every request with `status` and
/// `body` after `delay`.
fn fake_gate(status: u16, body: Vec<u8>, delay: Duration) -> String {
    fake_gate_seq(vec![(status, body)], delay)
}

/// A fake gate that gives the answers in `answers` in turn, then the last
/// one again.
fn fake_gate_seq(answers: Vec<(u16, Vec<u8>)>, delay: Duration) -> String {
    let served = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let turn = served.fetch_add(1, Ordering::SeqCst).min(answers.len() - 1);
            let (status, body) = answers[turn].clone();
            std::thread::spawn(move || {
                // Read the head and the body the request announces.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                std::thread::sleep(delay);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = c.write_all(&body);
            });
        }
    });
    url
}

#[test]
fn the_tool_runs_only_on_a_verified_permit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gate = Proc::start(testkit::tollgate_serve(&data), testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    let client = Client::new(&gate.url, trust.clone()).with_token(&token);
    let runs = AtomicUsize::new(0);
    let tool = |_: &sdk::Permit| runs.fetch_add(1, Ordering::SeqCst);

    // PERMIT: the tool runs once, and once more for a retry of the same
    // request (the gate answers the original decision).
    let permit = client.decide(&intent("agent-treasury", 500, "p")).unwrap();
    assert_eq!(permit.receipt().decision, protocol::Decision::Permit);
    client
        .guard(&intent("agent-treasury", 500, "p"), tool)
        .unwrap();
    client
        .guard(&intent("agent-treasury", 500, "p"), tool)
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let again = client.decide(&intent("agent-treasury", 500, "p")).unwrap();
    assert_eq!(again.receipt_id(), permit.receipt_id());
    assert_eq!(again.log_index(), permit.log_index());

    // DENY and SILENCE, verified, and the tool not run.
    match client.guard(&intent("agent-treasury", 5_000_000, "d"), tool) {
        Err(Refusal::Deny { receipt, .. }) => {
            assert_eq!(receipt.decision, protocol::Decision::Deny)
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.guard(&intent("agent-unknown", 5, "s"), tool),
        Err(Refusal::Silence { .. })
    ));
    // No token: the gate answers 401, no decision.
    let anonymous = Client::new(&gate.url, trust.clone());
    assert!(matches!(
        anonymous.guard(&intent("agent-treasury", 5, "a"), tool),
        Err(Refusal::Unavailable(_))
    ));
    // Answers signed by another gate key do not verify.
    let other = SignerKey::generate("tollgate.local/gate", note::KeyType::Ed25519).unwrap();
    let distrusting = Client::new(
        &gate.url,
        Trust::new(key(&data, "log.skey"), other.verifier().clone()),
    )
    .with_token(&token);
    assert!(matches!(
        distrusting.guard(&intent("agent-treasury", 5, "k"), tool),
        Err(Refusal::Unverified(_))
    ));
    // An invalid intent is refused before anything is sent.
    assert!(matches!(
        client.guard(&json!({"actor": {"id": "x"}}), tool),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "no tool run but for the PERMITs"
    );

    // Misbehaving gates: garbage, a real PERMIT for another request, a
    // PERMIT whose signature was altered, a proof that does not verify,
    // 503 (retried, then given up), an answer slower than the timeout, and
    // a gate that is not there.
    let real = serde_json::to_vec(&permit.response()).unwrap();
    let (real_for_retry, trust_for_retry) = (real.clone(), trust.clone());
    let mut bad_signature: Value = serde_json::from_slice(&real).unwrap();
    let receipt = bad_signature["receipt"].as_str().unwrap().to_string();
    let sig_at = receipt.rfind(' ').unwrap() + 3;
    let mut flipped = receipt.into_bytes();
    flipped[sig_at] = if flipped[sig_at] == b'A' { b'B' } else { b'A' };
    bad_signature["receipt"] = String::from_utf8(flipped).unwrap().into();
    let mut bad_proof: Value = serde_json::from_slice(&real).unwrap();
    // Alter the first hash of the inclusion proof (the line after `index N`).
    let mut lines: Vec<String> = bad_proof["proof"]
        .as_str()
        .unwrap()
        .split('\n')
        .map(str::to_string)
        .collect();
    let at = lines.iter().position(|l| l.starts_with("index ")).unwrap() + 1;
    assert!(!lines[at].is_empty(), "the proof has a hash to alter");
    let first = if lines[at].starts_with('A') { "B" } else { "A" };
    lines[at].replace_range(0..1, first);
    bad_proof["proof"] = lines.join("\n").into();
    // A port bound but not listening: connections are refused, and no
    // other listener (the fake gates below) can be given it meanwhile.
    let unlistened =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    unlistened
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let closed = unlistened.local_addr().unwrap().as_socket().unwrap();
    let fast = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(500))
        .build();
    // (what, gate, amount asked, what the refusal must say): every answer
    // but "another request" is for the very request asked (500, "p").
    let cases: Vec<(&str, String, u64, &str)> = vec![
        (
            "garbage",
            fake_gate(200, b"{\"decision\":\"PERMIT\"}".to_vec(), Duration::ZERO),
            500,
            "not a decision",
        ),
        (
            "another request",
            fake_gate(200, real.clone(), Duration::ZERO),
            501,
            "another request",
        ),
        (
            "bad signature",
            fake_gate(
                200,
                serde_json::to_vec(&bad_signature).unwrap(),
                Duration::ZERO,
            ),
            500,
            "receipt",
        ),
        (
            "bad proof",
            fake_gate(200, serde_json::to_vec(&bad_proof).unwrap(), Duration::ZERO),
            500,
            "proof",
        ),
        (
            "503",
            fake_gate(503, b"{}".to_vec(), Duration::ZERO),
            500,
            "503",
        ),
        (
            "slow",
            fake_gate(200, real.clone(), Duration::from_secs(2)),
            500,
            "",
        ),
        ("down", format!("http://{closed}"), 500, ""),
    ];
    for (what, url, amount, says) in cases {
        let c = Client::new(&url, trust.clone())
            .with_token(&token)
            .with_agent(fast.clone())
            .with_retries(1);
        let r = c.guard(&intent("agent-treasury", amount, "p"), tool);
        let message = match (&r, what) {
            (Err(e @ Refusal::Unavailable(_)), "503" | "slow" | "down") => e.to_string(),
            (Err(e @ Refusal::Unverified(_)), _) if !matches!(what, "503" | "slow" | "down") => {
                e.to_string()
            }
            _ => panic!("{what}: {r:?}"),
        };
        assert!(message.contains(says), "{what}: {message}");
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "a misbehaving gate never runs the tool"
    );
    // The same answer for the request it was made for is a PERMIT.
    let replayed = Client::new(&fake_gate(200, real, Duration::ZERO), trust).with_token(&token);
    replayed
        .guard(&intent("agent-treasury", 500, "p"), tool)
        .unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    // A 503 and then the answer: the retry resends the same request, and the
    // tool runs once.
    let r = real_for_retry;
    let flaky = Client::new(
        &fake_gate_seq(vec![(503, b"{}".to_vec()), (200, r)], Duration::ZERO),
        trust_for_retry,
    )
    .with_token(&token)
    .with_retries(2);
    flaky
        .guard(&intent("agent-treasury", 500, "p"), tool)
        .unwrap();
    assert_eq!(
        runs.load(Ordering::SeqCst),
        4,
        "once per PERMIT, across a retry"
    );
}

/// The sidecar case: over the gate's Unix socket, without a token, as the
/// caller the socket peer's uid is mapped to.
#[test]
fn the_sidecar_socket_needs_no_token() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sock = dir.path().join("gate.sock");
    let uid = std::fs::metadata(dir.path()).unwrap().uid();
    let mut cmd = testkit::tollgate_serve(&data);
    cmd.arg("--unix-socket")
        .arg(&sock)
        .env("TOLLGATE_UNIX_CALLERS", format!("{uid}=demo"));
    let _gate = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let client = Client::new(&format!("unix:{}", sock.display()), trust);
    let permit = client.decide(&intent("agent-treasury", 500, "u")).unwrap();
    assert_eq!(
        permit.receipt().derived["caller"],
        json!({"name": "demo", "via": "peer_uid"})
    );
    assert!(matches!(
        client.decide(&intent("agent-treasury", 5_000_000, "u2")),
        Err(Refusal::Deny { .. })
    ));
    // A peer the gate does not map, without a token: the gate's 401 (it
    // answers before reading the body), not a broken pipe.
    drop(_gate);
    let mut cmd = testkit::tollgate_serve(&data);
    cmd.arg("--unix-socket").arg(&sock);
    let _gate = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    for n in 0..20 {
        match client.decide(&intent("agent-treasury", 500, &format!("u-{n}"))) {
            Err(Refusal::Unavailable(why)) => assert!(why.starts_with("401: "), "{why}"),
            other => panic!("an unmapped peer: {other:?}"),
        }
    }
    // A socket nobody serves: unavailable, after the retries.
    let gone = Client::new(
        &format!("unix:{}", dir.path().join("none.sock").display()),
        Trust::new(key(&data, "log.skey"), key(&data, "gate.skey")),
    )
    .with_retries(1);
    assert!(matches!(
        gone.decide(&intent("agent-treasury", 5, "u3")),
        Err(Refusal::Unavailable(_))
    ));
}

/// A gate on a Unix socket that answers once it has read the request's head
/// and closes without reading the body (HTTP allows it; the real gate may do
/// it with a 401): the client reports the gate's answer, not the reset or
/// broken pipe that follows it.
#[test]
fn an_answer_before_the_body_is_read_is_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gate.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            // Byte by byte up to the end of the head, so the body stays unread.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match c.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let body = br#"{"error":"unauthenticated","message":"no caller"}"#;
            let _ = write!(
                c,
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(body);
        }
    });
    let signer = SignerKey::generate("gate.example", note::KeyType::Ed25519).unwrap();
    let trust = Trust::new(signer.verifier().clone(), signer.verifier().clone());
    let client = Client::new(&format!("unix:{}", sock.display()), trust);
    match client.decide(&intent("agent-treasury", 500, "early")) {
        Err(Refusal::Unavailable(why)) => assert!(why.starts_with("401: "), "{why}"),
        other => panic!("an answer before the body: {other:?}"),
    }
}

/// `with_approval_wait`: a guard whose request the policy wants approved
/// waits, polling the request, and runs the tool once a person approved it
/// (asked again under `key+approved`); not approved in time, the SILENCE
/// stands and the tool never runs.
#[test]
fn guard_waits_for_an_approval_then_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gate = Proc::start(testkit::tollgate_serve(&data), testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let approver: Value = ureq::post(&format!("{}/v1/admin/callers", gate.url))
        .set("authorization", &format!("Bearer {}", admin.trim()))
        .send_json(json!({"name": "alice", "roles": ["approve"], "actors": []}))
        .unwrap()
        .into_json()
        .unwrap();
    let alice = approver["token"].as_str().unwrap().to_string();
    let runs = AtomicUsize::new(0);
    let tool = |p: &sdk::Permit| {
        runs.fetch_add(1, Ordering::SeqCst);
        p.receipt().request["idempotency_key"].clone()
    };
    // Nobody approves: after the wait, the SILENCE.
    let impatient = Client::new(&gate.url, trust.clone())
        .with_token(&token)
        .with_approval_wait(Duration::from_millis(600));
    match impatient.guard(&intent("agent-treasury", 20_000, "w1"), tool) {
        Err(Refusal::Silence { response, .. }) => assert!(response.approval.is_some()),
        other => panic!("{other:?}"),
    }
    // Someone approves while the guard waits.
    let patient = Client::new(&gate.url, trust)
        .with_token(&token)
        .with_approval_wait(Duration::from_secs(20));
    let url = gate.url.clone();
    let approve = std::thread::spawn(move || {
        let list = |all: bool| -> Value {
            ureq::get(&format!(
                "{url}/v1/approvals{}",
                if all { "?all=true" } else { "" }
            ))
            .set("authorization", &format!("Bearer {alice}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
        };
        let id = loop {
            let open = list(false);
            let found = open["approvals"].as_array().unwrap().iter().find_map(|a| {
                (a["request"]["target"]["amount"] == 30_000)
                    .then(|| a["id"].as_str().unwrap().to_string())
            });
            if let Some(id) = found {
                break id;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        ureq::post(&format!("{url}/v1/approvals/{id}"))
            .set("authorization", &format!("Bearer {alice}"))
            .send_json(json!({"vote": "approve"}))
            .unwrap();
    });
    let key = patient
        .guard(&intent("agent-treasury", 30_000, "w2"), tool)
        .unwrap();
    approve.join().unwrap();
    assert_eq!(key, "w2+approved");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

/// The SDK carries the current OpenTelemetry context to the gate (W3C
/// `traceparent`, over HTTP and over the Unix socket): the gate's decision
/// is a span of the agent's trace, at a real OTLP collector.
#[test]
fn a_decision_continues_the_agents_trace() {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use std::os::unix::fs::MetadataExt as _;
    let otlp = testkit::otlp::Otlp::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sock = dir.path().join("gate.sock");
    let uid = std::fs::metadata(dir.path()).unwrap().uid();
    let mut cmd = testkit::tollgate_serve(&data);
    cmd.arg("--unix-socket")
        .arg(&sock)
        .env("TOLLGATE_UNIX_CALLERS", format!("{uid}=demo"))
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url);
    let gate = Proc::start(cmd, testkit::TOLLGATE_READY, 0);
    let trust = Trust::new(key(&data, "log.skey"), key(&data, "gate.skey"));
    let token = std::fs::read_to_string(data.join("demo.token")).unwrap();
    let over_http = Client::new(&gate.url, trust.clone()).with_token(&token);
    let over_socket = Client::new(&format!("unix:{}", sock.display()), trust);
    for (n, client) in [over_http, over_socket].iter().enumerate() {
        let trace = TraceId::from_hex(&format!("{:032x}", 0xabc0 + n)).unwrap();
        let agent_span = SpanId::from_hex("1234567890abcdef").unwrap();
        let cx = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            trace,
            agent_span,
            TraceFlags::SAMPLED,
            true,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        ));
        let permit = {
            let _attached = cx.attach();
            client
                .decide(&intent("agent-treasury", 500, &format!("traced-{n}")))
                .unwrap()
        };
        let spans = otlp.wait_for("the decision span", |spans| {
            spans
                .iter()
                .any(|s| s.span.name == "decision" && s.trace_id() == trace.to_string())
        });
        let decision = spans
            .iter()
            .find(|s| s.span.name == "decision" && s.trace_id() == trace.to_string())
            .unwrap();
        assert_eq!(
            decision.attr("tollgate.receipt_id").as_deref(),
            Some(permit.receipt_id())
        );
        let request = spans
            .iter()
            .find(|s| s.span_id() == decision.parent_span_id())
            .unwrap();
        assert_eq!(request.parent_span_id(), agent_span.to_string());
        assert_eq!(request.span.trace_state, "vendor=x");
    }
    // No current span: no trace context sent, a trace of the gate's own.
    let before = otlp.spans().len();
    let client = Client::new(
        &gate.url,
        Trust::new(key(&data, "log.skey"), key(&data, "gate.skey")),
    )
    .with_token(&token);
    client
        .decide(&intent("agent-treasury", 500, "untraced"))
        .unwrap();
    let spans = otlp.wait_for("the untraced decision", |s| s.len() > before + 1);
    let request = spans[before..]
        .iter()
        .find(|s| s.span.name == "POST /v1/decisions")
        .unwrap();
    assert!(request.parent_span_id().is_empty(), "a root span");
}
