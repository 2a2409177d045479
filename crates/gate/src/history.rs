//! Counters over the log (issue 19): the values a policy sees as
//! `derived.history`, derived from committed receipts only.
//!
//! The active bundle declares its counters ([`policy::Counter`]). The gate
//! keeps, per actor and counter, the committed PERMITs inside the window
//! (decision time and value, with their running sum), learnt in two ways
//! only: from the log, read back from its newest entry to the longest
//! window when the gate starts or the counters change; and from each PERMIT
//! this gate commits, recorded once its append is durable. There is no
//! second store that could drift from the log.
//!
//! Exactness: a decision of an actor under counters holds that actor's
//! lock from reading the counters until its receipt is durable and
//! recorded, so two concurrent decisions can never both pass a limit only
//! one fits. Every decision holds the read side of [`History::gate`] for as
//! long; changing the counters (activation) takes the write side, so the
//! log it reads back holds every PERMIT committed before the change, and
//! none is committed during it.
//!
//! A counter that could not be read back (a log read error) makes every
//! decision under counters SILENCE, naming why, until it can.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use ledger::Ledger;
use policy::Counter;
use protocol::{parse_receipt, parse_rfc3339_ns, Decision};
use serde_json::Value;

/// Decisions may be committed out of decision-time order by this much (an
/// evaluation's time limit plus queueing): reading the log back goes this
/// far past the longest window.
const REORDER_SLACK_NS: i64 = 10 * 60 * 1_000_000_000;

/// The counters of the active policy and what they have counted.
pub(crate) struct History {
    /// Read by every decision for as long as it runs; written to change
    /// the counters (see the module docs).
    pub(crate) gate: tokio::sync::RwLock<Counters>,
    /// One lock per actor that decides under counters.
    actors: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The declared counters and their windows.
pub(crate) struct Counters {
    declared: Arc<[Counter]>,
    /// Per actor: one window per declared counter, in declaration order.
    windows: Mutex<HashMap<String, Vec<Window>>>,
    /// Why the counters cannot be read, if they cannot.
    unreadable: Option<String>,
}

/// One counter's committed PERMITs of one actor, oldest first.
#[derive(Clone, Default)]
struct Window {
    /// (decision time, value, log index).
    entries: VecDeque<(i64, i64, u64)>,
    sum: i64,
}

impl Window {
    /// Counts the PERMIT at log index `index`, once: on a shared log the
    /// same PERMIT is learnt both when this gate commits it and when the
    /// gate follows the log (see `crate::follow`).
    fn push(&mut self, at_ns: i64, value: i64, index: u64) {
        // Entries arrive in decision-time order per actor (its lock); the
        // log read back may hold a few out of order: keep them sorted.
        let at = self.entries.partition_point(|&(t, _, _)| t <= at_ns);
        let same_time = self.entries.range(..at).rev();
        if same_time
            .take_while(|&&(t, _, _)| t == at_ns)
            .any(|&(_, _, i)| i == index)
        {
            return;
        }
        self.entries.insert(at, (at_ns, value, index));
        self.sum = self.sum.saturating_add(value);
    }

    /// Drops what is outside the window ending at `now_ns`, returns the value.
    fn value(&mut self, now_ns: i64, window_ns: i64) -> i64 {
        while let Some(&(t, v, _)) = self.entries.front() {
            if t > now_ns.saturating_sub(window_ns) {
                break;
            }
            self.entries.pop_front();
            self.sum = self.sum.saturating_sub(v);
        }
        if self.entries.is_empty() {
            self.sum = 0;
        }
        self.sum
    }
}

fn window_ns(c: &Counter) -> i64 {
    i64::try_from(c.window_seconds).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000
}

/// What a committed PERMIT adds to counter `c`, if it counts for it. A sum
/// counts only what is above zero: a negative amount never lowers a limit
/// (a transfer of −1,000,000 would otherwise make room for +1,000,000).
fn counts(c: &Counter, request: &Value) -> Option<i64> {
    summand(c, request).map(|v| v.max(0))
}

fn summand(c: &Counter, request: &Value) -> Option<i64> {
    if request["surface"].as_str() != Some(c.surface.as_str()) {
        return None;
    }
    if let Some(a) = &c.action {
        if request["action"].as_str() != Some(a.as_str()) {
            return None;
        }
    }
    Some(match &c.sum {
        None => 1,
        Some(member) => match &request["target"][member] {
            Value::Number(n) => n.as_i64().unwrap_or_else(|| {
                // A fraction counts as the next integer up (a limit is
                // never passed by rounding down); beyond i64, the most.
                n.as_f64().map_or(i64::MAX, |f| {
                    let up = f.ceil();
                    if up >= i64::MAX as f64 {
                        i64::MAX
                    } else if up <= i64::MIN as f64 {
                        i64::MIN
                    } else {
                        up as i64
                    }
                })
            }),
            _ => 0,
        },
    })
}

impl Counters {
    fn none() -> Counters {
        Counters {
            declared: Arc::from(Vec::new()),
            windows: Mutex::new(HashMap::new()),
            unreadable: None,
        }
    }

    /// Whether any counter is declared (decisions then serialize per actor).
    pub(crate) fn any(&self) -> bool {
        !self.declared.is_empty()
    }

    /// The values for `actor` at `now_ns`, as `derived.history`; `Err` if
    /// the counters cannot be read.
    pub(crate) fn values(&self, actor: &str, now_ns: i64) -> Result<Value, String> {
        if let Some(why) = &self.unreadable {
            return Err(why.clone());
        }
        let mut windows = self.windows.lock().expect("history lock");
        let mut out = serde_json::Map::new();
        match windows.get_mut(actor) {
            None => {
                for c in self.declared.iter() {
                    out.insert(c.name.clone(), 0.into());
                }
            }
            Some(ws) => {
                for (c, w) in self.declared.iter().zip(ws.iter_mut()) {
                    out.insert(c.name.clone(), w.value(now_ns, window_ns(c)).into());
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// Counts the committed PERMIT at log index `index` of `actor` on
    /// `request` decided at `at_ns` (once, however often it is learnt).
    pub(crate) fn record(&self, actor: &str, request: &Value, at_ns: i64, index: u64) {
        let mut windows = self.windows.lock().expect("history lock");
        let n = self.declared.len();
        for (k, c) in self.declared.iter().enumerate() {
            if let Some(v) = counts(c, request) {
                windows
                    .entry(actor.to_string())
                    .or_insert_with(|| vec![Window::default(); n])[k]
                    .push(at_ns, v, index);
            }
        }
    }

    /// The counters `declared`, read back from the log: every committed
    /// PERMIT receipt from the newest entry back to the longest window
    /// (plus the reordering slack) before `now_ns`.
    fn read_back(ledger: &Ledger, declared: Arc<[Counter]>, now_ns: i64) -> Counters {
        let counters = Counters {
            declared,
            windows: Mutex::new(HashMap::new()),
            unreadable: None,
        };
        if !counters.any() {
            return counters;
        }
        let longest = counters.declared.iter().map(window_ns).max().unwrap_or(0);
        let horizon = now_ns
            .saturating_sub(longest)
            .saturating_sub(REORDER_SLACK_NS);
        let size = ledger.latest().checkpoint.size;
        for index in (0..size).rev() {
            let entry = match ledger.entry(index) {
                Ok(e) => e,
                Err(e) => {
                    return Counters {
                        unreadable: Some(format!(
                            "history unavailable: reading log entry {index}: {e}"
                        )),
                        ..counters
                    }
                }
            };
            if counters.learn(&entry, index) < horizon {
                break;
            }
        }
        counters
    }

    /// Counts log entry `index` if it is a PERMIT receipt; returns its
    /// decision time (`i64::MAX` for what is no receipt: governance entries
    /// count for nothing).
    pub(crate) fn learn(&self, entry: &[u8], index: u64) -> i64 {
        let Ok((_, body)) = parse_receipt(entry) else {
            return i64::MAX;
        };
        let Ok(at) = parse_rfc3339_ns(&body.decided_at) else {
            return i64::MAX;
        };
        if body.decision == Decision::Permit {
            if let Some(actor) = body.request["actor"]["id"].as_str() {
                self.record(actor, &body.request, at, index);
            }
        }
        at
    }
}

impl History {
    pub(crate) fn new() -> History {
        History {
            gate: tokio::sync::RwLock::new(Counters::none()),
            actors: Mutex::new(HashMap::new()),
        }
    }

    /// The lock of `actor`'s decisions under counters.
    pub(crate) fn actor(&self, actor: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut actors = self.actors.lock().expect("actors lock");
        if actors.len() > 100_000 {
            // Locks nobody holds or waits for are dropped.
            actors.retain(|_, l| Arc::strong_count(l) > 1);
        }
        actors.entry(actor.to_string()).or_default().clone()
    }

    /// Changes the counters to `declared` (reading the log back off the
    /// async workers), then `then` swaps the policy that declares them: no
    /// decision runs meanwhile. Unchanged counters keep what they counted.
    pub(crate) async fn change<T>(
        &self,
        ledger: &Ledger,
        declared: &[Counter],
        then: impl FnOnce() -> T,
    ) -> T {
        let mut counters = self.gate.write().await;
        if *counters.declared != *declared {
            let (l, d) = (ledger.clone(), Arc::from(declared.to_vec()));
            *counters =
                tokio::task::spawn_blocking(move || Counters::read_back(&l, d, crate::now_ns()))
                    .await
                    .unwrap_or_else(|e| Counters {
                        unreadable: Some(format!("history unavailable: {e}")),
                        ..Counters::none()
                    });
        }
        then()
    }

    /// Start-up: the counters `declared`, read back from the log (no
    /// decision runs yet).
    pub(crate) fn start(&self, ledger: &Ledger, declared: &[Counter]) {
        if let Ok(mut counters) = self.gate.try_write() {
            *counters = Counters::read_back(ledger, Arc::from(declared.to_vec()), crate::now_ns());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(sum: Option<&str>, window_seconds: u64) -> Counter {
        Counter {
            name: "c".into(),
            surface: "payments".into(),
            action: Some("transfer".into()),
            window_seconds,
            sum: sum.map(Into::into),
        }
    }

    /// Counters summing transfers' `amount` over 10 s, and a transfer of `amount`.
    fn summing() -> (Counters, impl Fn(Value) -> Value) {
        let counters = Counters {
            declared: Arc::from(vec![counter(Some("amount"), 10)]),
            windows: Mutex::new(HashMap::new()),
            unreadable: None,
        };
        let req = |amount: Value| serde_json::json!({"surface": "payments", "action": "transfer", "target": {"amount": amount}});
        (counters, req)
    }

    #[test]
    fn windows_slide_and_sums_round_fractions_up() {
        let (counters, req) = summing();
        let s = 1_000_000_000;
        assert_eq!(counters.values("a", 0).unwrap()["c"], 0);
        counters.record("a", &req(100.into()), s, 0);
        counters.record("a", &req(serde_json::json!(2.25)), 2 * s, 1);
        counters.record("a", &req("x".into()), 3 * s, 2);
        counters.record(
            "a",
            &serde_json::json!({"surface": "payments", "action": "refund", "target": {"amount": 5}}),
            3 * s,
            3,
        );
        assert_eq!(counters.values("a", 5 * s).unwrap()["c"], 103);
        // Learnt twice (committed here, then followed in the log): once.
        counters.record("a", &req(100.into()), s, 0);
        counters.record("a", &req(serde_json::json!(2.25)), 2 * s, 1);
        assert_eq!(counters.values("a", 5 * s).unwrap()["c"], 103);
        assert_eq!(counters.values("b", 5 * s).unwrap()["c"], 0);
        // The first leaves the window at 11 s, the second at 12 s.
        assert_eq!(counters.values("a", 11 * s).unwrap()["c"], 3);
        assert_eq!(counters.values("a", 13 * s).unwrap()["c"], 0);
    }

    #[test]
    fn negative_values_never_lower_a_sum() {
        let (counters, req) = summing();
        let s = 1_000_000_000;
        counters.record("a", &req(1000.into()), s, 0);
        counters.record("a", &req((-1_000_000).into()), 2 * s, 1);
        counters.record("a", &req(serde_json::json!(-0.5)), 2 * s, 2);
        counters.record("a", &req(serde_json::json!(-1e300)), 2 * s, 3);
        assert_eq!(counters.values("a", 3 * s).unwrap()["c"], 1000);
    }
}
