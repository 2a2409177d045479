//! HTTP helpers every handler module shares: bounded body reads, plain-text
//! answers, the bearer token of a request.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use protocol::RequestError;

use crate::GateError;

const TEXT: &str = "text/plain; charset=utf-8";

/// Reads a body of at most `limit` bytes.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, GateError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        GateError::InvalidRequest(RequestError {
            field: String::new(),
            problem: format!("body exceeds {limit} bytes or could not be read"),
        })
    })
}

/// A `text/plain` answer.
pub(crate) fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// The token of an `Authorization: Bearer <token>` header, if there is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}
