//! Three gates on one PostgreSQL log (a throwaway cluster), clients spread
//! over them, under load: one gate is SIGKILLed and started again, and
//! PostgreSQL itself is restarted. Afterwards every acknowledged decision
//! is in the log with its receipt and index, and a retry sent to another
//! gate gets the original receipt; every request left unanswered (a dead
//! gate, a 503 while the database was away) is answered once on a retry;
//! every checkpoint any gate returned is consistent with the final tree;
//! and `proofcheck audit` verifies the whole log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use note::{Checkpoint, Policy, ProofBundle};
use protocol::{verify_receipt, DecisionResponse};
use serde_json::Value;
use testkit::Proc;

mod common;
use common::intent;
use testkit::{consistent, decide};

const GATES: usize = 3;
const CLIENTS: usize = 6;

fn start(data: &Path, log_store: &str) -> Proc {
    let mut cmd = testkit::tollgate_serve(data);
    cmd.env("TOLLGATE_LOG_STORE", log_store);
    Proc::start(cmd, testkit::TOLLGATE_READY, 0)
}

/// A retry as the SDKs make it: again on 503, up to a few seconds.
fn decide_retrying(url: &str, token: &str, body: &Value) -> DecisionResponse {
    for _ in 0..50 {
        match decide(url, token, body) {
            Ok(r) => return r,
            Err(Some(503)) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{body}: {e:?}"),
        }
    }
    panic!("{body}: still 503")
}

/// The gates' data directories: the first made by the first start, the
/// others with its keys, origin and tokens (one log, one configuration).
fn data_dirs(root: &Path, pg: &str) -> (Vec<PathBuf>, Proc) {
    let dirs: Vec<PathBuf> = (0..GATES).map(|i| root.join(format!("gate{i}"))).collect();
    let first = start(&dirs[0], pg);
    for d in &dirs[1..] {
        testkit::copy_gate_identity(&dirs[0], d).unwrap();
    }
    (dirs, first)
}

#[test]
fn three_gates_survive_a_sigkill_and_a_database_restart() {
    let mut pg = testkit::Postgres::start();
    let root = tempfile::tempdir().unwrap();
    let (dirs, first) = data_dirs(root.path(), &pg.url);
    let token = std::fs::read_to_string(dirs[0].join("demo.token"))
        .unwrap()
        .trim()
        .to_string();
    let mut gates: Vec<Option<Proc>> = vec![Some(first)];
    for d in &dirs[1..] {
        gates.push(Some(start(d, &pg.url)));
    }
    // The gates' URLs, `None` while one is down.
    let urls: Arc<RwLock<Vec<Option<String>>>> = Arc::new(RwLock::new(
        gates
            .iter()
            .map(|g| g.as_ref().map(|p| p.url.clone()))
            .collect(),
    ));
    // Key → (the gate that answered, the answer).
    let acknowledged: Arc<Mutex<BTreeMap<String, (usize, DecisionResponse)>>> = Arc::default();
    let unanswered: Arc<Mutex<Vec<String>>> = Arc::default();
    let checkpoints: Arc<Mutex<Vec<String>>> = Arc::default();
    let unavailable = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (urls, token, stop) = (urls.clone(), token.clone(), stop.clone());
            let (ack, lost, cps, unavailable) = (
                acknowledged.clone(),
                unanswered.clone(),
                checkpoints.clone(),
                unavailable.clone(),
            );
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("c{c}-{i}");
                    let g = (c + i) % GATES;
                    let Some(url) = urls.read().unwrap()[g].clone() else {
                        continue;
                    };
                    match decide(&url, &token, &intent(&key)) {
                        Ok(r) => {
                            let proof = ProofBundle::parse(&r.proof).unwrap();
                            cps.lock().unwrap().push(proof.checkpoint.clone());
                            ack.lock().unwrap().insert(key, (g, r));
                        }
                        Err(Some(503)) => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            lost.lock().unwrap().push(key);
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(None) => lost.lock().unwrap().push(key),
                        Err(Some(code)) => panic!("{key} on gate {g}: {code}"),
                    }
                }
            })
        })
        .collect();
    let count = |m: &Mutex<BTreeMap<String, (usize, DecisionResponse)>>| m.lock().unwrap().len();
    let phase = |what: &str| {
        std::thread::sleep(Duration::from_millis(1500));
        eprintln!("{what}: {} acknowledged", count(&acknowledged));
    };
    phase("three gates");
    // SIGKILL gate 1 under load.
    urls.write().unwrap()[1] = None;
    drop(gates[1].take());
    phase("gate 1 killed");
    // Restart the database under load (fast shutdown: sessions cut).
    pg.restart();
    phase("database restarted");
    let again = start(&dirs[1], &pg.url);
    urls.write().unwrap()[1] = Some(again.url.clone());
    gates[1] = Some(again);
    phase("gate 1 back");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let urls: Vec<String> = urls.read().unwrap().iter().flatten().cloned().collect();
    assert_eq!(urls.len(), GATES);

    // The gates agree on one tree.
    let log_key = testkit::verifier_of(&dirs[0].join("log.skey"));
    let gate_key = testkit::verifier_of(&dirs[0].join("gate.skey"));
    let policy = Policy::for_log(log_key);
    let latest = |url: &str| {
        let text = ureq::get(&format!("{url}/log/checkpoint"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        policy.verify_checkpoint(text.as_bytes()).unwrap().0
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let tree = loop {
        let trees: Vec<Checkpoint> = urls.iter().map(|u| latest(u)).collect();
        if trees.iter().all(|t| t.size == trees[0].size) {
            assert!(trees.iter().all(|t| t.root == trees[0].root));
            break trees[0].clone();
        }
        assert!(Instant::now() < deadline, "the gates never agreed");
        std::thread::sleep(Duration::from_millis(100));
    };

    // Every acknowledged decision: on another gate, the original receipt
    // at the same index, with a proof that verifies.
    let acknowledged = acknowledged.lock().unwrap();
    assert!(acknowledged.len() > 100, "{}", acknowledged.len());
    let mut indexes = BTreeSet::new();
    for (key, (g, r)) in acknowledged.iter() {
        let other = &urls[(g + 1) % GATES];
        let again = decide_retrying(other, &token, &intent(key));
        assert!(again.replayed, "{key}");
        assert_eq!(again.receipt, r.receipt, "{key}");
        assert_eq!(again.log_index, r.log_index, "{key}");
        verify_receipt(r.receipt.as_bytes(), &gate_key).unwrap();
        ProofBundle::parse(&again.proof)
            .unwrap()
            .verify(&tlog::leaf_hash(again.receipt.as_bytes()), &policy)
            .unwrap();
        assert!(indexes.insert(r.log_index), "index {} twice", r.log_index);
    }
    // Unanswered requests: each answered once now, on its own index.
    let unanswered = unanswered.lock().unwrap();
    for (n, key) in unanswered.iter().enumerate() {
        let r = decide_retrying(&urls[n % GATES], &token, &intent(key));
        assert!(
            indexes.insert(r.log_index),
            "{key}: index {} twice",
            r.log_index
        );
    }
    // Every checkpoint any gate returned is consistent with the final tree.
    let mut sizes = BTreeMap::new();
    for text in checkpoints.lock().unwrap().iter() {
        let (cp, _) = policy.verify_checkpoint(text.as_bytes()).unwrap();
        sizes.insert(cp.size, cp);
    }
    for cp in sizes.values() {
        assert!(cp.size <= tree.size);
        consistent(&urls[cp.size as usize % GATES], cp, &tree);
    }
    eprintln!(
        "shared log: {} acknowledged decisions checked on another gate, {} unanswered \
         (of which {} were 503) retried, {} distinct checkpoints consistent with size {}",
        acknowledged.len(),
        unanswered.len(),
        unavailable.load(Ordering::Relaxed),
        sizes.len(),
        tree.size
    );
    testkit::audit(&urls[2], &dirs[2], &root.path().join("audit.json"));
}
