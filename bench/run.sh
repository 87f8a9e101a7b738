#!/usr/bin/env bash
# bench/run.sh: the whole benchmark in one command (`make bench`).
#
# Builds the benchmark programs (meson -Dbench=true), makes certificates,
# measures the machine's limits (pipe, TLS bulk, posix_spawn), starts
# teleportd and the gRPC C++ peer on the same certificates, drives both
# with the same load generators (bench/load.c, batched and unbatched, and
# bench/grpc_load.cc, gRPC C++'s own async client) and writes
# bench/results/latest.md and latest.json (bench/report.py). Each figure is
# run BENCH_RUNS times (default 3), teleportd and the peer interleaved.
# With BENCH_BASELINE (a teleportd binary, or a commit built in a temporary
# worktree) every teleportd figure is also taken of that binary, run by run
# between teleportd and the peer, and the report adds the after/before
# ratio of each.
#
# Loopback only; every process it starts is stopped on exit; bounded in
# time (each load run has a timeout; the whole set takes 6 to 10 minutes on
# two cores, BENCH_BASELINE included). Sizes can be changed through the environment (see below).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BENCH_BUILD:-build-bench}
WORK=${BENCH_WORK:-$BUILD/bench-work}
OUT=${BENCH_OUT:-bench/results}
RUNS=${BENCH_RUNS:-3}
# The Python with grpcio (Debian's; a python3 first on PATH may lack it).
PY=${BENCH_PYTHON:-/usr/bin/python3}
MIB=$((1024 * 1024))
# Output sizes. The issue's class is 4 GiB; the default is smaller so that
# the whole set fits in 10 minutes on two cores (the figures are rates).
LIVE_BYTES=${BENCH_LIVE_BYTES:-$((512 * MIB))}
# The job nobody reads is then replayed: one size for both figures.
NOBODY_BYTES=${BENCH_NOBODY_BYTES:-$((1024 * MIB))}
FAN100_BYTES=${BENCH_FAN100_BYTES:-$((8 * MIB))}
FAN1000_BYTES=${BENCH_FAN1000_BYTES:-$((1 * MIB))}
BULK_BYTES=${BENCH_BULK_BYTES:-$((512 * MIB))}
# The finished log GetOutput resumes in (at its last MiB) and tails.
SEEK_BYTES=${BENCH_SEEK_BYTES:-$((1024 * MIB))}
PIPE_BYTES=${BENCH_PIPE_BYTES:-$((1024 * MIB))}
# The unary and Start windows: 1 s keeps the whole set within 10 minutes.
UNARY_SECONDS=${BENCH_UNARY_SECONDS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-200}
STALL_SUBS=${BENCH_STALL_SUBS:-200}
STALL_CONNS=${BENCH_STALL_CONNS:-20}
STALL_BYTES=${BENCH_STALL_BYTES:-$((64 * MIB))}
# The line-printing job (one write per line) of the short-records figures.
LINES=${BENCH_LINES:-1000000}
# The programs under test; overriding them measures a patched build against
# the same peer and limits (the results say which binaries were used).
TELEPORTD=${BENCH_TELEPORTD:-$BUILD/server/teleportd}
JW_LOAD=${BENCH_LOAD:-$BUILD/bench/jw-load}
GRPC_LOAD=${BENCH_GRPC_LOAD:-$BUILD/bench/grpc-load}
# The teleportd to compare with (before/after): a binary or a commit.
BASELINE=${BENCH_BASELINE:-}
BASE_TELEPORTD="" BASE_TREE=""

BENCH_PKGS="libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev \
protobuf-compiler g++ util-linux iproute2 procps python3 coreutils \
python3-grpcio python3-grpc-tools"
SUDO=$([ "$(id -u)" = 0 ] || echo sudo)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }

# Installs only what is missing (the Makefile's deps does the same for the
# build's own packages).
deps() {
  local missing="" p
  for p in $BENCH_PKGS; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
      grep -q '^install ok installed$' || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    log "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends $missing >/dev/null
  fi
}

build() {
  if [ ! -f "$BUILD/build.ninja" ]; then
    meson setup "$BUILD" --buildtype=debugoptimized -Dbench=true \
      -Dtests=false >/dev/null
  else
    meson configure "$BUILD" -Dbench=true -Dtests=false >/dev/null
  fi
  ninja -C "$BUILD" >/dev/null
}

certs() {
  local d=$WORK/certs
  if [ ! -f "$d/bench.key" ]; then
    rm -rf "$d"
    certs/jw-certs --dir "$d" init >/dev/null
    certs/jw-certs --dir "$d" server >/dev/null
    certs/jw-certs --dir "$d" client bench >/dev/null
  fi
  CA=$d/ca.cert SCERT=$d/server.cert SKEY=$d/server.key
  CCERT=$d/bench.cert CKEY=$d/bench.key
}

# The server gets CPU 0 and the load generator CPU 1 when there are two.
if [ "$(nproc)" -ge 2 ]; then
  SRV_PIN=(taskset -c 0)
  LOAD_PIN=(taskset -c 1)
  SRV_CPU=0 LOAD_CPU=1
else
  SRV_PIN=() LOAD_PIN=() SRV_CPU=-1 LOAD_CPU=-1
fi

# The servers by name: jw (teleportd), base (the baseline teleportd, with
# BENCH_BASELINE) and grpc (the peer).
declare -A PID=() PORT=()
JW_SERVERS=jw
# Flags teleportd gets beyond the usual (the Start figure without records).
JW_EXTRA=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_listen() {
  local port=$1 pid=$2 i
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    ss -Hltn "sport = :$port" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  return 1
}

# start_teleportd NAME BINARY: one teleportd on a data directory of its own.
start_teleportd() {
  local name=$1 bin=$2 port
  rm -rf "$WORK/data-$name"
  port=$(free_port)
  "${SRV_PIN[@]}" "$bin" --addr "127.0.0.1:$port" \
    --cacert "$CA" --cert "$SCERT" --key "$SKEY" --data-dir "$WORK/data-$name" \
    --max-connections-per-client 1000 "${JW_EXTRA[@]}" \
    --log-level warn 2>>"$WORK/teleportd-$name.log" &
  PID[$name]=$! PORT[$name]=$port
  wait_listen "$port" "${PID[$name]}" || {
    log "teleportd ($name) did not start; see $WORK/teleportd-$name.log"
    return 1
  }
}

start_servers() {
  local s
  for s in $JW_SERVERS; do
    if [ "$s" = base ]; then start_teleportd base "$BASE_TELEPORTD"; else
      start_teleportd jw "$TELEPORTD"
    fi
  done
  # A new file each time: the port of the peer before must not be read.
  rm -f "$WORK/peer.out"
  "${SRV_PIN[@]}" "$BUILD/bench/grpc-peer" --addr 127.0.0.1:0 --cacert "$CA" \
    --cert "$SCERT" --key "$SKEY" >"$WORK/peer.out" 2>>"$WORK/peer.log" &
  PID[grpc]=$!
  local i port=""
  for i in $(seq 1 100); do
    port=$(sed -n 's/^ready port=//p' "$WORK/peer.out" 2>/dev/null)
    [ -n "$port" ] && break
    kill -0 "${PID[grpc]}" 2>/dev/null || break
    sleep 0.1
  done
  PORT[grpc]=$port
  [ -n "$port" ] || {
    log "grpc-peer did not start; see $WORK/peer.log"
    return 1
  }
}

stop_pid() {
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

stop_servers() {
  local s
  for s in "${!PID[@]}"; do
    stop_pid "${PID[$s]}"
  done
  PID=() PORT=()
}

# BENCH_BASELINE: a teleportd binary as it is, or a commit (anything git
# rev-parse takes) built in a temporary worktree, removed on exit.
baseline() {
  [ -n "$BASELINE" ] || return 0
  if [ -f "$BASELINE" ] && [ -x "$BASELINE" ]; then
    BASE_TELEPORTD=$BASELINE
  else
    local rev
    rev=$(git rev-parse --verify -q "$BASELINE^{commit}") || {
      log "BENCH_BASELINE=$BASELINE is neither an executable nor a commit"
      exit 2
    }
    BASE_TREE=$(mktemp -d "${TMPDIR:-/tmp}/jw-bench-base.XXXXXX")
    log "building the baseline teleportd of $rev in $BASE_TREE"
    git worktree add -q --detach "$BASE_TREE/src" "$rev"
    # The source directory named: with the build directory alone, meson
    # takes the current one (this checkout), and the "baseline" would be
    # the tree under test built a second time.
    meson setup "$BASE_TREE/src/build" "$BASE_TREE/src" \
      --buildtype=debugoptimized -Dtests=false >/dev/null
    local src
    src=$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["directories"]["source"])' \
      "$BASE_TREE/src/build/meson-info/meson-info.json")
    if [ "$src" != "$BASE_TREE/src" ]; then
      log "the baseline build's source is $src, not $BASE_TREE/src"
      exit 2
    fi
    ninja -C "$BASE_TREE/src/build" server/teleportd >/dev/null
    BASE_TELEPORTD=$BASE_TREE/src/build/server/teleportd
  fi
  JW_SERVERS="jw base"
}

cleanup() {
  stop_servers
  rm -rf "$WORK"/data-* "$WORK"/pagecache-*.tmp
  if [ -n "$BASE_TREE" ]; then
    git worktree remove --force "$BASE_TREE/src" 2>/dev/null || true
    rm -rf "$BASE_TREE"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RAW=""

# record FIGURE SERVER RUN JSON: one line of raw results.
record() {
  printf '{"figure":"%s","server":"%s","run":%d,"result":%s}\n' \
    "$1" "$2" "$3" "$4" >>"$RAW"
}

# load FIGURE SERVER RUN MODE ARGS...: one run of the load generator
# against SERVER (jw, base or grpc), its result recorded; prints the JSON.
load() {
  local fig=$1 srv=$2 run=$3 mode=$4 port pid out
  shift 4
  port=${PORT[$srv]} pid=${PID[$srv]}
  local gen=$JW_LOAD
  # A figure whose name starts with gc_ is driven by gRPC C++'s client.
  case $fig in gc_*) gen=$GRPC_LOAD ;; esac
  if out=$(timeout --foreground 150 "${LOAD_PIN[@]}" "$gen" "$mode" \
    --addr "127.0.0.1:$port" --cacert "$CA" --cert "$CCERT" --key "$CKEY" \
    --server-pid "$pid" --timeout 120 "$@" 2>>"$WORK/load.err") &&
    [ -n "$out" ]; then
    record "$fig" "$srv" "$run" "$out"
    printf '%s\n' "$out"
  else
    log "$fig $srv run $run failed (see $WORK/load.err)"
    record "$fig" "$srv" "$run" '{"error":"failed"}'
    return 1
  fi
}

# load_both FIG RUN MODE ARGS...: load against each server in turn (each
# sees the figures in the same order as before), its output dropped; a
# failure is recorded by load and does not end the run.
load_both() {
  local fig=$1 run=$2 s
  shift 2
  for s in $JW_SERVERS grpc; do
    load "$fig" "$s" "$run" "$@" >/dev/null || true
  done
}

# load_jw FIG RUN MODE ARGS...: the same against teleportd alone (and the
# baseline after it).
load_jw() {
  local fig=$1 run=$2 s
  shift 2
  for s in $JW_SERVERS; do
    load "$fig" "$s" "$run" "$@" >/dev/null || true
  done
}

# dd_json LINE: dd's last line as {"bytes","seconds","mib_s"}.
dd_json() {
  python3 - "$1" <<'EOF'
import re, sys
m = re.match(r"(\d+) bytes .* copied, ([\d.]+) s", sys.argv[1])
b, s = int(m.group(1)), float(m.group(2))
print('{"bytes":%d,"seconds":%.3f,"mib_s":%.1f}' % (b, s, b / 1048576 / s))
EOF
}

field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

machine_json() {
  local model mem
  model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
  mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  python3 - "$model" "$(nproc)" "$mem" "$(uname -r)" \
    "$(openssl version | cut -d' ' -f2)" \
    "$(pkg-config --modversion libuv)" "$(pkg-config --modversion libnghttp2)" \
    "$(pkg-config --modversion grpc++)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    "$SRV_CPU" "$LOAD_CPU" "$TELEPORTD" "$JW_LOAD $GRPC_LOAD" \
    "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
    "$BASE_TELEPORTD${BASE_TREE:+ ($BASELINE)}" <<'EOF'
import json, sys
a = sys.argv[1:]
print(json.dumps({"cpu": a[0], "cores": int(a[1]), "memory": a[2],
                  "kernel": a[3], "openssl": a[4], "libuv": a[5],
                  "nghttp2": a[6], "grpc": a[7], "load_before": a[8],
                  "server_cpu": int(a[9]), "load_cpu": int(a[10]),
                  "teleportd": a[11], "jw_load": a[12], "commit": a[13],
                  "baseline": a[14]}))
EOF
}

main() {
  local t0 r out
  t0=$(date +%s)
  deps
  log "building ($BUILD)"
  build
  baseline
  mkdir -p "$WORK" "$OUT"
  certs
  RAW=$WORK/raw.jsonl
  : >"$RAW"
  : >"$WORK/load.err"
  machine_json >"$WORK/machine.json"
  log "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

  log "machine limits: pipe, page cache, TLS bulk, posix_spawn"
  for r in $(seq 1 "$RUNS"); do
    out=$( ("${SRV_PIN[@]}" dd if=/dev/zero bs=64K count=$((PIPE_BYTES / 65536)) \
      status=none | "${LOAD_PIN[@]}" dd of=/dev/null bs=64K) 2>&1 | tail -1)
    record pipe raw "$r" "$(dd_json "$out")"
    # What the log's writes meet before any of teleportd's costs: a new
    # file written into the page cache (no fsync), on the server's CPU.
    # Where the kernel hands out pages never touched before, this can be
    # far below the pipe (a VM whose memory the host backs on first
    # touch); pages a deleted file gave back are fast again, so each run's
    # file is kept until the last run has written its own.
    out=$("${SRV_PIN[@]}" dd if=/dev/zero of="$WORK/pagecache-$r.tmp" \
      bs=64K count=$((LIVE_BYTES / 65536)) 2>&1 | tail -1)
    record pagecache raw "$r" "$(dd_json "$out")"
    out=$("$BUILD/bench/jw-tlsbulk" --cacert "$CA" --cert "$SCERT" \
      --key "$SKEY" --client-cert "$CCERT" --client-key "$CKEY" \
      --bytes "$BULK_BYTES" --server-cpu "$SRV_CPU" --client-cpu "$LOAD_CPU")
    record tls_bulk raw "$r" "$out"
    # The log's own replay cost per record (no network): 16-byte records
    # (a line-printing job's) against 8 KiB ones.
    for n in 16 8192; do
      out=$("${LOAD_PIN[@]}" "$BUILD/bench/jw-replaycost" --dir "$WORK" \
        --bytes $((64 * MIB)) --record "$n")
      record "replaycost_$n" raw "$r" "$out"
    done
    for n in 1 8; do
      out=$("${SRV_PIN[@]}" "$BUILD/bench/jw-spawnrate" --seconds 1 \
        --inflight "$n")
      record "spawn_$n" raw "$r" "$out"
    done
  done

  rm -f "$WORK"/pagecache-*.tmp
  log "starting the servers: $JW_SERVERS grpc"
  start_servers

  local s j
  log "resume at 1023 MiB and tail of a $SEEK_BYTES-byte finished log"
  for r in $(seq 1 "$RUNS"); do
    for s in $JW_SERVERS; do
      if out=$(timeout --foreground 600 "${LOAD_PIN[@]}" "$PY" \
        bench/seek_tail.py --addr "127.0.0.1:${PORT[$s]}" --cacert "$CA" \
        --cert "$CCERT" --key "$CKEY" --bytes "$SEEK_BYTES" \
        2>>"$WORK/load.err"); then
        record seek_tail "$s" "$r" "$out"
      else
        log "seek_tail $s run $r failed (see $WORK/load.err)"
        record seek_tail "$s" "$r" '{"error":"failed"}'
      fi
    done
  done

  # As a real gRPC client sends (one call per write): gRPC C++'s own
  # client, and jw-load --unbatched; then jw-load batched, as before.
  log "unary Status: gRPC C++ client, jw-load unbatched, jw-load batched"
  local c
  for r in $(seq 1 "$RUNS"); do
    for c in 1 4; do
      for n in 1 64; do
        load_both "gc_unary_${c}_$n" "$r" unary --conns "$c" --inflight "$n" \
          --duration "$UNARY_SECONDS"
      done
    done
    load_both unary_unbatched_p50_1 "$r" unary --unbatched --conns 1 \
      --inflight 1 --duration "$UNARY_SECONDS"
    load_both unary_unbatched_qps_64 "$r" unary --unbatched --conns 4 \
      --inflight 64 --duration "$UNARY_SECONDS"
    load_both unary_p50_1 "$r" unary --conns 1 --inflight 1 \
      --duration "$UNARY_SECONDS"
    for n in 64 256; do
      load_both "unary_qps_$n" "$r" unary --conns 4 --inflight "$n" \
        --duration "$UNARY_SECONDS"
    done
  done

  # With durable records (the default) and without (--durable false), the
  # two interleaved run by run on fresh servers.
  log "Start of /bin/true, with durable records and without"
  for r in $(seq 1 "$RUNS"); do
    for n in 1 8; do
      load_jw "start_$n" "$r" start --conns 1 --inflight "$n" \
        --duration "$UNARY_SECONDS"
    done
    stop_servers
    JW_EXTRA=(--durable false)
    start_servers
    for n in 1 8; do
      load_jw "start_nodurable_$n" "$r" start --conns 1 --inflight "$n" \
        --duration "$UNARY_SECONDS"
    done
    stop_servers
    JW_EXTRA=()
    start_servers
  done

  # Fresh servers: the figures below are RSS peaks and deltas, which a
  # heap warmed by the runs before would hide.
  stop_servers
  start_servers
  log "live output ($LIVE_BYTES bytes, 1 stream; jw-load and gRPC C++)"
  for r in $(seq 1 "$RUNS"); do
    load_both live "$r" stream --bytes "$LIVE_BYTES"
    load_both gc_live "$r" stream --bytes "$LIVE_BYTES"
  done

  # Every nobody run first (each an RSS delta), then the replays of them.
  log "a job writes $NOBODY_BYTES bytes, nobody reads; then replay"
  declare -A nobody_job=()
  for r in $(seq 1 "$RUNS"); do
    for s in $JW_SERVERS; do
      if out=$(load nobody "$s" "$r" nobody --bytes "$NOBODY_BYTES"); then
        nobody_job[$s.$r]=$(field "$out" job)
      fi
    done
  done
  for r in $(seq 1 "$RUNS"); do
    for s in $JW_SERVERS; do
      j=${nobody_job[$s.$r]:-}
      [ -n "$j" ] || continue
      load replay "$s" "$r" stream --job "$j" --replay >/dev/null || true
      load gc_replay "$s" "$r" stream --job "$j" --bytes "$NOBODY_BYTES" \
        >/dev/null || true
    done
  done
  # The finished logs are not read again: the disk space back.
  rm -f "$WORK"/data-*/*.log

  # Short records: one write per line. Live to 1 (both generators) and to
  # 100 streams (gRPC C++); then the same job replayed to 1 and to 100,
  # and its log's size against its output's.
  log "a job prints $LINES lines one write each: live, replayed, 1 and 100"
  for r in $(seq 1 "$RUNS"); do
    load_both lines_live_1 "$r" stream --lines "$LINES"
    load_both gc_lines_live_1 "$r" stream --lines "$LINES"
    load_both gc_lines_live_100 "$r" stream --lines "$LINES" --subs 100 \
      --conns 100
    for s in $JW_SERVERS; do
      out=$(load lines_nobody "$s" "$r" nobody --lines "$LINES") || continue
      j=$(field "$out" job)
      record lines_log "$s" "$r" "$(printf '{"log_bytes":%d,"output_bytes":%d}' \
        "$(stat -c %s "$WORK/data-$s/$j.log" 2>/dev/null || echo 0)" \
        "$(field "$out" bytes)")"
      load lines_replay_1 "$s" "$r" stream --job "$j" --lines "$LINES" \
        >/dev/null || true
      load gc_lines_replay_1 "$s" "$r" stream --job "$j" --lines "$LINES" \
        >/dev/null || true
      load gc_lines_replay_100 "$s" "$r" stream --job "$j" --lines "$LINES" \
        --subs 100 --conns 100 >/dev/null || true
    done
    # The peer's jobs are final at once: each replay starts its own.
    load lines_replay_1 grpc "$r" stream --lines "$LINES" --replay \
      >/dev/null || true
    load gc_lines_replay_1 grpc "$r" stream --lines "$LINES" --replay \
      >/dev/null || true
    load gc_lines_replay_100 grpc "$r" stream --lines "$LINES" --replay \
      --subs 100 --conns 100 >/dev/null || true
  done

  # Memory deltas, each run on fresh servers.
  log "idle connections ($IDLE_CONNS); stalled subscribers" \
    "($STALL_SUBS on $STALL_CONNS connections)"
  for r in $(seq 1 "$RUNS"); do
    stop_servers
    start_servers
    load_both idle_conn "$r" idle --conns "$IDLE_CONNS"
    stop_servers
    start_servers
    load_jw stall "$r" stall --bytes "$STALL_BYTES" --subs "$STALL_SUBS" \
      --conns "$STALL_CONNS"
  done

  stop_servers
  start_servers
  log "fan-out: 100 and 1000 streams on 100 connections (both generators)"
  for r in $(seq 1 "$RUNS"); do
    load_both fanout_100 "$r" stream --bytes "$FAN100_BYTES" --subs 100 \
      --conns 100
    load_both gc_fanout_100 "$r" stream --bytes "$FAN100_BYTES" --subs 100 \
      --conns 100
    load_both fanout_1000 "$r" stream --bytes "$FAN1000_BYTES" \
      --subs 1000 --conns 100
    load_both gc_fanout_1000 "$r" stream --bytes "$FAN1000_BYTES" \
      --subs 1000 --conns 100
  done
  stop_servers

  local t1 sizes
  t1=$(date +%s)
  sizes=$(printf '{"live":%d,"nobody_and_replay":%d,"fanout_100":%d,'`
    `'"fanout_1000":%d,"tls_bulk":%d,"pipe":%d,"unary_seconds":%s,'`
    `'"idle_conns":%d,"stall_subs":%d,"stall_conns":%d,"stall_bytes":%d,'`
    `'"seek_tail":%d,"lines":%d,"runs":%d}' \
    "$LIVE_BYTES" "$NOBODY_BYTES" "$FAN100_BYTES" \
    "$FAN1000_BYTES" "$BULK_BYTES" "$PIPE_BYTES" "$UNARY_SECONDS" \
    "$IDLE_CONNS" "$STALL_SUBS" "$STALL_CONNS" "$STALL_BYTES" "$SEEK_BYTES" \
    "$LINES" "$RUNS")
  python3 bench/report.py --raw "$RAW" --machine "$WORK/machine.json" \
    --sizes "$sizes" --elapsed $((t1 - t0)) \
    --load-after "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --md "$OUT/latest.md" --json "$OUT/latest.json"
  # The reload (docs/performance.md, "Reload"): its own server, not pinned.
  log "reload: $((1000)) jobs, 100 running, SIGHUP under a prober"
  local rl
  rl=$("$PY" bench/reload.py "$TELEPORTD" "$WORK/certs" bench "$WORK" \
    --json "$OUT/reload.json") || log "reload: goal missed or failed"
  printf '\n### Reload (1000 jobs, 100 running)\n\n`%s`\n' "$rl" \
    >>"$OUT/latest.md"
  log "done in $((t1 - t0)) s: $OUT/latest.md, $OUT/latest.json"
  cat "$OUT/latest.md"
}

main "$@"
