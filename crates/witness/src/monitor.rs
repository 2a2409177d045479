//! Monitor mode: without any push, poll a log's `/log/checkpoint` and tiles
//! (C2SP tlog-tiles), and cosign what extends the last accepted state.
//!
//! The consistency proof is computed from the log's tiles and then checked by
//! exactly the rules of `add-checkpoint`, so a monitored log and a pushing log
//! are held to the same standard.
//!
//! Cosigning of a log stops only on proof that the log itself misbehaved,
//! which anyone can check from the evidence kept: two checkpoints, both
//! validly signed by the log's key, that cannot both be true — the same size
//! with different roots, or a larger tree whose own tiles prove it extends a
//! tree of the held size with another root (a consistency proof that verifies
//! from that other root). Everything else proves nothing about the log, since
//! anyone on the path can cause it: an unsigned or garbage checkpoint, an
//! older (stale) one, tiles that do not prove consistency, an unreachable log.
//! Those are transient errors: counted (`witness_monitor_errors_total`),
//! logged, and polled again.

use base64::Engine as _;
use std::time::Duration;

use note::{Checkpoint, Note};
use tlog::{Tile, TileHashReader, TileSource};

use crate::{Error, LogState, Refusal, Witness};

/// A log to monitor: its base URL (the one serving `/log/…`), read through
/// the one log client (`logclient`).
pub struct Monitor {
    log: logclient::LogClient,
}

impl TileSource for Monitor {
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
        self.log.read_tiles(tiles)
    }
}

impl Monitor {
    /// Monitors the log served at `base`.
    #[must_use]
    pub fn new(base: &str) -> Monitor {
        Monitor {
            log: logclient::LogClient::new(base).with_agent(
                ureq::AgentBuilder::new()
                    .timeout(Duration::from_secs(10))
                    .build(),
            ),
        }
    }

    /// The same monitor, sending a caller's bearer token with each fetch.
    #[must_use]
    pub fn with_token(mut self, token: Option<&str>) -> Monitor {
        self.log = self.log.with_token(token);
        self
    }

    /// The same monitor, fetching with `agent` (for https with a CA file).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> Monitor {
        self.log = self.log.with_agent(agent);
        self
    }

    fn get(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.log.must_get(path).map_err(|e| Error::Fetch {
            url: e.url,
            reason: e.reason,
        })
    }

    /// One poll: fetch the checkpoint, check it against the state, cosign or
    /// raise an alert. Returns the size now cosigned (`None` when nothing
    /// changed). Anything that is not proof of misbehaviour is `Err` and
    /// changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Misbehaviour`] once the evidence is kept and cosigning of the
    /// log is stopped; any other error is transient.
    pub fn poll(&self, w: &Witness, now: u64) -> Result<Option<u64>, Error> {
        let text = self.get("log/checkpoint")?;
        let note = Note::parse(&text)?;
        let cp = Checkpoint::parse(note.text())?;
        let Some(key) = w.logs.get(&cp.origin) else {
            return Err(Error::UnknownLog {
                base: self.log.base().to_string(),
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
        // Unsigned: anyone could have served it.
        note.verify(std::slice::from_ref(key))?;
        let old = held.as_ref().map_or(0, |s| s.size);
        if let Some(h) = &held {
            if cp.size < h.size {
                // Validly signed but older: a replay or a stale cache proves
                // nothing (the log did sign it, once).
                return Err(Error::Stale {
                    served: cp.size,
                    cosigned: h.size,
                });
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
                match self.fork_proof(&cp, old, &h.root()?) {
                    Some((other_root, proof)) => alert(
                        &h,
                        &proof,
                        &format!(
                            "fork: the checkpoint of size {} extends a tree of size {old} \
                             with root {} (the proof verifies from it), not the cosigned root",
                            cp.size,
                            crate::B64.encode(other_root.0)
                        ),
                    ),
                    None => Err(Error::Unproven(why)),
                }
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Proof that the signed checkpoint `cp` is inconsistent with the held
    /// root at size `old`: the root of size `old` in `cp`'s tree, read from
    /// the log's tiles, and a consistency proof from it to `cp` that
    /// verifies. With it, by collision resistance, `cp` extends a tree of
    /// size `old` with that root and no other, so not the held one. `None`
    /// if the tiles do not show that (they may be wrong, or tampered with on
    /// the way): that proves nothing.
    fn fork_proof(
        &self,
        cp: &Checkpoint,
        old: u64,
        held_root: &tlog::Hash,
    ) -> Option<(tlog::Hash, Vec<tlog::Hash>)> {
        let tiles = TileHashReader::new(cp.size, self);
        let other_root = tlog::tree_hash(old, &tiles).ok()?;
        let proof = tlog::prove_consistency(old, cp.size, &tiles).ok()?;
        (other_root != *held_root
            && tlog::verify_consistency(old, cp.size, &other_root, &cp.root, &proof).is_ok())
        .then_some((other_root, proof))
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
                Ok(Ok(Some(size))) => {
                    tracing::debug!(log = %m.log.base(), size, "monitor cosigned")
                }
                Ok(Ok(None)) => {}
                Ok(Err(e @ Error::Misbehaviour(_))) => {
                    tracing::error!(log = %m.log.base(), error = %e, "monitor");
                }
                Ok(Err(e)) => {
                    w.count_monitor_error();
                    tracing::warn!(log = %m.log.base(), error = %e, "monitor: transient, polling again");
                }
                Err(e) => tracing::error!(error = %e, "monitor task"),
            }
            tokio::time::sleep(interval).await;
        }
    }
}
