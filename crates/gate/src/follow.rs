//! Following a shared log (PostgreSQL, issue 21): what other gates change.
//!
//! Gates sharing one store keep some of it in memory: the published
//! checkpoint, the live callers, the active and shadow policies, the
//! requests that hold approvals, the counters. Every `FOLLOW_EVERY` each
//! gate learns what the others changed, from the store alone: the newest
//! checkpoint (verified before it is served), the caller records, the
//! active and shadow versions, the approval records, and — when counters
//! are declared — the PERMITs other gates appended since it last looked
//! (each counted once, by log index, however it was learnt).
//!
//! So a change made on one gate takes effect on the others within about
//! `FOLLOW_EVERY` plus one store round trip. A decision is still decided
//! by one gate on what that gate knows: see ARCHITECTURE.md for what is
//! exact across gates and what is exact per gate only.

use std::sync::Arc;
use std::time::Duration;

use crate::{Gate, GateError};

/// How often a gate on a shared log looks for what other gates changed.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// Entries read at once when learning other gates' PERMITs.
const READ_AT_ONCE: u64 = 256;

impl Gate {
    /// Follows the shared log for as long as the process runs.
    pub(crate) async fn follow_shared(self: Arc<Self>) {
        let mut every = tokio::time::interval(FOLLOW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut followed = self.ledger.latest().checkpoint.size;
        loop {
            every.tick().await;
            let gate = self.clone();
            match tokio::task::spawn_blocking(move || gate.follow_once(followed)).await {
                Ok(Ok(size)) => followed = size,
                Ok(Err(e)) => tracing::warn!("following the shared log: {e}"),
                Err(e) => tracing::warn!("following the shared log: {e}"),
            }
            if let Err(e) = self.policies.follow(&self.ledger, &self.history).await {
                tracing::warn!("following the shared log's policies: {e}");
            }
        }
    }

    /// One look: the newest checkpoint, callers, approvals, and the
    /// PERMITs from `from` to the newest checkpoint. Returns its size.
    fn follow_once(&self, from: u64) -> Result<u64, GateError> {
        let to = self.ledger.refresh()?;
        self.learn_counters(from, to)?;
        self.callers.reload(&self.ledger)?;
        self.load_votes()?;
        Ok(to)
    }

    /// Counts the PERMITs of entries `from..to` (when counters are declared).
    fn learn_counters(&self, from: u64, to: u64) -> Result<(), GateError> {
        let counters = self.history.gate.blocking_read();
        if !counters.any() {
            return Ok(());
        }
        let mut at = from;
        while at < to {
            let n = (to - at).min(READ_AT_ONCE);
            for (index, entry) in (at..).zip(self.ledger.entries(at, n)?) {
                counters.learn(&entry, index);
            }
            at += n;
        }
        Ok(())
    }
}
