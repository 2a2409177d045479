//! Independent cross-checks: roots from `rs_merkle` with an RFC 6962 hasher
//! for sizes 1..600, and proofs from `ct-merkle`'s in-memory tree.

use ct_merkle::mem_backed_tree::MemoryBackedTree;
use rs_merkle::{Hasher, MerkleTree};
use sha2::{Digest, Sha256};
use tlog::{append_leaves, leaf_hash, prove_consistency, prove_inclusion, tree_hash, Hash};

/// rs_merkle's bottom-up tree with RFC 6962 node hashing: an unpaired node is
/// promoted unchanged, which yields the same root as RFC 9162's left-perfect split.
#[derive(Clone)]
struct Rfc6962;

impl Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        // concat_and_hash passes left || right: this is node hashing.
        Sha256::new_with_prefix([0x01])
            .chain_update(data)
            .finalize()
            .into()
    }
}

fn leaves(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
}

#[test]
fn roots_match_rs_merkle_for_sizes_1_to_600() {
    let data = leaves(600);
    let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    let stored = append_leaves(0, &hashes, &Vec::new()).unwrap();
    let mut rs = MerkleTree::<Rfc6962>::new();
    for (n, h) in hashes.iter().enumerate() {
        rs.insert(h.0);
        rs.commit();
        let want = rs.root().unwrap();
        assert_eq!(
            tree_hash(n as u64 + 1, &stored).unwrap().0,
            want,
            "size {}",
            n + 1
        );
    }
}

#[test]
fn proofs_match_ct_merkle() {
    let data = leaves(300);
    let hashes: Vec<Hash> = data.iter().map(|d| leaf_hash(d)).collect();
    let stored = append_leaves(0, &hashes, &Vec::new()).unwrap();
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for (n, d) in data.iter().enumerate() {
        ct.push(d.clone());
        let size = n as u64 + 1;
        assert_eq!(
            ct.root().as_bytes().as_slice(),
            tree_hash(size, &stored).unwrap().0
        );
        for i in (0..size).step_by(7) {
            let ours: Vec<u8> = prove_inclusion(i, size, &stored)
                .unwrap()
                .iter()
                .flat_map(|h| h.0)
                .collect();
            assert_eq!(
                ct.prove_inclusion(i as usize).as_bytes(),
                ours,
                "inclusion {i} in {size}"
            );
        }
        for old in (1..size).step_by(5) {
            let ours: Vec<u8> = prove_consistency(old, size, &stored)
                .unwrap()
                .iter()
                .flat_map(|h| h.0)
                .collect();
            let theirs = ct.prove_consistency((size - old) as usize);
            assert_eq!(theirs.as_bytes(), ours, "consistency {old} -> {size}");
        }
    }
}
