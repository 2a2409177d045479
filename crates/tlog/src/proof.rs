//! Roots and proofs computed from stored hashes (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1).
//!
//! Every function here plans which perfect subtrees it needs, asks the
//! [`HashReader`] for all of them in one call, and folds them. Any subtree
//! `[lo, hi)` that RFC 9162's recursion produces has `lo` aligned to a power of
//! two at least `hi - lo`, so its hash is the right fold of the perfect subtrees
//! given by the one bits of `hi - lo`, largest first.

use crate::{node_hash, stored_hash_index, Error, Hash, EMPTY_ROOT};

/// An error from a [`HashReader`] or a [`crate::TileSource`]: storage failures,
/// missing hashes, short answers.
pub type ReadError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Read access to a log's stored hashes (see [`crate::stored_hash_index`]).
///
/// Contract: `read_hashes(indexes)` returns exactly one hash per requested
/// index, in the order asked, or an error. Indexes may repeat and are not
/// sorted. Every index asked is below `stored_hash_count(n)` for the tree
/// size `n` the caller is working with; a reader that cannot serve one must
/// return an error, never a made-up hash. Callers check the length and turn a
/// short or long answer into [`Error::Read`].
pub trait HashReader {
    /// Returns the stored hashes at `indexes`, in order.
    ///
    /// # Errors
    ///
    /// Any failure to produce every requested hash.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError>;
}

/// An in-memory log: the stored-hash sequence itself.
impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.get(i).copied())
                    .ok_or_else(|| format!("stored hash {i} is not present").into())
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, ReadError> {
        self.as_slice().read_hashes(indexes)
    }
}

/// Calls `reader` and enforces the length part of its contract.
pub(crate) fn read_exact<R: HashReader + ?Sized>(
    reader: &R,
    indexes: &[u64],
) -> Result<Vec<Hash>, Error> {
    let hashes = reader.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(Error::Read(
            format!(
                "reader returned {} hashes for {} indexes",
                hashes.len(),
                indexes.len()
            )
            .into(),
        ));
    }
    Ok(hashes)
}

/// The largest power of two strictly less than `n` (`n >= 2`): RFC 9162's `k`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A plan: a list of subtree ranges whose hashes are wanted, in output order.
struct Plan {
    ranges: Vec<(u64, u64)>,
}

impl Plan {
    /// Room for any plan's ranges: a proof has at most one per tree level.
    fn new() -> Plan {
        Plan {
            ranges: Vec::with_capacity(64),
        }
    }

    /// Reads every perfect subtree of every range in one call and folds each
    /// range. A range `edge` already holds costs no read and no hashing.
    fn resolve<R: HashReader + ?Sized>(
        &self,
        reader: &R,
        edge: Option<&RightEdge>,
    ) -> Result<Vec<Hash>, Error> {
        let mut indexes = Vec::with_capacity(self.ranges.len() * 2);
        // Per range: its hash from the edge, or how many parts to fold.
        let mut parts = Vec::with_capacity(self.ranges.len());
        for &(lo, hi) in &self.ranges {
            if let Some(h) = edge.and_then(|e| e.range(lo, hi)) {
                parts.push(Err(h));
                continue;
            }
            let before = indexes.len();
            perfect_subtrees(lo, hi, |level, k| indexes.push(stored_hash_index(level, k)));
            parts.push(Ok(indexes.len() - before));
        }
        let hashes = if indexes.is_empty() {
            Vec::new()
        } else {
            read_exact(reader, &indexes)?
        };
        let mut at = 0;
        Ok(parts
            .into_iter()
            .map(|p| match p {
                Err(known) => known,
                Ok(count) => {
                    let range = &hashes[at..at + count];
                    at += count;
                    fold_right(range)
                }
            })
            .collect())
    }
}

/// The right edge of the tree of size `n`: `MTH(D[x:n])` for every boundary
/// `x` of `n`'s perfect-subtree decomposition (the sums of its leading parts,
/// `x = 0` first, whose range hash is the root).
///
/// Every range of an RFC 9162 proof at size `n` is either a perfect subtree
/// (one stored hash) or one of these suffixes, which otherwise cost a fold of
/// up to `popcount(n)` stored hashes, so up to `popcount(n) - 1` node hashes,
/// in every proof. A log keeps the edge of its latest tree and proves from it;
/// building one costs the same as computing the root once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    /// `suffixes[j]`: the hash of `[x_j, size)`, where `x_j` is `size` with
    /// all but its `j` highest one bits cleared.
    suffixes: Vec<Hash>,
}

impl RightEdge {
    /// Reads the perfect subtrees of the tree of size `n` and folds every suffix.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Read`] if `reader` fails.
    pub fn new<R: HashReader + ?Sized>(n: u64, reader: &R) -> Result<RightEdge, Error> {
        let mut indexes = Vec::with_capacity(n.count_ones() as usize);
        perfect_subtrees(0, n, |level, k| indexes.push(stored_hash_index(level, k)));
        let mut suffixes = read_exact(reader, &indexes)?;
        for j in (0..suffixes.len().saturating_sub(1)).rev() {
            suffixes[j] = node_hash(&suffixes[j], &suffixes[j + 1]);
        }
        Ok(RightEdge { size: n, suffixes })
    }

    /// The tree size this is the edge of.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root hash of the tree (RFC 9162 §2.1.1 MTH of all `size` leaves).
    #[must_use]
    pub fn root(&self) -> Hash {
        self.suffixes.first().copied().unwrap_or(EMPTY_ROOT)
    }

    /// The hash of `[lo, hi)` if it is one of this edge's suffixes.
    fn range(&self, lo: u64, hi: u64) -> Option<Hash> {
        if hi != self.size || lo >= hi {
            return None;
        }
        // `lo` is a boundary iff its one bits are the highest ones of `size`:
        // every one bit of `size` not in `lo` lies below `lo`'s lowest.
        let rest = hi ^ lo;
        let boundary = lo & !hi == 0 && (lo == 0 || rest < (lo & lo.wrapping_neg()));
        if !boundary {
            return None;
        }
        self.suffixes.get(lo.count_ones() as usize).copied()
    }

    /// [`prove_inclusion`] at this edge's size, without folding the edge.
    ///
    /// # Errors
    ///
    /// As [`prove_inclusion`].
    pub fn prove_inclusion<R: HashReader + ?Sized>(
        &self,
        index: u64,
        reader: &R,
    ) -> Result<Vec<Hash>, Error> {
        inclusion(index, self.size, reader, Some(self))
    }

    /// [`prove_consistency`] from `old` to this edge's size, without folding
    /// the edge.
    ///
    /// # Errors
    ///
    /// As [`prove_consistency`].
    pub fn prove_consistency<R: HashReader + ?Sized>(
        &self,
        old: u64,
        reader: &R,
    ) -> Result<Vec<Hash>, Error> {
        consistency(old, self.size, reader, Some(self))
    }
}

/// Calls `f(level, k)` for each perfect subtree making up `[lo, hi)`, left to right.
/// `lo` must be aligned to a power of two at least `hi - lo` (true of every
/// range RFC 9162's recursion produces, and of `[0, n)`).
fn perfect_subtrees(mut lo: u64, hi: u64, mut f: impl FnMut(u8, u64)) {
    while lo < hi {
        let level = 63 - (hi - lo).leading_zeros();
        f(level as u8, lo >> level);
        lo += 1 << level;
    }
}

/// `node(p0, node(p1, ... node(pn-2, pn-1)))`: the hash of a range from its
/// perfect subtrees, largest (leftmost) first.
fn fold_right(parts: &[Hash]) -> Hash {
    let mut iter = parts.iter().rev();
    let mut h = *iter
        .next()
        .expect("a non-empty range has at least one part");
    for left in iter {
        h = node_hash(left, &h);
    }
    h
}

/// The root hash of the tree of the first `n` leaves (RFC 9162 §2.1.1 MTH).
///
/// # Errors
///
/// Returns [`Error::Read`] if `reader` fails.
pub fn tree_hash<R: HashReader + ?Sized>(n: u64, reader: &R) -> Result<Hash, Error> {
    if n == 0 {
        return Ok(EMPTY_ROOT);
    }
    let mut plan = Plan::new();
    plan.ranges.push((0, n));
    Ok(plan.resolve(reader, None)?[0])
}

/// The inclusion proof of leaf `index` in the tree of size `n`
/// (RFC 9162 §2.1.3.1 PATH), from the leaf's sibling up to the root's child.
///
/// # Errors
///
/// Returns [`Error::IndexOutOfRange`] unless `index < n`, and
/// [`Error::Read`] if `reader` fails.
pub fn prove_inclusion<R: HashReader + ?Sized>(
    index: u64,
    n: u64,
    reader: &R,
) -> Result<Vec<Hash>, Error> {
    inclusion(index, n, reader, None)
}

fn inclusion<R: HashReader + ?Sized>(
    index: u64,
    n: u64,
    reader: &R,
    edge: Option<&RightEdge>,
) -> Result<Vec<Hash>, Error> {
    if index >= n {
        return Err(Error::IndexOutOfRange { index, size: n });
    }
    // RFC 9162 §2.1.3.1: PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) if m < k,
    // and PATH(m - k, D[k:n]) : MTH(D[0:k]) otherwise. Walked top-down here,
    // so the ranges come out root-first and are reversed at the end.
    let mut plan = Plan::new();
    let (mut lo, mut hi) = (0, n);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            plan.ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            plan.ranges.push((lo, lo + k));
            lo += k;
        }
    }
    plan.ranges.reverse();
    plan.resolve(reader, edge)
}

/// The consistency proof from the tree of size `old` to the tree of size `new`
/// (RFC 9162 §2.1.4.1 PROOF).
///
/// Rule for `old == 0`: there is no proof from the empty tree (every tree
/// extends it; RFC 9162 defines PROOF only for `0 < m <= n`), so this returns
/// [`Error::BadSizes`], and [`crate::verify_consistency`] rejects it too.
/// Protocols that accept any tree as an extension of the empty one (C2SP
/// tlog-witness's `old 0`) must handle that case before calling here.
/// For `old == new` the proof is empty.
///
/// # Errors
///
/// Returns [`Error::BadSizes`] unless `0 < old <= new`, and [`Error::Read`]
/// if `reader` fails.
pub fn prove_consistency<R: HashReader + ?Sized>(
    old: u64,
    new: u64,
    reader: &R,
) -> Result<Vec<Hash>, Error> {
    consistency(old, new, reader, None)
}

fn consistency<R: HashReader + ?Sized>(
    old: u64,
    new: u64,
    reader: &R,
    edge: Option<&RightEdge>,
) -> Result<Vec<Hash>, Error> {
    if old == 0 || old > new {
        return Err(Error::BadSizes { old, new });
    }
    // RFC 9162 §2.1.4.1: SUBPROOF(m, D[n], b):
    //   m == n: [] if b, else [MTH(D[n])];
    //   m <= k: SUBPROOF(m, D[0:k], b) : MTH(D[k:n]);
    //   m > k:  SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k]).
    // Walked top-down, so ranges are collected root-first and reversed.
    let mut plan = Plan::new();
    let (mut lo, mut hi, mut m, mut b) = (0, new, old, true);
    while m != hi - lo {
        let k = split_point(hi - lo);
        if m <= k {
            plan.ranges.push((lo + k, hi));
            hi = lo + k;
        } else {
            plan.ranges.push((lo, lo + k));
            lo += k;
            m -= k;
            b = false;
        }
    }
    if !b {
        plan.ranges.push((lo, hi));
    }
    plan.ranges.reverse();
    plan.resolve(reader, edge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_point_is_largest_power_below() {
        assert_eq!(split_point(2), 1);
        assert_eq!(split_point(3), 2);
        assert_eq!(split_point(4), 2);
        assert_eq!(split_point(5), 4);
        assert_eq!(split_point(8), 4);
        assert_eq!(split_point(9), 8);
        assert_eq!(split_point(u64::MAX), 1 << 63);
    }

    #[test]
    fn perfect_subtrees_of_a_range() {
        let mut got = Vec::new();
        perfect_subtrees(8, 15, |l, k| got.push((l, k)));
        assert_eq!(got, vec![(2, 2), (1, 6), (0, 14)]);
    }

    struct Short;
    impl HashReader for Short {
        fn read_hashes(&self, _: &[u64]) -> Result<Vec<Hash>, ReadError> {
            Ok(vec![])
        }
    }

    #[test]
    fn a_reader_that_answers_short_is_an_error() {
        assert!(matches!(tree_hash(5, &Short), Err(Error::Read(_))));
    }
}
