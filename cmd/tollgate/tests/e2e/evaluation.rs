//! Evaluation bounded: runaway, slow and memory-hungry policies are SILENCE at their limits and
//! never stall the gate; time in a policy is the bound decision time, in UTC.

use super::*;

#[test]
fn a_runaway_policy_is_stopped_at_the_configured_limit_and_is_silence() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_TIMEOUT_MS", "20")]);
    activate_runaway(&s, 3000);
    // The gate's limit, not the engine's default of 50 ms.
    stopped_at(&s, &["r1", "r2"], "limit=20000000ns");
    s.stop();
}

/// Decisions under the active runaway policy, one per key: each SILENCE,
/// its reason naming `limit`, its receipt verified.
fn stopped_at(s: &Server, keys: &[&str], limit: &str) {
    for key in keys {
        let r = s.decide(&intent(
            "agent-treasury",
            "payments",
            "transfer",
            json!({}),
            key,
        ));
        assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
        assert!(r.reason.contains(limit), "{}", r.reason);
        verify(s, &r);
    }
}

/// Rego's "Local" time zone is UTC in the gate whatever the machine's
/// (`TZ` here says Tokyo), so a decision never depends on where it was made
/// or replayed.
#[test]
fn local_time_in_a_policy_is_utc_on_every_machine() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TZ", "JST-9")]);
    let bundle = rego_bundle(
        &s,
        "tz",
        "package tz\nimport rego.v1\ndefault decision := \"deny\"\ndecision := \"permit\" if {\n  t := input.derived.decided_at_ns\n  time.clock([t, \"Local\"]) == time.clock([t, \"UTC\"])\n}\n",
    );
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let r = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "tz",
    ));
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
}

/// A policy that runs to its time limit occupies an evaluation thread, not
/// a thread serving HTTP: with more slow evaluations in flight than the
/// machine has cores, `/healthz`, checkpoints and metrics are answered
/// before any of them ends.
#[test]
fn a_slow_policy_stalls_neither_healthz_nor_reads() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "2000"),
            ("TOLLGATE_EVAL_THREADS", "1"),
        ],
    );
    activate_runaway(&s, 20_000);
    let s = std::sync::Arc::new(s);
    let slow: Vec<_> = (0..4)
        .map(|i| {
            let s = s.clone();
            std::thread::spawn(move || {
                let r = s.decide(&intent(
                    "agent-treasury",
                    "payments",
                    "transfer",
                    json!({}),
                    &format!("slow-{i}"),
                ));
                (r, std::time::Instant::now())
            })
        })
        .collect();
    wait_for_metric(&s, "tollgate_decisions_pending", 4);
    for _ in 0..10 {
        assert_eq!(s.get_text("/healthz"), "ok\n");
        s.checkpoint();
        assert!(s
            .get_text("/metrics")
            .contains("tollgate_decisions_pending 4"));
    }
    let reads_done = std::time::Instant::now();
    for t in slow {
        let (r, answered) = t.join().unwrap();
        assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
        assert!(r.reason.contains("limit=2000000000ns"), "{}", r.reason);
        assert!(reads_done < answered, "a read waited for a slow evaluation");
    }
    // The policy refers to no amplifying builtin: it ran in the gate, on
    // its one evaluation thread, and no worker process was started.
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 0"),
        "{metrics}"
    );
}

/// The same slow policy under `eval_isolation = "process"`: it runs in one
/// evaluation process (`eval_threads` = 1), which the time limit (regorus's
/// own timer) ends each time without stopping the process.
#[test]
fn under_process_isolation_a_slow_policy_runs_in_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "200"),
            ("TOLLGATE_EVAL_THREADS", "1"),
            ("TOLLGATE_EVAL_ISOLATION", "process"),
        ],
    );
    activate_runaway(&s, 20_000);
    stopped_at(&s, &["p1", "p2"], "limit=200000000ns");
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 1"),
        "{metrics}"
    );
    s.stop();
}

/// A gate whose Rego evaluates in it under a small heap limit: one
/// evaluation thread of `eval_memory_mb = 16`, no hash cache, 16 pending
/// decisions, so the limit is the heap at start + 16 MiB + 64 MiB (the
/// gate's allowance) + 16 × 64 KiB; a 10 s time limit, so only the heap
/// limit stops an evaluation in these tests.
fn heap_limited_gate(dir: &Path) -> Server {
    Server::start_with_env(
        dir,
        &[
            ("TOLLGATE_EVAL_MEMORY_MB", "16"),
            ("TOLLGATE_EVAL_THREADS", "1"),
            ("TOLLGATE_EVAL_TIMEOUT_MS", "10000"),
            ("TOLLGATE_HASH_CACHE_MB", "0"),
            ("TOLLGATE_MAX_PENDING_DECISIONS", "16"),
        ],
    )
}

/// A transfer decided with `context.n = n` (how large the growing policies
/// of these tests grow).
fn decide_with_n(s: &Server, n: u64, key: &str) -> DecisionResponse {
    let mut i = intent("agent-treasury", "payments", "transfer", json!({}), key);
    i["context"] = json!({ "n": n });
    s.decide(&i)
}

/// `r` is a logged SILENCE that names the heap limit and its setting.
fn stopped_at_the_heap_limit(s: &Server, r: &DecisionResponse) {
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    assert!(
        r.reason.contains("past the evaluation memory limit"),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("eval_memory_mb"), "{}", r.reason);
    verify(s, r);
}

/// A policy that refers to no amplifying builtin evaluates in the gate, and
/// one that grows a value step by step (here a set of pairs, as large as
/// the request asks) is stopped at the gate's heap limit — `eval_threads` ×
/// `eval_memory_mb` above the heap at start and the gate's own allowance —
/// long before its time limit:
/// SILENCE naming the limit, the gate's memory stays small, and the next
/// decision is decided.
#[test]
fn a_policy_growing_in_the_gate_is_stopped_at_the_heap_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = heap_limited_gate(dir.path());
    activate_rego(
        &s,
        "grower",
        "count({[i, j] | some i in numbers.range(1, input.context.n); some j in numbers.range(1, 1000)}) > 0",
    );
    let at = |n: u64, key: &str| decide_with_n(&s, n, key);
    let started = std::time::Instant::now();
    stopped_at_the_heap_limit(&s, &at(1_000_000, "large"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let r = at(2, "small");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    verify(&s, &r);
    let peak = peak_rss_mb(s.proc.id());
    eprintln!("gate peak RSS {peak} MiB");
    assert!(peak < 256, "the gate's peak RSS is {peak} MiB");
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 0"),
        "{metrics}"
    );
    assert!(children(s.proc.id()).is_empty());
    s.audit();
    s.stop();
}

/// A policy with large data, activated after the gate set its heap limit:
/// the limit rises by what the compiled policy holds, so the bundle loads
/// in the gate (regorus checks the limit while it loads data) and its
/// decisions keep the evaluations' room — a small one is PERMIT, one that
/// grows past `eval_memory_mb` is still stopped at the limit.
#[test]
fn a_policy_with_large_data_activated_later_keeps_the_evaluations_room() {
    let dir = tempfile::tempdir().unwrap();
    let s = heap_limited_gate(dir.path());
    let bundle = rego_bundle(
        &s,
        "large",
        "package large\nimport rego.v1\ndecision := \"permit\" if {\n  count(data.blob) > 0\n  count({[i, j] | some i in numbers.range(1, input.context.n); some j in numbers.range(1, 1000)}) > 0\n}\n",
    );
    // 13 MB of short strings: ~84 MiB in regorus's memory, more than the
    // 81 MiB of room the limit had at start.
    let blob: Vec<String> = (0..1_600_000).map(|i| format!("{i:x}")).collect();
    std::fs::write(
        bundle.join("data.json"),
        serde_json::to_vec(&json!({ "blob": blob })).unwrap(),
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(ok, "{out}");
    let at = |n: u64, key: &str| decide_with_n(&s, n, key);
    let r = at(2, "small");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    verify(&s, &r);
    stopped_at_the_heap_limit(&s, &at(1_000_000, "large"));
    let r = at(3, "small-again");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 0"),
        "{metrics}"
    );
    s.audit();
    s.stop();
}

/// One builtin call can build a large value from a short policy: a format
/// width of 500,000,000 asks `sprintf` for half a gigabyte at once, which
/// no timer interrupts. Rego evaluates in a process capped at
/// `eval_memory_mb`: the decision is SILENCE naming the cap, the gate's own
/// memory stays small, and the next decision gets a new process.
#[test]
fn a_policy_past_eval_memory_mb_is_silence_and_the_gate_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_MEMORY_MB", "64")]);
    activate_rego(
        &s,
        "amplifier",
        "count(sprintf(concat(\"\", [\"%0\", format_int(input.context.width, 10), \"d\"]), [7])) > 0",
    );
    let at = |width: u64, key: &str| {
        let mut i = intent("agent-treasury", "payments", "transfer", json!({}), key);
        i["context"] = json!({ "width": width });
        s.decide(&i)
    };
    let r = at(500_000_000, "wide");
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    assert!(r.reason.contains("eval_memory_mb (64 MiB)"), "{}", r.reason);
    verify(&s, &r);
    let r = at(10, "narrow");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    verify(&s, &r);
    let peak = peak_rss_mb(s.proc.id());
    eprintln!("gate peak RSS {peak} MiB");
    assert!(peak < 256, "the gate's peak RSS is {peak} MiB");
    // An idle evaluation process killed from outside is replaced; the
    // next decision does not pay for it.
    let workers = children(s.proc.id());
    assert_eq!(workers.len(), 1, "{workers:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(workers[0]).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let r = at(11, "after-kill");
    assert_eq!(r.decision, Decision::Permit, "{}", r.reason);
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_processes_started_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tollgate_eval_process_failures_total{cause=\"memory\"} 1"),
        "{metrics}"
    );
    s.audit();
    s.stop();
}

/// Under `eval_isolation = "process"`, a Rego policy that compiles in the
/// gate but not within `eval_memory_mb` (here: 6 MB of data) would make every
/// decision SILENCE; activation refuses it, naming the cause, and the active
/// policy stays.
#[test]
fn activation_refuses_a_policy_that_does_not_load_within_eval_memory_mb() {
    let dir = tempfile::tempdir().unwrap();
    let isolated = [
        ("TOLLGATE_EVAL_MEMORY_MB", "16"),
        ("TOLLGATE_EVAL_ISOLATION", "process"),
    ];
    let s = Server::start_with_env(dir.path(), &isolated);
    let before = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "before",
    ));
    let bundle = rego_bundle(
        &s,
        "big",
        "package big\nimport rego.v1\ndecision := \"permit\" if count(data.rows) > 0\n",
    );
    let rows: Vec<_> = (0..100_000)
        .map(|i| json!({ "id": i, "name": format!("row-{i}") }))
        .collect();
    std::fs::write(
        bundle.join("data.json"),
        json!({ "rows": rows }).to_string(),
    )
    .unwrap();
    let (ok, out) = s.tollgate(&["policy", "publish", bundle.to_str().unwrap(), "--activate"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("does not load in an evaluation process"),
        "{out}"
    );
    assert!(out.contains("eval_memory_mb (16 MiB)"), "{out}");
    let after = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "after",
    ));
    assert_eq!(after.decision, before.decision, "{}", after.reason);
    assert_eq!(after.policy_version, before.policy_version);
    s.stop();
    // Active in a gate that evaluates in its own process, the same policy
    // stops a restart under the cap from serving, with the cause.
    let s = Server::start_with_env(dir.path(), &[("TOLLGATE_EVAL_MEMORY_MB", "0")]);
    let version = policy::Bundle::from_dir(&bundle).unwrap().version();
    let (ok, out) = s.tollgate(&["policy", "activate", &version]);
    assert!(ok, "{out}");
    s.stop();
    let out = testkit::tollgate_serve(&dir.path().join("data"))
        .envs(isolated)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("raise eval_memory_mb"), "{stderr}");
    assert!(stderr.contains("eval_memory_mb (16 MiB)"), "{stderr}");
}

/// A single builtin call runs to its end before regorus checks its timer;
/// the gate stops the evaluation process at the time limit instead.
#[test]
fn one_long_builtin_call_is_stopped_at_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_with_env(
        dir.path(),
        &[
            ("TOLLGATE_EVAL_TIMEOUT_MS", "20"),
            ("TOLLGATE_EVAL_MEMORY_MB", "16384"),
        ],
    );
    // Padding half a gigabyte a character at a time takes seconds.
    activate_rego(&s, "onecall", "count(sprintf(\"%0500000000d\", [7])) > 0");
    let started = std::time::Instant::now();
    let r = s.decide(&intent(
        "agent-treasury",
        "payments",
        "transfer",
        json!({}),
        "long",
    ));
    assert_eq!(r.decision, Decision::Silence, "{}", r.reason);
    assert!(
        r.reason.contains("did not answer within 120 ms"),
        "{}",
        r.reason
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    verify(&s, &r);
    let metrics = s.get_text("/metrics");
    assert!(
        metrics.contains("tollgate_eval_process_failures_total{cause=\"time\"} 1"),
        "{metrics}"
    );
    s.stop();
}
