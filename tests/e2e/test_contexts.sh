#!/usr/bin/env bash
# End-to-end: configuration files. Two teleportd instances, each started
# with nothing but --config FILE, and the teleport CLI's config with two
# contexts (alice@server1, bob@server2): the default context, --context,
# TELEPORT_CONTEXT, flags and TELEPORT_* variables winning over a context,
# an unknown context, `teleport config list/current/use`, and the files
# both refuse.
#
# Environment: JW_BUILD_ROOT, JW_SOURCE_ROOT, JW_TEST_CERTS (as
# test_cli.sh). Prints what passed and failed, then "N passed, N failed";
# exits 1 on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
test_paths jw-contexts-e2e
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  rm -rf "$T"
}
on_exit cleanup

err_has() { grep -qF -- "$1" "$T/err"; }

# owned_by NAME ADDR WHO ID: checks that WHO's status of job ID on ADDR
# (with WHO's certificate, no context) says WHO owns it.
owned_by() {
  run tp --addr "$2" --cacert "$C/ca.cert" --cert "$C/$3.cert" \
    --key "$C/$3.key" status --json "$4"
  check "$1" "[ \$rc = 0 ] && json \"j[\\\"owner\\\"] == \\\"$3\\\"\""
}

# serves ADDR [PID]: whether a teleportd on ADDR answers alice's list within
# 100 tries 0.1 s apart (giving up early once PID, if given, has ended).
serves() {
  for _ in $(seq 100); do
    if tp --addr "$1" --cacert "$C/ca.cert" --cert "$C/alice.cert" \
      --key "$C/alice.key" list >/dev/null 2>&1; then
      return 0
    fi
    [ -z "${2:-}" ] || kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# ---- setup ---------------------------------------------------------------

need_built test_contexts "$TELEPORT" "$TELEPORTD"
test_certs

# Only what this test sets counts.
for v in $(env | sed -n 's/^\(TELEPORTD\?_[A-Z_]*\)=.*/\1/p'); do
  unset "$v"
done
export TZ=UTC HOME=$T/home XDG_CONFIG_HOME=$T/xdg
mkdir -p "$HOME"

# Two servers, each from a config file alone.
ADDRS=()
for n in 1 2; do
  port=$(free_port)
  ADDRS+=("127.0.0.1:$port")
  mkdir -p "$T/data$n"
  cat >"$T/server$n.conf" <<CONF
# teleportd number $n, for test_contexts.sh
addr = 127.0.0.1:$port
cacert = $C/ca.cert
cert = $C/server.cert
key = $C/server.key

data-dir = $T/data$n
stop-timeout = 1s
log-level = warn
max-jobs = 10
CONF
  chmod 600 "$T/server$n.conf"
  "$TELEPORTD" --config "$T/server$n.conf" 2>"$T/teleportd$n.log" &
  PIDS+=($!)
done
ADDR1=${ADDRS[0]}
ADDR2=${ADDRS[1]}

# The CLI's config: relative paths for alice, absolute ones for bob.
D=$XDG_CONFIG_HOME/teleport
mkdir -p "$D/certs"
cp "$C/ca.cert" "$C/alice.cert" "$C/alice.key" "$D/certs/"
cat >"$D/config" <<CONF
# teleport contexts
default-context = alice@server1

[context alice@server1]
addr = $ADDR1
cacert = certs/ca.cert
cert = certs/alice.cert
key = certs/alice.key

[context bob@server2]
addr = $ADDR2
cacert = $C/ca.cert
cert = $C/bob.cert
key = $C/bob.key
CONF
chmod 600 "$D/config"

for i in 0 1; do
  if ! serves "${ADDRS[$i]}" "${PIDS[$i]}"; then
    echo "test_contexts: teleportd --config $T/server$((i + 1)).conf did not come up on ${ADDRS[$i]}:"
    cat "$T/teleportd$((i + 1)).log"
    exit 1
  fi
done
pass "teleportd started with only --config, twice (addr, certificates, data-dir from the files)"

# ---- teleportd --config ---------------------------------------------------

cp "$T/server1.conf" "$T/open.conf"
chmod 666 "$T/open.conf"
run "$TELEPORTD" --config "$T/open.conf"
check "teleportd: world-writable --config refused, naming it" \
  '[ $rc = 2 ] && err_has "refusing the configuration file $T/open.conf"'
printf 'addr = 127.0.0.1:1\nmax-job = 3\n' >"$T/typo.conf"
run "$TELEPORTD" --config "$T/typo.conf"
check "teleportd: unknown key: file, line, key and the nearest one" \
  '[ $rc = 2 ] && err_has "$T/typo.conf:2: unknown key max-job (did you mean max-jobs?)"'
# A flag, then its variable, win over the file: the server then listens
# where they say, not where the file does.
port3=$(free_port)
run env TELEPORTD_MAX_JOBS=x "$TELEPORTD" --config "$T/server1.conf"
check "teleportd: TELEPORTD_* wins over the file (and is checked)" \
  '[ $rc = 2 ] && err_has "invalid TELEPORTD_MAX_JOBS \"x\""'
mkdir -p "$T/data3"
"$TELEPORTD" --config "$T/server1.conf" --addr "127.0.0.1:$port3" \
  --data-dir "$T/data3" 2>"$T/teleportd3.log" &
PIDS+=($!)
ok=0
serves "127.0.0.1:$port3" && ok=1
rc=$ok
check "teleportd: --addr wins over the file's addr" '[ $ok = 1 ]'

# ---- the CLI's contexts ---------------------------------------------------

run tp start echo one
check "default context: start on server1" '[ $rc = 0 ] && [ -s "$T/out" ]'
ID1=$(cat "$T/out")
owned_by "default context: the job is alice's, on server1" "$ADDR1" alice "$ID1"

run tp --context bob@server2 start echo two
check "--context bob@server2: start" '[ $rc = 0 ] && [ -s "$T/out" ]'
ID2=$(cat "$T/out")
owned_by "--context bob@server2: the job is bob's, on server2" "$ADDR2" bob "$ID2"

run env TELEPORT_CONTEXT=bob@server2 "$TELEPORT" list --json
check "TELEPORT_CONTEXT=bob@server2: lists bob's job on server2 only" \
  '[ $rc = 0 ] && json "[x[\"id\"] for x in j] == [\"$ID2\"]"'
run tp list --json
check "no context named: the default lists alice's job on server1 only" \
  '[ $rc = 0 ] && json "[x[\"id\"] for x in j] == [\"$ID1\"]"'
run env TELEPORT_CONTEXT=bob@server2 "$TELEPORT" --context alice@server1 list --json
check "--context wins over TELEPORT_CONTEXT" \
  '[ $rc = 0 ] && json "[x[\"id\"] for x in j] == [\"$ID1\"]"'
run tp list --context bob@server2 --json
check "--context after COMMAND" \
  '[ $rc = 0 ] && json "[x[\"id\"] for x in j] == [\"$ID2\"]"'

# Flags and variables win over the context, setting by setting: alice's
# context with server2's address reaches server2 as alice.
run tp --addr "$ADDR2" list --json
check "--addr wins over the context's addr" '[ $rc = 0 ] && json "j == []"'
run env TELEPORT_ADDR="$ADDR2" "$TELEPORT" list --json
check "TELEPORT_ADDR wins over the context's addr" '[ $rc = 0 ] && json "j == []"'
run env TELEPORT_CERT="$C/bob.cert" TELEPORT_KEY="$C/bob.key" \
  "$TELEPORT" --context bob@server2 --addr "$ADDR1" list --json
check "TELEPORT_CERT/KEY and --addr together: bob on server1 (no jobs)" \
  '[ $rc = 0 ] && json "j == []"'
run tp --context alice@server1 --cert "$C/bob.cert" --key "$C/bob.key" \
  status "$ID1"
check "--cert wins over the context's cert: alice's job is not bob's" \
  '[ $rc = 1 ] && err_has "another client"'

run tp --context carol@server3 list
check "unknown context: exit 2, naming it and the known ones" \
  '[ $rc = 2 ] && err_has "unknown context '"'"'carol@server3'"'"' (from --context)" && err_has "alice@server1, bob@server2"'
run env TELEPORT_CONTEXT=nope "$TELEPORT" list
check "unknown TELEPORT_CONTEXT: exit 2, naming the variable" \
  '[ $rc = 2 ] && err_has "(from TELEPORT_CONTEXT)"'

# ---- teleport config ------------------------------------------------------

run tp config list
check "config list: both, * on the default" \
  '[ $rc = 0 ] && grep -qE "^\* alice@server1 +$ADDR1$" "$T/out" && grep -qE "^  bob@server2 +$ADDR2$" "$T/out"'
run tp config current
check "config current: the default context" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = alice@server1 ]'
run env TELEPORT_CONTEXT=bob@server2 "$TELEPORT" config current
check "config current: TELEPORT_CONTEXT" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = bob@server2 ]'
cp "$D/config" "$T/config.before"
run tp config use bob@server2
check "config use bob@server2" '[ $rc = 0 ]'
run tp config current
check "config use: now the default, every other line kept" \
  '[ $rc = 0 ] && [ "$(cat "$T/out")" = bob@server2 ] &&
   diff <(grep -v "^default-context" "$T/config.before") <(grep -v "^default-context" "$D/config") >/dev/null &&
   [ "$(stat -c %a "$D/config")" = 600 ]'
run tp list --json
check "config use: plain commands go to bob@server2" \
  '[ $rc = 0 ] && json "[x[\"id\"] for x in j] == [\"$ID2\"]"'
run tp config use nope
check "config use of an unknown context: exit 2, file unchanged" \
  '[ $rc = 2 ] && err_has "bob@server2" && grep -q "^default-context = bob@server2$" "$D/config"'

run tp config bogus
check "config with an unknown subcommand: exit 2" \
  '[ $rc = 2 ] && err_has "unknown subcommand '"'"'bogus'"'"'"'
run tp config use
check "config use without a name: exit 2" '[ $rc = 2 ]'

# ---- bad client configs ---------------------------------------------------

chmod 606 "$D/config"
run tp list
check "world-writable CLI config refused, naming it" \
  '[ $rc = 2 ] && err_has "refusing $D/config"'
chmod 600 "$D/config"
printf '[context x]\naddr = 127.0.0.1:1\nadr = 127.0.0.1:2\n' >"$T/bad"
cp "$D/config" "$T/good"
cp "$T/bad" "$D/config"
run tp list
check "CLI config: unknown key named with file and line" \
  '[ $rc = 2 ] && err_has "$D/config:3: unknown key adr"'
printf '[context x]\naddr = 127.0.0.1:1\n[context x]\naddr = 127.0.0.1:2\n' >"$D/config"
run tp list
check "CLI config: a context given twice" \
  '[ $rc = 2 ] && err_has "$D/config:4: context x given twice"'
cp "$T/good" "$D/config"
rm -rf "$XDG_CONFIG_HOME"
run tp --context alice@server1 list
check "no config file: --context says so" \
  '[ $rc = 2 ] && err_has "no contexts: $D/config does not exist"'

run tp --help
check "--help: --context, TELEPORT_CONTEXT, the config file" \
  '[ $rc = 0 ] && has "--context NAME" && has "TELEPORT_CONTEXT" && has "teleport/config"'
run "$TELEPORTD" --help
check "teleportd --help: --config" '[ $rc = 0 ] && has "--config FILE"'

echo
if [ "$nfail" -gt 0 ]; then
  printf 'failed: %s\n' "${failures[*]}"
  for n in 1 2 3; do
    echo "teleportd$n log:"
    tail -n 20 "$T/teleportd$n.log" 2>/dev/null
  done
fi
summary
