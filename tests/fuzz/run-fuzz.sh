#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, -Dfuzz=true) in their own build
# directory and runs each for FUZZ_SECONDS (default 60), starting from the
# generated seed corpus and the committed regression inputs. A crash stops
# with the input saved under $BUILD/artifacts/<target>/: add it to
# tests/fuzz/regressions/<target>/ once the bug is fixed.
#
# usage: tests/fuzz/run-fuzz.sh [target...] (default: request grpc server log)
# env:   FUZZ_SECONDS=60 FUZZ_BUILD=build-fuzz FUZZ_JOBS=1
#        FUZZ_SECONDS_LOG (default: FUZZ_SECONDS, at most 30): the log
#        formatter is small and fast, half a minute covers it
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${FUZZ_BUILD:-build-fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-60}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request grpc server log journal)
LOG_SECONDS=${FUZZ_SECONDS_LOG:-$((SECONDS_EACH < 30 ? SECONDS_EACH : 30))}

if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dfuzz=true -Db_lundef=false \
    --buildtype=debugoptimized >/dev/null
fi
ninja -C "$BUILD" tests/fuzz/seeds.stamp \
  $(printf 'tests/fuzz/fuzz_%s ' "${targets[@]}") >/dev/null

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_odr_violation=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rc=0
for t in "${targets[@]}"; do
  corpus=$BUILD/fuzz-corpus/$t
  art=$BUILD/artifacts/$t
  log=$BUILD/fuzz-$t.log
  mkdir -p "$corpus" "$art"
  secs=$SECONDS_EACH
  [ "$t" != log ] || secs=$LOG_SECONDS
  # New inputs go to the first directory; seeds and regressions stay as
  # they are. make-seeds.py writes no seeds for some targets (journal:
  # its regressions are whole journals): pass only the directories there
  # are, since libFuzzer refuses a missing one.
  dirs=("$corpus")
  for d in "$BUILD/tests/fuzz/seeds/$t" "tests/fuzz/regressions/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  set +e
  "$BUILD/tests/fuzz/fuzz_$t" -max_total_time="$secs" \
    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$art/" "${dirs[@]}" >"$log" 2>&1
  r=$?
  set -e
  done_line=$(grep -E 'DONE +cov' "$log" | tail -1 | sed 's/.*DONE *//' || true)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  if [ $r -eq 0 ]; then
    echo "fuzz $t: ok, ${secs}s, ${execs:-?} execs (${rate:-?}/s)," \
      "$done_line"
  else
    rc=1
    echo "fuzz $t: FAILED (exit $r); see $log; input in $art/:"
    ls "$art" | sed 's/^/  /'
    grep -E 'ERROR|SUMMARY|check failed' "$log" | head -5 | sed 's/^/  /'
  fi
done
exit $rc
