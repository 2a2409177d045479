//! Following the log: what its governance entries say, on every gate; and
//! on a shared log (PostgreSQL, issue 21) what other gates change.
//!
//! Gates sharing one store keep some of it in memory: the published
//! checkpoint, the live callers, the active and shadow policies, the
//! requests that hold approvals, the counters. Every `FOLLOW_EVERY` each
//! gate learns what the others changed: the newest checkpoint (verified
//! before it is served), the callers and the active and shadow versions
//! (read from the log's governance entries, `governed.rs`), the approval
//! records, and — when counters are declared — the PERMITs other gates
//! appended since it last looked (each counted once, by log index, however
//! it was learnt). A gate alone on its log reads its own entries every
//! `FOLLOW_ALONE_EVERY`. Every `CHECK_RECORDS_EVERY` each gate compares
//! the store's caller records and policy pointers with the log.
//!
//! So a change made on one gate takes effect on the others within about
//! `FOLLOW_EVERY` plus one store round trip. Counters and approvals are
//! exact across gates: a decision of an actor under counters or with
//! approvals to attach holds that actor's lock in the database
//! ([`Gate::hold_actor`], `Ledger::hold`) from before it reads them until
//! its receipt is durable, and catches up with the log first.

use std::sync::Arc;
use std::time::Duration;

use crate::history::Counters;
use crate::{Gate, GateError};

/// How often a gate on a shared log looks for what other gates changed.
pub(crate) const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// How often a gate alone on its log reads what it appended (so that an
/// admin change reads little, and the governance snapshot keeps up).
const FOLLOW_ALONE_EVERY: Duration = Duration::from_secs(1);

/// How often the store's records are compared with what the log says.
const CHECK_RECORDS_EVERY: Duration = Duration::from_secs(5);

/// Entries read at once when learning other gates' PERMITs.
const READ_AT_ONCE: u64 = 256;

impl Gate {
    /// Follows the log for as long as the process runs: what its
    /// governance entries say (`governed.rs`) on every gate; on a shared
    /// log also the newest checkpoint, the approval records and the
    /// counters.
    pub(crate) async fn follow(self: Arc<Self>) {
        let shared = self.ledger.shared();
        let mut every = tokio::time::interval(if shared {
            FOLLOW_EVERY
        } else {
            FOLLOW_ALONE_EVERY
        });
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checked_at = std::time::Instant::now();
        // What failed last: said once, not four times a second while the
        // database is away, and said again when following works again.
        let mut failing: Option<String> = None;
        loop {
            every.tick().await;
            let mut followed = Ok(());
            if shared {
                let caught_up = {
                    let counters = self.history.gate.read().await;
                    self.catch_up(&counters).await
                };
                let gate = self.clone();
                let votes = tokio::task::spawn_blocking(move || gate.load_votes())
                    .await
                    .unwrap_or_else(|e| Err(GateError::Internal(e.to_string())));
                followed = caught_up.and(votes);
            }
            // Each step runs; the first failure is the one told.
            followed = followed.and(self.follow_log().await);
            if checked_at.elapsed() >= CHECK_RECORDS_EVERY {
                checked_at = std::time::Instant::now();
                let gate = self.clone();
                let checked = tokio::task::spawn_blocking(move || gate.check_records())
                    .await
                    .unwrap_or_else(|e| Err(GateError::Internal(e.to_string())));
                followed = followed.and(checked);
            }
            match (followed, &failing) {
                (Ok(()), Some(_)) => {
                    tracing::info!("following the log again");
                    failing = None;
                }
                (Ok(()), None) => {}
                (Err(e), last) => {
                    let why = e.to_string();
                    if last.as_deref() != Some(why.as_str()) {
                        tracing::warn!("following the log: {why}");
                    }
                    failing = Some(why);
                }
            }
        }
    }

    /// Learns the newest checkpoint and, when counters are declared, counts
    /// the PERMITs appended since the last catch-up (by any gate; each is
    /// counted once, by index). A decision under counters calls it holding
    /// its actor's lock across gates, so it counts every PERMIT of that
    /// actor committed before it.
    pub(crate) async fn catch_up(&self, counters: &Counters) -> Result<(), GateError> {
        let mut followed = self.followed.lock().await;
        let l = self.ledger.clone();
        let to = tokio::task::spawn_blocking(move || l.refresh())
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??;
        if counters.any() {
            let mut at = *followed;
            while at < to {
                let n = (to - at).min(READ_AT_ONCE);
                let l = self.ledger.clone();
                let entries = tokio::task::spawn_blocking(move || l.entries(at, n))
                    .await
                    .map_err(|e| GateError::Internal(e.to_string()))??;
                for (index, entry) in (at..).zip(entries) {
                    counters.learn(&entry, index);
                }
                at += n;
            }
        }
        *followed = (*followed).max(to);
        Ok(())
    }

    /// On a shared log: holds `actor`'s lock across every gate (taken after
    /// this gate's own lock of the actor), then catches up, so the decision
    /// sees every PERMIT and every use of an approval another gate
    /// committed for the actor. `None` on a log of one gate.
    pub(crate) async fn hold_actor(
        &self,
        actor: &str,
        counters: &Counters,
    ) -> Result<Option<ledger::Held>, GateError> {
        let held = self.hold(&format!("actor/{actor}")).await?;
        if held.is_some() {
            self.catch_up(counters).await?;
        }
        Ok(held)
    }

    /// On a shared log: the named lock across every gate (`Ledger::hold`),
    /// held until dropped. `None` on a log of one gate.
    pub(crate) async fn hold(&self, name: &str) -> Result<Option<ledger::Held>, GateError> {
        if !self.ledger.shared() {
            return Ok(None);
        }
        let (l, name) = (self.ledger.clone(), name.as_bytes().to_vec());
        Ok(tokio::task::spawn_blocking(move || l.hold(&name))
            .await
            .map_err(|e| GateError::Internal(e.to_string()))??)
    }
}
