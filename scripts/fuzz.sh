#!/usr/bin/env bash
# The long fuzz run: every cargo-fuzz target in fuzz/ for a fixed time each.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]
#
# Builds the targets once (libFuzzer, AddressSanitizer, release with debug
# assertions), then runs each for the given time (default 60 s) starting
# from its checked-in seeds (fuzz/corpus/<target>) plus what earlier runs
# found (fuzz/corpus-grown/<target>, not committed). Prints one summary line
# per target and exits non-zero if any target crashed, leaked, ran out of
# memory or hung; the input is left in fuzz/artifacts/<target>/. Copy it to
# fuzz/regressions/<target>/ once fixed so `cargo test -p kaji-fuzz` keeps
# replaying it.
#
# Uses nightly when rustup has it, otherwise the stable toolchain with
# RUSTC_BOOTSTRAP=1. Installs cargo-fuzz when missing.
set -euo pipefail

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [seconds-per-target] [target...]" >&2; exit 2 ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=()
  for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

# One build for every target; `run` below then finds them up to date.
"${fuzz[@]}" build

mkdir -p target/logs
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-grown/$t" "artifacts/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  log="target/logs/$t.log"
  echo "fuzzing $t for ${seconds}s (log: fuzz/$log)" >&2
  status=0
  # The outer timeout only catches a fuzzer that ignores -max_total_time.
  timeout --kill-after=30 "$((seconds + 300))" \
    "${fuzz[@]}" run "$t" "corpus-grown/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  after=$(find "artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    failed=1
    grep -E '^(==[0-9]+==ERROR|thread .* panicked|SUMMARY)' "$log" | head -5 >&2 || true
  fi
  summary+=("$(printf '%-24s %6ss  runs %-10s crashes %s  exit %s' "$t" "$seconds" "${execs:-?}" "$crashes" "$status")")
done

echo
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "FAILED: inputs are in fuzz/artifacts/<target>/; logs in fuzz/target/logs/" >&2
  exit 1
fi
