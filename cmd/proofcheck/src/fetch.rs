//! Reading a log's public read API over HTTP: the checkpoint, tiles, entry
//! bundles, consistency proofs and policy bundles. Nothing fetched is
//! trusted: callers check it against signatures and hashes.

use std::io::Read;

use crate::Error;

/// A log's base URL (the gate's, e.g. `http://127.0.0.1:8080`).
#[derive(Clone, Debug)]
pub struct Log {
    base: String,
    agent: ureq::Agent,
    /// `Bearer <token>` of a caller with `read`, for what is not public
    /// (entry bundles, policy bundles).
    authorization: Option<String>,
}

impl Log {
    /// A log at `base`.
    #[must_use]
    pub fn new(base: &str) -> Log {
        Log {
            base: base.trim_end_matches('/').to_string(),
            agent: ureq::Agent::new(),
            authorization: None,
        }
    }

    /// The same log, fetched with `agent` (for https with a CA file).
    #[must_use]
    pub fn with_agent(mut self, agent: ureq::Agent) -> Log {
        self.agent = agent;
        self
    }

    /// The same log, asked with a caller's bearer token.
    #[must_use]
    pub fn with_token(mut self, token: Option<&str>) -> Log {
        self.authorization = token.map(|t| format!("Bearer {}", t.trim()));
        self
    }

    /// GET `path` under the base URL; `Ok(None)` for 404.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for transport errors and other statuses.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut request = self.agent.get(&url);
        if let Some(a) = &self.authorization {
            request = request.set("authorization", a);
        }
        match request.call() {
            Ok(r) => {
                let mut body = Vec::new();
                r.into_reader()
                    .take(64 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| Error::Io(format!("reading {url}: {e}")))?;
                Ok(Some(body))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
            Err(ureq::Error::Status(401, _)) => Err(Error::Io(format!(
                "GET {url}: HTTP 401: the gate needs a caller with the read role \
                 (--token-file FILE or PROOFCHECK_TOKEN_FILE)"
            ))),
            Err(ureq::Error::Status(code, _)) => Err(Error::Io(format!("GET {url}: HTTP {code}"))),
            Err(e) => Err(Error::Io(format!("GET {url}: {e}"))),
        }
    }

    /// GET `path`, which must exist.
    ///
    /// # Errors
    ///
    /// [`Error::Io`], including for 404.
    pub fn must_get(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.get(path)?
            .ok_or_else(|| Error::Io(format!("{}/{path}: not found", self.base)))
    }
}

impl tlog::TileSource for Log {
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

impl Log {
    /// A tlog-proof for entry `index` to the checkpoint the log serves at
    /// `/log/checkpoint` (with witnesses, the latest one cosigned to their
    /// quorum), fetched from `/v1/proofs/inclusion`. Untrusted until verified.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for fetches, or if that checkpoint does not yet cover `index`.
    pub fn proof_to_served_checkpoint(&self, index: u64) -> Result<String, Error> {
        let text = self.must_get("log/checkpoint")?;
        let body = std::str::from_utf8(&text).unwrap_or("");
        let size: u64 = body
            .lines()
            .nth(1)
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| Error::Io("the served checkpoint has no size line".into()))?;
        if size <= index {
            return Err(Error::Io(format!(
                "the served checkpoint (size {size}) does not cover entry {index} yet; try again later"
            )));
        }
        let proof = self.must_get(&format!("v1/proofs/inclusion?index={index}&size={size}"))?;
        String::from_utf8(proof).map_err(|_| Error::Io("the proof is not UTF-8".into()))
    }
}
