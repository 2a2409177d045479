//! `/v1/approvals…`: list, read and vote on approval requests (the
//! operations are `approvals.rs`'s).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::Json;
use serde::Deserialize;

use crate::callers::Role;
use crate::http::{json_body, Credentials};
use crate::{Gate, GateError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VoteBody {
    /// `approve` or `reject`.
    vote: String,
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/approvals/{id}` `{"vote": "approve"|"reject", "note"?}`: a
/// caller with `approve` (never the one that asked) votes.
pub(crate) async fn vote(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(id): UrlPath<String>,
    body: Body,
) -> Result<Json<protocol::ApprovalView>, GateError> {
    let (caller, _) = gate.auth.authenticate(&creds, Role::Approve)?;
    let bytes = gate.read_body(body, 16 * 1024).await?;
    let body: VoteBody = json_body(&bytes, "vote")?;
    let approve = match body.vote.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(GateError::BadInput(format!(
                "vote {other:?}: approve or reject"
            )))
        }
    };
    if body.note.as_ref().is_some_and(|n| n.len() > 1024) {
        return Err(GateError::BadInput("note: at most 1024 bytes".into()));
    }
    gate.cast_vote(caller, id, approve, body.note)
        .await
        .map(Json)
}

/// `GET /v1/approvals/{id}`: the request and its votes, for a caller with
/// `approve` or `admin`, or the caller that asked.
pub(crate) async fn get(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<protocol::ApprovalView>, GateError> {
    let (caller, _) = gate.auth.identify(&creds, Some(Role::Approve))?;
    gate.approval_view(&caller, &id).map(Json)
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(default)]
    all: bool,
}

/// `GET /v1/approvals[?all=true]`: the live requests (all with `all`), for a
/// caller with `approve` or `admin`.
pub(crate) async fn list(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    Query(q): Query<ListQuery>,
) -> Result<Json<protocol::ApprovalList>, GateError> {
    let (caller, _) = gate.auth.identify(&creds, Some(Role::Approve))?;
    gate.approval_list(&caller, q.all).map(Json)
}
