#!/usr/bin/env bash
# Installs what `make bench` needs beyond the tests' packages, only if
# missing or changed: Cerbos 0.51 (bench/cerbos/package.json and its
# package-lock.json: the `cerbos` npm package and its Linux x64 binary) into
# ~/.cache/tollgate/cerbos, the peer `tollgate-bench cerbos` measures the gate
# against. (`npm install`, not `npm ci`: the lock file holds only this
# platform's optional binary package, which `npm ci` refuses.)
# Idempotent: a stamp of the pinned files' digest skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
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
