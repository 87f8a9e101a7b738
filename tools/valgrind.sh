#!/usr/bin/env bash
# `make valgrind`: the unit and integration suites under valgrind memcheck
# on a plain (unsanitized) build of their own (VG_BUILD, default build-vg);
# any memcheck error or definite leak fails the test that made it.
#
# Valgrind before 3.20 (Debian bookworm has 3.19) does not implement
# pidfd_open(2) (syscall 434); there lib/worker watches its jobs with its
# SIGCHLD fallback (see docs/library.md), so every suite runs either way.
#
# JW_TEST_SCALE=16 divides the tests' data volumes and counts (256 MiB
# byte-exact output becomes 16 MiB, 1000 jobs 62), never what they
# assert, so that the run takes minutes; JW_UNDER_VALGRIND=1 lets the
# checks valgrind makes meaningless (two of RSS growth, which its own
# memory inflates; two of what a spawn copies and opens, where it turns
# clone(CLONE_VM) into a fork) say they are skipped (tests/test_common.h). Check's per-test timeouts get
# the same multiplier as meson's.
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

# A valgrind without pidfd_open warns each time a process probes for it
# (every Check test is a process of its own): say so once here, and let
# the library skip the probe and use its fallback (JW_FORCE_NO_PIDFD, which
# tests/test_common.h passes to jw_process_configure).
probe=$(valgrind -q /usr/bin/python3 -c \
  'import os; os.close(os.pidfd_open(os.getpid()))' 2>&1 || true)
if grep -q "unhandled.*syscall: 434\|Function not implemented" <<<"$probe"; then
  echo "valgrind $(valgrind --version): no pidfd_open;" \
    "jobs are watched through the SIGCHLD fallback"
  export JW_FORCE_NO_PIDFD=1
fi
export JW_TEST_SCALE=${JW_TEST_SCALE:-16}
export JW_UNDER_VALGRIND=1
export CK_TIMEOUT_MULTIPLIER=4
tests=(--suite unit --suite integration)
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
