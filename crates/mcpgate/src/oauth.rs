//! `tollgate mcp http --oauth FILE`: the gateway as an OAuth 2.1 resource
//! server, as MCP's authorization specification (2026-07-28) has it.
//!
//! - RFC 9728 Protected Resource Metadata at
//!   `/.well-known/oauth-protected-resource` (and with the endpoint's path
//!   appended, RFC 9728 §3.1): the resource, its authorization server, the
//!   scopes. A request without a token is `401` with `WWW-Authenticate:
//!   Bearer resource_metadata="…", scope="…"`; a token without the scopes
//!   is `403` with `error="insufficient_scope"` (step-up).
//! - Access tokens are JWTs (RFC 9068) checked with `jsonwebtoken`: the
//!   signature against the authorization server's JWKS (its `jwks_uri`,
//!   from the configuration or its RFC 8414 metadata; fetched over https
//!   only, cached, fetched again for an unknown `kid` at most every
//!   `jwks_min_refetch_seconds` and in any case after [`KEYS_TTL`]), the algorithm
//!   against an allow-list (never `none` or a MAC), `iss`, `aud` = this
//!   resource (RFC 8707), `exp` (required) and `nbf` with a bounded leeway.
//! - A token maps to a principal by its `client_id`, `sub`, or another
//!   claim's value (the first rule that matches); the rule says which
//!   actors it may speak for, listed or taken from a claim. Decisions are
//!   asked as the gateway's own caller, on behalf of the principal
//!   (`protocol::OnBehalfOf`: receipts record issuer, subject and client).
//!   The token itself goes nowhere: not upstream, not to the gate.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use jsonwebtoken::jwk::{JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Keys are fetched again after this, whatever happens.
pub const KEYS_TTL: Duration = Duration::from_secs(300);
/// The largest leeway for `exp` and `nbf` the configuration may ask for.
const MAX_LEEWAY: u64 = 300;
/// The largest JWKS or metadata document read.
const MAX_DOCUMENT: u64 = 1 << 20;

/// The `--oauth` file (TOML).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's issuer identifier (an https URL): tokens'
    /// `iss` must be exactly this.
    pub issuer: String,
    /// This resource's identifier, the URL clients connect to (RFC 8707):
    /// tokens' `aud` must contain it.
    pub resource: String,
    /// The authorization server's JWKS (https); default: the `jwks_uri` of
    /// its RFC 8414 metadata.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// CA certificate(s) (PEM) to verify the authorization server against
    /// (default: the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The signature algorithms accepted (default RS256, ES256, EdDSA;
    /// MACs are refused: the key would be shared with the issuer).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds (default 30, at
    /// most 300).
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// A token naming a key the cached set lacks fetches the set again, at
    /// most this often (default 10 s; 1 to 300): a flood of made-up `kid`s
    /// costs the authorization server one request per interval.
    #[serde(default = "default_refetch")]
    pub jwks_min_refetch_seconds: u64,
    /// Scopes every token must carry (advertised in the metadata and the
    /// challenges).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Which tokens are whom: the first rule that matches a token wins; a
    /// token no rule matches is refused (403).
    #[serde(default, rename = "principal")]
    pub principals: Vec<PrincipalRule>,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

fn default_leeway() -> u64 {
    30
}

fn default_refetch() -> u64 {
    10
}

/// One `[[principal]]` of the configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRule {
    /// Tokens issued to this OAuth client (`client_id`, else `azp`).
    #[serde(default)]
    pub client_id: Option<String>,
    /// Tokens of this subject (`sub`).
    #[serde(default)]
    pub sub: Option<String>,
    /// Tokens whose claim of this name ...
    #[serde(default)]
    pub claim: Option<String>,
    /// ... is this string (or an array holding it).
    #[serde(default)]
    pub value: Option<String>,
    /// The actors it may speak for (exact ids; the first is the default).
    #[serde(default)]
    pub actors: Vec<String>,
    /// Or: the actors are this claim's value (a string or an array of them).
    #[serde(default)]
    pub actor_claim: Option<String>,
}

impl PrincipalRule {
    fn check(&self, n: usize) -> Result<()> {
        let selectors = [
            self.client_id.is_some(),
            self.sub.is_some(),
            self.claim.is_some(),
        ];
        ensure!(
            selectors.iter().filter(|s| **s).count() == 1,
            "[[principal]] {n}: name exactly one of client_id, sub, claim"
        );
        ensure!(
            self.claim.is_some() == self.value.is_some(),
            "[[principal]] {n}: claim and value go together"
        );
        ensure!(
            self.actors.is_empty() != self.actor_claim.is_none(),
            "[[principal]] {n}: give either actors or actor_claim"
        );
        ensure!(
            self.actors
                .iter()
                .all(|a| !a.is_empty() && !a.ends_with('*')),
            "[[principal]] {n}: actors are exact ids (no patterns)"
        );
        Ok(())
    }

    fn matches(&self, claims: &Map<String, Value>, client: Option<&str>, subject: &str) -> bool {
        if let Some(c) = &self.client_id {
            return client == Some(c.as_str());
        }
        if let Some(s) = &self.sub {
            return subject == s;
        }
        match (&self.claim, &self.value) {
            (Some(claim), Some(value)) => strings(claims.get(claim)).iter().any(|v| v == value),
            _ => false,
        }
    }

    fn actors(&self, claims: &Map<String, Value>) -> Vec<String> {
        match &self.actor_claim {
            Some(claim) => strings(claims.get(claim))
                .into_iter()
                .filter(|a| !a.is_empty() && !a.ends_with('*'))
                .collect(),
            None => self.actors.clone(),
        }
    }
}

/// A claim's string value, or the strings of its array value.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl OAuthConfig {
    /// Reads and checks the `--oauth` file.
    ///
    /// # Errors
    ///
    /// The file is unreadable, not this TOML, or asks for what is refused
    /// (an http issuer or JWKS, a MAC algorithm, a leeway past 300 s, a
    /// rule without one selector or without actors).
    pub fn load(path: &Path) -> Result<OAuthConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: OAuthConfig =
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
        config
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(config)
    }

    fn check(&self) -> Result<()> {
        ensure!(
            self.issuer.starts_with("https://"),
            "issuer must be an https:// URL"
        );
        if let Some(j) = &self.jwks_uri {
            ensure!(
                j.starts_with("https://"),
                "jwks_uri must be an https:// URL"
            );
        }
        ensure!(
            self.resource.starts_with("https://") || self.resource.starts_with("http://"),
            "resource must be the URL clients connect to"
        );
        ensure!(
            self.leeway_seconds <= MAX_LEEWAY,
            "leeway_seconds is at most {MAX_LEEWAY}"
        );
        ensure!(
            (1..=300).contains(&self.jwks_min_refetch_seconds),
            "jwks_min_refetch_seconds is 1 to 300"
        );
        self.algorithms()?;
        ensure!(
            !self.principals.is_empty(),
            "no [[principal]]: no token could be anyone"
        );
        for (n, rule) in self.principals.iter().enumerate() {
            rule.check(n + 1)?;
        }
        Ok(())
    }

    fn algorithms(&self) -> Result<Vec<Algorithm>> {
        ensure!(!self.algorithms.is_empty(), "algorithms is empty");
        self.algorithms
            .iter()
            .map(|a| {
                let alg: Algorithm = a
                    .parse()
                    .map_err(|_| anyhow::anyhow!("unknown algorithm {a}"))?;
                if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                    bail!("algorithm {a}: MACs are refused (the key would be shared)");
                }
                Ok(alg)
            })
            .collect()
    }

    /// The RFC 9728 metadata document.
    #[must_use]
    pub fn metadata(&self, name: &str) -> Value {
        serde_json::json!({
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": name,
        })
    }
}

/// A verified token's principal.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Who, as receipts record it.
    pub on_behalf_of: protocol::OnBehalfOf,
    /// The actors it may speak for.
    pub actors: Vec<String>,
    /// When its token expires (UNIX seconds).
    pub expires_at: u64,
}

impl Principal {
    /// Whether its token has expired (by the clock, no leeway).
    #[must_use]
    pub fn expired(&self) -> bool {
        jsonwebtoken::get_current_timestamp() >= self.expires_at
    }
}

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a valid token for this resource (401 `invalid_token`); says why.
    Invalid(String),
    /// Valid, but without the scopes (403 `insufficient_scope`).
    InsufficientScope,
    /// Valid, but no `[[principal]]` is it, or it may speak for no actor (403).
    Unmapped(String),
    /// The keys to check it could not be had (503).
    Unavailable(String),
}

/// The authorization server's keys, as last fetched.
struct Keys {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    /// Keys without a `kid` (usable only when the set has one key).
    unnamed: Vec<Arc<DecodingKey>>,
    fetched: Instant,
}

/// Checks access tokens.
pub struct Validator {
    config: OAuthConfig,
    algorithms: Vec<Algorithm>,
    agent: ureq::Agent,
    /// The JWKS URL, once known (configured or discovered).
    jwks_uri: tokio::sync::OnceCell<String>,
    keys: RwLock<Option<Arc<Keys>>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl Validator {
    /// A validator for `config` (already checked by [`OAuthConfig::load`]).
    ///
    /// # Errors
    ///
    /// The CA file cannot be read.
    pub fn new(config: OAuthConfig) -> Result<Validator> {
        let algorithms = config.algorithms()?;
        let agent = tls::agent(config.ca_file.as_deref(), Duration::from_secs(10))
            .context("the --oauth file's ca_file")?;
        Ok(Validator {
            jwks_uri: tokio::sync::OnceCell::new_with(config.jwks_uri.clone()),
            config,
            algorithms,
            agent,
            keys: RwLock::new(None),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &OAuthConfig {
        &self.config
    }

    /// Whether `token` has a JWT's shape (three dot-separated parts); other
    /// bearer tokens are Tollgate callers'.
    #[must_use]
    pub fn is_jwt(token: &str) -> bool {
        token.split('.').count() == 3
    }

    /// The principal `token` is, or why not.
    ///
    /// # Errors
    ///
    /// [`Refused`], saying why.
    pub async fn principal(&self, token: &str) -> Result<Principal, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused::Invalid(format!("not a JWT this gateway accepts: {e}")))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Refused::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let key = self.key(header.kid.as_deref()).await?;
        // Only the header's algorithm (allowed, as just checked): the
        // library refuses a key of another family than the algorithm's.
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.resource]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.config.leeway_seconds;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| Refused::Invalid(format!("the token does not verify: {e}")))?
            .claims;
        self.map(&claims)
    }

    /// The principal of verified `claims`.
    fn map(&self, claims: &Map<String, Value>) -> Result<Principal, Refused> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let client = claims
            .get("client_id")
            .or_else(|| claims.get("azp"))
            .and_then(Value::as_str);
        // RFC 9068 §2.2.3: `scope`, space-separated; some servers say `scp`.
        let granted: Vec<String> = match claims.get("scope") {
            Some(Value::String(s)) => s.split(' ').map(str::to_string).collect(),
            _ => strings(claims.get("scp")),
        };
        if !self.config.scopes.iter().all(|s| granted.contains(s)) {
            return Err(Refused::InsufficientScope);
        }
        let on_behalf_of = protocol::OnBehalfOf::oauth(&self.config.issuer, subject, client)
            .map_err(Refused::Invalid)?;
        let rule = self
            .config
            .principals
            .iter()
            .find(|r| r.matches(claims, client, subject))
            .ok_or_else(|| {
                Refused::Unmapped(format!(
                    "no [[principal]] of this gateway is subject {subject:?}, client {client:?}"
                ))
            })?;
        let actors = rule.actors(claims);
        if actors.is_empty() {
            return Err(Refused::Unmapped(format!(
                "subject {subject:?} may speak for no actor (its {} claim names none)",
                rule.actor_claim.as_deref().unwrap_or("actor")
            )));
        }
        Ok(Principal {
            on_behalf_of,
            actors,
            expires_at: claims.get("exp").and_then(Value::as_u64).unwrap_or(0),
        })
    }

    /// The key named `kid` (or the one key when neither names one),
    /// fetching the set when it is stale or lacks it.
    async fn key(&self, kid: Option<&str>) -> Result<Arc<DecodingKey>, Refused> {
        let find = |keys: &Keys| match kid {
            Some(k) => keys.by_kid.get(k).cloned(),
            None if keys.by_kid.len() + keys.unnamed.len() == 1 => keys
                .unnamed
                .first()
                .or_else(|| keys.by_kid.values().next())
                .cloned(),
            None => None,
        };
        let refetch_after = Duration::from_secs(self.config.jwks_min_refetch_seconds);
        let cached = self.keys.read().expect("keys lock").clone();
        if let Some(keys) = &cached {
            if keys.fetched.elapsed() < KEYS_TTL {
                if let Some(key) = find(keys) {
                    return Ok(key);
                }
                if keys.fetched.elapsed() < refetch_after {
                    return Err(unknown(kid));
                }
            }
        }
        let _one = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let current = self.keys.read().expect("keys lock").clone();
        let fresh = match current {
            Some(k) if k.fetched.elapsed() < refetch_after => k,
            _ => {
                let k = Arc::new(self.fetch().await.map_err(|e| {
                    tracing::warn!("tollgate mcp http: fetching the JWKS: {e:#}");
                    Refused::Unavailable(format!("the authorization server's keys: {e:#}"))
                })?);
                *self.keys.write().expect("keys lock") = Some(k.clone());
                k
            }
        };
        find(&fresh).ok_or_else(|| unknown(kid))
    }

    /// Fetches the key set (discovering its URL first if need be).
    async fn fetch(&self) -> Result<Keys> {
        let url = self.jwks_uri.get_or_try_init(|| self.discover()).await?;
        let set: JwkSet = serde_json::from_value(self.get(url).await?)
            .with_context(|| format!("{url}: not a JWK set"))?;
        let mut keys = Keys {
            by_kid: HashMap::new(),
            unnamed: Vec::new(),
            fetched: Instant::now(),
        };
        for jwk in &set.keys {
            let signing = !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
            if !signing || !jwk.is_supported() {
                continue;
            }
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => drop(keys.by_kid.insert(kid.clone(), Arc::new(key))),
                None => keys.unnamed.push(Arc::new(key)),
            }
        }
        Ok(keys)
    }

    /// The `jwks_uri` of the issuer's RFC 8414 metadata (its well-known
    /// URL: the path inserted after the host, §3.1), which must name this
    /// issuer (§3.3).
    async fn discover(&self) -> Result<String> {
        let issuer = self.config.issuer.trim_end_matches('/');
        let rest = issuer.strip_prefix("https://").expect("checked");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let slash = if path.is_empty() { "" } else { "/" };
        let url = format!("https://{host}/.well-known/oauth-authorization-server{slash}{path}");
        let metadata = self.get(&url).await?;
        ensure!(
            metadata["issuer"].as_str() == Some(self.config.issuer.as_str()),
            "{url} names issuer {}, not {}",
            metadata["issuer"],
            self.config.issuer
        );
        let jwks = metadata["jwks_uri"]
            .as_str()
            .with_context(|| format!("{url} names no jwks_uri"))?;
        ensure!(
            jwks.starts_with("https://"),
            "{url}: jwks_uri {jwks} is not https"
        );
        Ok(jwks.to_string())
    }

    /// GETs a JSON document (https; at most 1 MiB).
    async fn get(&self, url: &str) -> Result<Value> {
        let (agent, url) = (self.agent.clone(), url.to_string());
        tokio::task::spawn_blocking(move || -> Result<Value> {
            let answer = agent
                .get(&url)
                .set("accept", "application/json")
                .call()
                .with_context(|| format!("GET {url}"))?;
            let mut body = Vec::new();
            std::io::Read::read_to_end(
                &mut std::io::Read::take(answer.into_reader(), MAX_DOCUMENT),
                &mut body,
            )?;
            serde_json::from_slice(&body).with_context(|| format!("{url}: not JSON"))
        })
        .await?
    }
}

fn unknown(kid: Option<&str>) -> Refused {
    Refused::Invalid(match kid {
        Some(k) => format!("the token's key {k:?} is not among the authorization server's"),
        None => "the token names no key (kid), and the authorization server has several".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(principals: &str) -> Result<OAuthConfig> {
        let c: OAuthConfig = toml::from_str(&format!(
            "issuer = \"https://as.example\"\nresource = \"http://127.0.0.1:8081/mcp\"\n\
             scopes = [\"mcp\"]\n{principals}"
        ))?;
        c.check()?;
        Ok(c)
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_configuration_that_would_accept_too_much_is_refused() {
        let rule = "[[principal]]\nclient_id = \"c\"\nactors = [\"a\"]\n";
        assert!(config(rule).is_ok());
        assert!(config("").is_err(), "no principal");
        assert!(
            config("[[principal]]\nclient_id = \"c\"\nsub = \"s\"\nactors = [\"a\"]\n").is_err()
        );
        assert!(
            config("[[principal]]\nclient_id = \"c\"\n").is_err(),
            "no actors"
        );
        assert!(config("[[principal]]\nclient_id = \"c\"\nactors = [\"agent-*\"]\n").is_err());
        assert!(config(&format!("algorithms = [\"HS256\"]\n{rule}")).is_err());
        assert!(config(&format!("leeway_seconds = 3600\n{rule}")).is_err());
        assert!(config(&format!("jwks_uri = \"http://as.example/jwks\"\n{rule}")).is_err());
    }

    #[test]
    fn a_token_maps_by_client_subject_or_claim_and_needs_the_scopes() {
        let c = config(
            "[[principal]]\nclient_id = \"desk\"\nactors = [\"agent-1\", \"agent-2\"]\n\
             [[principal]]\nclaim = \"groups\"\nvalue = \"ops\"\nactor_claim = \"act_as\"\n",
        )
        .unwrap();
        let v = Validator::new(c).unwrap();
        let p = v
            .map(&claims(
                serde_json::json!({"sub": "u1", "client_id": "desk", "scope": "mcp x", "exp": 9}),
            ))
            .unwrap();
        assert_eq!(p.actors, ["agent-1", "agent-2"]);
        assert_eq!(p.on_behalf_of.client.as_deref(), Some("desk"));
        let p = v
            .map(&claims(serde_json::json!({
                "sub": "u2", "scp": ["mcp"], "groups": ["dev", "ops"], "act_as": "agent-9", "exp": 9
            })))
            .unwrap();
        assert_eq!(p.actors, ["agent-9"]);
        assert_eq!(
            v.map(&claims(
                serde_json::json!({"sub": "u1", "client_id": "desk", "scope": "x"})
            ))
            .unwrap_err(),
            Refused::InsufficientScope
        );
        assert!(matches!(
            v.map(&claims(
                serde_json::json!({"sub": "u3", "client_id": "other", "scope": "mcp"})
            )),
            Err(Refused::Unmapped(_))
        ));
        // A claim naming a pattern names no actor.
        assert!(matches!(
            v.map(&claims(serde_json::json!({"sub": "u2", "scope": "mcp", "groups": "ops", "act_as": "agent-*"}))),
            Err(Refused::Unmapped(_))
        ));
    }
}
