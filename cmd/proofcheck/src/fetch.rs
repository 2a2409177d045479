//! Reading a log's public read API over HTTP, through the one log client
//! (`logclient`): the checkpoint, tiles, entry bundles, consistency proofs
//! and policy bundles. Nothing fetched is trusted: callers check it against
//! signatures and hashes.

use crate::Error;

/// A log's base URL (the gate's, e.g. `http://127.0.0.1:8080`).
pub use logclient::LogClient as Log;

impl From<logclient::FetchError> for Error {
    fn from(e: logclient::FetchError) -> Error {
        if e.status == Some(401) {
            return Error::Io(format!(
                "{e}: the gate needs a caller with the read role (--token-file FILE or \
                 PROOFCHECK_TOKEN_FILE)"
            ));
        }
        Error::Io(e.to_string())
    }
}

/// A tlog-proof for entry `index` to the checkpoint `log` serves at
/// `/log/checkpoint` (with witnesses, the latest one cosigned to their
/// quorum), fetched from `/v1/proofs/inclusion`. Untrusted until verified.
///
/// # Errors
///
/// [`Error::Io`] for fetches, or if that checkpoint does not yet cover `index`.
pub fn proof_to_served_checkpoint(log: &Log, index: u64) -> Result<String, Error> {
    let text = log.checkpoint()?;
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
    let proof = log.must_get(&format!("v1/proofs/inclusion?index={index}&size={size}"))?;
    String::from_utf8(proof).map_err(|_| Error::Io("the proof is not UTF-8".into()))
}
