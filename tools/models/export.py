"""Writes a catalogue's ranker (mlp.f32, the 96 -> 128 -> 64 -> 1 MLP of
docs/workload.md) as an ONNX version of the model repository, so the same teacher can
be served by tract and by recd's native SGEMM path.

    python3 tools/models/export.py --data data --out models/ranker/1
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "workload"))

import reference  # noqa: E402
from onnx_graph import dense_model, write_version  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="catalogue folder (meta.json, mlp.f32, ...)")
    ap.add_argument("--out", required=True, help="the new version folder, <repo>/<name>/<version>")
    args = ap.parse_args()
    cat = reference.Catalogue(args.data)
    w1, b1, w2, b2, w3, b3 = cat.layers
    model = dense_model([(w1, b1), (w2, b2), (w3, b3)], reference.MLP_IN, "teacher")
    write_version(args.out, model, ["cross", "user_feats", "item_feats"])
    print(f"wrote {args.out}/model.onnx")


if __name__ == "__main__":
    main()
