//! Proof verification, exactly as RFC 9162 §2.1.3.2 and §2.1.4.2.

use crate::{node_hash, Error, Hash};

/// Verifies that `leaf` (a leaf hash) is at `index` in the tree of `size`
/// leaves whose root is `root`, given the inclusion `proof`
/// (RFC 9162 §2.1.3.2).
///
/// # Errors
///
/// Returns [`Error::IndexOutOfRange`] unless `index < size`, and
/// [`Error::InvalidProof`] naming the failed check otherwise.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), Error> {
    // 1. Compare leaf_index against tree_size. If leaf_index >= tree_size, fail.
    if index >= size {
        return Err(Error::IndexOutOfRange { index, size });
    }
    // 2. Set fn to leaf_index and sn to tree_size - 1.
    let (mut fnn, mut sn) = (index, size - 1);
    // 3. Set r to hash.
    let mut r = *leaf;
    // 4. For each value p in the inclusion_path array:
    for p in proof {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(Error::InvalidProof("inclusion proof is too long"));
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnn & 1 == 1 || fnn == sn {
            // i. Set r to HASH(0x01 || p || r).
            r = node_hash(p, &r);
            // ii. If LSB(fn) is not set, then right-shift both fn and sn
            //     equally until either LSB(fn) is set or fn is 0.
            while fnn & 1 == 0 && fnn != 0 {
                fnn >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: i. Set r to HASH(0x01 || r || p).
            r = node_hash(&r, p);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnn >>= 1;
        sn >>= 1;
    }
    // 5. Compare sn to 0. Compare r against the root_hash.
    if sn != 0 {
        return Err(Error::InvalidProof("inclusion proof is too short"));
    }
    if r != *root {
        return Err(Error::InvalidProof(
            "inclusion proof does not lead to the root",
        ));
    }
    Ok(())
}

/// Verifies that the tree of size `old` with root `old_root` is a prefix of the
/// tree of size `new` with root `new_root`, given the consistency `proof`
/// (RFC 9162 §2.1.4.2).
///
/// Rules outside the RFC's algorithm, which starts from `0 < first < second`:
/// - `old == new`: the proof must be empty and the roots equal;
/// - `old == 0` is always an error: a proof from the empty tree proves nothing,
///   so none is accepted (the rule of transparency-dev/merkle). C2SP
///   tlog-witness's `old 0` is handled by the witness before calling this;
/// - `old > new` is an error.
///
/// # Errors
///
/// Returns [`Error::BadSizes`] for sizes that admit no proof and
/// [`Error::InvalidProof`] naming the failed check otherwise.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), Error> {
    if old == 0 || old > new {
        return Err(Error::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(Error::InvalidProof(
                "consistency proof between equal sizes must be empty",
            ));
        }
        if old_root != new_root {
            return Err(Error::InvalidProof("equal sizes with different roots"));
        }
        return Ok(());
    }
    // 1. If consistency_path is an empty array, stop and fail the proof verification.
    let Some((head, tail)) = proof.split_first() else {
        return Err(Error::InvalidProof("consistency proof is empty"));
    };
    // 2. If first is an exact power of 2, then prepend first_hash to the
    //    consistency_path array.
    let (first, rest) = if old.is_power_of_two() {
        (old_root, proof)
    } else {
        (head, tail)
    };
    // 3. Set fn to first - 1 and sn to second - 1.
    let (mut fnn, mut sn) = (old - 1, new - 1);
    // 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fnn & 1 == 1 {
        fnn >>= 1;
        sn >>= 1;
    }
    // 5. Set both fr and sr to the first value in the consistency_path array.
    let (mut fr, mut sr) = (*first, *first);
    // 6. For each subsequent value c in the consistency_path array:
    for c in rest {
        // a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0 {
            return Err(Error::InvalidProof("consistency proof is too long"));
        }
        // b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fnn & 1 == 1 || fnn == sn {
            // i. Set fr to HASH(0x01 || c || fr).
            fr = node_hash(c, &fr);
            // ii. Set sr to HASH(0x01 || c || sr).
            sr = node_hash(c, &sr);
            // iii. If LSB(fn) is not set, then right-shift both fn and sn
            //      equally until either LSB(fn) is set or fn is 0.
            while fnn & 1 == 0 && fnn != 0 {
                fnn >>= 1;
                sn >>= 1;
            }
        } else {
            // Otherwise: i. Set sr to HASH(0x01 || sr || c).
            sr = node_hash(&sr, c);
        }
        // c. Finally, right-shift both fn and sn one time.
        fnn >>= 1;
        sn >>= 1;
    }
    // 7. Verify that fr equals first_hash, sr equals second_hash, and sn is 0.
    if sn != 0 {
        return Err(Error::InvalidProof("consistency proof is too short"));
    }
    if fr != *old_root {
        return Err(Error::InvalidProof(
            "consistency proof does not lead to the old root",
        ));
    }
    if sr != *new_root {
        return Err(Error::InvalidProof(
            "consistency proof does not lead to the new root",
        ));
    }
    Ok(())
}
