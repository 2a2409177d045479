//! Sans-IO RFC 9162 Merkle tree math for an append-only transparency log.
//!
//! In scope:
//! - leaf and node hashing, and the root of any tree size (RFC 9162 §2.1.1);
//! - the *stored-hash layout*: which hashes a log keeps so that an append costs
//!   O(log n) amortized and every proof for every size ≤ n is served from stored
//!   hashes ([`stored_hash_index`], [`stored_hash_count`], [`append_leaves`]);
//! - a [`Frontier`]: the perfect subtrees of a tree read from its start, to
//!   check what was read against a signed root;
//! - inclusion and consistency proofs: generation over a [`HashReader`], and
//!   verification exactly as RFC 9162 §2.1.3.2 and §2.1.4.2;
//! - C2SP tlog-tiles: tile coordinates and paths, entry bundles, and a
//!   [`TileHashReader`] that serves the same proofs from tiles alone.
//!
//! Out of scope: storage, networking, signatures and checkpoint text (see the
//! `note` crate), and any async runtime. Callers own all I/O: storage is reached
//! only through [`HashReader`] and [`TileSource`].
//!
//! Specs: RFC 9162 §2.1 (<https://www.rfc-editor.org/rfc/rfc9162#section-2.1>),
//! C2SP tlog-tiles (<https://c2sp.org/tlog-tiles>).

mod frontier;
mod hash;
mod layout;
mod proof;
mod tile;
mod verify;

pub use frontier::Frontier;
pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT, HASH_SIZE};
pub use layout::{append_leaves, split_stored_hash_index, stored_hash_count, stored_hash_index};
pub use proof::{prove_consistency, prove_inclusion, tree_hash, HashReader, ReadError, RightEdge};
pub use tile::{
    decode_entry_bundle, encode_entry_bundle, read_tile_data, Tile, TileHashReader, TileSource,
    MAX_ENTRY_SIZE, TILE_HEIGHT, TILE_WIDTH,
};
pub use verify::{verify_consistency, verify_inclusion};

/// Errors from the tlog crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A leaf index was not below the tree size.
    #[error("index {index} is not within a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The tree size it was asked against.
        size: u64,
    },
    /// A consistency proof was asked for or checked with sizes that do not make one.
    #[error("no consistency proof exists from size {old} to size {new}")]
    BadSizes {
        /// The older tree size.
        old: u64,
        /// The newer tree size.
        new: u64,
    },
    /// A proof did not verify; the reason says which check failed.
    #[error("proof does not verify: {0}")]
    InvalidProof(&'static str),
    /// A [`HashReader`] or [`TileSource`] broke its contract or failed.
    #[error("reading hashes: {0}")]
    Read(#[from] ReadError),
    /// A tile path or tile contents were malformed.
    #[error("malformed tile: {0}")]
    BadTile(String),
    /// An entry bundle was malformed, or an entry was too large for one.
    #[error("malformed entry bundle: {0}")]
    BadBundle(String),
}
