//! Monitor mode: without any push, poll a log's `/log/checkpoint` and tiles
//! (C2SP tlog-tiles), and cosign what extends the last accepted state.
//!
//! The consistency proof is computed from the log's tiles and then checked by
//! exactly the rules of `add-checkpoint`, so a monitored log and a pushing log
//! are held to the same standard. A checkpoint that does not verify with the
//! log's key, a smaller tree (rollback), a different root at the same size
//! (fork) or a proof that does not verify is kept as evidence and stops
//! cosigning that log.

use std::io::Read as _;
use std::time::Duration;

use note::{Checkpoint, Note};
use tlog::{Tile, TileHashReader, TileSource};

use crate::{Error, LogState, Refusal, Witness};

/// A log to monitor: its base URL (the one serving `/log/…`).
pub struct Monitor {
    base: String,
    agent: ureq::Agent,
    /// `Bearer <token>`, if the log asks for one.
    authorization: Option<String>,
}

impl TileSource for Monitor {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
        tiles
            .iter()
            .map(|t| {
                self.get(&format!("log/{}", t.path()))
                    .map_err(|e| e.to_string().into())
            })
            .collect()
    }
}

impl Monitor {
    /// Monitors the log served at `base`.
    #[must_use]
    pub fn new(base: &str) -> Monitor {
        Monitor {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
            authorization: None,
        }
    }

    /// The same monitor, sending a caller's bearer token with each fetch.
    #[must_use]
    pub fn with_token(mut self, token: Option<&str>) -> Monitor {
        self.authorization = token.map(|t| format!("Bearer {}", t.trim()));
        self
    }

    /// The same monitor, fetching with `agent` (for https with a CA file).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> Monitor {
        self.agent = agent;
        self
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, Error> {
        let url = format!("{}/{path}", self.base);
        let fetch = |reason: String| Error::Fetch {
            url: url.clone(),
            reason,
        };
        let mut request = self.agent.get(&url);
        if let Some(a) = &self.authorization {
            request = request.set("authorization", a);
        }
        let r = request.call().map_err(|e| fetch(e.to_string()))?;
        let mut body = Vec::new();
        r.into_reader()
            .take(16 << 20)
            .read_to_end(&mut body)
            .map_err(|e| fetch(e.to_string()))?;
        Ok(body)
    }

    /// One poll: fetch the checkpoint, check it against the state, cosign or
    /// raise an alert. Returns the size now cosigned (`None` when nothing
    /// changed). Transient failures (the log unreachable) are `Err` and
    /// change nothing.
    ///
    /// # Errors
    ///
    /// A fetch that failed, or a refusal (alerts are raised before returning).
    pub fn poll(&self, w: &Witness, now: u64) -> Result<Option<u64>, Error> {
        let text = self.get("log/checkpoint")?;
        let note = Note::parse(&text)?;
        let cp = Checkpoint::parse(note.text())?;
        let Some(key) = w.logs.get(&cp.origin) else {
            return Err(Error::UnknownLog {
                base: self.base.clone(),
                origin: cp.origin,
            });
        };
        let held = w.store.load(&cp.origin)?;
        if held.as_ref().is_some_and(|s| s.halted.is_some()) {
            return Ok(None);
        }
        let alert = |held: &LogState, proof: &[tlog::Hash], why: &str| {
            w.alert(held, &text, proof, why);
            Err(Error::Misbehaviour(why.to_string()))
        };
        if let Err(e) = note.verify(std::slice::from_ref(key)) {
            return match &held {
                Some(h) => alert(
                    h,
                    &[],
                    &format!("bad signature on the served checkpoint: {e}"),
                ),
                None => Err(e.into()),
            };
        }
        let old = held.as_ref().map_or(0, |s| s.size);
        if let Some(h) = &held {
            if cp.size < h.size {
                return alert(
                    h,
                    &[],
                    &format!(
                        "rollback: served size {} is below the accepted {}",
                        cp.size, h.size
                    ),
                );
            }
            if cp.size == h.size {
                if h.root()? != cp.root {
                    return alert(h, &[], "fork: same size, different root");
                }
                return Ok(None);
            }
        }
        let proof = if old == 0 {
            Vec::new()
        } else {
            tlog::prove_consistency(old, cp.size, &TileHashReader::new(cp.size, self))?
        };
        let request = note::witness::AddCheckpoint {
            old,
            proof,
            checkpoint: &text,
        };
        match w.add_checkpoint(&request, now) {
            Ok(_) => Ok(Some(cp.size)),
            Err(Refusal::Inconsistent(why)) => {
                let h = held.expect("a proof needs an accepted state");
                alert(&h, &request.proof, &format!("inconsistent: {why}"))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Polls every `interval` until the process ends.
    pub async fn run(self, w: std::sync::Arc<Witness>, interval: Duration) {
        let m = std::sync::Arc::new(self);
        loop {
            let (m2, w2) = (m.clone(), w.clone());
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            match tokio::task::spawn_blocking(move || m2.poll(&w2, now)).await {
                Ok(Ok(Some(size))) => tracing::debug!(log = %m.base, size, "monitor cosigned"),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => tracing::warn!(log = %m.base, error = %e, "monitor"),
                Err(e) => tracing::error!(error = %e, "monitor task"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}
