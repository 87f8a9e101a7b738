#!/usr/bin/env bash
# `make lint`: clang-tidy with the Clang Static Analyzer checks (.clang-tidy)
# over lib/, server/ and client/, using the compile commands of a clang
# build directory of its own (LINT_BUILD, default build-lint). Prints the
# findings and exits 1 when there is any.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${LINT_BUILD:-build-lint}
JOBS=${LINT_JOBS:-$(nproc)}
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang meson setup "$BUILD" -Dtests=false >/dev/null
fi
# The generated protobuf headers the sources include.
ninja -C "$BUILD" proto/jobworker.pb-c.h proto/health.pb-c.h \
  proto/reflection.pb-c.h >/dev/null
files=$(find lib server client -name '*.c' | sort)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
printf '%s\n' $files |
  xargs -P "$JOBS" -n 4 clang-tidy -p "$BUILD" --quiet >"$out" 2>&1
rc=$?
set -e
# clang-tidy prints "N warnings generated." for suppressed system-header
# noise; only real diagnostics matter.
grep -v -E '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' "$out" |
  grep -v -E '^Suppressed [0-9]+ warnings|^Use -header-filter|^$' || true
n=$(grep -c -E '(warning|error): .*\[clang-analyzer' "$out" || true)
echo "lint: $(echo "$files" | wc -l) files, $n findings"
[ "$rc" -eq 0 ] && [ "$n" -eq 0 ]
