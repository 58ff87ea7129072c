#!/usr/bin/env python3
"""Writes a catalogue in recd's data format (docs/workload.md) and its golden values.

    python3 tools/workload/gen_data.py --n 20000 --out DIR        # data + golden.json
    python3 tools/workload/gen_data.py --golden-only --out DIR    # golden.json for DIR's data

The data is drawn with numpy's PCG64 from --seed (same seed, same bytes). golden.json
holds, for a fixed list of user ids (valid, garbled and empty), what reference.py
computes: FNV-1a hash, known?, variant, the first profile values, the first ids of the
exact top-200, and the exact top-200 re-ranked by the MLP (top 10 with scores). recd's
golden tests serve the same data and compare. Needs numpy (requirements.txt).
"""
import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref  # noqa: E402

ITEM_NOISE = 0.1
CHUNK = 50_000
GOLDEN_USERS = ["u0", "u1", "u42", "u123", "u9999999", "u10000000", "u007", "alice", ""]
FILES = ["items.f32", "item_feats.f32", "centers.f32", "mlp.f32"]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def write_data(out, n, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(ref.N_CENTERS, ref.DIM))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    centers = centers.astype("<f4")
    centers.tofile(os.path.join(out, "centers.f32"))

    # the model first, so that it does not depend on n; scaled for unit-variance layers
    layers = []
    for fan_in, fan_out in [(ref.MLP_IN, ref.H1), (ref.H1, ref.H2), (ref.H2, 1)]:
        layers.append(rng.normal(scale=(2.0 / fan_in) ** 0.5, size=(fan_in, fan_out)))
        layers.append(rng.normal(scale=0.01, size=fan_out))
    np.concatenate([w.ravel() for w in layers]).astype("<f4").tofile(os.path.join(out, "mlp.f32"))

    with open(os.path.join(out, "items.f32"), "wb") as items, open(
        os.path.join(out, "item_feats.f32"), "wb"
    ) as feats:
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            c = rng.integers(0, ref.N_CENTERS, size=m)
            x = centers[c].astype(np.float64) + ITEM_NOISE * rng.normal(size=(m, ref.DIM))
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            items.write(x.astype("<f4").tobytes())
            feats.write(rng.normal(size=(m, ref.FEAT_DIM)).astype("<f4").tobytes())

    meta = {
        "n_items": n,
        "dim": ref.DIM,
        "feat_dim": ref.FEAT_DIM,
        "n_centers": ref.N_CENTERS,
        "seed": seed,
        "generator": "recd tools/workload/gen_data.py",
        "dtype": "float32-le",
        "layout": "row-major",
        "sha256": {f: sha256(os.path.join(out, f)) for f in FILES},
    }
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def golden(out):
    cat = ref.Catalogue(out)
    rows = []
    for uid in GOLDEN_USERS:
        emb, feats, known = ref.profile(uid, cat.centers)
        cand = ref.exact_top(cat, emb)
        scores = ref.rerank_scores(cat, emb, feats, cand)
        rows.append(
            {
                "user_id": uid,
                "fnv1a64": ref.fnv1a64(uid),
                "known": known,
                "variant": ref.variant(uid),
                "embedding_first4": [float(v) for v in emb[:4]],
                "features_first4": [float(v) for v in feats[:4]],
                "exact_top200_first10": [int(i) for i in cand[:10]],
                "exact_rerank_top10": [
                    {"id": int(i), "score": float(s)} for i, s in ref.top_k(cand, scores, 10)
                ],
            }
        )
    with open(os.path.join(out, "golden.json"), "w") as f:
        json.dump(rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="items")
    ap.add_argument("--seed", type=int, default=20241201)
    ap.add_argument("--out", required=True)
    ap.add_argument("--golden-only", action="store_true", help="only (re)write golden.json")
    a = ap.parse_args()
    if a.n <= 0:
        ap.error("--n must be positive")
    os.makedirs(a.out, exist_ok=True)
    started = time.time()
    if not a.golden_only:
        write_data(a.out, a.n, a.seed)
    golden(a.out)
    print(json.dumps({"out": a.out, "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
