# tests/docker/docker_lib.sh: what the Docker tests (tests/docker/test_docker.sh
# and test_deb.sh) share: their log, tally and exit handling, a whole-test
# time limit, a Docker engine and a debian:bookworm-slim base: use a running
# engine or, as root, install docker.io and start dockerd; use a local base,
# else pull it, else debootstrap one from the host's Debian mirror and
# `docker import` it (kept as a cache).
#
# The caller sets: here (tests/docker), test_name (docker, deb), limit (the
# whole-test limit in seconds), work (a scratch directory); and defines
# cleanup (run once on every exit; stop_started_dockerd stops the dockerd
# ensure_engine started).

root=$(cd "$here/../.." && pwd)
docker=${DOCKER:-docker}
base_image=debian:bookworm-slim
export DEBIAN_FRONTEND=noninteractive
started_dockerd=""
passed=0
failed=0
t0=$(date +%s)

log() { printf '[%4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
ok() { passed=$((passed + 1)); log "ok - $*"; }
not_ok() { failed=$((failed + 1)); log "not ok - $*"; }

finish() {
  local rc=$1
  trap - EXIT INT TERM
  [ -n "${watchdog:-}" ] && kill "$watchdog" 2>/dev/null
  cleanup
  if [ "$rc" -eq 77 ]; then
    echo "$test_name: 0 passed, 0 failed, 1 skipped"
  else
    [ "$rc" -eq 0 ] && [ "$failed" -gt 0 ] && rc=1
    echo "$test_name: $passed passed, $failed failed"
  fi
  exit "$rc"
}

skip() {
  log "SKIP: $*"
  finish 77
}

fail() {
  not_ok "$*"
  finish 1
}

# Sets the exit traps and starts the whole-test limit: SIGTERM to this
# script (the watchdog's, after $limit seconds) runs the cleanup.
start_watchdog() {
  trap 'not_ok "the test script ended early (status $?)"; finish 1' EXIT
  trap 'not_ok "interrupted (signal or over the time limit)"; finish 1' INT TERM
  (
    trap 'kill "$s" 2>/dev/null; exit 0' TERM
    sleep "$limit" &
    s=$!
    wait "$s" && echo "test_$test_name: over ${limit}s, stopping" >&2 && kill -TERM $$
  ) 2>/dev/null &
  watchdog=$!
}

# Stops the background command run_bg waits for, if any.
stop_bg() {
  if [ -n "$bg_pid" ]; then
    kill -TERM "$bg_pid" 2>/dev/null
    wait "$bg_pid" 2>/dev/null
  fi
}

# Stops the dockerd ensure_engine started, if it did (TERM, then KILL
# after 30 s).
stop_started_dockerd() {
  if [ -n "$started_dockerd" ]; then
    log "stopping the dockerd this test started (pid $started_dockerd)"
    kill -TERM "$started_dockerd" 2>/dev/null
    for _ in $(seq 1 60); do
      kill -0 "$started_dockerd" 2>/dev/null || break
      sleep 0.5
    done
    kill -0 "$started_dockerd" 2>/dev/null && kill -KILL "$started_dockerd" 2>/dev/null
  fi
}

# Runs a long command in the background and waits for it, so that a signal
# (Ctrl-C, the time limit) runs the cleanup at once instead of after it.
bg_pid=""
run_bg() {
  "$@" &
  bg_pid=$!
  wait "$bg_pid"
  local rc=$?
  bg_pid=""
  return "$rc"
}

# ------------------------------------------------------------- the engine
engine_up() { timeout 20 "$docker" info >/dev/null 2>&1; }

ensure_engine() {
  if engine_up; then
    log "using the running Docker engine ($("$docker" version -f '{{.Server.Version}}' 2>/dev/null))"
    return 0
  fi
  [ "$(id -u)" -eq 0 ] || skip "no Docker engine is running and this is not root, so none can be started"
  if ! command -v dockerd >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 ||
      skip "no Docker engine is running, dockerd is not installed and there is no apt-get to install it"
    log "installing docker.io (apt-get)"
    { run_bg timeout 120 apt-get update -qq && run_bg timeout 300 apt-get install -y -qq docker.io; } \
      >"$work/apt.log" 2>&1 || {
      tail -5 "$work/apt.log"
      skip "no Docker engine is running and docker.io could not be installed (log above)"
    }
  fi
  if ! command -v "$docker" >/dev/null 2>&1; then
    skip "dockerd is here but no docker CLI ($docker)"
  fi
  log "starting dockerd (log: $work/dockerd.log)"
  dockerd >"$work/dockerd.log" 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do
    engine_up && break
    kill -0 "$started_dockerd" 2>/dev/null || break
    sleep 1
  done
  if ! engine_up; then
    tail -15 "$work/dockerd.log"
    skip "dockerd could not be started here (its log above): no Docker engine"
  fi
  log "started dockerd (pid $started_dockerd, $("$docker" version -f '{{.Server.Version}}' 2>/dev/null))"
}

# ---------------------------------------------------------- the base image
# The first Debian mirror this host's apt is configured with for bookworm.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk '
      /^[ \t]*$/ { if (uri != "" && bw) { print uri; exit } uri = ""; bw = 0; next }
      /^URIs:/   { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") bw = 1 }
      END        { if (uri != "" && bw) print uri }' "$f" | head -1
  done | head -1 | grep . && return 0
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $0 ~ / bookworm / { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }' |
    head -1 | grep .
}

make_base() {
  local mirror rootfs
  mirror=$(debian_mirror) || fail "no Debian bookworm mirror in this host's apt sources to debootstrap from"
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap (apt-get)"
    { run_bg timeout 120 apt-get update -qq && run_bg timeout 300 apt-get install -y -qq debootstrap; } \
      >"$work/apt-debootstrap.log" 2>&1 || fail "could not install debootstrap"
  fi
  rootfs="$work/rootfs"
  log "making $base_image: debootstrap --variant=minbase bookworm from the host's mirror"
  run_bg timeout 600 debootstrap --variant=minbase bookworm "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -10 "$work/debootstrap.log"
    fail "debootstrap failed (log above)"
  }
  # What makes the official image 'slim': no docs, man pages or locales from
  # later installs, no apt caches; and none of those in the base either.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null
  rm -rf "$rootfs"/usr/share/{man,info,groff,lintian,linda}/* \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* 2>/dev/null
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
    -exec rm -rf {} + 2>/dev/null
  tar -C "$rootfs" -c . |
    "$docker" import --change 'CMD ["bash"]' \
      --message "debootstrap --variant=minbase bookworm (local stand-in for $base_image)" \
      - "$base_image" >/dev/null || fail "docker import of the debootstrap tree failed"
  rm -rf "$rootfs"
  log "made $base_image locally ($("$docker" image inspect -f '{{.Size}}' "$base_image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

ensure_base() {
  if "$docker" image inspect "$base_image" >/dev/null 2>&1; then
    log "using the local $base_image"
    return 0
  fi
  log "no local $base_image: trying to pull it"
  if run_bg timeout 120 "$docker" pull -q "$base_image" >"$work/pull.log" 2>&1; then
    log "pulled $base_image"
    return 0
  fi
  log "pull failed ($(tail -1 "$work/pull.log" | cut -c1-120)); making it instead"
  make_base
}

