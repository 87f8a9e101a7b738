#!/usr/bin/env bash
# End-to-end: the real teleport against the real teleportd on a free
# loopback port, with the run's certificates for two clients (alice, bob).
# Every command, every exit code, --json parsed, a 32 MiB binary file
# through `teleport output` byte for byte with stderr kept apart, Ctrl-C
# detaching, EPIPE, another client refused, and each connection failure
# with its own message.
#
# Environment: JW_BUILD_ROOT (meson build dir), JW_SOURCE_ROOT, JW_TEST_CERTS
# (ca.cert, server.*, alice.*, bob.*; made here with certs/jw-certs when
# absent). Prints what passed and failed, then "N passed, N failed"; exits 1
# on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
test_paths jw-cli-e2e
# Jobs run as an unprivileged user of their own: they may reach the files
# a test gives them in $T ($T/big); the data directory inside stays 0700.
SERVER_PID=
FOLLOW_PID=
JOB_PIDS=()

cleanup() {
  [ -n "$FOLLOW_PID" ] && kill -KILL "$FOLLOW_PID" 2>/dev/null
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    stop_pid "$SERVER_PID" 50
    wait "$SERVER_PID" 2>/dev/null
  fi
  # Jobs the server should have ended on shutdown; make sure of it, but
  # only while the pid is still one of ours (pids get reused).
  for pid in "${JOB_PIDS[@]}"; do
    if [ "$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null)" = "sleep 600 " ]; then
      kill -KILL -- "-$pid" 2>/dev/null
    fi
  done
  rm -rf "$T"
}
on_exit cleanup

# One line on stderr containing the text, nothing on stdout.
err_is() {
  [ ! -s "$T/out" ] && [ "$(wc -l <"$T/err")" = 1 ] &&
    grep -qF -- "$1" "$T/err"
}

as_bob() { TELEPORT_CERT=$C/bob.cert TELEPORT_KEY=$C/bob.key "$TELEPORT" "$@"; }

remember_job() {
  local pid
  pid=$(tp status --json "$1" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  [ -n "$pid" ] && [ "$pid" != 0 ] && JOB_PIDS+=("$pid")
}

# ---- setup ---------------------------------------------------------------

need_built test_cli "$TELEPORT" "$TELEPORTD"
test_certs

# A CA nobody here trusts, and a client it signed.
O=$T/other
mkdir -p "$O"
{
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$O/ca.key" -out "$O/ca.cert" -subj "/CN=other test CA" -days 2 &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$O/mallory.key" -out "$O/mallory.csr" -subj "/CN=mallory" &&
    echo "extendedKeyUsage=clientAuth" >"$O/ext" &&
    openssl x509 -req -in "$O/mallory.csr" -CA "$O/ca.cert" \
      -CAkey "$O/ca.key" -CAcreateserial -days 2 -extfile "$O/ext" \
      -out "$O/mallory.cert"
} >/dev/null 2>&1 || {
  echo "test_cli: openssl could not make the second CA"
  exit 1
}

serve_alice test_cli 100

# ---- usage (exit 2), help, version ---------------------------------------

run tp --version
check "--version" '[ $rc = 0 ] && grep -qE "^teleport [0-9]+\.[0-9]+\.[0-9]+$" "$T/out"'
run tp --help
check "--help: commands, flags, env vars, exit codes" \
  '[ $rc = 0 ] && has "start [-l]" && has "status" && has "output ID" && has "stop" && has "list" && has "--cacert" && has "TELEPORT_KEY" && has "Exit status" && has "130"'
run tp output --help
check "output --help says Ctrl-C detaches" '[ $rc = 0 ] && has "Ctrl-C detaches"'
run tp frobnicate
check "unknown command: exit 2" '[ $rc = 2 ] && grep -qF "Run '"'teleport --help'"'" "$T/err"'
run tp status
check "missing ID: exit 2" '[ $rc = 2 ] && grep -qF "missing job ID" "$T/err"'
run tp list --bogus
check "unknown flag: exit 2" '[ $rc = 2 ] && grep -qF "unknown option '"'--bogus'"'" "$T/err"'
run env -u TELEPORT_CERT "$TELEPORT" list
check "missing --cert named with its env var: exit 2" \
  '[ $rc = 2 ] && err_is "teleport: missing --cert (or TELEPORT_CERT)"'

# ---- start, output, status ----------------------------------------------

run tp start echo hello world
id_echo=$(cat "$T/out")
check "start prints the id alone" \
  '[ $rc = 0 ] && grep -qxE "[0-9a-f]{32}" "$T/out" && [ "$(wc -l <"$T/out")" = 1 ] && [ ! -s "$T/err" ]'
run tp output "$id_echo"
check "output of echo" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "hello world" ]'

run tp start -l sh -c 'printf "%s|" "$@"' sh -la --x -- y
check "start: everything after the command belongs to the job" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = "-la|--x|--|y|" ]'
run tp start -l -- ls -d /
check "start -- CMD" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "/" ]'
run tp start -l -e FOO=bar -e "SPACY=a b" -C /tmp sh -c 'echo "$FOO/$SPACY"; pwd'
check "start -e and -C" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "bar/a b
/tmp" ]'

run tp status "$id_echo"
check "status: human summary" \
  '[ $rc = 0 ] && has "ID:        $id_echo" && has "Owner:     alice" && has "Command:   echo hello world" && has "State:     EXITED (exit code 0)" && grep -qE "^PID: +[0-9]+$" "$T/out" && grep -qE "^Started: +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\+00:00$" "$T/out" && grep -qE "^Duration: +[0-9]+\.[0-9]{3}s$" "$T/out"'
run tp status --json "$id_echo"
check "status --json: every JobStatus field" \
  "[ \$rc = 0 ] && json 'j[\"id\"] == \"$id_echo\" and j[\"owner\"] == \"alice\" and j[\"command\"] == \"echo\" and j[\"args\"] == [\"hello\", \"world\"] and j[\"state\"] == \"EXITED\" and j[\"exit_code\"] == 0 and j[\"signal\"] == 0 and j[\"pid\"] > 0 and 0 < j[\"started_at_unix_nano\"] <= j[\"ended_at_unix_nano\"] and j[\"output_bytes\"] == 12'"

# JSON stays valid whatever the arguments hold.
run tp start true "$(printf 'a\tb\n"c"\\ \001 \303\274')"
run tp status --json "$(cat "$T/out")"
check "status --json: control bytes, quotes, unicode" \
  "[ \$rc = 0 ] && json 'j[\"args\"] == [\"a\\tb\\n\\\"c\\\"\\\\ \\x01 \\u00fc\"]'"
# Bytes that are not UTF-8 cannot be stored (a proto3 string is UTF-8, and
# strict clients could not read the job back): the server names the arg.
run tp start true ok "$(printf 'bad \377\376 end')"
check "start: an argument that is not UTF-8 is refused" \
  '[ $rc != 0 ] && [ ! -s "$T/out" ] && grep -qx "teleport: cannot start the job: args\[1\] is not valid UTF-8" "$T/err"'

# stdout and stderr apart, in `output` and in `start -l`.
run tp start sh -c 'echo out1; echo err1 >&2; echo out2'
id_mix=$(cat "$T/out")
run tp output "$id_mix"
check "output: stderr kept apart" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = "out1
out2" ] && [ "$(cat "$T/err")" = "err1" ]'

# 32 MiB of random bytes through the job and back, byte for byte.
head -c $((32 << 20)) /dev/urandom >"$T/big"
run tp start cat "$T/big"
id_big=$(cat "$T/out")
t0=$(date +%s%N)
tp output "$id_big" >"$T/big.out" 2>"$T/big.err"
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
check "output > f: 32 MiB byte-identical (${ms} ms), nothing on stderr" \
  '[ $rc = 0 ] && cmp -s "$T/big" "$T/big.out" && [ ! -s "$T/big.err" ]'
run tp status --json "$id_big"
check "status: output_bytes counts the 32 MiB" "[ \$rc = 0 ] && json 'j[\"output_bytes\"] == 32 << 20'"

# ---- start -l exit codes --------------------------------------------------

run tp start -l sh -c 'echo bye; exit 3'
check "start -l: exit code 3 of the job" '[ $rc = 3 ] && [ "$(cat "$T/out")" = "bye" ]'
run tp start -l sh -c 'kill -KILL $$'
check "start -l: SIGKILL gives 137" '[ $rc = 137 ]'
run tp start -l true
check "start -l: exit 0" '[ $rc = 0 ] && [ ! -s "$T/out" ]'
run tp start no-such-command-xyz
check "start: a command that does not exist (exit 1)" \
  '[ $rc = 1 ] && err_is "no-such-command-xyz" && grep -qF "not found" "$T/err"'

# ---- stop ----------------------------------------------------------------

run tp start sleep 600
id_sleep=$(cat "$T/out")
remember_job "$id_sleep"
run tp stop "$id_sleep"
check "stop: prints the final state" \
  '[ $rc = 0 ] && has "ID:        $id_sleep" && has "State:     STOPPED (ended by SIGTERM, signal 15)"'
run tp stop --json "$id_sleep"
check "stop of a stopped job: its status (--json)" \
  "[ \$rc = 0 ] && json 'j[\"state\"] == \"STOPPED\" and j[\"signal\"] == 15 and j[\"ended_at_unix_nano\"] > 0'"
run tp start sh -c 'trap "" TERM; echo ready; exec sleep 600'
id_stubborn=$(cat "$T/out")
remember_job "$id_stubborn"
# Stop only once the trap is set, or SIGTERM would end it.
for _ in $(seq 100); do
  tp status --json "$id_stubborn" >"$T/out" 2>/dev/null &&
    json 'j["output_bytes"] > 0' && break
  sleep 0.05
done
run tp stop "$id_stubborn"
check "stop: SIGKILL after the grace period" \
  '[ $rc = 0 ] && has "STOPPED (ended by SIGKILL, signal 9)"'

# ---- list ----------------------------------------------------------------

run tp list --json
check "list --json: my jobs, newest last" \
  "[ \$rc = 0 ] && json 'len(j) >= 10 and j[-1][\"id\"] == \"$id_stubborn\" and j[0][\"id\"] != \"$id_stubborn\" and \"$id_echo\" in [x[\"id\"] for x in j] and all(x[\"owner\"] == \"alice\" for x in j) and [x[\"started_at_unix_nano\"] for x in j] == sorted(x[\"started_at_unix_nano\"] for x in j)'"
run tp list
check "list: a table with a header, newest last" \
  '[ $rc = 0 ] && head -1 "$T/out" | grep -qE "^ID +STATE +EXIT +PID +STARTED +DURATION +COMMAND$" && tail -1 "$T/out" | grep -qF "$id_stubborn" && has "$id_big"'

# ---- another client -------------------------------------------------------

for cmd in status output stop; do
  run as_bob "$cmd" "$id_echo"
  check "bob: $cmd of alice's job is refused (exit 1)" \
    'err_is "teleport: job $id_echo belongs to another client" && [ $rc = 1 ]'
done
run as_bob list --json
check "bob: list shows none of alice's jobs" "[ \$rc = 0 ] && json 'j == []'"
run tp status 00000000000000000000000000000000
check "unknown job: not found (exit 1)" \
  '[ $rc = 1 ] && err_is "teleport: job 00000000000000000000000000000000 not found"'

# ---- Ctrl-C and EPIPE -----------------------------------------------------

run tp start sh -c 'echo hi; exec sleep 600'
id_long=$(cat "$T/out")
remember_job "$id_long"
# Not through tp: the signal must reach teleport itself, not a subshell.
"$TELEPORT" output "$id_long" >"$T/follow.out" 2>"$T/follow.err" &
fpid=$!
FOLLOW_PID=$fpid
for _ in $(seq 100); do
  [ -s "$T/follow.out" ] && break
  sleep 0.05
done
kill -INT "$fpid"
wait "$fpid"
rc=$?
FOLLOW_PID=
cp "$T/follow.out" "$T/out"
cp "$T/follow.err" "$T/err"
check "output: Ctrl-C detaches with 130 and says the job keeps running" \
  '[ $rc = 130 ] && [ "$(cat "$T/out")" = hi ] && grep -qF "detached; job $id_long keeps running" "$T/err"'
run tp status --json "$id_long"
check "the job is still running after Ctrl-C" "[ \$rc = 0 ] && json 'j[\"state\"] == \"RUNNING\"'"
run tp stop "$id_long"

tp output "$id_big" 2>"$T/err" | head -c 100 >/dev/null
rc=${PIPESTATUS[0]}
: >"$T/out"
check "output | head: exit 141 quietly" '[ $rc = 141 ] && [ ! -s "$T/err" ]'

# ---- connection failures (exit 1, each its own message) --------------------

run tp list --addr "127.0.0.1:$PORT" --cacert "$O/ca.cert"
check "wrong CA: the server's certificate is not signed by CACERT" \
  '[ $rc = 1 ] && err_is "the server'"'"'s certificate is not signed by $O/ca.cert"'
run tp list --cert "$O/mallory.cert" --key "$O/mallory.key"
check "client certificate of another CA: refused by the server" \
  '[ $rc = 1 ] && err_is "the server refused this client certificate"'
run tp list --key "$T/missing.key"
check "missing key file: named" \
  '[ $rc = 1 ] && err_is "cannot read the client key $T/missing.key (--key): No such file or directory"'
run tp list --key "$C/bob.key"
check "key not matching the certificate: said so" '[ $rc = 1 ] && err_is "key"'
run env TELEPORT_ADDR=127.0.0.1:1 "$TELEPORT" list --addr "$ADDR"
check "--addr wins over TELEPORT_ADDR" '[ $rc = 0 ]'

# ---- health ---------------------------------------------------------------

run tp health
check "health: SERVING, exit 0" '[ $rc = 0 ] && [ "$(cat "$T/out")" = SERVING ]'
run tp health jobworker.v1.JobWorker
check "health SERVICE: SERVING" '[ $rc = 0 ] && [ "$(cat "$T/out")" = SERVING ]'
run tp health nope.v1.Nope
check "health: an unknown service exits 1 and says so" \
  '[ $rc = 1 ] && grep -qF "unknown service" "$T/err"'
run tp health a b
check "health: one SERVICE at most (exit 2)" '[ $rc = 2 ]'
run tp health --help
check "health --help: exit codes" '[ $rc = 0 ] && has "Exit status: 0 SERVING"'

kill -TERM "$SERVER_PID"
wait "$SERVER_PID"
SERVER_PID=
run tp list
check "server down: connection refused at ADDR" \
  '[ $rc = 1 ] && err_is "teleport: connection refused at $ADDR: is teleportd running?"'
run tp health
check "health, server down: exit 1" '[ $rc = 1 ] && [ ! -s "$T/out" ]'

summary_with_log
