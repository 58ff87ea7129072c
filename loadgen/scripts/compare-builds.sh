#!/usr/bin/env bash
# Server CPU per request of two recd-node builds under the same load, measured in one
# run and interleaved (A B A B ...) so that the machine's noise hits both alike:
#   loadgen/scripts/compare-builds.sh OLD_BINARY NEW_BINARY
# For each build and round: one node on configs/local-cluster.yaml (open loop at CMP_RATE, default
# 800/s, lane mix $LANES), then the remote topology of remote-cost.sh (an ingress+ranker
# node calling a data-only node). Env: CMP_ROUNDS (2), FIXED_SECS, BENCH_* as in lib.sh.
# Results: $OUT/compare/result.txt, one line per run, then the means per build.
set -euo pipefail
cd "$(dirname "$0")/../.."
A=$(realpath "$1")
B=$(realpath "$2")
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh

RATE=${CMP_RATE:-800}
ROUNDS=${CMP_ROUNDS:-2}
R="$OUT/compare"
mkdir -p "$R"
: >"$R/result.txt"
ROSTER='[{name: recd-0, roles: [ingress, ranker]}, {name: recd-1, roles: [features, index]}]'

run() { # LABEL
  "$BIN/recd-loadgen" --url http://127.0.0.1:18080 --mode open --rate "$RATE" --duration 5s \
    --out "$R/warm" >/dev/null 2>&1
  "$BIN/recd-loadgen" --url http://127.0.0.1:18080 --mode open --rate "$RATE" \
    --duration "${FIXED_SECS}s" --lanes "$LANES" --server-pid "$(pid_list)" --out "$R/$1" >/dev/null 2>&1
  python3 - "$R/$1/summary.json" "$1" <<'PY' | tee -a "$R/result.txt"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]} cpu_us_per_request {s['server_cpu_us_per_request']:.0f} "
      f"p50_ms {s['p50_ms']:.2f} p99_ms {s['p99_ms']:.2f} achieved {s['achieved_rps']:.0f}")
PY
}

for round in $(seq 1 "$ROUNDS"); do
  for build in A B; do
    NODE_BIN=$A
    [ "$build" = B ] && NODE_BIN=$B
    cluster_node "$R" single 18080 17700 "RECD__CLUSTER__NODES=[]" RECD__CLUSTER__LISTEN=null
    wait_ready 18080
    run "local-$build-$round"
    stop_all
    cluster_node "$R" recd-1 18081 17701 "RECD__CLUSTER__NODES=$ROSTER"
    cluster_node "$R" recd-0 18080 17700 "RECD__CLUSTER__NODES=$ROSTER"
    wait_ready 18081 18080
    run "remote-$build-$round"
    stop_all
  done
done
python3 - "$R/result.txt" "$A" "$B" <<'PY' | tee -a "$R/result.txt"
import collections, sys
cpu = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) > 2 and f[1] == "cpu_us_per_request":
        topo, build, _ = f[0].split("-")
        cpu[(topo, build)].append(float(f[2]))
for topo in ("local", "remote"):
    a, b = cpu[(topo, "A")], cpu[(topo, "B")]
    if a and b:
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        print(f"{topo}: A {ma:.0f} us/request, B {mb:.0f} us/request, B/A {mb / ma:.3f}")
print(f"A = {sys.argv[2]}\nB = {sys.argv[3]}")
PY
