//! What the log says: the callers and the active and shadow policy versions
//! a gate relies on are folded from the governance entries of the verified
//! log, never taken from the state store.
//!
//! Anyone who can write the store (the data directory, the shared
//! database) could write a caller record or an active-version pointer; no
//! one without the gate key can sign a governance entry, and no one without
//! the log key can sign a checkpoint over a changed log. So a gate reads the
//! log from the start, hashes every entry into a [`tlog::Frontier`], and
//! applies the governance entries it read (`caller.*`, `policy.activate`,
//! `policy.shadow`, each signed by the gate key) only once the entries hash
//! to the root of a checkpoint the log key signed. The store's records
//! (`k`, `a`, `s`) are written beside each entry as before, as a mirror for
//! people and tools: the gate compares them with what the log says, and a
//! record the log does not back is refused, counted
//! (`tollgate_state_records_refused_total{kind="caller"|"policy"}`) and
//! logged.
//!
//! The same fold keeps the open approval requests (`Asked`, by digest): a
//! SILENCE whose reason asks for approvals opens one, `approval.approve`
//! entries logged while it is open are its votes (with the expiry they
//! carry), an `approval.reject` or a PERMIT that relied on its approvals
//! closes it. A decision attaches a vote only if the fold, read to the
//! latest checkpoint first, lets it count — so an approval record whose use,
//! rejection or expiry was erased, or that names a vote the log does not
//! hold, lends nothing.
//!
//! Reading the whole log at every start would cost O(log size), so the gate
//! keeps a snapshot of the fold in the store (`g`): a JSON body (the
//! frontier, the size read through, what the entries said) after a note in
//! which the gate key signs the body's SHA-256. A restart reads only the entries after it. The snapshot
//! decides nothing by itself: one rolled back to an older (still
//! gate-signed) snapshot only makes the gate read more of the log, and one
//! that does not verify is refused, counted (`kind="snapshot"`) and the log
//! read from its start.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use ledger::Ledger;
use note::{Checkpoint, Note, VerifierKey};
use protocol::{GovernanceAction as Action, GovernanceEntry};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::callers::Caller;
use crate::metrics::Refused;
use crate::records::Records;
use crate::{Gate, GateError};

/// Every governance entry's note text starts so: RFC 8785 sorts its members
/// and `action` comes first. Receipts never do, so reading the log parses
/// only the governance entries.
const GOVERNANCE_START: &[u8] = b"{\"action\":\"";

/// Whether a receipt may open or close an approval request (its text
/// names approvals), so that it is parsed; most are not.
fn may_touch_approvals(leaf: &[u8]) -> bool {
    let text = std::str::from_utf8(leaf).unwrap_or_default();
    text.contains(policy::APPROVAL_REASON_MARK) || text.contains("\"approvals\":[{")
}

/// Entries read at once.
const READ_AT_ONCE: u64 = 256;

/// The snapshot's `format`.
const SNAPSHOT_FORMAT: &str = "tollgate.governed/v1";

/// A snapshot is written again once the log grew this much past the last
/// one (or when what the log says changed).
const SNAPSHOT_EVERY: u64 = 1 << 16;

/// What the governance entries of `[0, frontier.size())` say.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Governed {
    /// The hashes of every entry read: its size is how far the log was read.
    frontier: tlog::Frontier,
    /// Every caller ever added, revoked ones included, by name.
    pub(crate) callers: BTreeMap<String, Caller>,
    /// The active policy version.
    pub(crate) active: Option<String>,
    /// The shadow policy version.
    pub(crate) shadow: Option<String>,
    /// The active surface contract's version.
    pub(crate) contract: Option<String>,
    /// The open approval requests, by digest ([`protocol::approval_id`]).
    pub(crate) asked: BTreeMap<String, Asked>,
}

/// What the log says of one open approval request: a SILENCE that asked
/// for approvals opened it; an `approval.reject`, or a PERMIT that relied
/// on its approvals, closes it. Only votes logged while it is open count.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Asked {
    /// When the SILENCE that opened it was decided (UNIX ns).
    opened_ns: i64,
    /// Its `approval.approve` entries, by index: who, and until when (the
    /// request's expiry, which votes logged since issue 30 carry).
    votes: BTreeMap<u64, (String, Option<i64>)>,
}

impl Asked {
    /// Whether the vote at `entry` by caller `by` counts at `now_ns`.
    pub(crate) fn counts(&self, entry: u64, by: &str, now_ns: i64) -> bool {
        self.votes
            .get(&entry)
            .is_some_and(|(who, until)| who == by && until.is_none_or(|t| now_ns < t))
    }
}

/// The most open approval requests the fold keeps (about 200 bytes each).
const MAX_ASKED: usize = 1 << 20;

/// The longest an approval request lives (`policy::APPROVAL_TTL_RANGE`), and
/// ten minutes of clock slack: an open request older than this is dropped.
const ASKED_AT_MOST_NS: i64 = (*policy::APPROVAL_TTL_RANGE.end() as i64 + 600) * 1_000_000_000;

impl Governed {
    /// How far the log was read.
    pub(crate) fn through(&self) -> u64 {
        self.frontier.size()
    }

    /// Applies one governance entry, in log order. Returns whether it
    /// changed a caller or a policy version.
    fn apply(&mut self, index: u64, g: &GovernanceEntry) -> bool {
        let s = &g.subject;
        let name = s["name"].as_str().unwrap_or_default();
        let digest = || {
            s["token_sha256"]
                .as_str()
                .filter(|d| d.len() == 64 && d.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_ascii_lowercase)
                .unwrap_or_default()
        };
        let live = self
            .callers
            .get_mut(name)
            .filter(|c| c.revoked_at.is_none());
        match g.action {
            Action::CallerAdd => {
                if !self.callers.contains_key(name) {
                    let caller = Caller {
                        name: name.to_string(),
                        roles: serde_json::from_value(s["roles"].clone()).unwrap_or_default(),
                        actors: serde_json::from_value(s["actors"].clone()).unwrap_or_default(),
                        token_sha256: digest(),
                        created_at: g.at.clone(),
                        rotated_at: None,
                        revoked_at: None,
                    };
                    self.callers.insert(name.to_string(), caller);
                }
            }
            Action::CallerRotate => {
                if let Some(c) = live {
                    c.token_sha256 = digest();
                    c.rotated_at = Some(g.at.clone());
                }
            }
            Action::CallerAttest => {
                if let Some(c) = live.filter(|c| c.token_sha256.is_empty()) {
                    c.token_sha256 = digest();
                }
            }
            Action::CallerRevoke => {
                if let Some(c) = live {
                    c.revoked_at = Some(g.at.clone());
                }
            }
            Action::PolicyActivate => {
                if let Some(v) = s["version"]
                    .as_str()
                    .filter(|v| protocol::is_policy_version(v))
                {
                    self.active = Some(v.to_string());
                }
            }
            Action::PolicyShadow => match &s["version"] {
                Value::Null => self.shadow = None,
                Value::String(v) if protocol::is_policy_version(v) => self.shadow = Some(v.clone()),
                _ => {}
            },
            Action::ContractActivate => match &s["version"] {
                Value::Null => self.contract = None,
                Value::String(v) if protocol::is_policy_version(v) => {
                    self.contract = Some(v.clone());
                }
                _ => {}
            },
            Action::ApprovalApprove => {
                let by = g.by.strip_prefix("caller:").unwrap_or_default().to_string();
                let until = s["expires_at"]
                    .as_str()
                    .and_then(|t| protocol::parse_rfc3339_ns(t).ok());
                if let Some(asked) = s["digest"].as_str().and_then(|d| self.asked.get_mut(d)) {
                    asked.votes.insert(index, (by, until));
                }
                return false;
            }
            Action::ApprovalReject => {
                if let Some(d) = s["digest"].as_str() {
                    self.asked.remove(d);
                }
                return false;
            }
            _ => return false,
        }
        true
    }

    /// Applies a receipt that opens or closes an approval request: a
    /// SILENCE whose reason asks for approvals opens its request (if it is
    /// not open); a PERMIT that relied on approvals closes it.
    fn apply_receipt(&mut self, body: &protocol::ReceiptBody) {
        let relied = body.derived["approvals"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        let asks = body.decision == protocol::Decision::Silence
            && body.reason.contains(policy::APPROVAL_REASON_MARK);
        let uses = relied && body.decision == protocol::Decision::Permit;
        if !(asks || uses) {
            return;
        }
        let digest = protocol::approval_id(&body.request).1;
        if asks {
            let opened_ns = protocol::parse_rfc3339_ns(&body.decided_at).unwrap_or_default();
            self.asked.entry(digest).or_insert(Asked {
                opened_ns,
                votes: BTreeMap::new(),
            });
            if self.asked.len() > MAX_ASKED {
                self.forget_oldest_half();
            }
        } else {
            self.asked.remove(&digest);
        }
    }

    /// Past [`MAX_ASKED`] open requests (a caller asking for many distinct
    /// approvals at once): the older half is dropped. That fails closed —
    /// a vote on a dropped request counts no more, and the request must be
    /// asked again — and keeps the gate's memory bounded.
    fn forget_oldest_half(&mut self) {
        let mut ages: Vec<i64> = self.asked.values().map(|a| a.opened_ns).collect();
        let mid = ages.len() / 2;
        let (_, cutoff, _) = ages.select_nth_unstable(mid);
        let cutoff = *cutoff;
        self.asked.retain(|_, a| a.opened_ns >= cutoff);
        tracing::warn!(
            open = self.asked.len(),
            "more than {MAX_ASKED} approval requests open at once: the older ones were dropped, \
             their votes count no more (ask again)"
        );
    }

    /// Drops the requests that expired for certain.
    fn forget_expired(&mut self, now_ns: i64) {
        self.asked
            .retain(|_, a| now_ns < a.opened_ns.saturating_add(ASKED_AT_MOST_NS));
    }

    /// Reads the log from where this fold stopped to checkpoint `to`,
    /// hashing every entry, and applies the governance entries signed by
    /// `gate` once the entries hash to `to`'s root; if they do not (the
    /// store was changed), nothing is applied. Returns whether anything a
    /// gate relies on changed. Blocking.
    fn read(
        &mut self,
        ledger: &Ledger,
        to: &Checkpoint,
        gate: &VerifierKey,
    ) -> Result<bool, GateError> {
        let from = self.through();
        if to.size <= from {
            // Nothing new (a snapshot another gate wrote may be ahead of
            // the checkpoint this one has learnt).
            return Ok(false);
        }
        let mut frontier = self.frontier.clone();
        let mut found = Vec::new();
        let mut at = from;
        while at < to.size {
            let n = (to.size - at).min(READ_AT_ONCE);
            for (index, leaf) in (at..).zip(ledger.entries(at, n)?) {
                frontier.push(tlog::leaf_hash(&leaf));
                if leaf.starts_with(GOVERNANCE_START) || may_touch_approvals(&leaf) {
                    found.push((index, leaf));
                }
            }
            at += n;
        }
        if frontier.root() != to.root {
            return Err(GateError::Internal(format!(
                "the log's entries {from}..{} do not hash to the root its checkpoint signs: \
                 the store was changed; nothing read from them is relied on",
                to.size
            )));
        }
        let mut changed = false;
        for (index, leaf) in found {
            let checked = protocol::parse_entry(&leaf).and_then(|(note, e)| {
                note.verify(std::slice::from_ref(gate))?;
                Ok(e)
            });
            match checked {
                Ok(protocol::Entry::Governance(g)) => changed |= self.apply(index, &g),
                Ok(protocol::Entry::Receipt(body)) => self.apply_receipt(&body),
                Err(e) => tracing::error!(
                    index,
                    "an entry in the log does not verify with this gate's key; ignored: {e}"
                ),
            }
        }
        self.forget_expired(crate::now_ns());
        self.frontier = frontier;
        Ok(changed)
    }
}

/// The snapshot's signed text.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    format: String,
    log: String,
    through: u64,
    /// The frontier's hashes, hex, largest subtree first.
    frontier: Vec<String>,
    callers: Vec<Caller>,
    active: Option<String>,
    shadow: Option<String>,
    /// Absent in snapshots written before surface contracts.
    #[serde(default)]
    contract: Option<String>,
    asked: BTreeMap<String, Asked>,
}

impl Snapshot {
    /// What the gate key signs: the format and the body's SHA-256. (The
    /// body may be larger than a note may be.)
    fn signed_text(body: &[u8]) -> String {
        use sha2::Digest;
        format!(
            "{SNAPSHOT_FORMAT}\n{}\n",
            hex::encode(sha2::Sha256::digest(body))
        )
    }

    /// The stored form: the signed note, then the body.
    fn seal(&self, key: &note::SignerKey) -> Result<Vec<u8>, String> {
        let body = serde_json::to_vec(self).expect("serializable");
        let mut note = Note::new(Snapshot::signed_text(&body)).map_err(|e| e.to_string())?;
        note.sign(key).map_err(|e| e.to_string())?;
        let mut out = note.to_text().into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    fn of(g: &Governed, log: &str) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT.into(),
            log: log.into(),
            through: g.through(),
            frontier: g
                .frontier
                .subtrees()
                .iter()
                .map(|h| hex::encode(h.0))
                .collect(),
            callers: g.callers.values().cloned().collect(),
            active: g.active.clone(),
            shadow: g.shadow.clone(),
            contract: g.contract.clone(),
            asked: g.asked.clone(),
        }
    }

    /// The fold a snapshot holds, if it is one this gate signed for `log`.
    fn open(bytes: &[u8], log: &str, gate: &VerifierKey) -> Result<Governed, String> {
        // The note is its first four lines: format, digest, blank, signature.
        let note_len = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(3)
            .map(|(i, _)| i + 1)
            .ok_or("no signed note")?;
        let (note, body) = bytes.split_at(note_len);
        let note = Note::parse(note).map_err(|e| e.to_string())?;
        note.verify(std::slice::from_ref(gate))
            .map_err(|e| e.to_string())?;
        if note.text() != Snapshot::signed_text(body) {
            return Err("its body is not the one the note signs".into());
        }
        let s: Snapshot = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if s.format != SNAPSHOT_FORMAT || s.log != log {
            return Err(format!("a {:?} snapshot of log {:?}", s.format, s.log));
        }
        let mut hashes = Vec::with_capacity(s.frontier.len());
        for h in &s.frontier {
            let mut b = [0u8; 32];
            hex::decode_to_slice(h, &mut b).map_err(|e| e.to_string())?;
            hashes.push(tlog::Hash(b));
        }
        let frontier = tlog::Frontier::from_parts(s.through, hashes)
            .ok_or("its frontier does not fit its size")?;
        Ok(Governed {
            frontier,
            callers: s.callers.into_iter().map(|c| (c.name.clone(), c)).collect(),
            active: s.active,
            shadow: s.shadow,
            contract: s.contract,
            asked: s.asked,
        })
    }
}

/// The gate's fold of the log, and what it compares the store with.
pub(crate) struct Governance {
    fold: Mutex<Governed>,
    /// How far the newest snapshot this gate wrote reaches.
    snapshot_at: AtomicU64,
    /// State records that did not match the log at the last check: one is
    /// refused and counted when seen twice in a row, so a change another
    /// gate is making (its entry logged, its record not yet written) is
    /// never taken for one.
    suspects: Mutex<BTreeSet<String>>,
}

impl Governance {
    /// The last snapshot in the store, if it verifies; else the empty fold
    /// (a refused snapshot is counted and logged).
    pub(crate) fn open(
        ledger: &Ledger,
        gate: &VerifierKey,
        metrics: &crate::Metrics,
    ) -> Governance {
        let log = ledger.verifier().name();
        let fold = match Records(ledger.state()).governed() {
            Ok(Some(bytes)) => Snapshot::open(&bytes, log, gate).unwrap_or_else(|why| {
                metrics.record_refused(Refused::Snapshot);
                tracing::error!("the governance snapshot in the store is refused ({why}); reading the log from its start");
                Governed::default()
            }),
            Ok(None) => Governed::default(),
            Err(e) => {
                tracing::warn!("reading the governance snapshot: {e}; reading the log from its start");
                Governed::default()
            }
        };
        Governance {
            snapshot_at: AtomicU64::new(fold.through()),
            fold: Mutex::new(fold),
            suspects: Mutex::new(BTreeSet::new()),
        }
    }

    /// The open approval request with `digest`, as the log says.
    pub(crate) fn asked(&self, digest: &str) -> Option<Asked> {
        self.fold
            .lock()
            .expect("governance lock")
            .asked
            .get(digest)
            .cloned()
    }

    /// The active and shadow versions the log names.
    pub(crate) fn policies(&self) -> (Option<String>, Option<String>) {
        let fold = self.fold.lock().expect("governance lock");
        (fold.active.clone(), fold.shadow.clone())
    }

    /// What the log says, as far as it was read: a copy (startup, tests).
    pub(crate) fn now(&self) -> Governed {
        self.with(Governed::clone)
    }

    /// `f` of what the log says, as far as it was read, without a copy.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Governed) -> T) -> T {
        f(&self.fold.lock().expect("governance lock"))
    }

    /// Reads the log up to `ledger`'s latest checkpoint. Returns whether a
    /// caller or a policy version changed. Blocking.
    fn read(&self, ledger: &Ledger, gate: &VerifierKey) -> Result<bool, GateError> {
        let latest = ledger.latest();
        let mut fold = self.fold.lock().expect("governance lock");
        fold.read(ledger, &latest.checkpoint, gate)
    }

    /// Writes a snapshot if the log grew [`SNAPSHOT_EVERY`] past the last
    /// one, or `force`. A failure is logged: a snapshot saves time, never
    /// decides anything.
    pub(crate) fn save(&self, ledger: &Ledger, key: &note::SignerKey, force: bool) {
        let last = self.snapshot_at.load(Relaxed);
        let Some((through, snapshot)) = self.with(|fold| {
            let through = fold.through();
            let due = through > last && (force || through >= last + SNAPSHOT_EVERY);
            due.then(|| (through, Snapshot::of(fold, ledger.verifier().name())))
        }) else {
            return;
        };
        let written = snapshot.seal(key).and_then(|bytes| {
            Records(ledger.state())
                .set_governed(&bytes)
                .map_err(|e| e.to_string())
        });
        match written {
            Ok(()) => self.snapshot_at.store(through, Relaxed),
            Err(e) => tracing::warn!("writing the governance snapshot: {e}"),
        }
    }
}

/// Whether a caller record (the store's mirror) says what the log says
/// (the token's digest too, if `token`).
fn same_grant(record: &Caller, log: &Caller, token: bool) -> bool {
    record.name == log.name
        && record.roles == log.roles
        && record.actors == log.actors
        && (!token || record.token_sha256.eq_ignore_ascii_case(&log.token_sha256))
        && record.revoked_at.is_some() == log.revoked_at.is_some()
}

impl Gate {
    /// Reads the log to its latest checkpoint and takes up what its
    /// governance entries say: the callers at once; the policy versions by
    /// loading them (see `Policies::follow`). Writes a snapshot now and
    /// then.
    pub(crate) async fn follow_log(self: &Arc<Self>) -> Result<(), GateError> {
        let gate = self.clone();
        let changed = tokio::task::spawn_blocking(move || gate.read_log())
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??;
        // Every time, not only when the log changed: a version that failed
        // to load is tried again. The log is read again under the
        // activation lock (see `Policies::follow`).
        let gate = self.clone();
        self.policies
            .follow(&self.ledger, &self.history, move || {
                gate.read_log()?;
                Ok(gate.governance.policies())
            })
            .await?;
        self.follow_contract().await?;
        let gate = self.clone();
        tokio::task::spawn_blocking(move || {
            gate.governance.save(&gate.ledger, &gate.gate_key, changed);
        })
        .await
        .map_err(|e| GateError::Internal(e.to_string()))
    }

    /// Reads the log to its latest checkpoint and indexes the callers it
    /// names. Returns whether a caller or a policy version changed.
    /// Blocking.
    pub(crate) fn read_log(&self) -> Result<bool, GateError> {
        let changed = self
            .governance
            .read(&self.ledger, self.gate_key.verifier())?;
        if changed {
            self.governance
                .with(|fold| self.auth.callers.set(&fold.callers));
        }
        Ok(changed)
    }

    /// Startup: reads the log (from the snapshot on), gives callers added
    /// before caller entries carried their token's digest that digest from
    /// the store, once, in a `caller.attest` entry, and writes a snapshot.
    /// Blocking.
    pub(crate) fn read_log_at_start(&self) -> Result<Governed, GateError> {
        self.read_log()?;
        let fold = self.governance.now();
        let mut attested = false;
        for (name, c) in &fold.callers {
            if c.revoked_at.is_some() || !c.token_sha256.is_empty() {
                continue;
            }
            let record = self
                .records()
                .caller(name)?
                .and_then(|b| serde_json::from_slice::<Caller>(&b).ok());
            match record {
                Some(r) if same_grant(&r, c, false) && r.token_sha256.len() == 64 => {
                    self.record_blocking(
                        Action::CallerAttest,
                        "startup",
                        serde_json::json!({"name": name, "token_sha256": r.token_sha256}),
                    )?;
                    attested = true;
                    tracing::warn!(caller = %name, "the log named no token digest for this caller (added before digests were logged): taken from the store once, and logged");
                }
                _ => {
                    tracing::error!(caller = %name, "the log names no token digest for this caller and the store holds no record that matches it: it cannot authenticate until its token is rotated")
                }
            }
        }
        if attested {
            self.read_log()?;
        }
        // Every caller indexed even if nothing changed since the snapshot.
        let fold = self.governance.now();
        self.auth.callers.set(&fold.callers);
        self.governance.save(&self.ledger, &self.gate_key, true);
        Ok(fold)
    }

    /// Compares the store's caller records and policy pointers with what
    /// the log says (read to its latest checkpoint first). A record that
    /// differs twice in a row is refused (the log's is what the gate uses
    /// anyway), counted and logged. Blocking.
    pub(crate) fn check_records(&self) -> Result<(), GateError> {
        self.read_log()?;
        let records = self.records().callers()?;
        let mut wrong = BTreeSet::new();
        self.governance.with(|fold| {
            for (name, bytes) in &records {
                let backed = serde_json::from_slice::<Caller>(bytes)
                    .ok()
                    .zip(fold.callers.get(name))
                    .is_some_and(|(r, l)| same_grant(&r, l, true));
                if !backed {
                    wrong.insert(format!("caller {name:?}"));
                }
            }
        });
        let (active, shadow) = self.governance.policies();
        // A pointer the store holds that the log does not (a missing one is
        // the store's loss, and changes nothing either).
        let state = self.records();
        if state
            .active_policy()?
            .is_some_and(|v| active.as_ref() != Some(&v))
        {
            wrong.insert("the active policy version".into());
        }
        if state
            .shadow_policy()?
            .is_some_and(|v| shadow.as_ref() != Some(&v))
        {
            wrong.insert("the shadow policy version".into());
        }
        let mut suspects = self.governance.suspects.lock().expect("suspects lock");
        for what in wrong.intersection(&suspects) {
            let kind = if what.starts_with("caller") {
                Refused::Caller
            } else {
                Refused::Policy
            };
            self.metrics.record_refused(kind);
            tracing::error!(
                "the store's record of {what} is not what the log says: refused, the log's is used"
            );
        }
        *suspects = wrong;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::{Governed, Refused};
    use crate::callers::{Caller, Role};
    use crate::{Config, Gate, GateError};

    fn open(dir: &std::path::Path) -> Arc<Gate> {
        let config = Config {
            data_dir: dir.to_path_buf(),
            hash_cache_mb: 0,
            ..Config::default()
        };
        Gate::open(&config).unwrap().gate
    }

    fn private_tempdir() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    fn refused(gate: &Gate, kind: Refused) -> u64 {
        gate.metrics.refused(kind)
    }

    fn entries(gate: &Gate, action: protocol::GovernanceAction) -> usize {
        let size = gate.ledger.latest().checkpoint.size;
        gate.ledger
            .entries(0, size)
            .unwrap()
            .iter()
            .filter_map(|e| protocol::parse_governance(e).ok())
            .filter(|(_, g)| g.action == action)
            .count()
    }

    /// Someone who writes the store (not the log) gains nothing: a caller
    /// record it invents, a revoked caller it brings back, a policy pointer
    /// it moves — the gate authenticates and evaluates by what the log
    /// says, running and after a restart, and refuses and counts each
    /// record seen twice.
    #[test]
    fn records_written_into_the_store_are_refused_and_the_log_wins() {
        let dir = private_tempdir();
        let gate = open(dir.path());
        let active = gate.policies.active().unwrap().version.clone();
        let (_, revoked_token) = gate
            .add_caller(
                "admin-token",
                "sdk",
                [Role::Decide].into(),
                vec!["agent-*".into()],
            )
            .unwrap();
        let before_revoke = gate.records().caller("sdk").unwrap().unwrap();
        gate.revoke_caller("admin-token", "sdk").unwrap();
        assert!(gate.caller_by_token(&revoked_token).is_none());

        // The attacker's writes: an invented admin, the revoked caller
        // restored, the active version moved.
        let token = "f".repeat(64);
        let mallory = Caller {
            name: "mallory".into(),
            roles: [Role::Admin, Role::Decide].into(),
            actors: vec!["*".into()],
            token_sha256: hex::encode(sha2::Sha256::digest(token.as_bytes())),
            created_at: "2026-01-01T00:00:00Z".into(),
            rotated_at: None,
            revoked_at: None,
        };
        use sha2::Digest;
        let state = gate.records();
        state
            .put_caller("mallory", &serde_json::to_vec(&mallory).unwrap(), true)
            .unwrap();
        state.put_caller("sdk", &before_revoke, false).unwrap();
        let elsewhere = format!("sha256:{}", "0".repeat(64));
        state
            .publish_policy(&elsewhere, b"not a bundle", 0)
            .unwrap();
        state.activate_policy(&elsewhere).unwrap();

        let check = |gate: &Gate| {
            assert!(
                gate.caller_by_token(&token).is_none(),
                "the invented caller"
            );
            assert!(
                gate.caller_by_token(&revoked_token).is_none(),
                "the revoked one"
            );
            assert_eq!(
                gate.governance.policies().0.as_deref(),
                Some(active.as_str())
            );
            gate.read_log().unwrap();
            assert!(gate.caller_by_token(&token).is_none());
        };
        check(&gate);
        gate.check_records().unwrap();
        assert_eq!(
            refused(&gate, Refused::Caller),
            0,
            "seen once: maybe a change in flight"
        );
        gate.check_records().unwrap();
        assert_eq!(refused(&gate, Refused::Caller), 2, "mallory and sdk");
        assert_eq!(refused(&gate, Refused::Policy), 1);

        drop(gate);
        let gate = open(dir.path());
        check(&gate);
        assert_eq!(gate.policies.active().unwrap().version, active);
        gate.check_records().unwrap();
        assert_eq!(
            refused(&gate, Refused::Caller),
            2,
            "the restarted gate counts them too"
        );
        let listed: Vec<_> = gate.list_callers().into_iter().map(|c| c.name).collect();
        assert_eq!(listed, ["demo", "sdk"], "what the log says, not the store");
    }

    /// The snapshot saves reading, never decides: rolled back to an older
    /// one, the gate reads more of the log and ends where the log says; one
    /// not signed by the gate key is refused, counted, and the log read
    /// from its start.
    #[test]
    fn a_snapshot_rolled_back_or_forged_changes_nothing() {
        let dir = private_tempdir();
        let gate = open(dir.path());
        let (_, a) = gate
            .add_caller(
                "admin-token",
                "a",
                [Role::Decide].into(),
                vec!["agent-*".into()],
            )
            .unwrap();
        gate.governance.save(&gate.ledger, &gate.gate_key, true);
        let old = gate.records().governed().unwrap().unwrap();
        gate.revoke_caller("admin-token", "a").unwrap();
        let (_, b) = gate
            .add_caller("admin-token", "b", [Role::Read].into(), vec![])
            .unwrap();
        gate.governance.save(&gate.ledger, &gate.gate_key, true);
        let size = gate.ledger.latest().checkpoint.size;
        let expected = gate.governance.now();
        assert_eq!(expected.through(), size);

        gate.records().set_governed(&old).unwrap();
        drop(gate);
        let mut gate = open(dir.path());
        assert!(
            gate.caller_by_token(&a).is_none(),
            "revoked after the old snapshot"
        );
        assert!(gate.caller_by_token(&b).is_some(), "added after it");
        assert_eq!(gate.governance.now(), expected);
        assert_eq!(refused(&gate, Refused::Snapshot), 0);

        // Signed by another key; the gate's note over another body; not a
        // snapshot at all.
        let other =
            note::SignerKey::generate("gate.example/other", note::KeyType::Ed25519).unwrap();
        let newest = gate.records().governed().unwrap().unwrap();
        let split = |b: &[u8]| {
            let at = b
                .iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .nth(3)
                .unwrap()
                .0
                + 1;
            (b[..at].to_vec(), b[at..].to_vec())
        };
        let (old_note, old_body) = split(&old);
        let (_, newest_body) = split(&newest);
        let forged = {
            let text = String::from_utf8(old_note.clone()).unwrap();
            let mut n =
                note::Note::new(text[..text.find("\n\n").unwrap() + 1].to_string()).unwrap();
            n.sign(&other).unwrap();
            [n.to_text().into_bytes(), old_body].concat()
        };
        let swapped = [old_note, newest_body].concat();
        for bad in [forged, swapped, b"not a note".to_vec()] {
            gate.records().set_governed(&bad).unwrap();
            drop(gate);
            let reopened = open(dir.path());
            assert_eq!(refused(&reopened, Refused::Snapshot), 1);
            assert!(reopened.caller_by_token(&a).is_none());
            assert!(reopened.caller_by_token(&b).is_some());
            let mut now = reopened.governance.now();
            now.frontier = expected.frontier.clone();
            assert_eq!(now, expected, "read from the start");
            gate = reopened;
        }
    }

    /// Entries that do not hash to the signed root (a store someone
    /// changed) lend nothing: the fold is left as it was.
    #[test]
    fn entries_that_do_not_hash_to_the_signed_root_are_not_relied_on() {
        let dir = private_tempdir();
        let gate = open(dir.path());
        let mut checkpoint = gate.ledger.latest().checkpoint.clone();
        let mut fold = Governed::default();
        checkpoint.root.0[0] ^= 1;
        let e = fold
            .read(&gate.ledger, &checkpoint, gate.gate_key.verifier())
            .unwrap_err();
        assert!(
            matches!(e, GateError::Internal(ref why) if why.contains("do not hash")),
            "{e}"
        );
        assert_eq!(fold, Governed::default());
        checkpoint.root.0[0] ^= 1;
        assert!(fold
            .read(&gate.ledger, &checkpoint, gate.gate_key.verifier())
            .unwrap());
        assert!(fold.callers.contains_key("demo"));
    }

    /// A vote counts for its caller, at its entry, before its expiry.
    #[test]
    fn a_logged_vote_counts_for_its_caller_until_it_expires() {
        let asked = super::Asked {
            opened_ns: 0,
            votes: [
                (5, ("alice".to_string(), Some(100))),
                (7, ("bob".to_string(), None)),
            ]
            .into(),
        };
        assert!(asked.counts(5, "alice", 99));
        assert!(!asked.counts(5, "alice", 100), "expired");
        assert!(!asked.counts(5, "bob", 0), "another's vote");
        assert!(!asked.counts(6, "alice", 0), "no such entry");
        assert!(
            asked.counts(7, "bob", i64::MAX),
            "logged before votes carried an expiry"
        );
    }

    /// A caller added before caller entries carried the token's digest
    /// (an upgraded log) keeps working: its digest is taken from the
    /// store's record once, at start, in a `caller.attest` entry.
    #[test]
    fn callers_from_before_digests_were_logged_are_attested_once() {
        let dir = private_tempdir();
        let gate = open(dir.path());
        let token = "e".repeat(64);
        let roles: std::collections::BTreeSet<Role> = [Role::Decide].into();
        gate.record_blocking(
            protocol::GovernanceAction::CallerAdd,
            "admin-token",
            json!({"name": "old", "roles": roles, "actors": ["agent-*"]}),
        )
        .unwrap();
        let record = Caller {
            name: "old".into(),
            roles,
            actors: vec!["agent-*".into()],
            token_sha256: {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(token.as_bytes()))
            },
            created_at: "2026-01-01T00:00:00Z".into(),
            rotated_at: None,
            revoked_at: None,
        };
        gate.records()
            .put_caller("old", &serde_json::to_vec(&record).unwrap(), true)
            .unwrap();
        gate.read_log().unwrap();
        assert!(
            gate.caller_by_token(&token).is_none(),
            "no digest in the log yet"
        );
        drop(gate);
        for _ in 0..2 {
            let gate = open(dir.path());
            assert_eq!(gate.caller_by_token(&token).unwrap().name, "old");
            assert_eq!(entries(&gate, protocol::GovernanceAction::CallerAttest), 1);
        }
    }
}
