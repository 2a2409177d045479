//! Admin changes in the log: before a policy is published or activated, or
//! a caller is added, revoked or rotated, the gate appends a signed
//! governance entry (`protocol::GovernanceEntry`) naming who made it, and
//! makes the change only once that entry is durable. So the log never lacks
//! a change that took effect; if the change then fails, the log holds an
//! entry for a change that did not happen, which the admin sees as an error.

use protocol::GovernanceAction as Action;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{now_ns, Gate, GateError};

impl Gate {
    /// The signed governance entry and its idempotency key in the log.
    fn governance_leaf(
        &self,
        action: Action,
        by: &str,
        subject: Value,
    ) -> Result<(Vec<u8>, Vec<u8>), GateError> {
        let (leaf, _) = self.governance_leaf_with(action, by, subject)?;
        // Receipt ids are 32 hex digits; this prefix keeps the key spaces apart.
        let key = format!("governance:{}", hex::encode(Sha256::digest(&leaf))).into_bytes();
        Ok((leaf, key))
    }

    /// A signed governance entry (the leaf) and the entry itself.
    pub(crate) fn governance_leaf_with(
        &self,
        action: Action,
        by: &str,
        subject: Value,
    ) -> Result<(Vec<u8>, protocol::GovernanceEntry), GateError> {
        let entry = protocol::GovernanceEntry {
            format: protocol::GOVERNANCE_FORMAT.into(),
            log: self.ledger.verifier().name().to_string(),
            action,
            by: by.into(),
            at: protocol::format_rfc3339_ns(now_ns()),
            subject,
        };
        let leaf = entry
            .sign(&self.gate_key)
            .map_err(|e| GateError::Internal(format!("signing a governance entry: {e}")))?;
        Ok((leaf, entry))
    }

    /// Appends a governance entry and waits until it is durable (blocking:
    /// call it off the async workers).
    ///
    /// # Errors
    ///
    /// [`GateError::Unavailable`] if the log cannot commit it: the change
    /// must then not be made.
    pub(crate) fn record_blocking(
        &self,
        action: Action,
        by: &str,
        subject: Value,
    ) -> Result<u64, GateError> {
        let (leaf, key) = self.governance_leaf(action, by, subject)?;
        let _span = governance_span(action, by).entered();
        logged(action, by, self.ledger.append_blocking(leaf, key))
    }

    /// [`Gate::record_blocking`] for async handlers.
    ///
    /// # Errors
    ///
    /// As [`Gate::record_blocking`].
    pub(crate) async fn record(
        &self,
        action: Action,
        by: &str,
        subject: Value,
    ) -> Result<u64, GateError> {
        let (leaf, key) = self.governance_leaf(action, by, subject)?;
        let append = self.ledger.append(leaf, key);
        let appended = tracing::Instrument::instrument(append, governance_span(action, by)).await;
        logged(action, by, appended)
    }
}

/// The span of an admin change (or a vote, or a redemption): a governance
/// entry appended.
fn governance_span(action: Action, by: &str) -> tracing::Span {
    tracing::info_span!(
        target: telemetry::TARGET,
        "governance",
        tollgate.governance.action = action.as_str(),
        tollgate.governance.by = by,
    )
}

/// The outcome of appending a governance entry: its index, logged, or
/// [`GateError::Unavailable`] (the change must then not be made).
fn logged(
    action: Action,
    by: &str,
    appended: Result<ledger::Appended, ledger::Error>,
) -> Result<u64, GateError> {
    let appended = appended
        .map_err(|e| GateError::Unavailable(format!("recording {action} in the log: {e}")))?;
    tracing::info!(
        action = action.as_str(),
        by,
        index = appended.index,
        "governance entry logged"
    );
    Ok(appended.index)
}
