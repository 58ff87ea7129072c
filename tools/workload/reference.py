"""recd's reference of the workload math, written from the format and formulas in
docs/workload.md: user ids → profiles (FNV-1a 64 + splitmix64), A/B variants, exact
inner-product search, the 96 → 128 → 64 → 1 MLP re-rank and the top-k order.

It is deliberately plain (numpy, float64 where the spec says f64) and shares no code with
the Rust implementation, so agreement between the two means something. gen_data.py uses
it to write golden.json; the golden tests compare recd against that file.
"""
import json
import os
import re

import numpy as np

DIM = 64
FEAT_DIM = 16
N_CENTERS = 1000
H1, H2 = 128, 64
MLP_IN = DIM + 2 * FEAT_DIM
CANDIDATES = 200
USER_NOISE = 0.15

MASK = (1 << 64) - 1
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
GOLDEN_GAMMA = 0x9E3779B97F4A7C15

# fullmatch: `$` alone would also accept a trailing newline
KNOWN_ID = re.compile(r"u(0|[1-9][0-9]{0,6})")


def fnv1a64(user_id):
    h = FNV_OFFSET
    for byte in user_id.encode("utf-8"):
        h = ((h ^ byte) * FNV_PRIME) & MASK
    return h


def is_known(user_id):
    return KNOWN_ID.fullmatch(user_id) is not None


def variant(user_id):
    return "A" if fnv1a64(user_id) % 100 < 50 else "B"


def splitmix64(seed, count):
    """The first `count` outputs of the splitmix64 stream from `seed` (k = 1, 2, ...)."""
    out = []
    for k in range(1, count + 1):
        z = (seed + k * GOLDEN_GAMMA) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        out.append(z ^ (z >> 31))
    return out


def unit(x):
    """A splitmix64 output as a float64 in [0, 1)."""
    return (x >> 11) * 2.0**-53


def profile(user_id, centers):
    """(embedding f32[64], features f32[16], known) of a user; seed 0 for unknown ids."""
    known = is_known(user_id)
    seed = fnv1a64(user_id) if known else 0
    stream = splitmix64(seed, 1 + DIM + FEAT_DIM)
    c = stream[0] % N_CENTERS
    emb = [
        float(centers[c, j]) + USER_NOISE * (2.0 * unit(stream[1 + j]) - 1.0)
        for j in range(DIM)
    ]
    norm = sum(e * e for e in emb) ** 0.5  # summed in order, as the spec says
    emb = np.array([e / norm for e in emb], dtype=np.float32)
    feats = np.array(
        [2.0 * unit(stream[1 + DIM + j]) - 1.0 for j in range(FEAT_DIM)], dtype=np.float32
    )
    return emb, feats, known


class Catalogue:
    """The data files of one folder, read as the format describes them."""

    def __init__(self, folder):
        with open(os.path.join(folder, "meta.json")) as f:
            self.meta = json.load(f)
        n = self.meta["n_items"]

        def read(name, rows, cols):
            a = np.fromfile(os.path.join(folder, name), dtype="<f4")
            if a.size != rows * cols:
                raise ValueError(f"{name}: {a.size} floats, expected {rows} x {cols}")
            return a.reshape(rows, cols)

        self.items = read("items.f32", n, DIM)
        self.item_feats = read("item_feats.f32", n, FEAT_DIM)
        self.centers = read("centers.f32", N_CENTERS, DIM)
        flat = np.fromfile(os.path.join(folder, "mlp.f32"), dtype="<f4").astype(np.float64)
        self.layers = split_mlp(flat)


def split_mlp(flat):
    """W1, b1, W2, b2, W3, b3 from the flat file (row-major, x @ W)."""
    shapes = [(MLP_IN, H1), (H1,), (H1, H2), (H2,), (H2, 1), (1,)]
    sizes = [int(np.prod(s)) for s in shapes]
    if flat.size != sum(sizes):
        raise ValueError(f"mlp.f32: {flat.size} floats, expected {sum(sizes)}")
    out, at = [], 0
    for shape, size in zip(shapes, sizes):
        out.append(flat[at : at + size].reshape(shape))
        at += size
    return out


def exact_top(cat, emb, k=CANDIDATES):
    """Ids of the k items with the largest inner product, ties to the smaller id."""
    ip = cat.items.astype(np.float64) @ emb.astype(np.float64)
    order = np.lexsort((np.arange(ip.size), -ip))
    return order[:k]


def rerank_scores(cat, emb, feats, candidates):
    """MLP scores of the candidates for one user (float64 over the f32 inputs)."""
    w1, b1, w2, b2, w3, b3 = cat.layers
    items = cat.items[candidates].astype(np.float64)
    x = np.concatenate(
        [
            items * emb.astype(np.float64),
            np.broadcast_to(feats.astype(np.float64), (len(candidates), FEAT_DIM)),
            cat.item_feats[candidates].astype(np.float64),
        ],
        axis=1,
    )
    h1 = np.maximum(x @ w1 + b1, 0.0)
    h2 = np.maximum(h1 @ w2 + b2, 0.0)
    return (h2 @ w3 + b3)[:, 0]


def top_k(ids, scores, k):
    """[(id, score)] by score descending, ties to the smaller id."""
    ranked = sorted(zip(ids.tolist(), scores.tolist()), key=lambda p: (-p[1], p[0]))
    return ranked[:k]
