//! Pushing checkpoints to witnesses (C2SP tlog-witness) and keeping the
//! latest checkpoint whose cosignatures meet the quorum (C2SP tlog-policy).
//!
//! Decisions never wait on this: it runs beside them at its own pace — when
//! the tree grew since the last push (checked every `witness_interval_ms`),
//! and every `witness_refresh_s` when idle. A witness that is down delays
//! cosignatures, never decisions.
//!
//! On a log many gates share (PostgreSQL), one gate at a time pushes: the
//! holder of the store's `witness` lease (`Ledger::lease`, renewed every
//! interval, [`lease_ttl`] long, so it moves to another gate when its holder
//! dies). The holder records each checkpoint cosigned to the quorum in the
//! shared state; the other gates serve that one.

use crate::records::Records;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ledger::{Ledger, SignedCheckpoint};
use note::witness::{parse_size, AddCheckpoint, SIZE_CONTENT_TYPE};
use note::{Note, Policy, VerifierKey};

/// The witness policy file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessingError {
    /// The file cannot be read.
    #[error("witness policy {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is not a valid C2SP tlog-policy.
    #[error("witness policy {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        #[source]
        source: note::Error,
    },
    /// The CA file for https witnesses cannot be used.
    #[error("witness_ca_file {0}")]
    Tls(#[from] tls::Error),
    /// No witness line has a URL, so there is nobody to push to.
    #[error("witness policy {0}: no witness line has a URL to push to")]
    NoTargets(PathBuf),
}

/// One witness the gate pushes to.
#[derive(Clone)]
struct Target {
    name: String,
    key: VerifierKey,
    url: String,
}

/// The witnesses, the quorum, and the latest cosigned checkpoint.
pub(crate) struct Witnessing {
    policy: Policy,
    targets: Vec<Target>,
    cosigned: RwLock<Option<(u64, String)>>,
    file: PathBuf,
    interval: Duration,
    refresh: Duration,
    /// The HTTP(S) client for the witnesses.
    agent: ureq::Agent,
    /// This process, as a lease holder.
    holder: String,
    /// Whether this gate pushes (always, on a log of its own).
    pub(crate) leader: std::sync::atomic::AtomicBool,
}

/// The name of the lease whose holder pushes to the witnesses.
const LEASE: &str = "witness";

/// How long the push lease lasts unrenewed: a few intervals, at least 3 s.
fn lease_ttl(interval: Duration) -> Duration {
    (interval * 3).max(Duration::from_secs(3))
}

impl Witnessing {
    /// Reads a tlog-policy file (witness lines with URLs, groups, quorum) and
    /// adds this log's key as its `log` line; loads the last cosigned
    /// checkpoint from `file`.
    pub(crate) fn open(
        policy_file: &std::path::Path,
        log_key: &VerifierKey,
        file: PathBuf,
        interval: Duration,
        refresh: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Witnessing, WitnessingError> {
        let agent = tls::agent(ca_file, Duration::from_secs(10))?;
        let text =
            std::fs::read_to_string(policy_file).map_err(|source| WitnessingError::Read {
                path: policy_file.to_path_buf(),
                source,
            })?;
        let log_line = format!("log {log_key}");
        let text = if text.contains(&log_line) {
            text
        } else {
            format!("{log_line}\n{text}")
        };
        let policy = Policy::parse(&text).map_err(|source| WitnessingError::Parse {
            path: policy_file.to_path_buf(),
            source,
        })?;
        let targets: Vec<Target> = policy
            .witnesses()
            .filter_map(|(name, key, url)| {
                url.map(|u| Target {
                    name: name.to_string(),
                    key: key.clone(),
                    url: u.trim_end_matches('/').to_string(),
                })
            })
            .collect();
        if targets.is_empty() {
            return Err(WitnessingError::NoTargets(policy_file.to_path_buf()));
        }
        let cosigned = match std::fs::read_to_string(&file) {
            Ok(t) => policy
                .verify_checkpoint(t.as_bytes())
                .ok()
                .map(|(c, _)| (c.size, t)),
            Err(_) => None,
        };
        Ok(Witnessing {
            policy,
            targets,
            cosigned: RwLock::new(cosigned),
            file,
            interval,
            refresh,
            agent,
            holder: format!("{}-{}", std::process::id(), &keyfile::new_token()[..16]),
            leader: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The latest checkpoint cosigned to the quorum: (size, note with cosignatures).
    pub(crate) fn cosigned(&self) -> Option<(u64, String)> {
        self.cosigned.read().expect("cosigned lock").clone()
    }

    /// Runs until the process ends.
    pub(crate) async fn run(self: Arc<Self>, ledger: Ledger) {
        let mut known = vec![0u64; self.targets.len()];
        let mut pushed: Option<u64> = None;
        let mut last = Instant::now();
        if !ledger.shared() {
            self.leader
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        loop {
            tokio::time::sleep(self.interval).await;
            if ledger.shared() && !self.lead(&ledger).await {
                // Another gate pushes: serve what it had cosigned, and push
                // at once if this one takes over.
                self.follow(&ledger).await;
                pushed = None;
                continue;
            }
            let latest = ledger.latest();
            let size = latest.checkpoint.size;
            if size == 0 || (pushed == Some(size) && last.elapsed() < self.refresh) {
                continue;
            }
            pushed = Some(size);
            last = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, t) in self.targets.iter().enumerate() {
                let (t, old, ledger, latest, agent) = (
                    t.clone(),
                    known[i],
                    ledger.clone(),
                    latest.clone(),
                    self.agent.clone(),
                );
                tasks.spawn_blocking(move || (i, push(&agent, &t, old, &ledger, &latest)));
            }
            let mut lines = String::new();
            while let Some(Ok((i, result))) = tasks.join_next().await {
                match result {
                    Ok((size, cosignature)) => {
                        known[i] = size;
                        lines.push_str(&cosignature);
                    }
                    Err((size, why)) => {
                        known[i] = size.unwrap_or(known[i]);
                        tracing::warn!(witness = %self.targets[i].name, %why, "no cosignature");
                    }
                }
            }
            let note = format!("{}{lines}", latest.note);
            match self.policy.verify_checkpoint(note.as_bytes()) {
                Ok(_) => {
                    if let Err(e) = keyfile::write_durable(&self.file, note.as_bytes(), 0o600) {
                        tracing::warn!(error = %e, "saving the cosigned checkpoint");
                    }
                    if ledger.shared() {
                        let (l, n) = (ledger.clone(), note.clone());
                        let shared = tokio::task::spawn_blocking(move || {
                            Records(l.state()).set_cosigned(&n)
                        })
                        .await;
                        if !matches!(shared, Ok(Ok(()))) {
                            tracing::warn!("recording the cosigned checkpoint for the other gates");
                        }
                    }
                    *self.cosigned.write().expect("cosigned lock") = Some((size, note));
                }
                Err(e) => tracing::warn!(size, error = %e, "witness quorum not met"),
            }
        }
    }
}

impl Witnessing {
    /// Takes or renews the push lease; whether this gate holds it.
    async fn lead(&self, ledger: &Ledger) -> bool {
        let (l, holder, ttl) = (
            ledger.clone(),
            self.holder.clone(),
            lease_ttl(self.interval),
        );
        let held = match tokio::task::spawn_blocking(move || l.lease(LEASE, &holder, ttl)).await {
            Ok(Ok(held)) => held,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the witness push lease");
                false
            }
            Err(_) => false,
        };
        let was = self.leader.swap(held, std::sync::atomic::Ordering::Relaxed);
        if held && !was {
            tracing::info!("this gate pushes checkpoints to the witnesses now");
        }
        held
    }

    /// Takes up the cosigned checkpoint the pushing gate recorded, if it
    /// verifies under the quorum and is newer.
    async fn follow(&self, ledger: &Ledger) {
        let l = ledger.clone();
        let Ok(Ok(Some(note))) =
            tokio::task::spawn_blocking(move || Records(l.state()).cosigned()).await
        else {
            return;
        };
        let Ok((cp, _)) = self.policy.verify_checkpoint(note.as_bytes()) else {
            tracing::warn!("the recorded cosigned checkpoint does not meet the quorum");
            return;
        };
        let mut cosigned = self.cosigned.write().expect("cosigned lock");
        if cosigned.as_ref().is_none_or(|(size, _)| *size < cp.size) {
            *cosigned = Some((cp.size, note));
        }
    }
}

/// Pushes `latest` to one witness, resending once with the witness's size
/// after a 409. Returns the size the witness now holds and its verified
/// cosignature lines, or the size it reported and why it failed.
fn push(
    agent: &ureq::Agent,
    t: &Target,
    mut old: u64,
    ledger: &Ledger,
    latest: &SignedCheckpoint,
) -> Result<(u64, String), (Option<u64>, String)> {
    let size = latest.checkpoint.size;
    for _ in 0..2 {
        if old > size {
            return Err((
                Some(old),
                format!("the witness holds size {old}, above the log's {size}"),
            ));
        }
        let proof = if old == 0 || old == size {
            Vec::new()
        } else {
            ledger
                .consistency_proof(old, size)
                .map_err(|e| (None, format!("consistency proof {old}→{size}: {e}")))?
        };
        let body = AddCheckpoint {
            old,
            proof,
            checkpoint: latest.note.as_bytes(),
        }
        .to_bytes();
        match agent
            .post(&format!("{}/add-checkpoint", t.url))
            .send_bytes(&body)
        {
            Ok(r) => {
                let lines = r.into_string().map_err(|e| (None, e.to_string()))?;
                // Keep only lines that verify as this witness's cosignature.
                let note = Note::parse(format!("{}{lines}", latest.note).as_bytes())
                    .map_err(|e| (None, format!("answer: {e}")))?;
                note.verify(std::slice::from_ref(&t.key))
                    .map_err(|e| (None, format!("cosignature: {e}")))?;
                let prefix = format!("\u{2014} {} ", t.key.name());
                let own: String = lines
                    .lines()
                    .filter(|l| l.starts_with(&prefix))
                    .map(|l| format!("{l}\n"))
                    .collect();
                return Ok((size, own));
            }
            Err(ureq::Error::Status(409, r)) if r.content_type() == SIZE_CONTENT_TYPE => {
                let text = r.into_string().unwrap_or_default();
                old = parse_size(&text).map_err(|e| (None, format!("409: {e}")))?;
            }
            Err(ureq::Error::Status(code, r)) => {
                return Err((
                    None,
                    format!(
                        "HTTP {code}: {}",
                        r.into_string().unwrap_or_default().trim()
                    ),
                ))
            }
            Err(e) => return Err((None, e.to_string())),
        }
    }
    Err((Some(old), "the witness's size changed twice".into()))
}
