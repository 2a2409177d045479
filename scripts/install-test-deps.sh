#!/usr/bin/env bash
# Installs what the tests beyond cargo need, only if missing or changed:
#   - a Python virtual environment (~/.cache/tollgate/venv) with the pinned
#     packages of tests/requirements.txt under tests/constraints.txt: the
#     official MCP SDK (client and a test server), pytest, ruff, mypy;
#   - the npm packages of tests/mcp/npm (package-lock.json: the reference MCP
#     server, server-everything, and the official MCP conformance suite) into
#     ~/.cache/tollgate/npm, with `npm ci`;
#   - the TypeScript SDK's pinned dependencies (sdk/typescript/package-lock.json:
#     the noble libraries, and for its tests TypeScript, ESLint, Express and
#     the Vercel AI SDK) into sdk/typescript/node_modules, with `npm ci`;
#   - python3-venv, nodejs, npm, postgresql (the server binaries: the
#     ledger's PostgreSQL tests start a throwaway cluster) and chromium
#     (Debian's: the browser the verifier is tested in) through apt if they
#     are missing.
# Idempotent: a stamp of the pinned files' digest skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="$HOME/.cache/tollgate"
venv="$cache/venv"
npm_dir="$cache/npm"

missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing system packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y --no-install-recommends "${missing[@]}" \
    || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
fi

stamp() { cat "$@" | sha256sum | cut -c1-16; }

want="$(stamp tests/requirements.txt tests/constraints.txt)"
if [ "$(cat "$venv/.tollgate-stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the Python test packages into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    -r tests/requirements.txt -c tests/constraints.txt
  echo "$want" > "$venv/.tollgate-stamp"
fi

want="$(stamp tests/mcp/npm/package.json tests/mcp/npm/package-lock.json)"
if [ "$(cat "$npm_dir/.tollgate-stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the npm test servers into $npm_dir"
  mkdir -p "$npm_dir"
  cp tests/mcp/npm/package.json tests/mcp/npm/package-lock.json "$npm_dir/"
  (cd "$npm_dir" && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$npm_dir/.tollgate-stamp"
fi

sdk=sdk/typescript
want="$(stamp $sdk/package.json $sdk/package-lock.json)"
if [ "$(cat "$sdk/node_modules/.tollgate-stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the TypeScript SDK's npm packages into $sdk/node_modules"
  (cd "$sdk" && npm ci --no-audit --no-fund --silent)
  echo "$want" > "$sdk/node_modules/.tollgate-stamp"
fi
