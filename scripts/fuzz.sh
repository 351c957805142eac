#!/usr/bin/env bash
# Fuzz one parser target (or `all`) for SECONDS each with cargo-fuzz / libFuzzer, starting from the
# committed seed corpus fuzz/corpus/TARGET (libFuzzer's own finds go to fuzz/work/TARGET, crashes
# to fuzz/artifacts/TARGET). Prints one summary line per target: executions, seconds, result.
#   scripts/fuzz.sh TARGET SECONDS      (just fuzz TARGET SECONDS)
#   FUZZ_RUNS=10000000 scripts/fuzz.sh TARGET SECONDS   (stop at that many executions too)
# cargo-fuzz needs a nightly compiler: the nightly toolchain when rustup has one, else the stable
# one with RUSTC_BOOTSTRAP=1. No sanitizer: the code under test is safe Rust, and libFuzzer still
# catches every panic, hang (-timeout) and oversized allocation (-rss_limit_mb / -malloc_limit_mb).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi
if [ "$target" = all ]; then
  targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^genolens-fuzz$')
  # FUZZ_SKIP="a b": targets left out of `all` (an open finding being fixed).
  for skip in ${FUZZ_SKIP:-}; do targets=$(echo "$targets" | grep -v "^$skip\$"); done
else
  targets=$target
fi
"${fuzz[@]}" build --sanitizer none
status=0
for t in $targets; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  log=$(mktemp)
  started=$SECONDS
  if "${fuzz[@]}" run --sanitizer none "$t" "fuzz/work/$t" "fuzz/corpus/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    result="no finding"
  else
    result="FINDING (see fuzz/artifacts/$t/ and the log below)"
    tail -40 "$log"
    status=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  took=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
  # A finding stops libFuzzer before its "Done" line: then the wall time (including the build check).
  echo "fuzz $t: ${runs:-?} executions in ${took:-$((SECONDS - started))} s, $result"
  rm -f "$log"
done
exit $status
