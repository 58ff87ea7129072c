"""ONNX graphs of dense ReLU networks as recd's model repository serves them: one f32
input `x` of shape [rows, width], one output `score` of shape [rows, 1]; and the
repository layout `<dir>/<name>/<version>/{model.onnx, model.yaml}`.

Written with the onnx package's helpers (onnx.helper, onnx.numpy_helper) and checked
with onnx.checker before it is saved.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# tract 0.21 reads ONNX IR 8 / opset 13 graphs; newer files are not needed here
IR_VERSION = 8
OPSET = 13


def finish(nodes, inits, width, name):
    """The checked model of a graph from `x` [rows, width] to `score` [rows, 1]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", width])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["rows", 1])
    graph = helper.make_graph(nodes, name, [x], [y], inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recd-tools"
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def dense_model(layers, width, name):
    """An ONNX model of [(W [in, out], b [out]), ...] with ReLU between layers."""
    nodes, inits = [], []
    current = "x"
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        inits.append(numpy_helper.from_array(np.asarray(w, np.float32), f"w{i}"))
        inits.append(numpy_helper.from_array(np.asarray(b, np.float32).reshape(-1), f"b{i}"))
        nodes.append(helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"]))
        out = "score" if i == last else f"z{i}"
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out]))
        if i < last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i}"]))
            current = f"a{i}"
    return finish(nodes, inits, width, name)


def dense_model_int8(layers, width, name):
    """The same network with int8 weights (symmetric, one scale per layer) and
    activations quantised per call (DynamicQuantizeLinear -> MatMulInteger, int32
    accumulation, rescaled to f32): the graph onnxruntime's dynamic quantisation
    writes, run by tract's integer kernels."""
    nodes, inits = [], []
    current = "x"
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        w = np.asarray(w, np.float32)
        scale = float(np.abs(w).max()) / 127.0 or 1.0
        wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits += [
            numpy_helper.from_array(wq, f"wq{i}"),
            numpy_helper.from_array(np.array(0, np.int8), f"wz{i}"),
            numpy_helper.from_array(np.array(scale, np.float32), f"ws{i}"),
            numpy_helper.from_array(np.asarray(b, np.float32).reshape(-1), f"b{i}"),
        ]
        nodes += [
            helper.make_node("DynamicQuantizeLinear", [current], [f"xq{i}", f"xs{i}", f"xz{i}"]),
            helper.make_node("MatMulInteger", [f"xq{i}", f"wq{i}", f"xz{i}", f"wz{i}"], [f"acc{i}"]),
            helper.make_node("Cast", [f"acc{i}"], [f"accf{i}"], to=TensorProto.FLOAT),
            helper.make_node("Mul", [f"xs{i}", f"ws{i}"], [f"s{i}"]),
            helper.make_node("Mul", [f"accf{i}", f"s{i}"], [f"m{i}"]),
        ]
        out = "score" if i == last else f"z{i}"
        nodes.append(helper.make_node("Add", [f"m{i}", f"b{i}"], [out]))
        if i < last:
            nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i}"]))
            current = f"a{i}"
    return finish(nodes, inits, width, name)


def write_version(out_dir, model, inputs, extra_files=None, fixed_rows=None):
    """Writes model.onnx and model.yaml into a new version folder `out_dir`, files
    first and the folder renamed into place last, so a polling node never reads half a
    version."""
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, "." + os.path.basename(out_dir) + ".tmp")
    os.makedirs(staging, exist_ok=True)
    onnx.save(model, os.path.join(staging, "model.onnx"))
    with open(os.path.join(staging, "model.yaml"), "w") as f:
        f.write("format: onnx\nfile: model.onnx\n")
        f.write(f"inputs: [{', '.join(inputs)}]\n")
        f.write("output: score\n")
        if fixed_rows:
            # tract 0.21 runs integer matmuls only for a static batch
            f.write(f"fixed_rows: {fixed_rows}\n")
    for name, text in (extra_files or {}).items():
        with open(os.path.join(staging, name), "w") as f:
            f.write(text)
    os.replace(staging, out_dir)
