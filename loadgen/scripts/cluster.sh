#!/usr/bin/env bash
# recd as three nodes vs one node on this machine: the same data (gen_data.py, 200k
# items), the same shards (configs/local-cluster.yaml: S = 4, F = 4; R = 2 for the
# cluster), the same open-loop load. On a 2-core machine the three nodes share the two
# cores, so this measures what clustering costs, not what it scales to.
#
#   1. a sweep of each for its knee (p99 <= 50 ms, <= 1 % errors)
#   2. a fixed rate both sustain (CLUSTER_RATE, default 800/s) for p99 and server CPU per
#      request, and the remote calls per request (recd_remote_calls_total) → CPU per
#      remote call = (cluster CPU/request − single CPU/request) / remote calls per request
#
# Load goes round-robin to the cluster's three ingress nodes (as a Service would).
# Results: $OUT/cluster/{sweep,fixed}-{single,three}/summary.json, $OUT/cluster/result.txt
# Env: BENCH_ITEMS, BENCH_DATA, BENCH_OUT, BENCH_STEP, CLUSTER_RATE, RECD_GEN_DATA.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh

STEP=${BENCH_STEP:-8s}
RATE=${CLUSTER_RATE:-800}
C="$OUT/cluster"
mkdir -p "$C"
# run NAME URLS PORTS...
run() {
  local name=$1 urls=$2
  shift 2
  local pids
  pids=$(pid_list)
  echo "== $name: sweep"
  "$BIN/recd-loadgen" --url "$urls" --mode sweep --sweep-start 400 --sweep-factor 1.25 \
    --duration "$STEP" --lanes "$LANES" --server-pid "$pids" \
    --label "$name" --out "$C/sweep-$name" 2>&1 | grep -E '^(sweep|knee)' | tee -a "$C/result.txt"
  echo "== $name: $RATE/s fixed" | tee -a "$C/result.txt"
  local before after
  before=$(remote_calls "$@")
  "$BIN/recd-loadgen" --url "$urls" --mode open --rate "$RATE" --duration "${FIXED_SECS}s" \
    --lanes "$LANES" --server-pid "$pids" --label "$name" \
    --out "$C/fixed-$name" 2>&1 | grep -E '^offered' | tee -a "$C/result.txt"
  after=$(remote_calls "$@")
  python3 - "$C/fixed-$name/summary.json" "$((after - before))" "$FIXED_SECS" <<'PY' | tee -a "$C/result.txt"
import json, sys
s = json.load(open(sys.argv[1]))
calls = int(sys.argv[2])
ok = s["achieved_rps"] * int(sys.argv[3])
print(f"server cpu {s['server_cpu_us_per_request']:.0f} us/request, p99 {s['p99_ms']:.2f} ms, "
      f"remote calls {calls} = {calls / max(ok, 1):.2f}/request")
PY
}

: >"$C/result.txt"
# one node: the same file, without the roster and the cluster listener; it also builds the
# index snapshots the cluster nodes then load
cluster_node "$C" single 18080 17700 "RECD__CLUSTER__NODES=[]" RECD__CLUSTER__LISTEN=null
wait_ready 18080
run single "http://127.0.0.1:18080" 18080
stop_all

cluster_node "$C" recd-0 18080 17700 "${ADMIN_ENV[@]}"
cluster_node "$C" recd-1 18081 17701
cluster_node "$C" recd-2 18082 17702
wait_ready 18080 18081 18082
admin /cluster >"$C/cluster.json"
run three "http://127.0.0.1:18080,http://127.0.0.1:18081,http://127.0.0.1:18082" 18080 18081 18082
stop_all
cat "$C/result.txt"
