//! Overload and shutdown: bounded admissions and connections, 503 before anything is evaluated or
//! written, and a graceful drain on SIGTERM.

use super::*;

/// Graceful shutdown drains decisions in flight: every request sent before
/// SIGTERM is answered with a verified decision or never started.
#[test]
fn sigterm_drains_in_flight_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let url = s.url.clone();
    let auth = format!("Bearer {}", s.demo());
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (url, auth) = (url.clone(), auth.clone());
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                for i in 0.. {
                    let body = transfer(5, &format!("drain-{w}-{i}"));
                    match ureq::post(&format!("{url}/v1/decisions"))
                        .set("authorization", &auth)
                        .send_string(&body.to_string())
                    {
                        Ok(r) => answered.push(r.into_json::<DecisionResponse>().unwrap()),
                        // Refused or reset once the listener closed: never started.
                        Err(ureq::Error::Transport(_)) => break,
                        Err(e) => panic!("{e}"),
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let gate_key = s.key("gate.skey");
    let log_key = s.key("log.skey");
    s.stop();
    let mut n = 0;
    for w in workers {
        for r in w.join().unwrap() {
            verify_receipt(r.receipt.as_bytes(), &gate_key).unwrap();
            ProofBundle::parse(&r.proof)
                .unwrap()
                .verify(
                    &tlog::leaf_hash(r.receipt.as_bytes()),
                    &Policy::for_log(log_key.clone()),
                )
                .unwrap();
            n += 1;
        }
    }
    assert!(n > 0);
    // After restart, every answered decision is in the log.
    let s = Server::start(dir.path());
    assert!(s.checkpoint().size >= n);
    s.stop();
}

/// Beyond `max_pending_decisions`, a decision request is answered 503
/// `overloaded` with Retry-After at once: nothing evaluated, nothing logged.
#[test]
fn beyond_max_pending_decisions_is_503_overloaded_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "1000"),
            ("TOLLGATE_EVAL_THREADS", "1"),
            ("TOLLGATE_MAX_PENDING_DECISIONS", "2"),
        ],
    );
    activate_runaway(&s, 20_000);
    let before = s.checkpoint().size;
    let s = std::sync::Arc::new(s);
    let admitted: Vec<_> = (0..2)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                s.decide(&intent(
                    "agent-treasury",
                    "payments",
                    "transfer",
                    json!({}),
                    &format!("admitted-{i}"),
                ))
            })
        })
        .collect();
    wait_for_metric(&s, "tollgate_decisions_pending", 2);
    for i in 0..6 {
        let body = intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({}),
            &format!("refused-{i}"),
        );
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {}", s.demo()))
            .send_string(&body.to_string());
        let Err(ureq::Error::Status(503, r)) = r else {
            panic!("expected 503, got {r:?}");
        };
        assert_eq!(r.header("retry-after"), Some("1"));
        let body: Value = r.into_json().unwrap();
        assert_eq!(body["error"], "overloaded", "{body}");
    }
    for t in admitted {
        assert_eq!(t.join().unwrap().decision, Decision::Silence);
    }
    assert_eq!(
        s.checkpoint().size,
        before + 2,
        "only the admitted two are logged"
    );
    let metrics = s.get_text("/metrics");
    assert!(metrics.contains("tollgate_requests_total{result=\"overloaded\"} 6"));
    assert!(metrics.contains("tollgate_decisions_pending 0"));
}

/// Overload with the example policy: 256 clients, keep-alive, for three
/// seconds against a gate admitting 32 decisions at once. Every answer is a
/// decision or 503 `overloaded`; the log holds exactly the decisions
/// answered; the gate's peak resident memory (VmHWM) is printed and stays
/// under a bound far below what the queued work could take unbounded.
#[test]
fn overload_answers_503_and_keeps_memory_and_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_MAX_PENDING_DECISIONS", "32")]);
    let before = s.checkpoint().size;
    let (url, token) = (s.url.clone(), s.demo());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let clients: Vec<_> = (0..256)
        .map(|c| {
            let (url, token) = (url.clone(), token.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let (mut decided, mut overloaded) = (0u64, 0u64);
                let mut i = 0;
                while std::time::Instant::now() < until {
                    i += 1;
                    let body = intent(
                        "agent-treasury",
                        "payments",
                        "transfer",
                        json!({"amount": 5, "currency": "EUR", "to": "acct-1"}),
                        &format!("load-{c}-{i}"),
                    );
                    let r = agent
                        .post(&format!("{url}/v1/decisions"))
                        .set("authorization", &format!("Bearer {token}"))
                        .send_string(&body.to_string());
                    match response(r) {
                        (200, v) => {
                            assert_eq!(v["replayed"], false);
                            decided += 1;
                        }
                        (503, v) if v["error"] == "overloaded" => overloaded += 1,
                        (code, v) => panic!("{code} {v}"),
                    }
                }
                (decided, overloaded)
            })
        })
        .collect();
    let (mut decided, mut overloaded) = (0, 0);
    for c in clients {
        let (d, o) = c.join().unwrap();
        decided += d;
        overloaded += o;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.proc.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    eprintln!(
        "overload: {decided} decided, {overloaded} overloaded, gate peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(decided > 0 && overloaded > 0, "{decided} / {overloaded}");
    assert_eq!(s.checkpoint().size, before + decided);
    assert!(peak_kib < 512 * 1024, "peak RSS {peak_kib} KiB");
    s.stop();
}

/// Server limits: 2,000 connections that never finish a request head do not
/// keep a normal caller from being answered, and are closed once the head
/// deadline passes; beyond `max_connections` a new connection is closed at
/// once, and the gate serves again once slots free up.
#[test]
fn slow_connections_are_bounded_and_do_not_starve_callers() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    // This test holds thousands of sockets: lift the soft open-files limit.
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_HEADER_READ_TIMEOUT_MS", "3000")]);
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let mut slow = Vec::new();
    for _ in 0..2000 {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(b"POST /v1/decisions HTTP/1.1\r\nhost: gate\r\n")
            .unwrap();
        slow.push(c);
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    let r = agent
        .post(&format!("{}/v1/decisions", s.url))
        .set("authorization", &format!("Bearer {}", s.demo()))
        .send_string(&transfer(5, "busy").to_string());
    assert_eq!(
        r.map(|r| r.status()).ok(),
        Some(200),
        "a caller beside 2,000 slow connections"
    );
    // Past the head deadline the gate has closed them: reads end.
    std::thread::sleep(Duration::from_millis(3500));
    let mut closed = 0;
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 256];
        // EOF, or the gate's 408 answer then EOF.
        let started = Instant::now();
        loop {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if started.elapsed() < Duration::from_secs(1) => {}
                Ok(_) => break,
            }
        }
        if c.read(&mut buf).map_or(true, |n| n == 0) {
            closed += 1;
        }
    }
    assert_eq!(
        closed,
        slow.len(),
        "slow connections closed at the head deadline"
    );
    drop(slow);
    s.stop();

    // The cap: with 20 connections open, the 21st is closed at once.
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_MAX_CONNECTIONS", "20"),
            ("TOLLGATE_HEADER_READ_TIMEOUT_MS", "1500"),
        ],
    );
    let addr = s.url.strip_prefix("http://").unwrap().to_string();
    let held: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let refused = agent.get(&format!("{}/healthz", s.url)).call();
    assert!(refused.is_err(), "a connection beyond the cap is closed");
    // Once the held ones reach their deadline, the gate serves again.
    std::thread::sleep(Duration::from_millis(2000));
    let r = agent.get(&format!("{}/healthz", s.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
    s.stop();
}
