//! A typed client of the gate's admin API (`/v1/admin/…`) and of the
//! approval routes an approver uses (`/v1/approvals…`): what `tollgate
//! caller|policy|approvals` talk through. Requests and answers are the
//! `protocol` types the gate itself writes, so the two cannot drift. Admin
//! answers are not signed (what they change is: every change is a
//! governance entry in the log), so there is nothing to verify here.

use std::time::Duration;

use protocol::{
    Activation, ApprovalList, ApprovalView, Caller, CallerList, CallerToken, ContractActivation,
    ContractList, ContractPublished, EraseRequest, Erasure, NewCaller, PolicyList, Published,
    ShadowChange,
};
use serde::de::DeserializeOwned;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The gate answered with an error status; its message.
    #[error("the gate answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The gate's `message`.
        message: String,
    },
    /// The gate could not be reached.
    #[error("{0}")]
    Transport(String),
    /// The answer is not the type the API names.
    #[error("the gate's answer is not what the API says: {0}")]
    Malformed(String),
}

/// A vote on an approval request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    /// Approve.
    Approve,
    /// Reject (the request is closed).
    Reject,
}

/// The admin API of the gate at a URL, as the admin token or a caller
/// with `admin` (`approve` for the approval routes).
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client of the gate at `base` (`http://…` or `https://…`, verified
    /// against the system's roots unless [`AdminClient::with_agent`]).
    #[must_use]
    pub fn new(base: &str, token: &str) -> AdminClient {
        AdminClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(60))
                .build(),
        }
    }

    /// Send through `agent` (a private CA: `tls::agent`).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> AdminClient {
        self.agent = agent;
        self
    }

    /// `POST /v1/admin/callers`: adds a caller; its token is in the answer,
    /// and only there.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn add_caller(&self, new: &NewCaller) -> Result<CallerToken, AdminError> {
        let body = serde_json::to_vec(new).map_err(|e| AdminError::Malformed(e.to_string()))?;
        self.post("/v1/admin/callers", "application/json", &body)
    }

    /// `GET /v1/admin/callers`: every caller, revoked ones included.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn callers(&self) -> Result<CallerList, AdminError> {
        self.get("/v1/admin/callers")
    }

    /// `POST /v1/admin/callers/{name}/revoke`.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn revoke_caller(&self, name: &str) -> Result<Caller, AdminError> {
        self.post(
            &format!("/v1/admin/callers/{name}/revoke"),
            "application/json",
            b"",
        )
    }

    /// `POST /v1/admin/callers/{name}/rotate`: a new token; the old one
    /// stops working.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn rotate_caller(&self, name: &str) -> Result<CallerToken, AdminError> {
        self.post(
            &format!("/v1/admin/callers/{name}/rotate"),
            "application/json",
            b"",
        )
    }

    /// `POST /v1/admin/policies`: publishes a bundle (`.tar.gz`).
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn publish_policy(&self, tar_gz: &[u8]) -> Result<Published, AdminError> {
        self.post("/v1/admin/policies", "application/gzip", tar_gz)
    }

    /// `POST /v1/admin/policies/{version}/activate`.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn activate_policy(&self, version: &str) -> Result<Activation, AdminError> {
        self.post(
            &format!("/v1/admin/policies/{version}/activate"),
            "application/json",
            b"",
        )
    }

    /// `POST /v1/admin/policies/shadow`: the version evaluated beside the
    /// active one (`None`: none).
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn set_shadow(&self, version: Option<&str>) -> Result<ShadowChange, AdminError> {
        let body = serde_json::json!({ "version": version }).to_string();
        self.post(
            "/v1/admin/policies/shadow",
            "application/json",
            body.as_bytes(),
        )
    }

    /// `GET /v1/admin/policies`.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn policies(&self) -> Result<PolicyList, AdminError> {
        self.get("/v1/admin/policies")
    }

    /// `POST /v1/admin/contracts`: publishes a surface contract (JSON).
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn publish_contract(&self, json: &[u8]) -> Result<ContractPublished, AdminError> {
        self.post("/v1/admin/contracts", "application/json", json)
    }

    /// `POST /v1/admin/contracts/{version}/activate` (`None`: no contract).
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn activate_contract(
        &self,
        version: Option<&str>,
    ) -> Result<ContractActivation, AdminError> {
        let version = version.unwrap_or("none");
        self.post(
            &format!("/v1/admin/contracts/{version}/activate"),
            "application/json",
            b"",
        )
    }

    /// `GET /v1/admin/contracts`.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn contracts(&self) -> Result<ContractList, AdminError> {
        self.get("/v1/admin/contracts")
    }

    /// `POST /v1/admin/receipts/{receipt_id}/erase`: erases the opening of
    /// a committed field, logging who, which and why.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn erase(
        &self,
        receipt_id: &str,
        field: &str,
        reason: &str,
    ) -> Result<Erasure, AdminError> {
        let body = serde_json::to_vec(&EraseRequest {
            field: field.into(),
            reason: reason.into(),
        })
        .expect("serializable");
        self.post(
            &format!("/v1/admin/receipts/{receipt_id}/erase"),
            "application/json",
            &body,
        )
    }

    /// `GET /v1/approvals` (with `all`, closed ones too).
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn approvals(&self, all: bool) -> Result<ApprovalList, AdminError> {
        self.get(if all {
            "/v1/approvals?all=true"
        } else {
            "/v1/approvals"
        })
    }

    /// `POST /v1/approvals/{id}`: a vote, with an optional note.
    ///
    /// # Errors
    ///
    /// [`AdminError`].
    pub fn vote(
        &self,
        id: &str,
        vote: Vote,
        note: Option<&str>,
    ) -> Result<ApprovalView, AdminError> {
        let vote = match vote {
            Vote::Approve => "approve",
            Vote::Reject => "reject",
        };
        let body = serde_json::json!({ "vote": vote, "note": note }).to_string();
        self.post(
            &format!("/v1/approvals/{id}"),
            "application/json",
            body.as_bytes(),
        )
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token))
            .call();
        answer(r)
    }

    fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T, AdminError> {
        let r = self
            .agent
            .post(&format!("{}{path}", self.base))
            .set("authorization", &format!("Bearer {}", self.token))
            .set("content-type", content_type)
            .send_bytes(body);
        answer(r)
    }
}

/// The answer as `T`, or the gate's error message.
fn answer<T: DeserializeOwned>(r: Result<ureq::Response, ureq::Error>) -> Result<T, AdminError> {
    match r {
        Ok(resp) => resp
            .into_json()
            .map_err(|e| AdminError::Malformed(e.to_string())),
        Err(ureq::Error::Status(status, resp)) => {
            let body: serde_json::Value = resp.into_json().unwrap_or_default();
            Err(AdminError::Refused {
                status,
                message: body["message"]
                    .as_str()
                    .unwrap_or("(no message)")
                    .to_string(),
            })
        }
        Err(e) => Err(AdminError::Transport(e.to_string())),
    }
}
