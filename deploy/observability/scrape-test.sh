#!/usr/bin/env bash
# End-to-end check of the metrics path: a real recd node, a real Prometheus scraping it.
#
#   deploy/observability/scrape-test.sh target/release/recd-node
#
# Starts the node on configs/dev.yaml with a small generated catalogue
# (RECD__DATA__ITEMS=5000) in a temporary data dir on a free loopback port, waits for
# /readyz, sends a few POST /recommend, starts `prometheus` (Debian's package: apt-get
# install prometheus, or run deploy/check.sh first) with a temporary config that
# scrapes the node every second and loads recd-rules.yaml, and polls the Prometheus
# HTTP API until recd_requests_total has a sample > 0 (60 s at most). Prints what it
# found, stops both, and exits 0; non-zero otherwise. Everything stays on 127.0.0.1.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 RECD_NODE_BINARY" >&2
  exit 2
fi
binary="$(realpath "$1")"
[[ -x "$binary" ]] || { echo "scrape-test: $1 is not an executable" >&2; exit 2; }
command -v prometheus >/dev/null ||
  { echo "scrape-test: prometheus not found (apt-get install prometheus)" >&2; exit 2; }
command -v curl >/dev/null || { echo "scrape-test: curl not found" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
node_pid=""
prom_pid=""

cleanup() {
  local pid
  for pid in "$prom_pid" "$node_pid"; do
    [[ -n "$pid" ]] || continue
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "scrape-test: FAIL: $*" >&2
  for f in "$tmp/node.log" "$tmp/prometheus.log"; do
    [[ -s "$f" ]] || continue
    echo "--- last lines of $(basename "$f")" >&2
    tail -n 20 "$f" >&2
  done
  exit 1
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- the node ------------------------------------------------------------------------
node_port="$(free_port)"
node="http://127.0.0.1:$node_port"
echo "starting $binary on $node (5000 generated items in $tmp/data)"
(
  cd "$root" # configs/dev.yaml names configs/ab_scenarios.yaml relative to the root
  RECD__DATA__ITEMS=5000 exec "$binary" run --config configs/dev.yaml \
    --data-dir "$tmp/data" --http-listen "127.0.0.1:$node_port"
) >"$tmp/node.log" 2>&1 &
node_pid=$!

deadline=$((SECONDS + 180))
until [[ "$(curl -s -o /dev/null -w '%{http_code}' "$node/readyz")" == 200 ]]; do
  kill -0 "$node_pid" 2>/dev/null || fail "the node exited before it was ready"
  ((SECONDS < deadline)) || fail "the node was not ready within 180 s"
  sleep 0.5
done
echo "node ready after ${SECONDS}s"

for i in 1 2 3 4 5; do
  code="$(curl -s -o "$tmp/answer.json" -w '%{http_code}' -X POST "$node/recommend" \
    -H 'content-type: application/json' -d '{"user_id":"u'"$i"'","topk":5}')"
  [[ "$code" == 200 ]] || fail "POST /recommend answered $code: $(cat "$tmp/answer.json")"
done
echo "5 recommendations answered 200, e.g. $(cat "$tmp/answer.json")"

# --- Prometheus ------------------------------------------------------------------------
prom_port="$(free_port)"
prom="http://127.0.0.1:$prom_port"
cat >"$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $here/recd-rules.yaml
scrape_configs:
  - job_name: recd
    static_configs:
      - targets: ["127.0.0.1:$node_port"]
YAML
echo "starting prometheus on $prom"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prometheus-data" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$tmp/prometheus.log" 2>&1 &
prom_pid=$!

# query EXPR: prints the result vector as "labels value" lines (nothing when empty)
query() {
  curl -s --get "$prom/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
body = json.load(sys.stdin)
if body.get("status") != "success":
    sys.exit("query failed: %s" % body)
for s in body["data"]["result"]:
    labels = ",".join("%s=%r" % kv for kv in sorted(s["metric"].items()))
    print("{%s} %s" % (labels, s["value"][1]))
' 2>/dev/null || true
}

deadline=$((SECONDS + 60))
found=""
until [[ -n "$found" ]]; do
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited"
  ((SECONDS < deadline)) || fail "no recd_requests_total sample > 0 within 60 s"
  sleep 1
  found="$(query 'recd_requests_total > 0')"
done
echo "prometheus scraped the node:"
while IFS= read -r line; do echo "  $line"; done <<<"$found"
echo "up{job=\"recd\"}: $(query 'up{job="recd"}')"
# the recording rules run on the real series too (one evaluation is enough)
deadline=$((SECONDS + 20))
rule=""
until [[ -n "$rule" ]] || ((SECONDS >= deadline)); do
  sleep 1
  rule="$(query 'lane:recd_requests:rate5m')"
done
[[ -n "$rule" ]] || fail "the recording rule lane:recd_requests:rate5m was not evaluated in 20 s"
echo "recording rule lane:recd_requests:rate5m: $rule"

# every rule evaluates without error on the real series, and so does every query of the
# dashboard (matching errors such as many-to-many only show at evaluation time)
sleep 2
curl -s "$prom/api/v1/rules" | python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r for r in rules if r.get("health") == "err"]
for r in bad:
    print("rule %s: %s" % (r["name"], r.get("lastError")))
print("%d rules evaluated by prometheus, %d with errors" % (len(rules), len(bad)))
sys.exit(1 if bad or not rules else 0)
' || fail "a rule does not evaluate"
python3 "$here/dashboard_queries.py" "$here/grafana-dashboard.json" >"$tmp/queries.json" ||
  fail "no dashboard queries"
python3 - "$tmp/queries.json" "$prom" <<'PY' || fail "a dashboard query does not evaluate"
import json, sys, urllib.parse, urllib.request
exprs, prom = json.load(open(sys.argv[1])), sys.argv[2]
errors = 0
for q in exprs:
    url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        body = json.load(urllib.request.urlopen(url, timeout=10))
    except Exception as err:  # HTTP 400/422 carry the PromQL error
        body = {"status": "error", "error": str(err)}
    if body.get("status") != "success":
        errors += 1
        print("dashboard query failed: %s: %s" % (q, body.get("error")))
print("%d dashboard queries evaluated, %d failed" % (len(exprs), errors))
sys.exit(1 if errors else 0)
PY
echo "scrape-test: PASS"
