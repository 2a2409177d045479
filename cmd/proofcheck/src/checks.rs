//! Single checks: a saved decision, two checkpoints, a replay.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use note::{Checkpoint, Policy, ProofBundle, VerifierKey};
use policy::Bundle;
use protocol::{
    parse_receipt, verify_receipt, Decision, DecisionResponse, ReceiptBody, ReplayResponse,
};
use serde::Serialize;
use tlog::Hash;

use crate::{failed, Error, Log};

/// What `proofcheck receipt` verified.
#[derive(Debug, Serialize)]
pub struct ReceiptReport {
    /// The receipt's id.
    pub receipt_id: String,
    /// The decision it records.
    pub decision: Decision,
    /// Its index in the log.
    pub log_index: u64,
    /// The log's origin.
    pub origin: String,
    /// Size of the checkpoint the proof leads to.
    pub checkpoint_size: u64,
    /// That checkpoint's root, base64.
    pub checkpoint_root: String,
    /// Witness cosignatures that verified (when a witness policy was given).
    pub witnesses: Vec<String>,
}

/// The receipt bytes in a saved decision response (`{"receipt": …, "proof": …}`).
fn saved_response(saved: &[u8]) -> Result<DecisionResponse, Error> {
    serde_json::from_slice(saved).or_else(|e| {
        failed(format!(
            "the file is not a saved decision response (the JSON the gate answered): {e}"
        ))
    })
}

/// Verifies a saved decision response: the receipt's gate signature and
/// body, that the response says what the receipt says, the inclusion proof
/// to its checkpoint, the checkpoint's log signature, and with `witnesses`
/// (a C2SP tlog-policy) that its cosignatures meet the quorum.
///
/// # Errors
///
/// [`Error::Failed`] naming the first check that failed.
pub fn check_receipt(
    saved: &[u8],
    log_key: &VerifierKey,
    gate_key: &VerifierKey,
    witnesses: Option<&Policy>,
) -> Result<ReceiptReport, Error> {
    let r = saved_response(saved)?;
    let body = verify_receipt(r.receipt.as_bytes(), gate_key)
        .or_else(|e| failed(format!("receipt {}: {e}", r.receipt_id)))?;
    if body.receipt_id != r.receipt_id
        || body.decision != r.decision
        || body.policy.as_ref().map(|p| &p.version) != r.policy_version.as_ref()
    {
        return failed(
            "the response's receipt_id, decision or policy_version differ from the signed receipt's",
        );
    }
    let bundle = ProofBundle::parse(&r.proof).or_else(|e| failed(format!("proof: {e}")))?;
    if bundle.index != r.log_index {
        return failed(format!(
            "the proof is for index {}, the response says {}",
            bundle.index, r.log_index
        ));
    }
    let own;
    let policy = match witnesses {
        Some(p) => {
            if !p.log_keys().any(|k| k == log_key) {
                return Err(Error::Io(
                    "the witness policy does not name the --log-key as a log".into(),
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
    let checkpoint = bundle
        .verify(&leaf, policy)
        .or_else(|e| failed(format!("proof of index {} : {e}", bundle.index)))?;
    if checkpoint.origin != body.log {
        return failed(format!(
            "the receipt names log {:?}, the checkpoint is of {:?}",
            body.log, checkpoint.origin
        ));
    }
    let cosigners = match witnesses {
        Some(p) => {
            let note = note::Note::parse(bundle.checkpoint.as_bytes())
                .or_else(|e| failed(format!("checkpoint: {e}")))?;
            let known: Vec<VerifierKey> = p.witnesses().map(|(_, k, _)| k.clone()).collect();
            note.verify(&known)
                .map(|v| v.iter().map(|w| w.key.name().to_string()).collect())
                .unwrap_or_default()
        }
        None => Vec::new(),
    };
    Ok(ReceiptReport {
        receipt_id: body.receipt_id,
        decision: body.decision,
        log_index: bundle.index,
        origin: checkpoint.origin,
        checkpoint_size: checkpoint.size,
        checkpoint_root: B64.encode(checkpoint.root.0),
        witnesses: cosigners,
    })
}

/// What `proofcheck consistency` verified.
#[derive(Debug, Serialize)]
pub struct ConsistencyReport {
    /// The old tree size.
    pub old_size: u64,
    /// The new tree size.
    pub new_size: u64,
    /// Hashes in the proof.
    pub proof_len: usize,
}

/// Parses a consistency proof file: one base64 hash per line.
///
/// # Errors
///
/// [`Error::Failed`] for a line that is not a base64 32-byte hash.
pub fn parse_hashes(text: &str) -> Result<Vec<Hash>, Error> {
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            B64.decode(l.trim())
                .ok()
                .and_then(|b| Hash::from_slice(&b))
                .map_or_else(
                    || failed(format!("proof line {}: not a base64 32-byte hash", i + 1)),
                    Ok,
                )
        })
        .collect()
}

fn signed(text: &[u8], log_key: &VerifierKey, what: &str) -> Result<Checkpoint, Error> {
    Policy::for_log(log_key.clone())
        .verify_checkpoint(text)
        .map(|(c, _)| c)
        .or_else(|e| failed(format!("{what} checkpoint: {e}")))
}

/// Verifies that the checkpoint `new` extends `old`, both signed by
/// `log_key`: with `proof`, or with a proof computed from `log`'s tiles
/// (tiles are untrusted; the proof is verified against the signed roots).
/// Two different roots at one size are a split view: the failure shows both.
///
/// # Errors
///
/// [`Error::Failed`] for a bad signature, a rollback, a split view or a
/// proof that does not verify; [`Error::Io`] if no proof source is given.
pub fn check_consistency(
    old_text: &[u8],
    new_text: &[u8],
    log_key: &VerifierKey,
    proof: Option<Vec<Hash>>,
    log: Option<&Log>,
) -> Result<ConsistencyReport, Error> {
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
        return failed(format!(
            "the old checkpoint ({}) is larger than the new one ({}): a rollback{}",
            old.size,
            new.size,
            both()
        ));
    }
    if old.size == new.size {
        if old.root != new.root {
            return failed(format!(
                "split view: two checkpoints of size {} with different roots, both validly signed{}",
                old.size,
                both()
            ));
        }
        return Ok(ConsistencyReport {
            old_size: old.size,
            new_size: new.size,
            proof_len: 0,
        });
    }
    if old.size == 0 {
        // Every tree extends the empty tree.
        return Ok(ConsistencyReport {
            old_size: 0,
            new_size: new.size,
            proof_len: 0,
        });
    }
    let proof = match (proof, log) {
        (Some(p), _) => p,
        (None, Some(log)) => {
            let tiles = tlog::TileHashReader::new(new.size, log);
            tlog::prove_consistency(old.size, new.size, &tiles)
                .map_err(|e| Error::Io(format!("computing the proof from tiles: {e}")))?
        }
        (None, None) => return Err(Error::Io("give --proof FILE or --log URL".into())),
    };
    tlog::verify_consistency(old.size, new.size, &old.root, &new.root, &proof).or_else(|e| {
        failed(format!(
            "size {} is not consistent with size {}: {e}{}",
            new.size,
            old.size,
            both()
        ))
    })?;
    Ok(ConsistencyReport {
        old_size: old.size,
        new_size: new.size,
        proof_len: proof.len(),
    })
}

/// What `proofcheck replay` found: the same fields as the gate's
/// `/v1/replay` answer, and whether the signature was checked.
#[derive(Debug, Serialize)]
pub struct ReplayReport {
    /// Recorded and replayed decisions.
    #[serde(flatten)]
    pub replay: ReplayResponse,
    /// Whether the receipt's gate signature was checked.
    pub signature_checked: bool,
}

/// Where the policy bundle comes from.
pub enum PolicySource<'a> {
    /// A bundle directory.
    Dir(&'a std::path::Path),
    /// A bundle `.tar.gz`.
    File(&'a std::path::Path),
    /// The gate: `GET /v1/policies/{version}`.
    Url(&'a Log),
}

/// Re-evaluates a receipt's recorded request and derived context under its
/// recorded policy version. The bundle's digest must equal that version.
///
/// # Errors
///
/// [`Error::Failed`] for a receipt that does not verify or a bundle of another
/// version; [`Error::Io`] if the bundle cannot be read.
pub fn replay(
    saved: &[u8],
    gate_key: Option<&VerifierKey>,
    source: PolicySource<'_>,
) -> Result<ReplayReport, Error> {
    let receipt = match serde_json::from_slice::<DecisionResponse>(saved) {
        Ok(r) => r.receipt.into_bytes(),
        Err(_) => saved.to_vec(),
    };
    let body: ReceiptBody = match gate_key {
        Some(k) => verify_receipt(&receipt, k),
        None => parse_receipt(&receipt).map(|(_, b)| b),
    }
    .or_else(|e| failed(format!("receipt: {e}")))?;
    let bundle = match &body.policy {
        None => None,
        Some(p) => Some(
            match source {
                PolicySource::Dir(d) => Bundle::from_dir(d),
                PolicySource::File(f) => {
                    let bytes =
                        std::fs::read(f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?;
                    Bundle::from_tar_gz(&bytes, None)
                }
                PolicySource::Url(log) => {
                    let bytes = log.must_get(&format!("v1/policies/{}", p.version))?;
                    Bundle::from_tar_gz(&bytes, None)
                }
            }
            .map_err(|e| Error::Io(format!("policy bundle: {e}")))?,
        ),
    };
    let evaluation =
        policy::replay_receipt(&body, bundle.as_ref()).or_else(|e| failed(e.to_string()))?;
    Ok(ReplayReport {
        replay: ReplayResponse::compare(&body, evaluation.decision, evaluation.reason),
        signature_checked: gate_key.is_some(),
    })
}
