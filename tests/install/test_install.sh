#!/usr/bin/env bash
# The installed libjobworker, as another program sees it: `meson install`
# of this build into a scratch DESTDIR, the tree it lays out, what the
# shared library exports, and both examples built through pkg-config
# (against the shared and the static library) and run: embed_supervisor
# streams a job's output and exits with its status; embed_server serves
# the real teleport CLI from the run's certificates, next to its own
# heartbeat timer, and stops cleanly on SIGTERM and after --seconds.
#
# Environment: JW_BUILD_ROOT (a configured and built meson build dir),
# JW_SOURCE_ROOT, JW_TEST_CERTS (ca.cert, server.*, alice.*, as made by
# tests/make-certs.sh). In a sanitizer build the examples are built with the
# same -fsanitize flags as the library. Prints what passed and failed, then
# "N passed, N failed"; exits 1 on any failure.
set -u

SRC=${JW_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${JW_BUILD_ROOT:-$SRC/build}
# shellcheck source=../test_common.sh
. "$SRC/tests/test_common.sh"
C=${JW_TEST_CERTS:-$BUILD/test-certs}
T=$(mktemp -d /tmp/jw-install.XXXXXX)
SERVER_PID=

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -KILL "$SERVER_PID" 2>/dev/null
    wait "$SERVER_PID" 2>/dev/null
  fi
  rm -rf "$T"
}
on_exit cleanup

# check NAME EXPR [DETAIL]: passes when the shell expression EXPR holds.
check() {
  if eval "$2"; then
    pass "$1"
  else
    fail "$1" "${3:-}"
  fi
}

# wait_for FILE REGEX: waits (at most 60 s) until FILE has a matching line.
wait_for() {
  for _ in $(seq 600); do
    grep -qE "$2" "$1" 2>/dev/null && return 0
    [ -n "$SERVER_PID" ] && ! kill -0 "$SERVER_PID" 2>/dev/null && break
    sleep 0.1
  done
  grep -qE "$2" "$1" 2>/dev/null
}

# stop_server: SIGTERM, then waits (at most 60 s) for the exit; sets $src.
stop_server() {
  stop_pid "$SERVER_PID" 600
  wait "$SERVER_PID"
  src=$?
  SERVER_PID=
}

# ---- meson install ---------------------------------------------------------

DEST=$T/dest
if ! meson install -C "$BUILD" --no-rebuild --quiet --destdir "$DEST" \
  >"$T/install.log" 2>&1; then
  echo "test_install: meson install failed:"
  cat "$T/install.log"
  exit 1
fi
opt() {
  meson introspect "$BUILD" --buildoptions |
    /usr/bin/python3 -c 'import json,sys
print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == sys.argv[1]))' "$1"
}
PREFIX=$(opt prefix)
LIBDIR=$DEST$PREFIX/$(opt libdir)
INCDIR=$DEST$PREFIX/$(opt includedir)
BINDIR=$DEST$PREFIX/$(opt bindir)
SBINDIR=$DEST$PREFIX/$(opt sbindir)
SAN=$(opt b_sanitize)
SANFLAGS=
[ "$SAN" != none ] && SANFLAGS="-fsanitize=$SAN"

check "teleportd, teleport and jw-certs installed and executable" \
  '[ -x "$SBINDIR/teleportd" ] && [ -x "$BINDIR/teleport" ] && [ -x "$BINDIR/jw-certs" ]'
"$SBINDIR/teleportd" --version >"$T/v" 2>&1
check "the installed teleportd runs" 'grep -q "^teleportd " "$T/v"' "$(cat "$T/v")"
hdrs=(cgroup client error grpc outlog process rpc server service supervisor tls units users)
missing=
for h in "${hdrs[@]}"; do
  [ -f "$INCDIR/jobworker/$h.h" ] || missing+=" $h.h"
done
check "the public headers under include/jobworker/" '[ -z "$missing" ]' \
  "missing:$missing"
check "no installed header speaks protobuf-c" \
  '! grep -l "protobuf\|pb-c" "$INCDIR"/jobworker/*.h'
SO=$(readlink -f "$LIBDIR/libjobworker.so")
check "a shared libjobworker with its soname links" \
  '[ -f "$SO" ] && [ -L "$LIBDIR/libjobworker.so.0" ] && readelf -d "$SO" | grep -q "SONAME.*libjobworker.so.0"'
check "a static libjobworker" '[ -f "$LIBDIR/libjobworker.a" ]'
PC=$LIBDIR/pkgconfig/jobworker.pc
check "jobworker.pc requires libuv, libnghttp2, openssl, libprotobuf-c" \
  'grep -q "^Requires:.*libuv.*libnghttp2.*openssl.*libprotobuf-c" "$PC"' \
  "$(cat "$PC" 2>/dev/null)"

# ---- what the shared library exports ---------------------------------------

nm -D --defined-only "$SO" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort >"$T/syms"
check "the shared library exports no jw__ internals" \
  '! grep -q "^jw__" "$T/syms"' "$(grep "^jw__" "$T/syms" | head -5 | tr '\n' ' ')"
undeclared=
while read -r s; do
  grep -qw "$s" "$INCDIR"/jobworker/*.h || undeclared+=" $s"
done <"$T/syms"
check "every exported symbol is declared in an installed header" \
  '[ -z "$undeclared" ] && [ "$(wc -l <"$T/syms")" -gt 50 ]' \
  "not in a header:$undeclared"
check "the API an embedder needs is exported" \
  'grep -qx jw_supervisor_new "$T/syms" && grep -qx jw_service_methods "$T/syms" && grep -qx jw_rpc_server_start "$T/syms" && grep -qx jw_rpc_event_name "$T/syms" && grep -qx jw_process_configure "$T/syms"'

# ---- the examples, through pkg-config --------------------------------------

export PKG_CONFIG_PATH=$LIBDIR/pkgconfig PKG_CONFIG_SYSROOT_DIR=$DEST
CFLAGS="-std=gnu11 -O1 -g -Wall -Wextra -Wpedantic -Werror $SANFLAGS"
# Each installed header compiles on its own.
bad=
for h in "${hdrs[@]}"; do
  printf '#include <jobworker/%s.h>\n' "$h" >"$T/h.c"
  # shellcheck disable=SC2046,SC2086
  cc $CFLAGS $(pkg-config --cflags jobworker) -c "$T/h.c" -o "$T/h.o" \
    2>>"$T/hdr.log" || bad+=" $h.h"
done
check "each installed header compiles on its own" '[ -z "$bad" ]' \
  "$bad: $(head -c 400 "$T/hdr.log")"

shared_libs=$(pkg-config --libs jobworker)
# The static library, with what it needs from pkg-config --static; the
# system libraries stay shared (Debian ships no libuv.a).
static_libs=$(pkg-config --static --libs jobworker |
  sed 's/-ljobworker/-Wl,-Bstatic -ljobworker -Wl,-Bdynamic/')
for ex in embed_supervisor embed_server; do
  # shellcheck disable=SC2086
  cc $CFLAGS $(pkg-config --cflags jobworker) -o "$T/$ex" \
    "$SRC/examples/$ex.c" $shared_libs >"$T/cc.log" 2>&1
  check "$ex builds against the shared library" '[ -x "$T/$ex" ]' \
    "$(head -c 600 "$T/cc.log")"
  # shellcheck disable=SC2086
  cc $CFLAGS $(pkg-config --cflags --static jobworker) -o "$T/$ex-static" \
    "$SRC/examples/$ex.c" $static_libs >"$T/cc.log" 2>&1
  check "$ex builds against the static library" \
    '[ -x "$T/$ex-static" ] && ! readelf -d "$T/$ex-static" | grep -q "NEEDED.*libjobworker"' \
    "$(head -c 600 "$T/cc.log")"
done
check "the shared build loads the installed libjobworker.so.0" \
  'LD_LIBRARY_PATH=$LIBDIR ldd "$T/embed_supervisor" | grep -q "libjobworker.so.0 => $LIBDIR/"'

# ---- embed_supervisor ------------------------------------------------------

for v in "" -static; do
  mkdir -p "$T/sup$v"
  LD_LIBRARY_PATH=$LIBDIR "$T/embed_supervisor$v" "$T/sup$v" \
    >"$T/out" 2>"$T/err"
  rc=$?
  check "embed_supervisor$v streams the job's output and exits with its status" \
    '[ $rc = 0 ] && [ "$(cat "$T/out")" = "$(printf "hi\nbye")" ]' \
    "exit $rc; stdout: $(tr '\n' '|' <"$T/out"); stderr: $(head -c 600 "$T/err")"
  check "embed_supervisor$v stops the second job with SIGTERM" \
    'grep -q "stopped (signal 15)" "$T/err"'
  check "embed_supervisor$v leaves no log behind" \
    '[ -z "$(ls -A "$T/sup$v")" ]' "$(ls -A "$T/sup$v")"
done

# ---- embed_server ----------------------------------------------------------

export TELEPORT_CACERT=$C/ca.cert TELEPORT_CERT=$C/alice.cert \
  TELEPORT_KEY=$C/alice.key
TP=$BINDIR/teleport

mkdir -p "$T/data"
LD_LIBRARY_PATH=$LIBDIR "$T/embed_server" --cacert "$C/ca.cert" \
  --cert "$C/server.cert" --key "$C/server.key" --data-dir "$T/data" \
  >"$T/srv.out" 2>"$T/srv.err" &
SERVER_PID=$!
if ! wait_for "$T/srv.out" '^listening on port [0-9]+$'; then
  fail "embed_server listens" "$(cat "$T/srv.out" "$T/srv.err" | head -c 800)"
else
  pass "embed_server listens"
  PORT=$(sed -n 's/^listening on port \([0-9]*\)$/\1/p' "$T/srv.out")
  export TELEPORT_ADDR=127.0.0.1:$PORT
  "$TP" start -l sh -c 'echo served; echo oops >&2; exit 3' >"$T/out" 2>"$T/err"
  rc=$?
  check "teleport start -l through embed_server: output and exit status" \
    '[ $rc = 3 ] && [ "$(cat "$T/out")" = served ] && grep -qx oops "$T/err"' \
    "exit $rc; stdout: $(tr '\n' '|' <"$T/out"); stderr: $(head -c 400 "$T/err")"
  "$TP" start sleep 600 >"$T/id" 2>"$T/err"
  rc=$?
  check "teleport start of a long job" '[ $rc = 0 ] && [ -s "$T/id" ]' \
    "exit $rc; $(head -c 400 "$T/err")"
  JOB_PID=$("$TP" status --json "$(cat "$T/id")" 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
  "$TP" list >"$T/out" 2>"$T/err"
  check "teleport list shows both jobs" \
    'grep -q "sleep" "$T/out" && grep -q " sh " "$T/out"' \
    "$(head -c 600 "$T/out")"
  check "embed_server reports each call as an enum event" \
    'grep -q "^event=rpc .*cn=alice method=/jobworker.v1.JobWorker/Start status=OK" "$T/srv.out"' \
    "$(head -c 600 "$T/srv.out")"
  check "embed_server's own timer runs beside the library" \
    'wait_for "$T/srv.out" "^heartbeat [0-9]+, 1 running jobs$"' \
    "$(tail -c 400 "$T/srv.out")"
  stop_server
  check "embed_server stops cleanly on SIGTERM, every handle closed" \
    '[ $src = 0 ] && grep -q "^shutting down (Terminated), 1 running jobs$" "$T/srv.out" && tail -n 1 "$T/srv.out" | grep -qx stopped' \
    "exit $src; stdout: $(tail -c 400 "$T/srv.out" | tr '\n' '|'); stderr: $(head -c 600 "$T/srv.err")"
  check "the long job ended with the server" \
    '[ -n "$JOB_PID" ] && ! kill -0 "$JOB_PID" 2>/dev/null && [ -z "$(ls -A "$T/data")" ]' \
    "job pid ${JOB_PID:-?}; left in the data dir: $(ls -A "$T/data")"
fi

# --seconds: the static build ends by itself.
LD_LIBRARY_PATH= "$T/embed_server-static" --cacert "$C/ca.cert" \
  --cert "$C/server.cert" --key "$C/server.key" --seconds 2 \
  >"$T/srv.out" 2>"$T/srv.err" &
SERVER_PID=$!
for _ in $(seq 600); do
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
  fail "embed_server-static --seconds 2 ends by itself" "still running after 60 s"
  stop_server
else
  wait "$SERVER_PID"
  src=$?
  SERVER_PID=
  check "embed_server-static --seconds 2 ends by itself, cleanly" \
    '[ $src = 0 ] && grep -q "^shutting down (--seconds)" "$T/srv.out" && tail -n 1 "$T/srv.out" | grep -qx stopped' \
    "exit $src; $(tr '\n' '|' <"$T/srv.out"); $(head -c 600 "$T/srv.err")"
fi

summary
