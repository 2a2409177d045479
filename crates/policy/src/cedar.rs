//! Cedar bundles on cedar-policy.
//!
//! Request mapping: principal `Actor::"<actor.id>"`, action
//! `Action::"<action>"`, resource `Surface::"<surface>"`, and context
//! `{ target, request: <the request's context>, actor_kind, decided_at }`
//! where `decided_at` is the bound decision time in UNIX seconds,
//! `approvals` the number of approvals the gate attached (`derived.approvals`),
//! and `history` (the bundle's counters, `derived.history`) when it declares any.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, EntityId, EntityTypeName,
    EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};

use crate::contract::{
    ApprovalAsk, Decision, EvalInput, Evaluation, APPROVAL_COUNT_MAX, APPROVAL_TTL_RANGE,
    APPROVAL_TTL_SECONDS,
};

/// A JSON value as a Cedar value. Cedar has no null and no floats: those are
/// errors, which the caller turns into SILENCE.
fn restricted(v: &serde_json::Value) -> Result<RestrictedExpression, String> {
    use serde_json::Value as J;
    Ok(match v {
        J::Bool(b) => RestrictedExpression::new_bool(*b),
        J::Number(n) => RestrictedExpression::new_long(
            n.as_i64()
                .ok_or_else(|| format!("{n} is not a 64-bit integer"))?,
        ),
        J::String(s) => RestrictedExpression::new_string(s.clone()),
        J::Array(a) => {
            RestrictedExpression::new_set(a.iter().map(restricted).collect::<Result<Vec<_>, _>>()?)
        }
        J::Object(o) => RestrictedExpression::new_record(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        )
        .map_err(|e| e.to_string())?,
        J::Null => return Err("null has no Cedar value".into()),
    })
}
use crate::{Bundle, Error};

/// A compiled Cedar bundle. Cedar evaluation always terminates (no loops or
/// recursion), so no time limit is needed beyond the request size bound.
pub struct CedarPolicy {
    policies: PolicySet,
    entities: Entities,
    authorizer: Authorizer,
    /// `Actor`, `Action`, `Surface`: parsed once, not per request.
    types: [EntityTypeName; 3],
}

fn type_name(kind: &str) -> EntityTypeName {
    EntityTypeName::from_str(kind).expect("valid type name")
}

/// The 1-based line of the first labelled span of a diagnostic, or 0.
fn diag_line(d: &dyn miette::Diagnostic, text: &str) -> usize {
    d.labels()
        .and_then(|mut l| l.next())
        .map_or(0, |l| crate::bundle::line_of(text, l.offset()))
}

impl CedarPolicy {
    pub(crate) fn compile(bundle: &Bundle) -> Result<CedarPolicy, Error> {
        let m = bundle.manifest();
        let schema = match &m.schema {
            None => None,
            Some(f) => {
                let src = bundle.text(f)?;
                let parsed = if f.ends_with(".json") {
                    Schema::from_json_str(src).map_err(|e| Error::Compile {
                        file: f.clone(),
                        line: diag_line(&e, src),
                        message: e.to_string(),
                    })?
                } else {
                    Schema::from_cedarschema_str(src)
                        .map_err(|e| Error::Compile {
                            file: f.clone(),
                            line: diag_line(&e, src),
                            message: e.to_string(),
                        })?
                        .0
                };
                Some(parsed)
            }
        };
        let mut policies = PolicySet::new();
        let mut sources = Vec::new();
        for (file, src) in bundle.texts_ending(".cedar")? {
            let set = PolicySet::from_str(src).map_err(|e| Error::Compile {
                file: file.into(),
                line: diag_line(&e, src),
                message: e.to_string(),
            })?;
            for (i, p) in set.policies().enumerate() {
                // Policy ids name the file and the @id annotation (or position).
                let name = p
                    .annotation("id")
                    .map_or_else(|| format!("policy{i}"), str::to_string);
                let id = PolicyId::new(format!("{file}#{name}"));
                policies.add(p.new_id(id)).map_err(|e| Error::Compile {
                    file: file.into(),
                    line: 0,
                    message: e.to_string(),
                })?;
            }
            sources.push((file.to_string(), src.to_string()));
        }
        if sources.is_empty() {
            return Err(Error::InvalidBundle(
                "a Cedar bundle needs at least one .cedar file".into(),
            ));
        }
        if let Some(schema) = &schema {
            let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
            let first = result.validation_errors().next().map(|e| {
                let id = e.policy_id().to_string();
                let file = id.split('#').next().unwrap_or_default().to_string();
                let src = sources
                    .iter()
                    .find(|(f, _)| *f == file)
                    .map_or("", |(_, s)| s.as_str());
                Error::Compile {
                    line: diag_line(e, src),
                    file,
                    message: format!("schema validation: {e}"),
                }
            });
            if let Some(err) = first {
                return Err(err);
            }
        }
        let entities = match &m.entities {
            None => Entities::empty(),
            Some(f) => {
                let src = bundle.text(f)?;
                // Strict: a member named twice is refused first.
                protocol::strict::from_slice(src.as_bytes()).map_err(|e| Error::Compile {
                    file: f.clone(),
                    line: e.line(),
                    message: e.to_string(),
                })?;
                Entities::from_json_str(src, schema.as_ref()).map_err(|e| Error::Compile {
                    file: f.clone(),
                    line: 0,
                    message: e.to_string(),
                })?
            }
        };
        Ok(CedarPolicy {
            policies,
            entities,
            authorizer: Authorizer::new(),
            types: [
                type_name("Actor"),
                type_name("Action"),
                type_name("Surface"),
            ],
        })
    }

    /// `<types[kind]>::"<id>"`.
    fn uid(&self, kind: usize, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(self.types[kind].clone(), EntityId::new(id))
    }

    pub(crate) fn actor_attributes(&self, actor_id: &str) -> serde_json::Value {
        self.entities
            .get(&self.uid(0, actor_id))
            .and_then(|e| e.to_json_value().ok())
            .and_then(|v| v.get("attrs").cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    pub(crate) fn evaluate(&self, input: &EvalInput) -> Evaluation {
        let r = &input.request;
        let (Some(actor), Some(action), Some(surface)) = (
            r["actor"]["id"].as_str(),
            r["action"].as_str(),
            r["surface"].as_str(),
        ) else {
            return Evaluation::silence("request lacks actor.id, action or surface");
        };
        // Built directly as Cedar values: Context::from_json_value spends most
        // of an evaluation in serde's untagged-enum error paths.
        let decided_at = input.decided_at_ns().div_euclid(1_000_000_000);
        let history = input.derived.get("history");
        // The approvals the gate attached, as a count (Cedar sets have no size).
        let approvals = input.derived["approvals"]
            .as_array()
            .map_or(0, |a| i64::try_from(a.len()).unwrap_or(i64::MAX));
        let pairs = [
            ("target", restricted(&r["target"])),
            ("request", restricted(&r["context"])),
            ("actor_kind", restricted(&r["actor"]["kind"])),
            ("decided_at", Ok(RestrictedExpression::new_long(decided_at))),
            ("approvals", Ok(RestrictedExpression::new_long(approvals))),
        ];
        let mut fields = Vec::with_capacity(pairs.len() + 1);
        let history = history.map(|h| ("history", restricted(h)));
        for (k, v) in pairs.into_iter().chain(history) {
            match v {
                Ok(v) => fields.push((k.to_string(), v)),
                Err(e) => return Evaluation::silence(format!("cedar context: {k}: {e}")),
            }
        }
        let context = match Context::from_pairs(fields) {
            Ok(c) => c,
            Err(e) => return Evaluation::silence(format!("cedar context: {e}")),
        };
        let request = match Request::new(
            self.uid(0, actor),
            self.uid(1, action),
            self.uid(2, surface),
            context,
            None,
        ) {
            Ok(q) => q,
            Err(e) => return Evaluation::silence(format!("cedar request: {e}")),
        };
        let response = self
            .authorizer
            .is_authorized(&request, &self.policies, &self.entities);
        let errors: Vec<String> = response
            .diagnostics()
            .errors()
            .map(ToString::to_string)
            .collect();
        if !errors.is_empty() {
            // Cedar skips erroring policies; an erroring forbid must not let a permit through.
            return Evaluation::silence(format!("cedar evaluation error: {}", errors.join("; ")));
        }
        // Sorted: Cedar gives the determining policies as a set, in no fixed
        // order, and a reason must be the same on every evaluation (replay).
        let mut satisfied: Vec<&PolicyId> = response.diagnostics().reason().collect();
        satisfied.sort_unstable_by_key(|id| id.to_string());
        let names = satisfied
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let forbids: Vec<_> = satisfied
            .iter()
            .filter_map(|id| self.policies.policy(id))
            .filter(|p| p.effect() == Effect::Forbid)
            .collect();
        match response.decision() {
            CedarDecision::Allow => {
                Evaluation::new(Decision::Permit, format!("permitted by {names}"))
            }
            // Every forbid that denied asks for approvals: SILENCE until given.
            CedarDecision::Deny
                if !forbids.is_empty()
                    && forbids.iter().all(|p| p.annotation("approval").is_some()) =>
            {
                let mut ask = ApprovalAsk {
                    count: 1,
                    ttl_seconds: APPROVAL_TTL_SECONDS,
                };
                let mut ttl = None::<u64>;
                for p in &forbids {
                    let count = match p.annotation("approval").unwrap_or("") {
                        "" => Some(1),
                        n => n
                            .parse::<u32>()
                            .ok()
                            .filter(|n| (1..=APPROVAL_COUNT_MAX).contains(n)),
                    };
                    let Some(count) = count else {
                        return Evaluation::silence(format!(
                            "{}: @approval is not 1..={APPROVAL_COUNT_MAX}",
                            p.id()
                        ));
                    };
                    ask.count = ask.count.max(count);
                    if let Some(t) = p.annotation("approval_ttl") {
                        match t
                            .parse::<u64>()
                            .ok()
                            .filter(|t| APPROVAL_TTL_RANGE.contains(t))
                        {
                            Some(t) => ttl = Some(ttl.map_or(t, |x| x.min(t))),
                            None => {
                                return Evaluation::silence(format!(
                                    "{}: @approval_ttl is not {APPROVAL_TTL_RANGE:?} seconds",
                                    p.id()
                                ))
                            }
                        }
                    }
                }
                ask.ttl_seconds = ttl.unwrap_or(APPROVAL_TTL_SECONDS);
                Evaluation {
                    decision: Decision::Silence,
                    reason: format!(
                        "forbidden by {names} until {} approval(s) are given",
                        ask.count
                    ),
                    approval: Some(ask),
                }
            }
            CedarDecision::Deny if !forbids.is_empty() => {
                Evaluation::new(Decision::Deny, format!("forbidden by {names}"))
            }
            CedarDecision::Deny => Evaluation::silence("no policy permitted the request"),
        }
    }
}
