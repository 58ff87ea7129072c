"""The PromQL queries of a Grafana dashboard with its variables replaced by values
Prometheus accepts ($__rate_interval → 1m, $instance → .*), as a JSON list on stdout.
Shared by deploy/check.sh (parse) and scrape-test.sh (evaluate).
Usage: dashboard_queries.py DASHBOARD.json"""
import json
import sys

SUBST = {"$__rate_interval": "1m", "$instance": ".*"}


def queries(dashboard):
    out = []

    def walk(panels):
        for p in panels:
            out.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    for k, v in SUBST.items():
        out = [e.replace(k, v) for e in out]
    return out


if __name__ == "__main__":
    found = queries(json.load(open(sys.argv[1])))
    if not found:
        sys.exit("no queries found in " + sys.argv[1])
    json.dump(found, sys.stdout)
