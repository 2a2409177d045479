//! Property tests over random sizes (up to 10^5) and indexes: generated proofs
//! verify, tampered ones do not, stored-hash roots equal a naive recursive
//! RFC 9162 computation, and proofs from tiles equal proofs from stored hashes.
//! Independent cross-checks against `rs_merkle` and `ct-merkle` are in
//! `cross_check.rs`.

use std::sync::OnceLock;

use proptest::prelude::*;
use tlog::{
    append_leaves, leaf_hash, node_hash, prove_consistency, prove_inclusion, read_tile_data,
    stored_hash_count, stored_hash_index, tree_hash, verify_consistency, verify_inclusion, Hash,
    HashReader, RightEdge, Tile, TileHashReader, TileSource,
};

const MAX: u64 = 100_000;

struct Log {
    leaves: Vec<Hash>,
    stored: Vec<Hash>,
}

/// One log of MAX leaves, appended in uneven batches. The layout of a tree of
/// size n is a prefix of it, so it serves every size ≤ MAX.
fn log() -> &'static Log {
    static LOG: OnceLock<Log> = OnceLock::new();
    LOG.get_or_init(|| {
        let leaves: Vec<Hash> = (0..MAX).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let mut stored = Vec::new();
        let mut n = 0usize;
        let mut batch = 1usize;
        while n < leaves.len() {
            let end = (n + batch).min(leaves.len());
            stored.extend(append_leaves(n as u64, &leaves[n..end], &stored).unwrap());
            n = end;
            batch = batch * 7 % 1013 + 1;
        }
        assert_eq!(stored.len() as u64, stored_hash_count(MAX));
        Log { leaves, stored }
    })
}

/// MTH(D[lo:hi]) straight from RFC 9162 §2.1.1, recursively, from leaf hashes.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => tlog::EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

/// Serves tiles from the stored hashes, as the log would.
struct StoredTiles<'a>(&'a [Hash]);

impl TileSource for StoredTiles<'_> {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
        tiles
            .iter()
            .map(|t| Ok(read_tile_data(t, self.0)?))
            .collect()
    }
}

fn flip(proof: &[Hash], which: usize, bit: u8) -> Vec<Hash> {
    let mut p = proof.to_vec();
    let i = which % p.len();
    p[i].0[usize::from(bit / 8) % 32] ^= 1 << (bit % 8);
    p
}

fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|n| (Just(n), 0..n))
}

fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    (1..=MAX).prop_flat_map(|n| (1..=n, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn stored_roots_equal_naive_roots(n in 0..=MAX) {
        let log = log();
        prop_assert_eq!(tree_hash(n, &log.stored).unwrap(), naive_root(&log.leaves[..n as usize]));
    }

    #[test]
    fn inclusion_proofs_verify_and_tampering_fails(
        (n, i) in size_and_index(), which in any::<usize>(), bit in any::<u8>(), other in any::<u64>(),
    ) {
        let log = log();
        let root = tree_hash(n, &log.stored).unwrap();
        let leaf = log.leaves[i as usize];
        let proof = prove_inclusion(i, n, &log.stored).unwrap();
        prop_assert!(verify_inclusion(&leaf, i, n, &proof, &root).is_ok());
        if !proof.is_empty() {
            // A flipped bit anywhere, a truncated proof, an extended proof.
            prop_assert!(verify_inclusion(&leaf, i, n, &flip(&proof, which, bit), &root).is_err());
            prop_assert!(verify_inclusion(&leaf, i, n, &proof[..proof.len() - 1], &root).is_err());
            let mut longer = proof.clone();
            longer.push(proof[0]);
            prop_assert!(verify_inclusion(&leaf, i, n, &longer, &root).is_err());
            // A wrong index (same leaf hash claimed elsewhere).
            let j = (i + 1 + other % (n - 1)) % n;
            prop_assert!(verify_inclusion(&leaf, j, n, &proof, &root).is_err());
        }
        let mut wrong_leaf = leaf;
        wrong_leaf.0[0] ^= 0x80;
        prop_assert!(verify_inclusion(&wrong_leaf, i, n, &proof, &root).is_err());
        // A wrong size, checked against that size's real root: the proof must
        // fail unless it is, hash for hash, also the proof for that size.
        let m = i + 1 + other % (MAX - i);
        if m != n {
            let m_root = tree_hash(m, &log.stored).unwrap();
            let m_proof = prove_inclusion(i, m, &log.stored).unwrap();
            prop_assert_eq!(verify_inclusion(&leaf, i, m, &proof, &m_root).is_ok(), m_proof == proof);
        }
    }

    #[test]
    fn consistency_proofs_verify_and_tampering_fails(
        (old, new) in two_sizes(), which in any::<usize>(), bit in any::<u8>(), other in any::<u64>(),
    ) {
        let log = log();
        let old_root = tree_hash(old, &log.stored).unwrap();
        let new_root = tree_hash(new, &log.stored).unwrap();
        let proof = prove_consistency(old, new, &log.stored).unwrap();
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
        if !proof.is_empty() {
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &flip(&proof, which, bit)).is_err());
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[..proof.len() - 1]).is_err());
            let mut longer = proof.clone();
            longer.push(proof[0]);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());
        }
        // Swapped roots, and a wrong old size against its real root.
        if old != new {
            prop_assert!(verify_consistency(old, new, &new_root, &old_root, &proof).is_err());
        }
        let o2 = 1 + other % new;
        if o2 != old {
            let o2_root = tree_hash(o2, &log.stored).unwrap();
            let o2_proof = prove_consistency(o2, new, &log.stored).unwrap();
            prop_assert_eq!(
                verify_consistency(o2, new, &o2_root, &new_root, &proof).is_ok(),
                o2_proof == proof
            );
        }
    }

    #[test]
    fn tiles_give_the_same_roots_and_proofs((n, i) in size_and_index(), old_seed in any::<u64>()) {
        let log = log();
        let source = StoredTiles(&log.stored);
        let tiles = TileHashReader::new(n, &source);
        prop_assert_eq!(tree_hash(n, &tiles).unwrap(), tree_hash(n, &log.stored).unwrap());
        prop_assert_eq!(
            prove_inclusion(i, n, &tiles).unwrap(),
            prove_inclusion(i, n, &log.stored).unwrap()
        );
        let old = 1 + old_seed % n;
        prop_assert_eq!(
            prove_consistency(old, n, &tiles).unwrap(),
            prove_consistency(old, n, &log.stored).unwrap()
        );
        // The tile reader refuses hashes beyond its tree.
        prop_assert!(tree_hash(n + 1, &tiles).is_err());
    }

    #[test]
    fn right_edge_proofs_equal_folded_proofs((n, i) in size_and_index(), old_seed in any::<u64>()) {
        let log = log();
        let edge = RightEdge::new(n, &log.stored).unwrap();
        prop_assert_eq!(edge.size(), n);
        prop_assert_eq!(edge.root(), tree_hash(n, &log.stored).unwrap());
        prop_assert_eq!(
            edge.prove_inclusion(i, &log.stored).unwrap(),
            prove_inclusion(i, n, &log.stored).unwrap()
        );
        let old = 1 + old_seed % n;
        prop_assert_eq!(
            edge.prove_consistency(old, &log.stored).unwrap(),
            prove_consistency(old, n, &log.stored).unwrap()
        );
        prop_assert!(edge.prove_inclusion(n, &log.stored).is_err());
        prop_assert!(edge.prove_consistency(0, &log.stored).is_err());
        prop_assert!(edge.prove_consistency(n + 1, &log.stored).is_err());
    }
}

/// Serves stored hashes but refuses some indexes, to show they are not read.
struct Refusing<'a> {
    stored: &'a [Hash],
    refused: Vec<u64>,
}

impl HashReader for Refusing<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::ReadError> {
        if let Some(i) = indexes.iter().find(|i| self.refused.contains(i)) {
            return Err(format!("hash {i} was read").into());
        }
        self.stored.read_hashes(indexes)
    }
}

#[test]
fn a_right_edge_spares_reading_the_edge() {
    let log = log();
    // 100 = 64 + 32 + 4: a leaf under the 64 needs MTH(D[64:100]), which
    // folds the stored hashes of [64, 96) and [96, 100) unless the edge has it.
    let n = 100;
    let reader = Refusing {
        stored: &log.stored,
        refused: vec![stored_hash_index(5, 2), stored_hash_index(2, 24)],
    };
    assert!(prove_inclusion(10, n, &reader).is_err());
    let edge = RightEdge::new(n, &log.stored).unwrap();
    let proof = edge.prove_inclusion(10, &reader).unwrap();
    assert_eq!(proof, prove_inclusion(10, n, &log.stored).unwrap());
    assert_eq!(
        edge.prove_consistency(40, &reader).unwrap(),
        prove_consistency(40, n, &log.stored).unwrap()
    );
    // The empty tree's edge: the empty root, and no proofs.
    let empty = RightEdge::new(0, &log.stored).unwrap();
    assert_eq!(empty.root(), tlog::EMPTY_ROOT);
    assert!(empty.prove_inclusion(0, &log.stored).is_err());
}

#[test]
fn every_proof_of_small_trees_verifies() {
    let log = log();
    for n in 1..=70u64 {
        let root = tree_hash(n, &log.stored).unwrap();
        for i in 0..n {
            let proof = prove_inclusion(i, n, &log.stored).unwrap();
            verify_inclusion(&log.leaves[i as usize], i, n, &proof, &root).unwrap();
        }
        for old in 1..=n {
            let proof = prove_consistency(old, n, &log.stored).unwrap();
            let old_root = tree_hash(old, &log.stored).unwrap();
            verify_consistency(old, n, &old_root, &root, &proof).unwrap();
        }
    }
}

#[test]
fn proof_lengths_are_logarithmic() {
    let log = log();
    let proof = prove_inclusion(12_345, MAX, &log.stored).unwrap();
    assert!(proof.len() <= 17);
    let proof = prove_consistency(33_333, MAX, &log.stored).unwrap();
    assert!(proof.len() <= 2 * 17);
}

#[test]
fn old_size_zero_has_no_consistency_proof() {
    let log = log();
    assert!(prove_consistency(0, 5, &log.stored).is_err());
    assert!(prove_consistency(6, 5, &log.stored).is_err());
    assert!(prove_inclusion(5, 5, &log.stored).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A frontier pushed leaf by leaf from any stored frontier equals the
    /// one read at the larger size, and its root is the naive root.
    #[test]
    fn frontiers_extend_to_the_stored_tree(a in 0..=MAX, len in 0u64..2_000) {
        let log = log();
        let b = (a + len).min(MAX);
        let mut f = tlog::Frontier::read(a, &log.stored).unwrap();
        for leaf in &log.leaves[a as usize..b as usize] {
            f.push(*leaf);
        }
        prop_assert_eq!(&f, &tlog::Frontier::read(b, &log.stored).unwrap());
        prop_assert_eq!(f.root(), naive_root(&log.leaves[..b as usize]));
    }
}
