//! Crash test: the ledger runs in a child process appending under load and is
//! killed with SIGKILL at random moments, ten times. After each kill the log
//! is reopened: every acknowledged append must be there with a valid proof,
//! and every checkpoint ever returned must be consistent with the recovered tree.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledger::{Ledger, Options};
use note::KeyType;

const ORIGIN: &str = "bench.tollgate.invalid/log";

struct Ack {
    key: String,
    index: u64,
    size: u64,
    root: String,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut w = line.split(' ');
    (w.next()? == "ack").then_some(())?;
    let ack = Ack {
        key: w.next()?.to_string(),
        index: w.next()?.parse().ok()?,
        size: w.next()?.parse().ok()?,
        root: w.next()?.to_string(),
    };
    w.next().is_none().then_some(ack)
}

#[test]
fn sigkill_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let key_path = dir.path().join("log.key");
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("crash test seed {seed}");
    let mut acks: Vec<Ack> = Vec::new();
    let mut roots_by_size: BTreeMap<u64, String> = BTreeMap::new();
    for cycle in 0..10 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(100 + seed % 700);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-load"))
            .args([
                "crash-child",
                "--appenders",
                "8",
                "--prefix",
                &format!("c{cycle}"),
            ])
            .arg("--dir")
            .arg(&data)
            .arg("--key")
            .arg(&key_path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Read acknowledgements on a thread; once the child is up (recovery
        // can take a while after a kill), kill it at a random moment under load.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let ready = rx.recv_timeout(Duration::from_secs(120));
        assert!(
            ready.as_deref().is_ok_and(|l| l.starts_with("ready")),
            "cycle {cycle}: child did not start: {ready:?}"
        );
        let start = Instant::now();
        while start.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines: Vec<String> = rx.into_iter().collect();
        // A line cut by the kill does not parse and is not an acknowledgement.
        let new: Vec<Ack> = lines.iter().filter_map(|l| parse_ack(l)).collect();
        eprintln!(
            "cycle {cycle}: killed after {run_for:?}, {} acknowledged",
            new.len()
        );
        for a in &new {
            if let Some(r) = roots_by_size.insert(a.size, a.root.clone()) {
                assert_eq!(r, a.root, "two roots returned for size {}", a.size);
            }
        }
        acks.extend(new);

        // Reopen, as the next start would, and check everything acknowledged so far.
        let (key, _) =
            ledger::keyfile::load_or_generate(&key_path, ORIGIN, KeyType::Ed25519).unwrap();
        let ledger = Ledger::open(&data, key, Options::default()).unwrap();
        let n = ledger.latest().checkpoint.size;
        let root = ledger.latest().checkpoint.root;
        for a in &acks {
            assert!(
                a.index < n && a.size <= n,
                "acknowledged index {} lost (size {n})",
                a.index
            );
            let leaf = format!("leaf:{}", a.key).into_bytes();
            assert_eq!(ledger.entry(a.index).unwrap(), leaf);
            let proof = ledger.inclusion_proof(a.index, n).unwrap();
            tlog::verify_inclusion(&tlog::leaf_hash(&leaf), a.index, n, &proof, &root).unwrap();
        }
        for (&size, r) in &roots_by_size {
            let old_root = ledger.tree_hash(size).unwrap();
            assert_eq!(
                format!("{old_root:?}"),
                *r,
                "checkpoint of size {size} differs from the recovered tree"
            );
            let proof = ledger.consistency_proof(size, n).unwrap();
            tlog::verify_consistency(size, n, &old_root, &root, &proof).unwrap();
        }
    }
    assert!(
        acks.len() > 100,
        "the children acknowledged only {} appends",
        acks.len()
    );
    let (key, _) = ledger::keyfile::load_or_generate(&key_path, ORIGIN, KeyType::Ed25519).unwrap();
    let ledger = Ledger::open(&data, key, Options::default()).unwrap();
    let entries = common::check_whole_log(&ledger);
    // No duplicates: each key's leaf is in the log at most once.
    let mut sorted = entries.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), entries.len());
}
