//! Surface contracts (`protocol::Contract`): published and activated
//! through the admin API, each change a governance entry in the log first;
//! the active one checks every decision's `target` and `context` before
//! policy (`decide.rs`), so a violation is 400 naming the JSON Pointer and
//! the rule, with nothing evaluated or logged.
//!
//! Which contract is active is what the log says (`governed.rs` folds
//! `contract.activate`); the contract's bytes are stored beside the log
//! (`records.rs`, `t`) and checked against their digest when loaded.

use std::sync::{Arc, RwLock};

use protocol::{CompiledContract, Contract, GovernanceAction as Action, RequestError};
use serde_json::{json, Value};

use crate::records::Records;
use crate::{now_ns, Gate, GateError};

/// The active contract, compiled.
pub(crate) struct Contracts {
    active: RwLock<Option<Arc<CompiledContract>>>,
    /// `require_surface_contracts`: a surface no active contract covers is
    /// refused.
    require: bool,
    /// One change at a time, so memory and the log agree.
    change: tokio::sync::Mutex<()>,
}

impl Contracts {
    pub(crate) fn new(require: bool) -> Contracts {
        Contracts {
            active: RwLock::new(None),
            require,
            change: tokio::sync::Mutex::new(()),
        }
    }

    /// The active contract, if any.
    pub(crate) fn active(&self) -> Option<Arc<CompiledContract>> {
        self.active.read().expect("contract lock").clone()
    }

    fn set(&self, c: Option<Arc<CompiledContract>>) {
        *self.active.write().expect("contract lock") = c;
    }

    /// Checks a normalized request against the active contract: the
    /// contract it was checked against if its surface is covered.
    ///
    /// # Errors
    ///
    /// [`GateError::InvalidRequest`] naming the value and the rule it
    /// breaks, or `/surface` if no contract covers it and contracts are
    /// required.
    pub(crate) fn check(
        &self,
        request: &Value,
    ) -> Result<Option<Arc<CompiledContract>>, GateError> {
        let active = self.active();
        let covered = match active {
            Some(c) => c.check(request)?.then_some(c),
            None => None,
        };
        if covered.is_none() && self.require {
            return Err(GateError::InvalidRequest(RequestError {
                field: "/surface".into(),
                problem: format!(
                    "no active surface contract covers surface {:?}, and this gate requires one \
                     (require_surface_contracts)",
                    request["surface"].as_str().unwrap_or_default()
                ),
            }));
        }
        Ok(covered)
    }
}

/// Reads a published contract, checks its digest and compiles it.
pub(crate) fn load(records: Records<'_>, version: &str) -> Result<CompiledContract, GateError> {
    let stored = records.contract(version)?.ok_or_else(|| {
        GateError::NotFound(format!("surface contract {version} is not published"))
    })?;
    let contract = Contract::parse(&stored.bytes)
        .map_err(|e| GateError::Internal(format!("stored surface contract {version}: {e}")))?;
    if contract.version() != version {
        return Err(GateError::Internal(format!(
            "stored surface contract {version} has digest {}",
            contract.version()
        )));
    }
    contract
        .compile()
        .map_err(|e| GateError::Internal(format!("stored surface contract {version}: {e}")))
}

impl Gate {
    /// Publishes a surface contract (JSON): parsed strictly and every
    /// schema compiled first, recorded in the log if new, stored by
    /// version. Publishing a version again changes nothing.
    pub(crate) async fn publish_contract(
        &self,
        by: &str,
        bytes: &[u8],
    ) -> Result<protocol::ContractPublished, GateError> {
        let contract = Contract::parse(bytes).map_err(|e| GateError::BadInput(e.to_string()))?;
        contract
            .compile()
            .map_err(|e| GateError::BadInput(e.to_string()))?;
        let version = contract.version();
        let surfaces: Vec<String> = contract.surfaces.keys().cloned().collect();
        if self.records().contract(&version)?.is_none() {
            self.record(
                Action::ContractPublish,
                by,
                json!({"version": version, "surfaces": surfaces}),
            )
            .await?;
        }
        let created = self.records().publish_contract(
            &version,
            contract.canonical().as_bytes(),
            now_ns() as u64,
        )?;
        tracing::info!(%version, ?surfaces, created, "surface contract published");
        Ok(protocol::ContractPublished {
            version,
            surfaces,
            created,
        })
    }

    /// Makes `version` the active contract (`None`: none): loaded and
    /// compiled first, recorded in the log, then swapped in memory.
    pub(crate) async fn activate_contract(
        &self,
        by: &str,
        version: Option<&str>,
    ) -> Result<protocol::ContractActivation, GateError> {
        let _one_at_a_time = self.contracts.change.lock().await;
        let loaded = match version {
            Some(v) if !protocol::is_policy_version(v) => {
                return Err(GateError::BadInput(format!(
                    "{v:?} is not a contract version (sha256:<64 hex>, or none)"
                )))
            }
            Some(v) => Some(Arc::new(load(self.records(), v)?)),
            None => None,
        };
        self.record(Action::ContractActivate, by, json!({ "version": version }))
            .await?;
        let previous = self.contracts.active().map(|c| c.version().to_string());
        self.contracts.set(loaded);
        tracing::info!(?version, ?previous, "surface contract activated");
        Ok(protocol::ContractActivation {
            active: version.map(str::to_string),
            previous,
        })
    }

    /// Every published contract, and which one is active.
    pub(crate) fn contract_list(&self) -> Result<protocol::ContractList, GateError> {
        let active = self.contracts.active().map(|c| c.version().to_string());
        let versions = crate::admin::listed(self.records().contract_versions()?, active.as_deref());
        Ok(protocol::ContractList { active, versions })
    }

    /// A published contract's canonical JSON.
    pub(crate) fn contract_json(&self, version: &str) -> Result<Vec<u8>, GateError> {
        self.records()
            .contract(version)?
            .map(|c| c.bytes)
            .ok_or_else(|| {
                GateError::NotFound(format!("surface contract {version} is not published"))
            })
    }

    /// Takes up the active contract the log names (another gate on a
    /// shared log changed it): the log read to its latest checkpoint under
    /// the change lock, so an activation this gate just logged is never
    /// undone by a fold read before it.
    pub(crate) async fn follow_contract(self: &Arc<Self>) -> Result<(), GateError> {
        let _one_at_a_time = self.contracts.change.lock().await;
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            gate.read_log()?;
            gate.take_logged_contract()
        })
        .await
        .map_err(|e| GateError::Internal(e.to_string()))?
    }

    /// Makes the contract the log (as read) names the active one, loading
    /// it if it differs. Blocking.
    pub(crate) fn take_logged_contract(&self) -> Result<(), GateError> {
        let version = self.governance.with(|fold| fold.contract.clone());
        let current = self.contracts.active();
        if current.as_ref().map(|c| c.version()) == version.as_deref() {
            return Ok(());
        }
        let loaded = version
            .as_deref()
            .map(|v| load(self.records(), v).map(Arc::new))
            .transpose()?;
        tracing::info!(?version, "the log names another active surface contract");
        self.contracts.set(loaded);
        Ok(())
    }
}

impl Gate {
    /// Erases the opening of committed `field` of receipt `receipt_id`: a
    /// `receipt.erase` entry (who, which receipt, which field, why) is
    /// logged first, then the opening is erased from the store's files. The
    /// log and every proof stay valid; the value is gone. Blocking.
    ///
    /// # Errors
    ///
    /// [`GateError::NotFound`] for an unknown receipt or a field it does
    /// not commit or whose opening is gone; [`GateError::BadInput`] without
    /// a reason; [`GateError::Unavailable`] if the log cannot commit the
    /// entry (nothing is erased then).
    pub(crate) fn erase(
        &self,
        by: &str,
        receipt_id: &str,
        field: &str,
        reason: &str,
    ) -> Result<protocol::Erasure, GateError> {
        if reason.trim().is_empty() || reason.len() > 1024 {
            return Err(GateError::BadInput(
                "an erasure needs a reason (1 to 1024 bytes): it is logged".into(),
            ));
        }
        let (index, _) = self
            .ledger
            .lookup(receipt_id.as_bytes())?
            .ok_or_else(|| GateError::NotFound(format!("no receipt {receipt_id}")))?;
        let (_, body) = protocol::parse_receipt(&self.ledger.entry(index)?)
            .map_err(|e| GateError::Internal(format!("stored receipt {receipt_id}: {e}")))?;
        let committed = protocol::committed_fields(&body.derived);
        if !committed.iter().any(|f| f == field) {
            return Err(GateError::NotFound(format!(
                "receipt {receipt_id} commits no field {field:?} (it commits {committed:?})"
            )));
        }
        let held = self.records().openings(receipt_id, &[field.to_string()])?;
        if held.is_empty() {
            return Err(GateError::NotFound(format!(
                "the opening of {field} of receipt {receipt_id} was erased before"
            )));
        }
        let entry = self.record_blocking(
            Action::ReceiptErase,
            by,
            json!({"receipt_id": receipt_id, "index": index, "field": field, "reason": reason}),
        )?;
        self.records().erase_opening(receipt_id, field)?;
        tracing::info!(%receipt_id, field, by, entry, "opening erased");
        Ok(protocol::Erasure {
            receipt_id: receipt_id.to_string(),
            field: field.to_string(),
            entry,
        })
    }
}
