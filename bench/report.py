#!/usr/bin/env python3
"""Turns the benchmark's raw results (one JSON object per run) into the
figures table: min/median/max of the runs, the ratio of the medians to what
the same run measured, and whether each goal is met. Writes Markdown and
JSON. Standard library only."""

import argparse
import json
import statistics


def load_raw(path):
    runs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                runs.append(json.loads(line))
    return runs


class Results:
    def __init__(self, raw):
        self.raw = raw

    def values(self, figure, server, key, scale=1.0):
        out = []
        for r in self.raw:
            if r["figure"] == figure and r["server"] == server:
                v = r["result"].get(key)
                if key == "cpu_us_per_call":
                    # The server's CPU seconds per second over the calls
                    # per second of the same window.
                    c, q = r["result"].get("server_cpu"), r["result"].get(
                        "qps")
                    v = None if c is None or not q else c / q * 1e6
                if key == "log_over_output":
                    lb, ob = r["result"].get("log_bytes"), r["result"].get(
                        "output_bytes")
                    v = None if not lb or not ob else lb / ob
                if v is not None:
                    out.append(v * scale)
        return out

    def failed(self, figure, server):
        return sum(1 for r in self.raw if r["figure"] == figure
                   and r["server"] == server and "error" in r["result"])


def summary(vals):
    if not vals:
        return None
    return {"min": min(vals), "median": statistics.median(vals),
            "max": max(vals), "runs": vals}


def fmt_num(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_sum(s, failed=0):
    if s is None:
        return "failed" if failed else "-"
    txt = (f"{fmt_num(s['min'])} / **{fmt_num(s['median'])}** / "
           f"{fmt_num(s['max'])}")
    if failed:
        txt += f" ({failed} failed)"
    return txt


def med(s):
    return None if s is None else s["median"]


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def lines_label(n):
    """1M lines, 100k lines, 1500 lines."""
    if n and n % 1000000 == 0:
        return f"{n // 1000000}M lines"
    if n and n % 1000 == 0:
        return f"{n // 1000}k lines"
    return f"{n} lines"


def build(raw, machine, sizes, elapsed, load_after):
    R = Results(raw)
    lim = {
        "pipe_mib_s": summary(R.values("pipe", "raw", "mib_s")),
        "pagecache_mib_s": summary(R.values("pagecache", "raw", "mib_s")),
        "tls_bulk_mib_s": summary(R.values("tls_bulk", "raw", "mib_s")),
        "spawn_1_per_s": summary(R.values("spawn_1", "raw", "per_s")),
        "spawn_8_per_s": summary(R.values("spawn_8", "raw", "per_s")),
    }
    tls = med(lim["tls_bulk_mib_s"])
    figs = []

    def cpu(figure, server):
        return {"server": summary(R.values(figure, server, "server_cpu")),
                "load": summary(R.values(figure, server, "client_cpu")),
                "server_runq": summary(R.values(figure, server,
                                                "server_runq")),
                "load_runq": summary(R.values(figure, server, "client_runq"))}

    def add(fid, name, unit, figure, key, goal, check, scale=1.0,
            grpc=True, ref=None, ref_name=None, extra=None, server="jw"):
        jw = summary(R.values(figure, server, key, scale))
        gr = summary(R.values(figure, "grpc", key, scale)) if grpc else None
        # The baseline teleportd (BENCH_BASELINE), run for run beside it.
        base = summary(R.values(figure, "base", key, scale))
        met, rat = check(med(jw), med(gr), ref)
        figs.append({
            "id": fid, "name": name, "unit": unit, "goal": goal,
            "jw": jw, "grpc": gr, "ref": ref, "ref_name": ref_name,
            "ratio": rat, "met": met, "base": base,
            "base_failed": R.failed(figure, "base"),
            "jw_failed": R.failed(figure, server),
            "grpc_failed": R.failed(figure, "grpc") if grpc else 0,
            "cpu_jw": cpu(figure, "jw"),
            "cpu_grpc": cpu(figure, "grpc") if grpc else None,
            "extra": extra or {},
        })

    def at_least_grpc(k):
        def check(j, g, ref):
            r = ratio(j, g)
            return (None if r is None else r >= k), r
        return check

    def at_most_grpc(k):
        def check(j, g, ref):
            r = ratio(j, g)
            return (None if r is None else r <= k), r
        return check

    def at_least_ref(k):
        def check(j, g, ref):
            r = ratio(j, ref)
            return (None if r is None else r >= k), r
        return check

    def at_most(limit):
        def check(j, g, ref):
            return (None if j is None else j <= limit), None
        return check

    def context(j, g, ref):
        return None, ratio(j, g)

    def live_check(j, g, ref):
        r = ratio(j, ref)
        rg = ratio(j, g)
        if r is None or rg is None:
            return None, r
        return (r >= 0.8 and rg >= 1.0), r

    def add_live(fid, name, figure):
        add(fid, name, "MiB/s", figure, "mib_s",
            ">= 0.8x TLS bulk and >= 1.0x gRPC C++", live_check, ref=tls,
            ref_name="TLS bulk")
        figs[-1]["extra"]["ratio_vs_grpc"] = ratio(med(figs[-1]["jw"]),
                                                   med(figs[-1]["grpc"]))
        # The page cache's own write rate for a new file bounds what a
        # log-writing server can reach on this machine; the peer writes
        # nothing.
        figs[-1]["extra"]["ratio_vs_pagecache"] = ratio(
            med(figs[-1]["jw"]), med(lim["pagecache_mib_s"]))

    def add_streams(gen, p):
        # p: the figure prefix of the generator ("gc_" for gRPC C++).
        add_live(f"{p}live", f"live output, 1 job to 1 stream ({gen})",
                 f"{p}live")
        add(f"{p}replay", f"replay of a finished job's log, 1 stream "
            f"({gen})", "MiB/s", f"{p}replay", "mib_s", ">= 0.9x TLS bulk",
            at_least_ref(0.9), grpc=False, ref=tls, ref_name="TLS bulk")
        bulk = med(figs[-1]["jw"])
        for n in (100, 1000):
            add(f"{p}fanout_{n}", f"fan-out, 1 job to {n} streams "
                f"(100 conns), aggregate ({gen})", "MiB/s", f"{p}fanout_{n}",
                "mib_s", ">= 1.5x gRPC C++", at_least_grpc(1.5))
            add(f"{p}rss_fanout_{n}", f"server RSS peak, {n} streams "
                f"({gen})", "MiB", f"{p}fanout_{n}", "rss_peak_kib",
                "<= 0.25x gRPC C++", at_most_grpc(0.25), scale=1 / 1024)
        lines = lines_label(sizes.get("lines", 0))
        add(f"{p}lines_live_1", f"{lines} one write each, live to 1 stream "
            f"({gen})", "MiB/s", f"{p}lines_live_1", "mib_s", "-", context)
        if p:
            add(f"{p}lines_live_100", f"{lines} one write each, live to 100 "
                f"streams, aggregate ({gen})", "MiB/s", f"{p}lines_live_100",
                "mib_s", "-", context)
        add(f"{p}lines_replay_1", f"{lines} one write each, replayed to 1 "
            f"stream ({gen})", "MiB/s", f"{p}lines_replay_1", "mib_s",
            ">= 0.5x bulk replay", at_least_ref(0.5), ref=bulk,
            ref_name=f"bulk replay, {gen}")
        if p:
            add(f"{p}lines_replay_100", f"{lines} one write each, replayed "
                f"to 100 streams, aggregate ({gen})", "MiB/s",
                f"{p}lines_replay_100", "mib_s", ">= 0.5x bulk replay",
                at_least_ref(0.5), ref=bulk,
                ref_name=f"bulk replay, {gen}")

    # As real clients send first: gRPC C++'s own async client (one call
    # per write), then jw-load --unbatched; jw-load batched (~16 calls per
    # write, round 1's shape) after, labelled.
    gc = "gRPC C++ client"
    ub = "jw-load unbatched"
    add("gc_unary_cpu", f"server CPU per unary call, 64 in flight, 4 conns "
        f"({gc})", "us", "gc_unary_4_64", "cpu_us_per_call",
        "<= 0.3x gRPC C++", at_most_grpc(0.3))
    add("gc_unary_1_1_p50", f"unary Status p50, 1 in flight, 1 conn ({gc})",
        "us", "gc_unary_1_1", "p50_us", "<= 0.6x gRPC C++", at_most_grpc(0.6))
    add("unary_unbatched_cpu", f"server CPU per unary call, 64 in flight, "
        f"4 conns ({ub})", "us", "unary_unbatched_qps_64", "cpu_us_per_call",
        "<= 0.3x gRPC C++", at_most_grpc(0.3))
    add("unary_unbatched_p50_1", f"unary Status p50 latency, 1 in flight "
        f"({ub})", "us", "unary_unbatched_p50_1", "p50_us",
        "<= 0.6x gRPC C++", at_most_grpc(0.6))
    add_streams(gc, "gc_")
    for c in (1, 4):
        for n in (1, 64):
            fig = f"gc_unary_{c}_{n}"
            conns = f"{c} conn{'s' if c > 1 else ''}"
            add(f"{fig}_qps", f"unary Status QPS, {n} in flight, {conns} "
                f"({gc})", "calls/s", fig, "qps", "-", context)
            if (c, n) != (1, 1):
                add(f"{fig}_p50", f"unary Status p50, {n} in flight, "
                    f"{conns} ({gc})", "us", fig, "p50_us", "-", context)
            add(f"{fig}_p99", f"unary Status p99, {n} in flight, {conns} "
                f"({gc})", "us", fig, "p99_us", "-", context)
    add("unary_unbatched_qps_64", f"unary Status QPS, 64 in flight, 4 conns "
        f"({ub})", "calls/s", "unary_unbatched_qps_64", "qps", "-", context)
    add_streams("jw-load", "")
    ba = "jw-load batched, round 1's goal"
    for n in (64, 256):
        add(f"unary_qps_{n}", f"unary Status QPS, {n} in flight, 4 conns "
            f"({ba})", "calls/s", f"unary_qps_{n}", "qps",
            ">= 3x gRPC C++", at_least_grpc(3.0))
    add("unary_cpu_64", "server CPU per unary call, 64 in flight, 4 conns "
        "(jw-load batched)", "us", "unary_qps_64", "cpu_us_per_call", "-",
        context)
    add("unary_p50_1", f"unary Status p50 latency, 1 in flight ({ba})",
        "us", "unary_p50_1", "p50_us", "<= 0.7x gRPC C++", at_most_grpc(0.7))
    add("lines_log", f"{lines_label(sizes.get('lines', 0))}: the log "
        "file's size over the output's", "x", "lines_log", "log_over_output",
        "-", context, grpc=False)
    # Start with durable records (the default): the rate against
    # posix_spawn, and beside it what one Start costs the server
    # (teleportd's threads, not the job's).
    for n in (1, 8):
        ref = med(lim[f"spawn_{n}_per_s"])
        add(f"start_{n}", f"Start of /bin/true, {n} in flight", "jobs/s",
            f"start_{n}", "qps", ">= 0.8x posix_spawn rate",
            at_least_ref(0.8), grpc=False, ref=ref,
            ref_name=f"posix_spawn ({n} in flight)")
        add(f"start_cpu_{n}", f"server CPU per Start of /bin/true, {n} in "
            "flight", "ms", f"start_{n}", "cpu_us_per_call", "<= 0.3 ms",
            at_most(0.3), grpc=False, scale=1e-3)
    # Durable records (the default) against --durable false, same run.
    for n in (1, 8):
        ref = med(summary(R.values(f"start_nodurable_{n}", "jw", "qps")))
        add(f"start_durable_{n}", f"Start of /bin/true with durable "
            f"records, {n} in flight", "jobs/s", f"start_{n}", "qps",
            ">= 0.9x without records", at_least_ref(0.9), grpc=False,
            ref=ref, ref_name=f"--durable false ({n} in flight)")
    # The log's replay cost alone (jw-replaycost, no network).
    rc8k = med(summary(R.values("replaycost_8192", "raw", "replay_mib_s")))

    def vs_ref(j, g, ref):
        return None, ratio(j, ref)
    add("replaycost_16", "log replay of 16-byte records, no network "
        "(jw-replaycost)", "MiB/s", "replaycost_16", "replay_mib_s", "-",
        vs_ref, grpc=False, ref=rc8k, ref_name="8 KiB records",
        server="raw")
    add("idle_conn", "memory per idle mTLS connection", "KiB", "idle_conn",
        "per_conn_kib", "<= 32 KiB", at_most(32))
    # The stalled streams are paused through the client API: the client
    # keeps reading the socket and holds what the window let through (up to
    # lib/rpc's 1 MiB stream window), so none of the window's bytes are in
    # the server's memory and the goal is held strictly to 16 KiB.
    add("stall", "memory per stalled subscriber", "KiB", "stall",
        "per_sub_kib", "<= 16 KiB beyond the HTTP/2 window", at_most(16),
        grpc=False)
    add("nobody", "server RSS growth while a job writes and nobody reads",
        "MiB", "nobody", "rss_growth_kib", "<= 16 MiB", at_most(16),
        grpc=False, scale=1 / 1024,
        extra={"job_mib_s": med(summary(R.values("nobody", "jw", "mib_s")))})
    add("resume_1023m", "GetOutput from offset 1023 MiB of a 1 GiB "
        "finished log: first message", "ms", "seek_tail", "resume_median_ms",
        "< 10 ms", at_most(10), grpc=False)
    add("tail_10", "GetOutput tail_lines 10 of a 1 GiB finished log: first "
        "message", "ms", "seek_tail", "tail_median_ms", "< 10 ms",
        at_most(10), grpc=False)
    return {"machine": dict(machine, load_after=load_after),
            "sizes": sizes, "elapsed_s": elapsed, "limits": lim,
            "figures": figs, "raw": raw}


def markdown(rep):
    m = rep["machine"]
    s = rep["sizes"]
    lines = []
    w = lines.append
    w("# jobworker benchmark results")
    w("")
    w(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, "
      f"Linux {m['kernel']}; OpenSSL {m['openssl']}, libuv {m['libuv']}, "
      f"nghttp2 {m['nghttp2']}, gRPC C++ {m['grpc']}. Load average "
      f"before {m['load_before']}, after {m['load_after']}. Servers pinned "
      f"to CPU {m['server_cpu']}, load generator to CPU {m['load_cpu']} "
      f"(-1: not pinned). {s['runs']} runs per figure, "
      f"whole set {rep['elapsed_s']} s. Commit {m.get('commit', '?')} "
      f"(plus the working tree); teleportd `{m.get('teleportd', '?')}`, "
      f"load generator `{m.get('jw_load', '?')}`.")
    w("")
    w(f"Sizes: live output {s['live'] >> 20} MiB; the job nobody reads, "
      f"then replayed, {s['nobody_and_replay'] >> 20} MiB; fan-out "
      f"{s['fanout_100'] >> 20} MiB per subscriber (100) and "
      f"{s['fanout_1000'] >> 20} MiB (1000); unary windows "
      f"{s['unary_seconds']} s after 0.5 s warm-up; {s['idle_conns']} idle "
      f"connections; {s['stall_subs']} stalled subscribers on "
      f"{s['stall_conns']} connections, reading a finished job of "
      f"{s['stall_bytes'] >> 20} MiB; TLS bulk {s['tls_bulk'] >> 20} MiB; "
      f"pipe {s['pipe'] >> 20} MiB; the line-printing job "
      f"{s.get('lines', 0)} lines.")
    w("")
    w("## Machine limits (min / **median** / max)")
    w("")
    w("| limit | value |")
    w("| --- | --- |")
    lim = rep["limits"]
    w(f"| pipe throughput (dd, 64 KiB blocks), MiB/s | "
      f"{fmt_sum(lim['pipe_mib_s'])} |")
    if lim.get("pagecache_mib_s"):
        w(f"| page-cache write of a new file (dd, 64 KiB blocks, no fsync; "
          f"what a log's writes meet), MiB/s | "
          f"{fmt_sum(lim['pagecache_mib_s'])} |")
    w(f"| TLS 1.3 AES-256-GCM bulk, one loopback connection, MiB/s | "
      f"{fmt_sum(lim['tls_bulk_mib_s'])} |")
    w(f"| posix_spawn of /bin/true + waitpid, 1 at a time, per s | "
      f"{fmt_sum(lim['spawn_1_per_s'])} |")
    w(f"| posix_spawn of /bin/true + waitpid, 8 at a time, per s | "
      f"{fmt_sum(lim['spawn_8_per_s'])} |")
    w("")
    w("## Figures (min / **median** / max); ratios are of medians")
    w("")
    w("| figure | unit | teleportd | gRPC C++ peer | reference | ratio | "
      "goal | met | server CPU (jw / gRPC) | load gen CPU (jw / gRPC) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for f in rep["figures"]:
        ref = "-"
        if f["ref"] is not None:
            ref = f"{fmt_num(f['ref'])} ({f['ref_name']})"
        if f["id"] == "stall":
            ref = "window bytes held by the client"
        rat = "-" if f["ratio"] is None else (
            f"{f['ratio']:.2f}x" if f["ratio"] >= 0.1 else
            f"{f['ratio']:.2g}x")
        if f["extra"].get("ratio_vs_grpc"):
            rat += f" of TLS; {f['extra']['ratio_vs_grpc']:.2f}x gRPC"
        if f["extra"].get("ratio_vs_pagecache"):
            rat += (f"; {f['extra']['ratio_vs_pagecache']:.2f}x page-cache "
                    f"write")
        met = {True: "yes", False: "**no**", None: "?"}[f["met"]]
        if f["goal"] == "-":
            met = "-"  # context: no goal of its own

        def share(x, key):
            if x is None or x[key] is None:
                return "-"
            txt = f"{x[key]['median'] * 100:.0f}%"
            rq = x.get(key.replace("server", "server_runq")
                       if key == "server" else "load_runq")
            if rq is not None and rq["median"] >= 0.05:
                txt += f" (+{rq['median'] * 100:.0f}% wait)"
            return txt

        def c(x):
            return share(x, "server")

        def l(x):
            return share(x, "load")
        w(f"| {f['name']} | {f['unit']} | "
          f"{fmt_sum(f['jw'], f['jw_failed'])} | "
          f"{fmt_sum(f['grpc'], f['grpc_failed'])} | {ref} | {rat} | "
          f"{f['goal']} | {met} | {c(f['cpu_jw'])} / {c(f['cpu_grpc'])} | "
          f"{l(f['cpu_jw'])} / {l(f['cpu_grpc'])} |")
    w("")
    w("CPU is the share of one core used during the measured window "
      "(user + system, all threads), median of the runs; \"wait\" is the "
      "share of the window the process was runnable but waiting for a CPU "
      "(schedstat), shown when 5% or more: other load on the machine. "
      "Unary load shapes: \"gRPC C++ client\" is bench/grpc_load.cc "
      "(gRPC C++'s async client, one call per write, as real clients "
      "send); \"jw-load unbatched\" is jw-load --unbatched (one call per "
      "turn, so one per write); \"jw-load batched\" is jw-load as before "
      "(calls issued in the same loop turn share a write, ~16 per TCP "
      "segment at 64 in flight). Server CPU per call is the server's CPU "
      "share over the calls per second of the same window. Streams: "
      "\"gRPC C++\" rows are grpc-load stream (gRPC C++'s async client, "
      "every stream's bytes compared with the job's output), the others "
      "jw-load stream (lengths checked).")
    before_after(rep, w)
    return "\n".join(lines) + "\n"


def before_after(rep, w):
    """With BENCH_BASELINE: each teleportd figure of the baseline binary,
    run by run beside the one under test, and the ratio of the medians."""
    # The figures with a goal, each measurement once (the durable-records
    # rows repeat the Start rate).
    rows = [f for f in rep["figures"] if f["goal"] != "-"
            and not f["id"].startswith("start_durable_")
            and (f.get("base") is not None or f.get("base_failed"))]
    if not rows:
        return
    m = rep["machine"]
    w("")
    w("## Before / after (medians; the baseline run by run beside it)")
    w("")
    w(f"Before: `{m.get('baseline', '?')}`; after: "
      f"`{m.get('teleportd', '?')}`.")
    w("")
    w("| figure | unit | before | after | after/before |")
    w("| --- | --- | --- | --- | --- |")
    for f in rows:
        b, a = med(f["base"]), med(f["jw"])
        r = ratio(a, b)
        bt = fmt_num(b) if f["base"] is not None else "failed"
        at = fmt_num(a) if f["jw"] is not None else "failed"
        w(f"| {f['name']} | {f['unit']} | {bt} | {at} | "
          f"{'-' if r is None else f'{r:.2f}x'} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--sizes", required=True)
    ap.add_argument("--elapsed", type=int, default=0)
    ap.add_argument("--load-after", default="")
    ap.add_argument("--md", required=True)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    with open(a.machine) as f:
        machine = json.load(f)
    rep = build(load_raw(a.raw), machine, json.loads(a.sizes), a.elapsed,
                a.load_after)
    with open(a.json, "w") as f:
        json.dump(rep, f, indent=1)
        f.write("\n")
    with open(a.md, "w") as f:
        f.write(markdown(rep))


if __name__ == "__main__":
    main()
