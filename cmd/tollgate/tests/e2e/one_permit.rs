//! One PERMIT, one execution of exactly the call it names: exact counters, approvals bound to the
//! request and used once (never the asker's own vote, never lost between gates, never one the log
//! does not hold), and permits redeemed once with the log showing where.

use super::*;

/// Exact quotas: 200 concurrent transfers of 100 by one actor against a
/// 10,000 daily limit give exactly 100 PERMITs; each receipt records the
/// counter it saw; the same after a restart (the counter read back from
/// the log); replay of every receipt gives its decision.
#[test]
fn counters_over_the_log_are_exact_under_concurrency_and_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let bundle = quota_bundle(dir.path());
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let transfer = |key: String| {
        intent(
            "agent-quota",
            "payments",
            "transfer",
            json!({"amount": 100, "to": "acct-9"}),
            &key,
        )
    };
    let decided: Vec<DecisionResponse> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..200)
            .map(|i| {
                let (s, transfer) = (&s, &transfer);
                scope.spawn(move || s.decide(&transfer(format!("t{i}"))))
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let permits = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .count();
    assert_eq!(permits, 100, "exactly the transfers that fit");
    assert!(decided
        .iter()
        .all(|r| r.decision == Decision::Permit || r.decision == Decision::Deny));
    // Each receipt records the value it saw; the permits saw 0, 100, …, 9,900.
    let mut seen: Vec<i64> = decided
        .iter()
        .filter(|r| r.decision == Decision::Permit)
        .map(|r| {
            verify(&s, r).0.derived["history"]["transferred_24h"]
                .as_i64()
                .unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..100).map(|k| k * 100).collect::<Vec<i64>>());
    for r in decided.iter().filter(|r| r.decision == Decision::Deny) {
        assert_eq!(
            verify(&s, r).0.derived["history"]["transferred_24h"],
            10_000
        );
    }
    // An idempotent retry is answered with its receipt and counts nothing.
    let again = s.decide(&transfer("t0".into()));
    assert!(again.replayed);

    // Across a restart the counter is read back from the log.
    s.stop();
    let s = Server::start(dir.path());
    for i in 0..10 {
        let r = s.decide(&transfer(format!("after-{i}")));
        assert_eq!(r.decision, Decision::Deny, "{}", r.reason);
        assert_eq!(
            verify(&s, &r).0.derived["history"]["transferred_24h"],
            10_000
        );
    }
    let small = s.decide(&intent(
        "agent-quota-2",
        "payments",
        "transfer",
        json!({"amount": 100}),
        "other-actor",
    ));
    assert_eq!(small.decision, Decision::Permit, "counters are per actor");
    // A negative amount never lowers a sum (this quota policy does not
    // refuse one; the examples do): after −1,000,000 the limit still holds.
    for (amount, key, want) in [
        (-1_000_000, "neg-1", Decision::Permit),
        (10_000, "neg-2", Decision::Permit),
        (1, "neg-3", Decision::Deny),
    ] {
        let r = s.decide(&intent(
            "agent-quota-3",
            "payments",
            "transfer",
            json!({"amount": amount}),
            key,
        ));
        assert_eq!(r.decision, want, "{amount}: {}", r.reason);
    }
    // Replay of every receipt: the same decision from what it recorded.
    for r in &decided {
        let (status, replay) = s.post("/v1/replay", serde_json::to_string(r).unwrap().as_bytes());
        assert_eq!(
            (status, replay["same"].clone()),
            (200, json!(true)),
            "{replay}"
        );
    }
    s.audit();
}

/// Approvals: a policy asks for one above 1,000; the answer names the
/// request; a caller with `approve` (never the asker) approves it with a
/// signed log entry; asked again, the PERMIT relies on it (recorded in
/// `derived.approvals`), and it is used once; it binds the exact request.
#[test]
fn approvals_are_logged_bound_to_the_request_and_used_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let b = dir.path().join("dual");
    std::fs::create_dir(&b).unwrap();
    std::fs::write(
        b.join("tollgate.json"),
        r#"{"engine": "rego", "entrypoint": "data.tollgate.dual.decision"}"#,
    )
    .unwrap();
    std::fs::write(
        b.join("policy.rego"),
        "package tollgate.dual\n\nimport rego.v1\n\ndefault decision := \"silence\"\n\n\
         transfer if {\n\tinput.surface == \"payments\"\n\tinput.action == \"transfer\"\n}\n\n\
         decision := \"permit\" if {\n\ttransfer\n\tinput.target.amount <= 1000\n\
         } else := \"permit\" if {\n\ttransfer\n\t\
         count(object.get(input.derived, \"approvals\", [])) >= 1\n\
         } else := \"approval\" if transfer\n",
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", b.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let alice = s.add_caller("alice", &["approve"], "agent-*");
    let both = s.add_caller("both", &["decide", "approve"], "agent-*");
    let to_acct_9 = |amount: u64, key: &str| {
        intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({"amount": amount, "to": "acct-9"}),
            key,
        )
    };
    let asked = s.decide(&to_acct_9(5000, "k1"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let approval = asked
        .approval
        .clone()
        .unwrap_or_else(|| panic!("no approval request in the answer: {}", asked.reason));
    let id = approval["id"].as_str().unwrap().to_string();
    assert_eq!(approval["state"], "open");
    assert_eq!(approval["approvals"], 1);
    assert_eq!(
        id,
        protocol::approval_id(&verify(&s, &asked).0.request).0,
        "the id is the request's, computable by anyone"
    );
    // Retried with the same key: the same receipt, and how the request stands.
    let again = s.decide(&to_acct_9(5000, "k1"));
    assert!(again.replayed && again.approval.unwrap()["id"] == id.as_str());

    // Votes: by a caller with `approve`, never the one that asked.
    let vote = |file: &Path, verb: &str, id: &str| {
        let args = [
            "approvals",
            verb,
            id,
            "--token-file",
            file.to_str().unwrap(),
        ];
        let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(args)
            .args(["--url", &s.url])
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let demo_file = dir.path().join("data/demo.token");
    let (ok, out) = vote(&demo_file, "approve", &id);
    assert!(!ok && out.contains("lacks the approve role"), "{out}");
    let size = s.checkpoint().size;
    let (ok, out) = vote(&alice, "approve", &id);
    assert!(ok && out.contains("approved"), "{out}");
    assert_eq!(
        s.checkpoint().size,
        size + 1,
        "the vote is an entry in the log"
    );
    let (ok, out) = vote(&alice, "approve", &id);
    assert!(!ok && out.contains("already approved"), "{out}");

    // Another amount is another request: the approval does not carry over.
    let other = s.decide(&to_acct_9(5001, "k2"));
    assert_eq!(other.decision, Decision::Silence);
    assert_ne!(other.approval.unwrap()["id"], id.as_str());
    // Asked again: PERMIT, relying on alice's approval, recorded in the receipt.
    let permitted = s.decide(&to_acct_9(5000, "k3"));
    assert_eq!(permitted.decision, Decision::Permit, "{}", permitted.reason);
    let (body, _) = verify(&s, &permitted);
    assert_eq!(body.derived["approvals"][0]["by"], "alice");
    assert_eq!(body.derived["approvals"][0]["entry"], size);
    // Used once: the next ask is SILENCE with a fresh request.
    let after = s.decide(&to_acct_9(5000, "k4"));
    assert_eq!(after.decision, Decision::Silence);
    assert_eq!(after.approval.unwrap()["state"], "open");
    // The caller that asked may not approve its own request.
    let as_both = |intent: &Value| {
        let r = ureq::post(&format!("{}/v1/decisions", s.url))
            .set(
                "authorization",
                &format!("Bearer {}", std::fs::read_to_string(&both).unwrap().trim()),
            )
            .send_string(&intent.to_string())
            .unwrap();
        r.into_json::<Value>().unwrap()
    };
    let mine = as_both(&to_acct_9(7000, "mine"));
    let mine_id = mine["approval"]["id"].as_str().unwrap().to_string();
    let (ok, out) = vote(&both, "approve", &mine_id);
    assert!(!ok && out.contains("may not approve it"), "{out}");
    let (ok, out) = vote(&alice, "reject", &mine_id);
    assert!(ok && out.contains("rejected"), "{out}");
    let (ok, out) = vote(&alice, "approve", &mine_id);
    assert!(!ok && out.contains("is rejected"), "{out}");
    // Nor rely on its own vote by asking another's request itself: demo
    // asks, `both` approves, then `both` asks the same request: SILENCE,
    // its vote not attached. The one that asked still gets its PERMIT.
    let theirs = s.decide(&to_acct_9(8000, "theirs-1"));
    let theirs_id = theirs.approval.unwrap()["id"].as_str().unwrap().to_string();
    let (ok, out) = vote(&both, "approve", &theirs_id);
    assert!(ok && out.contains("approved"), "{out}");
    let own = as_both(&to_acct_9(8000, "own-1"));
    assert_eq!(own["decision"], "SILENCE", "{own}");
    assert!(own["receipt"].as_str().unwrap().contains("\"derived\""));
    assert!(
        !own["receipt"].as_str().unwrap().contains("\"approvals\""),
        "its own vote was attached: {own}"
    );
    let asker = s.decide(&to_acct_9(8000, "theirs-2"));
    assert_eq!(asker.decision, Decision::Permit, "{}", asker.reason);
    assert_eq!(verify(&s, &asker).0.derived["approvals"][0]["by"], "both");
    // Replay of the PERMIT: the same decision from the recorded approvals.
    let (status, replay) = s.post(
        "/v1/replay",
        serde_json::to_string(&permitted).unwrap().as_bytes(),
    );
    assert_eq!(
        (status, replay["same"].clone()),
        (200, json!(true)),
        "{replay}"
    );
    s.audit();
}

/// An approve on one gate and a reject on the other at the same moment, 20
/// times: no vote is ever lost (each is a compare-and-swap of the shared
/// record, under the actor's lock across gates), so every request ends
/// rejected and the next ask on either gate is never PERMIT (before, one
/// vote was lost in 39 of 60 such rounds, and most ended PERMIT); the
/// shared log passes an audit.
#[test]
fn votes_racing_on_two_gates_are_never_lost() {
    let pg = testkit::Postgres::start();
    let (_da, _db, a, b) = two_gates(&pg.url);
    let alice = a.add_caller("alice", &["approve"], "agent-*");
    let bob = a.add_caller("bob", &["approve"], "agent-*");
    eventually("the other gate knows the approvers", || {
        vote_on(
            &b.url,
            &bob,
            "ap-00000000000000000000000000000000",
            "reject",
        ) == 404
    });
    for round in 0..20u64 {
        let asked = a.decide(&transfer(50_000 + round, &format!("race-{round}")));
        assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
        let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
        let (approved, rejected) = std::thread::scope(|scope| {
            let approve = scope.spawn(|| vote_on(&a.url, &alice, &id, "approve"));
            let reject = scope.spawn(|| vote_on(&b.url, &bob, &id, "reject"));
            (approve.join().unwrap(), reject.join().unwrap())
        });
        assert_eq!(rejected, 200, "round {round}: the reject always counts");
        assert!(
            approved == 200 || approved == 400,
            "round {round}: {approved}"
        );
        for (gate, key) in [(&a, "again-a"), (&b, "again-b")] {
            let again = gate.decide(&transfer(50_000 + round, &format!("race-{round}-{key}")));
            assert_ne!(
                again.decision,
                Decision::Permit,
                "round {round}: a lost reject"
            );
        }
    }
    a.audit();
}

/// One PERMIT, one execution, in the log: a tool's service redeems the
/// permit it serves; a second redemption (another replica, or a replay) is
/// 409 naming the first; only a PERMIT of the named surface can be
/// redeemed, only by a caller with `redeem`; every redemption is a signed
/// entry, and the audit checks that no permit was redeemed twice.
#[test]
fn a_permit_is_redeemed_once_and_the_log_shows_where() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let svc = std::fs::read_to_string(s.add_caller("payments-svc", &["redeem"], "none")).unwrap();
    let redeem = |token: &str, receipt_id: &str, body: Value| {
        response(
            ureq::post(&format!("{}/v1/permits/{receipt_id}/redeem", s.url))
                .set("authorization", &format!("Bearer {}", token.trim()))
                .send_string(&body.to_string()),
        )
    };
    let permit = s.decide(&transfer(500, "redeem-1"));
    assert_eq!(permit.decision, Decision::Permit);
    let size = s.checkpoint().size;
    let (status, first) = redeem(&svc, &permit.receipt_id, json!({"surface": "payments"}));
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["index"], size);
    assert_eq!(first["by"], "caller:payments-svc");
    // Again: refused, naming the first; nothing more in the log.
    let (status, again) = redeem(&svc, &permit.receipt_id, json!({"surface": "payments"}));
    assert_eq!(
        (status, again["error"].as_str()),
        (409, Some("permit_redeemed")),
        "{again}"
    );
    assert!(again["message"]
        .as_str()
        .unwrap()
        .contains(&format!("log entry {size}")));
    // A retry with the redeemer's own key is the same redemption.
    let other = s.decide(&transfer(500, "redeem-2"));
    let keyed = json!({"surface": "payments", "idempotency_key": "try-1"});
    let (_, made) = redeem(&svc, &other.receipt_id, keyed.clone());
    let (status, retried) = redeem(&svc, &other.receipt_id, keyed);
    assert_eq!((status, &retried), (200, &made));
    // Another surface, a DENY, an unknown receipt, a caller without the role.
    let third = s.decide(&transfer(500, "redeem-3"));
    let (status, e) = redeem(&svc, &third.receipt_id, json!({"surface": "deploy"}));
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("surface"),
        "{e}"
    );
    let denied = s.decide(&transfer(5_000_000, "redeem-4"));
    assert_eq!(denied.decision, Decision::Deny);
    let (status, e) = redeem(&svc, &denied.receipt_id, json!({"surface": "payments"}));
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("DENY"),
        "{e}"
    );
    let (status, _) = redeem(&svc, &"0".repeat(32), json!({"surface": "payments"}));
    assert_eq!(status, 404);
    let (status, _) = redeem(&s.demo(), &third.receipt_id, json!({"surface": "payments"}));
    assert_eq!(status, 403, "the demo caller lacks redeem");
    s.audit();
}

/// What a gate relies on is what the log says: an approval record changed
/// in the database by someone other than a gate (a vote added that names an
/// entry which is no approval of this request) lends nothing. Every ask
/// stays SILENCE, the record is counted as refused in `/metrics`, and the
/// log passes its audit.
#[test]
fn an_approval_record_the_log_does_not_back_lends_nothing() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_LOG_STORE", pg.url.as_str())]);
    let asked = s.decide(&transfer(50_000, "forged-0"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    // Someone with the database's password adds a vote by "alice" that
    // names entry 0 (the start-up's policy.publish).
    let mut db = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let key = [b"r".as_slice(), id.as_bytes()].concat();
    let row = db
        .query_one("SELECT value FROM tollgate_state WHERE key = $1", &[&key])
        .unwrap();
    let mut record: Value = serde_json::from_slice(&row.get::<_, Vec<u8>>(0)).unwrap();
    record["approvals"] = json!([{"by": "alice", "entry": 0, "at": "2026-12-07T00:00:00Z"}]);
    let forged = serde_json::to_vec(&record).unwrap();
    db.execute(
        "UPDATE tollgate_state SET value = $2 WHERE key = $1",
        &[&key, &forged],
    )
    .unwrap();
    // The gate learns the record (it follows the shared state every 250 ms)
    // and refuses it; no ask meanwhile is PERMIT.
    let mut n = 0;
    eventually("the forged record is refused", || {
        n += 1;
        let r = s.decide(&transfer(50_000, &format!("forged-{n}")));
        assert_eq!(
            r.decision,
            Decision::Silence,
            "a forged vote let a PERMIT through"
        );
        s.get_text("/metrics")
            .contains("tollgate_state_records_refused_total{kind=\"approval\"} 1")
    });
    s.audit();
}

/// What the log says decides which votes count, not the approval record:
/// someone with the database's password who erases a use or a rejection
/// from a record gets nothing from it. A used approval lets no second
/// PERMIT through, a rejected request's approval stays closed; each
/// rolled-back record is counted as refused, and the log passes its audit.
#[test]
fn approval_records_rolled_back_in_the_database_lend_nothing() {
    let pg = testkit::Postgres::start();
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_LOG_STORE", pg.url.as_str())]);
    let alice = s.add_caller("alice", &["approve"], "agent-*");
    let bob = s.add_caller("bob", &["approve"], "agent-*");
    let vote = |file: &Path, id: &str, verb: &str| {
        let token = std::fs::read_to_string(file).unwrap();
        let (status, body) = response(
            ureq::post(&format!("{}/v1/approvals/{id}", s.url))
                .set("authorization", &format!("Bearer {}", token.trim()))
                .send_string(&json!({ "vote": verb }).to_string()),
        );
        assert_eq!(status, 200, "{verb} {id}: {body}");
    };
    let mut db = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let mut roll_back = |id: &str, member: &str| {
        let key = [b"r".as_slice(), id.as_bytes()].concat();
        let row = db
            .query_one("SELECT value FROM tollgate_state WHERE key = $1", &[&key])
            .unwrap();
        let mut record: Value = serde_json::from_slice(&row.get::<_, Vec<u8>>(0)).unwrap();
        assert!(record.get(member).is_some(), "{member} in {record}");
        record.as_object_mut().unwrap().remove(member);
        let changed = serde_json::to_vec(&record).unwrap();
        db.execute(
            "UPDATE tollgate_state SET value = $2 WHERE key = $1",
            &[&key, &changed],
        )
        .unwrap();
    };
    let refused = || {
        let metrics = s.get_text("/metrics");
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("tollgate_state_records_refused_total{kind=\"approval\"} ")
            })
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let mut n = 0;
    let mut never_permit = |amount: u64| {
        n += 1;
        let r = s.decide(&transfer(amount, &format!("ask-{n}")));
        assert_ne!(
            r.decision,
            Decision::Permit,
            "a rolled-back record let a PERMIT through"
        );
    };

    // Used once, the use erased.
    let asked = s.decide(&transfer(50_000, "used-0"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    vote(&alice, &id, "approve");
    let used = s.decide(&transfer(50_000, "used-1"));
    assert_eq!(used.decision, Decision::Permit, "{}", used.reason);
    roll_back(&id, "used_by");
    eventually("the erased use is refused", || {
        never_permit(50_000);
        refused() >= 1
    });

    // Approved, then rejected, the rejection erased.
    let asked = s.decide(&transfer(60_000, "rejected-0"));
    assert_eq!(asked.decision, Decision::Silence, "{}", asked.reason);
    let id = asked.approval.unwrap()["id"].as_str().unwrap().to_string();
    vote(&alice, &id, "approve");
    vote(&bob, &id, "reject");
    let before = refused();
    roll_back(&id, "rejected");
    eventually("the erased rejection is refused", || {
        never_permit(60_000);
        refused() > before
    });
    s.audit();
}
