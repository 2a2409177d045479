//! Surface contracts: per surface (and optionally per action), a JSON
//! Schema (draft 2020-12) for a decision's `target` and `context`, checked
//! by the gate after the request contract and before policy, so a policy
//! never sees `{"amount": "5"}` where the surface takes an integer.
//!
//! A contract is a published, immutable, content-addressed document like a
//! policy bundle: its version is `sha256:<hex>` of its RFC 8785 canonical
//! form, so the same rules are the same version however they are spaced.
//!
//! ```json
//! {"format": "tollgate.contract/v1",
//!  "surfaces": {
//!    "payments": {
//!      "target": {"type": "object", "required": ["amount"], ...},
//!      "context": {...},
//!      "actions": {"refund": {"target": {...}}}}}}
//! ```
//!
//! For a request on `surface` with `action`: the action's own `target`
//! (`context`) schema if it lists one, else the surface's; neither: any
//! object. A surface the contract does not list is not covered (the gate
//! lets it through, or refuses it under `require_surface_contracts`).
//! Patterns are compiled with the `regex` crate (linear time, no
//! look-around or back-references), so no contract can make a check slow;
//! `$ref` resolves only inside the contract's own schema (nothing is
//! fetched).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jcs::canonical;
use crate::request::{sha256_digest, RequestError};

/// The `format` of every contract.
pub const CONTRACT_FORMAT: &str = "tollgate.contract/v1";

/// Largest contract accepted, in bytes.
pub const MAX_CONTRACT_BYTES: usize = 1 << 20;

/// A surface contract as published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// [`CONTRACT_FORMAT`].
    pub format: String,
    /// The rules, by surface name.
    pub surfaces: BTreeMap<String, SurfaceRules>,
}

/// One surface's rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SurfaceRules {
    /// The schema of `target` for every action without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// The schema of `context` for every action without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Fields (JSON Pointers under `/target` or `/context`) written into
    /// receipts as salted commitments, never in clear, for every action.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    /// Per action, schemas that replace the surface's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, ActionRules>,
}

/// One action's rules.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionRules {
    /// The schema of `target`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Value>,
    /// The schema of `context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    /// Sensitive fields of this action, besides the surface's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
}

/// Whether `field` may be marked sensitive: a JSON Pointer to a member
/// inside `/target` or `/context`.
fn sensitive_field(field: &str) -> bool {
    (field.starts_with("/target/") || field.starts_with("/context/"))
        && field.split('/').skip(2).all(|t| !t.is_empty())
}

/// A contract that cannot be published, naming where and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("contract: {0}")]
pub struct ContractError(pub String);

impl Contract {
    /// Parses a contract: strict JSON (no duplicate member names), the
    /// format, only known members. Its schemas are checked by
    /// [`Contract::compile`].
    ///
    /// # Errors
    ///
    /// [`ContractError`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Contract, ContractError> {
        if bytes.len() > MAX_CONTRACT_BYTES {
            return Err(ContractError(format!(
                "{} bytes, the limit is {MAX_CONTRACT_BYTES}",
                bytes.len()
            )));
        }
        let value = crate::strict::from_slice(bytes)
            .map_err(|e| ContractError(format!("not valid JSON: {e}")))?;
        let contract: Contract =
            serde_json::from_value(value).map_err(|e| ContractError(e.to_string()))?;
        if contract.format != CONTRACT_FORMAT {
            return Err(ContractError(format!(
                "format {:?}, expected {CONTRACT_FORMAT:?}",
                contract.format
            )));
        }
        Ok(contract)
    }

    /// The canonical form (RFC 8785), what is stored and served.
    #[must_use]
    pub fn canonical(&self) -> String {
        canonical(&serde_json::to_value(self).expect("serializable"))
    }

    /// `sha256:<hex>` of [`Contract::canonical`].
    #[must_use]
    pub fn version(&self) -> String {
        sha256_digest(&self.canonical())
    }

    /// Compiles every schema (draft 2020-12).
    ///
    /// # Errors
    ///
    /// [`ContractError`] naming the surface, action and part whose schema
    /// is not valid.
    pub fn compile(&self) -> Result<CompiledContract, ContractError> {
        let mut surfaces = HashMap::with_capacity(self.surfaces.len());
        for (surface, rules) in &self.surfaces {
            let at = |part: &str| format!("surfaces/{surface}/{part}");
            let lists = std::iter::once((at("sensitive"), &rules.sensitive)).chain(
                rules.actions.iter().map(|(a, r)| {
                    (
                        format!("surfaces/{surface}/actions/{a}/sensitive"),
                        &r.sensitive,
                    )
                }),
            );
            for (where_, list) in lists {
                if let Some(bad) = list.iter().find(|f| !sensitive_field(f)) {
                    return Err(ContractError(format!(
                        "{where_}: {bad:?} is not a JSON Pointer to a member of /target or /context"
                    )));
                }
            }
            let mut actions = HashMap::with_capacity(rules.actions.len());
            for (action, a) in &rules.actions {
                let at = |part: &str| format!("surfaces/{surface}/actions/{action}/{part}");
                let mut sensitive: Vec<String> = rules
                    .sensitive
                    .iter()
                    .chain(&a.sensitive)
                    .cloned()
                    .collect();
                sensitive.sort();
                sensitive.dedup();
                actions.insert(
                    action.clone(),
                    Pair {
                        target: compile(a.target.as_ref(), &at("target"))?,
                        context: compile(a.context.as_ref(), &at("context"))?,
                        sensitive,
                    },
                );
            }
            surfaces.insert(
                surface.clone(),
                Compiled {
                    all: Pair {
                        target: compile(rules.target.as_ref(), &at("target"))?,
                        context: compile(rules.context.as_ref(), &at("context"))?,
                        sensitive: {
                            let mut s = rules.sensitive.clone();
                            s.sort();
                            s.dedup();
                            s
                        },
                    },
                    actions,
                },
            );
        }
        Ok(CompiledContract {
            version: self.version(),
            surfaces,
        })
    }
}

fn compile(
    schema: Option<&Value>,
    at: &str,
) -> Result<Option<jsonschema::Validator>, ContractError> {
    let Some(schema) = schema else {
        return Ok(None);
    };
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(schema)
        .map(Some)
        .map_err(|e| ContractError(format!("{at}: not a valid JSON Schema: {e}")))
}

struct Pair {
    target: Option<jsonschema::Validator>,
    context: Option<jsonschema::Validator>,
    /// The surface's sensitive fields, and the action's.
    sensitive: Vec<String>,
}

impl Pair {
    fn part(&self, part: &str) -> Option<&jsonschema::Validator> {
        match part {
            "target" => self.target.as_ref(),
            _ => self.context.as_ref(),
        }
    }
}

/// The rules that apply to one request (`CompiledContract::applied`).
struct Applied<'a> {
    surface: &'a str,
    /// The action, when it has rules of its own.
    action: Option<&'a str>,
    /// `target`'s and `context`'s validator and value, where there is one.
    parts: [Option<(&'static str, &'a jsonschema::Validator, &'a Value)>; 2],
}

struct Compiled {
    all: Pair,
    actions: HashMap<String, Pair>,
}

/// A contract with every schema compiled, ready to check requests.
pub struct CompiledContract {
    version: String,
    surfaces: HashMap<String, Compiled>,
}

impl std::fmt::Debug for CompiledContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledContract")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl CompiledContract {
    /// Its version.
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Whether it lists `surface`.
    #[must_use]
    pub fn covers(&self, surface: &str) -> bool {
        self.surfaces.contains_key(surface)
    }

    /// The sensitive fields of `surface`/`action` (none if not covered).
    #[must_use]
    pub fn sensitive(&self, surface: &str, action: &str) -> &[String] {
        self.surfaces
            .get(surface)
            .map_or(&[], |c| &c.actions.get(action).unwrap_or(&c.all).sensitive)
    }

    /// A receipt's recorded request (its committed fields opened where
    /// they could be) checked again (replay). Breaks found at or under an
    /// `unopened` field are not counted: a commitment stands there, not
    /// the value the contract was checked on.
    #[must_use]
    pub fn replay(&self, request: &Value, unopened: &[String]) -> crate::ContractReplay {
        let problem = match self.check(request) {
            Ok(_) => None,
            Err(_) => self.first_break(request, unopened),
        };
        crate::ContractReplay {
            version: self.version.clone(),
            met: problem.is_none(),
            problem,
        }
    }

    /// Every break of `request`'s rules, the first not at or under an
    /// `unopened` field, as text.
    fn first_break(&self, request: &Value, unopened: &[String]) -> Option<String> {
        self.applied(request)?
            .parts
            .into_iter()
            .flatten()
            .find_map(|(part, validator, value)| {
                validator.iter_errors(value).find_map(|e| {
                    let field = format!("/{part}{}", e.instance_path.as_str());
                    let hidden = unopened
                        .iter()
                        .any(|u| field == *u || field.starts_with(&format!("{u}/")));
                    (!hidden).then(|| format!("{field}: {e}"))
                })
            })
    }

    /// The rules that apply to `request` (`None`: its surface is not
    /// covered): for `target` and `context`, the action's validator if it
    /// has one, else the surface's, with the value it checks.
    fn applied<'a>(&'a self, request: &'a Value) -> Option<Applied<'a>> {
        static EMPTY: std::sync::LazyLock<Value> =
            std::sync::LazyLock::new(|| Value::Object(serde_json::Map::new()));
        let surface = request["surface"].as_str().unwrap_or_default();
        let rules = self.surfaces.get(surface)?;
        let action = request["action"].as_str().unwrap_or_default();
        let own = rules.actions.get(action);
        let part = |name: &'static str| {
            let validator = own
                .and_then(|p| p.part(name))
                .or_else(|| rules.all.part(name))?;
            Some((name, validator, request.get(name).unwrap_or(&EMPTY)))
        };
        Some(Applied {
            surface,
            action: own.map(|_| action),
            parts: [part("target"), part("context")],
        })
    }

    /// Checks a request (its normalized form, `DecisionRequest::to_value`
    /// or a receipt's `request`) against the rules of its surface and
    /// action. `Ok(true)`: the surface is covered and the request meets
    /// it; `Ok(false)`: the surface is not covered.
    ///
    /// # Errors
    ///
    /// [`RequestError`] naming the first value that breaks a rule (its
    /// JSON Pointer in the request, e.g. `/target/amount`), the rule's
    /// keyword and what it says.
    pub fn check(&self, request: &Value) -> Result<bool, RequestError> {
        let Some(applied) = self.applied(request) else {
            return Ok(false);
        };
        for (part, validator, value) in applied.parts.into_iter().flatten() {
            if let Err(e) = validator.validate(value) {
                let rule = e
                    .schema_path
                    .as_str()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                return Err(RequestError {
                    field: format!("/{part}{}", e.instance_path.as_str()),
                    problem: format!(
                        "breaks the surface contract ({} {}{}, rule {rule:?}): {e}",
                        self.version,
                        applied.surface,
                        applied.action.map(|a| format!("/{a}")).unwrap_or_default(),
                    ),
                });
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn example() -> Contract {
        Contract::parse(
            json!({
                "format": CONTRACT_FORMAT,
                "surfaces": {
                    "payments": {
                        "target": {
                            "type": "object",
                            "required": ["amount"],
                            "properties": {
                                "amount": {"type": "integer", "minimum": 1},
                                "to": {"type": "string", "pattern": "^acct-[0-9]+$"}
                            }
                        },
                        "actions": {"refund": {"target": {"type": "object", "required": ["receipt"]}}}
                    }
                }
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    fn request(surface: &str, action: &str, target: Value) -> Value {
        json!({"surface": surface, "action": action, "target": target, "context": {}})
    }

    #[test]
    fn checks_the_surface_and_names_the_pointer_and_rule() {
        let c = example().compile().unwrap();
        let ok = request("payments", "transfer", json!({"amount": 5, "to": "acct-9"}));
        assert_eq!(c.check(&ok), Ok(true));
        let e = c
            .check(&request("payments", "transfer", json!({"amount": "5"})))
            .unwrap_err();
        assert_eq!(e.field, "/target/amount");
        assert!(e.problem.contains("rule \"type\""), "{}", e.problem);
        assert!(e.problem.contains(c.version()), "{}", e.problem);
        let e = c
            .check(&request("payments", "transfer", json!({"amount": 0})))
            .unwrap_err();
        assert!(e.problem.contains("\"minimum\""), "{}", e.problem);
        let e = c
            .check(&request(
                "payments",
                "transfer",
                json!({"amount": 5, "to": "x"}),
            ))
            .unwrap_err();
        assert_eq!(e.field, "/target/to");
        let e = c
            .check(&request("payments", "transfer", json!({})))
            .unwrap_err();
        assert_eq!(e.field, "/target");
        assert!(e.problem.contains("\"required\""), "{}", e.problem);
    }

    #[test]
    fn an_action_replaces_the_surface_rules_and_other_surfaces_are_not_covered() {
        let c = example().compile().unwrap();
        assert_eq!(
            c.check(&request("payments", "refund", json!({"receipt": "r"}))),
            Ok(true)
        );
        let e = c
            .check(&request("payments", "refund", json!({"amount": 5})))
            .unwrap_err();
        assert!(e.problem.contains("payments/refund"), "{}", e.problem);
        assert_eq!(c.check(&request("deploy", "deploy", json!({}))), Ok(false));
        assert!(c.covers("payments") && !c.covers("deploy"));
    }

    #[test]
    fn the_version_is_the_canonical_digest() {
        let a = example();
        let spaced = serde_json::to_string_pretty(&a).unwrap();
        assert_eq!(
            Contract::parse(spaced.as_bytes()).unwrap().version(),
            a.version()
        );
        assert!(crate::is_policy_version(&a.version()));
    }

    #[test]
    fn refuses_what_is_not_a_contract() {
        for (bad, why) in [
            (r#"{"format":"x","surfaces":{}}"#, "format"),
            (
                r#"{"format":"tollgate.contract/v1","surfaces":{},"extra":1}"#,
                "unknown field",
            ),
            (
                r#"{"format":"tollgate.contract/v1","surfaces":{"a":{},"a":{}}}"#,
                "duplicate",
            ),
            (
                r#"{"format":"tollgate.contract/v1","surfaces":{"a":{"tagret":{}}}}"#,
                "unknown field",
            ),
        ] {
            let e = Contract::parse(bad.as_bytes()).unwrap_err();
            assert!(e.0.contains(why), "{bad}: {e}");
        }
        let bad_schema = Contract::parse(
            br#"{"format":"tollgate.contract/v1","surfaces":{"p":{"target":{"type":"nope"}}}}"#,
        )
        .unwrap();
        let e = bad_schema.compile().unwrap_err();
        assert!(e.0.contains("surfaces/p/target"), "{e}");
        // Look-around needs backtracking: refused, so no pattern can be slow.
        let lookahead = Contract::parse(
            br#"{"format":"tollgate.contract/v1","surfaces":{"p":{"target":{"pattern":"(?=a)a"}}}}"#,
        )
        .unwrap();
        assert!(lookahead.compile().is_err());
    }
}
