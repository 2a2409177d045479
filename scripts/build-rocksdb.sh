#!/usr/bin/env bash
# Builds RocksDB's static library once per machine and keeps it in
# $ROCKSDB_LIB_DIR (default ~/.cache/tollgate/rocksdb-<version>). The Makefile
# points librocksdb-sys at it (ROCKSDB_LIB_DIR, ROCKSDB_STATIC), so cargo never
# compiles RocksDB's C++ inside the workspace, whose host-dependency features
# change whenever a crate is added. No-op when the library is there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
want=$(sed -n 's/^librocksdb-sys = { version = "=\([0-9.]*\)".*/\1/p' "$here/rocksdb/Cargo.toml")
have=$(grep -A1 '^name = "librocksdb-sys"' "$root/Cargo.lock" | sed -n 's/^version = "\([0-9.]*\)+.*/\1/p')
if [ "$want" != "$have" ]; then
  echo "error: Cargo.lock uses librocksdb-sys $have but scripts/rocksdb builds $want; update scripts/rocksdb/Cargo.toml" >&2
  exit 1
fi
lib_dir="${ROCKSDB_LIB_DIR:-$HOME/.cache/tollgate/rocksdb-11.8.1}"
if [ -f "$lib_dir/librocksdb.a" ]; then
  exit 0
fi
echo "building RocksDB's C++ library once for this machine (about 30 minutes on 2 cores) into $lib_dir"
build="$lib_dir/build"
mkdir -p "$lib_dir"
# The library is per machine, so it is built for this CPU: with SSE4.2 RocksDB
# computes its CRC32C in hardware (seen here: the portable build spends ~5% of
# an append-heavy profile in software CRC).
env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC CARGO_TARGET_DIR="$build" RUSTFLAGS="-C target-cpu=native" \
  cargo build --release --locked --manifest-path "$here/rocksdb/Cargo.toml"
lib=$(ls -t "$build"/release/build/librocksdb-sys-*/out/librocksdb.a | head -n 1)
cp "$lib" "$lib_dir/librocksdb.a.tmp"
strip --strip-debug "$lib_dir/librocksdb.a.tmp" 2>/dev/null || true
mv "$lib_dir/librocksdb.a.tmp" "$lib_dir/librocksdb.a"
rm -rf "$build"
echo "RocksDB library ready: $lib_dir/librocksdb.a"
