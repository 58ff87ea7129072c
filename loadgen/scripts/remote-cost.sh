#!/usr/bin/env bash
# The CPU cost of a remote call, isolated: the same load (CLUSTER_RATE, default 800/s,
# FIXED_SECS = 20 s) on (a) one node holding everything and (b) an ingress+ranker node whose every
# feature lookup and index search goes to a second, data-only node. One gateway in both,
# so batches are the same size; the difference in server CPU (both processes) per
# request, divided by the remote calls per request, is what a remote call costs
# (encode, ractor_cluster's TCP hop both ways, decode, checks, the endpoint's task).
# (c) is (b) with mutual TLS on the cluster port (certificates from recd-node gen-certs):
# its difference from (b) per remote call is what TLS adds. (b) and (c) alternate,
# ROUNDS (default 3) of each; each round's figures and the medians are printed.
# Results: $OUT/remote-cost/result.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=lib.sh
source loadgen/scripts/lib.sh

RATE=${CLUSTER_RATE:-800}
R="$OUT/remote-cost"
mkdir -p "$R"
: >"$R/result.txt"
ROSTER='[{name: recd-0, roles: [ingress, ranker]}, {name: recd-1, roles: [features, index]}]'

measure() { # NAME
  local pids before after
  pids=$(pid_list)
  # warm the caches and the latency estimates first
  "$BIN/recd-loadgen" --url http://127.0.0.1:18080 --mode open --rate "$RATE" --duration 5s \
    --out "$R/warm-$1" >/dev/null 2>&1
  before=$(remote_calls 18080)
  "$BIN/recd-loadgen" --url http://127.0.0.1:18080 --mode open --rate "$RATE" --duration "${FIXED_SECS}s" \
    --lanes "$LANES" --server-pid "$pids" --out "$R/$1" 2>&1 |
    grep '^offered' | sed "s/^/$1: /" | tee -a "$R/result.txt"
  after=$(remote_calls 18080)
  python3 - "$R/$1/summary.json" "$((after - before))" "$1" "$FIXED_SECS" <<'PY' | tee -a "$R/result.txt"
import json, sys
s = json.load(open(sys.argv[1]))
calls = int(sys.argv[2]) / max(s["achieved_rps"] * int(sys.argv[4]), 1)
print(f"{sys.argv[3]}: server cpu {s['server_cpu_us_per_request']:.0f} us/request, "
      f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms, remote calls {calls:.2f}/request")
PY
}

cluster_node "$R" single 18080 17700 "RECD__CLUSTER__NODES=[]" RECD__CLUSTER__LISTEN=null
wait_ready 18080
measure local
stop_all
CERTS="$R/certs"
rm -rf "$CERTS"
"$NODE_BIN" gen-certs --out "$CERTS" --node recd-0 --node recd-1 --san 127.0.0.1 >/dev/null
tls() { # NAME: the environment that gives node NAME its certificate
  echo "RECD__CLUSTER__TLS__CA=$CERTS/ca.pem RECD__CLUSTER__TLS__CERT=$CERTS/$1.pem RECD__CLUSTER__TLS__KEY=$CERTS/$1-key.pem"
}
pair() { # NAME [tls]: the two-node cluster, measured as NAME
  local env0="" env1=""
  if [ "${2:-}" = tls ]; then env0=$(tls recd-0) env1=$(tls recd-1); fi
  # shellcheck disable=SC2086 # the certificate variables are meant to split
  cluster_node "$R" recd-1 18081 17701 "RECD__CLUSTER__NODES=$ROSTER" $env1
  # shellcheck disable=SC2086
  cluster_node "$R" recd-0 18080 17700 "RECD__CLUSTER__NODES=$ROSTER" $env0
  wait_ready 18081 18080
  if [ "${2:-}" = tls ]; then
    grep -q "(TLS" "$R/node-recd-0.log" || { echo "$1: no TLS session in node-recd-0.log" >&2; exit 1; }
  fi
  measure "$1"
  stop_all
}
# plain and TLS alternate (ROUNDS of each): the machine's drift falls on both
for round in $(seq 1 "${ROUNDS:-3}"); do
  pair "remote$round"
  pair "tls$round" tls
done
python3 - "$R/result.txt" <<'PY' | tee -a "$R/result.txt"
import re, statistics, sys
v = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\w+): server cpu (\d+) us/request.*remote calls ([\d.]+)/request", line)
    if m:
        v[m.group(1)] = (int(m.group(2)), float(m.group(3)))
l = v["local"][0]
rounds = sorted(int(k[6:]) for k in v if k.startswith("remote"))
per_call = [(v[f"remote{i}"][0] - l) / v[f"remote{i}"][1] for i in rounds]
tls_adds = [(v[f"tls{i}"][0] - v[f"remote{i}"][0]) / v[f"tls{i}"][1] for i in rounds]
print("remote call cost per round: " + ", ".join(f"{c:.0f}" for c in per_call)
      + f" us; median {statistics.median(per_call):.0f} us of CPU per remote call")
print("mutual TLS adds per round: " + ", ".join(f"{c:.1f}" for c in tls_adds)
      + f" us; median {statistics.median(tls_adds):.1f} us of CPU per remote call")
PY
