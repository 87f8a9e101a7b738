#!/usr/bin/env bash
# tests/docker/test_deb.sh: the Debian package on a clean bookworm.
#
# Installs build/deb/jobworker_*.deb (made by `make deb` if absent) with
# apt-get into a fresh debian:bookworm-slim container, Depends resolved from
# the host's Debian mirror (its /etc/apt/sources.list.d/debian.sources,
# reached over the host network as test_docker.sh's build does). Then, in
# the container: the package's files and directories, certificates made
# with jw-certs the way postinst's message says, teleportd started with the
# unit's own ExecStart line and environment file (a container has no
# systemd), `teleport start -l echo hi`, the unit's ExecReload (logged,
# nothing changes), SIGTERM (exit 0), and `dpkg --purge` (no file left).
# Removes its container; keeps the base image (a cache, as test_docker.sh).
#
# Exit status: 0 all passed, 1 a check failed, 77 skipped (no Docker engine
# can be had here; the message says why).
#
# Environment:
#   JW_DEB                 the package (default: the newest build/deb/*.deb)
#   JW_DOCKER_TEST_TIMEOUT whole-test limit in seconds (default 600)
#   DOCKER                 the docker CLI (default: docker)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
limit=${JW_DOCKER_TEST_TIMEOUT:-600}

test_name=deb
container="jwdeb-$$-$(date +%s)"
work=$(mktemp -d /var/tmp/jw-deb-test.XXXXXX)

# shellcheck source=docker_lib.sh
. "$here/docker_lib.sh"

cleanup() {
  stop_bg
  if "$docker" info >/dev/null 2>&1; then
    "$docker" rm -f -v "$container" >/dev/null 2>&1
  fi
  stop_started_dockerd
  rm -rf "$work"
}

start_watchdog

# ct CMD...: runs a shell command line in the container, bounded.
ct() { timeout "${in_timeout:-60}" "$docker" exec "$container" sh -c "$*"; }

# ------------------------------------------------------------- the package
deb=${JW_DEB:-}
if [ -z "$deb" ]; then
  deb=$(ls -t "$root"/build/deb/jobworker_*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then
    log "no build/deb/jobworker_*.deb: making it (packaging/deb/build-deb.sh)"
    deb=$(run_bg "$root/packaging/deb/build-deb.sh" | tail -1) || fail "make deb failed"
  fi
fi
[ -f "$deb" ] || fail "no package at '$deb'"
log "package: $deb ($(stat -c %s "$deb") bytes)"

ensure_engine
ensure_base

# ------------------------------------------------------------ install
sources=/etc/apt/sources.list.d/debian.sources
mounts=(-v "$deb:/tmp/$(basename "$deb"):ro")
if [ -r "$sources" ]; then
  # The host's mirror, in place of whatever the base was made with.
  mounts+=(-v "$sources:/etc/apt/sources.list.d/debian.sources:ro")
fi
"$docker" run -d --name "$container" --network host "${mounts[@]}" \
  "$base_image" sleep 3600 >/dev/null || fail "docker run of $base_image failed"
[ -r "$sources" ] && ct 'rm -f /etc/apt/sources.list'
log "apt-get install ./$(basename "$deb") in a clean $base_image"
if in_timeout=400 ct "apt-get update -qq && apt-get install -y -qq --no-install-recommends /tmp/$(basename "$deb")" \
  >"$work/apt.log" 2>&1; then
  ok "apt-get installs the package, Depends resolved from the mirror ($(grep -c '^Setting up' "$work/apt.log") packages set up)"
else
  tail -20 "$work/apt.log"
  fail "apt-get install of the package failed (log above)"
fi
if grep -q 'teleportd needs certificates in /etc/teleportd' "$work/apt.log"; then
  ok "postinst says how to make certificates and makes none"
else
  not_ok "postinst did not print how to make certificates"
fi
probe=$(ct 'stat -c "%a %n" /var/lib/teleportd /etc/teleportd
  ls /etc/teleportd
  for f in /usr/sbin/teleportd /usr/bin/teleport /usr/bin/jw-certs \
    /usr/lib/systemd/system/teleportd.service \
    /usr/share/bash-completion/completions/teleport \
    /usr/share/zsh/vendor-completions/_teleport \
    /usr/share/fish/vendor_completions.d/teleport.fish; do
    [ -e "$f" ] || echo "missing:$f"
  done
  dpkg-query -W -f "\${Conffiles}\n" jobworker' 2>&1)
if echo "$probe" | grep -qx '700 /var/lib/teleportd' && echo "$probe" | grep -qx '755 /etc/teleportd' &&
  ! echo "$probe" | grep -q '^missing:' && ! echo "$probe" | grep -q 'server.key'; then
  ok "binaries, unit and completions installed; /var/lib/teleportd 0700; no key made"
else
  not_ok "unexpected install: $probe"
fi
# The man pages from the package itself: a slim base excludes
# /usr/share/man from what dpkg unpacks.
nman=$(dpkg-deb -c "$deb" | grep -cE '/usr/share/man/man[18]/(teleport\.1|jw-certs\.1|teleportd\.8)\.gz$')
if [ "$nman" = 3 ] && echo "$probe" | grep -q '/etc/teleportd/teleportd.env'; then
  ok "three man pages in the package; teleportd.env is a conffile"
else
  not_ok "man pages or conffiles: $probe"
fi

# -------------------------------------------------------- certificates
log "making certificates with jw-certs in the container (RSA 4096: takes a while)"
if in_timeout=300 ct 'jw-certs --dir /root/jw-ca init && jw-certs --dir /root/jw-ca server &&
  jw-certs --dir /root/jw-ca client alice &&
  install -m 0644 /root/jw-ca/ca.cert /root/jw-ca/server.cert /etc/teleportd/ &&
  install -m 0600 /root/jw-ca/server.key /etc/teleportd/' >"$work/certs.log" 2>&1; then
  ok "jw-certs makes a CA, server and client certificate; installed in /etc/teleportd"
else
  cat "$work/certs.log"
  fail "jw-certs failed (log above)"
fi

# ------------------------------------------------------------- run
port=""
for _ in $(seq 1 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    port=$p
    break
  fi
done
[ -n "$port" ] || fail "no free port on 127.0.0.1"
unit=/usr/lib/systemd/system/teleportd.service
exec_start=$(ct "sed -n 's/^ExecStart=//p' $unit")
reload=$(ct "sed -n 's/^ExecReload=//p' $unit")
log "ExecStart=$exec_start"
# As systemd would run it: the environment file's variables, then the
# line. The address is this test's loopback port (the container shares the
# host's network).
ct "cat >/root/run-teleportd <<EOS
set -a
. /etc/teleportd/teleportd.env
TELEPORTD_ADDR=127.0.0.1:$port
set +a
$exec_start 2>/var/log/teleportd.log &
echo \\\$! >/run/teleportd.pid
wait \\\$!
echo \\\$? >/run/teleportd.rc
EOS"
"$docker" exec -d "$container" sh /root/run-teleportd || fail "starting teleportd failed"
tp="teleport --addr 127.0.0.1:$port --cacert /root/jw-ca/ca.cert --cert /root/jw-ca/alice.cert --key /root/jw-ca/alice.key"
up=0
for _ in $(seq 1 120); do
  ct "$tp list" >/dev/null 2>&1 && up=1 && break
  sleep 0.5
done
if [ "$up" -ne 1 ]; then
  ct 'cat /var/log/teleportd.log' | tail -10
  fail "teleportd from the unit's ExecStart did not answer within 60 s (log above)"
fi
ok "teleportd runs from the unit's ExecStart line and answers teleport list"
out=$(in_timeout=60 ct "$tp start -l echo hi" 2>"$work/start.err")
rc=$?
if [ "$rc" -eq 0 ] && [ "$out" = hi ]; then
  ok "teleport start -l echo hi printed 'hi' and exited 0"
else
  not_ok "teleport start -l echo hi: exit $rc, output '$out', stderr $(head -c 300 "$work/start.err")"
  ct 'tail -5 /var/log/teleportd.log'
fi

pid=$(ct 'cat /run/teleportd.pid')
ct "${reload//\$MAINPID/$pid}" || not_ok "ExecReload ($reload) failed"
sleep 2
if ct "grep -q 'event=reloaded' /var/log/teleportd.log && kill -0 $pid && $tp list >/dev/null"; then
  ok "the unit's ExecReload reloads teleportd (same pid) and it keeps serving"
else
  not_ok "after ExecReload: $(ct 'tail -3 /var/log/teleportd.log')"
fi
ct "kill -TERM $pid"
rc=""
for _ in $(seq 1 60); do
  rc=$(ct 'cat /run/teleportd.rc 2>/dev/null') && [ -n "$rc" ] && break
  sleep 0.5
done
if [ "$rc" = 0 ]; then
  ok "SIGTERM: teleportd exits 0"
else
  not_ok "SIGTERM: teleportd's exit status '$rc'"
fi

# ------------------------------------------------------------ purge
if in_timeout=120 ct 'dpkg --purge jobworker' >"$work/purge.log" 2>&1; then
  left=$(ct 'for f in /usr/sbin/teleportd /usr/bin/teleport /var/lib/teleportd \
    /etc/teleportd/teleportd.env /usr/lib/systemd/system/teleportd.service; do
    [ -e "$f" ] && echo "$f"; done; true')
  if [ -z "$left" ]; then
    ok "dpkg --purge removes the package, its conffile and /var/lib/teleportd"
  else
    not_ok "dpkg --purge left: $left"
  fi
else
  not_ok "dpkg --purge failed: $(tail -5 "$work/purge.log")"
fi

log "took $(($(date +%s) - t0)) s"
finish 0
