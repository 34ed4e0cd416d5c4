"""Writes the binary ONNX models the importer tests read, into argv[1].

Each model is small and built with onnx.helper, so the tests need no
network and no exporter. Models meant to be rejected are corrupted here on
purpose; the comment on each says how.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)


def save(model, name):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def linear_model(weight, bias, name="linear", extra_inits=()):
    """y = x @ W^T + b as MatMul(x, W^T) + Add, W stored transposed (K x N)."""
    k, n = weight.shape
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", n])
    inits = [numpy_helper.from_array(weight, "model.layers.0.mlp.up_proj.weight"),
             numpy_helper.from_array(bias, "model.layers.0.mlp.up_proj.bias"),
             *extra_inits]
    mm = helper.make_node("MatMul", ["x", "model.layers.0.mlp.up_proj.weight"], ["mm"],
                          name="/model/layers.0/mlp/up_proj/MatMul")
    add = helper.make_node("Add", ["mm", "model.layers.0.mlp.up_proj.bias"], ["y"],
                           name="/model/layers.0/mlp/up_proj/Add")
    mm_info = helper.make_tensor_value_info("mm", TensorProto.FLOAT, ["batch", "seq", n])
    graph = helper.make_graph([mm, add], name, [x], [y], inits, value_info=[mm_info])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                             ir_version=8, producer_name="qopt-tests")


# A weight large enough to be referenced in the model file, a small bias
# that is inlined, and an int64 shape constant (inlined, for folding).
weight = rng.standard_normal((16, 32)).astype(np.float32)
bias = rng.standard_normal(32).astype(np.float32)
shape = numpy_helper.from_array(np.array([0, 0, 32], dtype=np.int64), "shape")
model = linear_model(weight, bias, extra_inits=[shape])
path = save(model, "linear.onnx")
np.save(os.path.join(out, "linear_weight.npy"), weight)

# Truncated: the first 100 bytes of a valid model.
with open(path, "rb") as f:
    data = f.read()
with open(os.path.join(out, "truncated.onnx"), "wb") as f:
    f.write(data[:100])
# Garbage that is not protobuf at all.
with open(os.path.join(out, "garbage.onnx"), "wb") as f:
    f.write(bytes(range(7, 250)) * 3)
open(os.path.join(out, "empty.onnx"), "wb").close()

# raw_data shorter than the declared shape.
bad = linear_model(weight, bias)
bad.graph.initializer[1].raw_data = bad.graph.initializer[1].raw_data[:-4]
save(bad, "short_raw.onnx")

# An absurd shape: 2^40 x 2^40 elements.
bad = linear_model(weight, bias)
del bad.graph.initializer[1].dims[:]
bad.graph.initializer[1].dims.extend([1 << 40, 1 << 40])
save(bad, "absurd_dims.onnx")

# Unknown element type 99.
bad = linear_model(weight, bias)
bad.graph.initializer[1].data_type = 99
save(bad, "bad_dtype.onnx")

# IR version from the future.
bad = linear_model(weight, bias)
bad.ir_version = 99
save(bad, "future_ir.onnx")

# External data: the weight in a side file, next to the model.
ext_dir = os.path.join(out, "ext")
os.makedirs(ext_dir, exist_ok=True)
model = linear_model(weight, bias)
onnx.external_data_helper.convert_model_to_external_data(
    model, all_tensors_to_one_file=True, location="weights.bin",
    size_threshold=256)
onnx.save_model(model, os.path.join(ext_dir, "model.onnx"))


def with_external(location, offset=None, length=None):
    m = linear_model(weight, bias)
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return m


save(with_external("missing.bin"), "ext/missing.onnx")
save(with_external("/etc/hostname"), "ext/absolute.onnx")
save(with_external("../linear.onnx"), "ext/dotdot.onnx")
save(with_external("weights.bin", offset=0, length=100), "ext/bad_length.onnx")
save(with_external("weights.bin", offset=1000), "ext/short_file.onnx")
# A link inside the folder that points outside it.
link = os.path.join(ext_dir, "escape.bin")
if os.path.lexists(link):
    os.remove(link)
os.symlink(os.path.join(out, "linear.onnx"), link)
save(with_external("escape.bin"), "ext/symlink.onnx")

# Node metadata as torch's dynamo exporter writes it.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
node = helper.make_node("Relu", ["x"], ["y"], name="node_relu_0")
entry = node.metadata_props.add()
entry.key, entry.value = "pkg.torch.onnx.name_scopes", "['', 'model.layers.0.mlp.act_fn']"
graph = helper.make_graph([node], "meta", [x], [y])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10),
     "metadata.onnx")

# A node in a domain the importer does not know.
node = helper.make_node("Foo", ["x"], ["y"], name="custom_foo", domain="com.example")
graph = helper.make_graph([node], "custom", [x], [y])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                             helper.make_opsetid("com.example", 1)],
                       ir_version=8), "custom_domain.onnx")

# Control flow: If with subgraphs.
cond = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
branch = helper.make_graph([helper.make_node("Identity", ["x"], ["o"])], "b", [],
                           [helper.make_tensor_value_info("o", TensorProto.FLOAT, [2, 4])])
node = helper.make_node("If", ["c"], ["y"], name="the_if", then_branch=branch, else_branch=branch)
graph = helper.make_graph([node], "cf", [cond, x], [y])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
     "if.onnx")

# Types beyond float: bf16, int4, bool and float8 initializers, inline.
inits = [
    numpy_helper.from_array(np.array([1.5, -2.0], dtype=np.float32), "f32"),
    helper.make_tensor("i4", TensorProto.INT4, [3], [-8, 7, 1]),
    helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
    helper.make_tensor("bf", TensorProto.BFLOAT16, [2], [1.0, -3.0]),
    helper.make_tensor("f8", TensorProto.FLOAT8E4M3FN, [2], [448.0, -0.5]),
    helper.make_tensor("i64", TensorProto.INT64, [2], [1, -1]),
    helper.make_tensor("u8", TensorProto.UINT8, [2], [0, 255]),
]
node = helper.make_node("Identity", ["x"], ["y"])
graph = helper.make_graph([node], "types", [x], [y], inits)
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10),
     "types.onnx")

# A complex64 initializer given in typed fields (found by the fuzzer: it
# used to crash reading the element width).
t = helper.make_tensor("c", TensorProto.COMPLEX64, [1], [1 + 2j])
graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "cplx", [x], [y], [t])
save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
     "complex.onnx")

# More malformed models, one defect each.
bad = linear_model(weight, bias)
bad.graph.initializer.append(bad.graph.initializer[1])
save(bad, "duplicate_init.onnx")

bad = linear_model(weight, bias)
t = bad.graph.initializer[1]
t.ClearField("raw_data")
t.float_data.extend([1.0, 2.0])
save(bad, "wrong_count.onnx")

bad = linear_model(weight, bias)
bad.graph.initializer[1].name = ""
save(bad, "unnamed_init.onnx")

bad = linear_model(weight, bias)
bad.graph.node[0].attribute.extend([helper.make_attribute("alpha", 1.0),
                                    helper.make_attribute("alpha", 2.0)])
save(bad, "attr_twice.onnx")

bad = linear_model(weight, bias)
bad.graph.sparse_initializer.add().values.CopyFrom(helper.make_tensor("sv", TensorProto.FLOAT, [1], [1.0]))
save(bad, "sparse.onnx")

bad = linear_model(weight, bias)
bad.ClearField("graph")
save(bad, "no_graph.onnx")


m = with_external("weights.bin")
m.graph.initializer[0].external_data[0].key = "where"
save(m, "ext/no_location.onnx")
m = with_external("weights.bin")
e = m.graph.initializer[0].external_data.add()
e.key, e.value = "offset", "ten"
save(m, "ext/offset_text.onnx")
save(with_external("weights.bin", offset=1 << 40), "ext/offset_past_end.onnx")


# Nodes that break their operator's schema, one defect each (the importer
# checks every default-domain node against the schema of the model's opset).
def one_node(node, inputs, opset=17, outputs=("y",)):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in inputs]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in outputs]
    return helper.make_model(helper.make_graph([node], "g", ins, outs),
                             opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


save(one_node(helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm", transA=1.0), ["a", "b"]),
     "float_transa.onnx")
save(one_node(helper.make_node("Softmax", ["a"], ["y"], name="softmax", axis="1"), ["a"]),
     "string_axis.onnx")
save(one_node(helper.make_node("MatMul", ["a"], ["y"], name="mm"), ["a"]), "matmul_one_input.onnx")
save(one_node(helper.make_node("Relu", ["a"], ["y", "z"], name="relu"), ["a"], outputs=("y", "z")),
     "two_outputs.onnx")
save(one_node(helper.make_node("Frobnicate", ["a"], ["y"], name="frob"), ["a"]), "unknown_op.onnx")
save(one_node(helper.make_node("Concat", ["a", "a"], ["y"], name="concat"), ["a"]),
     "missing_required.onnx")
save(one_node(helper.make_node("Relu", ["a"], ["y"], name="relu", alpha=0.1), ["a"]),
     "unknown_attr.onnx")
save(one_node(helper.make_node("Gelu", ["a"], ["y"], name="gelu"), ["a"], opset=17),
     "too_early.onnx")
save(one_node(helper.make_node("Upsample", ["a", "a"], ["y"], name="up"), ["a"], opset=11),
     "removed_op.onnx")
save(one_node(helper.make_node("Relu", ["a"], ["y"], name="relu"), ["a"], opset=99),
     "future_opset.onnx")
m = one_node(helper.make_node("Relu", ["a"], ["y"], name="relu"), ["a"])
m.graph.ClearField("output")
save(m, "no_outputs.onnx")
