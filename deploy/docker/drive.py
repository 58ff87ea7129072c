#!/usr/bin/env python3
"""Closed-loop load for the container cluster test: WORKERS threads POST /recommend to
URL until SECONDS pass, appending `unix_time status coverage` lines to OUT. Standard
library only. Usage: drive.py URL SECONDS OUT [WORKERS]"""
import json
import sys
import threading
import time
import urllib.error
import urllib.request

url, seconds, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
workers = int(sys.argv[4]) if len(sys.argv) > 4 else 4
end = time.time() + seconds
lock = threading.Lock()
log = open(out, "a", buffering=1)


def worker(w):
    i = 0
    while time.time() < end:
        i += 1
        body = json.dumps({"user_id": f"u{(i * 7919 + w) % 50000}", "topk": 10}).encode()
        req = urllib.request.Request(url + "/recommend", data=body,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                status, coverage = r.status, json.load(r).get("coverage", 0.0)
        except urllib.error.HTTPError as e:
            status, coverage = e.code, 0.0
        except Exception:  # connection refused, timeout: a failed request
            status, coverage = 0, 0.0
        with lock:
            log.write(f"{time.time():.3f} {status} {coverage}\n")


threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
for t in threads:
    t.start()
for t in threads:
    t.join()
