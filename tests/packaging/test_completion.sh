#!/usr/bin/env bash
# Shell completions of teleport: the bash one driven as bash drives it
# (COMP_WORDS/COMP_CWORD set, the function called, COMPREPLY read) for a
# command, global and per-command flags, a flag's file argument, and the
# caller's job ids from a running teleportd (alice sees hers, not bob's);
# the zsh and fish ones checked for syntax with zsh -n and fish -n where
# those shells are installed.
#
# Environment: JW_BUILD_ROOT, JW_SOURCE_ROOT, JW_TEST_CERTS (ca.cert,
# server.*, alice.*, bob.*). Exits 1 on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
C=${JW_TEST_CERTS:-$BUILD/test-certs}
COMP=$SRC/packaging/completions
SERVER_PID=
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
test_paths jw-completion

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    stop_pid "$SERVER_PID" 100
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
on_exit cleanup

need_files test_completion "$TELEPORT" "$TELEPORTD" "$C/alice.key" "$C/bob.key"

# complete WORD...: the completions bash offers for the last WORD of the
# command line "WORD...", one a line, sorted. A fresh bash each time, so
# that nothing from one case leaks into the next.
complete_words() {
  bash --norc --noprofile -c '
    source "$1" || exit 3
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    _teleport || exit 4
    printf "%s\n" "${COMPREPLY[@]}"' bash "$COMP/teleport.bash" "$@" | sort
}

# expect NAME WANT WORD...: the completions are exactly WANT (space-separated).
expect() {
  local name=$1 want got
  want=$(printf '%s\n' $2 | sort)
  shift 2
  got=$(complete_words "$@")
  if [ "$got" = "$want" ]; then
    pass "$name"
  else
    fail "$name" "want [$(echo $want)], got [$(echo $got)]"
  fi
}

# ---- bash: commands and flags (no server needed) -------------------------
expect "bash: commands" "start status output wait kill stop rm list health config help" teleport ""
expect "bash: a command by its prefix" "status stop start" teleport st
expect "bash: global flags" "--cacert --cert --context" teleport --c
expect "bash: a command after connection flags" "list" teleport --addr 127.0.0.1:1 li
expect "bash: per-command flags of start" "--io-read --io-write --isolate" teleport start --i
expect "bash: per-command flags of list" "--json" teleport list --j
expect "bash: per-command flags of output" "--no-follow" teleport output --no
expect "bash: list --state values" "running" teleport list --state r
expect "bash: kill -s takes a signal name" "USR1 USR2" teleport kill -s US
expect "bash: --isolate values" "pid pid,mount pid,net pid,mount,net" teleport start --isolate pi
expect "bash: help COMMAND" "output" teleport help ou
mkdir -p "$T/files" && touch "$T/files/alice.cert" "$T/files/alice.key"
expect "bash: --cert takes a file" "$T/files/alice.cert" teleport --cert "$T/files/alice.c"

# ---- bash: job ids from a running teleportd ------------------------------
PORT=$(free_port)
ADDR=127.0.0.1:$PORT
start_teleportd "$ADDR"
as() {
  local who=$1
  shift
  TELEPORT_CACERT=$C/ca.cert TELEPORT_CERT=$C/$who.cert TELEPORT_KEY=$C/$who.key \
    TELEPORT_ADDR=$ADDR "$TELEPORT" "$@"
}
if ! wait_up 300 as alice list; then
  fail "teleportd did not come up on $ADDR" "$(tail -5 "$T/teleportd.log")"
  summary
  exit 1
fi
a1=$(as alice start true) && a2=$(as alice start true) && b1=$(as bob start true) ||
  fail "starting jobs failed"

# The connection comes from the flags on the line being completed; none
# from the environment.
expect "bash: status completes alice's job ids (flags on the line)" "$a1 $a2" \
  "$TELEPORT" --addr "$ADDR" --cacert "$C/ca.cert" --cert "$C/alice.cert" \
  --key "$C/alice.key" status ""
expect "bash: output completes bob's only job id" "$b1" \
  "$TELEPORT" --addr "$ADDR" --cacert "$C/ca.cert" --cert "$C/bob.cert" \
  --key "$C/bob.key" output ""
# ... or from the TELEPORT_* environment, with flags after the command.
export TELEPORT_CACERT=$C/ca.cert TELEPORT_CERT=$C/alice.cert TELEPORT_KEY=$C/alice.key
expect "bash: stop completes a job id by its prefix (env, flag after the command)" \
  "$a1" "$TELEPORT" stop --addr "$ADDR" "${a1:0:${#a1}-1}"
unset TELEPORT_CACERT TELEPORT_CERT TELEPORT_KEY
expect "bash: no job ids when the server cannot be reached" "" \
  "$TELEPORT" --addr 127.0.0.1:1 --cacert "$C/ca.cert" --cert "$C/alice.cert" \
  --key "$C/alice.key" status ""
expect "bash: only one job id per command" "" \
  "$TELEPORT" --addr "$ADDR" --cacert "$C/ca.cert" --cert "$C/alice.cert" \
  --key "$C/alice.key" status "$a1" ""

# ---- zsh and fish: syntax ------------------------------------------------
if command -v zsh >/dev/null 2>&1; then
  runs_ok "zsh -n _teleport" "zsh -n _teleport" zsh -n "$COMP/_teleport"
else
  echo "skip zsh: not installed (apt-get install zsh)"
fi
if command -v fish >/dev/null 2>&1; then
  runs_ok "fish -n teleport.fish" "fish -n teleport.fish" fish -n "$COMP/teleport.fish"
  # Loading it defines the job-id function and registers completions.
  runs_ok "fish loads teleport.fish" "fish loads teleport.fish" env HOME="$T" fish --no-config \
    -c "source $COMP/teleport.fish; functions -q __teleport_job_ids; and complete -c teleport | grep -q -- '-l isolate'"
else
  echo "skip fish: not installed (apt-get install fish)"
fi

summary
