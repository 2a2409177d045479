//! The C2SP tlog-witness wire format (<https://c2sp.org/tlog-witness>): the
//! `add-checkpoint` request body and the `text/x.tlog.size` content type of
//! a 409 answer. One definition for the witness server, its monitor and the
//! log's pusher; the HTTP exchange is theirs.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use tlog::Hash;

use crate::Error;

/// The content type of a 409 answer whose body is the witness's latest
/// cosigned size for the log, in decimal, followed by a newline.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// Most consistency proof lines a request may carry (tlog-witness: "MUST NOT
/// send more than 63").
pub const MAX_PROOF_LINES: usize = 63;

/// An `add-checkpoint` request body: `old <size>`, one base64 proof hash per
/// line, an empty line, then the signed checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint<'a> {
    /// The size the submitter believes the witness last cosigned (0: none).
    pub old: u64,
    /// The consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, as sent (not yet parsed or verified).
    pub checkpoint: &'a [u8],
}

impl<'a> AddCheckpoint<'a> {
    /// Parses a request body, strictly: `old` in canonical decimal, every
    /// proof line a base64 32-byte hash, at most [`MAX_PROOF_LINES`].
    ///
    /// # Errors
    ///
    /// [`Error::MalformedWitnessRequest`] saying what is wrong.
    pub fn parse(body: &'a [u8]) -> Result<AddCheckpoint<'a>, Error> {
        let bad = |m: &str| Error::MalformedWitnessRequest(m.to_string());
        let split = body
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let head = std::str::from_utf8(&body[..split]).map_err(|_| bad("not UTF-8"))?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || (!n.starts_with('0') && n.bytes().all(|b| b.is_ascii_digit())))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| bad("first line must be `old <size>` in canonical decimal"))?;
        let proof = lines
            .map(|l| {
                B64.decode(l)
                    .ok()
                    .and_then(|b| Hash::from_slice(&b))
                    .ok_or_else(|| bad("a proof line is not a base64 32-byte hash"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(bad("more than 63 proof lines"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: &body[split + 2..],
        })
    }

    /// The request body.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut body = format!("old {}\n", self.old);
        for h in &self.proof {
            body.push_str(&B64.encode(h.0));
            body.push('\n');
        }
        body.push('\n');
        let mut body = body.into_bytes();
        body.extend_from_slice(self.checkpoint);
        body
    }
}

/// Parses the body of a [`SIZE_CONTENT_TYPE`] answer.
///
/// # Errors
///
/// [`Error::MalformedWitnessRequest`] if it is not a decimal size.
pub fn parse_size(body: &str) -> Result<u64, Error> {
    body.trim()
        .parse()
        .map_err(|_| Error::MalformedWitnessRequest(format!("bad size body {body:?}")))
}

#[cfg(test)]
mod tests {
    use super::AddCheckpoint;

    #[test]
    fn round_trips_and_refuses_non_canonical_sizes() {
        let req = AddCheckpoint {
            old: 12,
            proof: vec![tlog::leaf_hash(b"a"), tlog::leaf_hash(b"b")],
            checkpoint: b"example.com/log\n13\nAAAA\n\n\xe2\x80\x94 sig\n",
        };
        let body = req.to_bytes();
        assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
        for bad in [
            &b"old 012\n\ncp"[..],
            b"old -1\n\ncp",
            b"old 1\nxx\n\ncp",
            b"old 1\ncp",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
