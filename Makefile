# One profile (release) for run, test, lint and bench, so nothing is compiled
# twice, and one target directory outside the clone that later builds and CI
# on the same machine reuse. Override with CARGO_TARGET_DIR=... make test.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tollgate/target
# RocksDB's C++ is built once per machine by scripts/build-rocksdb.sh and
# linked from here, so cargo never recompiles it (see ARCHITECTURE.md).
export ROCKSDB_LIB_DIR ?= $(HOME)/.cache/tollgate/rocksdb-11.8.1
export ROCKSDB_STATIC = 1
CARGO ?= cargo
# The tests beyond cargo: a Python virtual environment and npm packages,
# installed (pinned) by scripts/install-test-deps.sh.
VENV = $(HOME)/.cache/tollgate/venv
NPM_DIR = $(HOME)/.cache/tollgate/npm

.PHONY: deps test-deps run test demo bench lint fmt fuzz crashloop

## deps: install missing system packages (compiler, libclang), build RocksDB once
deps:
	@./scripts/install-deps.sh
	@./scripts/build-rocksdb.sh

## test-deps: the Python packages and npm test servers the tests use
test-deps:
	@./scripts/install-test-deps.sh

## run: build and start the gate on its embedded default (./data, keys,
## admin token and the demo caller generated on first start, the example
## Rego policy and surface contract active, http://127.0.0.1:8080). Ctrl-C
## stops it gracefully.
## It builds as `make test` does (tests included, not run), so the two share
## one build: cargo resolves dependency features differently for a plain
## build, which would recompile much of the workspace between them.
run: deps
	$(CARGO) test --release --workspace --no-run --quiet
	TOLLGATE_EXAMPLE_CONTRACT=true $(CARGO_TARGET_DIR)/release/tollgate serve

## demo: a gate, a witness and a payments service behind the surface
## verifier; a scripted agent calls tools through the SDK's guard, a buggy
## fallback is refused, then proofcheck verifies every receipt and audits
## the log; a 20,000 transfer is left waiting for approval. Exit 0 only if
## every step did what it claims. On a terminal the gate then stays up (until
## Enter) to try the portal: approve that transfer, verify a saved answer.
demo: deps
	$(CARGO) test --release --workspace --no-run --quiet
	$(CARGO_TARGET_DIR)/release/tollgate-demo

## test: the whole suite: every crate's tests, the Python SDK against the
## real gate, the MCP gateway driven by the official Python SDK against
## real MCP servers (pytest), then the TypeScript SDK (node --test: the
## real gate, Express, the Vercel AI SDK, headless Chromium). pytest keeps
## the temporary directories (gates' data, GBs) of failed tests only.
test: deps test-deps
	$(CARGO) test --release --workspace
	TOLLGATE_BIN_DIR=$(CARGO_TARGET_DIR)/release PYTHONPATH=sdk/python/src \
	  $(VENV)/bin/python -m pytest -q -p no:cacheprovider -o tmp_path_retention_policy=failed sdk/python/tests
	TOLLGATE_BIN_DIR=$(CARGO_TARGET_DIR)/release TOLLGATE_NPM_DIR=$(NPM_DIR) \
	  $(VENV)/bin/python -m pytest -q -p no:cacheprovider -o tmp_path_retention_policy=failed tests/mcp
	cd sdk/typescript && TOLLGATE_BIN_DIR=$(CARGO_TARGET_DIR)/release npm test --silent

## bench: criterion benchmarks, the ledger's append and proof tables (RocksDB
## and PostgreSQL), the gate load generator (one gate on RocksDB, again with
## Rego unbounded (eval_memory_mb = 0) and all in worker processes
## (eval_isolation = process), Cerbos 0.51 under the same load, the
## side by side with wrk (the gate three ways and Cerbos, three rounds), then one,
## two and three gates sharing a PostgreSQL log), proofcheck's audit
## throughput, then the latency the MCP gateway adds per tools/call
bench: deps test-deps
	@./scripts/install-bench-deps.sh
	$(CARGO) bench --workspace
	$(CARGO) build --release --workspace --all-targets
	$(CARGO_TARGET_DIR)/release/tollgate-bench ledger
	$(CARGO_TARGET_DIR)/release/tollgate-bench ledger --store postgres --count 20000 --appenders 1,16,256
	$(CARGO_TARGET_DIR)/release/tollgate-bench proofs
	$(CARGO_TARGET_DIR)/release/tollgate-bench gate
	@echo "the same gate evaluating Rego in its own process, unbounded (eval_memory_mb = 0):"
	TOLLGATE_EVAL_MEMORY_MB=0 $(CARGO_TARGET_DIR)/release/tollgate-bench gate --connections 64 --rate 0
	@echo "the same gate evaluating all of Rego in worker processes (eval_isolation = process):"
	TOLLGATE_EVAL_ISOLATION=process $(CARGO_TARGET_DIR)/release/tollgate-bench gate --connections 64 --rate 0
	$(CARGO_TARGET_DIR)/release/tollgate-bench cerbos
	$(CARGO_TARGET_DIR)/release/tollgate-bench wrk --rounds 3
	for n in 1 2 3; do \
	  $(CARGO_TARGET_DIR)/release/tollgate-bench gate --log-store postgres --gates $$n \
	    --connections 64 --rate 0 || exit 1; \
	done
	./scripts/bench-audit.sh
	TOLLGATE_BIN_DIR=$(CARGO_TARGET_DIR)/release TOLLGATE_NPM_DIR=$(NPM_DIR) \
	  $(VENV)/bin/python tests/mcp/bench_latency.py

## fuzz: every cargo-fuzz target (fuzz/) for FUZZ_SECONDS each (default 60)
## from its checked-in seeds; prints executions per target. cargo-fuzz is
## installed once, pinned, under ~/.cache/tollgate/tools. `make test` builds
## the targets and runs every seed through them, without a fuzzer.
FUZZ_SECONDS ?= 60
CARGO_FUZZ_VERSION = 0.13.2
TOOLS = $(HOME)/.cache/tollgate/tools
fuzz: deps
	@$(TOOLS)/bin/cargo-fuzz --version 2>/dev/null | grep -q " $(CARGO_FUZZ_VERSION)$$" \
	  || $(CARGO) install cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked --root $(TOOLS)
	./scripts/fuzz.sh $(FUZZ_SECONDS)

## crashloop: SIGKILL the real gate under load from concurrent clients
## CRASHLOOP_CYCLES times (default 20; `make test` runs 3), then check that
## nothing acknowledged was lost and audit the whole log with proofcheck.
CRASHLOOP_CYCLES ?= 20
crashloop: deps
	CRASHLOOP_CYCLES=$(CRASHLOOP_CYCLES) $(CARGO) test --release -p tollgate --test crashloop -- --nocapture

## lint: rustfmt and clippy (warnings are errors); ruff and mypy --strict for
## the Python; tsc --noEmit (strict), the verifier type-checked without
## Node's types (it must run in browsers) and ESLint for the TypeScript
lint: deps test-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	$(VENV)/bin/ruff check tests sdk/python scripts
	$(VENV)/bin/ruff format --check tests sdk/python scripts
	cd tests/mcp && $(VENV)/bin/mypy --strict --cache-dir /dev/null .
	$(VENV)/bin/mypy --strict --cache-dir /dev/null scripts/perf-stages.py
	cd sdk/python && MYPYPATH=src $(VENV)/bin/mypy --strict --cache-dir /dev/null src tests
	cd sdk/typescript && npx tsc -p tsconfig.test.json --noEmit && npx tsc -p tsconfig.verify.json \
	  && npx eslint .

## fmt: format the code
fmt:
	$(CARGO) fmt --all
