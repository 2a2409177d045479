//! Shared checks: a log verified the way an outside auditor would.
#![allow(dead_code)] // each test binary uses a subset

use ledger::{Appended, Ledger, SignedCheckpoint};
use note::{Checkpoint, Note, VerifierKey};
use tlog::{Hash, Tile, TileHashReader, TileSource};

/// The leaf these tests append under idempotency key `key`.
pub fn leaf(key: &str) -> Vec<u8> {
    format!("leaf for {key}").into_bytes()
}

/// `threads` threads at once, thread t appending `each` leaves keyed
/// `{prefix}{t}-{i}` to `ledgers[t % ledgers.len()]`; every append must be
/// acknowledged (a failure panics naming its key). Each key with its append.
pub fn append_from_threads(
    ledgers: &[&Ledger],
    threads: usize,
    each: usize,
    prefix: &str,
) -> Vec<(String, Appended)> {
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let ledger = ledgers[t % ledgers.len()];
                s.spawn(move || {
                    (0..each)
                        .map(|i| {
                            let key = format!("{prefix}{t}-{i}");
                            let a = ledger
                                .append_blocking(leaf(&key), key.clone().into_bytes())
                                .unwrap_or_else(|e| panic!("{key}: {e}"));
                            (key, a)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    })
}

/// Checks a signed checkpoint's signature and returns it parsed.
pub fn verified(cp: &SignedCheckpoint, key: &VerifierKey) -> Checkpoint {
    let note = Note::parse(cp.note.as_bytes()).expect("checkpoint note parses");
    note.verify(std::slice::from_ref(key))
        .expect("checkpoint signature verifies");
    let parsed = Checkpoint::parse(note.text()).expect("checkpoint text parses");
    assert_eq!(parsed, cp.checkpoint);
    parsed
}

/// Checks an append's proof against its own signed checkpoint.
pub fn check_appended(a: &Appended, leaf: &[u8], key: &VerifierKey) {
    let cp = verified(&a.checkpoint, key);
    tlog::verify_inclusion(&tlog::leaf_hash(leaf), a.index, cp.size, &a.proof, &cp.root)
        .expect("inclusion proof verifies against the returned checkpoint");
}

/// Tiles served by the ledger, as an HTTP client would fetch them.
pub struct LedgerTiles<'a>(pub &'a Ledger);

impl TileSource for LedgerTiles<'_> {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
        tiles
            .iter()
            .map(|t| self.0.tile(t).map_err(|e| e.into()))
            .collect()
    }
}

/// The whole-log check: the latest checkpoint verifies, the root computed
/// from tiles alone equals it, every entry bundle hashes to the level-0
/// tiles, and every stored checkpoint is consistent with the latest.
pub fn check_whole_log(ledger: &Ledger) -> Vec<Vec<u8>> {
    let key = ledger.verifier().clone();
    let latest = verified(&ledger.latest(), &key);
    let n = latest.size;
    let source = LedgerTiles(ledger);
    let tiles = TileHashReader::new(n, &source);
    assert_eq!(
        tlog::tree_hash(n, &tiles).expect("root from tiles"),
        latest.root,
        "root from tiles"
    );
    let mut entries = Vec::new();
    let mut leaf_hashes: Vec<Hash> = Vec::new();
    for index in 0..n.div_ceil(256) {
        let t = Tile::entries_in_tree(index, n).expect("bundle in tree");
        let bundle = ledger.tile(&t).expect("entry bundle");
        for e in tlog::decode_entry_bundle(&bundle).expect("bundle decodes") {
            leaf_hashes.push(tlog::leaf_hash(e));
            entries.push(e.to_vec());
        }
        let hashes = ledger
            .tile(&Tile {
                entries: false,
                ..t
            })
            .expect("level-0 tile");
        let want: Vec<u8> = leaf_hashes[(index * 256) as usize..]
            .iter()
            .flat_map(|h| h.0)
            .collect();
        assert_eq!(
            hashes, want,
            "entry bundle {index} hashes to its level-0 tile"
        );
    }
    assert_eq!(entries.len() as u64, n);
    let stored = tlog::append_leaves(0, &leaf_hashes, &Vec::new()).unwrap();
    assert_eq!(
        tlog::tree_hash(n, &stored).unwrap(),
        latest.root,
        "root recomputed from entries"
    );
    for size in 1..n {
        if let Some(text) = ledger.checkpoint(size).expect("checkpoint read") {
            let note = Note::parse(text.as_bytes()).unwrap();
            note.verify(std::slice::from_ref(&key)).unwrap();
            let cp = Checkpoint::parse(note.text()).unwrap();
            let proof = ledger.consistency_proof(size, n).unwrap();
            tlog::verify_consistency(size, n, &cp.root, &latest.root, &proof)
                .expect("every stored checkpoint is consistent with the latest");
        }
    }
    entries
}
