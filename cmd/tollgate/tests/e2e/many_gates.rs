//! Many gates on one PostgreSQL log: shared decisions, callers, approvals and policies, an embedded
//! log copied there, and counters exact across gates.

use super::*;

/// Two gates on one PostgreSQL log (`log_store`), with the same keys: a
/// decision made on one is the other's idempotent answer, each serves what
/// the other appended; a caller added, revoked, an approval given or a
/// policy activated on one takes effect on the other, whose counters count
/// the first one's PERMITs; and the shared log passes an audit.
#[test]
fn two_gates_share_one_log_on_postgres() {
    let pg = testkit::Postgres::start();
    let (da, _db, a, b) = two_gates(&pg.url);
    let first = a.decide(&transfer(500, "shared-1"));
    assert_eq!(first.decision, Decision::Permit);
    let again = b.decide(&transfer(500, "shared-1"));
    assert!(again.replayed, "the other gate answers with the original");
    assert_eq!(
        (again.receipt_id.as_str(), again.log_index),
        (first.receipt_id.as_str(), first.log_index)
    );
    let second = b.decide(&transfer(500, "shared-2"));
    assert_eq!(second.decision, Decision::Permit);
    assert!(second.log_index > first.log_index);
    let (status, found) = a.post(
        "/v1/replay",
        serde_json::to_string(&second).unwrap().as_bytes(),
    );
    assert_eq!(
        (status, found["same"].clone()),
        (200, json!(true)),
        "{found}"
    );
    // Each learns the other's checkpoints.
    eventually("the gates agree on the checkpoint", || {
        a.checkpoint().size == b.checkpoint().size
    });

    // A caller added on one gate works on the other; revoked, it stops.
    let sdk = a.add_caller("sdk", &["decide"], "agent-treasury");
    let sdk = std::fs::read_to_string(&sdk).unwrap().trim().to_string();
    let as_sdk = |s: &Server, key: &str| {
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set("authorization", &format!("Bearer {sdk}"))
            .send_string(&transfer(500, key).to_string());
        response(r).0
    };
    eventually("the other gate knows the new caller", || {
        as_sdk(&b, "by-sdk-1") == 200
    });
    let (ok, out) = a.tollgate(&["caller", "revoke", "sdk"]);
    assert!(ok, "{out}");
    eventually("the other gate refuses the revoked caller", || {
        as_sdk(&b, "by-sdk-2") == 401
    });

    // An approval given on one gate lets the other permit (the example
    // policy asks for one approval over 10,000).
    let big = |key: &str| {
        intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({"amount": 20000, "to": "acct-9"}),
            key,
        )
    };
    let asked = a.decide(&big("big-1"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    let alice = a.add_caller("alice", &["approve"], "agent-*");
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["approvals", "approve", &id, "--url", &a.url, "--token-file"])
        .arg(&alice)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let mut tries = 0;
    eventually("the other gate permits on the approval", || {
        tries += 1;
        b.decide(&big(&format!("big-b-{tries}"))).decision == Decision::Permit
    });

    // A policy activated on one gate binds the other's decisions, and its
    // counters count what either gate permitted.
    let bundle = quota_bundle(da.path());
    let (ok, out) = a.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let quota = |amount: u64, key: &str| {
        intent(
            "agent-quota",
            "payments",
            "transfer",
            json!({"amount": amount, "to": "acct-9"}),
            key,
        )
    };
    let mut probes = 0;
    eventually("the other gate binds the activated version", || {
        probes += 1;
        let r = b.decide(&quota(0, &format!("probe-{probes}")));
        verify(&b, &r)
            .0
            .policy
            .is_some_and(|p| p.version == version)
    });
    let first = a.decide(&quota(6000, "q-a"));
    assert_eq!(first.decision, Decision::Permit, "{}", first.reason);
    // Once the other gate has learnt the checkpoint holding that PERMIT
    // (and counted it, in the same pass), 6,000 more is over the limit.
    eventually("the other gate learns the PERMIT's checkpoint", || {
        b.checkpoint().size > first.log_index
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = b.decide(&quota(6000, "q-b"));
    assert_eq!(second.decision, Decision::Deny, "{}", second.reason);
    assert_eq!(
        verify(&b, &second).0.derived["history"]["transferred_24h"],
        6000
    );

    a.audit();
    b.audit();
}

/// `tollgate log copy`: a RocksDB gate's log moved into PostgreSQL. A gate
/// on the database then serves the same tree (same checkpoint), answers an
/// old request with its original receipt, keeps its callers and policy,
/// appends on top, and the log passes an audit; a second copy into the
/// same database is refused.
#[test]
fn an_embedded_log_copied_to_postgres_carries_on_there() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let before: Vec<DecisionResponse> = (0..40)
        .map(|i| s.decide(&transfer(500, &format!("before-{i}"))))
        .collect();
    let (ok, out) = s.tollgate(&["caller", "add", "later", "--role", "read"]);
    assert!(ok, "{out}");
    let checkpoint = s.checkpoint();
    s.stop();
    let copy = || {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["log", "copy", "--from"])
            .arg(dir.path().join("data"))
            .args(["--to", &pg.url])
            .output()
            .unwrap()
    };
    let out = copy();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("copied {} entries", checkpoint.size)),
        "{text}"
    );
    let out = copy();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already holds a log"),
        "{out:?}"
    );

    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_LOG_STORE", pg.url.as_str())]);
    let moved = s.checkpoint();
    assert_eq!((moved.size, moved.root), (checkpoint.size, checkpoint.root));
    let again = s.decide(&transfer(500, "before-7"));
    assert!(again.replayed);
    assert_eq!(
        (again.receipt.as_str(), again.log_index),
        (before[7].receipt.as_str(), before[7].log_index)
    );
    let (ok, out) = s.tollgate(&["caller", "list"]);
    assert!(ok && out.contains("later"), "{out}");
    let after = s.decide(&transfer(500, "after-1"));
    assert_eq!(after.decision, Decision::Permit);
    assert_eq!(after.log_index, checkpoint.size);
    s.audit();
}

/// Exact quotas across gates: 200 concurrent transfers of 100 by one actor,
/// sent alternately to two gates on one PostgreSQL log, against a 10,000
/// daily limit: exactly 100 PERMITs (each decision holds the actor's lock
/// in the database and catches up with the other gate's PERMITs first),
/// and the permits saw 0, 100, …, 9,900.
#[test]
fn counters_are_exact_across_gates_on_one_log() {
    let pg = testkit::Postgres::start();
    let (da, _db, a, b) = two_gates(&pg.url);
    let bundle = quota_bundle(da.path());
    let (ok, out) = a.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let mut probes = 0;
    eventually("the other gate binds the quota policy", || {
        probes += 1;
        let r = b.decide(&intent(
            "agent-probe",
            "payments",
            "transfer",
            json!({"amount": 0}),
            &format!("probe-{probes}"),
        ));
        verify(&b, &r)
            .0
            .policy
            .is_some_and(|p| p.version == version)
    });
    let started = std::time::Instant::now();
    let decided: Vec<DecisionResponse> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let gate = if i % 2 == 0 { &a } else { &b };
                scope.spawn(move || {
                    gate.decide(&intent(
                        "agent-quota",
                        "payments",
                        "transfer",
                        json!({"amount": 100, "to": "acct-9"}),
                        &format!("t{i}"),
                    ))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    eprintln!(
        "200 decisions of one actor under counters over two gates: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let mut seen: Vec<i64> = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .map(|r| {
            verify(&a, r).0.derived["history"]["transferred_24h"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..100).map(|k| k * 100).collect::<Vec<i64>>(),
        "exactly the transfers that fit, each seeing the ones before"
    );
    assert!(decided
        .iter()
        .all(|r| r.decision == Decision::Permit || r.decision == Decision::Deny));
    a.audit();
}
