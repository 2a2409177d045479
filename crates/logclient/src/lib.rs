//! One HTTP client for reading a log: its signed checkpoint, C2SP
//! tlog-tiles (hash tiles and entry bundles) and the gate's read routes
//! (proofs, policy bundles). `proofcheck` and the witness's monitor both
//! read logs through it.
//!
//! In scope: GET with an optional caller's bearer token (what a gate does
//! not serve publicly needs one with `read`), over any `ureq` agent (https
//! with a CA file: `tls::agent`), a cap on every body, 404 told apart from
//! failures, and [`tlog::TileSource`] over the tiles. Out of scope: trust.
//! Nothing fetched is believed: callers check it against signatures and
//! hashes.

use std::io::Read;
use std::time::Duration;

/// The largest body read (an entry bundle of 256 entries of up to 64 KiB
/// each is 16 MiB; policy bundles are capped by the gate at 16 MiB).
pub const MAX_BODY: u64 = 64 << 20;

/// A GET that did not give a body.
#[derive(Debug, thiserror::Error)]
#[error("GET {url}: {reason}")]
pub struct FetchError {
    /// What was asked for.
    pub url: String,
    /// The HTTP status, if the server answered.
    pub status: Option<u16>,
    /// What went wrong.
    pub reason: String,
}

/// A log's base URL (the gate's, e.g. `http://127.0.0.1:8080`).
#[derive(Clone, Debug)]
pub struct LogClient {
    base: String,
    agent: ureq::Agent,
    /// `Bearer <token>` of a caller with `read`, for what is not public.
    authorization: Option<String>,
}

impl LogClient {
    /// The log at `base`, asked with a 30 s timeout per request.
    #[must_use]
    pub fn new(base: &str) -> LogClient {
        LogClient {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(30))
                .build(),
            authorization: None,
        }
    }

    /// The same log, fetched with `agent` (https with a CA file, other timeouts).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> LogClient {
        self.agent = agent;
        self
    }

    /// The same log, asked with a caller's bearer token.
    #[must_use]
    pub fn with_token(mut self, token: Option<&str>) -> LogClient {
        self.authorization = token.map(|t| format!("Bearer {}", t.trim()));
        self
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GET `path` under the base URL: the body, or `None` for 404.
    ///
    /// # Errors
    ///
    /// [`FetchError`] for a transport error, another status, or a body
    /// over [`MAX_BODY`].
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, FetchError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let failed = |status: Option<u16>, reason: String| FetchError {
            url: url.clone(),
            status,
            reason,
        };
        let mut request = self.agent.get(&url);
        if let Some(a) = &self.authorization {
            request = request.set("authorization", a);
        }
        let answer = match request.call() {
            Ok(r) => r,
            Err(ureq::Error::Status(404, _)) => return Ok(None),
            Err(ureq::Error::Status(code, _)) => {
                return Err(failed(Some(code), format!("HTTP {code}")))
            }
            Err(e) => return Err(failed(None, e.to_string())),
        };
        let mut body = Vec::new();
        answer
            .into_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
            .map_err(|e| failed(None, format!("reading the body: {e}")))?;
        if body.len() as u64 > MAX_BODY {
            return Err(failed(None, format!("the body exceeds {MAX_BODY} bytes")));
        }
        Ok(Some(body))
    }

    /// GET `path`, which must exist.
    ///
    /// # Errors
    ///
    /// [`FetchError`], including for 404.
    pub fn must_get(&self, path: &str) -> Result<Vec<u8>, FetchError> {
        self.get(path)?.ok_or_else(|| FetchError {
            url: format!("{}/{}", self.base, path.trim_start_matches('/')),
            status: Some(404),
            reason: "not found".into(),
        })
    }

    /// The log's latest checkpoint as served (`/log/checkpoint`), unverified.
    ///
    /// # Errors
    ///
    /// [`FetchError`].
    pub fn checkpoint(&self) -> Result<Vec<u8>, FetchError> {
        self.must_get("log/checkpoint")
    }
}

impl tlog::TileSource for LogClient {
    fn read_tiles(&self, tiles: &[tlog::Tile]) -> Result<Vec<Vec<u8>>, tlog::ReadError> {
        tiles
            .iter()
            .map(|t| {
                self.must_get(&format!("log/{}", t.path()))
                    .map_err(|e| e.to_string().into())
            })
            .collect()
    }
}
