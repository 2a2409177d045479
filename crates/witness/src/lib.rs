//! A C2SP tlog-witness: checks that each checkpoint a log submits extends the
//! last one it cosigned for that log, and cosigns it (C2SP tlog-cosignature
//! `cosignature/v1`).
//!
//! In scope: the `add-checkpoint` rules of C2SP tlog-witness ([`Witness::add_checkpoint`],
//! HTTP-free), durable per-log state (`state.rs`: check and persist are one
//! step under one lock), monitor mode (`monitor.rs`: poll a log's checkpoint
//! and tiles, cosign what is consistent, keep evidence and stop cosigning on a
//! fork, rollback or bad signature), and the HTTP surface ([`router`]).

mod monitor;
mod state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use note::witness::AddCheckpoint;
use note::{Checkpoint, Note, SignerKey, VerifierKey};
use tlog::Hash;

pub use monitor::Monitor;
pub use state::LogState;

/// Errors of the witness other than a refusal to cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A state file or directory cannot be read or written.
    #[error("witness state {path}: {reason}")]
    State {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// Monitor mode: fetching from the log failed (transient; nothing changed).
    #[error("GET {url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// Monitor mode: the log serves a checkpoint that does not parse.
    #[error("served checkpoint: {0}")]
    Checkpoint(#[from] note::Error),
    /// Monitor mode: the log serves a checkpoint of an origin not configured.
    #[error("{base} serves origin {origin:?}, which is not a configured log")]
    UnknownLog {
        /// The log's URL.
        base: String,
        /// The origin it serves.
        origin: String,
    },
    /// Monitor mode: the tiles do not yield a consistency proof.
    #[error("proof from tiles: {0}")]
    Tiles(#[from] tlog::Error),
    /// Monitor mode: the served checkpoint, validly signed, is older than the
    /// one cosigned (a replay or a stale cache; proves nothing).
    #[error("stale checkpoint: size {served}, below the cosigned {cosigned}")]
    Stale {
        /// Its size.
        served: u64,
        /// The size cosigned.
        cosigned: u64,
    },
    /// Monitor mode: the tiles do not prove the served checkpoint consistent
    /// with the cosigned one, nor prove it inconsistent.
    #[error("the tiles prove nothing: {0}")]
    Unproven(String),
    /// Monitor mode: evidence of misbehaviour was kept and cosigning of the
    /// log stopped.
    #[error("log misbehaviour: {0}")]
    Misbehaviour(String),
    /// Monitor mode: the witness refused the checkpoint.
    #[error(transparent)]
    Refused(#[from] Refusal),
}

impl Error {
    pub(crate) fn state(path: &Path, reason: impl std::fmt::Display) -> Error {
        Error::State {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Why a checkpoint was not cosigned; each maps to the status tlog-witness names.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Malformed request, or old size above the checkpoint's (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No known log key signed the checkpoint (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The origin is not a log this witness knows (404).
    #[error("unknown log origin {0:?}")]
    UnknownLog(String),
    /// The old size is not the size last cosigned (409, body: that size).
    #[error("old size {old} does not match the latest cosigned size {latest}")]
    SizeMismatch {
        /// What the client sent.
        old: u64,
        /// What the witness has.
        latest: u64,
    },
    /// Same size as the last cosigned checkpoint with a different root (409):
    /// a fork.
    #[error("checkpoint of size {0} has a different root than the one cosigned: a fork")]
    RootMismatch(u64),
    /// The consistency proof does not verify (422).
    #[error("consistency proof does not verify: {0}")]
    Inconsistent(String),
    /// The witness stopped cosigning this log after evidence of misbehaviour (403).
    #[error("cosigning of {0:?} is stopped: {1}")]
    Halted(String, String),
    /// Persisting the new state failed; nothing was cosigned (500).
    #[error("storage: {0}")]
    Storage(String),
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::Forbidden(_) | Refusal::Halted(..) => StatusCode::FORBIDDEN,
            Refusal::UnknownLog(_) => StatusCode::NOT_FOUND,
            Refusal::SizeMismatch { .. } | Refusal::RootMismatch(_) => StatusCode::CONFLICT,
            Refusal::Inconsistent(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match &self {
            Refusal::SizeMismatch { latest, .. } => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, note::witness::SIZE_CONTENT_TYPE)],
                format!("{latest}\n"),
            )
                .into_response(),
            other => {
                if matches!(other, Refusal::Inconsistent(_) | Refusal::RootMismatch(_)) {
                    tracing::warn!(refusal = %other, "possible log misbehaviour");
                }
                (other.status(), format!("{other}\n")).into_response()
            }
        }
    }
}

/// A witness: its cosigning key, the logs it witnesses, their state.
pub struct Witness {
    key: SignerKey,
    logs: HashMap<String, VerifierKey>,
    store: state::Store,
    /// Check-and-persist is one critical section (tlog-witness §add-checkpoint:
    /// otherwise a slow older request could roll the state back).
    lock: Mutex<()>,
    dir: std::path::PathBuf,
    alerts: std::sync::atomic::AtomicU64,
    monitor_errors: std::sync::atomic::AtomicU64,
}

impl Witness {
    /// A witness signing with `key` (a `cosignature/v1` key) over `logs`
    /// (origin → the log's checkpoint key), keeping state in `dir`.
    ///
    /// # Errors
    ///
    /// The state directory cannot be created or read.
    pub fn open(key: SignerKey, logs: Vec<VerifierKey>, dir: &Path) -> Result<Witness, Error> {
        Ok(Witness {
            key,
            logs: logs
                .into_iter()
                .map(|k| (k.name().to_string(), k))
                .collect(),
            store: state::Store::open(dir)?,
            lock: Mutex::new(()),
            dir: dir.to_path_buf(),
            alerts: std::sync::atomic::AtomicU64::new(
                std::fs::read_dir(dir.join("evidence")).map_or(0, |d| d.count() as u64),
            ),
            monitor_errors: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Alerts raised so far (evidence directories kept).
    #[must_use]
    pub fn alerts(&self) -> u64 {
        self.alerts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts a transient monitor error (for `/metrics`).
    pub(crate) fn count_monitor_error(&self) {
        self.monitor_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Records misbehaviour of the log in `held`'s origin: writes the
    /// checkpoint it held, the offending one and the proof as evidence files,
    /// logs an alert, counts it, and stops cosigning that log.
    pub(crate) fn alert(&self, held: &LogState, offending: &[u8], proof: &[Hash], why: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{}-{now}", state::file_stem(&held.origin));
        let dir = self.dir.join("evidence").join(&name);
        let proof_text: String = proof.iter().map(|h| B64.encode(h.0) + "\n").collect();
        // Written beside `evidence/` and renamed into it: an evidence
        // directory is complete whenever anyone sees it.
        let partial = self.dir.join(format!(".evidence-{name}"));
        let written = std::fs::create_dir_all(&partial).and_then(|()| {
            std::fs::write(partial.join("held.checkpoint"), &held.checkpoint)?;
            std::fs::write(partial.join("offending.checkpoint"), offending)?;
            std::fs::write(partial.join("proof"), proof_text)?;
            std::fs::write(partial.join("reason"), format!("{why}\n"))?;
            std::fs::create_dir_all(self.dir.join("evidence"))?;
            std::fs::rename(&partial, &dir)
        });
        self.alerts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(
            origin = %held.origin, reason = why, evidence = %dir.display(),
            "ALERT: log misbehaviour; cosigning of this log is stopped"
        );
        if let Err(e) = written {
            tracing::error!(error = %e, "writing evidence");
        }
        let mut halted = held.clone();
        halted.halted = Some(format!("{why} (evidence in {})", dir.display()));
        if let Err(e) = self.store.save(&halted) {
            tracing::error!(error = %e, "saving the halted state");
        }
    }

    /// The witness's verifier key.
    #[must_use]
    pub fn verifier(&self) -> &VerifierKey {
        self.key.verifier()
    }

    /// The latest cosigned checkpoint for `origin`.
    ///
    /// # Errors
    ///
    /// A state file that cannot be read.
    pub fn latest(&self, origin: &str) -> Result<Option<LogState>, Error> {
        self.store.load(origin)
    }

    /// C2SP tlog-witness `add-checkpoint` on a parsed request (a body that
    /// does not parse is the 400 of [`AddCheckpoint::parse`]): every rule in
    /// the spec's order, then the cosignature lines (`— <name> <base64>\n`) at `now` (POSIX
    /// seconds). The new state is durable before this returns.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] naming the rule that failed.
    pub fn add_checkpoint(&self, req: &AddCheckpoint<'_>, now: u64) -> Result<String, Refusal> {
        let mut note = Note::parse(req.checkpoint)
            .map_err(|e| Refusal::BadRequest(format!("checkpoint note: {e}")))?;
        let checkpoint = Checkpoint::parse(note.text())
            .map_err(|e| Refusal::BadRequest(format!("checkpoint: {e}")))?;
        // Unknown origin → 404; no trusted signature verifies → 403.
        let log_key = self
            .logs
            .get(&checkpoint.origin)
            .ok_or_else(|| Refusal::UnknownLog(checkpoint.origin.clone()))?;
        note.verify(std::slice::from_ref(log_key))
            .map_err(|e| Refusal::Forbidden(e.to_string()))?;
        if req.old > checkpoint.size {
            return Err(Refusal::BadRequest(format!(
                "old size {} is above the checkpoint size {}",
                req.old, checkpoint.size
            )));
        }
        let _one_at_a_time = self.lock.lock().expect("witness lock");
        let latest = self
            .store
            .load(&checkpoint.origin)
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        if let Some(why) = latest.as_ref().and_then(|s| s.halted.clone()) {
            return Err(Refusal::Halted(checkpoint.origin.clone(), why));
        }
        let (latest_size, latest_root) = match &latest {
            Some(s) => (s.size, Some(s.root()?)),
            None => (0, None),
        };
        if req.old != latest_size {
            return Err(Refusal::SizeMismatch {
                old: req.old,
                latest: latest_size,
            });
        }
        if req.old == checkpoint.size {
            if let Some(root) = latest_root {
                if root != checkpoint.root {
                    // Two checkpoints of one size with different roots, both
                    // validly signed: proof of a fork. Keep it and stop.
                    let held = latest.as_ref().expect("a root means a state");
                    self.alert(held, req.checkpoint, &[], "fork: same size, different root");
                    return Err(Refusal::RootMismatch(checkpoint.size));
                }
            }
            if !req.proof.is_empty() {
                return Err(Refusal::Inconsistent(
                    "a proof between equal sizes must be empty".into(),
                ));
            }
        } else if req.old == 0 {
            // Every tree extends the empty one; the proof must be empty.
            if !req.proof.is_empty() {
                return Err(Refusal::Inconsistent(
                    "the proof from size 0 must be empty".into(),
                ));
            }
        } else {
            let old_root = latest_root.expect("latest_size > 0 has a root");
            tlog::verify_consistency(
                req.old,
                checkpoint.size,
                &old_root,
                &checkpoint.root,
                &req.proof,
            )
            .map_err(|e| Refusal::Inconsistent(e.to_string()))?;
        }
        // Cosign, persist, then answer: a crash before the rename leaves the
        // old state (the client retries); after it, the new one.
        note.add_cosignature(&self.key, now)
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        let text = note.to_text();
        self.store
            .save(&LogState::new(&checkpoint, &text))
            .map_err(|e| Refusal::Storage(e.to_string()))?;
        let name_prefix = format!("\u{2014} {} ", self.key.verifier().name());
        let lines: String = text
            .lines()
            .filter(|l| l.starts_with(&name_prefix))
            .map(|l| format!("{l}\n"))
            .collect();
        tracing::info!(origin = %checkpoint.origin, size = checkpoint.size, "cosigned");
        Ok(lines)
    }
}

#[derive(serde::Deserialize)]
struct OriginQuery {
    origin: String,
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, body: axum::body::Bytes) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let w2 = w.clone();
    let request = move |body: &[u8]| {
        let req = AddCheckpoint::parse(body).map_err(|e| Refusal::BadRequest(e.to_string()))?;
        w2.add_checkpoint(&req, now)
    };
    match tokio::task::spawn_blocking(move || request(&body)).await {
        Ok(Ok(lines)) => (StatusCode::OK, lines).into_response(),
        Ok(Err(refusal)) => refusal.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn latest(State(w): State<Arc<Witness>>, Query(q): Query<OriginQuery>) -> Response {
    match w.latest(&q.origin) {
        Ok(Some(s)) => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            s.checkpoint,
        )
            .into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "nothing cosigned for that origin\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn metrics(State(w): State<Arc<Witness>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        format!(
            "# HELP witness_alerts_total Log misbehaviour proven (two validly signed checkpoints that cannot both be true); cosigning of that log stopped.\n\
             # TYPE witness_alerts_total counter\nwitness_alerts_total {}\n\
             # HELP witness_monitor_errors_total Monitor polls that failed without proving anything (unreachable, unsigned, stale, tiles that prove nothing); polled again.\n\
             # TYPE witness_monitor_errors_total counter\nwitness_monitor_errors_total {}\n",
            w.alerts(),
            w.monitor_errors.load(std::sync::atomic::Ordering::Relaxed)
        ),
    )
        .into_response()
}

/// The witness's HTTP API: `POST /add-checkpoint` (C2SP tlog-witness),
/// `GET /checkpoint?origin=…` (the latest cosigned checkpoint) and `GET /metrics`.
pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/checkpoint", get(latest))
        .route("/metrics", get(metrics))
        .with_state(w)
}
