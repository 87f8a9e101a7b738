#!/usr/bin/env bash
# tests/docker/test_docker.sh: the container image, end to end.
#
# Builds docker/Dockerfile, makes certificates with the image's own tool,
# runs the server with its port published on 127.0.0.1 only, runs a job from
# the host with the CLI and checks its output, waits for the HEALTHCHECK to
# report healthy, checks that orphans are reaped, then `docker stop`s it and
# checks a clean exit (0, in time) with no job process left. Removes the
# container, volumes, image and files it made.
#
# Needs a Docker engine: uses a running one; otherwise, as root, installs
# docker.io if dockerd is missing and starts dockerd itself (and stops it at
# the end). Base image: uses a local debian:bookworm-slim, else tries to pull
# it, else makes one with debootstrap --variant=minbase from the host's
# configured Debian mirror and `docker import`s it. That base is kept (it is
# a cache: making it again costs ~45 s); everything else is removed.
#
# Exit status: 0 all checks passed, 1 a check failed, 77 skipped (no Docker
# engine can be had here; the message says why).
#
# Environment:
#   TELEPORT=PATH           the CLI to run on the host (default: the one in
#                           the image, copied out; run in a container with
#                           host networking if it cannot run on this host)
#   TELEPORT_IN_CONTAINER=1 run the image's CLI in a container on the host
#                           network (what happens anyway where it cannot run
#                           on the host)
#   JW_DOCKER_TEST_TIMEOUT  whole-test limit in seconds (default 900)
#   JW_DOCKER_KEEP=1        keep the image (for a look at it afterwards)
#   DOCKER                  the docker CLI (default: docker)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
limit=${JW_DOCKER_TEST_TIMEOUT:-900}
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0} # classic builder: no buildx needed

test_name=docker
run_id="jwtest-$$-$(date +%s)"
image="jobworker/teleportd:$run_id"
container="$run_id"
vol_pki="$run_id-pki"
vol_certs="$run_id-certs"
vol_data="$run_id-data"
work=$(mktemp -d /var/tmp/jw-docker-test.XXXXXX)
made_image=0
made_volumes=0

# shellcheck source=docker_lib.sh
. "$here/docker_lib.sh"

cleanup() {
  stop_bg
  if "$docker" info >/dev/null 2>&1; then
    "$docker" rm -f "$container" >/dev/null 2>&1
    if [ "$made_volumes" -eq 1 ]; then
      "$docker" volume rm -f "$vol_pki" "$vol_certs" "$vol_data" >/dev/null 2>&1
    fi
    if [ "$made_image" -eq 1 ] && [ "${JW_DOCKER_KEEP:-0}" != 1 ]; then
      "$docker" rmi -f "$image" >/dev/null 2>&1
      # The build stage's images (and a failed build's), newest first, as
      # the classic builder logged them; never one with a tag (the base).
      grep -o -- '^ ---> [0-9a-f]\{12\}$' "$work/build.log" 2>/dev/null | awk '{print $2}' |
        tac | while read -r iid; do
          tags=$("$docker" image inspect -f '{{len .RepoTags}}' "$iid" 2>/dev/null) || continue
          [ "$tags" = 0 ] && "$docker" rmi "$iid" >/dev/null 2>&1
        done
    fi
  fi
  stop_started_dockerd
  rm -rf "$work"
}

start_watchdog

# -------------------------------------------------------------------- CLI
# teleport on the host, talking to the published port. Certificates of the
# client 'alice' are in $work/alice.
tp() {
  timeout "${tp_timeout:-30}" "${tp_cmd[@]}" --addr "127.0.0.1:$port" --cacert "$cli_dir/ca.cert" \
    --cert "$cli_dir/alice.cert" --key "$cli_dir/alice.key" "$@"
}

pick_cli() {
  cli_dir="$work/alice"
  if [ -n "${TELEPORT:-}" ]; then
    tp_cmd=("$TELEPORT")
    log "CLI: $TELEPORT (from \$TELEPORT)"
    return 0
  fi
  local cid
  cid=$("$docker" create "$image") || fail "docker create (to copy the CLI out) failed"
  "$docker" cp "$cid:/usr/local/bin/teleport" "$work/teleport" >/dev/null || fail "docker cp of the CLI failed"
  "$docker" rm -v "$cid" >/dev/null
  if [ "${TELEPORT_IN_CONTAINER:-0}" != 1 ] && timeout 10 "$work/teleport" --help >/dev/null 2>&1; then
    tp_cmd=("$work/teleport")
    log "CLI: the image's teleport, copied out and run on the host"
  else
    # This host lacks its runtime libraries (or TELEPORT_IN_CONTAINER=1): run
    # it in a throw-away container on the host's network, so it still
    # connects to the published 127.0.0.1:$port.
    tp_cmd=("$docker" run --rm -i --network host --user "$(id -u):$(id -g)"
      -v "$cli_dir:$cli_dir:ro" --entrypoint teleport "$image")
    log "CLI: the image's teleport in a container on the host network"
  fi
}

free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# =================================================================== steps
ensure_engine
ensure_base

# ------------------------------------------------------------------ build
log "building $image (docker build --network host -f docker/Dockerfile)"
made_image=1 # from here on the cleanup removes the image and its stages
if run_bg timeout 600 "$docker" build --network host --force-rm \
  -f "$root/docker/Dockerfile" -t "$image" "$root" >"$work/build.log" 2>&1; then
  ok "image builds ($(grep -c '^Step ' "$work/build.log") steps)"
else
  tail -30 "$work/build.log"
  fail "docker build failed (log above)"
fi

# ------------------------------------------------------------- compose file
if "$docker" compose version >/dev/null 2>&1; then
  compose=("$docker" compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  compose=()
fi
if [ ${#compose[@]} -gt 0 ]; then
  if "${compose[@]}" -f "$root/docker/compose.yaml" config -q >"$work/compose.log" 2>&1; then
    ok "docker/compose.yaml is valid (${compose[*]} config)"
  else
    not_ok "docker/compose.yaml: $(head -3 "$work/compose.log")"
  fi
else
  log "no Compose here (docker compose / docker-compose): docker/compose.yaml not checked"
fi

# --------------------------------------------------------- image contents
size=$("$docker" image inspect -f '{{.Size}}' "$image")
layers=$("$docker" image inspect -f '{{len .RootFS.Layers}}' "$image")
base_size=$("$docker" image inspect -f '{{.Size}}' "$base_image")
base_layers=$("$docker" image inspect -f '{{len .RootFS.Layers}}' "$base_image")
log "image: $((size / 1000000)) MB in $layers layers (base $base_image: $((base_size / 1000000)) MB in $base_layers)"
"$docker" history --format '  {{.Size}}	{{.CreatedBy}}' "$image" | cut -c1-140 | head -20

# shellcheck disable=SC2016 # the script runs in the container's sh
probe=$("$docker" run --rm --network none "$image" sh -c '
  id -u; id -g
  for t in gcc cc ld meson ninja pkg-config protoc-c make; do
    command -v "$t" >/dev/null 2>&1 && echo "tool:$t"
  done
  dpkg-query -W -f "\${Package}\n" | grep -E -- "-dev\$|^(gcc|gcc-12|cpp|cpp-12|meson|ninja-build|binutils|pkgconf)\$" | sed "s/^/pkg:/"
  ls /src /build /out 2>/dev/null | head -1 | sed "s/^/src:/"
  ls /usr/include/uv.h /usr/include/openssl 2>/dev/null | sed "s/^/dev:/"
  for b in teleportd teleport jw-certs teleportd-certs openssl; do command -v "$b" >/dev/null || echo "missing:$b"; done
  [ -x /usr/bin/tini ] || echo missing:tini
' 2>&1)
uid=$(echo "$probe" | sed -n 1p)
gid=$(echo "$probe" | sed -n 2p)
if [ "$uid" = 10001 ] && [ "$gid" = 10001 ]; then
  ok "runs as uid/gid 10001 (teleport) by default"
else
  not_ok "default user is $uid:$gid, want 10001:10001 ($probe)"
fi
if echo "$probe" | grep -qE '^(tool|pkg|src|dev):'; then
  not_ok "the final image has build tools or sources: $(echo "$probe" | grep -E '^(tool|pkg|src|dev):' | tr '\n' ' ')"
else
  ok "no compiler, build tools, headers or sources in the final image"
fi
if echo "$probe" | grep -q '^missing:'; then
  not_ok "missing from the image: $(echo "$probe" | grep '^missing:' | tr '\n' ' ')"
else
  ok "teleportd, teleport, jw-certs, teleportd-certs, openssl and tini are in the image"
fi
entry=$("$docker" image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{.Config.Healthcheck.Test}}' "$image")
case "$entry" in
'["/usr/bin/tini","--"] ["teleportd"] '*) ok "PID 1 is tini, running teleportd; a HEALTHCHECK is set" ;;
*) not_ok "entrypoint/cmd/healthcheck are not tini+teleportd: $entry" ;;
esac
# The probe is grpc.health.v1.Health/Check: no job, no List of jobs.
case "$entry" in
*" health "*) ok "the HEALTHCHECK runs teleport health" ;;
*) not_ok "the HEALTHCHECK does not run teleport health: $entry" ;;
esac

# ------------------------------------------------------------ certificates
made_volumes=1
for v in "$vol_pki" "$vol_certs" "$vol_data"; do
  "$docker" volume create "$v" >/dev/null || fail "docker volume create $v failed"
done
certs_run() {
  "$docker" run --rm -i --network none -v "$vol_pki:/pki" -v "$vol_certs:/certs" "$image" teleportd-certs "$@"
}
log "making certificates with the image's teleportd-certs (RSA 4096: takes a while)"
if certs_run init >"$work/certs.log" 2>&1 && certs_run client alice >>"$work/certs.log" 2>&1; then
  mkdir -p "$work/alice"
  if certs_run export alice | tar -x --no-same-owner -C "$work/alice" &&
    [ -s "$work/alice/alice.key" ] && [ -s "$work/alice/alice.cert" ] && [ -s "$work/alice/ca.cert" ]; then
    ok "certificates made in volumes by the image's tool; alice's exported to the host"
  else
    fail "exporting alice's certificate failed"
  fi
else
  cat "$work/certs.log"
  fail "teleportd-certs init/client failed (log above)"
fi
perm=$("$docker" run --rm --network none -v "$vol_certs:/certs:ro" "$image" \
  sh -c 'ls /certs; stat -c "%u %a %n" /certs/server.key /certs/healthcheck.key' 2>&1)
if echo "$perm" | grep -q '^10001 600 /certs/server.key' && ! echo "$perm" | grep -qx 'ca.key'; then
  ok "the server's volume has its key (10001, 0600) and no CA key"
else
  not_ok "unexpected certificate volume: $perm"
fi

# -------------------------------------------------------------------- run
port=$(free_port) || fail "no free port on 127.0.0.1"
log "starting the server: -p 127.0.0.1:$port:3000"
"$docker" run -d --name "$container" \
  -p "127.0.0.1:$port:3000" \
  -v "$vol_certs:/certs:ro" -v "$vol_data:/var/lib/teleportd" \
  --cap-drop ALL --security-opt no-new-privileges \
  --health-interval 2s --health-start-period 30s \
  "$image" >/dev/null || fail "docker run failed"

published=$("$docker" port "$container" 3000/tcp)
if [ "$published" = "127.0.0.1:$port" ]; then
  ok "port published on 127.0.0.1 only ($published)"
else
  not_ok "port published as '$published', want only 127.0.0.1:$port"
fi

pick_cli
# Wait for the server to take connections.
up=0
deadline=$(($(date +%s) + 60))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if tp_timeout=10 tp list >/dev/null 2>"$work/list.err"; then
    up=1
    break
  fi
  [ "$("$docker" inspect -f '{{.State.Running}}' "$container")" = true ] || break
  sleep 0.5
done
if [ "$up" -ne 1 ]; then
  "$docker" logs "$container" 2>&1 | tail -20
  cat "$work/list.err"
  fail "the server did not answer 'teleport list' from the host"
fi

marker="hello from the container $run_id"
if id=$(tp_timeout=20 tp start -- echo "$marker" 2>"$work/start.err") && id=$(echo "$id" | tail -1 | tr -d '[:space:]') &&
  [ -n "$id" ]; then
  out=$(tp_timeout=30 tp output "$id" 2>"$work/output.err")
  if [ "$out" = "$marker" ]; then
    ok "a job started from the host ran: 'teleport output $id' printed its output"
  else
    not_ok "job output was '$out' ($(cat "$work/output.err")), want '$marker'"
  fi
else
  not_ok "teleport start failed: $(cat "$work/start.err")"
fi

# --------------------------------------------------------------- health
health=""
for _ in $(seq 1 60); do
  health=$("$docker" inspect -f '{{.State.Health.Status}}' "$container")
  [ "$health" = healthy ] && break
  [ "$health" = unhealthy ] && break
  sleep 1
done
if [ "$health" = healthy ]; then
  ok "the HEALTHCHECK (teleport health as 'healthcheck') reports healthy"
else
  "$docker" inspect -f '{{json .State.Health}}' "$container" | cut -c1-600
  not_ok "health status is '$health', want healthy"
fi

# ------------------------------------------------------- reaping orphans
# Zombies whose parent is a process of the container. The host's ps, not
# `docker top`: a zombie has already left the container's cgroup, so docker
# top never lists one.
container_zombies() {
  local pids
  pids=$("$docker" top "$container" -eo pid 2>/dev/null | awk 'NR > 1 { print $1 }' | tr '\n' ' ')
  [ -n "$pids" ] || { echo "cannot list the container's processes"; return; }
  ps -eo pid=,ppid=,stat=,args= | awk -v set="$pids" '
    BEGIN { n = split(set, a, " "); for (i = 1; i <= n; i++) in_c[a[i]] = 1 }
    ($2 in in_c) && $3 ~ /^Z/'
}
orphan_marker=$((1000 + RANDOM % 8000))
# The job's subshell leaves a child behind and exits: the child is orphaned,
# reparented to the container's PID 1, and exits a second later while the
# job still runs. Unless PID 1 reaps it, it stays a zombie.
tp_timeout=20 tp start -- sh -c "(sleep 1.$orphan_marker &); sleep 4" >/dev/null 2>"$work/orphan.err" ||
  not_ok "starting the orphan-making job failed: $(cat "$work/orphan.err")"
sleep 2.5
zombies=$(container_zombies)
if [ -z "$zombies" ]; then
  ok "orphans of jobs are reaped (no zombie under any process of the container)"
else
  not_ok "zombies in the container: $zombies"
fi

# ---------------------------------------------------------------- stop
# Two jobs at the stop: one that ends on SIGTERM and one that ignores it
# (teleportd must SIGKILL it after the image's 8 s grace and still exit
# before docker stop's 10 s run out and it SIGKILLs PID 1).
#
# Whether teleportd beat docker's SIGKILL is the state docker records
# ("exited 0", not 137): docker itself times its 10 s, so no clock of ours
# is raced. The wall time of `docker stop` is checked only as a bound on
# hanging: at least the grace (the stubborn job must be waited for) and at
# most the grace plus 10 s for docker's own work around it (delivering the
# signal, noticing the exit, tearing the container down), which on a
# loaded 2-core machine has taken over 2.8 s (10.8 s in all).
grace_s=$("$docker" image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$image" |
  sed -n 's/^TELEPORTD_STOP_TIMEOUT=\([0-9][0-9]*\)s$/\1/p')
[ -n "$grace_s" ] || not_ok "the image sets no TELEPORTD_STOP_TIMEOUT in seconds"
grace_s=${grace_s:-8}
stop_bound_ms=$(((grace_s + 10) * 1000))
m1=$((100000 + RANDOM % 400000))
m2=$((500000 + RANDOM % 400000))
tp_timeout=20 tp start -- sleep "$m1" >/dev/null 2>"$work/long.err" ||
  not_ok "starting a long job failed: $(cat "$work/long.err")"
tp_timeout=20 tp start -- sh -c "trap '' TERM; sleep $m2" >/dev/null 2>"$work/stubborn.err" ||
  not_ok "starting a job that ignores SIGTERM failed: $(cat "$work/stubborn.err")"
sleep 1
if pgrep -f "^sleep $m1\$" >/dev/null && pgrep -f "^sleep $m2\$" >/dev/null; then
  ok "two long jobs run in the container, one ignoring SIGTERM (seen from the host)"
else
  not_ok "the long jobs are not running: $(pgrep -af "^sleep ($m1|$m2)\$")"
fi
s0=$(date +%s%N)
"$docker" stop "$container" >/dev/null || not_ok "docker stop failed"
took_ms=$((($(date +%s%N) - s0) / 1000000))
state=$("$docker" inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.State.OOMKilled}}' "$container")
if [ "$state" = "exited 0 false" ] && [ "$took_ms" -ge $((grace_s * 1000)) ] &&
  [ "$took_ms" -lt "$stop_bound_ms" ]; then
  ok "docker stop: teleportd stopped its jobs and exited 0 before docker's 10 s SIGKILL, in ${took_ms} ms (grace ${grace_s} s)"
else
  "$docker" logs "$container" 2>&1 | tail -20
  not_ok "docker stop: state '$state' after ${took_ms} ms, want 'exited 0' (teleportd out before docker's 10 s SIGKILL) in ${grace_s}..$((grace_s + 10)) s"
fi
left=$(pgrep -af "^(sleep ($m1|$m2|1\.$orphan_marker)|sh -c trap '' TERM; sleep $m2)\$")
if [ -z "$left" ]; then
  ok "no job process is left after the stop"
else
  not_ok "job processes are left after the stop: $left"
fi
if "$docker" logs "$container" >"$work/server.log" 2>&1; then
  log "server log (last lines):"
  tail -5 "$work/server.log" | sed 's/^/    /'
fi

finish 0
