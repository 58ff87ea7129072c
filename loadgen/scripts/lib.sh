# shellcheck shell=bash
# Shared by bench.sh, overload.sh, cluster.sh and remote-cost.sh: settings, the build,
# the reference data, and nodes on it (one, or a cluster). Source it from the
# repository root.

ITEMS=${BENCH_ITEMS:-200000}
DATA=${BENCH_DATA:-/tmp/recd-bench/data-$ITEMS}
OUT=${BENCH_OUT:-/tmp/recd-bench/out-$ITEMS}
PORT=${BENCH_PORT:-18080}
GEN_DATA=${RECD_GEN_DATA:-tools/workload/gen_data.py}
TARGET=${CARGO_TARGET_DIR:-target}
BIN="$TARGET/release"
# the node binary the scripts start (RECD_NODE_BIN, or another build in compare-builds.sh)
NODE_BIN=${RECD_NODE_BIN:-$BIN/recd-node}
NODE=""
# the admin port (/cluster, /admin/*) of start_node's node, and of recd-0 in cluster.sh
ADMIN_PORT=${BENCH_ADMIN_PORT:-19901}
ADMIN_TOKEN=${BENCH_ADMIN_TOKEN:-recd-bench-admin-token}
ADMIN_ENV=("RECD__ADMIN__TOKEN=$ADMIN_TOKEN" "RECD__ADMIN__LISTEN=127.0.0.1:$ADMIN_PORT")

# admin PATH [CURL ARGS...]: a request to the admin port with the token
admin() {
  local path=$1
  shift
  curl -sf -H "Authorization: Bearer $ADMIN_TOKEN" "$@" "http://127.0.0.1:$ADMIN_PORT$path"
}

cargo build --release -p recd-node -p recd-loadgen
mkdir -p "$OUT"
if [ ! -f "$DATA/meta.json" ]; then
  python3 -c "import numpy" 2>/dev/null || python3 -m pip install --quiet -r tools/workload/requirements.txt
  python3 "$GEN_DATA" --n "$ITEMS" --out "$DATA"
fi

stop_node() {
  if [ -n "$NODE" ]; then
    kill -TERM "$NODE" 2>/dev/null || true
    wait "$NODE" 2>/dev/null || true
    NODE=""
  fi
}

# the cluster scripts' nodes (cluster_node), stopped together
PIDS=()
stop_all() {
  stop_node
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
trap stop_all EXIT

# cluster_node LOGDIR NAME HTTP_PORT CLUSTER_PORT [VAR=value ...]: a node of
# configs/local-cluster.yaml on the reference data, seeded with 17700 and 17701
cluster_node() {
  local dir=$1 name=$2 http=$3 cport=$4
  shift 4
  env RECD__CLUSTER__NODE_NAME="$name" "$@" "$NODE_BIN" run \
    --config configs/local-cluster.yaml --data-dir "$DATA" \
    --http-listen "127.0.0.1:$http" --cluster-listen "127.0.0.1:$cport" \
    --seeds 127.0.0.1:17700,127.0.0.1:17701 >"$dir/node-$name.log" 2>&1 &
  PIDS+=("$!")
}

# the lane mix and the length of the fixed-rate runs of the cluster scripts
export LANES=critical=5,default=25,background=70
export FIXED_SECS=20

# remote_calls PORT...: successful remote calls so far, summed over those nodes
remote_calls() {
  local total=0 n
  for port in "$@"; do
    n=$(curl -sf "http://127.0.0.1:$port/metrics" |
      awk '/^recd_remote_calls_total/ && /outcome="ok"/ {s += $2} END {printf "%d", s}')
    total=$((total + n))
  done
  echo "$total"
}

# pid_list: the cluster nodes' PIDs, comma-separated (recd-loadgen --server-pid)
pid_list() { (IFS=,; echo "${PIDS[*]}"); }

# wait_ready PORT...: until each /readyz answers 200 (10 min at most)
wait_ready() {
  for port in "$@"; do
    for _ in $(seq 1 1200); do
      curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
      sleep 0.5
    done
    curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "port $port not ready" >&2; exit 1; }
  done
}

# start_node NAME [VAR=value ...]: a node on the reference data with env overrides and
# the admin port, waited on until /readyz answers
start_node() {
  local name=$1
  shift
  env "${ADMIN_ENV[@]}" "$@" "$NODE_BIN" run --config configs/dev.yaml --data-dir "$DATA" \
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
