//! Batch verification of many Ed25519 signatures by one key.
//!
//! A log's entries are all signed by the same gate key, so the generic batch
//! equation (one term per signature for `R` and one for the key) collapses:
//! with random 128-bit `z_i`, every signature holds iff
//!
//! ```text
//! [8]( [-Σ z_i·s_i]B + Σ [z_i]R_i + [Σ z_i·k_i]A ) = 0,   k_i = SHA-512(R_i ‖ A ‖ M_i) mod ℓ
//! ```
//!
//! which is a multiscalar multiplication over n + 2 points instead of the
//! 2n + 1 of `ed25519_dalek::verify_batch`: about half the work.
//!
//! What it accepts, compared with `verify_strict` on each signature: the same
//! encodings are refused (non-canonical `s`, non-canonical or small-order `R`,
//! a small-order key), but the equation is the cofactored one, as in every
//! Ed25519 batch verifier. A signature whose `R` carries a torsion component
//! (only its signer can make one; it is malleability, not forgery) can pass
//! here and fail `verify_strict`. Callers that must say *which* signature is
//! bad verify one by one after a failed batch.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha512};

/// Whether every `signatures[i]` is `key`'s Ed25519 signature over
/// `messages[i]` (see the module documentation for the exact rule).
/// An empty batch verifies; slices of different lengths do not.
#[must_use]
pub fn verify_batch(key: &VerifyingKey, messages: &[&[u8]], signatures: &[[u8; 64]]) -> bool {
    if messages.len() != signatures.len() {
        return false;
    }
    let a_bytes = key.as_bytes();
    let Some(a) = CompressedEdwardsY(*a_bytes).decompress() else {
        return false;
    };
    if a.is_small_order() {
        return false;
    }
    let n = signatures.len();
    let mut weights = vec![0u8; 16 * n];
    OsRng.fill_bytes(&mut weights);
    let mut scalars = Vec::with_capacity(n + 2);
    let mut points = Vec::with_capacity(n + 2);
    scalars.extend([Scalar::ZERO, Scalar::ZERO]);
    points.extend([ED25519_BASEPOINT_POINT, a]);
    let (mut b_coeff, mut a_coeff) = (Scalar::ZERO, Scalar::ZERO);
    for ((message, sig), w) in messages
        .iter()
        .zip(signatures)
        .zip(weights.chunks_exact(16))
    {
        let (r_bytes, s_bytes) = sig.split_at(32);
        let r_bytes: [u8; 32] = r_bytes.try_into().expect("32 bytes");
        let s_bytes: [u8; 32] = s_bytes.try_into().expect("32 bytes");
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        if !canonical_y(&r_bytes) {
            return false;
        }
        let Some(r) = CompressedEdwardsY(r_bytes).decompress() else {
            return false;
        };
        if r.is_small_order() {
            return false;
        }
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r_bytes)
                .chain_update(a_bytes)
                .chain_update(message)
                .finalize()
                .into(),
        );
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(w);
        let z = Scalar::from_bytes_mod_order(z);
        b_coeff -= z * s;
        a_coeff += z * k;
        scalars.push(z);
        points.push(r);
    }
    scalars[0] = b_coeff;
    scalars[1] = a_coeff;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

/// Whether a compressed point's y (sign bit cleared) is below p = 2^255 − 19,
/// the only encoding `verify_strict` accepts. The non-canonical ones are
/// p..2^255−1: low byte ≥ 0xed, then thirty 0xff, then 0x7f.
fn canonical_y(bytes: &[u8; 32]) -> bool {
    !(bytes[0] >= 0xed && bytes[1..31].iter().all(|&b| b == 0xff) && bytes[31] & 0x7f == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::{canonical_y, verify_batch};
    use curve25519_dalek::constants::EIGHT_TORSION;
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signer, SigningKey};
    use proptest::prelude::*;

    fn batch(n: usize) -> (SigningKey, Vec<Vec<u8>>, Vec<[u8; 64]>) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let messages: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("receipt {i}\n").into_bytes())
            .collect();
        let sigs = messages.iter().map(|m| key.sign(m).to_bytes()).collect();
        (key, messages, sigs)
    }

    fn check(key: &SigningKey, messages: &[Vec<u8>], sigs: &[[u8; 64]]) -> bool {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        verify_batch(&key.verifying_key(), &refs, sigs)
    }

    #[test]
    fn valid_batches_verify() {
        for n in [0, 1, 2, 3, 64, 300] {
            let (key, messages, sigs) = batch(n);
            assert!(check(&key, &messages, &sigs), "n = {n}");
        }
    }

    #[test]
    fn another_key_or_swapped_signatures_fail() {
        let (key, messages, mut sigs) = batch(4);
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!check(&other, &messages, &sigs));
        sigs.swap(1, 2);
        assert!(!check(&key, &messages, &sigs));
        assert!(!check(&key, &messages[..3], &sigs));
    }

    #[test]
    fn encodings_verify_strict_refuses_are_refused() {
        let (key, messages, sigs) = batch(3);
        // s + ℓ: the same scalar, non-canonical.
        let mut bad = sigs.clone();
        let s = Scalar::from_canonical_bytes(bad[1][32..].try_into().unwrap()).unwrap();
        let ell_plus_s = add_ell(s.to_bytes());
        bad[1][32..].copy_from_slice(&ell_plus_s);
        assert!(!check(&key, &messages, &bad));
        // R of small order.
        let mut bad = sigs.clone();
        bad[0][..32].copy_from_slice(EIGHT_TORSION[1].compress().as_bytes());
        assert!(!check(&key, &messages, &bad));
        // Non-canonical y.
        let mut y = [0xff; 32];
        y[0] = 0xee;
        y[31] = 0x7f;
        assert!(!canonical_y(&y));
        y[0] = 0xec;
        assert!(canonical_y(&y));
    }

    /// The documented difference: a signature whose R carries a torsion
    /// component passes the cofactored batch equation and fails verify_strict.
    #[test]
    fn torsion_in_r_is_the_documented_difference() {
        use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
        use sha2::{Digest, Sha512};
        let a = Scalar::from(123_456_789u64);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&(a * B).compress().to_bytes()).unwrap();
        let message = b"receipt\n";
        let r = Scalar::from(987_654_321u64);
        let big_r = (r * B + EIGHT_TORSION[1]).compress();
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(big_r.as_bytes())
                .chain_update(key.as_bytes())
                .chain_update(message)
                .finalize()
                .into(),
        );
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice((r + k * a).as_bytes());
        assert!(verify_batch(&key, &[message], &[sig]));
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(key.verify_strict(message, &sig).is_err());
    }

    /// `s + ℓ` as 32 little-endian bytes (fits: s < ℓ < 2^253).
    fn add_ell(s: [u8; 32]) -> [u8; 32] {
        const ELL: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(ELL[i]) + carry;
            out[i] = v as u8;
            carry = v >> 8;
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Any single-bit change to any message or signature in a batch
        /// fails the batch, and verify_strict refuses the changed one too.
        #[test]
        fn one_flipped_bit_fails(n in 1usize..20, which in any::<usize>(), bit in 0usize..(8 * 64 + 8 * 12)) {
            let (key, mut messages, mut sigs) = batch(n);
            let i = which % n;
            if bit < 8 * 64 {
                sigs[i][bit / 8] ^= 1 << (bit % 8);
            } else {
                let b = bit - 8 * 64;
                let len = messages[i].len();
                messages[i][b / 8 % len] ^= 1 << (b % 8);
            }
            prop_assert!(!check(&key, &messages, &sigs));
            let sig = ed25519_dalek::Signature::from_bytes(&sigs[i]);
            prop_assert!(key.verifying_key().verify_strict(&messages[i], &sig).is_err());
        }
    }
}
