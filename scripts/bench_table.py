#!/usr/bin/env python3
"""Turns a scripts/bench.sh results folder into markdown tables (medians over runs)."""
import glob
import json
import os
import re
import statistics
import sys


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def main(folder):
    runs = {}
    for path in sorted(glob.glob(os.path.join(folder, "*.json")), key=os.path.getmtime):
        name = re.sub(r"\.\d+\.json$", "", os.path.basename(path))
        with open(path) as f:
            runs.setdefault(name, []).append(json.load(f))
    out = []
    load = [n for n in runs if not n.startswith(("idle", "doc-"))]
    if load:
        out.append("### Load scenarios (median of %s runs each)\n" % ", ".join(sorted({str(len(runs[n])) for n in load})))
        out.append("| scenario | accepted ops/s | op→all peers p50 / p99 / p99.9 / max (ms) | op→ack p50 / p99 (ms) "
                   "| server CPU s/s | ops per server CPU-s | server µs/op | generator CPU s/s | bytes/op out / in "
                   "| load avg | errors | checks |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for name in load:
            rs = runs[name]
            m = lambda f: median([f(r) for r in rs])
            errors = {}
            for r in rs:
                for k, v in r["errors"].items():
                    errors[k] = errors.get(k, 0) + v
            checks = "ok" if all(r.get("checks") and r["checks"]["converged"] and r["checks"]["no_loss"]
                                 and r["disconnects"] == 0 and r["connect_failed"] == 0 for r in rs) else "FAILED"
            out.append("| %s | %s | %s / %s / %s / %s | %s / %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |" % (
                name, fmt(m(lambda r: r["accepted_ops_per_s"])),
                fmt(m(lambda r: r["peers_latency"]["p50_ms"]), 2), fmt(m(lambda r: r["peers_latency"]["p99_ms"]), 2),
                fmt(m(lambda r: r["peers_latency"]["p999_ms"]), 2), fmt(m(lambda r: r["peers_latency"]["max_ms"]), 1),
                fmt(m(lambda r: r["ack_latency"]["p50_ms"]), 2), fmt(m(lambda r: r["ack_latency"]["p99_ms"]), 2),
                fmt(m(lambda r: (r["server_cpu_s"] or 0) / r["window_s"]), 2),
                fmt(m(lambda r: r["ops_per_server_cpu_s"])), fmt(m(lambda r: r["server_cpu_us_per_op"]), 1),
                fmt(m(lambda r: r["generator_cpu_s"] / r["window_s"]), 2),
                fmt(m(lambda r: r["bytes_out_per_op"])), fmt(m(lambda r: r["bytes_in_per_op"])),
                fmt(m(lambda r: max(r["loadavg"]) if "loadavg" in r else None), 1),
                errors or "none", checks))
        out.append("")
    idle = [n for n in runs if n.startswith("idle")]
    if idle:
        out.append("### Idle connections\n")
        out.append("| scenario | connected | server RSS before / connected | RSS per connection |")
        out.append("|---|---|---|---|")
        for name in idle:
            rs = runs[name]
            m = lambda f: median([f(r) for r in rs])
            out.append("| %s | %s | %s / %s MB | %s KiB |" % (
                name, fmt(m(lambda r: r["connected"])),
                fmt(m(lambda r: r["servers"][0]["rss_before_connect_bytes"] / 1e6), 1),
                fmt(m(lambda r: r["servers"][0]["rss_connected_bytes"] / 1e6), 1),
                fmt(m(lambda r: r["server_rss_per_client_bytes"] / 1024), 1)))
        out.append("")
    docs = [n for n in runs if n.startswith("doc-")]
    if docs:
        out.append("### Per-op server cost by document size (10 clients, 1 document, closed-loop)\n")
        out.append("| document | accepted ops/s | server µs/op | ops per server CPU-s | op→all peers p99 (ms) | ratio to 1 KB |")
        out.append("|---|---|---|---|---|---|")
        base = None
        for name in docs:
            rs = runs[name]
            us = median([r["server_cpu_us_per_op"] for r in rs])
            if name == "doc-1kb":
                base = us
        for name in docs:
            rs = runs[name]
            m = lambda f: median([f(r) for r in rs])
            us = m(lambda r: r["server_cpu_us_per_op"])
            out.append("| %s | %s | %s | %s | %s | %s |" % (
                name, fmt(m(lambda r: r["accepted_ops_per_s"])), fmt(us, 1),
                fmt(m(lambda r: r["ops_per_server_cpu_s"])), fmt(m(lambda r: r["peers_latency"]["p99_ms"]), 2),
                fmt(us / base, 2, "×") if base and us else "n/a"))
        out.append("")
    replay = os.path.join(folder, "replay.txt")
    if os.path.exists(replay):
        out.append("### Trace replay through DocumentCore (in process)\n")
        out.append("```")
        out.extend(l.rstrip() for l in open(replay) if l.strip())
        out.append("```\n")
    for b in ("ot", "codec"):
        path = os.path.join(folder, f"criterion-{b}.txt")
        if os.path.exists(path):
            out.append(f"### Criterion: {b}\n")
            out.append("| benchmark | time (median estimate) |")
            out.append("|---|---|")
            name = None
            for line in open(path):
                mname = re.match(r"^(\S+/\S+)\s*(time:.*)?$", line.strip())
                if mname:
                    name = mname.group(1)
                mt = re.search(r"time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", line)
                if mt and name:
                    out.append(f"| {name} | {mt.group(1)} |")
                    name = None
            out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
