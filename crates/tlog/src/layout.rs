//! The stored-hash layout.
//!
//! A log of `n` leaves keeps exactly the hashes of its *complete* subtrees: for
//! every level `l` and index `k` with `(k + 1) << l <= n`, the hash of the
//! perfect subtree over leaves `[k << l, (k + 1) << l)`. Those are appended in
//! the order they become complete: appending leaf `m` stores its leaf hash and
//! then one interior hash per trailing one bit of `m`. Hashes are never
//! rewritten, so the storage is append-only and the layout of a tree of size
//! `n` is a prefix of the layout of every larger tree.
//!
//! Any subtree `[lo, hi)` used by an RFC 9162 proof is a sequence of at most
//! 64 such perfect subtrees, so every root and proof for every size ≤ n is
//! computed from O(log n) stored hashes, and an append reads O(1) amortized and
//! O(log n) worst case.

use crate::{node_hash, Error, Hash, HashReader};

/// The number of hashes stored for a tree of `n` leaves: `2n - popcount(n)`.
///
/// Equivalently, the stored index at which the hashes of leaf `n` begin.
#[must_use]
pub fn stored_hash_count(n: u64) -> u64 {
    2 * n - u64::from(n.count_ones())
}

/// The position, in the stored-hash sequence, of the hash of the perfect
/// subtree at `level` with index `k` (covering leaves `[k << level, (k + 1) << level)`).
///
/// That subtree becomes complete when leaf `m = ((k + 1) << level) - 1` is
/// appended; the hashes of leaf `m` start at `stored_hash_count(m)` with the leaf
/// hash (level 0) followed by one hash per level.
#[must_use]
pub fn stored_hash_index(level: u8, k: u64) -> u64 {
    let m = ((k + 1) << level) - 1;
    stored_hash_count(m) + u64::from(level)
}

/// The inverse of [`stored_hash_index`]: the `(level, k)` coordinates of the
/// hash at stored position `index`.
#[must_use]
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // stored_hash_count(m) is within 64 of 2m, so m is close to index / 2.
    let mut m = index / 2;
    while stored_hash_count(m) > index {
        m -= 1;
    }
    while stored_hash_count(m + 1) <= index {
        m += 1;
    }
    let level = index - stored_hash_count(m);
    // level < 64: leaf m stores 1 + trailing_ones(m) hashes.
    let level = u8::try_from(level).expect("level fits in u8");
    (level, ((m + 1) >> level) - 1)
}

/// The hashes to store when appending `leaves` (leaf hashes) to a tree of `n`
/// leaves, in order: they belong at stored positions
/// `stored_hash_count(n)..stored_hash_count(n + leaves.len())`.
///
/// `reader` is asked only for hashes already stored for the tree of size `n`
/// (positions below `stored_hash_count(n)`): at most one per level, the left
/// siblings on the tree's right edge. Hashes produced within this call are
/// taken from the result being built, so a whole batch is one call.
///
/// # Errors
///
/// Returns [`Error::Read`] if `reader` fails or breaks its contract.
pub fn append_leaves<R: HashReader + ?Sized>(
    n: u64,
    leaves: &[Hash],
    reader: &R,
) -> Result<Vec<Hash>, Error> {
    let base = stored_hash_count(n);
    let end = stored_hash_count(n + leaves.len() as u64);
    let mut out: Vec<Hash> = Vec::with_capacity(usize::try_from(end - base).unwrap_or(0));
    for (i, leaf) in leaves.iter().enumerate() {
        let m = n + i as u64;
        let mut h = *leaf;
        out.push(h);
        // One interior hash per trailing one bit of m: the subtree ending at m
        // at level l + 1 is node(left sibling at level l, h).
        for level in 0..m.trailing_ones() {
            let level = level as u8;
            let sibling = stored_hash_index(level, (m >> level) - 1);
            let left = if sibling >= base {
                out[usize::try_from(sibling - base).expect("index fits")]
            } else {
                crate::proof::read_exact(reader, &[sibling])?[0]
            };
            h = node_hash(&left, &h);
            out.push(h);
        }
    }
    debug_assert_eq!(out.len() as u64, end - base);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_positions() {
        // Leaf 0 -> 0; leaf 1 -> 1, node(1,0) -> 2; leaf 2 -> 3; leaf 3 -> 4,
        // node(1,1) -> 5, node(2,0) -> 6; leaf 4 -> 7.
        let want = [
            ((0, 0), 0),
            ((0, 1), 1),
            ((1, 0), 2),
            ((0, 2), 3),
            ((0, 3), 4),
            ((1, 1), 5),
            ((2, 0), 6),
            ((0, 4), 7),
        ];
        for ((level, k), index) in want {
            assert_eq!(stored_hash_index(level, k), index, "({level},{k})");
            assert_eq!(split_stored_hash_index(index), (level, k), "{index}");
        }
    }

    #[test]
    fn split_inverts_index_everywhere() {
        for index in 0..100_000 {
            let (level, k) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, k), index);
        }
        for index in [u64::MAX / 4, (1 << 62) + 12345, 961_984_011 * 2] {
            let (level, k) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, k), index);
        }
    }

    #[test]
    fn counts() {
        assert_eq!(stored_hash_count(0), 0);
        assert_eq!(stored_hash_count(1), 1);
        assert_eq!(stored_hash_count(2), 3);
        assert_eq!(stored_hash_count(3), 4);
        assert_eq!(stored_hash_count(4), 7);
    }
}
