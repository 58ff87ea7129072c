"""Writes a catalogue's ranker (mlp.f32, the 96 -> 128 -> 64 -> 1 MLP of
docs/workload.md) as an ONNX version of the model repository, so the same teacher can
be served by tract and by recd's native SGEMM path.

    python3 tools/models/export.py --data data --out models/ranker/1
    python3 tools/models/export.py --data data --out models/ranker_int8/1 --int8
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import reference  # noqa: E402
from onnx_graph import dense_model, dense_model_int8, write_version  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="catalogue folder (meta.json, mlp.f32, ...)")
    ap.add_argument("--out", required=True, help="the new version folder, <repo>/<name>/<version>")
    ap.add_argument("--int8", action="store_true", help="int8 weights and activations")
    args = ap.parse_args()
    cat = reference.Catalogue(args.data)
    w1, b1, w2, b2, w3, b3 = cat.layers
    build = dense_model_int8 if args.int8 else dense_model
    model = build([(w1, b1), (w2, b2), (w3, b3)], reference.MLP_IN, "teacher")
    fixed = 200 if args.int8 else None  # one request's candidates per run
    write_version(args.out, model, ["cross", "user_feats", "item_feats"], fixed_rows=fixed)
    print(f"wrote {args.out}/model.onnx")


if __name__ == "__main__":
    main()
