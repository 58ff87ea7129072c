#!/usr/bin/env bash
# Overload and burst benchmark (issue: deadlines and lanes end to end).
#
#   bash loadgen/scripts/overload.sh      # after `make bench` (its knee is the capacity)
#   OVERLOAD_CAPACITY=3500 bash loadgen/scripts/overload.sh
#
# Offers 0.5×..3× the node's capacity (the knee of `make bench`) with the lane mix
# critical=5/default=25/background=70, once with deadline-sized batching and once with
# fixed-delay batching; then constant, Poisson and on/off arrivals at 0.7× capacity in
# both modes. Writes docs/bench/compare-*.png|svg and the overload section of
# docs/benchmarks.md. Uses the data of `make bench` (BENCH_DATA).
set -euo pipefail
cd "$(dirname "$0")/../.."

STEP=${OVERLOAD_STEP:-6s}
LANES=critical=5,default=25,background=70
# shellcheck source=loadgen/scripts/lib.sh
. loadgen/scripts/lib.sh
KNEE_FILE="$OUT/sweep-main/summary.json"
if [ -z "${OVERLOAD_CAPACITY:-}" ] && [ -f "$KNEE_FILE" ]; then
  OVERLOAD_CAPACITY=$(python3 -c "import json; print(round(json.load(open('$KNEE_FILE'))['knee_offered_rps']))")
fi
CAP=${OVERLOAD_CAPACITY:-3500}

# up to 3x capacity at ~0.5 s worst latency needs thousands of requests in flight
loadgen() {
  "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --lanes "$LANES" --server-pid "$NODE" \
    --connections 4000 "$@"
}

RATES=$(python3 -c "print(','.join(str(round($CAP * m)) for m in (0.5, 1, 1.5, 2, 2.5, 3)))")
BURST_RATE=$(python3 -c "print(round($CAP * 0.7))")
for mode in deadline fixed; do
  echo "== overload, $mode batching: $RATES"
  start_node "overload-$mode" RECD__GATEWAY__BATCHING=$mode
  # warm the service-time model before measuring
  loadgen --mode open --rate "$BURST_RATE" --duration 3s --out "$OUT/warm-$mode" >/dev/null 2>&1
  loadgen --mode sweep --rates "$RATES" --duration "$STEP" --label "$mode" \
    --out "$OUT/overload-$mode" 2>&1 | grep -E '^sweep'
  for arrivals in constant poisson onoff; do
    echo "== $arrivals arrivals at $BURST_RATE/s, $mode batching"
    loadgen --mode open --rate "$BURST_RATE" --arrivals "$arrivals" --duration 8s \
      --label "$mode-$arrivals" --out "$OUT/burst-$mode-$arrivals" 2>&1 | tail -1
  done
  stop_node
done

"$BIN/recd-loadgen" --mode compare --inputs "$OUT/overload-deadline,$OUT/overload-fixed" \
  --labels deadline,fixed --out docs/bench
python3 loadgen/scripts/render_overload.py "$OUT" docs/benchmarks.md "$CAP"
echo "wrote docs/benchmarks.md (overload section) and docs/bench/compare-*"
