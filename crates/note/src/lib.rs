//! Sans-IO C2SP signed notes and the transparency-log formats built on them.
//!
//! In scope:
//! - signed notes: parse, sign, verify, key IDs, and keys in vkey/skey text form
//!   (<https://c2sp.org/signed-note>), Ed25519 (type 0x01);
//! - batch verification of many signatures by one Ed25519 key (a log's receipts);
//! - checkpoints (<https://c2sp.org/tlog-checkpoint>), strict;
//! - Ed25519 `cosignature/v1` witness cosignatures, type 0x04
//!   (<https://c2sp.org/tlog-cosignature>);
//! - offline proof bundles `c2sp.org/tlog-proof@v1` (<https://c2sp.org/tlog-proof>);
//! - trust policies: parse, and decide whether verified cosignatures meet the
//!   quorum (<https://c2sp.org/tlog-policy>);
//! - the tlog-witness `add-checkpoint` body and size answer ([`witness`],
//!   <https://c2sp.org/tlog-witness>).
//!
//! Out of scope: I/O of any kind, key storage, the witness protocol's HTTP
//! exchange itself, and Merkle math (the `tlog` crate). ECDSA, RFC 6962 tree-head and
//! ML-DSA signature types are not supported: signatures of those types are
//! unknown signatures and are ignored, as the spec requires.

mod batch;
mod checkpoint;
mod key;
mod policy;
mod proof;
mod signed;
pub mod witness;

pub use batch::verify_batch;
pub use checkpoint::{cosignature_message, sign_checkpoint, Checkpoint};
pub use key::{key_id, KeyType, SignerKey, VerifierKey};
pub use policy::Policy;
pub use proof::ProofBundle;
pub use signed::{Note, NoteSignature, Verified, MAX_NOTE_SIZE, MAX_SIGNATURES};

/// Errors from the note crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signed note is malformed; the text says how.
    #[error("malformed note: {0}")]
    MalformedNote(String),
    /// A vkey or skey string is malformed.
    #[error("malformed key: {0}")]
    MalformedKey(String),
    /// A signature by a known key does not verify.
    #[error("signature by {name} ({id:08x}) does not verify")]
    BadSignature {
        /// Key name.
        name: String,
        /// Key ID.
        id: u32,
    },
    /// No signature by any known key: the note must be rejected.
    #[error("no signature by a known key")]
    UnverifiedNote,
    /// A checkpoint's text is malformed.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// A tlog-witness `add-checkpoint` request or size answer is malformed.
    #[error("malformed add-checkpoint request: {0}")]
    MalformedWitnessRequest(String),
    /// A proof bundle is malformed.
    #[error("malformed tlog-proof: {0}")]
    MalformedProof(String),
    /// A policy file is malformed; names the line.
    #[error("policy line {line}: {reason}")]
    MalformedPolicy {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The verified cosignatures do not satisfy the policy's quorum.
    #[error("witness quorum not met: {0}")]
    QuorumNotMet(String),
    /// A key was used for something its type does not allow.
    #[error("wrong key: {0}")]
    WrongKey(String),
    /// An inclusion proof in a bundle does not verify.
    #[error(transparent)]
    Proof(#[from] tlog::Error),
}
