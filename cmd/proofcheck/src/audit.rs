//! `proofcheck audit`: walk a whole log through tlog-tiles entry bundles.
//!
//! Every entry is hashed into a compact range (the right edge of the tree:
//! at most 64 hashes, so memory does not grow with the log) and the root it
//! gives must equal the signed checkpoint's. Every entry must be a receipt
//! or a governance entry (an admin change) signed by the gate key (one-key
//! Ed25519 batch verification per job of bundles, `note::verify_batch`)
//! whose body is canonical and names this log. Governance entries are
//! counted by action and kept, in order, for `proofcheck history`. The compact range is saved, so the next audit reads only new
//! entries: arriving at the new signed root from the saved range is itself
//! the proof that the new tree extends the audited one.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Instant;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::Signature;
use note::{Checkpoint, Policy, VerifierKey};
use serde::{Deserialize, Serialize};
use tlog::{Hash, Tile, TILE_WIDTH};

use crate::{failed, Error, Log};

/// The right edge of a tree: the roots of its perfect subtrees, largest
/// first (RFC 9162 §2.1.1: the tree is these subtrees joined right to left).
#[derive(Clone, Debug, Default)]
struct CompactRange {
    size: u64,
    stack: Vec<(u8, Hash)>,
}

impl CompactRange {
    fn push(&mut self, leaf: Hash) {
        let (mut level, mut h) = (0u8, leaf);
        while let Some(&(l, left)) = self.stack.last() {
            if l != level {
                break;
            }
            self.stack.pop();
            h = tlog::node_hash(&left, &h);
            level += 1;
        }
        self.stack.push((level, h));
        self.size += 1;
    }

    fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return tlog::EMPTY_ROOT;
        };
        for (_, left) in it {
            h = tlog::node_hash(left, &h);
        }
        h
    }
}

/// What an audit leaves behind for the next one.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditState {
    /// The log's origin.
    pub origin: String,
    /// The signed checkpoint audited last, verbatim.
    pub checkpoint: String,
    /// Its size.
    pub size: u64,
    /// The compact range at that size: (level, base64 hash), largest subtree first.
    pub edge: Vec<(u8, String)>,
    /// The approval votes seen so far (`approval.approve` entries): index →
    /// (approved digest, approver), and the indexes a PERMIT already relied
    /// on, so a later receipt can be checked against them.
    #[serde(default)]
    pub approvals: BTreeMap<u64, (String, String)>,
    /// The approval entries a PERMIT relied on.
    #[serde(default)]
    pub approvals_used: std::collections::BTreeSet<u64>,
    /// The rejections seen (`approval.reject` entries): index → digest.
    #[serde(default)]
    pub rejections: BTreeMap<u64, String>,
    /// SILENCE receipts that asked for approvals (each opens a request):
    /// digest → their indexes.
    #[serde(default)]
    pub openings: BTreeMap<String, Vec<u64>>,
    /// Permits redeemed (`permit.redeem` entries): receipt id → the index
    /// of its redemption.
    #[serde(default)]
    pub redeemed: BTreeMap<String, u64>,
    /// When the request each `approval.approve` entry voted on expires (UNIX
    /// ns), where the vote says (`expires_at`): index → expiry.
    #[serde(default)]
    pub vote_expiry: BTreeMap<u64, i64>,
}

impl AuditState {
    fn range(&self) -> Result<CompactRange, Error> {
        let stack = self
            .edge
            .iter()
            .map(|(l, h)| {
                B64.decode(h)
                    .ok()
                    .and_then(|b| Hash::from_slice(&b))
                    .map(|h| (*l, h))
                    .ok_or_else(|| Error::Io("the audit state file is damaged".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let size: u64 = stack.iter().map(|(l, _)| 1u64 << l).sum();
        if size != self.size {
            return Err(Error::Io("the audit state file is damaged".into()));
        }
        Ok(CompactRange {
            size: self.size,
            stack,
        })
    }
}

/// What an audit verified.
#[derive(Debug, Serialize)]
pub struct AuditReport {
    /// The log's origin.
    pub origin: String,
    /// The size audited.
    pub size: u64,
    /// The size audited before (0 for a first audit).
    pub previous_size: u64,
    /// Entries read and verified now.
    pub entries_verified: u64,
    /// The root, base64.
    pub root: String,
    /// Decisions among the verified entries.
    pub decisions: BTreeMap<String, u64>,
    /// Governance entries (admin changes) among them, by action.
    pub governance: BTreeMap<String, u64>,
    /// Those governance entries, by index, in log order.
    #[serde(skip)]
    pub history: Vec<(u64, protocol::GovernanceEntry)>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Entries verified per second.
    pub entries_per_second: f64,
}

/// Entries per verification job (and Ed25519 batch).
const JOB_ENTRIES: usize = 1024;

/// What one verified entry is.
enum Verified {
    /// A receipt and its decision.
    Decision(String),
    /// A governance entry and its index.
    Governance(u64, protocol::GovernanceEntry),
    /// A receipt that relied on approvals (`derived.approvals`): its index,
    /// decision, caller, approved digest, and each vote's approver and entry.
    Relied(Relied),
    /// A SILENCE that asked for approvals: its index and the digest of the
    /// request it opened.
    Opened(u64, String),
}

/// A receipt that relied on approvals.
struct Relied {
    at: u64,
    permit: bool,
    caller: String,
    digest: String,
    votes: Vec<(String, u64)>,
    /// The receipt's decision time, UNIX ns.
    decided_at_ns: i64,
}

impl Relied {
    fn of(at: u64, body: &protocol::ReceiptBody) -> Result<Option<Relied>, String> {
        let Some(list) = body.derived.get("approvals") else {
            return Ok(None);
        };
        let votes = list
            .as_array()
            .ok_or_else(|| format!("entry {at}: derived.approvals is not a list"))?
            .iter()
            .map(|v| match (v["by"].as_str(), v["entry"].as_u64()) {
                (Some(by), Some(e)) => Ok((by.to_string(), e)),
                _ => Err(format!(
                    "entry {at}: a derived.approvals item is not {{by, entry}}"
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Relied {
            at,
            permit: body.decision == protocol::Decision::Permit,
            caller: body.caller().unwrap_or_default().to_string(),
            digest: protocol::approval_id(&body.request).1,
            votes,
            decided_at_ns: protocol::parse_rfc3339_ns(&body.decided_at)
                .map_err(|e| format!("entry {at}: decided_at: {e}"))?,
        }))
    }
}

/// What the log says about approval requests besides the votes.
#[derive(Default)]
struct Closings<'a> {
    /// `approval.reject` entries: index → digest.
    rejections: Option<&'a BTreeMap<u64, String>>,
    /// SILENCE receipts that opened a request: digest → indexes.
    openings: Option<&'a BTreeMap<String, Vec<u64>>>,
    /// When the request a vote was for expires: vote index → UNIX ns.
    expiry: Option<&'a BTreeMap<u64, i64>>,
}

/// The approval chain: every approval a receipt relied on is an earlier
/// `approval.approve` entry for the same request digest, by another caller
/// than the one that asked, not closed by a rejection of that request
/// before the receipt (a vote before the last rejection counts no more; one
/// after it only if a later SILENCE opened the request again), not relied on
/// at or after the request's expiry (where the vote records it), and no
/// vote lets two PERMITs through.
fn check_approvals(
    relied: &mut [Relied],
    approvals: &BTreeMap<u64, (String, String)>,
    closings: &Closings<'_>,
    used: &mut std::collections::BTreeSet<u64>,
) -> Result<(), String> {
    relied.sort_by_key(|r| r.at);
    for r in relied.iter() {
        let last_reject = closings.rejections.and_then(|rs| {
            rs.range(..r.at)
                .rev()
                .find(|(_, d)| **d == r.digest)
                .map(|(i, _)| *i)
        });
        for (by, entry) in &r.votes {
            if let Some(expires) = closings.expiry.and_then(|x| x.get(entry)) {
                if r.decided_at_ns >= *expires {
                    return Err(format!(
                        "entry {}: relies on approval {entry} after its request expired ({})",
                        r.at,
                        protocol::format_rfc3339_ns(*expires)
                    ));
                }
            }
            if let Some(reject) = last_reject {
                if *entry < reject {
                    return Err(format!(
                        "entry {}: relies on approval {entry}, which the rejection at {reject} closed",
                        r.at
                    ));
                }
                let reopened = closings
                    .openings
                    .and_then(|o| o.get(&r.digest))
                    .is_some_and(|at| at.iter().any(|s| reject < *s && *s < *entry));
                if !reopened {
                    return Err(format!(
                        "entry {}: relies on approval {entry}, given after the rejection at {reject} \
                         of a request nothing opened again",
                        r.at
                    ));
                }
            }
            let Some((digest, approver)) = approvals.get(entry) else {
                return Err(format!(
                    "entry {}: relies on approval entry {entry}, which is no approval.approve entry",
                    r.at
                ));
            };
            if *entry >= r.at {
                return Err(format!(
                    "entry {}: relies on a later approval {entry}",
                    r.at
                ));
            }
            if *digest != r.digest {
                return Err(format!(
                    "entry {}: approval {entry} approved another request",
                    r.at
                ));
            }
            if approver != &format!("caller:{by}") || *by == r.caller {
                return Err(format!(
                    "entry {}: approval {entry} is by {approver}, the receipt says {by:?} (asked by {:?})",
                    r.at, r.caller
                ));
            }
            if r.permit && !used.insert(*entry) {
                return Err(format!(
                    "entry {}: approval {entry} already let another PERMIT through",
                    r.at
                ));
            }
        }
    }
    Ok(())
}

/// Entries verified in one batch, or the first failure.
type Verdict = Result<Vec<Verified>, String>;

/// Verifies one bundle's entries: canonical bodies naming `origin`, and
/// gate signatures checked together.
fn verify_entries(
    first: u64,
    entries: &[Vec<u8>],
    gate_key: &VerifierKey,
    origin: &str,
) -> Verdict {
    let mut messages = Vec::with_capacity(entries.len());
    let mut signatures = Vec::with_capacity(entries.len());
    // The note each signature belongs to.
    let mut owners = Vec::with_capacity(entries.len());
    let mut decisions = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let at = first + i as u64;
        let (note, entry) = protocol::parse_entry(e).map_err(|err| format!("entry {at}: {err}"))?;
        let (log, verified) = match entry {
            protocol::Entry::Receipt(body) => {
                if let Some(r) = Relied::of(at, &body)? {
                    decisions.push(Verified::Relied(r));
                }
                if body.decision == protocol::Decision::Silence
                    && body.reason.contains(policy::APPROVAL_REASON_MARK)
                {
                    let digest = protocol::approval_id(&body.request).1;
                    decisions.push(Verified::Opened(at, digest));
                }
                (
                    body.log,
                    Verified::Decision(body.decision.as_str().to_string()),
                )
            }
            protocol::Entry::Governance(g) => (g.log.clone(), Verified::Governance(at, g)),
        };
        if log != origin {
            return Err(format!("entry {at}: it names log {log:?}"));
        }
        // Every signature line by the gate key must verify (as
        // verify_receipt requires), not only the first.
        let mut found = 0;
        for sig in note
            .signatures()
            .iter()
            .filter(|s| s.name == gate_key.name() && s.key_id == gate_key.id())
        {
            let sig: [u8; 64] = sig
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| format!("entry {at}: malformed signature"))?;
            signatures.push(sig);
            owners.push(messages.len());
            found += 1;
        }
        if found == 0 {
            return Err(format!("entry {at}: no signature by the gate key"));
        }
        messages.push(note);
        decisions.push(verified);
    }
    let texts: Vec<&[u8]> = owners
        .iter()
        .map(|&k| messages[k].text().as_bytes())
        .collect();
    if !note::verify_batch(gate_key.public_key(), &texts, &signatures) {
        // Find which one, to say where.
        for (i, (t, s)) in texts.iter().zip(&signatures).enumerate() {
            let s = Signature::from_bytes(s);
            if gate_key.public_key().verify_strict(t, &s).is_err() {
                return Err(format!(
                    "entry {}: the gate signature does not verify",
                    first + owners[i] as u64
                ));
            }
        }
        return Err(format!(
            "entries {first}..: batch signature verification failed"
        ));
    }
    Ok(decisions)
}

/// Audits the log at `log`. `state` is what the previous audit of this log
/// left (or `None`); `progress(done, total)` is called as entries are verified.
///
/// # Errors
///
/// [`Error::Failed`] with what failed and where; [`Error::Io`] for fetches.
pub fn audit(
    log: &Log,
    log_key: &VerifierKey,
    gate_key: &VerifierKey,
    state: Option<&AuditState>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(AuditReport, AuditState), Error> {
    let started = Instant::now();
    let text = log.must_get("log/checkpoint")?;
    let (cp, _): (Checkpoint, _) = Policy::for_log(log_key.clone())
        .verify_checkpoint(&text)
        .or_else(|e| failed(format!("the log's checkpoint: {e}")))?;
    let text = String::from_utf8(text).expect("a verified note is UTF-8");
    let mut range = match state {
        Some(s) => {
            let show = || {
                format!(
                    "\n--- audited before ---\n{}--- now ---\n{text}",
                    s.checkpoint
                )
            };
            if s.origin != cp.origin {
                return Err(Error::Io(format!(
                    "the state file is for log {:?}, this log is {:?}",
                    s.origin, cp.origin
                )));
            }
            if cp.size < s.size {
                return failed(format!(
                    "rollback: the log now has {} entries, {} were audited before{}",
                    cp.size,
                    s.size,
                    show()
                ));
            }
            s.range()?
        }
        None => CompactRange::default(),
    };
    let previous = range.size;
    let total = cp.size - previous;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut decisions: BTreeMap<String, u64> = BTreeMap::new();
    let mut governance: BTreeMap<String, u64> = BTreeMap::new();
    let mut history = Vec::new();
    let mut relied = Vec::new();
    let mut opened = Vec::new();
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<Vec<u8>>)>(workers * 2);
    let work_rx = std::sync::Mutex::new(work_rx);
    std::thread::scope(|scope| -> Result<(), Error> {
        let (done_tx, done_rx) = mpsc::channel::<(usize, Verdict)>();
        for _ in 0..workers {
            let (work_rx, done_tx, origin) = (&work_rx, done_tx.clone(), &cp.origin);
            scope.spawn(move || loop {
                let job = work_rx.lock().expect("work lock").recv();
                let Ok((first, entries)) = job else { break };
                let n = entries.len();
                if done_tx
                    .send((n, verify_entries(first, &entries, gate_key, origin)))
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(done_tx);
        let mut done = 0u64;
        let mut first_failure: Option<String> = None;
        let mut collect = |r: (usize, Verdict), done: &mut u64| {
            *done += r.0 as u64;
            match r.1 {
                Ok(vs) => {
                    for v in vs {
                        match v {
                            Verified::Decision(d) => *decisions.entry(d).or_default() += 1,
                            Verified::Governance(at, g) => {
                                *governance.entry(g.action.as_str().to_string()).or_default() += 1;
                                history.push((at, g));
                            }
                            Verified::Relied(r) => relied.push(r),
                            Verified::Opened(at, digest) => opened.push((at, digest)),
                        }
                    }
                }
                Err(e) => {
                    first_failure.get_or_insert(e);
                }
            }
        };
        let width = u64::from(TILE_WIDTH);
        // Verification jobs of several bundles: batch verification gets
        // cheaper per signature as the batch grows.
        let mut job: Vec<Vec<u8>> = Vec::new();
        let mut job_start = previous;
        for b in previous / width..cp.size.div_ceil(width) {
            let tile = Tile::entries_in_tree(b, cp.size).expect("bundle within the tree");
            let bytes = log.must_get(&format!("log/{}", tile.path()))?;
            let entries = tlog::decode_entry_bundle(&bytes)
                .or_else(|e| failed(format!("{}: {e}", tile.path())))?;
            if entries.len() != usize::from(tile.width) {
                return failed(format!(
                    "{}: {} entries, expected {}",
                    tile.path(),
                    entries.len(),
                    tile.width
                ));
            }
            let start = b * width;
            let skip = previous.saturating_sub(start) as usize;
            for e in &entries[skip..] {
                range.push(tlog::leaf_hash(e));
                job.push(e.to_vec());
            }
            if job.len() >= JOB_ENTRIES || b + 1 == cp.size.div_ceil(width) {
                let next_start = job_start + job.len() as u64;
                work_tx
                    .send((job_start, std::mem::take(&mut job)))
                    .map_err(|_| Error::Io("verifier threads stopped".into()))?;
                job_start = next_start;
            }
            while let Ok(r) = done_rx.try_recv() {
                collect(r, &mut done);
                progress(done, total);
            }
        }
        drop(work_tx);
        for r in done_rx {
            collect(r, &mut done);
            progress(done, total);
        }
        match first_failure {
            Some(e) => failed(e),
            None => Ok(()),
        }
    })?;
    let root = range.root();
    if root != cp.root {
        let how = if previous > 0 {
            format!(" (continuing the {previous} entries audited before: the log is not an extension of what was audited, or its entries differ)")
        } else {
            String::new()
        };
        return failed(format!(
            "the root of the {} entries served is {}, the signed checkpoint says {}{how}",
            cp.size,
            B64.encode(root.0),
            B64.encode(cp.root.0)
        ));
    }
    let mut approvals = state.map(|s| s.approvals.clone()).unwrap_or_default();
    let mut approvals_used = state.map(|s| s.approvals_used.clone()).unwrap_or_default();
    let mut rejections = state.map(|s| s.rejections.clone()).unwrap_or_default();
    let mut openings = state.map(|s| s.openings.clone()).unwrap_or_default();
    let mut redeemed = state.map(|s| s.redeemed.clone()).unwrap_or_default();
    let mut vote_expiry = state.map(|s| s.vote_expiry.clone()).unwrap_or_default();
    for (at, digest) in opened {
        openings.entry(digest).or_default().push(at);
    }
    history.sort_by_key(|(at, _)| *at);
    for (at, g) in &history {
        let digest = || g.subject["digest"].as_str().unwrap_or_default().to_string();
        match g.action {
            protocol::GovernanceAction::ApprovalApprove => {
                approvals.insert(*at, (digest(), g.by.clone()));
                if let Some(e) = g.subject["expires_at"].as_str() {
                    let ns = protocol::parse_rfc3339_ns(e)
                        .map_err(|e| format!("entry {at}: expires_at: {e}"))
                        .or_else(failed)?;
                    vote_expiry.insert(*at, ns);
                }
            }
            protocol::GovernanceAction::ApprovalReject => {
                drop(rejections.insert(*at, digest()));
            }
            protocol::GovernanceAction::PermitRedeem => {
                check_redemption(*at, g, &mut redeemed).or_else(failed)?
            }
            _ => {}
        }
    }
    let closings = Closings {
        rejections: Some(&rejections),
        openings: Some(&openings),
        expiry: Some(&vote_expiry),
    };
    check_approvals(&mut relied, &approvals, &closings, &mut approvals_used).or_else(failed)?;
    let seconds = started.elapsed().as_secs_f64();
    let report = AuditReport {
        origin: cp.origin.clone(),
        size: cp.size,
        previous_size: previous,
        entries_verified: total,
        root: B64.encode(root.0),
        decisions,
        governance,
        history,
        seconds,
        entries_per_second: total as f64 / seconds.max(1e-9),
    };
    let state = AuditState {
        origin: cp.origin,
        checkpoint: text,
        size: cp.size,
        edge: range
            .stack
            .iter()
            .map(|(l, h)| (*l, B64.encode(h.0)))
            .collect(),
        approvals,
        approvals_used,
        rejections,
        openings,
        redeemed,
        vote_expiry,
    };
    Ok((report, state))
}

/// A `permit.redeem` entry: it names an earlier entry and a receipt id, and
/// no permit is redeemed twice.
fn check_redemption(
    at: u64,
    g: &protocol::GovernanceEntry,
    redeemed: &mut BTreeMap<String, u64>,
) -> Result<(), String> {
    let (Some(receipt_id), Some(index)) = (
        g.subject["receipt_id"].as_str(),
        g.subject["index"].as_u64(),
    ) else {
        return Err(format!(
            "entry {at}: a permit.redeem entry without receipt_id and index"
        ));
    };
    if index >= at {
        return Err(format!(
            "entry {at}: redeems a permit at {index}, not an earlier entry"
        ));
    }
    if let Some(first) = redeemed.insert(receipt_id.to_string(), at) {
        return Err(format!(
            "entry {at}: permit {receipt_id} redeemed again (first at {first})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_approvals, verify_entries, Closings, CompactRange, Relied};

    /// The approval chain: earlier, same digest, another caller, used once.
    #[test]
    fn approvals_must_be_earlier_votes_by_others_for_the_same_request_used_once() {
        let votes: std::collections::BTreeMap<u64, (String, String)> = [
            (3, ("sha256:aa".to_string(), "caller:alice".to_string())),
            (4, ("sha256:bb".to_string(), "caller:bob".to_string())),
        ]
        .into();
        let relied =
            |at: u64, permit: bool, caller: &str, digest: &str, by: &str, entry: u64| Relied {
                at,
                permit,
                caller: caller.into(),
                digest: digest.into(),
                votes: vec![(by.into(), entry)],
                decided_at_ns: 0,
            };
        let check = |mut rs: Vec<Relied>| {
            check_approvals(
                &mut rs,
                &votes,
                &Closings::default(),
                &mut std::collections::BTreeSet::new(),
            )
        };
        check(vec![relied(9, true, "demo", "sha256:aa", "alice", 3)]).unwrap();
        // A DENY that saw the approval does not use it up.
        check(vec![
            relied(9, false, "demo", "sha256:aa", "alice", 3),
            relied(10, true, "demo", "sha256:aa", "alice", 3),
        ])
        .unwrap();
        for (bad, why) in [
            (
                vec![relied(9, true, "demo", "sha256:aa", "alice", 5)],
                "no approval.approve",
            ),
            (
                vec![relied(2, true, "demo", "sha256:aa", "alice", 3)],
                "later approval",
            ),
            (
                vec![relied(9, true, "demo", "sha256:bb", "alice", 3)],
                "another request",
            ),
            (
                vec![relied(9, true, "demo", "sha256:aa", "bob", 3)],
                "is by caller:alice",
            ),
            (
                vec![relied(9, true, "alice", "sha256:aa", "alice", 3)],
                "asked by",
            ),
            (
                vec![
                    relied(9, true, "demo", "sha256:aa", "alice", 3),
                    relied(12, true, "demo", "sha256:aa", "alice", 3),
                ],
                "already let another PERMIT",
            ),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{err}");
        }
    }

    /// A rejection closes a request: a vote before it counts no more, and
    /// one after it only if a SILENCE opened the request again in between.
    #[test]
    fn a_rejection_closes_the_request_its_votes_belong_to() {
        let votes: std::collections::BTreeMap<u64, (String, String)> = [
            (3, ("sha256:aa".to_string(), "caller:alice".to_string())),
            (8, ("sha256:aa".to_string(), "caller:alice".to_string())),
        ]
        .into();
        let rejections = [(5, "sha256:aa".to_string())].into();
        let check = |at: u64, entry: u64, openings: &[u64]| {
            let openings = [("sha256:aa".to_string(), openings.to_vec())].into();
            let closings = Closings {
                rejections: Some(&rejections),
                openings: Some(&openings),
                expiry: None,
            };
            let mut rs = vec![Relied {
                at,
                permit: true,
                caller: "demo".into(),
                digest: "sha256:aa".into(),
                votes: vec![("alice".into(), entry)],
                decided_at_ns: 0,
            }];
            check_approvals(
                &mut rs,
                &votes,
                &closings,
                &mut std::collections::BTreeSet::new(),
            )
        };
        // Before the rejection, the vote counted.
        check(4, 3, &[1]).unwrap();
        // After it, the vote before it does not.
        assert!(check(9, 3, &[1])
            .unwrap_err()
            .contains("rejection at 5 closed"));
        // A vote after the rejection, with nothing opening the request again
        // (two gates racing a vote and a reject once logged this).
        assert!(check(9, 8, &[1])
            .unwrap_err()
            .contains("nothing opened again"));
        // Opened again by a SILENCE between the rejection and the vote: counts.
        check(9, 8, &[1, 6]).unwrap();
        // A SILENCE after the vote opens nothing for it.
        assert!(check(10, 8, &[1, 9]).is_err());
    }

    /// A vote counts only before the request it was for expires.
    #[test]
    fn an_approval_counts_only_before_its_request_expires() {
        let votes: std::collections::BTreeMap<u64, (String, String)> =
            [(3, ("sha256:aa".to_string(), "caller:alice".to_string()))].into();
        let expiry = [(3, 1_000)].into();
        let check = |decided_at_ns: i64| {
            let mut rs = vec![Relied {
                at: 9,
                permit: true,
                caller: "demo".into(),
                digest: "sha256:aa".into(),
                votes: vec![("alice".into(), 3)],
                decided_at_ns,
            }];
            let closings = Closings {
                expiry: Some(&expiry),
                ..Closings::default()
            };
            check_approvals(
                &mut rs,
                &votes,
                &closings,
                &mut std::collections::BTreeSet::new(),
            )
        };
        check(999).unwrap();
        assert!(check(1_000)
            .unwrap_err()
            .contains("after its request expired"));
    }

    /// Each permit is redeemed once, by an entry after the one it names.
    #[test]
    fn a_permit_redeemed_twice_fails_the_audit() {
        let redeem = |receipt_id: &str, index: u64| protocol::GovernanceEntry {
            format: protocol::GOVERNANCE_FORMAT.into(),
            log: "example.com/log".into(),
            action: protocol::GovernanceAction::PermitRedeem,
            by: "caller:payments".into(),
            at: "2026-12-07T12:00:00Z".into(),
            subject: serde_json::json!({"receipt_id": receipt_id, "index": index, "surface": "payments"}),
        };
        let mut seen = std::collections::BTreeMap::new();
        super::check_redemption(5, &redeem("aa", 4), &mut seen).unwrap();
        super::check_redemption(7, &redeem("bb", 6), &mut seen).unwrap();
        let twice = super::check_redemption(9, &redeem("aa", 4), &mut seen).unwrap_err();
        assert!(twice.contains("redeemed again (first at 5)"), "{twice}");
        let later = super::check_redemption(10, &redeem("cc", 10), &mut seen).unwrap_err();
        assert!(later.contains("not an earlier entry"), "{later}");
    }

    /// A second signature line by the gate key that does not verify fails
    /// the entry, even though the first one does.
    #[test]
    fn every_gate_signature_line_must_verify() {
        use base64::Engine as _;
        let gate = note::SignerKey::generate("example.com/gate", note::KeyType::Ed25519).unwrap();
        let entry = protocol::GovernanceEntry {
            format: protocol::GOVERNANCE_FORMAT.into(),
            log: "example.com/log".into(),
            action: protocol::GovernanceAction::CallerRevoke,
            by: "admin-token".into(),
            at: protocol::format_rfc3339_ns(1_764_072_000_000_000_000),
            subject: serde_json::json!({"name": "x"}),
        };
        let good = entry.sign(&gate).unwrap();
        let ok = verify_entries(
            7,
            std::slice::from_ref(&good),
            gate.verifier(),
            "example.com/log",
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        // Append a copy of the signature line with one signature byte changed.
        let text = String::from_utf8(good).unwrap();
        let line = text.lines().last().unwrap().to_string();
        let (head, b64) = line.rsplit_once(' ').unwrap();
        let mut sig = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        sig[10] ^= 1;
        let bad = format!(
            "{text}{head} {}\n",
            base64::engine::general_purpose::STANDARD.encode(sig)
        );
        let err = verify_entries(7, &[bad.into_bytes()], gate.verifier(), "example.com/log")
            .err()
            .expect("a bad second signature line fails");
        assert!(
            err.contains("entry 7: the gate signature does not verify"),
            "{err}"
        );
    }

    #[test]
    fn compact_range_root_is_the_rfc9162_root() {
        // Against tlog's stored-hash layout for every size up to 300.
        let leaves: Vec<tlog::Hash> = (0u32..300)
            .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
            .collect();
        let mut stored = Vec::new();
        let mut range = CompactRange::default();
        for (n, leaf) in leaves.iter().enumerate() {
            let new = tlog::append_leaves(n as u64, &[*leaf], stored.as_slice()).unwrap();
            stored.extend(new);
            range.push(*leaf);
            let want = tlog::tree_hash(n as u64 + 1, stored.as_slice()).unwrap();
            assert_eq!(range.root(), want, "size {}", n + 1);
        }
        assert_eq!(CompactRange::default().root(), tlog::EMPTY_ROOT);
    }
}
