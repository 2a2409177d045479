#!/usr/bin/env bash
# Installs the system packages the build needs, only if they are missing.
# Idempotent and quiet when everything is present; safe to run before every build.
#   - a C/C++ compiler and make: librocksdb-sys compiles RocksDB's C++;
#   - libclang: bindgen (librocksdb-sys) generates the RocksDB bindings with it.
set -euo pipefail

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
# bindgen loads libclang.so at run time (rocksdb's bindgen-runtime feature).
# It looks for libclang.so, libclang-<N>.so or libclang.so.<N>; libclang-cpp
# (which LLVM's own packages pull in) is a different library and does not do.
if ! ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' \
   && ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed. Install Rust with rustup (https://rustup.rs) and re-run." >&2
  exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing missing system packages: ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: no apt-get here; install these packages with your package manager: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${missing[@]}" \
  || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
