//! Notifications of approval requests (`approval_webhooks`): when a
//! decision opens an approval request, the gate POSTs a JSON event to each
//! configured URL — with a `text` Slack-compatible receivers show and a link
//! to the request in the portal — signed with HMAC-SHA256 over the timestamp
//! and the body:
//!
//! ```text
//! tollgate-webhook-timestamp: <unix seconds>
//! tollgate-webhook-signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//! ```
//!
//! A receiver recomputes the HMAC over the raw body with the shared secret
//! (`approval_webhook_secret_file`), compares in constant time, and refuses
//! a timestamp older than a few minutes. Delivery never delays or changes a
//! decision: events wait in a bounded queue (full: the event is dropped and
//! counted) served by one thread, each retried with backoff (1, 2, 4, 8 s)
//! until a 2xx; `tollgate_webhook_events_total{result}` counts what became
//! of them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Events waiting for delivery at most; beyond it they are dropped.
const QUEUE: usize = 1024;
/// Waits between attempts: four retries after the first.
const BACKOFF: [Duration; 4] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// What became of the events (`tollgate_webhook_events_total{result}`).
#[derive(Default, Debug)]
pub(crate) struct Counts {
    /// Delivered to a URL (a 2xx answer).
    pub delivered: AtomicU64,
    /// Given up on after every retry.
    pub failed: AtomicU64,
    /// Dropped: the queue was full.
    pub dropped: AtomicU64,
}

/// The approval webhooks of a gate.
pub(crate) struct Webhooks {
    queue: SyncSender<Value>,
    /// This gate's URL as people reach it (links in events), and whether
    /// it was configured (`public_url`) or is the address it listens on.
    public_url: std::sync::RwLock<(String, bool)>,
    pub counts: Arc<Counts>,
}

impl Webhooks {
    /// Starts the delivery thread for `urls`, signing with `secret`; links
    /// point at `public_url`'s portal (unset: the address the gate listens
    /// on, once [`Webhooks::listening_at`] is told it).
    pub(crate) fn start(
        urls: Vec<String>,
        secret: Vec<u8>,
        public_url: Option<&str>,
        agent: ureq::Agent,
    ) -> Webhooks {
        let (queue, events) = sync_channel::<Value>(QUEUE);
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        std::thread::Builder::new()
            .name("tollgate-webhooks".into())
            .spawn(move || {
                for event in events {
                    let body = serde_json::to_vec(&event).expect("serializable");
                    for url in &urls {
                        deliver(&agent, url, &secret, &body, &c);
                    }
                }
            })
            .expect("spawn the webhook thread");
        Webhooks {
            queue,
            public_url: std::sync::RwLock::new((
                public_url.unwrap_or("http://127.0.0.1:8080").to_string(),
                public_url.is_some(),
            )),
            counts,
        }
    }

    /// The address the gate listens on: the links' base unless `public_url`
    /// is configured.
    pub(crate) fn listening_at(&self, url: &str) {
        let mut u = self.public_url.write().expect("public_url lock");
        if !u.1 {
            u.0 = url.to_string();
        }
    }

    /// Queues the event for an approval request just opened (`record`: its
    /// stored form). Never blocks.
    pub(crate) fn approval_opened(&self, record: &Value) {
        let portal = format!(
            "{}/portal/",
            self.public_url
                .read()
                .expect("public_url lock")
                .0
                .trim_end_matches('/')
        );
        let event = event(record, &portal);
        match self.queue.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counts.dropped.fetch_add(1, Relaxed);
                tracing::warn!("approval webhook queue full: event dropped");
            }
        }
    }
}

/// The event for approval request `r` (its stored record).
fn event(r: &Value, portal: &str) -> Value {
    let request = &r["request"];
    let id = r["id"].as_str().unwrap_or_default();
    let url = format!("{portal}#/approvals/{id}");
    let needed = r["count"].as_u64().unwrap_or(1);
    let text = format!(
        "Approval needed: {surface}.{action} {target} for {actor}, asked by {by}; {needed} \
         approval(s) needed before {expires}. {url}",
        surface = request["surface"].as_str().unwrap_or("?"),
        action = request["action"].as_str().unwrap_or("?"),
        target = request["target"],
        actor = request["actor"]["id"].as_str().unwrap_or("?"),
        by = r["requested_by"].as_str().unwrap_or("?"),
        expires = r["expires_at"].as_str().unwrap_or("?"),
    );
    json!({
        "type": "approval.requested",
        "id": id,
        "receipt_id": r["receipt_id"],
        "requested_by": r["requested_by"],
        "request": request,
        "approvals_needed": needed,
        "expires_at": r["expires_at"],
        "url": url,
        "text": text,
    })
}

/// The signature headers' values for `body` at `timestamp`.
pub(crate) fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("v1={}", hex::encode(hmac_sha256(secret, &message)))
}

/// HMAC-SHA256 (RFC 2104), over SHA-256's 64-byte blocks.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn deliver(agent: &ureq::Agent, url: &str, secret: &[u8], body: &[u8], counts: &Counts) {
    for attempt in 0..=BACKOFF.len() {
        if attempt > 0 {
            std::thread::sleep(BACKOFF[attempt - 1]);
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = agent
            .post(url)
            .set("content-type", "application/json")
            .set("tollgate-webhook-timestamp", &timestamp.to_string())
            .set(
                "tollgate-webhook-signature",
                &signature(secret, timestamp, body),
            )
            .send_bytes(body);
        match sent {
            Ok(_) => {
                counts.delivered.fetch_add(1, Relaxed);
                return;
            }
            Err(e) => tracing::warn!(url, attempt, error = %e, "approval webhook not delivered"),
        }
    }
    counts.failed.fetch_add(1, Relaxed);
    tracing::error!(url, "approval webhook given up after every retry");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test cases 1, 2 and 6 (a key longer than a block).
    #[test]
    fn hmac_sha256_is_rfc_4231() {
        let cases: [(&[u8], &[u8], &str); 3] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First",
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
        ];
        for (key, message, want) in cases {
            assert_eq!(hex::encode(hmac_sha256(key, message)), want);
        }
    }

    #[test]
    fn an_event_names_the_request_and_links_to_the_portal() {
        let record = json!({
            "id": "ap-1", "receipt_id": "r", "requested_by": "demo", "count": 2,
            "expires_at": "2026-12-07T12:00:00Z",
            "request": {"actor": {"id": "agent-treasury", "kind": "agent"}, "surface": "payments",
                        "action": "transfer", "target": {"amount": 50000}},
        });
        let e = event(&record, "http://gate/portal/");
        assert_eq!(e["url"], "http://gate/portal/#/approvals/ap-1");
        let text = e["text"].as_str().unwrap();
        assert!(
            text.contains("payments.transfer {\"amount\":50000} for agent-treasury"),
            "{text}"
        );
        assert!(
            text.contains("2 approval(s)") && text.ends_with("http://gate/portal/#/approvals/ap-1")
        );
        assert_eq!(
            signature(b"k", 7, b"{}"),
            format!("v1={}", hex::encode(hmac_sha256(b"k", b"7.{}")))
        );
    }
}
