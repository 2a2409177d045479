//! The ledger against a real RocksDB directory, with real signatures.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{append_from_threads, check_appended, check_whole_log, leaf, verified};
use ledger::faults::Faults;
use ledger::{Error, Ledger, Options};
use note::{KeyType, SignerKey};

const ORIGIN: &str = "test.tollgate.invalid/log";

fn key() -> SignerKey {
    SignerKey::generate(ORIGIN, KeyType::Ed25519).unwrap()
}

fn opts(batch_max: usize) -> Options {
    Options {
        batch_max,
        batch_wait: Duration::from_micros(300),
        // Smaller than most logs here, so proofs read both memory and RocksDB.
        recent_hashes: 1000,
    }
}

#[test]
fn concurrent_appenders_get_gapless_indexes_and_verifiable_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), key(), opts(32)).unwrap();
    let results = append_from_threads(&[&ledger], 16, 150, "t");
    let n = results.len() as u64;
    assert_eq!(ledger.latest().checkpoint.size, n);
    let mut indexes: Vec<u64> = results.iter().map(|(_, a)| a.index).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..n).collect::<Vec<_>>(),
        "no gaps, no duplicates"
    );
    assert!(
        results.iter().any(|(_, a)| a.batch_len > 1),
        "group commit batched something"
    );
    let key = ledger.verifier().clone();
    let mut checkpoints = BTreeMap::new();
    for (k, a) in &results {
        assert!(!a.duplicate);
        check_appended(a, &leaf(k), &key);
        assert_eq!(ledger.entry(a.index).unwrap(), leaf(k));
        checkpoints.insert(a.checkpoint.checkpoint.size, verified(&a.checkpoint, &key));
    }
    // Every checkpoint is consistent with every later one, and stored by size.
    let cps: Vec<_> = checkpoints.values().collect();
    for (i, old) in cps.iter().enumerate() {
        assert_eq!(
            ledger.checkpoint(old.size).unwrap().as_deref(),
            Some(
                results
                    .iter()
                    .find(|(_, a)| a.checkpoint.checkpoint.size == old.size)
                    .unwrap()
                    .1
                    .checkpoint
                    .note
                    .as_str()
            )
        );
        for new in &cps[i + 1..] {
            let proof = ledger.consistency_proof(old.size, new.size).unwrap();
            tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).unwrap();
        }
    }
    check_whole_log(&ledger);
    assert!(matches!(
        ledger.inclusion_proof(0, n + 1),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(ledger.entry(n), Err(Error::NotFound(_))));
}

#[test]
fn idempotency_holds_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let first = {
        let ledger = Ledger::open(dir.path(), k.clone(), opts(8)).unwrap();
        ledger
            .append_blocking(b"x".to_vec(), b"warm-up".to_vec())
            .unwrap();
        let a = ledger
            .append_blocking(leaf("a"), b"key-a".to_vec())
            .unwrap();
        let again = ledger
            .append_blocking(leaf("a"), b"key-a".to_vec())
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.index, a.index);
        check_appended(&again, &leaf("a"), ledger.verifier());
        assert!(matches!(
            ledger.append_blocking(leaf("b"), b"key-a".to_vec()),
            Err(Error::Conflict { index }) if index == a.index
        ));
        assert_eq!(ledger.latest().checkpoint.size, 2);
        a.index
    };
    let ledger = Ledger::open(dir.path(), k, opts(8)).unwrap();
    assert_eq!(ledger.latest().checkpoint.size, 2);
    let again = ledger
        .append_blocking(leaf("a"), b"key-a".to_vec())
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.index, first);
    assert!(matches!(
        ledger.append_blocking(leaf("b"), b"key-a".to_vec()),
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        ledger.latest().checkpoint.size,
        2,
        "duplicates and conflicts add nothing"
    );
    // Within one batch: the second use of a key is a duplicate of the first.
    let (x, y) = std::thread::scope(|s| {
        let a = s.spawn(|| ledger.append_blocking(leaf("c"), b"key-c".to_vec()));
        let b = s.spawn(|| ledger.append_blocking(leaf("c"), b"key-c".to_vec()));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_eq!(x.index, y.index);
    assert_eq!(ledger.latest().checkpoint.size, 3);
    check_whole_log(&ledger);
}

#[test]
fn invalid_appends_are_refused_before_sequencing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), key(), opts(8)).unwrap();
    assert!(matches!(
        ledger.append_blocking(vec![], b"k".to_vec()),
        Err(Error::InvalidAppend(_))
    ));
    assert!(matches!(
        ledger.append_blocking(vec![0; 65_536], b"k".to_vec()),
        Err(Error::InvalidAppend(_))
    ));
    assert!(matches!(
        ledger.append_blocking(vec![1], vec![]),
        Err(Error::InvalidAppend(_))
    ));
    assert!(matches!(
        ledger.append_blocking(vec![1], vec![0; 1025]),
        Err(Error::InvalidAppend(_))
    ));
    let a = ledger
        .append_blocking(vec![7; 65_535], b"k".to_vec())
        .unwrap();
    check_appended(&a, &[7; 65_535], ledger.verifier());
    assert_eq!(ledger.latest().checkpoint.size, 1);
}

#[test]
fn a_failed_write_fails_only_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let fail_once = Arc::new(AtomicBool::new(false));
    let trigger = fail_once.clone();
    let options = Options {
        batch_max: 16,
        batch_wait: Duration::from_millis(2),
        recent_hashes: 1000,
    };
    let faults = Faults {
        write: Some(Arc::new(move |_, _| {
            trigger
                .swap(false, Ordering::SeqCst)
                .then(|| "disk on fire".to_string())
        })),
        ..Faults::default()
    };
    let ledger = Ledger::open_with_faults(dir.path(), key(), options, faults).unwrap();
    for i in 0..20 {
        ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
    }
    fail_once.store(true, Ordering::SeqCst);
    let outcomes: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (20..28)
            .map(|i| {
                let ledger = &ledger;
                s.spawn(move || {
                    ledger.append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o, Err(Error::NotCommitted(_))))
        .count();
    assert!(
        failed >= 1,
        "the injected failure failed at least its own batch"
    );
    assert!(outcomes
        .iter()
        .all(|o| o.is_ok() || matches!(o, Err(Error::NotCommitted(_)))));
    let committed = outcomes.iter().filter(|o| o.is_ok()).count() as u64;
    assert_eq!(ledger.latest().checkpoint.size, 20 + committed);
    // The sequencer continues, and the failed appends can be retried with
    // their keys; once a write succeeds the log is writable again.
    for i in 20..28 {
        let a = ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
        check_appended(&a, &leaf(&i.to_string()), ledger.verifier());
    }
    assert_eq!(ledger.latest().checkpoint.size, 28);
    ledger.writable().unwrap();
    let entries = check_whole_log(&ledger);
    let mut got: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8(e.clone()).unwrap())
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..28)
        .map(|i| String::from_utf8(leaf(&i.to_string())).unwrap())
        .collect();
    want.sort();
    assert_eq!(got, want, "every key exactly once");
}

/// The sequencer prepares the next batch on top of the one being written.
/// When that write fails, the batch prepared on it is prepared again on the
/// recovered state: only the failed batch's callers see the failure.
#[test]
fn a_failed_write_does_not_fail_the_batch_prepared_on_top_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let failed_len = Arc::new(AtomicUsize::new(0));
    let (trigger, record) = (armed.clone(), failed_len.clone());
    let options = Options {
        batch_max: 4,
        batch_wait: Duration::from_millis(1),
        recent_hashes: 1000,
    };
    let faults = Faults {
        write: Some(Arc::new(move |_, n| {
            if !trigger.swap(false, Ordering::SeqCst) {
                return None;
            }
            // Long enough for the other appenders' batches to be prepared on
            // top of this one before it fails.
            std::thread::sleep(Duration::from_millis(300));
            record.store(n, Ordering::SeqCst);
            Some("disk on fire".to_string())
        })),
        ..Faults::default()
    };
    let ledger = Ledger::open_with_faults(dir.path(), key(), options, faults).unwrap();
    for i in 0..3 {
        ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
    }
    armed.store(true, Ordering::SeqCst);
    let outcomes: Vec<(u32, Result<ledger::Appended, Error>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (3..15)
            .map(|i| {
                let ledger = &ledger;
                s.spawn(move || {
                    let r =
                        ledger.append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes());
                    (i, r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let failed: Vec<u32> = outcomes
        .iter()
        .filter(|(_, o)| o.is_err())
        .map(|(i, _)| *i)
        .collect();
    let n = failed_len.load(Ordering::SeqCst);
    assert!(n >= 1, "the fault fired");
    assert_eq!(failed.len(), n, "exactly the failed batch's appends failed");
    for (i, o) in &outcomes {
        match o {
            Ok(a) => check_appended(a, &leaf(&i.to_string()), ledger.verifier()),
            Err(e) => assert!(matches!(e, Error::NotCommitted(_)), "{e}"),
        }
    }
    assert_eq!(ledger.latest().checkpoint.size, 15 - n as u64);
    // The failed appends can be retried; then every key is in the log once.
    for i in failed {
        let a = ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
        assert!(!a.duplicate);
        check_appended(&a, &leaf(&i.to_string()), ledger.verifier());
    }
    let mut got: Vec<Vec<u8>> = check_whole_log(&ledger);
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..15).map(|i| leaf(&i.to_string())).collect();
    want.sort();
    assert_eq!(got, want, "every key exactly once");
}

/// A write the store accepted (RocksDB: in the WAL and the memtable) whose
/// insert then reports an error: its callers are told NotCommitted, but the
/// sequencer learns the tip from the store, which holds the batch, so no
/// later batch reuses its indexes. Retries find the receipts by key, every
/// key is in the log once, and a reopened ledger agrees.
#[test]
fn a_write_that_landed_but_failed_reuses_no_index() {
    let dir = tempfile::tempdir().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let failed_len = Arc::new(AtomicUsize::new(0));
    let (trigger, record) = (armed.clone(), failed_len.clone());
    let options = || Options {
        batch_max: 4,
        batch_wait: Duration::from_millis(1),
        recent_hashes: 1000,
    };
    let faults = Faults {
        write_after: Some(Arc::new({
            let (trigger, record) = (trigger.clone(), record.clone());
            move |_, n| {
                if !trigger.swap(false, Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(300));
                record.store(n, Ordering::SeqCst);
                Some("reported after the WAL took it".to_string())
            }
        })),
        ..Faults::default()
    };
    let log_key = key();
    let ledger = Ledger::open_with_faults(dir.path(), log_key.clone(), options(), faults).unwrap();
    for i in 0..3 {
        ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
    }
    armed.store(true, Ordering::SeqCst);
    let outcomes: Vec<(u32, Result<ledger::Appended, Error>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (3..15)
            .map(|i| {
                let ledger = &ledger;
                s.spawn(move || {
                    let r =
                        ledger.append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes());
                    (i, r)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n = failed_len.load(Ordering::SeqCst);
    assert!(n >= 1, "the fault fired");
    let mut indexes = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for (i, o) in &outcomes {
        match o {
            Ok(a) => {
                check_appended(a, &leaf(&i.to_string()), ledger.verifier());
                assert!(indexes.insert(a.index), "index {} twice", a.index);
            }
            Err(e) => {
                assert!(matches!(e, Error::NotCommitted(_)), "{e}");
                failed.push(*i);
            }
        }
    }
    assert_eq!(
        failed.len(),
        n,
        "exactly the reported batch's appends failed"
    );
    // The batch is in the log all the same: the tip counts it.
    assert_eq!(ledger.latest().checkpoint.size, 15);
    for i in &failed {
        let a = ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
        assert!(a.duplicate, "the retry finds the written receipt");
        check_appended(&a, &leaf(&i.to_string()), ledger.verifier());
        assert!(indexes.insert(a.index), "index {} twice", a.index);
    }
    let mut got: Vec<Vec<u8>> = check_whole_log(&ledger);
    got.sort();
    let mut want: Vec<Vec<u8>> = (0..15).map(|i| leaf(&i.to_string())).collect();
    want.sort();
    assert_eq!(got, want, "every key exactly once");
    drop(ledger);
    let reopened = Ledger::open(dir.path(), log_key, options()).unwrap();
    assert_eq!(reopened.latest().checkpoint.size, 15);
    let mut again = check_whole_log(&reopened);
    again.sort();
    assert_eq!(again, want);
}

/// Faults whose next sync fails ("disk gone") once the flag is set.
fn failing_sync() -> (Arc<AtomicBool>, Faults) {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = armed.clone();
    let faults = Faults {
        sync: Some(Arc::new(move || {
            trigger
                .swap(false, Ordering::SeqCst)
                .then(|| "disk gone".to_string())
        })),
        ..Faults::default()
    };
    (armed, faults)
}

/// A failed fsync leaves the disk's state unknown: the ledger answers nobody
/// whose batch it did not cover, publishes nothing more and stops. Reopening
/// recovers a consistent log that holds every acknowledged append.
#[test]
fn a_failed_sync_stops_the_ledger_and_reopening_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let (armed, faults) = failing_sync();
    let ledger = Ledger::open_with_faults(dir.path(), k.clone(), opts(8), faults).unwrap();
    let acked: Vec<(u32, ledger::Appended)> = (0..20)
        .map(|i| {
            let a = ledger
                .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
                .unwrap();
            (i, a)
        })
        .collect();
    armed.store(true, Ordering::SeqCst);
    match ledger.append_blocking(leaf("20"), b"k20".to_vec()) {
        Err(Error::NotCommitted(reason)) => assert!(reason.contains("disk gone"), "{reason}"),
        other => panic!("expected NotCommitted, got {other:?}"),
    }
    // Nothing more is accepted or published.
    for i in 21..24 {
        let r = ledger.append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes());
        assert!(
            matches!(&r, Err(Error::NotCommitted(m) | Error::Stopped(m)) if m.contains("disk gone")),
            "{r:?}"
        );
    }
    assert_eq!(ledger.latest().checkpoint.size, 20);
    assert_eq!(ledger.checkpoint(21).unwrap(), None);
    let why = ledger.writable().unwrap_err();
    assert!(
        why.contains("stopped") && why.contains("disk gone"),
        "{why}"
    );
    drop(ledger);

    let ledger = Ledger::open(dir.path(), k, opts(8)).unwrap();
    ledger.writable().unwrap();
    let size = ledger.latest().checkpoint.size;
    assert!(
        (20..=21).contains(&size),
        "a prefix of what was written: {size}"
    );
    for (i, a) in &acked {
        assert_eq!(ledger.entry(a.index).unwrap(), leaf(&i.to_string()));
        let proof = ledger.inclusion_proof(a.index, size).unwrap();
        let root = ledger.latest().checkpoint.root;
        tlog::verify_inclusion(
            &tlog::leaf_hash(&leaf(&i.to_string())),
            a.index,
            size,
            &proof,
            &root,
        )
        .unwrap();
    }
    // The append that was not acknowledged can be retried with its key.
    let again = ledger.append_blocking(leaf("20"), b"k20".to_vec()).unwrap();
    check_appended(&again, &leaf("20"), ledger.verifier());
    check_whole_log(&ledger);
}

/// The same failure under load: 32 appenders make batches larger than the
/// sequencer commits itself, so the sync that fails is the syncer thread's.
/// Every append acknowledged before it is in the reopened log, nothing is
/// acknowledged after it, and the ledger stops.
#[test]
fn a_failed_sync_under_load_stops_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    let (armed, faults) = failing_sync();
    let ledger =
        Arc::new(Ledger::open_with_faults(dir.path(), k.clone(), opts(64), faults).unwrap());
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let largest_batch = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..32)
        .map(|t| {
            let (ledger, acked, largest) = (ledger.clone(), acked.clone(), largest_batch.clone());
            std::thread::spawn(move || {
                for i in 0.. {
                    let name = format!("{t}-{i}");
                    match ledger.append_blocking(leaf(&name), name.clone().into_bytes()) {
                        Ok(a) => {
                            largest.fetch_max(a.batch_len, Ordering::SeqCst);
                            acked.lock().unwrap().push((name, a.index));
                        }
                        Err(Error::NotCommitted(m) | Error::Stopped(m)) => {
                            assert!(m.contains("disk gone"), "{m}");
                            return;
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 2000 {
        std::thread::sleep(Duration::from_millis(5));
    }
    armed.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        largest_batch.load(Ordering::SeqCst) > 4,
        "the batches were small enough to be committed by the sequencer itself"
    );
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(ledger.writable().unwrap_err().contains("disk gone"));
    drop(ledger);
    let ledger = Ledger::open(dir.path(), k, opts(64)).unwrap();
    let size = ledger.latest().checkpoint.size;
    for (name, index) in &acked {
        assert!(
            *index < size,
            "acknowledged {name} at {index}, log size {size}"
        );
        assert_eq!(ledger.entry(*index).unwrap(), leaf(name));
    }
    check_whole_log(&ledger);
}

#[test]
fn tiles_only_client_recomputes_roots_and_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), key(), opts(100)).unwrap();
    let mut appended = Vec::new();
    for i in 0..1300u32 {
        appended.push(
            ledger
                .append_blocking(i.to_be_bytes().to_vec(), i.to_be_bytes().to_vec())
                .unwrap(),
        );
    }
    check_whole_log(&ledger);
    let n = ledger.latest().checkpoint.size;
    let source = common::LedgerTiles(&ledger);
    let tiles = tlog::TileHashReader::new(n, &source);
    for i in [0, 1, 255, 256, 257, 1000, 1299] {
        assert_eq!(
            tlog::prove_inclusion(i, n, &tiles).unwrap(),
            ledger.inclusion_proof(i, n).unwrap()
        );
    }
    for old in [1, 2, 256, 700, 1299] {
        assert_eq!(
            tlog::prove_consistency(old, n, &tiles).unwrap(),
            ledger.consistency_proof(old, n).unwrap()
        );
    }
    // Partial tiles beyond the tree are refused; served tiles never change.
    let beyond = tlog::Tile {
        level: 0,
        index: 5,
        width: 21,
        entries: false,
    };
    assert!(ledger.tile(&beyond).is_err());
    let partial = tlog::Tile {
        level: 0,
        index: 5,
        width: 20,
        entries: false,
    };
    let before = ledger.tile(&partial).unwrap();
    ledger
        .append_blocking(b"more".to_vec(), b"more".to_vec())
        .unwrap();
    assert_eq!(ledger.tile(&partial).unwrap(), before);
    // Proofs at the latest size use the ledger's cached right edge of the
    // tree; once the log grows, proofs at the new size and at the old one
    // must still equal the tiles' proofs.
    for i in 1300..1345u32 {
        ledger
            .append_blocking(i.to_be_bytes().to_vec(), i.to_be_bytes().to_vec())
            .unwrap();
    }
    let m = ledger.latest().checkpoint.size;
    let grown = tlog::TileHashReader::new(m, &source);
    for (i, size, reader) in [(1000, m, &grown), (1340, m, &grown), (1000, n, &tiles)] {
        assert_eq!(
            tlog::prove_inclusion(i, size, reader).unwrap(),
            ledger.inclusion_proof(i, size).unwrap()
        );
        assert_eq!(
            tlog::prove_consistency(i, size, reader).unwrap(),
            ledger.consistency_proof(i, size).unwrap()
        );
    }
}

#[test]
fn recovery_refuses_a_wrong_key_and_a_tampered_log() {
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    {
        let ledger = Ledger::open(dir.path(), k.clone(), opts(8)).unwrap();
        for i in 0..10u8 {
            ledger.append_blocking(vec![i], vec![i]).unwrap();
        }
    }
    let err = Ledger::open(dir.path(), key(), opts(8))
        .err()
        .expect("a different key is refused");
    assert!(matches!(err, Error::Corrupt(_)), "{err}");
    {
        // Recovery recomputes the root from the stored hashes it is made of:
        // for 10 leaves, the subtrees over leaves 0..8 and 8..10.
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        let mut k = vec![b'h'];
        k.extend_from_slice(&tlog::stored_hash_index(3, 0).to_be_bytes());
        db.put(k, [0u8; 32]).unwrap();
    }
    let err = Ledger::open(dir.path(), k, opts(8))
        .err()
        .expect("a tampered hash is refused");
    assert!(err.to_string().contains("root recomputed"), "{err}");
}

/// The state beside the log: namespaced values, written durably, read back
/// after a reopen; compare-and-swap writes only over the expected value; a
/// scan sees one namespace only; the log is untouched by state writes.
#[test]
fn state_is_namespaced_swappable_and_survives_reopen() {
    use ledger::Namespace;
    const A: Namespace = Namespace::new(b'p');
    const B: Namespace = Namespace::new(b'k');
    let dir = tempfile::tempdir().unwrap();
    let k = key();
    {
        let l = Ledger::open(dir.path(), k.clone(), opts(16)).unwrap();
        let s = l.state();
        assert_eq!(s.get(A, b"x").unwrap(), None);
        s.put(A, b"x", b"one").unwrap();
        s.put(A, b"y", b"two").unwrap();
        s.put(B, b"x", b"other namespace").unwrap();
        assert!(!s.swap(A, b"x", Some(b"stale"), b"lost").unwrap());
        assert!(s.swap(A, b"x", Some(b"one"), b"three").unwrap());
        assert!(!s.swap(A, b"z", Some(b"one"), b"lost").unwrap());
        assert!(s.swap(A, b"z", None, b"new").unwrap());
        let wrote = s
            .exclusive(|e| match e.get(B, b"x")? {
                Some(_) => Ok(false),
                None => e.put(B, b"x", b"never").map(|()| true),
            })
            .unwrap();
        assert!(!wrote);
        // The log itself is untouched by state writes.
        l.append_blocking(leaf("x"), b"x".to_vec()).unwrap();
        assert_eq!(l.lookup(b"x").unwrap().map(|(i, _)| i), Some(0));
    }
    let l = Ledger::open(dir.path(), k, opts(16)).unwrap();
    let s = l.state();
    assert_eq!(
        s.scan(A).unwrap(),
        vec![
            (b"x".to_vec(), b"three".to_vec()),
            (b"y".to_vec(), b"two".to_vec()),
            (b"z".to_vec(), b"new".to_vec()),
        ]
    );
    assert_eq!(
        s.get(B, b"x").unwrap().as_deref(),
        Some(&b"other namespace"[..])
    );
    check_whole_log(&l);
}

/// The same bytes under different idempotency keys are different leaves,
/// within one batch and across batches; each key answers with its own.
#[test]
fn equal_bytes_under_different_keys_are_different_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path(), key(), opts(8)).unwrap();
    let same = b"same bytes".to_vec();
    let first = ledger
        .append_blocking(same.clone(), b"k1".to_vec())
        .unwrap();
    let second = ledger
        .append_blocking(same.clone(), b"k2".to_vec())
        .unwrap();
    assert_ne!(first.index, second.index);
    // Two in one batch.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| {
            ledger
                .append_blocking(same.clone(), b"k3".to_vec())
                .unwrap()
        });
        let b = s.spawn(|| {
            ledger
                .append_blocking(same.clone(), b"k4".to_vec())
                .unwrap()
        });
        (a.join().unwrap(), b.join().unwrap())
    });
    let indexes: std::collections::BTreeSet<u64> =
        [first.index, second.index, a.index, b.index].into();
    assert_eq!(indexes.len(), 4, "four leaves");
    for (k, a) in [
        (&b"k1"[..], &first),
        (b"k2", &second),
        (b"k3", &a),
        (b"k4", &b),
    ] {
        assert_eq!(ledger.entry(a.index).unwrap(), same);
        let (index, _) = ledger.lookup(k).unwrap().expect("committed");
        assert_eq!(index, a.index);
    }
    check_whole_log(&ledger);
}

/// The sequencer needs no disk: on the in-memory store (tests only) appends
/// are acknowledged, a retry under the same key is the same leaf, proofs
/// verify; a sync the store fails stops the ledger, as on RocksDB.
#[test]
fn the_sequencer_runs_on_the_in_memory_store() {
    let armed = Arc::new(AtomicBool::new(false));
    let trigger = armed.clone();
    let faults = Faults {
        sync: Some(Arc::new(move || {
            trigger
                .load(Ordering::SeqCst)
                .then(|| "memory gone".to_string())
        })),
        ..Faults::default()
    };
    let ledger = Ledger::in_memory(key(), opts(8), faults).unwrap();
    for i in 0..50 {
        ledger
            .append_blocking(leaf(&i.to_string()), format!("k{i}").into_bytes())
            .unwrap();
    }
    let again = ledger.append_blocking(leaf("7"), b"k7".to_vec()).unwrap();
    assert_eq!(again.index, 7);
    check_whole_log(&ledger);
    armed.store(true, Ordering::SeqCst);
    assert!(ledger.append_blocking(leaf("x"), b"kx".to_vec()).is_err());
    assert!(ledger.writable().is_err());
}

/// Erasing a state value: gone from reads, and its bytes gone from every
/// file of the store (flushed and compacted away), while the log still
/// checks out and other values stay.
#[test]
fn an_erased_state_value_is_nowhere_in_the_directory() {
    use ledger::Namespace;
    const O: Namespace = Namespace::new(b'o');
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path(), key(), opts(16)).unwrap();
    let s = l.state();
    s.put(O, b"gone", b"secret-value-5e1b").unwrap();
    s.put(O, b"kept", b"kept-value-5e1b").unwrap();
    l.append_blocking(leaf("x"), b"x".to_vec()).unwrap();
    // Flushed to a table first, so erasure must reach the tables too.
    s.erase(O, b"nothing-there").unwrap();
    s.erase(O, b"gone").unwrap();
    assert_eq!(s.get(O, b"gone").unwrap(), None);
    assert_eq!(
        s.get(O, b"kept").unwrap().as_deref(),
        Some(&b"kept-value-5e1b"[..])
    );
    let found = |needle: &[u8]| {
        std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap_or_default())
            .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    };
    assert!(
        !found(b"secret-value-5e1b"),
        "the erased value is still in a file"
    );
    assert!(found(b"kept-value-5e1b"), "the scan finds what is there");
    check_whole_log(&l);
}
