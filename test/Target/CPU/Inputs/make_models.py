"""Small models and .npy inputs for the qoptc / qopt-run tests.

  make_models.py OUTDIR

linear.onnx: y[batch, seq, 32] = x[batch, seq, 16] @ W + b (W by reference,
  so it goes to the weights file); two_inputs.onnx: c = a + b with a shared
  'batch' dimension; unsupported.onnx: a node of an unknown domain. Plus the
  inputs the tests feed them and the onnxruntime reference for linear.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

out = sys.argv[1]
rng = np.random.default_rng(0)


def save(name, model):
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(out, name))


w = rng.standard_normal((16, 32)).astype(np.float32)
b = rng.standard_normal(32).astype(np.float32)
linear = helper.make_model(
    helper.make_graph(
        [helper.make_node("MatMul", ["x", "proj.weight"], ["xw"], name="/proj/MatMul"),
         helper.make_node("Add", ["xw", "proj.bias"], ["y"], name="/proj/Add")],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 32])],
        [numpy_helper.from_array(w, "proj.weight"), numpy_helper.from_array(b, "proj.bias")]),
    opset_imports=[helper.make_opsetid("", 17)])
save("linear.onnx", linear)

two = helper.make_model(
    helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"], name="add")], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["batch", 4])]),
    opset_imports=[helper.make_opsetid("", 17)])
save("two_inputs.onnx", two)

unsupported = helper.make_model(
    helper.make_graph(
        [helper.make_node("FancyOp", ["a"], ["c"], name="fancy", domain="com.example")],
        "unsupported",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [4])]),
    opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
onnx.save(unsupported, os.path.join(out, "unsupported.onnx"))

x = rng.standard_normal((2, 3, 16)).astype(np.float32)
np.save(os.path.join(out, "x.npy"), x)
np.save(os.path.join(out, "x_big.npy"), rng.standard_normal((5, 70, 16)).astype(np.float32))
np.save(os.path.join(out, "x_rank2.npy"), x[0])
np.save(os.path.join(out, "x_k8.npy"), x[..., :8].copy())
np.save(os.path.join(out, "x_f64.npy"), x.astype(np.float64))
np.save(os.path.join(out, "a2.npy"), np.ones((2, 4), np.float32))
np.save(os.path.join(out, "b3.npy"), np.ones((3, 4), np.float32))
with open(os.path.join(out, "x.npy"), "rb") as f:
    data = f.read()
with open(os.path.join(out, "truncated.npy"), "wb") as f:
    f.write(data[:100])
sess = ort.InferenceSession(linear.SerializeToString(), providers=["CPUExecutionProvider"])
np.save(os.path.join(out, "y_ref.npy"), sess.run(None, {"x": x})[0])
np.save(os.path.join(out, "y_big_ref.npy"),
        sess.run(None, {"x": np.load(os.path.join(out, "x_big.npy"))})[0])

det = helper.make_model(
    helper.make_graph(
        [helper.make_node("Det", ["m"], ["d"], name="det0")], "det",
        [helper.make_tensor_value_info("m", TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("d", TensorProto.FLOAT, [])]),
    opset_imports=[helper.make_opsetid("", 17)])
save("det.onnx", det)

# Run-time checks. embedding.onnx: a token table looked up by ids[batch,
# seq] (Gather, as every language model starts), returned twice (the second
# output an Identity of the first: two outputs, one buffer).
table = rng.standard_normal((10, 4)).astype(np.float32)
embedding = helper.make_model(
    helper.make_graph(
        [helper.make_node("Gather", ["embed.weight", "ids"], ["h"], name="/embed/Gather"),
         helper.make_node("Identity", ["h"], ["h_copy"], name="copy")],
        "embedding",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["batch", "seq", 4]),
         helper.make_tensor_value_info("h_copy", TensorProto.FLOAT, ["batch", "seq", 4])],
        [numpy_helper.from_array(table, "embed.weight")]),
    opset_imports=[helper.make_opsetid("", 17)])
save("embedding.onnx", embedding)
ids = np.array([[0, 3, 9], [-1, -10, 2]], np.int64)
np.save(os.path.join(out, "ids.npy"), ids)
np.save(os.path.join(out, "h_ref.npy"), table[ids])
np.save(os.path.join(out, "ids_past.npy"), np.array([[0, 10, 1]], np.int64))
np.save(os.path.join(out, "ids_before.npy"), np.array([[-11]], np.int64))

# broadcast.onnx: c = a + b over dimensions the types leave open, so that
# the run decides which operand broadcasts.
bcast = helper.make_model(
    helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["c"], name="add")], "broadcast",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["m", "n"]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["p", "q"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, ["r", "s"])]),
    opset_imports=[helper.make_opsetid("", 17)])
save("broadcast.onnx", bcast)
for name, shape in [("a34", (3, 4)), ("b14", (1, 4)), ("b31", (3, 1)),
                    ("b11", (1, 1)), ("b24", (2, 4)), ("a14", (1, 4))]:
    np.save(os.path.join(out, name + ".npy"),
            rng.standard_normal(shape).astype(np.float32))
for a, b in [("a34", "b14"), ("a34", "b31"), ("a34", "b11"), ("a14", "a34")]:
    np.save(os.path.join(out, f"c_{a}_{b}.npy"),
            np.load(os.path.join(out, a + ".npy")) + np.load(os.path.join(out, b + ".npy")))


# More run-time checks, one small model each, with inputs that pass and
# inputs that must stop the run.
def model_of(nodes, inputs, outputs, opset=17):
    return helper.make_model(
        helper.make_graph(nodes, "m", inputs, outputs),
        opset_imports=[helper.make_opsetid("", opset)])


def vi(name, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def arr(name, shape, dtype=np.float32):
    a = rng.standard_normal(shape).astype(dtype) if dtype == np.float32 else \
        rng.integers(-3, 3, shape).astype(dtype)
    np.save(os.path.join(out, name + ".npy"), a)
    return a


# MatMul with batch dimensions the run decides, and inner dimensions only
# the run knows.
save("matmul_bcast.onnx", model_of(
    [helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")],
    [vi("a", ["p", "m", "k"]), vi("b", ["q", "k2", "n"])], [vi("c", ["r", "m", "n"])]))
mm_a = {n: arr(f"mm_a{n}", (n, 2, 3)) for n in (1, 4)}
mm_b = {n: arr(f"mm_b{n}", (n, 3, 5)) for n in (1, 4)}
for p, q in [(1, 4), (4, 1), (4, 4)]:
    np.save(os.path.join(out, f"mm_c{p}{q}.npy"), np.matmul(mm_a[p], mm_b[q]))
arr("mm_a2", (2, 2, 3))
arr("mm_bk4", (4, 4, 5))

# Concat along 0 of inputs whose other dimension only the run knows.
save("concat.onnx", model_of(
    [helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=0)],
    [vi("a", ["r", "c"]), vi("b", ["s", "t"])], [vi("c", ["u", "v"])]))
arr("cat_a", (2, 3))
arr("cat_b3", (1, 3))
arr("cat_b4", (1, 4))

# Split with given lengths of an axis only the run knows.
split = model_of(
    [helper.make_node("Split", ["x", "lengths"], ["y", "z"], name="split", axis=0)],
    [vi("x", ["n"])], [vi("y", ["a"]), vi("z", ["b"])], opset=18)
split.graph.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64), "lengths"))
save("split.onnx", split)
np.save(os.path.join(out, "split_x5.npy"), np.arange(5, dtype=np.float32))
np.save(os.path.join(out, "split_x6.npy"), np.arange(6, dtype=np.float32))
np.save(os.path.join(out, "split_len.npy"), np.array([2, 3], np.int64))

# Reshape to a shape given at run time.
save("reshape.onnx", model_of(
    [helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")],
    [vi("x", ["n"]), vi("shape", [2], TensorProto.INT64)], [vi("y", ["a", "b"])]))
np.save(os.path.join(out, "reshape_shape_ok.npy"), np.array([2, -1], np.int64))
np.save(os.path.join(out, "reshape_shape_bad.npy"), np.array([4, -1], np.int64))

# GatherND / ScatterND with index tuples from the input.
save("gathernd.onnx", model_of(
    [helper.make_node("GatherND", ["data", "idx"], ["y"], name="gnd")],
    [vi("data", [3, 4]), vi("idx", ["n", 2], TensorProto.INT64)], [vi("y", ["n"])]))
save("scatternd.onnx", model_of(
    [helper.make_node("ScatterND", ["data", "idx", "upd"], ["y"], name="snd")],
    [vi("data", [3, 4]), vi("idx", ["n", 2], TensorProto.INT64), vi("upd", ["n"])],
    [vi("y", [3, 4])]))
data34 = arr("nd_data", (3, 4))
idx_ok = np.array([[0, 1], [2, -1], [-3, 3]], np.int64)
np.save(os.path.join(out, "nd_idx_ok.npy"), idx_ok)
np.save(os.path.join(out, "nd_idx_bad.npy"), np.array([[0, 1], [0, 4]], np.int64))
upd = arr("nd_upd", (3,))
np.save(os.path.join(out, "nd_upd2.npy"), upd[:2].copy())
np.save(os.path.join(out, "gnd_ref.npy"), data34[idx_ok[:, 0], idx_ok[:, 1]])
sref = data34.copy()
sref[idx_ok[:, 0], idx_ok[:, 1]] = upd
np.save(os.path.join(out, "snd_ref.npy"), sref)
