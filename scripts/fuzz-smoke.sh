#!/usr/bin/env bash
# Short libFuzzer run of every cargo-fuzz target in fuzz/; exits non-zero on the first crash,
# timeout or out-of-memory. CI runs it as is; a long run is the same script with larger limits
# (the run recorded in docs/benchmarks.md used FUZZ_RUNS=-1 FUZZ_SECONDS=120).
#   FUZZ_RUNS      executions per target, -1 for no limit  (default 20000)
#   FUZZ_SECONDS   wall-clock limit per target              (default 30)
#   FUZZ_TARGETS   space-separated subset                    (default: all)
# Needs a nightly toolchain (libFuzzer's instrumentation); cargo-fuzz is installed into
# ~/.cargo/bin when missing, so a CI cache of that directory keeps it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
: "${FUZZ_RUNS:=20000}" "${FUZZ_SECONDS:=30}"

# No toolchain can be downloaded on the project's machines: without nightly the smoke is skipped,
# loudly; the core's property tests over arbitrary input still run on stable.
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz smoke SKIPPED: no nightly toolchain on this machine (cargo-fuzz needs one)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}
cargo +nightly fuzz build -O
for t in $targets; do
  mkdir -p "corpus/$t"
  seeds=()
  [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "== $t"
  # -timeout: one input taking 10 s is a finding, not patience.
  cargo +nightly fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- \
    -runs="$FUZZ_RUNS" -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1
done
echo "fuzz smoke: no crash in:" $targets
