#!/usr/bin/env bash
# teleportd.service: systemd-analyze verify accepts the unit this build
# installs (ExecStart pointed at this build's teleportd, whose installed
# path does not exist here; the Documentation= man pages found through
# MANPATH), it has the settings teleportd relies on (Delegate, KillMode,
# OOMPolicy, no ProtectControlGroups or RestrictNamespaces), and its
# ExecReload, run against a live teleportd, is logged and changes nothing:
# the server keeps serving, keeps its jobs, and still stops cleanly on
# SIGTERM.
#
# Environment: JW_BUILD_ROOT, JW_SOURCE_ROOT, JW_TEST_CERTS. Exits 1 on
# any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
C=${JW_TEST_CERTS:-$BUILD/test-certs}
UNIT=$BUILD/packaging/teleportd.service
SERVER_PID=
JOB_PID=
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
test_paths jw-systemd

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  # The job, should the server have died without stopping it; only while
  # the pid is still that job's (pids get reused).
  if [ -n "$JOB_PID" ] &&
    [ "$({ tr '\0' ' ' <"/proc/$JOB_PID/cmdline"; } 2>/dev/null)" = "sleep 300 " ]; then
    kill -KILL -- "-$JOB_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
on_exit cleanup

need_files test_systemd "$TELEPORT" "$TELEPORTD" "$UNIT" "$C/alice.key"

# unit_value KEY: the value of KEY= in the unit (the last one wins).
unit_value() { sed -n "s/^$1=//p" "$UNIT" | tail -1; }

# ---- the unit's settings -------------------------------------------------
for kv in Type=simple Delegate=yes KillMode=mixed OOMPolicy=continue \
  TasksMax=infinity 'ExecReload=/bin/kill -HUP $MAINPID'; do
  if [ "$(unit_value "${kv%%=*}")" = "${kv#*=}" ]; then
    pass "unit: $kv"
  else
    fail "unit: want $kv, has '$(unit_value "${kv%%=*}")'"
  fi
done
for k in ProtectControlGroups RestrictNamespaces ProtectHome ProtectSystem \
  ProtectKernelModules PrivateTmp; do
  if [ -z "$(unit_value "$k")" ]; then
    pass "unit: no $k (jobs need what it takes away)"
  else
    fail "unit: $k is set; jobs need what it takes away"
  fi
done
exec_start=$(unit_value ExecStart)
case $exec_start in
*"teleportd --cacert "*/teleportd/ca.cert" --cert "*/teleportd/server.cert" --key "*/teleportd/server.key" --data-dir /var/lib/teleportd")
  pass "unit: ExecStart runs teleportd with the certificates under .../teleportd/ and /var/lib/teleportd"
  ;;
*) fail "unit: unexpected ExecStart: $exec_start" ;;
esac

# ---- systemd-analyze verify ----------------------------------------------
if command -v systemd-analyze >/dev/null 2>&1; then
  mkdir -p "$T/unit" "$T/man/man1" "$T/man/man8"
  cp "$SRC"/docs/man/*.1 "$T/man/man1/" && cp "$SRC"/docs/man/*.8 "$T/man/man8/"
  sed "s#^ExecStart=[^ ]*#ExecStart=$TELEPORTD#" "$UNIT" >"$T/unit/teleportd.service"
  out=$(MANPATH=$T/man timeout 60 systemd-analyze verify "$T/unit/teleportd.service" 2>&1)
  rc=$?
  # Any line is a complaint (unknown keys only warn, with exit 0).
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    pass "systemd-analyze verify: no complaint"
  else
    fail "systemd-analyze verify (exit $rc)" "$out"
  fi
else
  echo "skip systemd-analyze verify: systemd-analyze is not installed"
fi

# ---- ExecReload against a live teleportd ---------------------------------
PORT=$(free_port)
export TELEPORT_ADDR=127.0.0.1:$PORT TELEPORT_CACERT=$C/ca.cert \
  TELEPORT_CERT=$C/alice.cert TELEPORT_KEY=$C/alice.key
mkdir -p "$T/data"
"$TELEPORTD" --addr "$TELEPORT_ADDR" --cacert "$C/ca.cert" --cert "$C/server.cert" \
  --key "$C/server.key" --data-dir "$T/data" --stop-timeout 1s 2>"$T/teleportd.log" &
SERVER_PID=$!
if ! wait_up 300 "$TELEPORT" list; then
  fail "teleportd did not come up" "$(tail -5 "$T/teleportd.log")"
  summary
  exit 1
fi
job=$("$TELEPORT" start sleep 300) || fail "teleport start sleep 300 failed"
JOB_PID=$("$TELEPORT" status --json "$job" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')

# The unit's own ExecReload line, $MAINPID being teleportd's pid.
reload=$(unit_value ExecReload)
reload=${reload//\$MAINPID/$SERVER_PID}
$reload || fail "ExecReload ($reload) failed"
logged=0
for _ in $(seq 300); do
  grep -q 'event=reloaded' "$T/teleportd.log" && logged=1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if [ "$logged" = 1 ]; then
  pass "ExecReload (SIGHUP) reloads teleportd (event=reloaded)"
else
  fail "no reload after SIGHUP" "$(tail -3 "$T/teleportd.log")"
fi
# The reload re-executed teleportd in the same process: same pid, the job
# still running with its own.
if kill -0 "$SERVER_PID" 2>/dev/null && "$TELEPORT" list >/dev/null 2>&1 &&
  "$TELEPORT" status "$job" 2>/dev/null | grep -q RUNNING &&
  [ "$("$TELEPORT" status --json "$job" |
    sed -n 's/.*"pid":\([0-9]*\).*/\1/p')" = "$JOB_PID" ]; then
  pass "after SIGHUP teleportd still serves and its job still runs (pid $JOB_PID)"
else
  fail "teleportd after SIGHUP: alive=$(kill -0 "$SERVER_PID" 2>/dev/null && echo yes || echo no)" \
    "$(tail -3 "$T/teleportd.log")"
fi

# SIGTERM still stops the jobs and exits 0 (bounded by the stop timeout
# and the stream margin teleportd itself uses, with a wide margin).
kill -TERM "$SERVER_PID" 2>/dev/null
rc=
for _ in $(seq 600); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    wait "$SERVER_PID"
    rc=$?
    break
  fi
  sleep 0.1
done
if [ "$rc" = 0 ]; then
  SERVER_PID=
  pass "then SIGTERM stops it with exit 0"
else
  fail "teleportd after SIGTERM: exit '${rc:-still running}'" "$(tail -3 "$T/teleportd.log")"
fi

summary
