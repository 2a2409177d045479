#!/usr/bin/env bash
# Installs what `make bench` needs beyond the tests' packages, only if
# missing or changed: Cerbos 0.51 (bench/cerbos/package.json and its
# package-lock.json: the `cerbos` npm package and its Linux x64 binary) into
# ~/.cache/tollgate/cerbos, the peer `tollgate-bench cerbos` measures the gate
# against. (`npm install`, not `npm ci`: the lock file holds only this
# platform's optional binary package, which `npm ci` refuses.)
# Also wrk (Debian's package), the load generator `tollgate-bench wrk` drives
# the gate and Cerbos with, side by side.
# Idempotent: a stamp of the pinned files' digest skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (the side-by-side's load generator)"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends wrk \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends wrk; }
fi
dir="$HOME/.cache/tollgate/cerbos"
stamp() { cat "$@" | sha256sum | cut -c1-16; }
want="$(stamp bench/cerbos/package.json bench/cerbos/package-lock.json)"
if [ "$(cat "$dir/.tollgate-stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Cerbos (the benchmark's peer) into $dir"
  mkdir -p "$dir"
  cp bench/cerbos/package.json bench/cerbos/package-lock.json "$dir/"
  (cd "$dir" && npm install --no-audit --no-fund --silent)
  echo "$want" > "$dir/.tollgate-stamp"
fi
