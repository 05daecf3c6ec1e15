#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, without
# cargo-fuzz: builds with the sanitizer-coverage flags cargo-fuzz uses (stable
# toolchain, libFuzzer from libfuzzer-sys) and keeps corpora under
# $FUZZ_WORK (default /tmp/evproto-fuzz). Exits non-zero on the first crash.
# usage: fuzz/run.sh [SECONDS] [target...]
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}; shift || true
work=${FUZZ_WORK:-/tmp/evproto-fuzz}
triple=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="$work/target"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$triple"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(ls fuzz_targets | sed 's/\.rs$//')
for t in "${targets[@]}"; do
  mkdir -p "$work/corpus/$t" "$work/artifacts/$t"
  seeds=(); [ -d "seeds/$t" ] && seeds=("seeds/$t")
  echo "== $t ($secs s)"
  "$CARGO_TARGET_DIR/$triple/release/$t" -max_total_time="$secs" -rss_limit_mb=2048 \
    -artifact_prefix="$work/artifacts/$t/" "$work/corpus/$t" "${seeds[@]}" 2>&1 | grep -E "DONE|SUMMARY|panicked|crash-" || true
  if ls "$work/artifacts/$t"/crash-* >/dev/null 2>&1; then
    echo "crash in $t: $(ls "$work/artifacts/$t"/crash-*)"; exit 1
  fi
done
