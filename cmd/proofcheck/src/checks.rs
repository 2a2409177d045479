//! Single checks: a saved decision, two checkpoints, a replay.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use note::{Policy, VerifierKey};
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
    /// The committed fields: `opened` (the saved response's opening opens
    /// the commitment) or `erased` (no opening: committed, opening erased).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub committed: Vec<(String, protocol::FieldStatus)>,
}

/// The receipt bytes in a saved decision response (`{"receipt": …, "proof": …}`).
fn saved_response(saved: &[u8]) -> Result<DecisionResponse, Error> {
    serde_json::from_slice(saved).or_else(|e| {
        failed(format!(
            "the file is not a saved decision response (the JSON the gate answered): {e}"
        ))
    })
}

impl From<verify::Error> for Error {
    fn from(e: verify::Error) -> Error {
        if e.is_verification_failure() {
            Error::Failed(e.to_string())
        } else {
            Error::Io(e.to_string())
        }
    }
}

/// Verifies a saved decision response with [`verify::verify_decision`]: the
/// receipt's gate signature and body, that the response says what the
/// receipt says, the inclusion proof to its checkpoint, the checkpoint's log
/// signature, and with `witnesses` (a C2SP tlog-policy) that its
/// cosignatures meet the quorum.
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
    let v = verify::verify_decision(&r, log_key, gate_key, witnesses)?;
    Ok(ReceiptReport {
        receipt_id: v.receipt.receipt_id,
        decision: v.receipt.decision,
        log_index: v.index,
        origin: v.checkpoint.origin,
        checkpoint_size: v.checkpoint.size,
        checkpoint_root: B64.encode(v.checkpoint.root.0),
        witnesses: v.cosigners,
        committed: v.committed,
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
    let proof = match (proof, log) {
        (Some(p), _) => verify::ConsistencyProof::Given(p),
        (None, Some(log)) => verify::ConsistencyProof::Tiles(log),
        (None, None) => return Err(Error::Io("give --proof FILE or --log URL".into())),
    };
    let c = verify::verify_consistency(old_text, new_text, log_key, proof)?;
    Ok(ConsistencyReport {
        old_size: c.old.size,
        new_size: c.new.size,
        proof_len: c.proof_len,
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
    /// The surface contract the receipt names when it could not be checked
    /// (no `--contract` file, and the policy not fetched from the gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contract_unchecked: Option<String>,
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
    contract: Option<&std::path::Path>,
) -> Result<ReplayReport, Error> {
    let (receipt, openings) = match serde_json::from_slice::<DecisionResponse>(saved) {
        Ok(r) => (r.receipt.into_bytes(), r.openings.unwrap_or_default()),
        Err(_) => (saved.to_vec(), protocol::Openings::new()),
    };
    let mut body: ReceiptBody = match gate_key {
        Some(k) => verify_receipt(&receipt, k),
        None => parse_receipt(&receipt).map(|(_, b)| b),
    }
    .or_else(|e| failed(format!("receipt: {e}")))?;
    // Committed fields: opened with the saved response's openings (each
    // checked against its commitment); the rest cannot be checked.
    let committed = protocol::committed_fields(&body.derived);
    protocol::check_openings(&body.request, &committed, &openings).or_else(failed)?;
    let (opened, unopened) = protocol::open_request(&body.request, &committed, &openings);
    body.request = opened;
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
    // The surface contract the receipt names: from --contract, or the gate.
    let named = body.derived["contract"].as_str().map(str::to_string);
    let contract_bytes = match (&named, contract, &source) {
        (None, _, _) => None,
        (Some(_), Some(f), _) => {
            Some(std::fs::read(f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?)
        }
        (Some(v), None, PolicySource::Url(log)) => {
            Some(log.must_get(&format!("v1/contracts/{v}"))?)
        }
        (Some(_), None, _) => None,
    };
    let checked = match (&named, contract_bytes) {
        (Some(v), Some(bytes)) => {
            let c = protocol::Contract::parse(&bytes)
                .map_err(|e| Error::Io(format!("surface contract: {e}")))?;
            if c.version() != *v {
                return failed(format!(
                    "the surface contract given is {}, the receipt names {v}",
                    c.version()
                ));
            }
            let compiled = c
                .compile()
                .map_err(|e| Error::Io(format!("surface contract: {e}")))?;
            Some(compiled.replay(&body.request, &unopened))
        }
        _ => None,
    };
    Ok(ReplayReport {
        contract_unchecked: named.filter(|_| checked.is_none()),
        replay: ReplayResponse {
            unopened,
            ..ReplayResponse::compare(&body, evaluation.decision, evaluation.reason)
                .with_contract(checked)
        },
        signature_checked: gate_key.is_some(),
    })
}
