//! OpenID AuthZEN Authorization API 1.0 (final, 2026-01-11): `POST
//! /access/v1/evaluation`, `POST /access/v1/evaluations` and the discovery
//! document `GET /.well-known/authzen-configuration`, so a policy
//! enforcement point that speaks AuthZEN gets the same decisions as `POST
//! /v1/decisions` — each one signed, in the log and proven — without an SDK.
//!
//! The mapping onto the request contract (`to_intent`):
//!
//! | AuthZEN                         | Tollgate                                       |
//! |---------------------------------|------------------------------------------------|
//! | `subject.id`                    | `actor.id`                                     |
//! | `subject.type`                  | `actor.kind` ([`kind_of`]: `user` → `human`, …) |
//! | `action.name`                   | `action`                                       |
//! | `resource.type`                 | `surface`                                      |
//! | `resource.id`, `.properties`    | `target`: the properties and `id`              |
//! | `context`                       | `context`, plus `authzen`: the subject type as sent, the subject's and the action's properties |
//! | `X-Request-ID` (`#<n>` in a batch), else `context.idempotency_key`, else a fresh key | `idempotency_key` |
//!
//! `decision` is `true` only for PERMIT; `context` is the whole decision
//! response (decision, reason, receipt, proof), so a PEP that ignores it is
//! still safe and an auditor can still prove it. The caller authenticates as
//! for `/v1/decisions` (the `decide` role) and may speak only for its actors.
//! Unknown members are ignored, as the specification requires; a member
//! named twice is refused, as everywhere in the gate. Errors of the whole
//! request are an HTTP status with a message string; an evaluation of a
//! batch that fails is `decision: false` with `context.error: {status,
//! message}`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::callers::{Authorized, Role};
use crate::http::Credentials;
use crate::{Gate, GateError};

/// The Access Evaluation endpoint's path.
pub(crate) const EVALUATION: &str = "/access/v1/evaluation";
/// The Access Evaluations endpoint's path.
pub(crate) const EVALUATIONS: &str = "/access/v1/evaluations";
/// The discovery document's path.
pub(crate) const CONFIGURATION: &str = "/.well-known/authzen-configuration";

/// Evaluations in one request at most.
pub(crate) const MAX_EVALUATIONS: usize = 64;

/// Largest request body: a batch of the largest decisions.
const MAX_BODY: usize = 256 * 1024;

/// The request identifier header (AuthZEN § Request Identification).
const REQUEST_ID: &str = "x-request-id";

/// An error of the whole request: its status and a message string.
struct Refused(StatusCode, String);

impl From<GateError> for Refused {
    fn from(e: GateError) -> Refused {
        Refused(e.status(), e.to_string())
    }
}

impl Refused {
    fn bad(message: impl Into<String>) -> Refused {
        Refused(StatusCode::BAD_REQUEST, message.into())
    }
}

/// A contract kind for an AuthZEN subject type: `user`, `human`, `person`
/// → `human`; `agent`, `ai_agent` → `agent`; `service`, `service_account`,
/// `application`, `machine`, `workload` → `service` (case-insensitive).
pub(crate) fn kind_of(subject_type: &str) -> Option<&'static str> {
    match subject_type.to_ascii_lowercase().as_str() {
        "user" | "human" | "person" => Some("human"),
        "agent" | "ai_agent" => Some("agent"),
        "service" | "service_account" | "application" | "machine" | "workload" => Some("service"),
        _ => None,
    }
}

/// Member `at` of `v`, if present: `Err` naming it if it is no object.
fn object<'a>(v: &'a Value, at: &str) -> Result<Option<&'a Map<String, Value>>, String> {
    match v.get(at) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(format!("{at} must be an object")),
    }
}

/// A string member of `entity` (named `at` in messages).
fn string<'a>(entity: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a str, String> {
    match entity.get(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("{at}.{key} is required")),
        Some(_) => Err(format!("{at}.{key} must be a string")),
    }
}

/// The decision request (contract form) for one evaluation (its defaults
/// merged) and its idempotency key.
pub(crate) fn to_intent(e: &Value, key: Option<String>) -> Result<Value, String> {
    let subject = object(e, "subject")?.ok_or("subject is required")?;
    let action = object(e, "action")?.ok_or("action is required")?;
    let resource = object(e, "resource")?.ok_or("resource is required")?;
    let subject_type = string(subject, "type", "subject")?;
    let kind = kind_of(subject_type).ok_or_else(|| {
        format!(
            "subject.type {subject_type:?} has no actor kind: use user (human), agent or \
             service (service_account, application, machine, workload)"
        )
    })?;
    let resource_id = string(resource, "id", "resource")?;
    let mut target = match resource.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("resource.properties must be an object".into()),
    };
    if target
        .get("id")
        .is_some_and(|v| v.as_str() != Some(resource_id))
    {
        return Err("resource.properties.id differs from resource.id".into());
    }
    target.insert("id".into(), json!(resource_id));
    let mut context = object(e, "context")?.cloned().unwrap_or_default();
    if context.contains_key("authzen") {
        return Err("context.authzen is the gate's (what the AuthZEN request said)".into());
    }
    let key = match key {
        Some(k) => k,
        None => match context.get("idempotency_key") {
            Some(Value::String(k)) => k.clone(),
            Some(_) => return Err("context.idempotency_key must be a string".into()),
            None => format!("authzen-{}", &keyfile::new_token()[..32]),
        },
    };
    let mut said = Map::new();
    said.insert("subject_type".into(), json!(subject_type));
    for (at, entity) in [("subject", subject), ("action", action)] {
        match entity.get("properties") {
            None | Some(Value::Null) => {}
            Some(p @ Value::Object(_)) => drop(said.insert(format!("{at}_properties"), p.clone())),
            Some(_) => return Err(format!("{at}.properties must be an object")),
        }
    }
    context.insert("authzen".into(), Value::Object(said));
    Ok(json!({
        "actor": {"id": string(subject, "id", "subject")?, "kind": kind},
        "surface": string(resource, "type", "resource")?,
        "action": string(action, "name", "action")?,
        "target": target,
        "context": context,
        "idempotency_key": key,
    }))
}

/// The evaluations of an Access Evaluations request, each with the
/// top-level `subject`, `action`, `resource` and `context` as defaults
/// (AuthZEN § Default values); none: the request itself, as one.
pub(crate) fn merged(request: &Value) -> Result<Vec<Value>, String> {
    let list = match request.get("evaluations") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err("evaluations must be an array".into()),
    };
    if list.len() > MAX_EVALUATIONS {
        return Err(format!(
            "{} evaluations: at most {MAX_EVALUATIONS} in one request",
            list.len()
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, e)| {
            let Value::Object(own) = e else {
                return Err(format!("evaluations[{i}] must be an object"));
            };
            let mut out = Map::new();
            for k in ["subject", "action", "resource", "context"] {
                match own.get(k).or_else(|| request.get(k)) {
                    Some(v) if !v.is_null() => drop(out.insert(k.into(), v.clone())),
                    _ if k == "context" => {}
                    _ => {
                        return Err(format!(
                            "evaluations[{i}] has no {k}, and the request gives no default"
                        ))
                    }
                }
            }
            Ok(Value::Object(out))
        })
        .collect()
}

/// How a batch ends early (AuthZEN § Evaluations semantics).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

fn semantic(request: &Value) -> Result<Semantic, String> {
    match request.pointer("/options/evaluations_semantic") {
        None | Some(Value::Null) => Ok(Semantic::ExecuteAll),
        Some(Value::String(s)) => match s.as_str() {
            "execute_all" => Ok(Semantic::ExecuteAll),
            "deny_on_first_deny" => Ok(Semantic::DenyOnFirstDeny),
            "permit_on_first_permit" => Ok(Semantic::PermitOnFirstPermit),
            other => Err(format!(
                "options.evaluations_semantic {other:?}: execute_all, deny_on_first_deny or \
                 permit_on_first_permit"
            )),
        },
        Some(_) => Err("options.evaluations_semantic must be a string".into()),
    }
}

/// The request identifier, if the PEP sent one.
fn request_id(headers: &HeaderMap) -> Result<Option<String>, Refused> {
    headers
        .get(REQUEST_ID)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| Refused::bad("X-Request-ID must be visible ASCII"))
        })
        .transpose()
}

/// One decision as an AuthZEN Decision: `true` only for PERMIT, the whole
/// decision response as its context.
async fn decide(gate: &Arc<Gate>, who: &Authorized, intent: &Value) -> Result<Value, GateError> {
    let body = serde_json::to_vec(intent).expect("serializable");
    let response = gate.decide(who, &body).await?;
    Ok(json!({
        "decision": response.decision == protocol::Decision::Permit,
        "context": response,
    }))
}

/// The answer, with the request identifier echoed.
fn answer(result: Result<Value, Refused>, id: Option<&str>) -> Response {
    let mut response = match result {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(Refused(status, message)) => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message,
        )
            .into_response(),
    };
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// The caller and the request body, parsed.
async fn admit(
    gate: &Arc<Gate>,
    creds: &Credentials,
    body: Body,
) -> Result<(Authorized, Value), Refused> {
    let who = gate.auth.authorize(creds, Role::Decide)?;
    let bytes = gate.read_body(body, MAX_BODY).await?;
    let request = protocol::strict::from_slice(&bytes).map_err(|e| Refused::bad(e.to_string()))?;
    if !request.is_object() {
        return Err(Refused::bad("the request must be a JSON object"));
    }
    Ok((who, request))
}

/// Answers a request: `decide` given the request identifier the PEP sent
/// (if any), which the answer echoes.
async fn with_request_id<F>(
    headers: &HeaderMap,
    decide: impl FnOnce(Option<String>) -> F,
) -> Response
where
    F: std::future::Future<Output = Result<Value, Refused>>,
{
    match request_id(headers) {
        Ok(id) => {
            let result = decide(id.clone()).await;
            answer(result, id.as_deref())
        }
        Err(e) => answer(Err(e), None),
    }
}

/// `POST /access/v1/evaluation`.
pub(crate) async fn evaluation(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    headers: HeaderMap,
    body: Body,
) -> Response {
    with_request_id(&headers, |id| async move {
        let (who, request) = admit(&gate, &creds, body).await?;
        let intent = to_intent(&request, id).map_err(Refused::bad)?;
        Ok(decide(&gate, &who, &intent).await?)
    })
    .await
}

/// `POST /access/v1/evaluations`: each evaluation a decision, in order,
/// ending early as the semantic says.
pub(crate) async fn evaluations(
    State(gate): State<Arc<Gate>>,
    creds: Credentials,
    headers: HeaderMap,
    body: Body,
) -> Response {
    with_request_id(&headers, |id| async move {
        let (who, request) = admit(&gate, &creds, body).await?;
        let list = merged(&request).map_err(Refused::bad)?;
        let semantic = semantic(&request).map_err(Refused::bad)?;
        if list.is_empty() {
            // No evaluations: the single Access Evaluation, as the spec says.
            let intent = to_intent(&request, id).map_err(Refused::bad)?;
            return Ok(decide(&gate, &who, &intent).await?);
        }
        let mut out = Vec::with_capacity(list.len());
        for (i, e) in list.iter().enumerate() {
            let key = id.as_ref().map(|id| format!("{id}#{i}"));
            let decided = match to_intent(e, key) {
                Ok(intent) => decide(&gate, &who, &intent).await,
                Err(why) => Err(GateError::BadInput(why)),
            };
            let one = decided.unwrap_or_else(|e| {
                json!({
                    "decision": false,
                    "context": {"error": {"status": e.status().as_u16(), "message": e.to_string()}},
                })
            });
            let permitted = one["decision"] == true;
            out.push(one);
            match semantic {
                Semantic::DenyOnFirstDeny if !permitted => break,
                Semantic::PermitOnFirstPermit if permitted => break,
                _ => {}
            }
        }
        Ok(json!({ "evaluations": out }))
    })
    .await
}

/// `GET /.well-known/authzen-configuration`: the PDP's metadata, its
/// identifier the URL this request reached (the `Host` header, `https`
/// when the gate serves TLS).
pub(crate) async fn configuration(State(gate): State<Arc<Gate>>, headers: HeaderMap) -> Response {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return answer(Err(Refused::bad("no Host header")), None);
    };
    let scheme = if gate.serves_tls { "https" } else { "http" };
    let pdp = format!("{scheme}://{host}");
    answer(
        Ok(json!({
            "policy_decision_point": pdp,
            "access_evaluation_endpoint": format!("{pdp}{EVALUATION}"),
            "access_evaluations_endpoint": format!("{pdp}{EVALUATIONS}"),
        })),
        None,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{merged, to_intent};

    /// The specification's first example request, in the contract.
    #[test]
    fn the_specification_example_maps_onto_the_contract() {
        let request = json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "resource": {"type": "account", "id": "123"},
            "action": {"name": "can_read", "properties": {"method": "GET"}},
            "context": {"time": "1985-10-26T01:22-07:00"},
        });
        let intent = to_intent(&request, Some("req-1".into())).unwrap();
        assert_eq!(
            intent,
            json!({
                "actor": {"id": "alice@example.com", "kind": "human"},
                "surface": "account",
                "action": "can_read",
                "target": {"id": "123"},
                "context": {
                    "time": "1985-10-26T01:22-07:00",
                    "authzen": {"subject_type": "user", "action_properties": {"method": "GET"}},
                },
                "idempotency_key": "req-1",
            })
        );
        protocol::DecisionRequest::parse(intent.to_string().as_bytes()).unwrap();
    }

    #[test]
    fn what_does_not_map_is_named() {
        let base = json!({
            "subject": {"type": "user", "id": "a"},
            "resource": {"type": "doc", "id": "1"},
            "action": {"name": "read"},
        });
        let with = |pointer: &str, v: serde_json::Value| {
            let mut r = base.clone();
            *r.pointer_mut(pointer).unwrap() = v;
            to_intent(&r, Some("k".into())).unwrap_err()
        };
        assert!(with("/subject/type", json!("group")).contains("no actor kind"));
        assert!(with("/subject/id", json!(5)).contains("subject.id must be a string"));
        assert!(with("/resource", json!("doc")).contains("resource must be an object"));
        assert!(with("/action", serde_json::Value::Null).contains("action is required"));
        let mut r = base.clone();
        r["resource"]["properties"] = json!({"id": "2"});
        assert!(to_intent(&r, None).unwrap_err().contains("differs"));
        let mut r = base.clone();
        r["context"] = json!({"idempotency_key": "from-context"});
        assert_eq!(
            to_intent(&r, None).unwrap()["idempotency_key"],
            "from-context"
        );
        assert!(to_intent(&base, None).unwrap()["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("authzen-"));
    }

    /// The specification's default-value example: a top-level default, an
    /// evaluation overriding it, and one missing with no default.
    #[test]
    fn defaults_merge_and_evaluations_override_them() {
        let request = json!({
            "subject": {"type": "user", "id": "alice@example.com"},
            "context": {"time": "2024-05-31T15:22-07:00"},
            "action": {"name": "can_read"},
            "evaluations": [
                {"resource": {"type": "document", "id": "boxcarring.md"}},
                {"action": {"name": "can_edit"}, "resource": {"type": "document", "id": "resource-search.md"}},
            ],
        });
        let list = merged(&request).unwrap();
        assert_eq!(list[0]["action"]["name"], "can_read");
        assert_eq!(list[1]["action"]["name"], "can_edit");
        assert_eq!(list[1]["context"]["time"], "2024-05-31T15:22-07:00");
        let mut missing = request.clone();
        missing.as_object_mut().unwrap().remove("action");
        assert!(merged(&missing)
            .unwrap_err()
            .contains("evaluations[0] has no action"));
        assert!(merged(&json!({})).unwrap().is_empty());
    }
}
