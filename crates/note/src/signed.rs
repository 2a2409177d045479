//! C2SP signed notes: text, a blank line, and signature lines
//! `— <key name> base64(key ID || signature)`.

use std::collections::HashSet;

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};

use crate::key::valid_key_name;
use crate::{Error, KeyType, SignerKey, VerifierKey};

/// Most signature lines a note may carry. signed-note §Format: verifiers MUST
/// accept at least 16.
pub const MAX_SIGNATURES: usize = 100;
/// Largest signed note accepted, in bytes.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

const SIG_PREFIX: &str = "\u{2014} ";

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key ID (the first four bytes of the decoded signature).
    pub key_id: u32,
    /// The signature proper (after the key ID).
    pub signature: Vec<u8>,
}

impl NoteSignature {
    fn line(&self) -> String {
        let mut raw = self.key_id.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }
}

/// A signed note. The text is checked, the signatures are not: call
/// [`Note::verify`] before trusting the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A signature that verified, with the key that verified it.
#[derive(Clone, Debug)]
pub struct Verified<'a> {
    /// The key.
    pub key: &'a VerifierKey,
    /// The cosignature timestamp, for [`KeyType::CosignatureV1`] keys.
    pub timestamp: Option<u64>,
}

/// signed-note §Format: valid UTF-8 (a `&str`), no ASCII control characters but newline.
fn check_chars(s: &str) -> Result<(), Error> {
    match s.bytes().position(|b| b < 0x20 && b != b'\n') {
        Some(at) => Err(Error::MalformedNote(format!(
            "control character at byte {at}"
        ))),
        None => Ok(()),
    }
}

impl Note {
    /// An unsigned note with `text`, which must end in a newline.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedNote`] if the text does not end in a newline,
    /// contains control characters, or is too large.
    pub fn new(text: impl Into<String>) -> Result<Note, Error> {
        let text = text.into();
        if !text.ends_with('\n') {
            return Err(Error::MalformedNote(
                "text does not end in a newline".into(),
            ));
        }
        if text.len() > MAX_NOTE_SIZE {
            return Err(Error::MalformedNote(format!(
                "text exceeds {MAX_NOTE_SIZE} bytes"
            )));
        }
        check_chars(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note. Strict: the note must be valid UTF-8 without
    /// control characters, end in a newline, and have at least one well-formed
    /// signature line after the last blank line; at most [`MAX_SIGNATURES`].
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedNote`] saying what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Note, Error> {
        let bad = |why: String| Error::MalformedNote(why);
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(bad(format!("note exceeds {MAX_NOTE_SIZE} bytes")));
        }
        let s = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
        check_chars(s)?;
        // The text is separated from the signatures by the last empty line.
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before signatures".into()))?;
        let (text, sigs) = (&s[..=split], &s[split + 2..]);
        if sigs.is_empty() {
            return Err(bad("no signature lines".into()));
        }
        if !sigs.ends_with('\n') {
            return Err(bad("signature block does not end in a newline".into()));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            if signatures.len() == MAX_SIGNATURES {
                return Err(bad(format!("more than {MAX_SIGNATURES} signatures")));
            }
            let rest = line.strip_prefix(SIG_PREFIX).ok_or_else(|| {
                bad(format!(
                    "signature line {line:?} does not start with an em dash and space"
                ))
            })?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| bad(format!("signature line {line:?} has no signature")))?;
            if !valid_key_name(name) {
                return Err(bad(format!("invalid key name {name:?}")));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| bad(format!("signature by {name} is not base64")))?;
            let Some((id, sig)) = raw.split_first_chunk::<4>() else {
                return Err(bad(format!("signature by {name} is too short")));
            };
            if sig.is_empty() {
                return Err(bad(format!("signature by {name} is too short")));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: u32::from_be_bytes(*id),
                signature: sig.to_vec(),
            });
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note text, including its final newline. Unauthenticated until verified.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The signature lines, in order.
    #[must_use]
    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Adds an Ed25519 signature by `key` (a [`KeyType::Ed25519`] key).
    ///
    /// # Errors
    ///
    /// Returns [`Error::WrongKey`] for a cosignature key (use
    /// [`Note::add_cosignature`]) and [`Error::MalformedNote`] past
    /// [`MAX_SIGNATURES`].
    pub fn sign(&mut self, key: &SignerKey) -> Result<(), Error> {
        if key.verifier().kind() != KeyType::Ed25519 {
            return Err(Error::WrongKey(format!(
                "{} is not an Ed25519 note key",
                key.verifier().name()
            )));
        }
        let sig = key.sign_raw(self.text.as_bytes()).to_vec();
        self.push(key.verifier(), sig)
    }

    /// Adds a `cosignature/v1` by witness `key` at `timestamp` (POSIX seconds).
    ///
    /// # Errors
    ///
    /// Returns [`Error::WrongKey`] unless `key` is a [`KeyType::CosignatureV1`]
    /// key, and [`Error::MalformedNote`] for a timestamp above 2^63 - 1.
    pub fn add_cosignature(&mut self, key: &SignerKey, timestamp: u64) -> Result<(), Error> {
        if key.verifier().kind() != KeyType::CosignatureV1 {
            return Err(Error::WrongKey(format!(
                "{} is not a cosignature key",
                key.verifier().name()
            )));
        }
        if timestamp > i64::MAX as u64 {
            return Err(Error::MalformedNote(
                "cosignature timestamp exceeds 2^63 - 1".into(),
            ));
        }
        // tlog-cosignature: timestamped_signature = u64 timestamp (big-endian) || signature.
        let mut sig = timestamp.to_be_bytes().to_vec();
        sig.extend_from_slice(&key.sign_raw(&crate::cosignature_message(timestamp, &self.text)));
        self.push(key.verifier(), sig)
    }

    /// Adds an already-made signature line (for example a witness's cosignature).
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedNote`] past [`MAX_SIGNATURES`] or for an invalid name.
    pub fn add_signature(&mut self, sig: NoteSignature) -> Result<(), Error> {
        if !valid_key_name(&sig.name) || sig.signature.is_empty() {
            return Err(Error::MalformedNote(format!(
                "invalid signature by {:?}",
                sig.name
            )));
        }
        if self.signatures.len() == MAX_SIGNATURES {
            return Err(Error::MalformedNote(format!(
                "more than {MAX_SIGNATURES} signatures"
            )));
        }
        self.signatures.push(sig);
        Ok(())
    }

    fn push(&mut self, key: &VerifierKey, signature: Vec<u8>) -> Result<(), Error> {
        self.add_signature(NoteSignature {
            name: key.name().to_string(),
            key_id: key.id(),
            signature,
        })
    }

    /// Verifies the note against `known` keys (signed-note §Signatures):
    /// signatures from unknown keys (name and ID not both matching a known
    /// key) are ignored; a signature from a known key that fails rejects the
    /// whole note; at least one known signature must verify. Each key appears
    /// once in the result, however many lines it signed.
    ///
    /// # Errors
    ///
    /// Returns [`Error::BadSignature`] or [`Error::UnverifiedNote`].
    pub fn verify<'k>(&self, known: &'k [VerifierKey]) -> Result<Vec<Verified<'k>>, Error> {
        let mut verified: Vec<Verified<'k>> = Vec::new();
        let mut seen = HashSet::new();
        for sig in &self.signatures {
            let Some(key) = known
                .iter()
                .find(|k| k.name() == sig.name && k.id() == sig.key_id)
            else {
                continue;
            };
            let Some(timestamp) = key.verify(&self.text, &sig.signature) else {
                return Err(Error::BadSignature {
                    name: sig.name.clone(),
                    id: sig.key_id,
                });
            };
            if seen.insert((key.name(), key.id())) {
                verified.push(Verified { key, timestamp });
            }
        }
        if verified.is_empty() {
            return Err(Error::UnverifiedNote);
        }
        Ok(verified)
    }

    /// The signed note as text: the text, a blank line, the signature lines.
    ///
    /// An unsigned note has no text form; this renders it with no signature
    /// lines, which [`Note::parse`] rejects.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(self.text.len() + 1 + 120 * self.signatures.len());
        s.push_str(&self.text);
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_notes_are_rejected() {
        let key = SignerKey::generate("k", KeyType::Ed25519).unwrap();
        let mut n = Note::new("hello\n").unwrap();
        n.sign(&key).unwrap();
        let good = n.to_text();
        assert_eq!(Note::parse(good.as_bytes()).unwrap(), n);
        let cases = [
            good.replace("\n\n", "\n"),                     // no blank line
            good.trim_end().to_string(),                    // no final newline
            good.replace('\u{2014}', "-"),                  // not an em dash
            good.replace("hello", "hel\tlo"),               // control character
            good.replace("\u{2014} k ", "\u{2014} k  "),    // bad base64
            format!("{good}\n"),                            // blank line after signatures
            "hello\n\n".to_string(),                        // no signatures
            "hello\n\n\u{2014} k AAAA\n".to_string(),       // too short
            "hello\n\n\u{2014} a+b AAAAAAA=\n".to_string(), // '+' in name
        ];
        for c in cases {
            assert!(Note::parse(c.as_bytes()).is_err(), "{c:?}");
        }
        assert!(Note::parse(&[0xff, b'\n', b'\n']).is_err());
        assert!(Note::new("no newline").is_err());
    }

    #[test]
    fn a_bad_known_signature_rejects_the_note() {
        let key = SignerKey::generate("k", KeyType::Ed25519).unwrap();
        let mut n = Note::new("text\n").unwrap();
        n.sign(&key).unwrap();
        let mut tampered = Note::parse(n.to_text().replace("text", "test").as_bytes()).unwrap();
        assert!(matches!(
            tampered.verify(std::slice::from_ref(key.verifier())),
            Err(Error::BadSignature { .. })
        ));
        tampered.signatures.clear();
        assert!(matches!(tampered.verify(&[]), Err(Error::UnverifiedNote)));
    }

    #[test]
    fn accepts_many_signatures() {
        let mut n = Note::new("many\n").unwrap();
        let keys: Vec<SignerKey> = (0..20)
            .map(|i| SignerKey::generate(&format!("k{i}"), KeyType::Ed25519).unwrap())
            .collect();
        for k in &keys {
            n.sign(k).unwrap();
        }
        let parsed = Note::parse(n.to_text().as_bytes()).unwrap();
        let verifiers: Vec<VerifierKey> = keys.iter().map(|k| k.verifier().clone()).collect();
        assert_eq!(parsed.verify(&verifiers).unwrap().len(), 20);
    }
}
