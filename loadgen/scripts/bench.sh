#!/usr/bin/env bash
# recd benchmark suite: reference data → in-process kernel → HTTP sweep → ablations →
# docs/benchmarks.md (the section between the bench markers) and docs/bench/*.png|svg.
#
#   make bench                      # 200k items (the reference size)
#   BENCH_ITEMS=1000000 make bench  # the large set
#
# Knobs: BENCH_ITEMS, BENCH_DATA (data folder), BENCH_OUT (raw results), BENCH_STEP
# (seconds per sweep step), BENCH_PORT, RECD_GEN_DATA (the data generator, default tools/workload/gen_data.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

STEP=${BENCH_STEP:-4s}
# shellcheck source=loadgen/scripts/lib.sh
. loadgen/scripts/lib.sh

# sweep NAME [loadgen flags ...]
sweep() {
  local name=$1
  shift
  echo "== sweep $name"
  "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --mode sweep --sweep-start 500 \
    --sweep-factor 1.2 --duration "$STEP" --lanes critical=5,default=25,background=70 \
    --server-pid "$NODE" --label "$name" --out "$OUT/sweep-$name" "$@" 2>&1 | grep -E '^(sweep|knee)'
}

# kernel NAME [VAR=value ...]
kernel() {
  local name=$1
  shift
  echo "== kernel $name"
  env "$@" "$BIN/recd-node" bench-kernel --config configs/dev.yaml --data-dir "$DATA" \
    --requests 3000 --recall-queries 200 >"$OUT/kernel-$name.json" 2>/dev/null
}

# the configuration of configs/dev.yaml: the kernel and the node, in the same run
kernel main
start_node main
sweep main
stop_node

# ablation: micro-batching off (one request per batch)
start_node batch-off RECD__GATEWAY__MAX_BATCH=1
sweep batch-off
stop_node

# ablation: feature cache off vs on, with a skewed (zipf 1.1) user mix where a cache can hit
start_node cache-on
sweep cache-on --users zipf:1.1
stop_node
start_node cache-off RECD__FEATURES__CACHE_TTL_SECS=0
sweep cache-off --users zipf:1.1
stop_node

# ablation: ANN ef (recall vs kernel throughput) at S=2, k'=100 and at S=1, k'=200
for ef in 50 100 200 400; do
  kernel "ef$ef-s2" RECD__INDEX__EXPANSION_SEARCH=$ef
  kernel "ef$ef-s1" RECD__INDEX__SHARDS=1 RECD__INDEX__EXPANSION_SEARCH=$ef
done

# ablation: 1 vs 2 (main) vs 4 index shards on this one node
kernel shards1 RECD__INDEX__SHARDS=1 RECD__INDEX__EXPANSION_SEARCH=200
start_node shards1 RECD__INDEX__SHARDS=1 RECD__INDEX__EXPANSION_SEARCH=200
sweep shards1
stop_node
kernel shards4 RECD__INDEX__SHARDS=4 RECD__INDEX__PER_SHARD_FACTOR=2.0
start_node shards4 RECD__INDEX__SHARDS=4 RECD__INDEX__PER_SHARD_FACTOR=2.0
sweep shards4
stop_node

python3 loadgen/scripts/render_bench.py "$OUT" docs/benchmarks.md docs/bench "$ITEMS"
echo "wrote docs/benchmarks.md and docs/bench/"
