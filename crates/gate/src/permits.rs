//! Redeeming PERMITs: single use that holds across a tool's replicas and
//! restarts.
//!
//! A tool's service that verified a permit (the SDKs' surface verifiers)
//! redeems it here before it runs the call: `POST
//! /v1/permits/{receipt_id}/redeem` with `{"surface": …}`, by a caller with
//! the `redeem` role. The gate checks that the receipt is a PERMIT in its
//! log for that surface, then appends a signed `permit.redeem` governance
//! entry (`{receipt_id, index, surface}`, by the redeeming caller) whose
//! idempotency key is the receipt id's: the ledger takes one leaf per key,
//! atomically (on a shared log too), so a permit is redeemed exactly once
//! and the log shows which PERMITs were used, where and by whom. A second
//! redemption is 409 `permit_redeemed`, naming the first — unless it is a
//! retry of the first: a redeemer may send an `idempotency_key` of its own
//! (recorded in the entry), and the same key is answered with the
//! redemption it made.

use protocol::Decision;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::callers::Caller;
use crate::{Gate, GateError};

/// A redemption, as answered (and, for a second one, as the first is named).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    /// The permit's receipt id.
    pub receipt_id: String,
    /// The log index of the `permit.redeem` entry.
    pub index: u64,
    /// Who redeemed it (`caller:<name>`).
    pub by: String,
    /// When (RFC 3339).
    pub at: String,
    /// Where.
    pub surface: String,
    /// The redeemer's key, if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The ledger idempotency key of a permit's redemption. Receipt ids are 32
/// hex digits and governance keys start `governance:`; this prefix keeps
/// the three key spaces apart.
fn redeem_key(receipt_id: &str) -> Vec<u8> {
    format!("redeem:{receipt_id}").into_bytes()
}

impl Gate {
    /// Redeems the PERMIT `receipt_id` at `surface` for `caller`.
    pub(crate) async fn redeem(
        &self,
        caller: &Caller,
        receipt_id: &str,
        surface: &str,
        key: Option<&str>,
    ) -> Result<Redemption, GateError> {
        if key.is_some_and(|k| k.is_empty() || k.len() > 128) {
            return Err(GateError::BadInput(
                "idempotency_key: 1 to 128 bytes".into(),
            ));
        }
        if receipt_id.len() != 32 || !receipt_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(GateError::BadInput(format!(
                "receipt id {receipt_id:?}: 32 hex digits"
            )));
        }
        let Some((index, _)) = self.ledger.lookup(receipt_id.as_bytes())? else {
            return Err(GateError::NotFound(format!("no receipt {receipt_id}")));
        };
        let (_, body) = protocol::parse_receipt(&self.ledger.entry(index)?)
            .map_err(|e| GateError::Internal(format!("stored receipt {receipt_id}: {e}")))?;
        if body.decision != Decision::Permit {
            return Err(GateError::BadInput(format!(
                "receipt {receipt_id} records {}, not PERMIT: nothing to redeem",
                body.decision.as_str()
            )));
        }
        if body.request["surface"].as_str() != Some(surface) {
            return Err(GateError::BadInput(format!(
                "receipt {receipt_id} permits a call on surface {}, not {surface:?}",
                body.request["surface"]
            )));
        }
        let by = format!("caller:{}", caller.name);
        let mut subject = json!({"receipt_id": receipt_id, "index": index, "surface": surface});
        if let Some(k) = key {
            subject["idempotency_key"] = json!(k);
        }
        let (leaf, entry) =
            self.governance_leaf_with(protocol::GovernanceAction::PermitRedeem, &by, subject)?;
        match self.ledger.append(leaf, redeem_key(receipt_id)).await {
            Ok(appended) => {
                tracing::info!(%receipt_id, by, index = appended.index, "permit redeemed");
                Ok(Redemption {
                    receipt_id: receipt_id.to_string(),
                    index: appended.index,
                    by,
                    at: entry.at,
                    surface: surface.to_string(),
                    idempotency_key: key.map(str::to_string),
                })
            }
            Err(ledger::Error::Conflict { index }) => {
                let first = self.redemption_at(index)?;
                if key.is_some() && first.idempotency_key.as_deref() == key {
                    // A retry of the redemption that was made.
                    return Ok(first);
                }
                Err(GateError::Redeemed(format!(
                    "permit {receipt_id} was already redeemed at {} by {} on {} (log entry {})",
                    first.surface, first.by, first.at, first.index
                )))
            }
            Err(e) => Err(GateError::Unavailable(format!(
                "recording the redemption of {receipt_id}: {e}"
            ))),
        }
    }

    /// The redemption logged at `index`.
    fn redemption_at(&self, index: u64) -> Result<Redemption, GateError> {
        let leaf = self.ledger.entry(index)?;
        let (_, g) = protocol::parse_governance(&leaf)
            .map_err(|e| GateError::Internal(format!("redemption entry {index}: {e}")))?;
        let field = |k: &str| g.subject[k].as_str().unwrap_or_default().to_string();
        Ok(Redemption {
            receipt_id: field("receipt_id"),
            index,
            by: g.by.clone(),
            at: g.at.clone(),
            surface: field("surface"),
            idempotency_key: g.subject["idempotency_key"].as_str().map(str::to_string),
        })
    }
}
