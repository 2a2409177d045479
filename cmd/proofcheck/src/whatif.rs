//! What-if: the logged decisions re-evaluated under a candidate policy,
//! each with the request and derived context its receipt recorded (decision
//! time, actor, caller), tallied by transition (PERMIT → DENY, …) with
//! example receipt ids. Every receipt's gate signature is verified; the log
//! itself is verified by `audit`, not here.

use std::collections::BTreeMap;

use note::{Checkpoint, Policy, VerifierKey};
use policy::{Bundle, CompiledPolicy};
use protocol::Entry;
use tlog::{Tile, TILE_WIDTH};

use crate::{failed, Error, Log};

/// How many example receipt ids a transition keeps.
const EXAMPLES: usize = 3;

/// The outcome of a what-if run.
#[derive(Debug, serde::Serialize)]
pub struct WhatIf {
    /// The candidate's version.
    pub candidate: String,
    /// The log size walked to (a signed checkpoint).
    pub size: u64,
    /// Receipts re-evaluated.
    pub evaluated: u64,
    /// (recorded, under the candidate) → how many, and example receipt ids.
    pub transitions: BTreeMap<String, (u64, Vec<String>)>,
}

/// Re-evaluates every receipt from index `from` to the log's checkpoint
/// under `candidate`, as if it had been the active policy (its version rule
/// included: a request that pinned another version is SILENCE).
///
/// # Errors
///
/// [`Error::Failed`] for a receipt that does not verify or an entry bundle
/// that is malformed; [`Error::Io`] for fetches.
pub fn what_if(
    log: &Log,
    log_key: &VerifierKey,
    gate_key: &VerifierKey,
    candidate: &Bundle,
    from: u64,
) -> Result<WhatIf, Error> {
    let text = log.must_get("log/checkpoint")?;
    let (cp, _): (Checkpoint, _) = Policy::for_log(log_key.clone())
        .verify_checkpoint(&text)
        .or_else(|e| failed(format!("the log's checkpoint: {e}")))?;
    let compiled = CompiledPolicy::compile(candidate)
        .or_else(|e| failed(format!("the candidate policy: {e}")))?;
    let version = candidate.version();
    let width = u64::from(TILE_WIDTH);
    let mut out = WhatIf {
        candidate: version.clone(),
        size: cp.size,
        evaluated: 0,
        transitions: BTreeMap::new(),
    };
    for b in from / width..cp.size.div_ceil(width) {
        let tile = Tile::entries_in_tree(b, cp.size).expect("bundle within the tree");
        let bytes = log.must_get(&format!("log/{}", tile.path()))?;
        let entries = tlog::decode_entry_bundle(&bytes)
            .or_else(|e| failed(format!("{}: {e}", tile.path())))?;
        for (i, e) in entries.iter().enumerate() {
            let index = b * width + i as u64;
            if index < from || !matches!(protocol::parse_entry(e), Ok((_, Entry::Receipt(_)))) {
                continue;
            }
            let body = protocol::verify_receipt(e, gate_key)
                .or_else(|err| failed(format!("entry {index}: {err}")))?;
            let input = policy::EvalInput {
                request: body.request.clone(),
                derived: body
                    .policy_derived()
                    .or_else(|err| failed(format!("entry {index}: {err}")))?,
            };
            let now = compiled.decide(&version, &input).decision;
            let key = format!("{} → {}", body.decision.as_str(), now.as_str());
            let t = out.transitions.entry(key).or_default();
            t.0 += 1;
            if t.1.len() < EXAMPLES {
                t.1.push(body.receipt_id.clone());
            }
            out.evaluated += 1;
        }
    }
    Ok(out)
}
