//! Where the MCP gateways' decisions come from, written once for both
//! (`tollgate mcp stdio` and `tollgate mcp http`): a gate at a URL, through
//! the SDK as the asking caller, or the gate inside this process. Its
//! answers are verified like a remote gate's, with its own keys, so there
//! is one path from an answer to an outcome; and in this process the caller
//! is looked up again for every call, so a revocation binds the next one.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use gate::callers::Role;
use mcp::Outcome;
use serde_json::Value;

/// Who asks: a caller by its token, or (in this process) by its name, or
/// either on behalf of a principal the gateway authenticated (OAuth).
#[derive(Clone)]
pub(crate) enum Asker {
    /// A bearer token.
    Token(String),
    /// A caller name (`tollgate mcp stdio --data-dir --caller`).
    Named(String),
    /// The gateway's own caller, for this principal (receipts record it).
    OnBehalf(Arc<Asker>, Arc<protocol::OnBehalfOf>),
}

impl Asker {
    /// The caller's token, and the principal it speaks for, if the caller
    /// is known by a token.
    fn token(&self) -> Option<(&str, Option<&protocol::OnBehalfOf>)> {
        match self {
            Asker::Token(t) => Some((t, None)),
            Asker::Named(_) => None,
            Asker::OnBehalf(by, p) => by.token().map(|(t, _)| (t, Some(&**p))),
        }
    }
}

/// Where decisions come from.
pub(crate) enum Decider {
    /// A gate at a URL, through the SDK, as each asker's caller.
    Remote {
        base: String,
        trust: sdk::Trust,
        agent: ureq::Agent,
    },
    /// The gate inside this process.
    InProcess {
        gate: Arc<gate::Gate>,
        trust: sdk::Trust,
    },
}

impl Decider {
    /// The gate at `base`, its answers verified with these keys; https
    /// verified against `ca_file` (else the system's roots).
    pub(crate) fn remote(
        base: &str,
        log_key: &str,
        gate_key: &str,
        ca_file: Option<&Path>,
    ) -> Result<Decider> {
        Ok(Decider::Remote {
            base: base.to_string(),
            trust: sdk::Trust::new(
                note::VerifierKey::parse(log_key).context("--log-key")?,
                note::VerifierKey::parse(gate_key).context("--gate-key")?,
            ),
            agent: tls::agent(ca_file, std::time::Duration::from_secs(60))?,
        })
    }

    /// The gate whose data directory is `dir`, opened in this process (call
    /// it inside a tokio runtime: its background work starts, so on a
    /// shared log what other gates change — a revocation — binds here too).
    pub(crate) fn in_process(dir: &Path) -> Result<Decider> {
        let config = gate::Config {
            data_dir: dir.to_path_buf(),
            example_policy: false,
            ..gate::Config::default()
        };
        let gate = gate::Gate::open(&config)
            .with_context(|| format!("opening the gate's data directory {}", dir.display()))?
            .gate;
        gate.start_background();
        let trust = sdk::Trust::new(gate.log_verifier().clone(), gate.gate_verifier().clone());
        Ok(Decider::InProcess { gate, trust })
    }

    /// The gate in this process, if that is where decisions come from.
    pub(crate) fn gate(&self) -> Option<&Arc<gate::Gate>> {
        match self {
            Decider::InProcess { gate, .. } => Some(gate),
            Decider::Remote { .. } => None,
        }
    }

    /// An SDK client of the remote gate as the caller whose token this is.
    fn client(&self, token: &str) -> Option<sdk::Client> {
        match self {
            Decider::Remote { base, trust, agent } => Some(
                sdk::Client::new(base, trust.clone())
                    .with_agent(agent.clone())
                    .with_token(token),
            ),
            Decider::InProcess { .. } => None,
        }
    }

    /// An SDK client of the remote gate as `asker`: `None` in this process,
    /// or for an asker known by name only.
    fn client_as(&self, asker: &Asker) -> Option<sdk::Client> {
        let (token, principal) = asker.token()?;
        let client = self.client(token)?;
        Some(match principal {
            Some(p) => client.on_behalf_of(p),
            None => client,
        })
    }

    /// Who `token` is; `Err` says why it is not a caller.
    pub(crate) async fn identify(&self, token: &str) -> Result<sdk::Identity, String> {
        match self {
            Decider::InProcess { gate, .. } => {
                let c = gate.caller_by_token(token).ok_or(
                    "the token is not a live caller's (wrong, rotated or revoked)".to_string(),
                )?;
                Ok(sdk::Identity {
                    name: c.name.clone(),
                    roles: c.roles.iter().map(ToString::to_string).collect(),
                    actors: c.actors.clone(),
                })
            }
            Decider::Remote { .. } => {
                let client = self.client(token).expect("remote");
                tokio::task::spawn_blocking(move || client.whoami())
                    .await
                    .map_err(|e| e.to_string())?
            }
        }
    }

    /// `Ok` if `asker` (the gateway's own caller) is live with `decide`.
    pub(crate) async fn check_own(&self, asker: &Asker) -> Result<(), String> {
        match (self, asker) {
            (Decider::InProcess { gate, .. }, _) => Decider::authorize(gate, asker).map(drop),
            (Decider::Remote { .. }, Asker::Token(token)) => {
                let id = self.identify(token).await?;
                match id.roles.iter().any(|r| r == "decide") {
                    true => Ok(()),
                    false => Err(format!("caller {} lacks the decide role", id.name)),
                }
            }
            (Decider::Remote { .. }, _) => Err("a remote gate is asked with a token".into()),
        }
    }

    /// `asker` authorized to decide in this process.
    fn authorize(gate: &gate::Gate, asker: &Asker) -> Result<gate::callers::Authorized, String> {
        match asker {
            Asker::Token(t) => gate.authorize_token(t, Role::Decide),
            Asker::Named(n) => gate.authorize_in_process(n, Role::Decide),
            Asker::OnBehalf(by, p) => {
                return Decider::authorize(gate, by).map(|who| who.on_behalf_of((**p).clone()));
            }
        }
        .map_err(|e| e.to_string())
    }

    /// Whether the active policy denies `intent` outright, asked as `asker`
    /// (an unlogged evaluation; one that fails denies nothing).
    pub(crate) async fn denies(&self, asker: &Asker, intent: &Value) -> bool {
        match self {
            Decider::Remote { .. } => match self.client_as(asker) {
                Some(client) => {
                    let intent = intent.clone();
                    tokio::task::spawn_blocking(move || remote_denies(&client, &intent))
                        .await
                        .unwrap_or(false)
                }
                None => false,
            },
            Decider::InProcess { gate, .. } => match Decider::authorize(gate, asker) {
                Err(_) => false,
                Ok(who) => gate
                    .evaluate(&who, intent.to_string().as_bytes())
                    .await
                    .is_ok_and(|e| e.decision == protocol::Decision::Deny),
            },
        }
    }

    /// The gate's verified decision on `intent`, asked as `asker`, in the
    /// call's `span` (a remote gate gets its trace context; in this process
    /// the decision's span is the call's child).
    pub(crate) async fn decide(
        &self,
        asker: &Asker,
        intent: Value,
        span: &tracing::Span,
    ) -> Outcome {
        let verified = match self {
            Decider::Remote { .. } => match self.client_as(asker) {
                Some(client) => {
                    let cx = telemetry::context_of(span);
                    tokio::task::spawn_blocking(move || remote_decide(&client, &intent, cx))
                        .await
                        .unwrap_or_else(|e| Err(sdk::Refusal::Unavailable(e.to_string())))
                }
                None => Err(sdk::Refusal::Unavailable(
                    "a remote gate is asked with a token, not a caller's name".into(),
                )),
            },
            Decider::InProcess { gate, trust } => {
                let body = intent.to_string();
                match (
                    protocol::DecisionRequest::parse(body.as_bytes()),
                    Decider::authorize(gate, asker),
                ) {
                    (Err(e), _) => Err(sdk::Refusal::Invalid(e.to_string())),
                    (_, Err(why)) => Err(sdk::Refusal::Unavailable(why)),
                    (Ok(request), Ok(who)) => {
                        let decided = gate.decide(&who, body.as_bytes());
                        match tracing::Instrument::instrument(decided, span.clone()).await {
                            Ok(response) => sdk::verify_answer(
                                trust,
                                &request,
                                &serde_json::to_vec(&response).unwrap_or_default(),
                            ),
                            Err(e) => Err(sdk::Refusal::Unavailable(e.to_string())),
                        }
                    }
                }
            }
        };
        traced(span, outcome(verified))
    }

    /// [`Decider::decide`] from a plain thread (the stdio gateway's): a
    /// remote gate is asked on this very thread, with no hand-off; the gate
    /// in this process through `runtime`.
    pub(crate) fn decide_blocking(
        &self,
        runtime: &tokio::runtime::Runtime,
        asker: &Asker,
        intent: Value,
        span: &tracing::Span,
    ) -> Outcome {
        match self.client_as(asker) {
            Some(client) => {
                let verified = remote_decide(&client, &intent, telemetry::context_of(span));
                traced(span, outcome(verified))
            }
            None => runtime.block_on(self.decide(asker, intent, span)),
        }
    }

    /// [`Decider::denies`] from a plain thread, as [`Decider::decide_blocking`].
    pub(crate) fn denies_blocking(
        &self,
        runtime: &tokio::runtime::Runtime,
        asker: &Asker,
        intent: &Value,
    ) -> bool {
        match self.client_as(asker) {
            Some(client) => remote_denies(&client, intent),
            None => runtime.block_on(self.denies(asker, intent)),
        }
    }
}

/// A remote gate's verified decision, the call's trace context attached.
fn remote_decide(
    client: &sdk::Client,
    intent: &Value,
    cx: telemetry::TraceContext,
) -> Result<sdk::Permit, sdk::Refusal> {
    let _attached = cx.attach();
    client.decide(intent)
}

/// Whether a remote gate's unlogged evaluation of `intent` is DENY.
fn remote_denies(client: &sdk::Client, intent: &Value) -> bool {
    client
        .evaluate(intent)
        .is_ok_and(|e| e.decision == protocol::Decision::Deny)
}

/// The outcome, its decision recorded in the call's span.
fn traced(span: &tracing::Span, outcome: Outcome) -> Outcome {
    span.record(
        "tollgate.decision",
        match &outcome {
            Outcome::Permit(_) => "PERMIT",
            Outcome::Refused { decision, .. } => decision.as_str(),
            Outcome::Failed(_) => "failed",
        },
    );
    outcome
}

/// What the gateway takes from the SDK's verdict on a gate's answer.
pub(crate) fn outcome(verified: Result<sdk::Permit, sdk::Refusal>) -> Outcome {
    let json = |r: &protocol::DecisionResponse| serde_json::to_value(r).unwrap_or_default();
    match verified {
        Ok(permit) => Outcome::Permit(json(permit.response())),
        Err(sdk::Refusal::Deny {
            reason, response, ..
        }) => Outcome::Refused {
            decision: "DENY".into(),
            reason,
            response: json(&response),
        },
        Err(sdk::Refusal::Silence {
            reason, response, ..
        }) => Outcome::Refused {
            decision: "SILENCE".into(),
            reason,
            response: json(&response),
        },
        Err(other) => Outcome::Failed(other.to_string()),
    }
}
