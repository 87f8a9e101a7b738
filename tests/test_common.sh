# shellcheck shell=bash
# Shared by the bash test scripts (tests/e2e/test_cli.sh,
# tests/install/test_install.sh), sourced: the pass/fail tally and its
# summary, the exit trap and stopping a server. Each script keeps its own
# checks and its own cleanup.

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

# Prints "N passed, N failed"; returns 1 on any failure.
summary() {
  echo "$npass passed, $nfail failed"
  [ "$nfail" = 0 ]
}
