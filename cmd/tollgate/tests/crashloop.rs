//! Crash loop of the real gate: `tollgate serve` on one data directory is
//! SIGKILLed under load from concurrent clients, again and again
//! (`CRASHLOOP_CYCLES`, default 3; `make crashloop` runs 20). Afterwards:
//! every acknowledged decision is in the log with its receipt and index,
//! every checkpoint any answer carried is consistent with the recovered tree,
//! retries of acknowledged and of unanswered requests get the original
//! receipt (or, for a request that never committed, a first one), and
//! `proofcheck audit` verifies the whole log.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use note::{Policy, ProofBundle};
use protocol::{verify_receipt, DecisionResponse};
use testkit::Proc;

mod common;
use common::intent;
use testkit::{consistent, decide};

const CLIENTS: usize = 8;

fn start(data: &Path) -> Proc {
    Proc::start(testkit::tollgate_serve(data), testkit::TOLLGATE_READY, 0)
}

/// A small deterministic generator (no dependency): xorshift.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let cycles: u32 = std::env::var("CRASHLOOP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acknowledged: Arc<Mutex<BTreeMap<String, DecisionResponse>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<String>>> = Arc::default();
    let checkpoints: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    for cycle in 0..cycles {
        let gate = start(&data);
        let token = std::fs::read_to_string(data.join("demo.token"))
            .unwrap()
            .trim()
            .to_string();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Last cycle's unanswered requests are retried first.
        let retries = std::mem::take(&mut *unanswered.lock().unwrap());
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (url, token, stop) = (gate.url.clone(), token.clone(), stop.clone());
                let (ack, lost, cps) = (
                    acknowledged.clone(),
                    unanswered.clone(),
                    checkpoints.clone(),
                );
                let mine: Vec<String> = retries.iter().skip(c).step_by(CLIENTS).cloned().collect();
                std::thread::spawn(move || {
                    let fresh = (0..).map(|i| format!("c{cycle}-{c}-{i}"));
                    for key in mine.into_iter().chain(fresh) {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            lost.lock().unwrap().push(key);
                            return;
                        }
                        match decide(&url, &token, &intent(&key)) {
                            Ok(r) => {
                                let proof = ProofBundle::parse(&r.proof).unwrap();
                                cps.lock().unwrap().push(proof.checkpoint.clone());
                                ack.lock().unwrap().insert(key, r);
                            }
                            Err(None) => {
                                lost.lock().unwrap().push(key);
                                return;
                            }
                            Err(Some(code)) => panic!("{key}: {code}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200 + next(&mut rng) % 600));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        drop(gate); // SIGKILL
        for c in clients {
            c.join().unwrap();
        }
    }

    // Recovery: one more start, then check everything against it.
    let gate = start(&data);
    let token = std::fs::read_to_string(data.join("demo.token"))
        .unwrap()
        .trim()
        .to_string();
    let log_key = testkit::verifier_of(&data.join("log.skey"));
    let gate_key = testkit::verifier_of(&data.join("gate.skey"));
    let policy = Policy::for_log(log_key.clone());
    let latest = ureq::get(&format!("{}/log/checkpoint", gate.url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let (tree, _) = policy.verify_checkpoint(latest.as_bytes()).unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    assert!(!acknowledged.is_empty());
    let started = Instant::now();
    let mut indexes = std::collections::BTreeSet::new();
    for (key, r) in acknowledged.iter() {
        // Present, at the same index, with the same receipt; a retry gets it again.
        let again = decide(&gate.url, &token, &intent(key)).expect("a retry is answered");
        assert!(again.replayed, "{key}");
        assert_eq!(again.receipt, r.receipt, "{key}");
        assert_eq!(again.log_index, r.log_index, "{key}");
        verify_receipt(r.receipt.as_bytes(), &gate_key).unwrap();
        let proof = ProofBundle::parse(&again.proof).unwrap();
        proof
            .verify(&tlog::leaf_hash(again.receipt.as_bytes()), &policy)
            .unwrap();
        assert!(indexes.insert(r.log_index), "index {} twice", r.log_index);
    }
    // Requests whose answer was lost: each is in the log at most once, and
    // a retry now answers (the original receipt if it had committed).
    for key in unanswered.lock().unwrap().iter() {
        let r = decide(&gate.url, &token, &intent(key)).expect("answered");
        assert!(
            indexes.insert(r.log_index),
            "{key}: index {} twice",
            r.log_index
        );
    }
    // Every checkpoint ever returned is consistent with the recovered tree.
    let checkpoints = checkpoints.lock().unwrap();
    let mut sizes = BTreeMap::new();
    for text in checkpoints.iter() {
        let (cp, _) = policy.verify_checkpoint(text.as_bytes()).unwrap();
        sizes.insert(cp.size, cp);
    }
    for (size, cp) in &sizes {
        assert!(
            *size <= tree.size,
            "served size {size} above the recovered {}",
            tree.size
        );
        consistent(&gate.url, cp, &tree);
    }
    eprintln!(
        "crashloop: {cycles} SIGKILLs, {} acknowledged decisions and {} retried unanswered ones \
         checked, {} distinct checkpoints consistent with the recovered size {} ({:.1} s)",
        acknowledged.len(),
        unanswered.lock().unwrap().len(),
        sizes.len(),
        tree.size,
        started.elapsed().as_secs_f64()
    );
    // The whole log, entry by entry, by the auditors' tool.
    testkit::audit(&gate.url, &data, &dir.path().join("audit.json"));
}
