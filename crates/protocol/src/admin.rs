//! The admin API's answers about policies (`/v1/admin/policies…`), as
//! types: the gate writes them and the CLI reads them with the same
//! definitions.

use serde::{Deserialize, Serialize};

/// `POST /v1/admin/policies`: the bundle published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The bundle's version (`sha256:…`).
    pub version: String,
    /// `rego` or `cedar`.
    pub engine: String,
    /// False if this version was already published.
    pub created: bool,
}

/// `POST /v1/admin/policies/{version}/activate`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The version now active.
    pub active: String,
    /// The one active before, if any.
    pub previous: Option<String>,
}

/// `POST /v1/admin/policies/shadow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowChange {
    /// The version now evaluated beside the active one; `None`: no shadow.
    pub shadow: Option<String>,
    /// The shadow before, if any.
    pub previous: Option<String>,
}

/// `GET /v1/admin/policies`: every published version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyList {
    /// The active version, if any.
    pub active: Option<String>,
    /// The shadow version, if any.
    pub shadow: Option<String>,
    /// Every published version, oldest first.
    pub versions: Vec<PolicyVersion>,
}

/// One published policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    /// `sha256:…`.
    pub version: String,
    /// When it was published (RFC 3339).
    pub published_at: String,
    /// Whether it is the active one.
    pub active: bool,
}
