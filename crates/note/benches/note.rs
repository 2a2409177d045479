//! `make bench`: note signing and verification, checkpoint and proof-bundle
//! verification under a policy with two witnesses.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use note::{sign_checkpoint, Checkpoint, KeyType, Note, Policy, ProofBundle, SignerKey};
use tlog::{append_leaves, leaf_hash, prove_inclusion, tree_hash, Hash};

fn notes(c: &mut Criterion) {
    let key = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
    let text = format!("{}\n", "x".repeat(600));
    let mut g = c.benchmark_group("note");
    g.bench_function("sign_600B", |b| {
        b.iter(|| {
            let mut n = Note::new(black_box(text.clone())).unwrap();
            n.sign(&key).unwrap();
            n
        })
    });
    let mut n = Note::new(text.clone()).unwrap();
    n.sign(&key).unwrap();
    let signed = n.to_text();
    let known = [key.verifier().clone()];
    g.bench_function("parse_and_verify_600B", |b| {
        b.iter(|| {
            Note::parse(black_box(signed.as_bytes()))
                .unwrap()
                .verify(&known)
                .unwrap()
                .len()
        })
    });
    g.finish();
}

fn bundles(c: &mut Criterion) {
    let log = SignerKey::generate("example.com/log", KeyType::Ed25519).unwrap();
    let w1 = SignerKey::generate("w1.example", KeyType::CosignatureV1).unwrap();
    let w2 = SignerKey::generate("w2.example", KeyType::CosignatureV1).unwrap();
    let policy = Policy::parse(&format!(
        "log {}\nwitness a {}\nwitness b {}\ngroup g 2 a b\nquorum g\n",
        log.verifier(),
        w1.verifier(),
        w2.verifier()
    ))
    .unwrap();
    let n = 1_000_000u64;
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let stored = append_leaves(0, &leaves, &Vec::new()).unwrap();
    let cp = Checkpoint::new("example.com/log", n, tree_hash(n, &stored).unwrap());
    let mut note = sign_checkpoint(&cp, &log).unwrap();
    note.add_cosignature(&w1, 1_700_000_000).unwrap();
    note.add_cosignature(&w2, 1_700_000_000).unwrap();
    let bundle = ProofBundle {
        extra: None,
        index: 123_456,
        proof: prove_inclusion(123_456, n, &stored).unwrap(),
        checkpoint: note.to_text(),
    }
    .to_text();
    let leaf = leaves[123_456];
    c.bench_function("tlog_proof_parse_and_verify_1M_two_witnesses", |b| {
        b.iter(|| {
            ProofBundle::parse(black_box(&bundle))
                .unwrap()
                .verify(&leaf, &policy)
                .unwrap()
        })
    });
}

/// 1024 receipt-sized signatures by one key: ed25519-dalek's general batch
/// (2n + 1 points) against the one-key batch (n + 2 points).
fn batches(c: &mut Criterion) {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[7; 32]);
    let messages: Vec<Vec<u8>> = (0..1024)
        .map(|i| format!("{i:0600}\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let sigs: Vec<ed25519_dalek::Signature> = messages.iter().map(|m| key.sign(m)).collect();
    let raw: Vec<[u8; 64]> = sigs
        .iter()
        .map(ed25519_dalek::Signature::to_bytes)
        .collect();
    let keys = vec![key.verifying_key(); 1024];
    let mut g = c.benchmark_group("batch_1024");
    g.sample_size(20);
    g.bench_function("ed25519_dalek_verify_batch", |b| {
        b.iter(|| ed25519_dalek::verify_batch(black_box(&refs), &sigs, &keys).unwrap())
    });
    g.bench_function("note_verify_batch_one_key", |b| {
        b.iter(|| {
            assert!(note::verify_batch(
                &key.verifying_key(),
                black_box(&refs),
                &raw
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, notes, bundles, batches);
criterion_main!(benches);
