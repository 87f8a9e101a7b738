#!/usr/bin/env bash
# `make valgrind`: the unit and integration suites under valgrind memcheck
# on a plain (unsanitized) build of their own (VG_BUILD, default build-vg);
# any memcheck error or definite leak fails the test that made it.
#
# Valgrind before 3.20 (Debian bookworm has 3.19) does not implement
# pidfd_open(2) (syscall 434), which lib/worker needs for every job, so
# there the suites that start processes (process, supervisor, cgroup,
# service) cannot run and are left to the ASan/UBSan/LSan run of
# `make test`; the script says which it skipped. A valgrind that has
# pidfd_open runs them all.
#
# tests/valgrind.supp holds suppressions for third-party noise only
# (currently none are needed; the file documents the rule).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${VG_BUILD:-build-vg}
if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" --buildtype=debugoptimized >/dev/null
fi
ninja -C "$BUILD" >/dev/null
tests/make-certs.sh "$BUILD/test-certs" >/dev/null

vg="valgrind --error-exitcode=1 --leak-check=full"
vg+=" --errors-for-leak-kinds=definite --track-fds=no -q"
vg+=" --suppressions=$PWD/tests/valgrind.supp"

# Does this valgrind know pidfd_open? (ENOSYS and a warning when not.)
probe=$(valgrind -q /usr/bin/python3 -c \
  'import os; os.close(os.pidfd_open(os.getpid()))' 2>&1 || true)
if grep -q "unhandled.*syscall: 434\|Function not implemented" <<<"$probe"; then
  tests=(outlog grpc tls rpc)
  echo "valgrind $(valgrind --version): no pidfd_open;" \
    "skipping process supervisor cgroup service"
else
  tests=(--suite unit --suite integration)
fi
start=$(date +%s)
set +e
meson test -C "$BUILD" --num-processes 1 --timeout-multiplier 4 \
  --print-errorlogs --wrapper "$vg" "${tests[@]}"
rc=$?
set -e
log=$BUILD/meson-logs/testlog-valgrind.txt
[ -f "$log" ] || log=$BUILD/meson-logs/testlog.txt
errs=$(grep -c -E '^==[0-9]+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination)|definitely lost in' "$log" || true)
echo "valgrind: $(($(date +%s) - start)) s, memcheck reports: $errs"
exit $rc
