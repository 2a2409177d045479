# One profile (release) for run, test, lint and bench, so nothing is compiled
# twice, and one target directory outside the clone that later builds and CI
# on the same machine reuse. Override with CARGO_TARGET_DIR=... make test.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/tollgate/target
CARGO ?= cargo

.PHONY: deps test bench lint fmt

## deps: install missing system packages (compiler, libclang)
deps:
	@./scripts/install-deps.sh

## test: the whole suite
test: deps
	$(CARGO) test --release --workspace

## bench: criterion benchmarks (numbers in target/criterion)
bench: deps
	$(CARGO) bench --workspace

## lint: rustfmt and clippy, warnings are errors
lint: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all
