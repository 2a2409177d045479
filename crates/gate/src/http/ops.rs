//! The ops endpoints: `/healthz`, `/readyz`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::http::text;
use crate::Gate;

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: ready to decide: the log can commit and a policy is
/// active. A log that cannot commit (disk full, failed fsync) stays not
/// ready until the gate is restarted with the cause fixed.
pub(crate) async fn readyz(State(gate): State<Arc<Gate>>) -> Response {
    if let Err(why) = gate.ledger.writable() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response();
    }
    match gate.active_policy() {
        Some(a) => text(format!("ready: policy {}\n", a.version)),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no policy is active\n",
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(gate): State<Arc<Gate>>) -> Response {
    let body = gate.metrics.render(&crate::metrics::Gauges {
        log_size: gate.ledger.latest().checkpoint.size,
        pending: gate.admission_limit - gate.admission.available_permits(),
        workers: gate.evaluators.workers.is_some(),
        witness_pusher: gate
            .witnessing
            .as_ref()
            .map(|w| w.leader.load(std::sync::atomic::Ordering::Relaxed)),
        webhooks: gate.approvals.webhooks.as_ref().map(|w| {
            let c = &w.counts;
            [&c.delivered, &c.failed, &c.dropped]
                .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
        }),
    });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}
