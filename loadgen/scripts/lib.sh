# Shared by bench.sh and overload.sh: settings, the build, the reference data, and a
# node on it. Source it from the repository root.

ITEMS=${BENCH_ITEMS:-200000}
DATA=${BENCH_DATA:-/tmp/recd-bench/data-$ITEMS}
OUT=${BENCH_OUT:-/tmp/recd-bench/out-$ITEMS}
PORT=${BENCH_PORT:-18080}
WORKLOAD=${RECD_WORKLOAD_DIR:-../shared/workload}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release"
NODE=""

cargo build --release -p recd-node -p recd-loadgen
mkdir -p "$OUT"
if [ ! -f "$DATA/meta.json" ]; then
  python3 -c 'import numpy' 2>/dev/null || python3 -m pip install --quiet numpy
  python3 "$WORKLOAD/gen_data.py" --n "$ITEMS" --out "$DATA"
fi

stop_node() {
  if [ -n "$NODE" ]; then
    kill -TERM "$NODE" 2>/dev/null || true
    wait "$NODE" 2>/dev/null || true
    NODE=""
  fi
}
trap stop_node EXIT

# start_node NAME [VAR=value ...]: a node on the reference data with env overrides,
# waited on until /readyz answers
start_node() {
  local name=$1
  shift
  env "$@" "$BIN/recd-node" run --config configs/dev.yaml --data-dir "$DATA" \
    --http-listen "127.0.0.1:$PORT" >"$OUT/node-$name.log" 2>&1 &
  NODE=$!
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; then return 0; fi
    if ! kill -0 "$NODE" 2>/dev/null; then
      echo "node $name exited; see $OUT/node-$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "node $name not ready after 300 s" >&2
  exit 1
}
