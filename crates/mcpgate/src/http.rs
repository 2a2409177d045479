//! `tollgate mcp http`: the MCP gateway as a reverse proxy for MCP's
//! streamable HTTP transport. The rules are the `mcp` crate's, as in stdio
//! mode; this is the HTTP plumbing.
//!
//! - Every request needs `Authorization: Bearer <token>` of a live caller
//!   with `decide`: the caller whose decisions the client's calls become
//!   (checked with the gate's `GET /v1/whoami`, again after 1 s). The token
//!   is never sent upstream.
//! - Or, with `--oauth FILE`, an OAuth 2.1 access token (a JWT) of the
//!   configured authorization server for this resource ([`crate::oauth`]):
//!   its principal's calls are decided as the gateway's own caller
//!   (`--token-file`, or `--caller` in this process) on the principal's
//!   behalf, for the actors its `[[principal]]` rule names. The metadata
//!   clients discover this from is served at
//!   `/.well-known/oauth-protected-resource[/path]`.
//! - The actor: the client's `Tollgate-Actor` header, else `--actor`, else
//!   the caller's one actor when it is bound to exactly one exact id (an
//!   OAuth principal: the header or `--actor` if its rule names it, else
//!   the rule's first).
//! - A session (the upstream's `Mcp-Session-Id`) has one [`Gateway`]: the
//!   tools it learnt, the calls being decided. It belongs to the token and
//!   actor that opened it: a request from any other, or naming a session id
//!   the upstream never issued through this gateway (or that was dropped),
//!   is answered 404 and never reaches the upstream, so one caller cannot
//!   read, ping or end another's session. A request without a session id
//!   (`initialize`, or a stateless server's every request) starts a fresh
//!   one, kept if the upstream's answer names a session. At most
//!   [`MAX_SESSIONS`] are kept, [`MAX_SESSIONS_PER_CALLER`] per token: past
//!   either, the least recently used (of that token, or of all) is dropped,
//!   so a call that ran upstream is always answered.
//! - POST of a request: its answer is either the gateway's own (a refusal,
//!   as `application/json`) or the upstream's, JSON or an event stream
//!   passed event by event, each message through the gateway (a permitted
//!   call's result gets the decision in `_meta`). POST of a notification or
//!   a response, GET (the server's stream) and DELETE pass through, their
//!   messages through the gateway too.
//! - A client that goes away cancels: a call still being decided is never
//!   forwarded, and the upstream request of a forwarded one is dropped
//!   (for the 2026-07-28 protocol that is the cancellation).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mcp::sse::{Decoder, Item};
use mcp::{Action, Call, Gateway};

use crate::decider::{Asker, Decider};
use crate::oauth::{Refused, Validator};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

/// What the gateway is given (the `tollgate mcp` flags, in `cmd/tollgate`).
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The server's name: the surface its tools' decisions are asked for.
    pub server: String,
    /// The MCP server's streamable HTTP endpoint (http://host:port/path).
    pub upstream: String,
    /// Where MCP clients connect; the endpoint's path is the upstream's.
    /// (8081: beside the gate's 8080; `witness serve` takes 8090.)
    pub listen: String,
    /// The actor when the client sends no `Tollgate-Actor` header (default:
    /// the caller's actor, if it is bound to exactly one).
    pub actor: Option<String>,
    /// The gate's URL (`--gate`, its old spelling, still works).
    pub gate: String,
    /// The log's checkpoint key (vkey): answers must verify with it.
    pub log_key: Option<String>,
    /// The gate's receipt key (vkey): answers must verify with it.
    pub gate_key: Option<String>,
    /// With an https gate URL: the CA certificate(s) (PEM) to verify it against.
    pub ca_file: Option<PathBuf>,
    /// Run the gate inside this process on this data directory (which
    /// `tollgate serve` must not be running on) instead of asking one at
    /// --url; clients' tokens are its callers'. Receipts say `via: in_process`.
    pub data_dir: Option<PathBuf>,
    /// With an https upstream: the CA certificate(s) (PEM) to verify it
    /// against (default: the system's roots).
    pub upstream_ca_file: Option<PathBuf>,
    /// `tools/list` answers omit the tools the policy denies the client's
    /// actor outright (each evaluated with the arguments unknown and
    /// `context.listing = true`, never logged); calls are decided as always.
    pub hide_denied: bool,
    /// Accept OAuth 2.1 access tokens as this file configures
    /// ([`crate::oauth::OAuthConfig`]), beside callers' tokens.
    pub oauth: Option<PathBuf>,
    /// With `oauth` and a remote gate: the file holding the gateway's own
    /// caller's token, which OAuth principals' decisions are asked as.
    pub token_file: Option<PathBuf>,
    /// With `oauth` and `data_dir`: the gateway's own caller, by name.
    pub caller: String,
}

/// The largest body taken from a client or an upstream JSON answer.
const MAX_BODY: usize = 16 << 20;
/// The largest event of an upstream event stream.
const MAX_EVENT: usize = 16 << 20;
/// How long a checked token is believed before it is checked again: a
/// revocation takes effect within this.
const IDENTITY_TTL: Duration = Duration::from_secs(1);
/// At most this many sessions are kept; past it, the least recently used
/// is dropped (its client, if it comes back, gets 404 and starts a new
/// session, as the transport specifies).
const MAX_SESSIONS: usize = 10_000;
/// At most this many sessions per token; past it, that token's least
/// recently used is dropped, so one caller cannot crowd out the others.
const MAX_SESSIONS_PER_CALLER: usize = 1_000;

const SESSION: &str = "mcp-session-id";
const ACTOR: &str = "tollgate-actor";

/// Runs the proxy until interrupted.
pub fn run(args: HttpOptions) -> Result<()> {
    let upstream: Uri = args.upstream.parse().context("--upstream")?;
    anyhow::ensure!(
        matches!(upstream.scheme_str(), Some("http" | "https")) && upstream.host().is_some(),
        "--upstream must be an http:// or https:// URL; got {}",
        args.upstream
    );
    // https: the server's certificate verified against --upstream-ca-file, or
    // the system's roots; the name checked is the URL's host.
    let tls = if upstream.scheme_str() == Some("https") {
        let host = upstream.host().expect("checked").trim_matches(['[', ']']);
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("--upstream: {host} is not a server name"))?;
        let config =
            tls::client_config(args.upstream_ca_file.as_deref()).context("--upstream-ca-file")?;
        Some((tokio_rustls::TlsConnector::from(config), name))
    } else {
        anyhow::ensure!(
            args.upstream_ca_file.is_none(),
            "--upstream-ca-file is for an https:// upstream"
        );
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let gate = match (&args.data_dir, &args.log_key, &args.gate_key) {
            (Some(dir), _, _) => Decider::in_process(dir)?,
            (None, Some(log_key), Some(gate_key)) => {
                Decider::remote(&args.gate, log_key, gate_key, args.ca_file.as_deref())?
            }
            _ => anyhow::bail!("--log-key and --gate-key are needed without --data-dir"),
        };
        let path = upstream.path().to_string();
        let oauth = match &args.oauth {
            Some(file) => Some(OAuth::open(file, &args, &gate, &path).await?),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let proxy = Arc::new(Proxy {
            server: args.server.clone(),
            upstream,
            tls,
            default_actor: args.actor.clone(),
            hide_denied: args.hide_denied,
            gate,
            oauth,
            sessions: Mutex::new(HashMap::new()),
            identities: Mutex::new(HashMap::new()),
            idle: Mutex::new(Vec::new()),
        });
        let metadata = axum::routing::get(protected_resource);
        let app = axum::Router::new()
            .route(&path, axum::routing::post(post).get(get).delete(delete))
            .route(WELL_KNOWN, metadata.clone())
            .route(&format!("{WELL_KNOWN}{path}"), metadata)
            .with_state(proxy);
        println!(
            "tollgate mcp http listening on http://{}{path} for {}",
            listener.local_addr()?,
            args.upstream
        );
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

/// RFC 9728 §3: where a resource's metadata is (its path appended).
const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// An authenticated client: who the gate is asked as, and the actor.
#[derive(Clone)]
struct Who {
    asker: Asker,
    /// What its sessions are bound to: its token's digest, or its OAuth
    /// principal's (tokens are refreshed; the principal stays).
    principal: [u8; 32],
    actor: String,
    /// An OAuth principal's: when its token expires (UNIX seconds).
    expires_at: Option<u64>,
}

impl Who {
    /// A caller, by its bearer token.
    fn caller(token: &str, actor: String) -> Who {
        Who {
            asker: Asker::Token(token.to_string()),
            principal: Sha256::digest(token.as_bytes()).into(),
            actor,
            expires_at: None,
        }
    }

    /// What a session is bound to: the principal and the actor.
    fn owner(&self) -> ([u8; 32], &str) {
        (self.principal, &self.actor)
    }
}

/// `--oauth`: the validator, and the gateway's own caller that OAuth
/// principals' decisions are asked as.
struct OAuth {
    validator: Validator,
    own: Arc<Asker>,
    /// The metadata's URL, for the challenges.
    metadata_url: String,
    /// The scopes, space-separated, for the challenges.
    scope: String,
}

impl OAuth {
    async fn open(
        file: &std::path::Path,
        args: &HttpOptions,
        gate: &Decider,
        path: &str,
    ) -> Result<OAuth> {
        let config = crate::oauth::OAuthConfig::load(file)?;
        let resource: Uri = config
            .resource
            .parse()
            .context("the --oauth file's resource")?;
        anyhow::ensure!(
            resource.path() == path,
            "{}: resource {} must be this gateway's endpoint (path {path})",
            file.display(),
            config.resource
        );
        let authority = resource
            .authority()
            .map(ToString::to_string)
            .unwrap_or_default();
        let metadata_url = format!(
            "{}://{authority}{WELL_KNOWN}{path}",
            resource.scheme_str().unwrap_or("http")
        );
        // The gateway's own caller: live, with decide, before anyone asks.
        let own = match (gate, &args.token_file) {
            (Decider::InProcess { .. }, _) => Asker::Named(args.caller.clone()),
            (Decider::Remote { .. }, Some(f)) => Asker::Token(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading --token-file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (Decider::Remote { .. }, None) => anyhow::bail!(
                "--oauth with a remote gate needs --token-file: the gateway's own caller, which \
                 OAuth clients' decisions are asked as"
            ),
        };
        gate.check_own(&own).await.map_err(anyhow::Error::msg)?;
        let scope = config.scopes.join(" ");
        Ok(OAuth {
            validator: Validator::new(config)?,
            own: Arc::new(own),
            metadata_url,
            scope,
        })
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1), with
    /// `error` if a token was refused.
    fn challenge(&self, error: Option<(&str, &str)>) -> HeaderValue {
        let mut c = format!("Bearer resource_metadata=\"{}\"", self.metadata_url);
        if !self.scope.is_empty() {
            c.push_str(&format!(", scope=\"{}\"", self.scope));
        }
        if let Some((code, description)) = error {
            let clean: String = description
                .chars()
                .map(|c| {
                    if c == '"' || c == '\\' || !(' '..='~').contains(&c) {
                        '\''
                    } else {
                        c
                    }
                })
                .collect();
            c.push_str(&format!(
                ", error=\"{code}\", error_description=\"{clean}\""
            ));
        }
        HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// Holds `session` under `id`, first dropping the least recently used
/// session of the same owner when it has `per_owner` already, then the least
/// recently used of all when there are `max`.
fn admit(
    sessions: &mut HashMap<String, Arc<Session>>,
    id: &str,
    session: &Arc<Session>,
    per_owner: usize,
    max: usize,
) {
    let owner = session.who.owner();
    let mine = sessions.values().filter(|s| s.who.owner() == owner).count();
    if mine >= per_owner {
        evict_least_recent(sessions, |s| s.who.owner() == owner);
    }
    if sessions.len() >= max {
        evict_least_recent(sessions, |_| true);
    }
    sessions.insert(id.to_string(), session.clone());
}

/// Drops the least recently used of the sessions `which` selects.
fn evict_least_recent(
    sessions: &mut HashMap<String, Arc<Session>>,
    which: impl Fn(&Session) -> bool,
) {
    let oldest = sessions
        .iter()
        .filter(|(_, s)| which(s))
        .min_by_key(|(_, s)| *s.used.lock().expect("used lock"))
        .map(|(id, _)| id.clone());
    if let Some(id) = oldest {
        sessions.remove(&id);
    }
}

struct Proxy {
    server: String,
    upstream: Uri,
    /// For an https upstream: the connector and the name its certificate
    /// must carry.
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
    default_actor: Option<String>,
    hide_denied: bool,
    gate: Decider,
    oauth: Option<OAuth>,
    /// Sessions by the upstream's session id.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Checked tokens by digest: who, and when checked.
    identities: Mutex<HashMap<[u8; 32], (Instant, sdk::Identity)>>,
    /// Connections to the upstream, for reuse once their last answer is read.
    idle: Mutex<Vec<Upstream>>,
}

type Upstream = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// At most this many upstream connections are kept for reuse.
const MAX_IDLE: usize = 64;

/// What a client's request is answered with, once the gateway says.
enum Reply {
    /// The gateway's own answer (a refusal).
    Answer(String),
    /// Forward this message upstream and pass the answer back.
    Forward(String),
}

/// One MCP session through the gateway.
struct Session {
    who: Who,
    gateway: Mutex<Gateway>,
    /// Client requests waiting for the gateway, by JSON-RPC id.
    pending: Mutex<HashMap<String, oneshot::Sender<Reply>>>,
    /// The headers the gateway's own requests upstream carry (session id,
    /// protocol version), as the client last sent them.
    headers: Mutex<HeaderMap>,
    /// When a request last used it.
    used: Mutex<Instant>,
}

impl Session {
    fn new(proxy: &Proxy, who: Who) -> Session {
        Session::serving(&proxy.server, proxy.hide_denied, who)
    }

    /// A fresh session for `who` with server `server`'s tools.
    fn serving(server: &str, hide_denied: bool, who: Who) -> Session {
        let mut gateway = Gateway::new(server, &who.actor, &keyfile::new_token());
        if hide_denied {
            gateway = gateway.hide_denied();
        }
        Session {
            gateway: Mutex::new(gateway),
            who,
            pending: Mutex::new(HashMap::new()),
            headers: Mutex::new(HeaderMap::new()),
            used: Mutex::new(Instant::now()),
        }
    }

    /// The headers of a message the gateway sends upstream itself: the
    /// session's, JSON, and (as the 2026-07-28 transport wants) its method.
    fn own_headers(&self, method: Option<&str>) -> HeaderMap {
        let mut headers = self.headers.lock().expect("headers lock").clone();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.remove("mcp-name");
        match method.map(HeaderValue::from_str) {
            Some(Ok(m)) => drop(headers.insert("mcp-method", m)),
            _ => drop(headers.remove("mcp-method")),
        }
        headers
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Reply>>> {
        self.pending.lock().expect("pending lock")
    }
}

/// A JSON-RPC error answer with HTTP `status`.
fn rpc_error(status: StatusCode, id: &Value, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tollgate\""),
        );
    }
    r
}

/// The JSON-RPC id and whether it is a request (has a method), of a line
/// the gateway produced.
fn id_of(line: &str) -> (String, bool) {
    let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
    (v["id"].to_string(), v.get("method").is_some())
}

impl Proxy {
    /// The client's caller and actor, or the error to answer.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Who, Response> {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(protocol::bearer_token)
        else {
            let what = match self.oauth {
                Some(_) => "an OAuth access token for this resource, or the token of a caller",
                None => "the token of a caller",
            };
            return Err(self.unauthorized(
                None,
                &format!(
                    "tollgate: no bearer token: send Authorization: Bearer <token>: {what} \
                     with the decide role"
                ),
            ));
        };
        if let Some(oauth) = &self.oauth {
            if Validator::is_jwt(token) {
                return self.authenticate_oauth(oauth, token, headers).await;
            }
        }
        let identity = self.identity(token).await.map_err(|e| {
            self.unauthorized(Some(("invalid_token", &e)), &format!("tollgate: {e}"))
        })?;
        if !identity.roles.iter().any(|r| r == "decide") {
            return Err(rpc_error(
                StatusCode::FORBIDDEN,
                &Value::Null,
                -32001,
                &format!("tollgate: caller {} lacks the decide role", identity.name),
            ));
        }
        let actor = headers
            .get(ACTOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| self.default_actor.clone())
            .or_else(|| match identity.actors.as_slice() {
                [one] if !one.ends_with('*') => Some(one.clone()),
                _ => None,
            })
            .ok_or_else(|| {
                rpc_error(
                    StatusCode::BAD_REQUEST,
                    &Value::Null,
                    -32600,
                    &format!(
                        "tollgate: which actor? caller {} may speak for {:?}: send a \
                         Tollgate-Actor header",
                        identity.name, identity.actors
                    ),
                )
            })?;
        Ok(Who::caller(token, actor))
    }

    /// A 401 with `message`; under `--oauth`, its challenge names the
    /// metadata (and `error`, when a token was refused).
    fn unauthorized(&self, error: Option<(&str, &str)>, message: &str) -> Response {
        let mut r = rpc_error(StatusCode::UNAUTHORIZED, &Value::Null, -32001, message);
        if let Some(oauth) = &self.oauth {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, oauth.challenge(error));
        }
        r
    }

    /// The client with an OAuth access token: its principal and actor.
    async fn authenticate_oauth(
        &self,
        oauth: &OAuth,
        token: &str,
        headers: &HeaderMap,
    ) -> Result<Who, Response> {
        let principal = match oauth.validator.principal(token).await {
            Ok(p) => p,
            Err(Refused::Invalid(why)) => {
                return Err(
                    self.unauthorized(Some(("invalid_token", &why)), &format!("tollgate: {why}"))
                )
            }
            Err(Refused::InsufficientScope) => {
                let why = format!("the token lacks the scopes {:?}", oauth.scope);
                let mut r = rpc_error(
                    StatusCode::FORBIDDEN,
                    &Value::Null,
                    -32001,
                    &format!("tollgate: {why}"),
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    oauth.challenge(Some(("insufficient_scope", &why))),
                );
                return Err(r);
            }
            Err(Refused::Unmapped(why)) => {
                return Err(rpc_error(
                    StatusCode::FORBIDDEN,
                    &Value::Null,
                    -32001,
                    &format!("tollgate: {why}"),
                ))
            }
            Err(Refused::Unavailable(why)) => {
                return Err(rpc_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &Value::Null,
                    -32001,
                    &format!("tollgate: {why}"),
                ))
            }
        };
        let asked = headers
            .get(ACTOR)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                self.default_actor
                    .clone()
                    .filter(|a| principal.actors.contains(a))
            });
        let actor = match asked {
            None => principal.actors[0].clone(),
            Some(a) if principal.actors.contains(&a) => a,
            Some(a) => {
                return Err(rpc_error(
                    StatusCode::FORBIDDEN,
                    &Value::Null,
                    -32001,
                    &format!(
                        "tollgate: subject {:?} may speak for {:?}, not {a:?}",
                        principal.on_behalf_of.subject, principal.actors
                    ),
                ))
            }
        };
        let who = principal.on_behalf_of.header_value();
        Ok(Who {
            asker: Asker::OnBehalf(oauth.own.clone(), Arc::new(principal.on_behalf_of)),
            principal: Sha256::digest(format!("oauth\n{who}").as_bytes()).into(),
            actor,
            expires_at: Some(principal.expires_at),
        })
    }

    /// Who `token` is, as the gate said within the last [`IDENTITY_TTL`].
    async fn identity(&self, token: &str) -> Result<sdk::Identity, String> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let known = {
            let ids = self.identities.lock().expect("identities lock");
            ids.get(&digest)
                .filter(|(at, _)| at.elapsed() < IDENTITY_TTL)
                .map(|(_, id)| id.clone())
        };
        if let Some(id) = known {
            return Ok(id);
        }
        let id = self.gate.identify(token).await?;
        let mut ids = self.identities.lock().expect("identities lock");
        ids.retain(|_, (at, _)| at.elapsed() < IDENTITY_TTL);
        ids.insert(digest, (Instant::now(), id.clone()));
        Ok(id)
    }

    /// Whether `who` is still a live caller with `decide` (checked again
    /// every [`IDENTITY_TTL`]); a stream of one that is not is closed.
    async fn still_live(&self, who: &Who) -> bool {
        match (&who.asker, who.expires_at) {
            (_, Some(expires_at)) => jsonwebtoken::get_current_timestamp() < expires_at,
            (Asker::Token(token), None) => self
                .identity(token)
                .await
                .is_ok_and(|id| id.roles.iter().any(|r| r == "decide")),
            _ => false,
        }
    }

    /// The session a request belongs to: the one its session id names, if
    /// this token and actor opened it, or a fresh one if it names none.
    /// A session id that is unknown or another's is `None`: answer
    /// [`no_session`] (a 404), nothing sent on.
    fn session(&self, headers: &HeaderMap, who: &Who) -> Option<Arc<Session>> {
        let session = match headers.get(SESSION) {
            None => Arc::new(Session::new(self, who.clone())),
            Some(id) => {
                let found = id.to_str().ok().and_then(|id| {
                    self.sessions
                        .lock()
                        .expect("sessions lock")
                        .get(id)
                        .filter(|s| s.who.owner() == who.owner())
                        .cloned()
                });
                found?
            }
        };
        *session.used.lock().expect("used lock") = Instant::now();
        let mut kept = session.headers.lock().expect("headers lock");
        for name in [SESSION, "mcp-protocol-version"] {
            if let Some(v) = headers.get(name) {
                kept.insert(HeaderName::from_static(name), v.clone());
            }
        }
        drop(kept);
        Some(session)
    }

    /// Keeps `session` under the session id the upstream's answer names,
    /// if it names one the gateway does not hold yet (only the upstream
    /// issues session ids). Room is made by dropping the least recently
    /// used session of the same token past [`MAX_SESSIONS_PER_CALLER`], or
    /// of all past [`MAX_SESSIONS`]: never by refusing an answer whose call
    /// already ran.
    fn keep(&self, session: &Arc<Session>, answer: &HeaderMap) {
        let Some(value) = answer.get(SESSION) else {
            return;
        };
        let Ok(id) = value.to_str() else {
            return;
        };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        if let Some(held) = sessions.get(id) {
            if !Arc::ptr_eq(held, session) {
                // The upstream reissued a live id: the session is the one
                // that opened it; this gateway state is not kept under it.
                tracing::warn!("tollgate mcp http: the upstream issued session id {id} twice");
            }
            return;
        }
        admit(
            &mut sessions,
            id,
            session,
            MAX_SESSIONS_PER_CALLER,
            MAX_SESSIONS,
        );
        drop(sessions);
        session
            .headers
            .lock()
            .expect("headers lock")
            .insert(HeaderName::from_static(SESSION), value.clone());
    }

    /// Carries out the gateway's `actions` for `session`; returns the ones
    /// that belong to no waiting request (for the caller to place).
    fn execute(self: &Arc<Self>, session: &Arc<Session>, actions: Vec<Action>) -> Vec<Action> {
        let mut unrouted = Vec::new();
        for action in actions {
            match action {
                Action::ToClient(line) => {
                    let (id, is_request) = id_of(&line);
                    let waiting = (!is_request)
                        .then(|| session.pending().remove(&id))
                        .flatten();
                    match waiting {
                        Some(tx) => drop(tx.send(Reply::Answer(line))),
                        None => unrouted.push(Action::ToClient(line)),
                    }
                }
                Action::ToServer(line) => {
                    let (id, is_request) = id_of(&line);
                    if is_request && id.starts_with("\"tollgate-tools-") {
                        let (proxy, session) = (self.clone(), session.clone());
                        tokio::spawn(async move { proxy.own_request(&session, line).await });
                        continue;
                    }
                    let waiting = is_request.then(|| session.pending().remove(&id)).flatten();
                    match waiting {
                        Some(tx) => drop(tx.send(Reply::Forward(line))),
                        None => unrouted.push(Action::ToServer(line)),
                    }
                }
                Action::Decide(call) => {
                    let (proxy, session) = (self.clone(), session.clone());
                    tokio::spawn(async move { proxy.decide(&session, call).await });
                }
                // Part of the answer being passed (see `through`).
                screen @ Action::Screen(_) => unrouted.push(screen),
            }
        }
        unrouted
    }

    async fn decide(self: &Arc<Self>, session: &Arc<Session>, call: Call) {
        let id = call.id.to_string();
        let session_id = session
            .headers
            .lock()
            .expect("headers lock")
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let span = telemetry::tool_call_span(&call.tool, session_id.as_deref(), &call.trace);
        let outcome = self
            .gate
            .decide(&session.who.asker, call.intent.clone(), &span)
            .await;
        let actions = session
            .gateway
            .lock()
            .expect("gateway lock")
            .decided(call, outcome);
        // The call's answer or forward goes to the request waiting for it;
        // with none waiting (the client went away) nothing is sent anywhere.
        drop(self.execute(session, actions));
        // Cancelled while decided: the request waiting for it gets nothing.
        drop(session.pending().remove(&id));
    }

    /// Messages that belong to no waiting request: to the server, a
    /// notification or response is sent in a request of its own (never a
    /// request: one whose client is gone is not sent); to the client,
    /// nowhere to go (logged).
    fn send_unrouted(self: &Arc<Self>, session: &Arc<Session>, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::ToServer(line) if id_of(&line).1 => {
                    tracing::warn!("tollgate mcp http: nobody waits for {line}; not sent");
                }
                Action::ToServer(line) => {
                    let (proxy, session) = (self.clone(), session.clone());
                    tokio::spawn(async move {
                        let method: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                        let headers = session.own_headers(method["method"].as_str());
                        if let Err(e) = proxy.send_upstream(Method::POST, &headers, line).await {
                            tracing::warn!("tollgate mcp http: to the server: {e}");
                        }
                    });
                }
                Action::ToClient(line) => {
                    tracing::warn!("tollgate mcp http: no request to answer with {line}");
                }
                Action::Decide(_) | Action::Screen(_) => {}
            }
        }
    }

    /// The gateway's own request (its `tools/list`): sent upstream, every
    /// message of the answer back through the gateway.
    async fn own_request(self: &Arc<Self>, session: &Arc<Session>, line: String) {
        let headers = session.own_headers(Some("tools/list"));
        let messages = match self
            .send_upstream(Method::POST, &headers, line.clone())
            .await
        {
            Ok(answer) => collect_messages(answer).await,
            Err(e) => Err(e),
        };
        let messages = messages.unwrap_or_else(|e| {
            tracing::warn!("tollgate mcp http: the gateway's own tools/list: {e}");
            // No list: answer the gateway's request with an error, so the
            // calls waiting for it are refused (fail closed).
            let (id, _) = id_of(&line);
            vec![json!({"jsonrpc": "2.0", "id": serde_json::from_str::<Value>(&id).unwrap_or(Value::Null),
                "error": {"code": -32603, "message": format!("tools/list failed: {e}")}})
            .to_string()]
        });
        for m in messages {
            let actions = session
                .gateway
                .lock()
                .expect("gateway lock")
                .from_server(&m);
            let left = self.execute(session, actions);
            self.send_unrouted(session, left);
        }
    }

    /// One request upstream: `line` as the body (or none), the client's
    /// headers but its credential and the hop-by-hop ones.
    async fn send_upstream(
        &self,
        method: Method,
        headers: &HeaderMap,
        body: String,
    ) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let authority = self.upstream.authority().expect("checked").clone();
        let mut sender = self.connection().await?;
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(self.upstream.path_and_query().map_or("/", |p| p.as_str()));
        for (name, value) in headers {
            if !is_hop_by_hop(name) && name != header::AUTHORIZATION && name != ACTOR {
                request = request.header(name, value);
            }
        }
        let request = request
            .header(header::HOST, authority.as_str())
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let answer = sender.send_request(request);
        // Kept for reuse: it is taken again only once ready, which is when
        // this answer's body has been read to its end.
        {
            let mut idle = self.idle.lock().expect("idle lock");
            idle.retain(|c| !c.is_closed());
            if idle.len() < MAX_IDLE {
                idle.push(sender);
            }
        }
        answer
            .await
            .map_err(|e| format!("the MCP server {}: {e}", self.upstream))
    }

    /// A connection to the upstream ready for a request: an idle one, or new.
    async fn connection(&self) -> Result<Upstream, String> {
        {
            let mut idle = self.idle.lock().expect("idle lock");
            if let Some(k) = idle.iter().position(|c| c.is_ready()) {
                return Ok(idle.swap_remove(k));
            }
        }
        let authority = self.upstream.authority().expect("checked");
        let port = authority
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let host = authority.host().trim_matches(['[', ']']);
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connecting to the MCP server {}: {e}", self.upstream))?;
        let _ = stream.set_nodelay(true);
        let failed = |e: &dyn std::fmt::Display| format!("the MCP server {}: {e}", self.upstream);
        let Some((connector, name)) = &self.tls else {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| failed(&e))?;
            tokio::spawn(connection);
            return Ok(sender);
        };
        let stream = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|e| failed(&format!("TLS: {e}")))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Passes the upstream's `answer` to the client: status and headers as
    /// they are, each message of the body through the gateway.
    /// `answering`: the JSON-RPC id of the client's request this answers
    /// (none for a notification, a response or the server's own stream), so
    /// an answer too large to relay is still answered, with an error.
    fn relay(
        self: &Arc<Self>,
        session: &Arc<Session>,
        answer: hyper::Response<hyper::body::Incoming>,
        answering: Option<Value>,
    ) -> Response {
        let (parts, body) = answer.into_parts();
        let mut headers = HeaderMap::new();
        for (name, value) in &parts.headers {
            if !is_hop_by_hop(name) && name != header::CONTENT_LENGTH {
                headers.append(name, value.clone());
            }
        }
        let kind = content_type(&parts.headers);
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        let (proxy, session) = (self.clone(), session.clone());
        tokio::spawn(async move { proxy.pass(&session, body, kind, tx, answering).await });
        let mut response = Response::new(Body::new(ChannelBody(rx)));
        *response.status_mut() = parts.status;
        *response.headers_mut() = headers;
        response
    }

    /// Moves an upstream body to the client, message by message through the
    /// gateway; stops (dropping the upstream request) when the client goes.
    async fn pass(
        self: &Arc<Self>,
        session: &Arc<Session>,
        mut body: hyper::body::Incoming,
        kind: Kind,
        tx: mpsc::Sender<Bytes>,
        answering: Option<Value>,
    ) {
        let too_large = |what: &str| {
            answering.as_ref().map(|id| {
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32603, "message": format!(
                    "tollgate: the MCP server's {what} exceeds {} MiB and was not relayed",
                    MAX_BODY >> 20
                )}})
                .to_string()
            })
        };
        match kind {
            Kind::Json => {
                let mut whole = Vec::new();
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        whole.extend_from_slice(&data);
                        if whole.len() > MAX_BODY {
                            tracing::warn!(
                                "tollgate mcp http: an upstream answer too large to relay"
                            );
                            if let Some(error) = too_large("answer") {
                                let _ = tx.send(Bytes::from(error)).await;
                            }
                            return;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&whole).into_owned();
                let out = if text.trim().is_empty() {
                    text
                } else {
                    self.through(session, &text).await.join("\n")
                };
                let _ = tx.send(Bytes::from(out)).await;
            }
            Kind::EventStream => {
                let mut decoder = Decoder::new(MAX_EVENT);
                // A revoked caller's open streams are closed: its identity
                // is checked again every IDENTITY_TTL while the stream lasts.
                let mut recheck = tokio::time::interval(IDENTITY_TTL);
                recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                recheck.tick().await;
                loop {
                    // A client that goes away between events is noticed at
                    // once: the upstream request is dropped.
                    let frame = tokio::select! {
                        frame = body.frame() => frame,
                        () = tx.closed() => return,
                        _ = recheck.tick() => {
                            if self.still_live(&session.who).await {
                                continue;
                            }
                            tracing::info!("tollgate mcp http: the caller was revoked; its stream is closed");
                            return;
                        }
                    };
                    let Some(Ok(Ok(data))) = frame.map(|f| f.map(hyper::body::Frame::into_data))
                    else {
                        break;
                    };
                    let items = match decoder.feed(&data) {
                        Ok(items) => items,
                        Err(e) => {
                            tracing::warn!("tollgate mcp http: the server's event stream: {e}");
                            if let Some(error) = too_large("event") {
                                let event = Item::Event(mcp::sse::Event {
                                    data: Some(error),
                                    ..Default::default()
                                });
                                let _ = tx.send(Bytes::from(event.encode())).await;
                            }
                            return;
                        }
                    };
                    let mut out = String::new();
                    for item in items {
                        match item {
                            Item::Event(mut e) => {
                                let data = e.data.take().unwrap_or_default();
                                if data.is_empty() {
                                    e.data = Some(data);
                                    out.push_str(&Item::Event(e).encode());
                                    continue;
                                }
                                let lines = self.through(session, &data).await;
                                for (k, line) in lines.into_iter().enumerate() {
                                    let mut each = e.clone();
                                    if k > 0 {
                                        each.id = None;
                                    }
                                    each.data = Some(line);
                                    out.push_str(&Item::Event(each).encode());
                                }
                            }
                            comment @ Item::Comment(_) => out.push_str(&comment.encode()),
                        }
                    }
                    if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                        return;
                    }
                }
            }
            Kind::Other => {
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// One server message through the gateway: the lines for the client
    /// (a listing screened first, with `--hide-denied`).
    async fn through(self: &Arc<Self>, session: &Arc<Session>, message: &str) -> Vec<String> {
        let actions = session
            .gateway
            .lock()
            .expect("gateway lock")
            .from_server(message);
        let mut left: VecDeque<Action> = self.execute(session, actions).into();
        let mut lines = Vec::new();
        let mut rest = Vec::new();
        while let Some(a) = left.pop_front() {
            match a {
                Action::ToClient(line) => lines.push(line),
                Action::Screen(listing) => {
                    let mut denied = HashSet::new();
                    for (name, intent) in &listing.intents {
                        if self.gate.denies(&session.who.asker, intent).await {
                            denied.insert(name.clone());
                        }
                    }
                    let screened = session
                        .gateway
                        .lock()
                        .expect("gateway lock")
                        .screened(listing, &denied);
                    left.extend(self.execute(session, screened));
                }
                other => rest.push(other),
            }
        }
        self.send_unrouted(session, rest);
        lines
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Json,
    EventStream,
    Other,
}

fn content_type(headers: &HeaderMap) -> Kind {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/json") {
        Kind::Json
    } else if ct.starts_with("text/event-stream") {
        Kind::EventStream
    } else {
        Kind::Other
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

/// Every JSON-RPC message of an upstream answer (JSON or event stream).
async fn collect_messages(
    answer: hyper::Response<hyper::body::Incoming>,
) -> Result<Vec<String>, String> {
    let status = answer.status();
    let kind = content_type(answer.headers());
    let mut body = answer.into_body();
    let mut messages = Vec::new();
    let mut whole = Vec::new();
    let mut decoder = Decoder::new(MAX_EVENT);
    while let Some(frame) = body.frame().await {
        let data = match frame.map(hyper::body::Frame::into_data) {
            Ok(Ok(d)) => d,
            Ok(Err(_)) => continue,
            Err(e) => return Err(e.to_string()),
        };
        match kind {
            Kind::EventStream => {
                for item in decoder.feed(&data)? {
                    if let Item::Event(e) = item {
                        if let Some(d) = e.data.filter(|d| !d.is_empty()) {
                            messages.push(d);
                            // The answer to the gateway's one request ends it.
                            if serde_json::from_str::<Value>(messages.last().expect("pushed"))
                                .is_ok_and(|m| m.get("method").is_none())
                            {
                                return Ok(messages);
                            }
                        }
                    }
                }
            }
            _ => {
                whole.extend_from_slice(&data);
                if whole.len() > MAX_BODY {
                    return Err("the answer is too large".into());
                }
            }
        }
    }
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&whole).trim()
        ));
    }
    if matches!(kind, Kind::Json) {
        messages.push(String::from_utf8_lossy(&whole).into_owned());
    }
    Ok(messages)
}

/// A response body fed through a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// `GET /.well-known/oauth-protected-resource[/path]`: the RFC 9728
/// metadata, under `--oauth` (else 404).
async fn protected_resource(State(proxy): State<Arc<Proxy>>) -> Response {
    match &proxy.oauth {
        Some(oauth) => (
            [(header::CONTENT_TYPE, "application/json")],
            oauth
                .validator
                .config()
                .metadata(&format!("tollgate mcp http: {}", proxy.server))
                .to_string(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `POST`: a client message.
async fn post(State(proxy): State<Arc<Proxy>>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match proxy.authenticate(&headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    if body.len() > MAX_BODY {
        return rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &Value::Null,
            -32600,
            "tollgate: the message is too large",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            &Value::Null,
            -32700,
            "parse error (tollgate mcp): the body is not UTF-8",
        );
    };
    let Some(session) = proxy.session(&headers, &who) else {
        return no_session();
    };
    let message: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let is_request = message.get("method").is_some() && message.get("id").is_some();
    let waiting = if is_request {
        let (tx, rx) = oneshot::channel();
        let key = message["id"].to_string();
        let mut pending = session.pending();
        if pending.contains_key(&key) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                &message["id"],
                -32600,
                "invalid request (tollgate mcp): a request with this id is still open",
            );
        }
        pending.insert(key, tx);
        Some(rx)
    } else {
        None
    };
    let actions = session
        .gateway
        .lock()
        .expect("gateway lock")
        .from_client(text);
    let left = proxy.execute(&session, actions);
    // A request: answered by the gateway or forwarded (see `execute`).
    let Some(rx) = waiting else {
        return pass_on(&proxy, &session, &headers, left).await;
    };
    if let Some(Action::ToClient(line)) = left.first() {
        // The gateway refused the message itself (not JSON-RPC).
        session.pending().remove(&message["id"].to_string());
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            line.clone(),
        )
            .into_response();
    }
    proxy.send_unrouted(&session, left);
    match rx.await {
        Ok(Reply::Answer(line)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            line,
        )
            .into_response(),
        Ok(Reply::Forward(line)) => match proxy.send_upstream(Method::POST, &headers, line).await {
            Ok(answer) => {
                proxy.keep(&session, answer.headers());
                proxy.relay(&session, answer, Some(message["id"].clone()))
            }
            Err(e) => rpc_error(
                StatusCode::BAD_GATEWAY,
                &message["id"],
                -32603,
                &format!("tollgate: {e}"),
            ),
        },
        // Cancelled while it was decided: nothing more will come.
        Err(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/event-stream")],
            "",
        )
            .into_response(),
    }
}

/// A notification or response from the client: sent on as the gateway
/// says, the upstream's answer passed back; 202 if nothing is sent on.
async fn pass_on(
    proxy: &Arc<Proxy>,
    session: &Arc<Session>,
    headers: &HeaderMap,
    actions: Vec<Action>,
) -> Response {
    let mut answer = None;
    for action in actions {
        match action {
            Action::ToServer(line) if answer.is_none() => {
                answer = Some(proxy.send_upstream(Method::POST, headers, line).await);
            }
            Action::ToClient(line) => {
                return (
                    StatusCode::BAD_REQUEST,
                    [(header::CONTENT_TYPE, "application/json")],
                    line,
                )
                    .into_response()
            }
            other => proxy.send_unrouted(session, vec![other]),
        }
    }
    match answer {
        None => StatusCode::ACCEPTED.into_response(),
        Some(Ok(answer)) => proxy.relay(session, answer, None),
        Some(Err(e)) => bad_gateway(&e),
    }
}

/// The answer to a session id that is unknown, ended, dropped or another
/// caller's: 404, as the transport specifies (the client starts a new one).
fn no_session() -> Response {
    rpc_error(
        StatusCode::NOT_FOUND,
        &Value::Null,
        -32001,
        "tollgate: no such session for this caller (unknown, ended or dropped): start a new \
         one with initialize",
    )
}

/// The upstream could not be reached or did not answer.
fn bad_gateway(e: &str) -> Response {
    rpc_error(
        StatusCode::BAD_GATEWAY,
        &Value::Null,
        -32603,
        &format!("tollgate: {e}"),
    )
}

/// `GET`: the server's own stream, its messages through the gateway.
async fn get(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    without_body(&proxy, Method::GET, &headers).await
}

/// `DELETE`: the client ends its session; so does the gateway.
async fn delete(State(proxy): State<Arc<Proxy>>, headers: HeaderMap) -> Response {
    without_body(&proxy, Method::DELETE, &headers).await
}

/// A request without a body, passed upstream for an authenticated client;
/// the answer back through the session's gateway. A DELETE the upstream
/// accepted ends the session here too.
async fn without_body(proxy: &Arc<Proxy>, method: Method, headers: &HeaderMap) -> Response {
    let who = match proxy.authenticate(headers).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Some(session) = proxy.session(headers, &who) else {
        return no_session();
    };
    let ends = method == Method::DELETE;
    match proxy.send_upstream(method, headers, String::new()).await {
        Ok(answer) => {
            if ends && answer.status().is_success() {
                if let Some(id) = headers.get(SESSION).and_then(|v| v.to_str().ok()) {
                    proxy.sessions.lock().expect("sessions lock").remove(id);
                }
            }
            proxy.relay(&session, answer, None)
        }
        Err(e) => bad_gateway(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(token: &str, used: Instant) -> Arc<Session> {
        let s = Session::serving("crm", false, Who::caller(token, "agent-1".into()));
        *s.used.lock().unwrap() = used;
        Arc::new(s)
    }

    #[test]
    fn past_its_share_a_caller_loses_its_own_least_recent_session_not_anothers() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut sessions = HashMap::new();
        admit(&mut sessions, "b-old", &session("b", at(0)), 2, 10);
        admit(&mut sessions, "a-1", &session("a", at(1)), 2, 10);
        admit(&mut sessions, "a-2", &session("a", at(2)), 2, 10);
        admit(&mut sessions, "a-3", &session("a", at(3)), 2, 10);
        let mut ids: Vec<_> = sessions.keys().cloned().collect();
        ids.sort();
        assert_eq!(
            ids,
            ["a-2", "a-3", "b-old"],
            "a's oldest went; b's older one stayed"
        );
    }

    #[test]
    fn past_the_total_the_least_recent_session_of_all_goes() {
        let t0 = Instant::now();
        let mut sessions = HashMap::new();
        for (i, token) in ["a", "b", "c", "d"].iter().enumerate() {
            let used = t0 + Duration::from_secs(10 - i as u64);
            admit(&mut sessions, token, &session(token, used), 5, 3);
        }
        let mut ids: Vec<_> = sessions.keys().cloned().collect();
        ids.sort();
        // "a" was used last of all (t0 + 10 s), "c" least recently among
        // the three held when "d" came.
        assert_eq!(ids, ["a", "b", "d"]);
    }

    #[test]
    fn a_session_belongs_to_its_token_and_actor() {
        let one = session("a", Instant::now());
        let same_token_other_actor = Who::caller("a", "agent-2".into());
        assert_ne!(one.who.owner(), same_token_other_actor.owner());
        assert_eq!(one.who.owner(), session("a", Instant::now()).who.owner());
        assert_ne!(one.who.owner(), session("b", Instant::now()).who.owner());
    }

    #[test]
    fn hop_by_hop_and_framing_headers_are_not_passed_on() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "host",
            "content-length",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in [
            "mcp-session-id",
            "mcp-protocol-version",
            "content-type",
            "accept",
            "last-event-id",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn content_types_are_told_apart_by_their_media_type_only() {
        let kind = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            content_type(&h)
        };
        assert!(matches!(kind("application/json"), Kind::Json));
        assert!(matches!(
            kind("Application/JSON; charset=utf-8"),
            Kind::Json
        ));
        assert!(matches!(kind("text/event-stream"), Kind::EventStream));
        assert!(matches!(
            kind("text/event-stream;charset=UTF-8"),
            Kind::EventStream
        ));
        assert!(matches!(kind("text/html"), Kind::Other));
        assert!(matches!(content_type(&HeaderMap::new()), Kind::Other));
    }

    #[test]
    fn own_requests_upstream_carry_the_session_json_and_their_method() {
        let s = session("a", Instant::now());
        s.headers.lock().unwrap().insert(
            HeaderName::from_static(SESSION),
            HeaderValue::from_static("s-1"),
        );
        s.headers
            .lock()
            .unwrap()
            .insert("mcp-name", HeaderValue::from_static("client-tool"));
        let h = s.own_headers(Some("tools/list"));
        assert_eq!(h[SESSION], "s-1");
        assert_eq!(h[header::CONTENT_TYPE], "application/json");
        assert_eq!(h["mcp-method"], "tools/list");
        assert!(
            h.get("mcp-name").is_none(),
            "a client's mcp-name never rides on the gateway's own request"
        );
        assert!(s.own_headers(None).get("mcp-method").is_none());
    }
}
