//! The decision request contract (`schemas/decision-request.schema.json`),
//! parsed into types that cannot hold an invalid request.
//!
//! `schemas/decision-request.schema.json` states the same contract as JSON
//! Schema; `tests/contract.rs` runs one corpus through both and requires them
//! to agree on every document.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jcs::canonical;

/// Largest request body accepted, in bytes. Receipts embed the request and
/// must stay under the 65,535-byte tlog-tiles entry limit.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest actor id, `on_behalf_of` and idempotency key, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest surface and action name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest string inside `target` or `context`, in characters.
pub const MAX_STRING_CHARS: usize = 1024;
/// Longest member name inside `target` or `context`, in characters.
pub const MAX_KEY_CHARS: usize = 128;
/// Most members of an object or items of an array inside `target` or `context`.
pub const MAX_ITEMS: usize = 64;
/// Deepest nesting of objects and arrays in `target` or `context`, counting
/// `target`/`context` itself as 1.
pub const MAX_DEPTH: usize = 4;
/// Largest magnitude of a number: 2^53 − 1, so every number is an exact
/// IEEE 754 double and survives RFC 8785 canonicalization unchanged.
pub const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

const FIELDS: [&str; 7] = [
    "actor",
    "surface",
    "action",
    "target",
    "context",
    "idempotency_key",
    "expected_policy_version",
];
const ACTOR_FIELDS: [&str; 3] = ["id", "kind", "on_behalf_of"];

/// Why a request was rejected: the field (a JSON Pointer, RFC 6901; empty
/// for the whole body) and the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", if field.is_empty() { "request" } else { field.as_str() })]
pub struct RequestError {
    /// JSON Pointer to the offending field, `""` for the body itself.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

fn reject<T>(field: &str, problem: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError {
        field: field.to_string(),
        problem: problem.into(),
    })
}

/// Who is asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActorKind {
    /// An AI agent.
    Agent,
    /// A person.
    Human,
    /// A non-agent service.
    Service,
}

impl ActorKind {
    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::Agent => "agent",
            ActorKind::Human => "human",
            ActorKind::Service => "service",
        }
    }
}

/// The actor of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    id: String,
    kind: ActorKind,
    on_behalf_of: Option<String>,
}

impl Actor {
    /// The actor's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
    /// The actor's kind.
    #[must_use]
    pub fn kind(&self) -> ActorKind {
        self.kind
    }
    /// Whom the actor acts for, if anyone.
    #[must_use]
    pub fn on_behalf_of(&self) -> Option<&str> {
        self.on_behalf_of.as_deref()
    }
}

/// A validated decision request. Only [`DecisionRequest::parse`] and
/// [`DecisionRequest::from_value`] make one, so holding one means it met the
/// contract.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRequest {
    actor: Actor,
    surface: String,
    action: String,
    target: Map<String, Value>,
    context: Map<String, Value>,
    idempotency_key: String,
    expected_policy_version: Option<String>,
}

impl DecisionRequest {
    /// Parses and validates a request body.
    ///
    /// # Errors
    ///
    /// [`RequestError`] naming the field and the problem: body too large,
    /// not JSON, unknown or missing fields, wrong types, limits exceeded.
    pub fn parse(body: &[u8]) -> Result<DecisionRequest, RequestError> {
        if body.len() > MAX_BODY_BYTES {
            return reject(
                "",
                format!(
                    "body is {} bytes, the limit is {MAX_BODY_BYTES}",
                    body.len()
                ),
            );
        }
        let value: Value = match crate::strict::from_slice(body) {
            Ok(v) => v,
            Err(e) if e.to_string().starts_with("duplicate member ") => {
                let msg = e.to_string();
                let pointer = msg
                    .strip_prefix("duplicate member ")
                    .and_then(|m| m.split(" at line").next())
                    .unwrap_or_default()
                    .to_string();
                return reject(
                    &pointer,
                    "duplicate member name: a JSON object must not repeat a name",
                );
            }
            Err(e) => return reject("", format!("not valid JSON: {e}")),
        };
        DecisionRequest::from_value(value)
    }

    /// Validates a parsed JSON document against the contract.
    ///
    /// # Errors
    ///
    /// As [`DecisionRequest::parse`], except for the body size.
    pub fn from_value(value: Value) -> Result<DecisionRequest, RequestError> {
        let Value::Object(mut m) = value else {
            return reject("", "must be a JSON object");
        };
        unknown_fields(&m, &FIELDS, "")?;
        let actor = parse_actor(m.remove("actor"))?;
        let surface = name(m.remove("surface"), "/surface")?;
        let action = name(m.remove("action"), "/action")?;
        let target = free_object(m.remove("target"), "/target", true)?;
        let context = free_object(m.remove("context"), "/context", false)?;
        let idempotency_key =
            id(m.remove("idempotency_key"), "/idempotency_key", true)?.expect("required");
        let expected_policy_version = match m.remove("expected_policy_version") {
            None => None,
            Some(Value::String(s)) if is_policy_version(&s) => Some(s),
            Some(Value::String(_)) => {
                return reject(
                    "/expected_policy_version",
                    "must be sha256: followed by 64 lowercase hex digits",
                )
            }
            Some(other) => {
                return reject(
                    "/expected_policy_version",
                    format!("must be a string, not {}", kind(&other)),
                )
            }
        };
        Ok(DecisionRequest {
            actor,
            surface,
            action,
            target,
            context,
            idempotency_key,
            expected_policy_version,
        })
    }

    /// The actor.
    #[must_use]
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    /// The execution surface, e.g. `payments`.
    #[must_use]
    pub fn surface(&self) -> &str {
        &self.surface
    }
    /// The action on the surface, e.g. `transfer`.
    #[must_use]
    pub fn action(&self) -> &str {
        &self.action
    }
    /// The idempotency key.
    #[must_use]
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }
    /// The policy version the caller expects, if it pinned one.
    #[must_use]
    pub fn expected_policy_version(&self) -> Option<&str> {
        self.expected_policy_version.as_deref()
    }

    /// The request as JSON in its normalized form: every field present except
    /// absent optional ones, `context` defaulting to `{}`. This is what
    /// policies see and what receipts record.
    #[must_use]
    pub fn to_value(&self) -> Value {
        let mut actor = Map::new();
        actor.insert("id".into(), self.actor.id.clone().into());
        actor.insert("kind".into(), self.actor.kind.as_str().into());
        if let Some(o) = &self.actor.on_behalf_of {
            actor.insert("on_behalf_of".into(), o.clone().into());
        }
        let mut m = Map::new();
        m.insert("actor".into(), Value::Object(actor));
        m.insert("surface".into(), self.surface.clone().into());
        m.insert("action".into(), self.action.clone().into());
        m.insert("target".into(), Value::Object(self.target.clone()));
        m.insert("context".into(), Value::Object(self.context.clone()));
        m.insert(
            "idempotency_key".into(),
            self.idempotency_key.clone().into(),
        );
        if let Some(v) = &self.expected_policy_version {
            m.insert("expected_policy_version".into(), v.clone().into());
        }
        Value::Object(m)
    }

    /// `sha256:<hex>` of the RFC 8785 canonical form of [`Self::to_value`].
    /// Two requests are "the same request" for idempotency iff their digests match.
    #[must_use]
    pub fn digest(&self) -> String {
        digest_of(&self.to_value())
    }

    /// The receipt id for this request from `caller`: a function of the
    /// caller, the actor and the idempotency key only, so a retry finds the
    /// original receipt and one caller cannot squat another's keys.
    #[must_use]
    pub fn receipt_id(&self, caller: &str) -> String {
        receipt_id(caller, &self.actor.id, &self.idempotency_key)
    }
}

/// `sha256:<hex>` of the canonical form of `value`.
#[must_use]
pub fn digest_of(value: &Value) -> String {
    sha256_digest(&canonical(value))
}

/// `sha256:<hex>` of already-canonical text.
pub(crate) fn sha256_digest(canonical_text: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical_text.as_bytes()))
    )
}

/// The receipt id for (caller name, actor id, idempotency key): 32 hex
/// digits of SHA-256 over a domain tag and the three values, NUL-separated.
#[must_use]
pub fn receipt_id(caller: &str, actor_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tollgate receipt id v2\0");
    h.update(caller.as_bytes());
    h.update(b"\0");
    h.update(actor_id.as_bytes());
    h.update(b"\0");
    h.update(idempotency_key.as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// Whether `s` is a policy version: `sha256:` and 64 lowercase hex digits.
#[must_use]
pub fn is_policy_version(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// RFC 6901 escaping of one reference token.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn unknown_fields(m: &Map<String, Value>, known: &[&str], at: &str) -> Result<(), RequestError> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => reject(
            &format!("{at}/{}", pointer_token(k)),
            format!("unknown field; expected one of {}", known.join(", ")),
        ),
        None => Ok(()),
    }
}

fn parse_actor(v: Option<Value>) -> Result<Actor, RequestError> {
    let m = match v {
        None => return reject("/actor", "missing required field"),
        Some(Value::Object(m)) => m,
        Some(other) => return reject("/actor", format!("must be an object, not {}", kind(&other))),
    };
    unknown_fields(&m, &ACTOR_FIELDS, "/actor")?;
    let mut m = m;
    let id_ = id(m.remove("id"), "/actor/id", true)?.expect("required");
    let kind_ = match m.remove("kind") {
        None => return reject("/actor/kind", "missing required field"),
        Some(Value::String(s)) => match s.as_str() {
            "agent" => ActorKind::Agent,
            "human" => ActorKind::Human,
            "service" => ActorKind::Service,
            _ => return reject("/actor/kind", "must be one of agent, human, service"),
        },
        Some(other) => {
            return reject(
                "/actor/kind",
                format!("must be a string, not {}", kind(&other)),
            )
        }
    };
    let on_behalf_of = id(m.remove("on_behalf_of"), "/actor/on_behalf_of", false)?;
    Ok(Actor {
        id: id_,
        kind: kind_,
        on_behalf_of,
    })
}

/// An identifier: 1..=128 printable ASCII characters without spaces.
fn id(v: Option<Value>, at: &str, required: bool) -> Result<Option<String>, RequestError> {
    match v {
        None if required => reject(at, "missing required field"),
        None => Ok(None),
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > MAX_ID_CHARS {
                return reject(at, format!("must be 1 to {MAX_ID_CHARS} characters"));
            }
            if !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
                return reject(at, "must be printable ASCII without spaces");
            }
            Ok(Some(s))
        }
        Some(other) => reject(at, format!("must be a string, not {}", kind(&other))),
    }
}

/// A surface or action name: a lowercase letter, then up to 63 of
/// lowercase letters, digits, `_`, `.`, `-`.
fn name(v: Option<Value>, at: &str) -> Result<String, RequestError> {
    match v {
        None => reject(at, "missing required field"),
        Some(Value::String(s)) => {
            let b = s.as_bytes();
            let ok = !b.is_empty()
                && b.len() <= MAX_NAME_CHARS
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-')
                });
            if ok {
                Ok(s)
            } else {
                reject(
                    at,
                    format!(
                        "must be 1 to {MAX_NAME_CHARS} characters: a lowercase letter, then \
                         lowercase letters, digits, _ . -"
                    ),
                )
            }
        }
        Some(other) => reject(at, format!("must be a string, not {}", kind(&other))),
    }
}

fn free_object(
    v: Option<Value>,
    at: &str,
    required: bool,
) -> Result<Map<String, Value>, RequestError> {
    match v {
        None if required => reject(at, "missing required field"),
        None => Ok(Map::new()),
        Some(v @ Value::Object(_)) => {
            check_free(&v, at, 1)?;
            let Value::Object(m) = v else { unreachable!() };
            Ok(m)
        }
        Some(other) => reject(at, format!("must be an object, not {}", kind(&other))),
    }
}

/// The limits on free-form JSON inside `target` and `context`.
fn check_free(v: &Value, at: &str, depth: usize) -> Result<(), RequestError> {
    match v {
        Value::Null | Value::Bool(_) => Ok(()),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(f64::INFINITY);
            if f.abs() > MAX_SAFE_INTEGER {
                return reject(
                    at,
                    "number out of range: magnitude must be at most 2^53 - 1 (9007199254740991)",
                );
            }
            Ok(())
        }
        Value::String(s) => {
            if s.chars().count() > MAX_STRING_CHARS {
                return reject(
                    at,
                    format!("string longer than {MAX_STRING_CHARS} characters"),
                );
            }
            Ok(())
        }
        Value::Array(items) => {
            container(at, depth, items.len())?;
            for (i, item) in items.iter().enumerate() {
                check_free(item, &format!("{at}/{i}"), depth + 1)?;
            }
            Ok(())
        }
        Value::Object(m) => {
            container(at, depth, m.len())?;
            for (k, item) in m {
                let here = format!("{at}/{}", pointer_token(k));
                let n = k.chars().count();
                if n == 0 || n > MAX_KEY_CHARS {
                    return reject(
                        &here,
                        format!("member names must be 1 to {MAX_KEY_CHARS} characters"),
                    );
                }
                check_free(item, &here, depth + 1)?;
            }
            Ok(())
        }
    }
}

fn container(at: &str, depth: usize, len: usize) -> Result<(), RequestError> {
    if depth > MAX_DEPTH {
        return reject(at, format!("nested deeper than {MAX_DEPTH} levels"));
    }
    if len > MAX_ITEMS {
        return reject(at, format!("more than {MAX_ITEMS} members or items"));
    }
    Ok(())
}
