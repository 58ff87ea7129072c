#!/usr/bin/env bash
# What the runtime costs on top of the work: server CPU per request (recd-loadgen closed
# loop, --server-pid) at 8 and 128 connections, against the in-process kernel's CPU per
# request (recd-node bench-kernel, one thread: the same features → ANN → MLP → top-k
# with no HTTP, actors or batching), same data, configs/dev.yaml, one run.
#   loadgen/scripts/cpu-ratio.sh [NODE_BINARY]
# Env: RATIO_SECS (10), RATIO_CONNS ("8 128"), BENCH_* as in lib.sh.
# Results: $OUT/cpu-ratio/result.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh
[ $# -ge 1 ] && NODE_BIN=$(realpath "$1")
R="$OUT/cpu-ratio"
mkdir -p "$R"
# the kernel three times (before, between and after the server runs): the median is
# its figure, the spread says how noisy the machine was
kernel() {
  "$NODE_BIN" bench-kernel --config configs/dev.yaml --data-dir "$DATA" --threads 1 \
    --requests 4000 --recall-queries 10 >"$R/kernel-$1.json" 2>/dev/null
}
kernel 1
start_node cpu-ratio
lg() { "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --server-pid "$NODE" "$@"; }
lg --mode closed --connections 32 --duration 5s --out "$R/warm" >/dev/null 2>&1
for c in ${RATIO_CONNS:-8 128}; do
  lg --mode closed --connections "$c" --duration "${RATIO_SECS:-10}s" --out "$R/c$c" >/dev/null 2>&1
  [ "$c" = 8 ] && kernel 2
done
stop_node
kernel 3
# shellcheck disable=SC2086 # the connection counts are meant to split
python3 - "$R" ${RATIO_CONNS:-8 128} <<'PY' | tee "$R/result.txt"
import json, sys
r, conns = sys.argv[1], sys.argv[2:]
ks = sorted(json.load(open(f"{r}/kernel-{i}.json"))["us_per_request"]["total"] for i in (1, 2, 3))
k = ks[1]
print(f"kernel: {k:.0f} us/request (median of {', '.join(f'{x:.0f}' for x in ks)}; one thread)")
for c in conns:
    s = json.load(open(f"{r}/c{c}/summary.json"))
    cpu = s["server_cpu_us_per_request"]
    print(f"{c} connections: {s['achieved_rps']:.0f} req/s, server {cpu:.0f} us/request, "
          f"ratio to the kernel {cpu / k:.2f} ({cpu / ks[2]:.2f}-{cpu / ks[0]:.2f}), p99 {s['p99_ms']:.2f} ms")
PY
