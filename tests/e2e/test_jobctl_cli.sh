#!/usr/bin/env bash
# End-to-end: teleport's job control against the real teleportd on free
# loopback ports. output --tail/--from/--no-follow, wait and its exit
# codes, kill -s reaching a trap, start --timeout, stop --timeout, rm, job
# ids by prefix, list -q/--state, the nearest command to a typo, --addr
# https://; a capped job's output said to be cut (exit 3); a follow and a
# start -l that lose their connection (a proxy killed and started again,
# the server stopped and started again) and still write the job's output
# exactly.
#
# Environment: JW_BUILD_ROOT, JW_SOURCE_ROOT, JW_TEST_CERTS (as
# test_cli.sh). Prints what passed and failed, then "N passed, N failed";
# exits 1 on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
test_paths jw-jobctl-cli-e2e
SERVER_PID=
CAPPED_PID=
PROXY_PID=
BG_PID=

cleanup() {
  local pid
  for pid in "$BG_PID" "$PROXY_PID"; do
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  done
  for pid in "$SERVER_PID" "$CAPPED_PID"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      stop_pid "$pid" 50
      wait "$pid" 2>/dev/null
    fi
  done
  rm -rf "$T"
}
on_exit cleanup

# jget ID FIELD: one field of status --json, as Python prints it.
jget() {
  tp status --json "$1" 2>/dev/null |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"
}

# wait_final ID TENTHS: until job ID is final, at most TENTHS tenths of a
# second; returns 1 if it is not by then.
wait_final() {
  local st
  for _ in $(seq "$2"); do
    st=$(jget "$1" state)
    case $st in EXITED | SIGNALED | STOPPED) return 0 ;; esac
    sleep 0.1
  done
  return 1
}

# wait_lines FILE N TENTHS: until FILE has at least N lines.
wait_lines() {
  for _ in $(seq "$3"); do
    [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
    sleep 0.1
  done
  return 1
}

# A TCP proxy on loopback: what a dropped connection looks like to the
# client, without touching the server. Killing it cuts every connection
# through it; starting it again on the same port lets clients back in.
cat >"$T/proxy.py" <<'EOF'
import socket, sys, threading
lport, target = int(sys.argv[1]), int(sys.argv[2])
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", lport))
ls.listen(16)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", target))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
EOF

# start_proxy: the proxy on $PPORT to the server on $PORT; sets PROXY_PID
# once it accepts connections.
start_proxy() {
  "$PY" "$T/proxy.py" "$PPORT" "$PORT" 2>>"$T/proxy.log" &
  PROXY_PID=$!
  for _ in $(seq 100); do
    "$PY" -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' \
      "$PPORT" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

kill_proxy() {
  kill -KILL "$PROXY_PID" 2>/dev/null
  wait "$PROXY_PID" 2>/dev/null
  PROXY_PID=
}

# cut_proxy: every connection through the proxy dropped, and for about a
# second no new one.
cut_proxy() {
  kill_proxy
  sleep 1
  start_proxy
}

# reap_bg TENTHS: until the teleport in the background ($BG_PID) ends, at
# most TENTHS tenths of a second, then SIGKILL; sets rc to its exit status.
reap_bg() {
  for _ in $(seq "$1"); do
    kill -0 "$BG_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$BG_PID" 2>/dev/null
  wait "$BG_PID"
  rc=$?
  BG_PID=
}

# ---- setup ---------------------------------------------------------------

need_built test_jobctl_cli "$TELEPORT" "$TELEPORTD"
test_certs
serve_alice test_jobctl_cli 300

# ---- output --tail, --from, --no-follow ----------------------------------

id_seq=$(tp start seq 1 100)
wait_final "$id_seq" 100
run tp output --tail 3 "$id_seq"
check "output --tail 3 of seq 1 100 is 98..100" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = "$(seq 98 100)" ]'
run tp output -n 1 --no-follow "$id_seq"
check "output -n 1 --no-follow: the last line" '[ $rc = 0 ] && [ "$(cat "$T/out")" = 100 ]'

id_digits=$(tp start printf 0123456789)
wait_final "$id_digits" 100
run tp output --from 5 "$id_digits"
check "output --from 5 of 0123456789 is 56789" '[ $rc = 0 ] && [ "$(cat "$T/out")" = 56789 ]'
run tp output --from 99 "$id_digits"
check "output --from past the end of a finished job: nothing, exit 0" \
  '[ $rc = 0 ] && [ ! -s "$T/out" ]'

id_run=$(tp start sh -c 'echo first; exec sleep 600')
wait_up 100 sh -c "[ \"\$(timeout 10 \"$TELEPORT\" output --no-follow $id_run)\" = first ]"
run timeout 20 "$TELEPORT" output --no-follow "$id_run"
check "output --no-follow of a running job: what is there, exit 0" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = first ]'

for bad in "--tail 0" "--tail x" "--tail 1000001" "--from -1" "--from 1k"; do
  # shellcheck disable=SC2086 # the flag and its value are two words
  run tp output $bad "$id_seq"
  check "output $bad: a usage error (exit 2)" '[ $rc = 2 ] && [ ! -s "$T/out" ]'
done

# ---- job ids by prefix ---------------------------------------------------

run tp status "${id_seq:0:8}"
check "status by an 8-digit prefix" '[ $rc = 0 ] && has "ID:        $id_seq"'
run tp output --tail 1 "${id_seq:0:4}"
check "output by a 4-digit prefix" '[ $rc = 0 ] && [ "$(cat "$T/out")" = 100 ]'
run tp status "${id_seq:0:3}"
check "a 3-digit prefix: too short (exit 2)" \
  '[ $rc = 2 ] && grep -qF "at least 4 hex digits" "$T/err"'
nomatch=$(for p in 0000 1111 2222 3333 4444; do
  tp list -q | grep -q "^$p" || {
    echo $p
    break
  }
done)
run tp status "$nomatch"
check "a prefix of none of my jobs: said so (exit 1)" \
  '[ $rc = 1 ] && grep -qF "no job of yours has an id starting with $nomatch" "$T/err"'
run env TELEPORT_CERT="$C/bob.cert" TELEPORT_KEY="$C/bob.key" "$TELEPORT" status "${id_seq:0:8}"
check "bob: a prefix of alice's job matches nothing" \
  '[ $rc = 1 ] && grep -qF "no job of yours" "$T/err"'

# ---- list -q, --state, --no-trunc; a typo; https:// -----------------------

run tp list -q
check "list -q: the full ids alone" \
  '[ $rc = 0 ] && grep -qx "$id_seq" "$T/out" && ! grep -qvE "^[0-9a-f]{32}$" "$T/out"'
run tp list -q --state running
check "list --state running: the running job, not the finished ones" \
  '[ $rc = 0 ] && grep -qx "$id_run" "$T/out" && ! grep -qx "$id_seq" "$T/out"'
run tp list -q --state finished
check "list --state finished: the finished ones only" \
  '[ $rc = 0 ] && grep -qx "$id_seq" "$T/out" && ! grep -qx "$id_run" "$T/out"'
run tp list --state done
check "list --state done: a usage error" '[ $rc = 2 ] && grep -qF "running or finished" "$T/err"'
run tp list --no-trunc
check "list --no-trunc in a pipe: full ids" '[ $rc = 0 ] && has "$id_seq"'
# A terminal of 100 columns: ids cut to 12 digits, lines that fit.
run script -qec "stty cols 100; $TELEPORT list" /dev/null
check "list on a 100-column terminal fits it" \
  '[ $rc = 0 ] && grep -q "^${id_seq:0:12} " "$T/out" && ! grep -qF "$id_seq" "$T/out" && [ "$(tr -d "\r" <"$T/out" | awk "length > 100" | wc -l)" = 0 ]'
run script -qec "stty cols 100; $TELEPORT list --no-trunc" /dev/null
check "list --no-trunc on a terminal: full ids" '[ $rc = 0 ] && has "$id_seq"'

run tp stauts "$id_seq"
check "a typo: did you mean 'status' (exit 2)" \
  '[ $rc = 2 ] && grep -qF "did you mean '"'status'"'" "$T/err"'
run tp --addr "https://$ADDR/" status "$id_seq"
check "--addr https://HOST:PORT/" '[ $rc = 0 ] && has "$id_seq"'
run tp --addr "http://$ADDR" list
check "--addr http://: refused, says https (exit 2)" \
  '[ $rc = 2 ] && grep -qF "https://" "$T/err"'

# ---- wait ------------------------------------------------------------------

id7=$(tp start sh -c 'sleep 0.5; exit 7')
run timeout 60 "$TELEPORT" wait "$id7"
check "wait exits 7 for exit 7" '[ $rc = 7 ]'
id0=$(tp start true)
run timeout 60 "$TELEPORT" wait "$id0" "$id7"
check "wait ID0 ID7: the first non-zero, 7" '[ $rc = 7 ]'
run timeout 60 "$TELEPORT" wait "$id0"
check "wait of a job that exited 0: 0" '[ $rc = 0 ]'
id_kill9=$(tp start sh -c 'kill -KILL $$')
run timeout 60 "$TELEPORT" wait "$id_kill9"
check "wait of a job SIGKILL ended: 137" '[ $rc = 137 ]'
run timeout 60 "$TELEPORT" wait --timeout 1s "$id_run"
check "wait --timeout 1s of a running job: 124, still running" \
  '[ $rc = 124 ] && grep -qF "still running after 1s" "$T/err" && [ "$(jget "$id_run" state)" = RUNNING ]'
run tp wait --timeout 0s "$id_run"
check "wait --timeout 0s: a usage error" '[ $rc = 2 ]'

# ---- kill -s ---------------------------------------------------------------

id_trap=$(tp start sh -c 'trap "echo got-usr1; exit 0" USR1; echo ready; while :; do sleep 0.1; done')
wait_up 100 sh -c "timeout 10 \"$TELEPORT\" output --no-follow $id_trap | grep -q ready"
run tp kill -s USR1 "$id_trap"
check "kill -s USR1: exit 0, nothing printed" '[ $rc = 0 ] && [ ! -s "$T/out" ]'
run timeout 60 "$TELEPORT" wait "$id_trap"
check "USR1 reached the job's trap: it exited 0" '[ $rc = 0 ]'
run tp output "$id_trap"
check "the trap's output is there" '[ $rc = 0 ] && has got-usr1'
run tp kill -s 10 "$id_trap"
check "kill of a job that ended: said so (exit 1)" \
  '[ $rc = 1 ] && grep -qF "has already ended" "$T/err"'
run tp kill -s BOGUS "$id_run"
check "kill -s BOGUS: a usage error (exit 2)" '[ $rc = 2 ] && grep -qF "BOGUS" "$T/err"'

# ---- start --timeout, stop --timeout ---------------------------------------

# The server stops a timed-out job with SIGTERM and its --stop-timeout
# (1 s here) before SIGKILL: 1 s + 1 s, with a wide margin for load.
t0=$(date +%s)
id_to=$(tp start --timeout 1s sleep 30)
run timeout 60 "$TELEPORT" wait "$id_to"
t1=$(date +%s)
check "start --timeout 1s: sleep 30 ends within 15 s" \
  '[ $rc != 0 ] && [ $rc != 124 ] && [ $((t1 - t0)) -lt 15 ]'
run tp status --json "$id_to"
check "start --timeout 1s: end_reason timed_out, timeout_ms 1000" \
  "[ \$rc = 0 ] && json 'j[\"end_reason\"] == \"timed_out\" and j[\"timeout_ms\"] == 1000'"
run tp start --timeout 0 true
check "start --timeout 0: a usage error" '[ $rc = 2 ]'

id_stub=$(tp start sh -c 'trap "" TERM; echo ready; while :; do sleep 0.1; done')
wait_up 100 sh -c "timeout 10 \"$TELEPORT\" output --no-follow $id_stub | grep -q ready"
t0=$(date +%s)
run timeout 60 "$TELEPORT" stop --timeout 500ms --json "$id_stub"
t1=$(date +%s)
check "stop --timeout 500ms of a job ignoring TERM: SIGKILL, within 15 s" \
  "[ \$rc = 0 ] && json 'j[\"state\"] == \"STOPPED\" and j[\"signal\"] == 9 and j[\"end_reason\"] == \"stopped\" and j[\"exit_code\"] is None' && [ \$((t1 - t0)) -lt 15 ]"
# On a terminal stop says what it sent and what came of it.
id_tty=$(tp start sleep 600)
run script -qec "$TELEPORT stop --timeout 10s $id_tty" /dev/null
check "stop on a terminal: 'SIGTERM sent; SIGKILL in 10s', then how it ended" \
  '[ $rc = 0 ] && has "SIGTERM sent; SIGKILL in 10s" && has "ended by SIGTERM"'
id_quiet=$(tp start sleep 600)
run tp stop "$id_quiet"
check "stop off a terminal: the status alone, stderr quiet" \
  '[ $rc = 0 ] && has "STOPPED" && [ ! -s "$T/err" ]'

# ---- rm --------------------------------------------------------------------

run tp rm "$id_run"
check "rm of a running job: refused (exit 1)" \
  '[ $rc = 1 ] && grep -qF "still running" "$T/err" && [ "$(jget "$id_run" state)" = RUNNING ]'
run tp rm "${id_digits:0:6}"
check "rm of a finished job by prefix: prints its id" '[ $rc = 0 ] && [ "$(cat "$T/out")" = "$id_digits" ]'
run tp status "$id_digits"
check "a removed job is not found" '[ $rc = 1 ] && grep -qF "not found" "$T/err"'
tp stop "$id_run" >/dev/null 2>&1

# ---- status --json: every field documented, none -1 -----------------------

run tp status --json "$id_seq"
check "status --json: end_reason, dropped and cap, exit_code" \
  "[ \$rc = 0 ] && json 'j[\"end_reason\"] == \"exited\" and j[\"exit_code\"] == 0 and j[\"output_dropped_bytes\"] == 0 and j[\"output_cap_bytes\"] == 1 << 30 and j[\"timeout_ms\"] == 0'"
id_sleepy=$(tp start sleep 600)
run tp status --json "$id_sleepy"
check "status --json of a running job: exit_code and end_reason null" \
  "[ \$rc = 0 ] && json 'j[\"exit_code\"] is None and j[\"end_reason\"] is None'"
fields=$("$PY" -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1])).keys()))' "$T/out")
undocumented=""
for f in $fields; do
  grep -qF "\`$f\`" "$SRC/docs/cli.md" || undocumented="$undocumented $f"
done
check "docs/cli.md documents every status --json field" '[ -z "$undocumented" ]'
tp stop "$id_sleepy" >/dev/null 2>&1

# ---- truncation is never silent --------------------------------------------

CPORT=$(free_port)
saved=$SERVER_PID
DATA_DIR=$T/data-capped start_teleportd "127.0.0.1:$CPORT" --max-output-bytes 1K
CAPPED_PID=$SERVER_PID
SERVER_PID=$saved
capped() { TELEPORT_ADDR=127.0.0.1:$CPORT "$TELEPORT" "$@"; }
wait_up 300 capped list
id_cap=$(capped start sh -c 'seq 1 2000')
for _ in $(seq 100); do
  [ "$(TELEPORT_ADDR=127.0.0.1:$CPORT jget "$id_cap" state)" = EXITED ] && break
  sleep 0.1
done
run capped output "$id_cap"
check "a capped job's output: the 1024 bytes kept, exit 3, the drop said" \
  '[ $rc = 3 ] && [ "$(wc -c <"$T/out")" = 1024 ] && grep -qF "dropped 7869 bytes" "$T/err" && grep -qF "1024 bytes" "$T/err"'
run capped start -l sh -c 'seq 1 2000'
check "start -l of a capped job: exit 0 (the job's), the drop said" \
  '[ $rc = 0 ] && [ "$(wc -c <"$T/out")" = 1024 ] && grep -qF "dropped 7869 bytes" "$T/err"'
run capped status --json "$id_cap"
check "status --json of a capped job: output_dropped_bytes and the cap" \
  "[ \$rc = 0 ] && json 'j[\"output_dropped_bytes\"] == 7869 and j[\"output_cap_bytes\"] == 1024'"
run capped status "$id_cap"
check "status of a capped job: dropped and cap on the Output line" \
  '[ $rc = 0 ] && has "7869 more dropped" && has "at most 1 KiB"'
stop_pid "$CAPPED_PID" 50
wait "$CAPPED_PID" 2>/dev/null
CAPPED_PID=

# ---- a follow across dropped connections is exact ---------------------------

PPORT=$(free_port)
start_proxy || fail "the proxy did not come up"
seq -f "line %g" 1 200 >"$T/want"
id_f=$(tp start sh -c 'i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo "line $i"; sleep 0.03; done')
TELEPORT_ADDR=127.0.0.1:$PPORT "$TELEPORT" output "$id_f" >"$T/f.out" 2>"$T/f.err" &
BG_PID=$!
# Two cuts, each while the job writes, each for about a second.
wait_lines "$T/f.out" 20 300
cut_proxy
wait_lines "$T/f.out" 80 300
cut_proxy
reap_bg 600
cp "$T/f.out" "$T/out"
cp "$T/f.err" "$T/err"
check "output across two dropped connections: the 200 lines exactly, exit 0" \
  '[ $rc = 0 ] && cmp -s "$T/f.out" "$T/want"'
check "output said it lost the connection and reconnected, twice" \
  '[ "$(grep -c "lost the connection" "$T/f.err")" = 2 ] && [ "$(grep -c "reconnected to" "$T/f.err")" = 2 ]'

# start -l through the proxy: the job's bytes exactly and its exit code.
TELEPORT_ADDR=127.0.0.1:$PPORT "$TELEPORT" start -l sh -c \
  'i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo "line $i"; sleep 0.03; done; exit 5' \
  >"$T/l.out" 2>"$T/l.err" &
BG_PID=$!
wait_lines "$T/l.out" 30 300
cut_proxy
reap_bg 600
cp "$T/l.out" "$T/out"
cp "$T/l.err" "$T/err"
check "start -l across a dropped connection: exact output, the job's exit 5" \
  '[ $rc = 5 ] && cmp -s "$T/l.out" "$T/want" && grep -qF "reconnected to" "$T/l.err"'

# Gone for longer than TELEPORT_RECONNECT: gives up, says so, exit 1.
id_g=$(tp start sh -c 'echo one; exec sleep 600')
TELEPORT_RECONNECT=1s TELEPORT_ADDR=127.0.0.1:$PPORT "$TELEPORT" output "$id_g" \
  >"$T/g.out" 2>"$T/g.err" &
BG_PID=$!
wait_lines "$T/g.out" 1 300
kill_proxy
reap_bg 300
cp "$T/g.err" "$T/err"
: >"$T/out"
check "TELEPORT_RECONNECT=1s with the server out of reach: gives up, exit 1" \
  '[ $rc = 1 ] && grep -qF "gave up reconnecting" "$T/err"'

# Ctrl-C while reconnecting detaches at once (130), the job left running.
start_proxy || fail "the proxy did not come back"
TELEPORT_ADDR=127.0.0.1:$PPORT "$TELEPORT" output "$id_g" >"$T/c.out" 2>"$T/c.err" &
BG_PID=$!
wait_lines "$T/c.out" 1 300
kill_proxy
for _ in $(seq 300); do
  grep -qF "reconnecting" "$T/c.err" && break
  sleep 0.1
done
kill -INT "$BG_PID"
reap_bg 300
cp "$T/c.err" "$T/err"
check "Ctrl-C while reconnecting: detached (130), the job still running" \
  '[ $rc = 130 ] && grep -qF "detached; job $id_g keeps running" "$T/err" && [ "$(jget "$id_g" state)" = RUNNING ]'
tp stop "$id_g" >/dev/null 2>&1

# ---- the server stopped and started again on its data dir -----------------

# start -l of a job while the server goes away (SIGTERM) and comes back.
# teleport must reconnect and say how the job ended: the job's durable
# record survives (the shutdown stopped it with SIGTERM); no "cannot send"
# after the stream, no hang, and the output written is an exact prefix of
# the job's.
"$TELEPORT" start -l sh -c \
  'i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo "line $i"; sleep 0.03; done' \
  >"$T/r.out" 2>"$T/r.err" &
BG_PID=$!
wait_lines "$T/r.out" 20 300
stop_pid "$SERVER_PID" 100
wait "$SERVER_PID" 2>/dev/null
start_teleportd "$ADDR"
reap_bg 900
cp "$T/r.out" "$T/out"
cp "$T/r.err" "$T/err"
n=$(wc -l <"$T/r.out")
check "start -l across a server restart: reconnects, output an exact prefix" \
  '[ $rc != 137 ] && ! grep -qF "cannot send" "$T/r.err" && grep -qF "reconnected to" "$T/r.err" && head -n "$n" "$T/want" | cmp -s - "$T/r.out"'
# How it ended: the restarted server knows the job from its record, and
# teleport exits as the shutdown's SIGTERM ended it (128 + 15).
check "start -l across a server restart: says how the job ended" \
  '[ $rc = 143 ] && ! grep -qF "not found" "$T/r.err"'

# ---- a follow across two reloads (SIGHUP) is exact ------------------------

# The server re-executes itself in place (same pid) and keeps the job
# running; each reload ends the follow stream with UNAVAILABLE, and output
# resumes from the byte it got to.
id_h=$(tp start sh -c 'i=0; while [ $i -lt 200 ]; do i=$((i+1)); echo "line $i"; sleep 0.05; done')
pid_h=$(jget "$id_h" pid)
"$TELEPORT" output "$id_h" >"$T/h.out" 2>"$T/h.err" &
BG_PID=$!
# A Wait in flight at each reload: its call ends UNAVAILABLE as the
# connection goes away (GOAWAY), and teleport makes it again.
"$TELEPORT" wait "$id_h" >"$T/hw.out" 2>"$T/hw.err" &
WAIT_PID=$!
wait_lines "$T/h.out" 20 300
kill -HUP "$SERVER_PID"
wait_lines "$T/h.out" 90 300
kill -HUP "$SERVER_PID"
reap_bg 900
# On a failure the check shows how the output differs from the job's.
diff "$T/want" "$T/h.out" >"$T/out"
cp "$T/h.err" "$T/err"
check "output across two reloads: the 200 lines exactly, exit 0" \
  '[ $rc = 0 ] && cmp -s "$T/h.out" "$T/want"'
wait "$WAIT_PID"
rc_w=$?
cp "$T/hw.err" "$T/err"
check "wait across two reloads: exit 0, the job's" \
  '[ $rc_w = 0 ] && grep -qF "reconnected to" "$T/hw.err"'
check "output across two reloads: it reconnected twice" \
  '[ "$(grep -c "reconnected to" "$T/h.err")" = 2 ]'
check "the job ran through both reloads: same pid, exited 0, reason exited" \
  '[ "$(jget "$id_h" pid)" = "$pid_h" ] && [ "$(jget "$id_h" state)" = EXITED ] && [ "$(jget "$id_h" end_reason)" = exited ]'
check "the server is the same process after both reloads" \
  'kill -0 "$SERVER_PID"'

summary_with_log
