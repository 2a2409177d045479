//! `tollgate-bench ledger` and `tollgate-bench proofs`: the ledger's load
//! generators (the crash test's child process lives with the crash test).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ledger::{Ledger, Options};
use note::{KeyType, SignerKey};

/// `tollgate-bench ledger` arguments.
#[derive(clap::Args)]
pub(crate) struct LedgerArgs {
    /// Scratch directory (a fresh RocksDB per run is made inside).
    #[arg(long, default_value = "/tmp/ledger-bench")]
    dir: PathBuf,
    /// Appends per run.
    #[arg(long, default_value_t = 50_000)]
    count: u64,
    /// Leaf size in bytes.
    #[arg(long, default_value_t = 1024)]
    leaf_size: usize,
    /// Batch sizes (N) to try.
    #[arg(long, value_delimiter = ',', default_value = "1,64,256,1024")]
    batch: Vec<usize>,
    /// Concurrent appenders to try.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256,1024")]
    appenders: Vec<usize>,
    /// Batch wait (T) in microseconds.
    #[arg(long, default_value_t = 200)]
    wait_us: u64,
    /// Newest stored hashes kept in memory (Options::recent_hashes).
    #[arg(long, default_value_t = ledger::DEFAULT_RECENT_HASHES)]
    recent_hashes: usize,
    /// The store: rocksdb (under --dir) or postgres (a throwaway cluster
    /// this run starts, a fresh database per row).
    #[arg(long, default_value = "rocksdb", value_parser = ["rocksdb", "postgres"])]
    store: String,
}

/// `tollgate-bench proofs` arguments.
#[derive(clap::Args)]
pub(crate) struct ProofsArgs {
    /// Scratch directory.
    #[arg(long, default_value = "/tmp/ledger-proofs")]
    dir: PathBuf,
    /// Largest size to measure.
    #[arg(long, default_value_t = 10_000_000)]
    max: u64,
    /// Random proofs of each kind measured per size (raise it to profile).
    #[arg(long, default_value_t = 2000)]
    samples: usize,
}

const ORIGIN: &str = "bench.tollgate.invalid/log";

/// Appender threads filling the log for `proofs`: enough to keep batches
/// large, so the fill is bounded by the sequencer rather than by fsyncs.
const FILLERS: u64 = 512;

/// `tollgate-bench ledger`.
pub(crate) fn bench(args: LedgerArgs) {
    let options = Options {
        batch_wait: Duration::from_micros(args.wait_us),
        recent_hashes: args.recent_hashes,
        ..Options::default()
    };
    let pg = (args.store == "postgres").then(testkit::Postgres::start);
    run_bench(
        &args.dir,
        pg.as_ref(),
        args.count,
        args.leaf_size,
        &args.batch,
        &args.appenders,
        &options,
    );
}

/// `tollgate-bench proofs`.
pub(crate) fn proofs(args: ProofsArgs) {
    run_proofs(&args.dir, args.max, args.samples);
}

fn fresh(dir: &Path) -> PathBuf {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("scratch dir");
    dir.to_path_buf()
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[allow(clippy::too_many_arguments)]
fn run_bench(
    dir: &Path,
    pg: Option<&testkit::Postgres>,
    count: u64,
    leaf_size: usize,
    batches: &[usize],
    appenders: &[usize],
    options: &Options,
) {
    let wait_us = options.batch_wait.as_micros();
    let store = if pg.is_some() {
        "PostgreSQL (a local throwaway cluster, synchronous commit)"
    } else {
        "RocksDB, fsync on"
    };
    println!("ledger append benchmark: {count} appends of {leaf_size}-byte leaves per run, {store}, T = {wait_us} µs");
    println!(
        "{:>6} {:>9} {:>12} {:>10} {:>10} {:>10} {:>12} {:>14}",
        "N",
        "appenders",
        "appends/s",
        "p50 µs",
        "p99 µs",
        "avg batch",
        "disk B/leaf",
        "write µs/batch"
    );
    for &n in batches {
        for &c in appenders {
            let path = fresh(&dir.join(format!("n{n}-c{c}")));
            let key = SignerKey::generate(ORIGIN, KeyType::Ed25519).expect("key");
            let options = Options {
                batch_max: n,
                ..options.clone()
            };
            let ledger = match pg {
                Some(pg) => {
                    Ledger::open_postgres(&pg.database(&format!("bench_n{n}_c{c}")), key, options)
                }
                None => Ledger::open(&path, key, options),
            }
            .expect("open");
            let next = Arc::new(AtomicU64::new(0));
            let batches_seen = Arc::new(AtomicU64::new(0));
            // Each append's batch's write time (insert to durable), over
            // its batch's length: summed, the write time per batch.
            let write_ns = Arc::new(AtomicU64::new(0));
            // Appenders are tasks on a two-worker tokio runtime, as the gate's
            // request handlers will be: many outstanding appends, few threads.
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .expect("runtime");
            let start = Instant::now();
            let lat: Vec<Duration> = rt.block_on(async {
                let tasks: Vec<_> = (0..c)
                    .map(|_| {
                        let (ledger, next, batches_seen, write_ns) = (
                            ledger.clone(),
                            next.clone(),
                            batches_seen.clone(),
                            write_ns.clone(),
                        );
                        tokio::spawn(async move {
                            let mut lat = Vec::new();
                            loop {
                                let i = next.fetch_add(1, Ordering::Relaxed);
                                if i >= count {
                                    return lat;
                                }
                                let mut leaf = vec![0x5a; leaf_size];
                                leaf[..8].copy_from_slice(&i.to_be_bytes());
                                let t = Instant::now();
                                let a = ledger
                                    .append(leaf, i.to_be_bytes().to_vec())
                                    .await
                                    .expect("append");
                                lat.push(t.elapsed());
                                batches_seen.fetch_add(a.batch_len as u64, Ordering::Relaxed);
                                write_ns.fetch_add(
                                    (a.write_time.as_nanos() / a.batch_len.max(1) as u128) as u64,
                                    Ordering::Relaxed,
                                );
                            }
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.expect("appender task"));
                }
                all
            });
            let elapsed = start.elapsed();
            let mut lat = lat;
            lat.sort();
            // Each append saw its batch's length; the mean of that over appends
            // is the batch-size-weighted mean batch length.
            let avg_batch = batches_seen.load(Ordering::Relaxed) as f64 / count as f64;
            // Σ over appends of write/len = Σ over batches of write.
            let batches = count as f64 / avg_batch.max(1.0);
            let write_per_batch = write_ns.load(Ordering::Relaxed) as f64 / 1e3 / batches.max(1.0);
            drop(ledger);
            let disk = if pg.is_some() {
                f64::NAN
            } else {
                dir_bytes(&path) as f64 / count as f64
            };
            println!(
                "{:>6} {:>9} {:>12.0} {:>10} {:>10} {:>10.1} {:>12.0} {:>14.0}",
                n,
                c,
                count as f64 / elapsed.as_secs_f64(),
                pct(&lat, 0.50).as_micros(),
                pct(&lat, 0.99).as_micros(),
                avg_batch,
                disk,
                write_per_batch
            );
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn run_proofs(dir: &Path, max: u64, samples: usize) {
    let path = fresh(dir);
    let key = SignerKey::generate(ORIGIN, KeyType::Ed25519).expect("key");
    let options = Options {
        batch_max: 4096,
        batch_wait: Duration::from_millis(2),
        // Every stored hash of a 10M-leaf log (20M hashes, 640 MB) stays in memory.
        recent_hashes: 1 << 25,
    };
    let ledger = Ledger::open(&path, key, options).expect("open");
    println!(
        "proof latency (32-byte leaves; newest 2^25 stored hashes in memory, the rest from RocksDB), \
         {samples} random proofs per size, after compaction"
    );
    println!(
        "{:>10} {:>12} {:>12} {:>12} {:>14} {:>14} {:>14}",
        "size",
        "incl p50 µs",
        "incl p99 µs",
        "incl hashes",
        "consist p50 µs",
        "consist p99 µs",
        "consist hashes"
    );
    let mut size = 0u64;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move |m: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % m
    };
    let mut targets: Vec<u64> = [1_000, 1_000_000, 10_000_000]
        .into_iter()
        .filter(|&t| t <= max)
        .collect();
    targets.reverse();
    while let Some(&target) = targets.last() {
        std::thread::scope(|s| {
            for t in 0..FILLERS {
                let ledger = &ledger;
                s.spawn(move || {
                    let mut i = size + t;
                    while i < target {
                        ledger
                            .append_blocking(i.to_be_bytes().repeat(4), i.to_be_bytes().to_vec())
                            .expect("append");
                        i += FILLERS;
                    }
                });
            }
        });
        size = target;
        assert_eq!(ledger.latest().checkpoint.size, size);
        // Measure reads of a settled store, not reads racing the fill's compactions.
        ledger.wait_for_compaction().expect("compaction");
        let mut inc = Vec::new();
        let mut con = Vec::new();
        // Proof lengths: the work grows with them (log2 of the size), so
        // latency per hash shows whether anything else grows with the log.
        let (mut inc_hashes, mut con_hashes) = (0, 0);
        for _ in 0..samples {
            let i = rand(size);
            let t = Instant::now();
            let proof = ledger.inclusion_proof(i, size).expect("proof");
            inc.push(t.elapsed());
            inc_hashes += proof.len();
            let old = 1 + rand(size);
            let t = Instant::now();
            let proof = ledger.consistency_proof(old, size).expect("proof");
            con.push(t.elapsed());
            con_hashes += proof.len();
        }
        inc.sort();
        con.sort();
        println!(
            "{:>10} {:>12.2} {:>12.2} {:>12.1} {:>14.2} {:>14.2} {:>14.1}",
            size,
            pct(&inc, 0.5).as_secs_f64() * 1e6,
            pct(&inc, 0.99).as_secs_f64() * 1e6,
            inc_hashes as f64 / samples as f64,
            pct(&con, 0.5).as_secs_f64() * 1e6,
            pct(&con, 0.99).as_secs_f64() * 1e6,
            con_hashes as f64 / samples as f64
        );
        targets.pop();
    }
    println!(
        "disk bytes per leaf at {size}: {:.0}",
        dir_bytes(&path) as f64 / size as f64
    );
}
