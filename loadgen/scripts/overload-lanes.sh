#!/usr/bin/env bash
# Does the top lane keep its promise under overload? One node on configs/dev.yaml and the
# reference data: capacity C measured closed-loop (32 clients), then a true open loop at
# 1.5x, 2x and 3x C (in-flight bound 16384, far above C x budget) with the lane mix
# critical=5/default=25/background=70 and budgets 100/200/500 ms. Per multiple and lane:
# requests, refused, p99, goodput (undegraded 2xx within budget); the server's refusals
# by reason (recd_shed_total) and the rungs its answers took.
#   loadgen/scripts/overload-lanes.sh [NODE_BINARY]       (default: this tree's release build)
# Env: OVL_MULTS ("1.5 2 3"), OVL_SECS (8), BENCH_* as in lib.sh.
# Results: $OUT/overload-lanes/table.md (and the loadgen outputs beside it).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh
[ $# -ge 1 ] && NODE_BIN=$(realpath "$1")
R="$OUT/overload-lanes"
mkdir -p "$R"
start_node overload-lanes
lg() { "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --server-pid "$NODE" "$@"; }
shed() { curl -sf "http://127.0.0.1:$PORT/metrics" | grep '^recd_shed_total' || true; }
lg --mode closed --connections 32 --duration 5s --out "$R/warm" >/dev/null 2>&1
lg --mode closed --connections 32 --duration 8s --out "$R/closed" >/dev/null 2>&1
CAP=$(python3 -c "import json; print(round(json.load(open('$R/closed/summary.json'))['achieved_rps']))")
{
  echo "node: $NODE_BIN; capacity C (closed loop, 32 clients): $CAP req/s"
  echo
  echo "| load | lane | requests | refused | p99 ms | goodput/s | degraded |"
  echo "|---|---|---|---|---|---|---|"
} >"$R/table.md"
: >"$R/totals.md"
for m in ${OVL_MULTS:-1.5 2 3}; do
  rate=$(python3 -c "print(round($CAP * $m))")
  shed >"$R/shed-before-$m.txt"
  lg --mode open --rate "$rate" --duration "${OVL_SECS:-8}s" --connections 16384 --timeout 5s \
    --lanes critical=5,default=25,background=70 \
    --deadlines critical=100,default=200,background=500 --out "$R/x$m" >/dev/null 2>&1
  shed >"$R/shed-after-$m.txt"
  python3 - "$R" "$m" "$CAP" <<'PY'
import json, re, sys
r, m, cap = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = json.load(open(f"{r}/x{m}/summary.json"))
def shed(path):
    out = {}
    for line in open(path):
        g = re.match(r'recd_shed_total\{lane="(\w+)",reason="(\w+)"\} (\S+)', line)
        if g:
            out[(g[1], g[2])] = float(g[3])
    return out
before, after = shed(f"{r}/shed-before-{m}.txt"), shed(f"{r}/shed-after-{m}.txt")
reasons = {k: int(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0) > 0}
with open(f"{r}/table.md", "a") as t:
    for lane in ("critical", "default", "background"):
        l = s["lanes"][lane]
        pct = 100 * l["failed"] / max(l["requests"], 1)
        t.write(f"| {m}x ({s['offered_rps']:.0f}/s) | {lane} | {l['requests']} | {l['failed']} ({pct:.1f} %) "
                f"| {l['p99_ms']:.1f} | {l['goodput_rps']:.0f} | {l['degraded']} |\n")
with open(f"{r}/totals.md", "a") as t:
    by = ", ".join(f"{lane}/{why} {n}" for (lane, why), n in sorted(reasons.items()))
    t.write(f"- {m}x: goodput {s['goodput_rps']:.0f}/s = {s['goodput_rps'] / cap:.2f} C "
            f"(2xx within budget {s['answered_in_budget_rps']:.0f}/s); statuses {s['errors']}; "
            f"server refusals by reason: {by}; rungs {s['rungs']}; "
            f"server CPU {s.get('server_cpu_us_per_request') or 0:.0f} us/request\n")
PY
done
stop_node
cat "$R/table.md" "$R/totals.md"
