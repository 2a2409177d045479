//! HTTP helpers every handler module shares: bounded body reads, plain-text
//! answers, and a request's credentials (its bearer token; on a Unix socket,
//! the peer's uid).

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use protocol::RequestError;

use crate::GateError;

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
