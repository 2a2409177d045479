//! `make bench`: hashing, appends into the stored-hash layout, and proofs at
//! 1k, 1M and 10M leaves over an in-memory `HashReader`.

#![allow(missing_docs)] // criterion_group! generates undocumented functions.

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tlog::{
    append_leaves, leaf_hash, prove_consistency, prove_inclusion, tree_hash, verify_consistency,
    verify_inclusion, Hash, RightEdge,
};

/// A stored-hash layout of `n` leaves, built with the crate's own append.
fn build(n: u64) -> Vec<Hash> {
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mut stored = Vec::new();
    let mut size = 0u64;
    for chunk in leaves.chunks(4096) {
        let new = append_leaves(size, chunk, &stored).unwrap();
        stored.extend(new);
        size += chunk.len() as u64;
    }
    stored
}

fn hashing(c: &mut Criterion) {
    let data = [0u8; 1024];
    let mut g = c.benchmark_group("hash");
    g.throughput(Throughput::Elements(1));
    g.bench_function("leaf_hash_1KiB", |b| b.iter(|| leaf_hash(black_box(&data))));
    g.bench_function("leaf_hash_32B", |b| {
        b.iter(|| leaf_hash(black_box(&data[..32])))
    });
    g.finish();
}

fn appending(c: &mut Criterion) {
    let mut g = c.benchmark_group("append");
    let n = 100_000u64;
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    g.throughput(Throughput::Elements(n));
    g.sample_size(20);
    g.bench_function("100k_leaves_batches_of_256", |b| {
        b.iter_batched(
            Vec::new,
            |mut stored: Vec<Hash>| {
                let mut size = 0u64;
                for chunk in leaves.chunks(256) {
                    let new = append_leaves(size, chunk, &stored).unwrap();
                    stored.extend(new);
                    size += chunk.len() as u64;
                }
                stored
            },
            BatchSize::LargeInput,
        );
    });
    g.bench_function("100k_leaves_one_at_a_time", |b| {
        b.iter_batched(
            Vec::new,
            |mut stored: Vec<Hash>| {
                for (i, leaf) in leaves.iter().enumerate() {
                    let new = append_leaves(i as u64, std::slice::from_ref(leaf), &stored).unwrap();
                    stored.extend(new);
                }
                stored
            },
            BatchSize::LargeInput,
        );
    });
    g.finish();
}

fn proofs(c: &mut Criterion) {
    let mut g = c.benchmark_group("proof");
    for (name, n) in [("1k", 1_000u64), ("1M", 1_000_000), ("10M", 10_000_000)] {
        let stored = build(n);
        let root = tree_hash(n, &stored).unwrap();
        let index = n / 3 + 7;
        let old = n / 2 + 3;
        let old_root = tree_hash(old, &stored).unwrap();
        let leaf = leaf_hash(&index.to_be_bytes());
        let inc = prove_inclusion(index, n, &stored).unwrap();
        let con = prove_consistency(old, n, &stored).unwrap();
        g.bench_function(format!("inclusion_prove_{name}"), |b| {
            b.iter(|| prove_inclusion(black_box(index), n, &stored).unwrap())
        });
        let edge = RightEdge::new(n, &stored).unwrap();
        g.bench_function(format!("inclusion_prove_edge_{name}"), |b| {
            b.iter(|| edge.prove_inclusion(black_box(index), &stored).unwrap())
        });
        g.bench_function(format!("consistency_prove_edge_{name}"), |b| {
            b.iter(|| edge.prove_consistency(black_box(old), &stored).unwrap())
        });
        g.bench_function(format!("inclusion_verify_{name}"), |b| {
            b.iter(|| verify_inclusion(&leaf, index, n, black_box(&inc), &root).unwrap())
        });
        g.bench_function(format!("consistency_prove_{name}"), |b| {
            b.iter(|| prove_consistency(black_box(old), n, &stored).unwrap())
        });
        g.bench_function(format!("consistency_verify_{name}"), |b| {
            b.iter(|| verify_consistency(old, n, &old_root, &root, black_box(&con)).unwrap())
        });
        g.bench_function(format!("tree_hash_{name}"), |b| {
            b.iter(|| tree_hash(black_box(n), &stored).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, hashing, appending, proofs);
criterion_main!(benches);
