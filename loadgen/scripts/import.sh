#!/usr/bin/env bash
# Bulk import and the cost of reading imported users (issue 11), configs/dev.yaml on the
# reference data: IMPORT_USERS users (u0..u{N-1}, random unit embeddings, numpy) in the
# raw format through `recd-node import users` into a fresh embedded store; users/s and
# bytes per user on disk (allocated); then a node on that store under open-loop reads
# at IMPORT_RATE: cold (uniform over all users, just after the start: nearly every
# lookup reads the store) and warm (a hot set of 50 000 users, cached), with the node's
# resident memory.
#   loadgen/scripts/import.sh [NODE_BINARY]
# Env: IMPORT_USERS (10000000), IMPORT_RATE (1000), BENCH_* as in lib.sh.
# Results: $OUT/import/result.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh
[ $# -ge 1 ] && NODE_BIN=$(realpath "$1")
N=${IMPORT_USERS:-10000000}
R="$OUT/import"
U="$OUT/users-$N"
mkdir -p "$R"
rm -rf "$R/store"
if [ ! -f "$U/user_ids.txt" ]; then
  mkdir -p "$U"
  python3 - "$U" "$N" <<'PY'
import sys, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(7)
with open(f"{out}/user_ids.txt", "w") as f:
    f.write("\n".join(f"u{i}" for i in range(n)) + "\n")
with open(f"{out}/users.f32", "wb") as f, open(f"{out}/user_feats.f32", "wb") as g:
    for s in range(0, n, 1_000_000):
        m = min(1_000_000, n - s)
        e = rng.standard_normal((m, 64), dtype=np.float32)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        f.write(e.astype("<f4").tobytes())
        g.write(rng.uniform(-1, 1, (m, 16)).astype("<f4").tobytes())
PY
fi
RECD__FEATURES__STORE__DIR="$R/store" "$NODE_BIN" import users --from "$U" \
  --config configs/dev.yaml --data-dir "$DATA" 2>&1 | tail -1 | tee "$R/import.log"
BYTES=$(du -c --block-size=1 "$R"/store/features-*.redb | tail -1 | cut -f1)
start_node import RECD__FEATURES__STORE__DIR="$R/store"
lg() { "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --mode open --arrivals poisson \
  --rate "${IMPORT_RATE:-1000}" --connections 2048 "$@"; }
lg --duration 20s --seed 21 --out "$R/cold" >/dev/null 2>&1
lg --duration 10s --seed 22 --users hot:50000:1.0 --out "$R/warmup" >/dev/null 2>&1
lg --duration 20s --seed 23 --users hot:50000:1.0 --out "$R/warm" >/dev/null 2>&1
RSS=$(awk '/VmRSS/ {print $2}' "/proc/$NODE/status")
stop_node
python3 - "$R" "$N" "$BYTES" "$RSS" <<'PY' | tee "$R/result.txt"
import json, sys
r, n, b, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(open(f"{r}/import.log").read().strip())
print(f"store on disk: {b / 1e9:.2f} GB allocated = {b / n:.0f} bytes per user")
for k in ("cold", "warm"):
    s = json.load(open(f"{r}/{k}/summary.json"))
    print(f"{k}: {s['achieved_rps']:.0f} req/s, p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, "
          f"degraded {s['degraded']}, rungs {s['rungs']}")
print(f"node resident after the warm run: {rss / 1024:.0f} MiB")
PY
