//! The one place server errors become HTTP responses (body: schemas/error.schema.json).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{ErrorBody, RequestError};

/// Seconds an overloaded gate asks a client to wait (`Retry-After`).
pub const RETRY_AFTER_S: u32 = 1;

/// Everything an API call can fail with. Client errors are answered as they
/// are; internal ones are logged and answered generically.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The request does not meet the contract (400); names the field.
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    /// A malformed input other than a decision request (400).
    #[error("{0}")]
    BadInput(String),
    /// The idempotency key was used for a different request (409).
    #[error("idempotency key already used for a different request (receipt {receipt_id})")]
    Conflict {
        /// The original receipt.
        receipt_id: String,
    },
    /// No credential, or a wrong or revoked one (401); says which.
    #[error("{0}")]
    Unauthorized(String),
    /// A known caller without the role the route needs, or one that may
    /// not do this (an asker voting on its own request) (403); says which.
    #[error("{0}")]
    Forbidden(String),
    /// The request did not arrive in time (408); nothing was evaluated.
    #[error("{0}")]
    Timeout(String),
    /// The permit was redeemed before (409 `permit_redeemed`); names the
    /// first redemption.
    #[error("{0}")]
    Redeemed(String),
    /// Nothing there (404).
    #[error("{0}")]
    NotFound(String),
    /// The bundle does not load or compile (422).
    #[error("{0}")]
    InvalidPolicy(String),
    /// More decisions are waiting than the gate admits (`max_pending_decisions`):
    /// refused before anything is evaluated or written (503, `Retry-After`).
    #[error("overloaded: {0}; retry after {RETRY_AFTER_S} s")]
    Overloaded(String),
    /// The log could not make the receipt durable, or its store cannot be
    /// read now (a database restarting); no decision is claimed (503).
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// A bug (500); details go to the log, not the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ledger::Error> for GateError {
    fn from(e: ledger::Error) -> GateError {
        match e {
            ledger::Error::NotFound(what) => GateError::NotFound(what),
            // A store that cannot be read or written now (a database that
            // is restarting, a disk that failed) may be back on a retry.
            ledger::Error::NotCommitted(_)
            | ledger::Error::Stopped(_)
            | ledger::Error::Storage(_) => GateError::Unavailable(e.to_string()),
            // A size or index the client asked for that the log does not
            // have is the client's; reading the stored hashes failing is the
            // store's (a database restarting while a proof is built): 503,
            // so the client retries and learns whether it was decided.
            ledger::Error::Tlog(
                tlog::Error::IndexOutOfRange { .. } | tlog::Error::BadSizes { .. },
            ) => GateError::BadInput(e.to_string()),
            ledger::Error::Tlog(tlog::Error::Read(_)) => GateError::Unavailable(e.to_string()),
            other => GateError::Internal(other.to_string()),
        }
    }
}

impl GateError {
    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            GateError::InvalidRequest(_) | GateError::BadInput(_) => StatusCode::BAD_REQUEST,
            GateError::Conflict { .. } | GateError::Redeemed(_) => StatusCode::CONFLICT,
            GateError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GateError::Forbidden(_) => StatusCode::FORBIDDEN,
            GateError::NotFound(_) => StatusCode::NOT_FOUND,
            GateError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            GateError::InvalidPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GateError::Unavailable(_) | GateError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            GateError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn body(&self) -> ErrorBody {
        let (code, field) = match self {
            GateError::InvalidRequest(e) => ("invalid_request", Some(e.field.clone())),
            GateError::BadInput(_) => ("invalid_request", None),
            GateError::Conflict { .. } => ("idempotency_conflict", None),
            GateError::Redeemed(_) => ("permit_redeemed", None),
            GateError::Unauthorized(_) => ("unauthorized", None),
            GateError::Forbidden(_) => ("forbidden", None),
            GateError::NotFound(_) => ("not_found", None),
            GateError::Timeout(_) => ("timeout", None),
            GateError::InvalidPolicy(_) => ("invalid_policy", None),
            GateError::Unavailable(_) => ("unavailable", None),
            GateError::Overloaded(_) => ("overloaded", None),
            GateError::Internal(_) => ("internal", None),
        };
        let message = match self {
            GateError::Internal(_) => "internal error; see the gate's log".to_string(),
            other => other.to_string(),
        };
        ErrorBody {
            error: code.into(),
            message,
            field,
        }
    }
}

impl IntoResponse for GateError {
    fn into_response(self) -> Response {
        match &self {
            GateError::Internal(_) | GateError::Unavailable(_) => tracing::error!(error = %self),
            _ => tracing::debug!(error = %self),
        }
        let mut response = (self.status(), Json(self.body())).into_response();
        if matches!(self, GateError::Overloaded(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_S),
            );
        }
        if matches!(self, GateError::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::GateError;
    use axum::http::StatusCode;

    #[test]
    fn every_storage_error_is_unavailable_and_only_a_bad_size_is_the_clients() {
        let read = || tlog::Error::Read("postgres: terminating connection (SQLSTATE 57P01)".into());
        for e in [
            ledger::Error::Tlog(read()),
            ledger::Error::Storage("postgres: connection closed".into()),
        ] {
            assert_eq!(GateError::from(e).status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        let bad = ledger::Error::Tlog(tlog::Error::BadSizes { old: 9, new: 3 });
        assert_eq!(GateError::from(bad).status(), StatusCode::BAD_REQUEST);
        let broken = ledger::Error::Tlog(tlog::Error::InvalidProof("root mismatch"));
        assert_eq!(
            GateError::from(broken).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
