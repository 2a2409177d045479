//! The frontier of a tree: the hashes of the perfect subtrees of `[0, n)`,
//! largest first (RFC 9162 §2.1.1's decomposition of `n` into powers of
//! two). It is all a reader needs to keep to go on hashing a log it reads
//! from the start, and to check what it read against a signed root: push
//! every leaf hash, then compare [`Frontier::root`] with the checkpoint's.

use crate::hash::{node_hash, Hash, EMPTY_ROOT};
use crate::layout::stored_hash_index;
use crate::proof::{read_exact, HashReader};
use crate::Error;

/// The perfect subtrees of `[0, size)`, largest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    #[must_use]
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// A frontier from its parts: `subtrees` must hold one hash per one
    /// bit of `size`, the largest subtree's first.
    #[must_use]
    pub fn from_parts(size: u64, subtrees: Vec<Hash>) -> Option<Frontier> {
        (subtrees.len() == size.count_ones() as usize).then_some(Frontier { size, subtrees })
    }

    /// The frontier of the tree of size `n`, from a log's stored hashes.
    ///
    /// # Errors
    ///
    /// [`Error::Read`] if `reader` fails.
    pub fn read<R: HashReader + ?Sized>(n: u64, reader: &R) -> Result<Frontier, Error> {
        let mut indexes = Vec::with_capacity(n.count_ones() as usize);
        let mut start = 0u64;
        for level in (0..64).rev() {
            if n >> level & 1 == 1 {
                indexes.push(stored_hash_index(level, start >> level));
                start += 1 << level;
            }
        }
        Ok(Frontier {
            size: n,
            subtrees: read_exact(reader, &indexes)?,
        })
    }

    /// The number of leaves it covers.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect subtrees' hashes, largest first.
    #[must_use]
    pub fn subtrees(&self) -> &[Hash] {
        &self.subtrees
    }

    /// Appends a leaf (its [`crate::leaf_hash`]): the subtrees it completes
    /// merge, one per trailing one bit of the old size.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("one subtree per one bit of the size");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// The root hash of the tree (RFC 9162 §2.1.1 MTH of all `size` leaves).
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut rest = self.subtrees.iter().rev();
        let Some(last) = rest.next() else {
            return EMPTY_ROOT;
        };
        rest.fold(*last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::Frontier;
    use crate::{leaf_hash, tree_hash, EMPTY_ROOT};

    #[test]
    fn pushing_leaves_and_reading_stored_hashes_agree() {
        let leaves: Vec<_> = (0u32..300).map(|i| leaf_hash(&i.to_le_bytes())).collect();
        let stored = crate::append_leaves(0, &leaves, &[][..]).unwrap();
        let mut f = Frontier::new();
        assert_eq!(f.root(), EMPTY_ROOT);
        for (n, leaf) in (1u64..).zip(&leaves) {
            f.push(*leaf);
            assert_eq!(f.size(), n);
            assert_eq!(f.root(), tree_hash(n, &stored).unwrap(), "size {n}");
            assert_eq!(Frontier::read(n, &stored).unwrap(), f, "size {n}");
            let again = Frontier::from_parts(n, f.subtrees().to_vec()).unwrap();
            assert_eq!(again, f);
        }
        assert!(Frontier::from_parts(3, vec![EMPTY_ROOT]).is_none());
    }
}
