#!/usr/bin/env python3
"""Renders the overload and burst results into docs/benchmarks.md.

Usage: render_overload.py OUT_DIR BENCHMARKS_MD CAPACITY

Replaces the text between `<!-- overload:begin -->` and `<!-- overload:end -->` (appends
the section if the markers are missing).
"""
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render_bench import commit, load, replace_section  # noqa: E402

BEGIN, END = "<!-- overload:begin -->", "<!-- overload:end -->"
LANES = ["critical", "default", "background"]


def main():
    out, md_path, cap = sys.argv[1], sys.argv[2], float(sys.argv[3])
    modes = {m: load(os.path.join(out, f"overload-{m}", "summary.json"))["steps"] for m in ("deadline", "fixed")}
    L = [f"## Overload and bursts (`loadgen/scripts/overload.sh`)\n",
         f"Measured on {datetime.date.today()} at commit `{commit()}` on the machine above. Capacity C = "
         f"{cap:.0f} req/s (the knee of the sweep above); offered 0.5×–3× C, open loop, lanes "
         f"critical=5/default=25/background=70 with budgets 100/200/500 ms (`X-Deadline-Ms`), "
         f"the same node with `gateway.batching: deadline` and `fixed` (2 ms delay). Goodput = "
         f"undegraded 2xx answers (no `degraded` rung, coverage 1) within their lane's budget per "
         f"second. The generator shares the two cores.\n"]
    L.append("### At 2× capacity\n")
    L.append("| batching | critical p99 ms (budget 100) | goodput req/s | goodput ÷ C | background shed | loadgen cores |")
    L.append("|---|---|---|---|---|---|")
    for m, steps in modes.items():
        s = min(steps, key=lambda s: abs(s["offered_rps"] - 2 * cap))
        L.append(f"| {m} | **{s['lanes']['critical']['p99_ms']:.1f}** | {s['goodput_rps']:.0f} | "
                 f"**{s['goodput_rps'] / cap:.2f}** | {s['lanes']['background']['shed']} | {s['loadgen_cpu_cores']:.2f} |")
    L.append("")
    L.append("![p99 per lane, deadline vs fixed](bench/compare-lanes-p99.png) ([svg](bench/compare-lanes-p99.svg))\n")
    L.append("![goodput, deadline vs fixed](bench/compare-goodput.png) ([svg](bench/compare-goodput.svg))\n")
    for m, steps in modes.items():
        L.append(f"### {m} batching\n")
        L.append("| offered (× C) | achieved/s | goodput/s | p99 critical | p99 default | p99 background | ok c/d/b | shed c/d/b | other errors |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for s in steps:
            lanes = s["lanes"]
            other = {k: v for k, v in s["errors"].items() if k not in ("429", "503")}
            L.append(f"| {s['offered_rps']:.0f} ({s['offered_rps'] / cap:.1f}) | {s['achieved_rps']:.0f} | {s['goodput_rps']:.0f} | "
                     + " | ".join(f"{lanes[l]['p99_ms']:.1f}" for l in LANES)
                     + " | " + "/".join(str(lanes[l]["ok"]) for l in LANES)
                     + " | " + "/".join(str(lanes[l]["shed"]) for l in LANES)
                     + f" | {other or '—'} |")
        L.append("")
    L.append("### Bursty arrivals at 0.7× capacity (same mean rate)\n")
    L.append("| batching | arrivals | p50 ms | p99 ms | p99.9 ms | goodput/s | errors |")
    L.append("|---|---|---|---|---|---|---|")
    for m in ("deadline", "fixed"):
        for a in ("constant", "poisson", "onoff"):
            p = os.path.join(out, f"burst-{m}-{a}", "summary.json")
            if not os.path.exists(p):
                continue
            s = load(p)
            L.append(f"| {m} | {a} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | {s['p999_ms']:.2f} | {s['goodput_rps']:.0f} | {s['errors'] or '—'} |")
    L.append("\nOn/off: 50 % duty over 200 ms cycles, i.e. 100 ms at 2× the mean rate, then 100 ms of silence.\n")
    replace_section(md_path, BEGIN, END, "\n".join(L))


if __name__ == "__main__":
    main()
