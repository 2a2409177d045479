#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time and
# prints, per target, the executions, the corpus it reached and the result.
#   usage: scripts/fuzz.sh [seconds-per-target] [target ...]
# Each target starts from its checked-in seeds (fuzz/corpus/<target>, read
# only) and grows a working corpus outside the clone
# ($HOME/.cache/tollgate/fuzz-corpus/<target>), kept between runs. Built with
# sanitizer none, so the stable toolchain builds it; in a target directory of
# its own ($HOME/.cache/tollgate/fuzz-target), since its compiler flags differ
# from the workspace build's. A finding stops that target: the input is kept
# under fuzz/artifacts/<target>/ and the script exits 1 at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
cargo_fuzz="${CARGO_FUZZ:-$HOME/.cache/tollgate/tools/bin/cargo-fuzz}"
target_dir="$HOME/.cache/tollgate/fuzz-target"
work="$HOME/.cache/tollgate/fuzz-corpus"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
flags=(--fuzz-dir fuzz --sanitizer none --release --target-dir "$target_dir")
triple="$(rustc -vV | sed -n 's/^host: //p')"
"$cargo_fuzz" build "${flags[@]}"
failed=0
printf '%-22s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  log="$(mktemp)"
  mkdir -p "fuzz/artifacts/$t"
  # The binary cargo fuzz built above, run directly (cargo fuzz run would
  # build again, and a tree edited meanwhile would fail that build).
  if "$target_dir/$triple/release/$t" "$work/$t" "fuzz/corpus/$t" \
      -artifact_prefix="fuzz/artifacts/$t/" -max_total_time="$seconds" -timeout=10 \
      -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="FOUND: see fuzz/artifacts/$t/ and $log"
    failed=1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  corpus="$(find "$work/$t" -type f | wc -l)"
  printf '%-22s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result"
  [ "$result" = ok ] && rm -f "$log"
done
exit "$failed"
