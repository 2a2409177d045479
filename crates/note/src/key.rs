//! Note keys: key IDs, verifier keys (vkeys) and signer keys (skeys) in their
//! C2SP signed-note text forms.

use base64::{engine::general_purpose::STANDARD as B64, Engine as _};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Error;

/// The signature types this crate signs and verifies (signed-note §Signature types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: timestamped Ed25519 witness cosignature, `cosignature/v1`.
    CosignatureV1,
}

impl KeyType {
    /// The signature type identifier byte.
    #[must_use]
    pub fn byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => 0x01,
            KeyType::CosignatureV1 => 0x04,
        }
    }

    fn from_byte(b: u8) -> Option<KeyType> {
        match b {
            0x01 => Some(KeyType::Ed25519),
            0x04 => Some(KeyType::CosignatureV1),
            _ => None,
        }
    }
}

/// `SHA-256(key name || 0x0A || signature type || public key)[:4]`, big-endian
/// (signed-note §Signatures).
#[must_use]
pub fn key_id(name: &str, kind: KeyType, public_key: &[u8]) -> u32 {
    let h = Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update([b'\n', kind.byte()])
        .chain_update(public_key)
        .finalize();
    u32::from_be_bytes([h[0], h[1], h[2], h[3]])
}

/// Key names MUST be non-empty and MUST NOT contain Unicode spaces or `+`
/// (signed-note §Format).
pub(crate) fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

/// A public key that verifies note signatures: name, ID, type and Ed25519 key.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    kind: KeyType,
    key: VerifyingKey,
}

impl VerifierKey {
    /// A verifier for `key` under `name`, with the ID computed as the spec recommends.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedKey`] if the name is not a valid key name.
    pub fn new(name: &str, kind: KeyType, key: VerifyingKey) -> Result<VerifierKey, Error> {
        if !valid_key_name(name) {
            return Err(Error::MalformedKey(format!("invalid key name {name:?}")));
        }
        let id = key_id(name, kind, key.as_bytes());
        Ok(VerifierKey {
            name: name.to_string(),
            id,
            kind,
            key,
        })
    }

    /// Parses a vkey: `<name>+<8 hex digit key ID>+<base64(type || public key)>`.
    /// The key ID must be the one computed from the rest.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedKey`] naming what is wrong.
    pub fn parse(vkey: &str) -> Result<VerifierKey, Error> {
        let bad = |why: &str| Error::MalformedKey(format!("vkey {vkey:?}: {why}"));
        // Names have no '+', the base64 key material may: split twice.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("want <name>+<id>+<key>"));
        };
        let (kind, key) = decode_key_material(key).ok_or_else(|| bad("bad key material"))?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| bad("not an Ed25519 public key"))?;
        let v = VerifierKey::new(name, kind, key)?;
        if parse_key_id(id) != Some(v.id) {
            return Err(bad("key ID does not match the key"));
        }
        Ok(v)
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The signature type.
    #[must_use]
    pub fn kind(&self) -> KeyType {
        self.kind
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies `signature` (the bytes after the key ID) over note `text`.
    /// Returns the cosignature timestamp for a [`KeyType::CosignatureV1`] key.
    pub(crate) fn verify(&self, text: &str, signature: &[u8]) -> Option<Option<u64>> {
        match self.kind {
            KeyType::Ed25519 => {
                let sig = ed25519_dalek::Signature::from_slice(signature).ok()?;
                self.key.verify_strict(text.as_bytes(), &sig).ok()?;
                Some(None)
            }
            KeyType::CosignatureV1 => {
                // tlog-cosignature: timestamped_signature = u64 timestamp || ed25519 signature[64].
                let (ts, sig) = signature.split_first_chunk::<8>()?;
                let ts = u64::from_be_bytes(*ts);
                if ts > i64::MAX as u64 {
                    return None;
                }
                let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
                let msg = crate::cosignature_message(ts, text);
                self.key.verify_strict(&msg, &sig).ok()?;
                Some(Some(ts))
            }
        }
    }
}

impl std::fmt::Display for VerifierKey {
    /// The vkey text form.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut material = vec![self.kind.byte()];
        material.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, B64.encode(material))
    }
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VerifierKey({self})")
    }
}

/// A private key that signs notes. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct SignerKey {
    verifier: VerifierKey,
    key: SigningKey,
}

impl SignerKey {
    /// A new random key from the operating system's generator.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedKey`] if the name is not a valid key name.
    pub fn generate(name: &str, kind: KeyType) -> Result<SignerKey, Error> {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        SignerKey::from_signing_key(name, kind, key)
    }

    /// A signer from an existing Ed25519 key.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedKey`] if the name is not a valid key name.
    pub fn from_signing_key(
        name: &str,
        kind: KeyType,
        key: SigningKey,
    ) -> Result<SignerKey, Error> {
        let verifier = VerifierKey::new(name, kind, key.verifying_key())?;
        Ok(SignerKey { verifier, key })
    }

    /// Parses an skey: `PRIVATE+KEY+<name>+<id>+<base64(type || 32-byte seed)>`.
    ///
    /// # Errors
    ///
    /// Returns [`Error::MalformedKey`] (without echoing the secret).
    pub fn parse(skey: &str) -> Result<SignerKey, Error> {
        let bad = |why: &str| Error::MalformedKey(format!("skey: {why}"));
        let rest = skey
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or_else(|| bad("does not start with PRIVATE+KEY+"))?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("want PRIVATE+KEY+<name>+<id>+<key>"));
        };
        let (kind, seed) = decode_key_material(key).ok_or_else(|| bad("bad key material"))?;
        let signer = SignerKey::from_signing_key(name, kind, SigningKey::from_bytes(&seed))?;
        if parse_key_id(id) != Some(signer.verifier.id) {
            return Err(bad("key ID does not match the key"));
        }
        Ok(signer)
    }

    /// The skey text form. This is the secret: store it 0600, never log it.
    #[must_use]
    pub fn to_skey(&self) -> String {
        let mut material = vec![self.verifier.kind.byte()];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.verifier.name,
            self.verifier.id,
            B64.encode(material)
        )
    }

    /// The matching verifier key.
    #[must_use]
    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    /// The raw Ed25519 signature of `message`.
    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SignerKey({}+{:08x}, secret elided)",
            self.verifier.name, self.verifier.id
        )
    }
}

fn parse_key_id(s: &str) -> Option<u32> {
    (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn decode_key_material(b64: &str) -> Option<(KeyType, [u8; 32])> {
    let raw = B64.decode(b64).ok()?;
    let (kind, key) = raw.split_first()?;
    Some((KeyType::from_byte(*kind)?, <[u8; 32]>::try_from(key).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip_through_text() {
        let s = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
        let back = SignerKey::parse(&s.to_skey()).unwrap();
        assert_eq!(back.verifier(), s.verifier());
        let v = VerifierKey::parse(&s.verifier().to_string()).unwrap();
        assert_eq!(&v, s.verifier());
        assert!(!format!("{s:?}").contains(&s.to_skey()[12..]));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let s = SignerKey::generate("w", KeyType::CosignatureV1).unwrap();
        let v = s.verifier().to_string();
        assert!(
            VerifierKey::parse(&v.replacen('w', "x", 1)).is_err(),
            "ID mismatch"
        );
        assert!(VerifierKey::parse(&format!("{v}+extra")).is_err());
        assert!(VerifierKey::parse("").is_err());
        assert!(VerifierKey::parse("a b+00000000+AQ==").is_err());
        assert!(SignerKey::parse(&v).is_err());
        assert!(SignerKey::generate("has space", KeyType::Ed25519).is_err());
        assert!(SignerKey::generate("has+plus", KeyType::Ed25519).is_err());
    }
}
