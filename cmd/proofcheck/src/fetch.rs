//! Reading a log's public read API over HTTP: the checkpoint, tiles, entry
//! bundles, consistency proofs and policy bundles. Nothing fetched is
//! trusted: callers check it against signatures and hashes.

use std::io::Read;

use crate::Error;

/// A log's base URL (the gate's, e.g. `http://127.0.0.1:8080`).
#[derive(Clone, Debug)]
pub struct Log {
    base: String,
}

impl Log {
    /// A log at `base`.
    #[must_use]
    pub fn new(base: &str) -> Log {
        Log {
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// GET `path` under the base URL; `Ok(None)` for 404.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] for transport errors and other statuses.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, Error> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        match ureq::get(&url).call() {
            Ok(r) => {
                let mut body = Vec::new();
                r.into_reader()
                    .take(64 << 20)
                    .read_to_end(&mut body)
                    .map_err(|e| Error::Io(format!("reading {url}: {e}")))?;
                Ok(Some(body))
            }
            Err(ureq::Error::Status(404, _)) => Ok(None),
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
