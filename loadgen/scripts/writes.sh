#!/usr/bin/env bash
# Writes beside reads (issue 11), configs/dev.yaml on the reference data, one node, one run:
# the read capacity C (closed loop, 32 connections), then open-loop reads at 0.7 C for
# WRITES_SECS each — alone, with clicks at 1000/s and item upserts at 100/s (after a run
# of the same writes that warms the store: new users, growing files), alone again (the
# two alone runs bracket the machine's noise) — and the read p99 of each.
#   loadgen/scripts/writes.sh [NODE_BINARY]
# Env: WRITES_SECS (20), EVENTS_RPS (1000), UPSERTS_RPS (100), READ_FRACTION (0.7),
# BENCH_* as in lib.sh.
# Results: $OUT/writes/result.txt (+ summary.json / writes.json per run)
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh
[ $# -ge 1 ] && NODE_BIN=$(realpath "$1")
R="$OUT/writes-${READ_FRACTION:-0.7}"
rm -rf "$R" && mkdir -p "$R"
SECS=${WRITES_SECS:-20}
start_node writes RECD__FEATURES__STORE__DIR="$R/store"
lg() { "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --items "$ITEMS" "$@"; }
lg --mode closed --connections 32 --duration 10s --out "$R/capacity" >/dev/null 2>&1
C=$(python3 -c "import json; print(json.load(open('$R/capacity/summary.json'))['achieved_rps'])")
F=${READ_FRACTION:-0.7}
RATE=$(python3 -c "print(round($F * $C))")
echo "capacity C = $C req/s; reads at $F C = $RATE req/s" | tee "$R/result.txt"
read_run() {
  lg --mode open --rate "$RATE" --arrivals poisson --connections 2048 --duration "${SECS}s" \
    --seed "$2" --out "$R/$1" "${@:3}" >"$R/$1.log" 2>&1
}
WRITES=(--events-rps "${EVENTS_RPS:-1000}" --item-upserts-rps "${UPSERTS_RPS:-100}")
read_run alone-1 11
# the first seconds of writes create users and grow the store files: measured apart
read_run writes-warmup 14 "${WRITES[@]}"
read_run writes 12 "${WRITES[@]}"
read_run alone-2 13
stop_node
python3 - "$R" <<'PY' | tee -a "$R/result.txt"
import json, sys
r = sys.argv[1]
runs = {n: json.load(open(f"{r}/{n}/summary.json")) for n in ("alone-1", "writes-warmup", "writes", "alone-2")}
for n, s in runs.items():
    print(f"{n:13s} reads: {s['achieved_rps']:.0f}/s  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  "
          f"errors {sum(s['errors'].values())}, degraded {s['degraded']}")
alone = (runs["alone-1"]["p99_ms"] + runs["alone-2"]["p99_ms"]) / 2
print(f"read p99 with writes / alone (mean of the two) = {runs['writes']['p99_ms'] / alone:.2f}  (target <= 1.2)")
w = json.load(open(f"{r}/writes/writes.json"))
for k in ("events", "item_upserts"):
    c = w[k]
    print(f"{k}: {c['ok']}/{c['sent']} acknowledged, p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms")
print(f"read-your-write: {w['visible_first_read']}/{w['visibility_checked']} clicks gone from the very next answer")
PY
