# shellcheck shell=bash
# Shared by the bash test scripts (tests/e2e/test_cli.sh, test_contexts.sh,
# tests/install/test_install.sh, tests/packaging/test_completion.sh,
# test_systemd.sh, test_man.sh), sourced after SRC is set: the pass/fail
# tally and its summary, the exit trap, the built binaries and test
# certificates, and starting and stopping a server. Each script keeps its
# own checks and its own cleanup.

npass=0
nfail=0
failures=()

# Runs the function named $1 when the script exits, also on Ctrl-C and
# SIGTERM (which exit 1 so that the EXIT trap runs).
on_exit() {
  # shellcheck disable=SC2064 # the name, expanded now, is what runs
  trap "$1" EXIT
  trap 'exit 1' INT TERM
}

# stop_pid PID TENTHS: SIGTERM, at most TENTHS tenths of a second for PID
# to end, then SIGKILL. The caller reaps it (wait).
stop_pid() {
  kill -TERM "$1" 2>/dev/null
  for _ in $(seq "$2"); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$1" 2>/dev/null
}

pass() {
  npass=$((npass + 1))
  echo "ok   $1"
}

# fail NAME [DETAIL]: counts a failure and prints the detail indented.
fail() {
  nfail=$((nfail + 1))
  failures+=("$1")
  echo "FAIL $1"
  [ -n "${2:-}" ] && printf '     %s\n' "$2"
  return 0
}

# runs_ok [-q] PASS FAIL CMD...: runs CMD; passes PASS if it exits 0 (with
# -q: and prints nothing), else fails FAIL with what it printed.
runs_ok() {
  local quiet=0 out rc
  if [ "$1" = -q ]; then
    quiet=1
    shift
  fi
  local pass_name=$1 fail_name=$2
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ] && { [ "$quiet" = 0 ] || [ -z "$out" ]; }; then
    pass "$pass_name"
  else
    fail "$fail_name" "$out"
  fi
}

# Prints "N passed, N failed"; returns 1 on any failure.
summary() {
  echo "$npass passed, $nfail failed"
  [ "$nfail" = 0 ]
}

# summary_with_log: a blank line; on any failure the failed checks' names
# and the last 30 lines of $T/teleportd.log; then summary.
summary_with_log() {
  echo
  if [ "$nfail" -gt 0 ]; then
    printf 'failed: %s\n' "${failures[*]}"
    echo "teleportd log:"
    tail -n 30 "$T/teleportd.log" 2>/dev/null
  fi
  summary
}

# test_paths PREFIX: sets TELEPORT and TELEPORTD (this build's, in $BUILD),
# PY, and T, a new scratch directory /tmp/PREFIX.XXXXXX that jobs (which run
# as unprivileged users of their own) may enter.
test_paths() {
  TELEPORT=$BUILD/client/teleport
  TELEPORTD=$BUILD/server/teleportd
  PY=/usr/bin/python3
  T=$(mktemp -d "/tmp/$1.XXXXXX")
  chmod 711 "$T"
}

# run CMD...: runs a command, keeping its exit code in $rc and its output in
# $T/out and $T/err.
run() {
  "$@" >"$T/out" 2>"$T/err"
  rc=$?
}

# check NAME EXPR: passes when the shell expression EXPR holds.
check() {
  if eval "$2"; then
    pass "$1"
  else
    fail "$1" "exit $rc; stdout: $(head -c 300 "$T/out" | tr '\n' '|'); stderr: $(head -c 400 "$T/err" | tr '\n' '|')"
  fi
}

# has TEXT: whether $T/out (where the script's run put stdout) has TEXT.
has() { grep -qF -- "$1" "$T/out"; }

# json EXPR: evaluates a Python expression over j, the JSON in $T/out.
json() {
  "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($1) else 1)" "$T/out"
}

# free_port: a TCP port on 127.0.0.1 that is free now.
free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# tp ARG...: this build's teleport.
tp() { "$TELEPORT" "$@"; }

# wait_up TRIES CMD...: runs CMD up to TRIES times 0.1 s apart until it
# succeeds (returns 0); returns 1 if it never does or SERVER_PID ends first.
wait_up() {
  local tries=$1
  shift
  for _ in $(seq "$tries"); do
    "$@" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# need_files NAME FILE...: exits 1 (naming NAME, the test) unless every
# FILE is there.
need_files() {
  local name=$1 f
  shift
  for f in "$@"; do
    [ -e "$f" ] || {
      echo "$name: $f is missing (build, and tests/make-certs.sh)"
      exit 1
    }
  done
}

# need_built NAME FILE...: exits 1 (naming NAME, the test) unless every
# FILE is an executable.
need_built() {
  local name=$1 bin
  shift
  for bin in "$@"; do
    if [ ! -x "$bin" ]; then
      echo "$name: $bin is not built"
      exit 1
    fi
  done
}

# test_certs: sets C to $JW_TEST_CERTS if it has bob's key, else makes a CA,
# the server's certificate and alice's and bob's in $T/certs (exit 1 if
# that fails).
test_certs() {
  C=${JW_TEST_CERTS:-}
  if [ -z "$C" ] || [ ! -f "$C/bob.key" ]; then
    C=$T/certs
    local tool=${JW_CERTS_TOOL:-$SRC/certs/jw-certs}
    { "$tool" --dir "$C" init && "$tool" --dir "$C" server &&
      "$tool" --dir "$C" client alice && "$tool" --dir "$C" client bob; } \
      >/dev/null || exit 1
  fi
}

# start_teleportd ADDR [FLAG...]: $TELEPORTD in the background on ADDR with
# $C's server certificate, data in $T/data (or $DATA_DIR), log (warn and
# up) appended to $T/teleportd.log, and any further teleportd flags; sets
# SERVER_PID.
start_teleportd() {
  local data=${DATA_DIR:-$T/data}
  mkdir -p "$data"
  "$TELEPORTD" --addr "$1" --cacert "$C/ca.cert" --cert "$C/server.cert" \
    --key "$C/server.key" --data-dir "$data" --stop-timeout 1s \
    --log-level warn "${@:2}" 2>>"$T/teleportd.log" &
  # shellcheck disable=SC2034 # the caller's, to stop and wait for
  SERVER_PID=$!
}

# serve_alice NAME TRIES: start_teleportd on a free loopback port (sets
# PORT, ADDR, SERVER_PID), teleport's settings for alice exported (TZ=UTC),
# and the server answering `tp list` within TRIES tries 0.1 s apart; else
# prints NAME, the server's log and exits 1.
serve_alice() {
  PORT=$(free_port)
  ADDR=127.0.0.1:$PORT
  start_teleportd "$ADDR"
  export TZ=UTC TELEPORT_CACERT=$C/ca.cert TELEPORT_CERT=$C/alice.cert \
    TELEPORT_KEY=$C/alice.key TELEPORT_ADDR=$ADDR
  if ! wait_up "$2" tp list; then
    echo "$1: teleportd did not come up on $ADDR:"
    cat "$T/teleportd.log"
    exit 1
  fi
}
