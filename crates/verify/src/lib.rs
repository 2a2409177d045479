//! Verification of a gate's answers, sans-IO: what an auditor (`proofcheck`),
//! an agent's SDK and a tool's surface verifier each check before they
//! believe a decision.
//!
//! In scope: a decision response ([`verify_decision`]: the receipt's gate
//! signature and canonical body, that the response repeats what the receipt
//! says, the C2SP tlog-proof of its inclusion to a checkpoint signed by the
//! log key, and optionally a C2SP tlog-policy witness quorum), and two
//! checkpoints ([`verify_consistency`]: both signed, the newer extends the
//! older by an RFC 9162 consistency proof, given or computed from untrusted
//! tiles). Out of scope: fetching anything (callers bring bytes, or a
//! [`tlog::TileSource`] they implement), replay (the `policy` crate), the
//! gate and the ledger, which this crate never links.
//!
//! Trust comes only from the keys the caller passes in.

use note::{Checkpoint, Note, Policy, ProofBundle, VerifierKey};
use protocol::{verify_receipt, DecisionResponse, ReceiptBody};
use tlog::{Hash, TileSource};

/// Why something does not verify, or cannot be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The receipt's signature or body does not verify.
    #[error("receipt {receipt_id}: {source}")]
    Receipt {
        /// The receipt id the response names.
        receipt_id: String,
        /// What failed.
        #[source]
        source: protocol::Error,
    },
    /// The response says something other than the signed receipt.
    #[error("{0}")]
    Mismatch(String),
    /// The tlog-proof does not parse or does not verify.
    #[error("proof{}: {reason}", index.map(|i| format!(" of index {i} ")).unwrap_or_default())]
    Proof {
        /// The index it claims, once parsed.
        index: Option<u64>,
        /// What failed.
        reason: String,
    },
    /// The witness policy given cannot be used with the log key given.
    #[error("{0}")]
    Usage(String),
    /// A checkpoint does not verify with the log key.
    #[error("{which} checkpoint: {source}")]
    Checkpoint {
        /// `old` or `new`.
        which: &'static str,
        /// What failed.
        #[source]
        source: note::Error,
    },
    /// The older checkpoint is larger than the newer one.
    #[error("the old checkpoint ({old}) is larger than the new one ({new}): a rollback{both}")]
    Rollback {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
        /// Both notes, for the evidence.
        both: String,
    },
    /// Two validly signed checkpoints of one size with different roots.
    #[error("split view: two checkpoints of size {size} with different roots, both validly signed{both}")]
    SplitView {
        /// The size.
        size: u64,
        /// Both notes, for the evidence.
        both: String,
    },
    /// The consistency proof does not verify.
    #[error("size {new} is not consistent with size {old}: {reason}{both}")]
    Inconsistent {
        /// The old size.
        old: u64,
        /// The new size.
        new: u64,
        /// What failed.
        reason: String,
        /// Both notes, for the evidence.
        both: String,
    },
    /// A proof could not be computed from the tiles (fetch or format).
    #[error("computing the proof from tiles: {0}")]
    Tiles(tlog::Error),
}

impl Error {
    /// True if the failure is a verification failure (the evidence is bad),
    /// false if the check could not be made (usage, or tiles not available).
    #[must_use]
    pub fn is_verification_failure(&self) -> bool {
        !matches!(self, Error::Usage(_) | Error::Tiles(_))
    }
}

/// A decision whose receipt, inclusion proof and checkpoint verified.
#[derive(Clone, Debug)]
pub struct VerifiedDecision {
    /// The signed receipt's body.
    pub receipt: ReceiptBody,
    /// The receipt's index in the log.
    pub index: u64,
    /// The checkpoint the proof leads to, signed by the log key.
    pub checkpoint: Checkpoint,
    /// Names of the witnesses whose cosignatures verified (with a witness
    /// policy; empty without).
    pub cosigners: Vec<String>,
    /// The committed fields (`derived.committed`): each opened by a
    /// verified opening of the response, or committed with its opening
    /// erased.
    pub committed: Vec<(String, protocol::FieldStatus)>,
}

/// Verifies a decision response: the receipt's gate signature and body, that
/// every field the response repeats from the receipt (`receipt_id`,
/// `decision`, `reason`, `policy_version`) is the receipt's, that every
/// opening given opens its committed field (a committed field without one
/// is reported erased), the tlog-proof of the receipt's leaf to its checkpoint, the
/// checkpoint's signature by `log_key` (and with `witnesses`, a C2SP
/// tlog-policy naming `log_key`, its cosignature quorum), and that the
/// receipt names that log.
///
/// # Errors
///
/// An [`Error`] naming the first check that failed.
pub fn verify_decision(
    response: &DecisionResponse,
    log_key: &VerifierKey,
    gate_key: &VerifierKey,
    witnesses: Option<&Policy>,
) -> Result<VerifiedDecision, Error> {
    let r = response;
    let body = verify_receipt(r.receipt.as_bytes(), gate_key).map_err(|source| Error::Receipt {
        receipt_id: r.receipt_id.clone(),
        source,
    })?;
    // The unsigned fields must say what the signed receipt says: a reader
    // of the response must not be told another reason or decision.
    let differs = [
        ("receipt_id", body.receipt_id != r.receipt_id),
        ("decision", body.decision != r.decision),
        ("reason", body.reason != r.reason),
        (
            "policy_version",
            body.policy.as_ref().map(|p| &p.version) != r.policy_version.as_ref(),
        ),
    ];
    if let Some((field, _)) = differs.iter().find(|(_, d)| *d) {
        return Err(Error::Mismatch(format!(
            "the response's {field} differs from the signed receipt's"
        )));
    }
    let bundle = ProofBundle::parse(&r.proof).map_err(|e| Error::Proof {
        index: None,
        reason: e.to_string(),
    })?;
    if bundle.index != r.log_index {
        return Err(Error::Mismatch(format!(
            "the proof is for index {}, the response says {}",
            bundle.index, r.log_index
        )));
    }
    let own;
    let policy = match witnesses {
        Some(p) => {
            if !p.log_keys().any(|k| k == log_key) {
                return Err(Error::Usage(
                    "the witness policy does not name the log key as a log".into(),
                ));
            }
            p
        }
        None => {
            own = Policy::for_log(log_key.clone());
            &own
        }
    };
    let leaf = tlog::leaf_hash(r.receipt.as_bytes());
    let checkpoint = bundle.verify(&leaf, policy).map_err(|e| Error::Proof {
        index: Some(bundle.index),
        reason: e.to_string(),
    })?;
    if checkpoint.origin != body.log {
        return Err(Error::Mismatch(format!(
            "the receipt names log {:?}, the checkpoint is of {:?}",
            body.log, checkpoint.origin
        )));
    }
    // Openings are not signed: each must open the receipt's commitment.
    let committed = protocol::check_openings(
        &body.request,
        &protocol::committed_fields(&body.derived),
        r.openings.as_ref().unwrap_or(&protocol::Openings::new()),
    )
    .map_err(Error::Mismatch)?;
    let cosigners = match witnesses {
        Some(p) => {
            let note = Note::parse(bundle.checkpoint.as_bytes()).map_err(|e| Error::Proof {
                index: Some(bundle.index),
                reason: format!("checkpoint: {e}"),
            })?;
            let known: Vec<VerifierKey> = p.witnesses().map(|(_, k, _)| k.clone()).collect();
            note.verify(&known)
                .map(|v| v.iter().map(|w| w.key.name().to_string()).collect())
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    Ok(VerifiedDecision {
        receipt: body,
        index: bundle.index,
        checkpoint,
        cosigners,
        committed,
    })
}

/// Where a consistency proof comes from.
pub enum ConsistencyProof<'a> {
    /// Given by the caller (for example a file of base64 hashes).
    Given(Vec<Hash>),
    /// Computed from the log's tiles, which are untrusted: the proof is
    /// verified against the signed roots like any other.
    Tiles(&'a dyn TileSource),
}

/// Two checkpoints that verified, the newer extending the older.
#[derive(Clone, Debug)]
pub struct Consistent {
    /// The older checkpoint.
    pub old: Checkpoint,
    /// The newer checkpoint.
    pub new: Checkpoint,
    /// Hashes in the proof that verified (0 for equal sizes or from size 0).
    pub proof_len: usize,
}

fn signed(text: &[u8], log_key: &VerifierKey, which: &'static str) -> Result<Checkpoint, Error> {
    Policy::for_log(log_key.clone())
        .verify_checkpoint(text)
        .map(|(c, _)| c)
        .map_err(|source| Error::Checkpoint { which, source })
}

/// Verifies that checkpoint `new_text` extends `old_text`, both signed by
/// `log_key`. Two different roots at one size are a split view, and every
/// failure that is evidence carries both notes.
///
/// # Errors
///
/// An [`Error`]: a bad signature, a rollback, a split view, a proof that does
/// not verify, or tiles that yield no proof.
pub fn verify_consistency(
    old_text: &[u8],
    new_text: &[u8],
    log_key: &VerifierKey,
    proof: ConsistencyProof<'_>,
) -> Result<Consistent, Error> {
    let old = signed(old_text, log_key, "old")?;
    let new = signed(new_text, log_key, "new")?;
    let both = || {
        format!(
            "\n--- old ---\n{}--- new ---\n{}",
            String::from_utf8_lossy(old_text),
            String::from_utf8_lossy(new_text)
        )
    };
    if old.size > new.size {
        return Err(Error::Rollback {
            old: old.size,
            new: new.size,
            both: both(),
        });
    }
    if old.size == new.size {
        if old.root != new.root {
            return Err(Error::SplitView {
                size: old.size,
                both: both(),
            });
        }
        return Ok(Consistent {
            old,
            new,
            proof_len: 0,
        });
    }
    if old.size == 0 {
        // Every tree extends the empty tree.
        return Ok(Consistent {
            old,
            new,
            proof_len: 0,
        });
    }
    let proof = match proof {
        ConsistencyProof::Given(p) => p,
        ConsistencyProof::Tiles(source) => {
            let tiles = tlog::TileHashReader::new(new.size, source);
            tlog::prove_consistency(old.size, new.size, &tiles).map_err(Error::Tiles)?
        }
    };
    tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).map_err(|e| {
        Error::Inconsistent {
            old: old.size,
            new: new.size,
            reason: e.to_string(),
            both: both(),
        }
    })?;
    Ok(Consistent {
        old,
        new,
        proof_len: proof.len(),
    })
}
