"""Distils recd's ranker into a much smaller student and writes it as an ONNX version of
the model repository, with a report of how well it agrees with its teacher.

The teacher is the catalogue's production ranker (mlp.f32: 96 -> 128 -> 64 -> 1). Users
are sampled as recd derives its demo users (docs/workload.md), each with its exact top
`--candidates` items by inner product, i.e. what the ranker re-ranks when it serves. The
student (96 -> hidden -> 1 by default, scikit-learn's MLPRegressor) learns the teacher's
scores of those rows, standardised per user so it spends its capacity on the ranking
within a user and not on offsets between users. Held-out users measure top-10 overlap
and NDCG@10 against the teacher (relevance: the teacher's top 10, graded 10..1), and
numpy's time per 200 candidates for both nets (recd's own costs: `recd-node
bench-model`).

    python3 -m pip install -r tools/models/requirements.txt
    python3 tools/models/distill.py --data data --out models/student/1
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.neural_network import MLPRegressor

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import reference  # noqa: E402
from onnx_graph import dense_model, write_version  # noqa: E402


def user_rows(cat, user_ids, candidates):
    """For each user: (candidate ids, teacher input rows, teacher scores)."""
    out = []
    for uid in user_ids:
        emb, feats, _ = reference.profile(uid, cat.centers)
        ids = reference.exact_top(cat, emb, candidates)
        items = cat.items[ids].astype(np.float32)
        x = np.concatenate(
            [
                items * emb,
                np.broadcast_to(feats, (len(ids), reference.FEAT_DIM)),
                cat.item_feats[ids],
            ],
            axis=1,
        ).astype(np.float32)
        out.append((ids, x, reference.rerank_scores(cat, emb, feats, ids)))
    return out


def forward(layers, x):
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x.reshape(-1)


def top(scores, ids, k):
    order = np.lexsort((ids, -scores))
    return ids[order[:k]]


def ndcg_at(k, teacher_scores, student_scores, ids):
    ideal = top(teacher_scores, ids, k)
    gain = {int(i): k - r for r, i in enumerate(ideal)}
    got = top(student_scores, ids, k)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = sum(gain.get(int(i), 0) * d for i, d in zip(got, discount))
    idcg = sum((k - r) * d for r, d in enumerate(discount))
    return dcg / idcg


def time_per_call(layers, x, repeats=200):
    t = time.perf_counter()
    for _ in range(repeats):
        forward(layers, x)
    return (time.perf_counter() - t) / repeats * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="catalogue folder (meta.json, mlp.f32, ...)")
    ap.add_argument("--out", required=True, help="the new version folder, <repo>/<name>/<version>")
    ap.add_argument("--users", type=int, default=2000, help="training users")
    ap.add_argument("--held-out", type=int, default=300, help="users kept for the report")
    ap.add_argument("--candidates", type=int, default=reference.CANDIDATES)
    ap.add_argument("--hidden", type=int, default=32, help="the student's hidden units")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    cat = reference.Catalogue(args.data)
    candidates = min(args.candidates, cat.items.shape[0])
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(10_000_000, size=args.users + args.held_out, replace=False)
    ids = [f"u{i}" for i in picked]
    t0 = time.perf_counter()
    train = user_rows(cat, ids[: args.users], candidates)
    held = user_rows(cat, ids[args.users :], candidates)

    def standardised(rows):
        x = np.concatenate([r[1] for r in rows])
        y = np.concatenate([(r[2] - r[2].mean()) / (r[2].std() + 1e-9) for r in rows])
        return x, y

    x, y = standardised(train)
    student = MLPRegressor(
        hidden_layer_sizes=(args.hidden,),
        learning_rate_init=2e-3,
        batch_size=512,
        max_iter=args.epochs,
        early_stopping=True,
        n_iter_no_change=5,
        random_state=args.seed,
    )
    student.fit(x, y)
    trained_s = time.perf_counter() - t0
    layers = [(w.astype(np.float32), b.astype(np.float32)) for w, b in zip(student.coefs_, student.intercepts_)]
    teacher = [(w.astype(np.float32), b.astype(np.float32)) for w, b in
               zip(cat.layers[0::2], cat.layers[1::2])]

    overlap, ndcg = [], []
    for cand, rows, t_scores in held:
        s_scores = forward(layers, rows)
        overlap.append(len(set(top(t_scores, cand, 10)) & set(top(s_scores, cand, 10))) / 10)
        ndcg.append(ndcg_at(10, t_scores, s_scores, cand))
    sample = held[0][1][:200]
    report = {
        "teacher": "mlp.f32 96-128-64-1",
        "student": f"96-{args.hidden}-1",
        "train_users": args.users,
        "held_out_users": args.held_out,
        "candidates": candidates,
        "epochs_run": int(student.n_iter_),
        "train_seconds": round(trained_s, 1),
        "top10_overlap": round(float(np.mean(overlap)), 4),
        "ndcg_at_10": round(float(np.mean(ndcg)), 4),
        "numpy_us_per_200": {
            "teacher": round(time_per_call(teacher, sample), 1),
            "student": round(time_per_call(layers, sample), 1),
        },
    }
    model = dense_model(layers, rows.shape[1], "student")
    write_version(
        args.out,
        model,
        ["cross", "user_feats", "item_feats"],
        {"distill_report.json": json.dumps(report, indent=2) + "\n"},
    )
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
