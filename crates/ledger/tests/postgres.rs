//! The ledger on a real PostgreSQL (a throwaway cluster each test starts),
//! with real signatures: the same guarantees as on RocksDB, and two ledgers
//! sharing one database never use an index twice.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{append_from_threads, check_appended, check_whole_log, leaf};
use ledger::{Error, Ledger, Options};
use note::{KeyType, SignerKey};

fn key() -> SignerKey {
    SignerKey::generate("test.tollgate.invalid/log", KeyType::Ed25519).unwrap()
}

fn opts() -> Options {
    Options {
        batch_max: 64,
        batch_wait: Duration::from_micros(300),
        recent_hashes: 1000,
    }
}

/// An append retried as a client retries a 503 (the database was away).
fn retrying(ledger: &Ledger, key: &str) -> ledger::Appended {
    for attempt in 0..200u64 {
        match ledger.append_blocking(leaf(key), key.as_bytes().to_vec()) {
            Ok(a) => return a,
            Err(Error::NotCommitted(_)) => {
                std::thread::sleep(Duration::from_millis(1 + attempt % 8));
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{key}: not committed after 200 attempts")
}

#[test]
fn appends_proofs_idempotency_and_recovery_on_postgres() {
    let pg = testkit::Postgres::start();
    let k = key();
    let ledger = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let appended = append_from_threads(&[&ledger], 8, 100, "t");
    let indexes: BTreeSet<u64> = appended.iter().map(|(_, a)| a.index).collect();
    assert_eq!(indexes, (0..800).collect(), "no gaps, no duplicates");
    for (key, a) in &appended {
        check_appended(a, &leaf(key), k.verifier());
    }
    // The same key again: the original index; another leaf under it: conflict.
    let again = ledger
        .append_blocking(leaf("t0-0"), b"t0-0".to_vec())
        .unwrap();
    assert!(again.duplicate);
    assert!(matches!(
        ledger.append_blocking(leaf("other"), b"t0-0".to_vec()),
        Err(Error::Conflict { .. })
    ));
    let size = ledger.latest().checkpoint.size;
    drop(ledger);
    // Reopened: recovery finds the same tree; the whole log checks out.
    let ledger = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    assert_eq!(ledger.latest().checkpoint.size, size);
    assert_eq!(check_whole_log(&ledger).len() as u64, size);
    let again = ledger
        .append_blocking(leaf("t3-7"), b"t3-7".to_vec())
        .unwrap();
    assert!(again.duplicate);
    // Another key refuses to open it.
    assert!(Ledger::open_postgres(&pg.url, key(), opts()).is_err());
}

/// Two ledgers (two gates' sequencers) appending to one database at once:
/// each batch is prepared holding the log's head (locked in the database
/// for the batch's transaction), so every append is acknowledged at the
/// first call, each with its own index.
#[test]
fn two_writers_on_one_database_never_share_an_index() {
    let pg = testkit::Postgres::start();
    let k = key();
    let a = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let b = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let acked = append_from_threads(&[&a, &b], 8, 60, "w");
    assert_eq!(acked.len(), 480);
    let distinct: BTreeSet<u64> = acked.iter().map(|(_, x)| x.index).collect();
    assert_eq!(distinct.len(), acked.len(), "no index acknowledged twice");
    drop((a, b));
    let ledger = Ledger::open_postgres(&pg.url, k, opts()).unwrap();
    let entries = check_whole_log(&ledger);
    for (key, x) in &acked {
        assert_eq!(entries[x.index as usize], leaf(key), "entry {}", x.index);
    }
}

/// The database goes away under a ledger: appends fail as not committed
/// (never acknowledged, never fatal), and once it is back the ledger goes
/// on where the log is, without being reopened.
#[test]
fn a_ledger_outlives_its_database_going_away() {
    let mut pg = testkit::Postgres::start();
    let k = key();
    let ledger = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let before: Vec<_> = (0..10)
        .map(|i| retrying(&ledger, &format!("before-{i}")))
        .collect();
    pg.stop();
    for i in 0..5 {
        match ledger.append_blocking(leaf(&format!("down-{i}")), format!("down-{i}").into_bytes()) {
            Err(Error::NotCommitted(why)) => assert!(why.contains("postgres"), "{why}"),
            other => panic!("with the database down: {other:?}"),
        }
    }
    pg.resume();
    // The first call on each connection the server closed fails; the next
    // connects again.
    let after: Vec<_> = (0..10)
        .map(|i| retrying(&ledger, &format!("after-{i}")))
        .collect();
    assert_eq!(
        after[0].index,
        before.last().unwrap().index + 1,
        "no gap, no reuse"
    );
    let again = retrying(&ledger, "before-3");
    assert!(again.duplicate && again.index == before[3].index);
    drop(ledger);
    let ledger = Ledger::open_postgres(&pg.url, k, opts()).unwrap();
    assert_eq!(check_whole_log(&ledger).len(), 20);
}

/// A ledger learns what another writer committed to the shared database
/// (`refresh`), and then serves it: entries, proofs to the new checkpoint.
#[test]
fn a_ledger_learns_and_serves_what_another_writer_committed() {
    let pg = testkit::Postgres::start();
    let k = key();
    let a = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let b = Ledger::open_postgres(&pg.url, k.clone(), opts()).unwrap();
    let mine = retrying(&b, "b-0");
    let theirs: Vec<ledger::Appended> = (0..20).map(|i| retrying(&a, &format!("a-{i}"))).collect();
    let size = a.latest().checkpoint.size;
    assert!(b.latest().checkpoint.size < size, "b has not learnt it yet");
    assert_eq!(b.refresh().unwrap(), size);
    assert_eq!(b.latest().note, a.latest().note);
    for (i, x) in theirs.iter().enumerate() {
        assert_eq!(b.entry(x.index).unwrap(), leaf(&format!("a-{i}")));
    }
    // b proves its own entry and a's in the tree it learnt.
    for index in [mine.index, theirs[7].index] {
        let proof = b.inclusion_proof(index, size).unwrap();
        let cp = common::verified(&b.latest(), k.verifier());
        let leaf_hash = tlog::leaf_hash(&b.entry(index).unwrap());
        tlog::verify_inclusion(&leaf_hash, index, size, &proof, &cp.root).unwrap();
    }
    // b appends again on top (after a conflict the sequencer re-learns).
    assert!(retrying(&b, "b-1").index >= size);
    assert_eq!(check_whole_log(&b).len() as u64, b.latest().checkpoint.size);
}

/// Several writers opening one empty database at once all start, on one
/// first checkpoint.
#[test]
fn writers_opening_an_empty_database_at_once_agree_on_its_start() {
    let pg = testkit::Postgres::start();
    let k = key();
    let ledgers: Vec<Ledger> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let (url, k) = (&pg.url, k.clone());
                s.spawn(move || Ledger::open_postgres(url, k, opts()).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = ledgers[0].latest().note.clone();
    assert!(ledgers.iter().all(|l| l.latest().note == first));
    retrying(&ledgers[3], "after");
}

/// The gates' connections are TLS as `sslmode` asks, with rustls: `require`
/// encrypts (every connection, as the server's `pg_stat_ssl` shows),
/// `verify-full` accepts the server's certificate only from the named CA,
/// and a server without TLS is refused rather than spoken to in plaintext.
#[test]
fn connections_use_tls_as_sslmode_asks() {
    let (pg, ca) = testkit::Postgres::start_tls();
    let k = key();
    let require = format!("{} sslmode=require", pg.url);
    let ledger = Ledger::open_postgres(&require, k.clone(), opts()).unwrap();
    retrying(&ledger, "over-tls");
    let mut admin = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let count = |admin: &mut postgres::Client, ssl: bool| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl = $1 AND usename = 'tollgate' AND pid <> pg_backend_pid()",
                &[&ssl],
            )
            .unwrap()
            .get(0)
    };
    assert!(
        count(&mut admin, true) >= 4,
        "the ledger's connections are TLS"
    );
    assert_eq!(count(&mut admin, false), 0, "and none is plaintext");
    drop(ledger);

    let full = |host: &str, ca: &std::path::Path| {
        format!(
            "{} host={host} sslmode=verify-full sslrootcert={}",
            pg.url,
            ca.display()
        )
    };
    for host in ["localhost", "127.0.0.1"] {
        let ledger = Ledger::open_postgres(&full(host, &ca), k.clone(), opts()).unwrap();
        assert_eq!(ledger.latest().checkpoint.size, 1);
    }
    // Another CA's certificate: refused, for verify-full and verify-ca.
    let other = tempfile::tempdir().unwrap();
    let other_ca = testkit::Pki::new(other.path(), "other").ca_file();
    let err = Ledger::open_postgres(&full("localhost", &other_ca), k.clone(), opts())
        .err()
        .expect("a certificate from another CA is refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    let ca_only = format!(
        "{} sslmode=verify-ca sslrootcert={}",
        pg.url,
        other_ca.display()
    );
    assert!(Ledger::open_postgres(&ca_only, k.clone(), opts()).is_err());
    // verify-full without a CA to check against says what is missing.
    let err = Ledger::open_postgres(
        &format!("{} sslmode=verify-full", pg.url),
        k.clone(),
        opts(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("sslrootcert"), "{err}");
    // A server without TLS: `require` is refused, never plaintext.
    let plain = testkit::Postgres::start();
    let refused = Ledger::open_postgres(&format!("{} sslmode=require", plain.url), k, opts());
    assert!(
        refused.is_err(),
        "sslmode=require spoke to a server without TLS"
    );
}

/// Erasing a state value on PostgreSQL: the row is deleted and the table
/// vacuumed; reads see it gone and other values stay.
#[test]
fn an_erased_state_value_is_deleted_on_postgres() {
    use ledger::Namespace;
    const O: Namespace = Namespace::new(b'o');
    let pg = testkit::Postgres::start();
    let ledger = Ledger::open_postgres(&pg.url, key(), opts()).unwrap();
    let s = ledger.state();
    s.put(O, b"gone", b"secret").unwrap();
    s.put(O, b"kept", b"kept").unwrap();
    s.erase(O, b"gone").unwrap();
    assert_eq!(s.get(O, b"gone").unwrap(), None);
    assert_eq!(s.get(O, b"kept").unwrap().as_deref(), Some(&b"kept"[..]));
    let mut c = postgres::Client::connect(&pg.url, postgres::NoTls).unwrap();
    let rows: i64 = c
        .query_one(
            "SELECT count(*) FROM tollgate_state WHERE value = $1",
            &[&b"secret".to_vec()],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}
