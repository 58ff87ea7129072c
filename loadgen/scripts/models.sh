#!/usr/bin/env bash
# Models and experiments (issue 12), configs/dev.yaml on the reference data, one node:
#  1. bench-model: the teacher native vs tract (f32 and int8), the distilled student,
#     and the cascade — µs per request of 200 candidates and top-10 agreement;
#  2. a hot swap under load: the read capacity C (closed loop), then open-loop reads at
#     0.7 C for 10 s alone, 10 s during which a new ranker version is written and
#     swapped in (POST /admin/models/reload 3 s in), and 10 s alone again: p99 and errors
#     of each (target: swap p99 <= 1.2x steady, 0 errors);
#  3. shadow traffic: the same reads with the experiment's shadow off and on for every
#     user (the student shadows the teacher): primary p99 of each (target <= 1.1x), and
#     the shadow's summary (overlap@10, RBO, runs and sheds);
#  4. variants: A = teacher, B = student: per-variant request latency from the metrics.
#   loadgen/scripts/models.sh [NODE_BINARY]
# Env: BENCH_* as in lib.sh; PARTS (default "bench swap shadow") picks the parts.
# Results: $OUT/models/result.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh
[ $# -ge 1 ] && NODE_BIN=$(realpath "$1")
R="$OUT/models"
mkdir -p "$R"
python3 -c 'import onnx, sklearn' 2>/dev/null ||
  python3 -m pip install --quiet -r tools/models/requirements.txt
REPO="$R/models"
rm -rf "$REPO"
python3 tools/models/export.py --data "$DATA" --out "$REPO/ranker/1" >/dev/null
python3 tools/models/export.py --data "$DATA" --out "$REPO/ranker_int8/1" --int8 >/dev/null
# the student is trained once per data set (minutes), then reused
STUDENT="$DATA/../student-$ITEMS"
if [ ! -f "$STUDENT/model.onnx" ]; then
  python3 tools/models/distill.py --data "$DATA" --out "$STUDENT" \
    --users "${DISTIL_USERS:-1500}" --hidden "${DISTIL_HIDDEN:-48}" --epochs 30 >"$R/distill.json"
fi
mkdir -p "$REPO/student" && cp -r "$STUDENT" "$REPO/student/1"
cat "$REPO/student/1/distill_report.json" >"$R/distill.json"

PARTS=${PARTS:-bench swap shadow}
if [[ $PARTS == *bench* ]]; then
echo "== bench-model" | tee -a "$R/result.txt"
"$NODE_BIN" bench-model --data-dir "$DATA" --model "$REPO/ranker/1" --model "$REPO/ranker_int8/1" \
  --model "$REPO/student/1" --users 200 --calls 2000 --rerank 50 >"$R/bench-model.json"
python3 - "$R/bench-model.json" <<'PY' | tee -a "$R/result.txt"
import json, sys
r = json.load(open(sys.argv[1]))
for m in r["models"]:
    print(f"{m['model']:14s} {m['format']:6s} {m['us_per_call']:8.1f} us/request  "
          f"{m['us_per_request_batched']:8.1f} us/request in batches of 8  top-10 agreement {m['top10_agreement']:.3f}")
for c in r["cascades"]:
    print(f"cascade {c['student']} -> teacher on its best {c['rerank']}: {c['us_per_call']:.1f} us/request, "
          f"top-10 agreement {c['top10_agreement']:.3f}")
PY
fi

lg() { "$BIN/recd-loadgen" --url "http://127.0.0.1:$PORT" --items "$ITEMS" "$@"; }
reads() { # NAME SEED: 10 s of open-loop reads at $RATE
  lg --mode open --rate "$RATE" --arrivals poisson --connections 2048 --duration 10s \
    --seed "$2" --out "$R/$1" >"$R/$1.log" 2>&1
}
p99() { python3 -c "import json; s=json.load(open('$R/$1/summary.json')); print(s['p99_ms'], sum(s['errors'].values()))"; }

if [[ $PARTS == *swap* ]]; then
echo "== hot swap under load" | tee -a "$R/result.txt"
# both variants run the newest ranker (the default plan): the swap changes every answer
printf 'experiment:\n  name: swap\n  split_percent: 50\n  variants: [{name: A}, {name: B}]\n' >"$R/ab-swap.yaml"
start_node swap RECD__MODELS__DIR="$REPO" RECD__MODELS__POLL_MS=3600000 \
  RECD__EXPERIMENTS__SCENARIOS_FILE="$R/ab-swap.yaml"
lg --mode closed --connections 32 --duration 10s --out "$R/capacity" >/dev/null 2>&1
C=$(python3 -c "import json; print(json.load(open('$R/capacity/summary.json'))['achieved_rps'])")
RATE=$(python3 -c "print(round(0.7 * $C))")
echo "capacity C = $C req/s; reads at 0.7 C = $RATE req/s" | tee -a "$R/result.txt"
reads steady-1 21
( sleep 3
  cp -r "$REPO/ranker/1" "$REPO/ranker/.2.tmp" && mv "$REPO/ranker/.2.tmp" "$REPO/ranker/2"
  admin /admin/models/reload -X POST >"$R/reload.json" ) &
SWAPPER=$!
reads swap 22
wait "$SWAPPER"
reads steady-2 23
stop_node
python3 - "$R" <<'PY' | tee -a "$R/result.txt"
import json, sys
r = sys.argv[1]
runs = {n: json.load(open(f"{r}/{n}/summary.json")) for n in ("steady-1", "swap", "steady-2")}
for n, s in runs.items():
    print(f"{n:9s} {s['achieved_rps']:.0f}/s  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  errors {sum(s['errors'].values())}")
steady = (runs["steady-1"]["p99_ms"] + runs["steady-2"]["p99_ms"]) / 2
print(f"swap p99 / steady p99 = {runs['swap']['p99_ms'] / steady:.2f}  (target <= 1.2, 0 errors)")
print("reload:", json.load(open(f"{r}/reload.json"))["loaded"])
PY
fi

[[ $PARTS == *shadow* ]] || exit 0
echo "== shadow off / on, variants A (teacher) and B (student)" | tee -a "$R/result.txt"
for mode in off on; do
  AB="$R/ab-$mode.yaml"
  printf 'experiment:\n  name: teacher-vs-student\n  split_percent: 50\n  variants:\n    - {name: A, model: ranker@1}\n    - {name: B, model: student@1}\n' >"$AB"
  [ "$mode" = on ] && printf '  shadow: {fraction_percent: 100, variant: {name: S, model: student@1}}\n' >>"$AB"
  start_node "shadow-$mode" RECD__MODELS__DIR="$REPO" RECD__EXPERIMENTS__SCENARIOS_FILE="$AB"
  reads "shadow-$mode" 31
  admin /admin/experiments >"$R/experiments-$mode.json"
  curl -sf "http://127.0.0.1:$PORT/metrics" >"$R/metrics-$mode.txt"
  stop_node
done
python3 - "$R" <<'PY' | tee -a "$R/result.txt"
import json, re, sys
r = sys.argv[1]
off, on = (json.load(open(f"{r}/shadow-{m}/summary.json")) for m in ("off", "on"))
for n, s in (("off", off), ("on", on)):
    print(f"shadow {n:3s} {s['achieved_rps']:.0f}/s  p50 {s['p50_ms']:.2f} ms  p99 {s['p99_ms']:.2f} ms  errors {sum(s['errors'].values())}")
print(f"primary p99 shadow on / off = {on['p99_ms'] / off['p99_ms']:.2f}  (target <= 1.1)")
print("shadow summary:", json.dumps(json.load(open(f"{r}/experiments-on.json"))["shadow"]["compared"]))
def quantile(text, variant, q):
    rows, total = [], 0.0
    for line in text.splitlines():
        if f'variant="{variant}"' not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        le = re.search(r'le="([^"]+)"', line)
        if line.startswith("recd_variant_request_duration_seconds_bucket") and le and le.group(1) != "+Inf":
            rows.append((float(le.group(1)), value))
        elif line.startswith("recd_variant_request_duration_seconds_count"):
            total = value
    rows.sort()
    return next((le for le, c in rows if c >= q * total), float("inf")) * 1e3, int(total)
text = open(f"{r}/metrics-off.txt").read()
for v in ("A", "B"):
    p50, n = quantile(text, v, 0.5)
    p99, _ = quantile(text, v, 0.99)
    print(f"variant {v}: {n} requests, p50 <= {p50:.2f} ms, p99 <= {p99:.2f} ms (histogram bucket bounds)")
for m in re.findall(r'recd_model_rows_total\{model="([^"]+)"\} (\S+)', text):
    print(f"rows scored by {m[0]}: {m[1]}")
PY
