//! Pushing checkpoints to witnesses (C2SP tlog-witness) and keeping the
//! latest checkpoint whose cosignatures meet the quorum (C2SP tlog-policy).
//!
//! Decisions never wait on this: it runs beside them at its own pace — when
//! the tree grew since the last push (checked every `witness_interval_ms`),
//! and every `witness_refresh_s` when idle. A witness that is down delays
//! cosignatures, never decisions.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ledger::{Ledger, SignedCheckpoint};
use note::{Note, Policy, VerifierKey};

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
    ) -> Result<Witnessing, String> {
        let text = std::fs::read_to_string(policy_file)
            .map_err(|e| format!("witness policy {}: {e}", policy_file.display()))?;
        let log_line = format!("log {log_key}");
        let text = if text.contains(&log_line) {
            text
        } else {
            format!("{log_line}\n{text}")
        };
        let policy = Policy::parse(&text)
            .map_err(|e| format!("witness policy {}: {e}", policy_file.display()))?;
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
            return Err(format!(
                "witness policy {}: no witness line has a URL to push to",
                policy_file.display()
            ));
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
        loop {
            tokio::time::sleep(self.interval).await;
            let latest = ledger.latest();
            let size = latest.checkpoint.size;
            if size == 0 || (pushed == Some(size) && last.elapsed() < self.refresh) {
                continue;
            }
            pushed = Some(size);
            last = Instant::now();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, t) in self.targets.iter().enumerate() {
                let (t, old, ledger, latest) =
                    (t.clone(), known[i], ledger.clone(), latest.clone());
                tasks.spawn_blocking(move || (i, push(&t, old, &ledger, &latest)));
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
                    let tmp = self.file.with_extension("tmp");
                    if let Err(e) =
                        std::fs::write(&tmp, &note).and_then(|()| std::fs::rename(&tmp, &self.file))
                    {
                        tracing::warn!(error = %e, "saving the cosigned checkpoint");
                    }
                    *self.cosigned.write().expect("cosigned lock") = Some((size, note));
                }
                Err(e) => tracing::warn!(size, error = %e, "witness quorum not met"),
            }
        }
    }
}

/// Pushes `latest` to one witness, resending once with the witness's size
/// after a 409. Returns the size the witness now holds and its verified
/// cosignature lines, or the size it reported and why it failed.
fn push(
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
        // C2SP tlog-witness: old size line, proof lines, empty line, checkpoint.
        let mut body = format!("old {old}\n");
        for h in &proof {
            body.push_str(&B64.encode(h.0));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&latest.note);
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(10))
            .build();
        match agent
            .post(&format!("{}/add-checkpoint", t.url))
            .send_string(&body)
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
            Err(ureq::Error::Status(409, r)) if r.content_type() == "text/x.tlog.size" => {
                let text = r.into_string().unwrap_or_default();
                old = text
                    .trim()
                    .parse()
                    .map_err(|_| (None, format!("409 with a bad size body {text:?}")))?;
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
