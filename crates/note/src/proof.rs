//! C2SP tlog-proof: an offline-verifiable proof that an entry is in a log.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64>]
//! index <N>
//! <base64 hash>...
//!
//! <signed checkpoint, verbatim, with any cosignatures>
//! ```

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use tlog::Hash;

use crate::{Checkpoint, Error, Policy};

const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A parsed tlog-proof bundle. Nothing in it is trusted until [`ProofBundle::verify`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofBundle {
    /// Optional opaque, unauthenticated extra data.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry.
    pub index: u64,
    /// Inclusion proof, from the leaf's sibling up to the root's child (RFC 9162 §2.1.3.1).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, byte for byte.
    pub checkpoint: String,
}

impl ProofBundle {
    /// The bundle's text form.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(extra) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(extra)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h.0));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    /// Parses a bundle (tlog-proof §Format). Strict: the header line exactly,
    /// an optional `extra` line, a canonical `index` line, hash lines of exactly
    /// 32 bytes, an empty line, then a signed note.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedProof`] naming the problem.
    pub fn parse(text: &str) -> Result<ProofBundle, Error> {
        let bad = |why: String| Error::MalformedProof(why);
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint".into()))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad(format!("first line is not {HEADER}")));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line".into()))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(
                B64.decode(e)
                    .map_err(|_| bad("extra is not base64".into()))?,
            );
            line = lines.next().ok_or_else(|| bad("no index line".into()))?;
        }
        let index = line
            .strip_prefix("index ")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (*n == "0" || !n.starts_with('0'))
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| bad(format!("bad index line {line:?}")))?;
        let proof = lines
            .enumerate()
            .map(|(i, l)| {
                B64.decode(l)
                    .ok()
                    .and_then(|h| Hash::from_slice(&h))
                    .ok_or_else(|| bad(format!("proof line {} is not base64 of 32 bytes", i + 1)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        crate::Note::parse(checkpoint.as_bytes())?;
        Ok(ProofBundle {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Verifies the bundle for the entry with leaf hash `leaf`: the checkpoint
    /// must satisfy `policy` (a known log's signature, the witness quorum) and
    /// the inclusion proof must lead from `leaf` at `index` to its root.
    /// Returns the verified checkpoint.
    ///
    /// # Errors
    ///
    /// Any note, policy or proof failure.
    pub fn verify(&self, leaf: &Hash, policy: &Policy) -> Result<Checkpoint, Error> {
        let (checkpoint, _) = policy.verify_checkpoint(self.checkpoint.as_bytes())?;
        tlog::verify_inclusion(
            leaf,
            self.index,
            checkpoint.size,
            &self.proof,
            &checkpoint.root,
        )?;
        Ok(checkpoint)
    }
}
