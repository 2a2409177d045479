//! The HTTP surface: the routes ([`router`]) and their handlers, one module
//! per concern — `decisions`, `admin`, `approvals`, `read`, `ops`, the
//! `portal` — each only authenticating, reading the request and calling
//! the gate's operations (decide, evaluate, replay, redeem, admin changes,
//! votes; AuthZEN translates in `authzen.rs`); and what they share:
//! bounded body reads, plain-text answers, a request's credentials (its
//! bearer token; on a Unix socket, the peer's uid; over mTLS, the
//! certificate's subject).

mod admin;
mod approvals;
mod authzen;
mod decisions;
mod ops;
mod portal;
mod read;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use protocol::RequestError;

use crate::{Gate, GateError};

const TEXT: &str = "text/plain; charset=utf-8";

/// Reads a body of at most `limit` bytes within `timeout` (the gate's
/// `body_read_timeout_ms`: a slow body is 408 and nothing is evaluated).
pub(crate) async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, GateError> {
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| {
            GateError::InvalidRequest(RequestError {
                field: String::new(),
                problem: format!("body exceeds {limit} bytes or could not be read"),
            })
        }),
        Err(_) => Err(GateError::Timeout(format!(
            "the request body did not arrive within {} ms",
            timeout.as_millis()
        ))),
    }
}

/// A JSON body (`what` names it in errors) as `T`, refusing a document that
/// names a member twice (400 naming it: the gate and a reader of the log
/// could otherwise see different values).
pub(crate) fn json_body<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<T, GateError> {
    protocol::strict::from_slice(bytes)
        .and_then(serde_json::from_value)
        .map_err(|e| GateError::BadInput(format!("{what}: {e}")))
}

/// A `text/plain` answer.
pub(crate) fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in
/// any case), if there is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(protocol::bearer_token)
}

/// The peer of a Unix-socket connection, from the kernel (`SO_PEERCRED`):
/// attached to every request served on the gate's Unix socket (`serve.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnixPeer {
    /// The peer process's user id, if the kernel told.
    pub uid: Option<u32>,
}

/// The verified client certificate of a TLS connection (mTLS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPeer {
    /// Its subject common name.
    pub subject_cn: String,
}

/// What a request presents to authenticate: a bearer token, and on a Unix
/// socket the peer's uid.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The `Authorization: Bearer` token.
    pub bearer: Option<String>,
    /// The Unix-socket peer's uid.
    pub peer_uid: Option<u32>,
    /// The subject common name of a verified TLS client certificate.
    pub tls_subject: Option<String>,
    /// The `Tollgate-On-Behalf-Of` header, as sent: the principal the
    /// caller says it acts for (checked when authorized).
    pub on_behalf_of: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Credentials {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Credentials {
            bearer: bearer(&parts.headers).map(str::to_string),
            peer_uid: parts
                .extensions
                .get::<ConnectInfo<UnixPeer>>()
                .and_then(|c| c.0.uid),
            tls_subject: parts
                .extensions
                .get::<ConnectInfo<TlsPeer>>()
                .map(|c| c.0.subject_cn.clone()),
            on_behalf_of: parts
                .headers
                .get(protocol::ON_BEHALF_OF_HEADER)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        })
    }
}

/// The whole HTTP API.
pub fn router(gate: Arc<Gate>) -> Router {
    Router::new()
        .route("/v1/decisions", post(decisions::decide))
        .route("/v1/replay", post(decisions::replay))
        .route("/v1/whoami", get(read::whoami))
        .route("/v1/approvals", get(approvals::list))
        .route(
            "/v1/approvals/{id}",
            get(approvals::get).post(approvals::vote),
        )
        .route("/v1/evaluations", post(decisions::evaluate))
        .route("/v1/receipts/{receipt_id}", get(read::receipt))
        .route("/v1/permits/{receipt_id}/redeem", post(decisions::redeem))
        .route("/v1/proofs/inclusion", get(read::inclusion))
        .route("/v1/proofs/consistency", get(read::consistency))
        .route("/v1/checkpoints/{size}", get(read::checkpoint))
        .route("/v1/policies/{version}", get(read::policy_bundle))
        .route("/v1/contracts/{version}", get(read::contract))
        .route(
            "/v1/admin/callers",
            get(admin::list_callers).post(admin::add_caller),
        )
        .route(
            "/v1/admin/callers/{name}/revoke",
            post(admin::revoke_caller),
        )
        .route(
            "/v1/admin/callers/{name}/rotate",
            post(admin::rotate_caller),
        )
        .route("/v1/admin/policies", get(admin::list).post(admin::publish))
        .route("/v1/admin/policies/shadow", post(admin::shadow))
        .route(
            "/v1/admin/policies/{version}/activate",
            post(admin::activate),
        )
        .route(
            "/v1/admin/contracts",
            get(admin::list_contracts).post(admin::publish_contract),
        )
        .route(
            "/v1/admin/contracts/{version}/activate",
            post(admin::activate_contract),
        )
        .route("/v1/admin/receipts/{receipt_id}/erase", post(admin::erase))
        .route("/log/checkpoint", get(read::latest_checkpoint))
        .route("/log/tile/{*path}", get(read::tile))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(authzen::EVALUATION, post(authzen::evaluation))
        .route(authzen::EVALUATIONS, post(authzen::evaluations))
        .route(authzen::CONFIGURATION, get(authzen::configuration))
        .merge(portal::routes())
        .route_layer(axum::middleware::from_fn(traced))
        .with_state(gate)
}

/// Every request in a server span (target `telemetry::TARGET`: exported
/// only when tracing is on, else disabled at its callsite) named after its
/// route, continuing the trace its `traceparent` names; the decision,
/// evaluation and admin spans are its children.
async fn traced(
    route: axum::extract::MatchedPath,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let span = tracing::info_span!(
        target: telemetry::TARGET,
        "request",
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route.as_str(),
        http.response.status_code = tracing::field::Empty,
    );
    if span.is_disabled() {
        return next.run(request).await;
    }
    span.record(
        "otel.name",
        format!("{} {}", request.method(), route.as_str()).as_str(),
    );
    let headers = request.headers();
    telemetry::continue_trace(&span, &|k| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    // The log lines of this request carry its trace and span ids (a span
    // at the highest level, so every log level shows it).
    let logged = match telemetry::ids(&span) {
        Some((trace_id, span_id)) => {
            tracing::error_span!("traced", trace_id = %trace_id, span_id = %span_id)
        }
        None => tracing::Span::none(),
    };
    let run = tracing::Instrument::instrument(next.run(request), span.clone());
    let response = tracing::Instrument::instrument(run, logged).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
