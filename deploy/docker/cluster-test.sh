#!/usr/bin/env bash
# Three recd-node containers (the image of build.sh, configs/prod.yaml as in Kubernetes)
# on a private Docker network, their feature store a Redis container (build-redis.sh),
# under load through recd-0:
#   1. they form the cluster over mutual TLS (certificates from the image's gen-certs;
#      the admin port with its token serves /cluster) (and stop dialling), answer /recommend with full coverage
#      every session is TLS; an intruder with another CA's certificate and the right
#      cookie is refused at the handshake and never becomes a member
#   2. `docker kill recd-2`: ≤ 0.1 % failed requests, traffic moved within 2 s
#   3. `docker start recd-2`: it rejoins and serves its shards again
#   4. `docker network disconnect` of recd-1: detected by recd-0 within 3 s (the 1.5 s
#      heartbeat timeout plus the disconnect command and polling), ≤ 0.1 %
#      failed; `docker network connect`: it heals (sessions to the silent peer are
#      closed and re-dialled)
#   5. a click through recd-0 is gone from recd-1's answer within 1 s (replicas share Redis)
#   6. `docker kill` of Redis: answers keep coming (the features rung flagged), writes
#      answer 503; `docker start`: writes work again and the click is still there (AOF)
# Prints each figure; exits non-zero when a bound is missed. Usage: cluster-test.sh
# Env: IMAGE (default recd-node:0.1.0).
set -euo pipefail
cd "$(dirname "$0")"
IMAGE=${IMAGE:-recd-node:0.1.0}
REDIS_IMAGE=${REDIS_IMAGE:-recd-redis:7.0}
NET=recd-test-$$
WORK=$(mktemp -d)
cleanup() {
  for c in recd-0 recd-1 recd-2 intruder; do docker rm -f "$NET-$c" >/dev/null 2>&1 || true; done
  docker rm -f "$NET-redis" >/dev/null 2>&1 || true
  docker network rm "$NET" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for i in 0 1 2; do docker logs --tail 20 "$NET-recd-$i" 2>&1 | sed "s/^/recd-$i: /" >&2 || true; done; exit 1; }

# the cluster's mutual TLS: a CA and a certificate per node, made by the image itself
# (and, from another CA, the intruder's)
for d in tls:recd-0,recd-1,recd-2 rogue:recd-3; do
  dir=$WORK/${d%%:*}
  mkdir -p "$dir" && chmod 777 "$dir"
  # shellcheck disable=SC2046 # one --node per name
  docker run --rm -v "$dir:/out" "$IMAGE" gen-certs --out /out \
    $(tr , '\n' <<<"${d#*:}" | sed 's/^/--node /') >/dev/null
  chmod -R a+r "$dir"
done
ADMIN_TOKEN=container-test-admin-token-$$
docker network create "$NET" >/dev/null
docker run -d --name "$NET-redis" --network "$NET" --network-alias redis "$REDIS_IMAGE" >/dev/null
start() { # N [CONTAINER CERTS [DOCKER ARGS...]]: node recd-N (by default in container
  # recd-N, certificates of the cluster's CA)
  local n=$1 name=${2:-recd-$1} certs=${3:-tls}
  shift $(($# < 3 ? $# : 3))
  docker run -d --name "$NET-$name" --network "$NET" --network-alias "$name" \
    --hostname "$name" \
    -e RECD__CLUSTER__NODE_NAME="recd-$n" -e RECD__CLUSTER__HOSTNAME="$name" \
    -e RECD__CLUSTER__COOKIE=container-test-cookie \
    -v "$WORK/$certs:/etc/recd/tls:ro" \
    -e RECD__CLUSTER__TLS__CA=/etc/recd/tls/ca.pem \
    -e "RECD__CLUSTER__TLS__CERT=/etc/recd/tls/recd-$n.pem" \
    -e "RECD__CLUSTER__TLS__KEY=/etc/recd/tls/recd-$n-key.pem" \
    -e RECD__ADMIN__LISTEN=0.0.0.0:9901 -e "RECD__ADMIN__TOKEN=$ADMIN_TOKEN" \
    -e "RECD__CLUSTER__SEEDS=[recd-0:7700, recd-1:7700]" \
    -e RECD__DATA__ITEMS=5000 -e TOKIO_WORKER_THREADS=2 \
    -e RECD__FEATURES__STORE__BACKEND=redis -e RECD__FEATURES__STORE__REDIS__URL=redis://redis:6379 \
    "$@" "$IMAGE" >/dev/null
}
ip_of() { docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$NET-recd-$1"; }
ready() {
  [ "$(docker inspect -f '{{.State.Running}}' "$NET-recd-$1")" = true ] || fail "recd-$1 exited"
  curl -sf -m 2 "http://$(ip_of "$1"):8080/readyz" >/dev/null 2>&1
}
wait_for() { # SECONDS CMD...: polls CMD every 0.1 s
  local until=$(($(date +%s) + $1)); shift
  until "$@"; do [ "$(date +%s)" -lt "$until" ] || return 1; sleep 0.1; done
}
# cluster JSON of recd-0, and a check on it (python expression over `v`)
view() { curl -sf -m 2 -H "authorization: Bearer $ADMIN_TOKEN" "http://$(ip_of 0):9901/cluster"; }
check_view() { view | python3 -c "import json,sys; v=json.load(sys.stdin); sys.exit(0 if ($1) else 1)" 2>/dev/null; }
# failed and last partial answer (s after T) among answers after T in the load log
tally() {
  python3 - "$WORK/load.log" "$1" <<'PY'
import sys
log, t0 = sys.argv[1], float(sys.argv[2])
rows = [l.split() for l in open(log)]
rows = [(float(t), int(s), float(c)) for t, s, c in rows if float(t) >= t0]
failed = sum(1 for _, s, _ in rows if s != 200)
bad = [t - t0 for t, s, c in rows if s != 200 or c < 1.0]
print(len(rows), failed, f"{max(bad) if bad else 0.0:.3f}")
PY
}

for i in 0 1 2; do start "$i"; done
for i in 0 1 2; do wait_for 300 ready "$i" || fail "recd-$i not ready"; done
wait_for 60 check_view "sorted(v['members']) == ['recd-0', 'recd-1', 'recd-2']" || fail "no 3-node membership"
echo "ok: three containers formed the cluster: $(view | python3 -c 'import json,sys; print(json.load(sys.stdin)["members"])')"
code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H 'content-type: application/json' \
  -d '{"user_id":"u1","topk":10}' "http://$(ip_of 0):8080/recommend")
[ "$code" = 200 ] || fail "/recommend answered $code"
python3 -c "import json; r=json.load(open('$WORK/first.json')); assert len(r['items'])==10 and r['coverage']==1.0, r"
echo "ok: /recommend answered 200 with 10 items and coverage 1.0"
# a formed cluster dials nobody: seeds given by name are recognised (and not re-dialled)
opened() { for i in 0 1 2; do docker logs "$NET-recd-$i" 2>&1 | grep -c 'TCP Session opened' || true; done | awk '{s += $1} END {print s}'; }
before=$(opened)
[ "$before" -gt 0 ] || fail "no session lines in the logs: the re-dial check would see nothing"
sleep 3
after=$(opened)
[ "$before" = "$after" ] || fail "sessions keep being opened in a formed cluster ($before then $after)"
echo "ok: no re-dialling once formed ($after sessions opened in all)"
plain=$(for i in 0 1 2; do docker logs "$NET-recd-$i" 2>&1; done | grep 'TCP Session opened' | grep -vc '(TLS' || true)
[ "$plain" = 0 ] || fail "$plain cluster sessions were opened without TLS"
echo "ok: every cluster session is mutual TLS"
# an intruder: the right cookie, a roster naming it, a certificate of another CA
ROSTER="[$(for i in 0 1 2 3; do printf '{name: recd-%s, roles: [ingress, features, index, ranker]}\n' "$i"; done | paste -sd,)]"
start 3 intruder rogue -e "RECD__CLUSTER__NODES=$ROSTER"
refused() { docker logs "$NET-recd-0" 2>&1 | grep -q 'cluster peer refused: TLS handshake failed'; }
wait_for 60 refused || fail "recd-0 did not log a refused handshake from the intruder"
sleep 2
check_view "sorted(v['members']) == ['recd-0', 'recd-1', 'recd-2'] and v['peers']" ||
  fail "the membership changed with the intruder: $(view)"
docker rm -f "$NET-intruder" >/dev/null
echo "ok: an intruder with another CA's certificate was refused at the handshake (members unchanged)"

# answers of USER through node N, as item ids (one per line)
answer() {
  curl -s -m 2 -H 'content-type: application/json' -d "{\"user_id\":\"$2\",\"topk\":50}" \
    "http://$(ip_of "$1"):8080/recommend" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); print("\n".join(str(i["id"]) for i in r["items"]))'
}
click() { # NODE USER ITEM EVENT_ID: prints the status
  curl -s -o /dev/null -m 3 -w '%{http_code}' -H 'content-type: application/json' \
    -d "{\"events\":[{\"event_id\":\"$4\",\"user_id\":\"$2\",\"item_id\":$3,\"type\":\"click\"}]}" \
    "http://$(ip_of "$1"):8080/v1/events"
}
# ITEM is not in USER's answer through node N (a failed answer is not "gone")
gone() {
  local ids
  ids=$(answer "$1" "$2") || return 1
  ! grep -qx "$3" <<<"$ids"
}
item=$(answer 1 ctest | awk 'NR == 1')
[ -n "$item" ] || fail "no answer for ctest through recd-1"
t_click=$(date +%s.%N)
[ "$(click 0 ctest "$item" c1)" = 200 ] || fail "the click through recd-0 was not acknowledged"
wait_for 1 gone 1 ctest "$item" || fail "the click through recd-0 was not visible through recd-1 within 1 s"
echo "ok: a click through recd-0 was gone from recd-1's answer after $(python3 -c "import time; print(f'{time.time() - $t_click:.3f}')")s"

python3 drive.py "http://$(ip_of 0):8080" 30 "$WORK/load.log" 4 &
LOAD=$!
sleep 2
t_kill=$(date +%s.%N)
docker kill "$NET-recd-2" >/dev/null
sleep 3
read -r total failed moved < <(tally "$t_kill")
echo "docker kill recd-2: $total requests after the kill, $failed failed, last partial/failed answer ${moved}s after"
[ "$total" -gt 50 ] || fail "too little load ($total)"
[ $((failed * 1000)) -le "$total" ] || fail "$failed of $total failed"
python3 -c "import sys; sys.exit(0 if $moved <= 2.0 else 1)" || fail "traffic moved after ${moved}s"

t_start=$(date +%s.%N)
docker start "$NET-recd-2" >/dev/null
wait_for 120 check_view "all('recd-2' in l for k in ('index', 'features') for s, l in enumerate(v['live'][k]) if 'recd-2' in v['placement'][k][s])" ||
  fail "recd-2 did not rejoin"
echo "docker start recd-2: serving its shards again after $(python3 -c "import time; print(f'{time.time() - $t_start:.2f}')")s"

t_cut=$(date +%s.%N)
docker network disconnect "$NET" "$NET-recd-1"
wait_for 10 check_view "any(p['name'] == 'recd-1' and not p['up'] for p in v['peers']) or 'recd-1' not in v['members']" ||
  fail "recd-0 never noticed recd-1 was cut off"
detected=$(python3 -c "import time; print(f'{time.time() - $t_cut:.2f}')")
sleep 2
read -r total failed _ < <(tally "$t_cut")
echo "docker network disconnect recd-1: detected after ${detected}s; $total requests since, $failed failed"
# 1.5 s heartbeat timeout + the time `docker network disconnect` takes + polling
python3 -c "import sys; sys.exit(0 if $detected <= 3.0 else 1)" || fail "detection took ${detected}s"
[ $((failed * 1000)) -le "$total" ] || fail "$failed of $total failed during the partition"

t_heal=$(date +%s.%N)
docker network connect --alias recd-1 "$NET" "$NET-recd-1"
wait_for 60 check_view "any(p['name'] == 'recd-1' and p['up'] for p in v['peers'])" || fail "recd-1 did not come back"
echo "docker network connect recd-1: healed after $(python3 -c "import time; print(f'{time.time() - $t_heal:.2f}')")s"
kill "$LOAD" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
read -r total failed _ < <(tally 0)

# the store goes away: answers keep coming, flagged; writes are refused; it comes back
docker kill "$NET-redis" >/dev/null
flagged() {
  curl -s -m 2 -H 'content-type: application/json' -d '{"user_id":"u4242","topk":10}' \
    "http://$(ip_of 0):8080/recommend" |
    python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if "features" in r["degraded"] else 1)'
}
wait_for 10 flagged || fail "with Redis down, answers were not flagged degraded: features"
code=$(click 0 u4242 1 c2)
[ "${code:0:1}" = 5 ] || fail "with Redis down, a write answered $code"
echo "docker kill redis: answers flagged degraded [features], writes answered $code"
docker start "$NET-redis" >/dev/null
t_back=$(date +%s.%N)
acked() { [ "$(click 0 u4242 2 c3)" = 200 ]; }
wait_for 30 acked || fail "writes did not recover after Redis came back"
# read from the store itself (a zero-age lookup skips the cache)
stored() {
  curl -s -m 2 -H "authorization: Bearer $ADMIN_TOKEN" "http://$(ip_of 1):9901/v1/users/ctest" |
    python3 -c "import json,sys; sys.exit(0 if $item in json.load(sys.stdin).get('recent_items', []) else 1)" 2>/dev/null
}
wait_for 10 stored || fail "the click acknowledged before Redis was killed is lost: $(curl -s -m 2 -H "authorization: Bearer $ADMIN_TOKEN" "http://$(ip_of 1):9901/v1/users/ctest")"
echo "docker start redis: writes back after $(python3 -c "import time; print(f'{time.time() - $t_back:.2f}')")s; the earlier click is still there"
echo "ok: container cluster test passed ($total requests in all, $failed failed)"
