//! C2SP tlog-checkpoint v1 and the `cosignature/v1` signed message.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use tlog::Hash;

use crate::{Error, KeyType, Note, SignerKey};

/// A checkpoint: the note text of a signed tree head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// Extension lines, opaque. Never present on checkpoints this crate signs.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    #[must_use]
    pub fn new(origin: &str, size: u64, root: Hash) -> Checkpoint {
        Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses checkpoint note text (tlog-checkpoint §Note text), strictly:
    /// at least three non-empty lines; a non-empty origin; the size in decimal
    /// with no leading zeroes; the root as base64 of exactly 32 bytes;
    /// extension lines, if any, non-empty; a final newline.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedCheckpoint`] naming the line.
    pub fn parse(text: &str) -> Result<Checkpoint, Error> {
        let bad = |why: &str| Error::MalformedCheckpoint(why.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text does not end in a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(bad("empty origin line"));
        }
        // tlog-checkpoint §Note text 2: ASCII decimal, no leading zeroes unless 0.
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size: u64 = canonical
            .then(|| size.parse().ok())
            .flatten()
            .ok_or_else(|| bad(&format!("size line {size:?} is not a canonical decimal")))?;
        // §Note text 3: base64 root of the RFC 6962 tree.
        let root = B64
            .decode(root)
            .ok()
            .and_then(|r| Hash::from_slice(&r))
            .ok_or_else(|| bad(&format!("root line {root:?} is not base64 of 32 bytes")))?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        // §Note text 4: extension lines, if any, MUST be non-empty.
        if extensions.iter().any(String::is_empty) {
            return Err(bad("empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions,
        })
    }

    /// The note text: origin, size, base64 root, extension lines, each ending in a newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root.0)
        );
        for e in &self.extensions {
            s.push_str(e);
            s.push('\n');
        }
        s
    }
}

/// Signs `checkpoint` as a signed note with the log key `key`: an Ed25519
/// key whose name is the origin (tlog-checkpoint §Signatures), and no
/// extension lines.
///
/// # Errors
///
/// Returns [`Error::WrongKey`] if the key is not an Ed25519 key named after
/// the origin, and [`Error::MalformedCheckpoint`] for extension lines.
pub fn sign_checkpoint(checkpoint: &Checkpoint, key: &SignerKey) -> Result<Note, Error> {
    if !checkpoint.extensions.is_empty() {
        return Err(Error::MalformedCheckpoint(
            "refusing to sign extension lines".into(),
        ));
    }
    if key.verifier().kind() != KeyType::Ed25519 || key.verifier().name() != checkpoint.origin {
        return Err(Error::WrongKey(format!(
            "a checkpoint of {} must be signed by an Ed25519 key of that name",
            checkpoint.origin
        )));
    }
    let mut note = Note::new(checkpoint.to_text())?;
    note.sign(key)?;
    Ok(note)
}

/// The message a `cosignature/v1` signs: `cosignature/v1\ntime <t>\n` and the
/// checkpoint note text (tlog-cosignature §Ed25519 signed message).
#[must_use]
pub fn cosignature_message(timestamp: u64, checkpoint_text: &str) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing() {
        let root = B64.encode([7u8; 32]);
        let good = format!("example.com/log\n10\n{root}\n");
        assert_eq!(Checkpoint::parse(&good).unwrap().size, 10);
        assert_eq!(Checkpoint::parse(&good).unwrap().to_text(), good);
        let with_ext = format!("example.com/log\n10\n{root}\next\n");
        assert_eq!(
            Checkpoint::parse(&with_ext).unwrap().extensions,
            vec!["ext"]
        );
        for bad in [
            format!("example.com/log\n010\n{root}\n"),
            format!("example.com/log\n+10\n{root}\n"),
            format!("example.com/log\n\n{root}\n"),
            format!("example.com/log\n18446744073709551616\n{root}\n"),
            format!("\n10\n{root}\n"),
            format!("example.com/log\n10\n{}\n", B64.encode([7u8; 31])),
            format!("example.com/log\n10\n{root}"),
            format!("example.com/log\n10\n{root}\n\n"),
            "example.com/log\n10\n".to_string(),
        ] {
            assert!(Checkpoint::parse(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            Checkpoint::parse(&format!("o\n0\n{root}\n")).unwrap().size,
            0
        );
    }

    #[test]
    fn signing_rules() {
        let key = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
        let mut cp = Checkpoint::new("example.com/log", 3, Hash([1; 32]));
        let note = sign_checkpoint(&cp, &key).unwrap();
        note.verify(std::slice::from_ref(key.verifier())).unwrap();
        let other = SignerKey::generate("example.com/other", KeyType::Ed25519).unwrap();
        assert!(sign_checkpoint(&cp, &other).is_err());
        let witness = SignerKey::generate("example.com/log", KeyType::CosignatureV1).unwrap();
        assert!(sign_checkpoint(&cp, &witness).is_err());
        cp.extensions.push("x".into());
        assert!(sign_checkpoint(&cp, &key).is_err());
    }

    #[test]
    fn cosignatures_sign_the_timestamped_message() {
        let log = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
        let w = SignerKey::generate("witness.example/w1", KeyType::CosignatureV1).unwrap();
        let cp = Checkpoint::new("example.com/log", 3, Hash([1; 32]));
        let mut note = sign_checkpoint(&cp, &log).unwrap();
        note.add_cosignature(&w, 1_679_315_147).unwrap();
        let parsed = Note::parse(note.to_text().as_bytes()).unwrap();
        let keys = [log.verifier().clone(), w.verifier().clone()];
        let v = parsed.verify(&keys).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].timestamp, Some(1_679_315_147));
        // A cosignature key cannot make a plain note signature and vice versa.
        assert!(Note::new("x\n").unwrap().sign(&w).is_err());
        assert!(Note::new("x\n").unwrap().add_cosignature(&log, 1).is_err());
        // The timestamp is bound: changing it breaks the cosignature.
        let mut sigs = parsed.signatures().to_vec();
        sigs[1].signature[7] ^= 1;
        let mut forged = Note::new(parsed.text()).unwrap();
        for s in sigs {
            forged.add_signature(s).unwrap();
        }
        assert!(matches!(
            forged.verify(&keys),
            Err(Error::BadSignature { .. })
        ));
    }
}
