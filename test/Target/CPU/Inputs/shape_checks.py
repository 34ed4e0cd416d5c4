"""Sizes a model needs equal but its types leave open are checked at run
time: inputs of inconsistent lengths stop the run with an error naming the
node, and consistent ones still match onnxruntime.

Each case is a small graph with a dynamic dimension that must agree with
another operand (a linear layer's K, a norm's scale, Gemm's inner size,
attention's batch / head size / key-value lengths). Prints one line per
run: "ok", "error: <message>", or FAIL."""
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(5)
failures = 0


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 21 else 10
    return m


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def case(name, m, good, bad):
    """Compiles `m`; `good` inputs must match onnxruntime, each of `bad`
    must stop with an error."""
    global failures
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        onnx.save(m, path)
        import subprocess
        r = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", os.path.join(tmp, "m.so")],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"{name}: FAIL compile: {r.stderr.strip()}")
            failures += 1
            return
        compiled = qopt.load(os.path.join(tmp, "m.so"))
        ref = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        names = [i.name for i in m.graph.input]
        got = compiled.run(*good)
        want = ref.run(None, dict(zip(names, good)))
        ok = all(np.allclose(g, w, rtol=1e-4, atol=1e-5) for g, w in zip(got, want))
        print(f"{name} consistent: {'ok' if ok else 'FAIL mismatch'}")
        failures += not ok
        for inputs in bad:
            try:
                compiled.run(*inputs)
                print(f"{name} inconsistent: FAIL no error")
                failures += 1
            except ValueError as e:
                print(f"{name} inconsistent: error: {e}")


W = f32(8, 16)
case("linear K",
     model([helper.make_node("MatMul", ["x", "w"], ["y"], name="/layers.0/fc/MatMul")],
           [vi("x", ["batch", "k"])], [vi("y", ["batch", 16])], [numpy_helper.from_array(W, "w")]),
     [f32(3, 8)], [[f32(3, 7)], [f32(3, 9)]])

g = np.abs(f32(16)) + 0.5
case("rms norm scale",
     model([helper.make_node("RMSNormalization", ["x", "g"], ["y"], name="norm", axis=-1)],
           [vi("x", ["batch", "hidden"])], [vi("y", ["batch", "hidden"])],
           [numpy_helper.from_array(g, "g")], opset=23),
     [f32(2, 16)], [[f32(2, 15)]])

case("layer norm scale",
     model([helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1)],
           [vi("x", ["batch", "hidden"])], [vi("y", ["batch", "hidden"])],
           [numpy_helper.from_array(g, "g"), numpy_helper.from_array(f32(16), "b")]),
     [f32(2, 16)], [[f32(2, 17)]])

case("gemm inner",
     model([helper.make_node("Gemm", ["a", "b"], ["y"], name="gemm", alpha=2.0)],
           [vi("a", ["m", "k"]), vi("b", ["k2", 5])], [vi("y", ["m", 5])]),
     [f32(3, 4), f32(4, 5)], [[f32(3, 4), f32(6, 5)]])

case("attention",
     model([helper.make_node("Attention", ["q", "k", "v"], ["y"], name="attn")],
           [vi("q", ["b", 2, "s", 8]), vi("k", ["bk", 2, "kv", "dk"]), vi("v", ["bv", 2, "kv2", 8])],
           [vi("y", ["b", 2, "s", 8])], opset=23),
     [f32(1, 2, 3, 8), f32(1, 2, 5, 8), f32(1, 2, 5, 8)],
     [[f32(1, 2, 3, 8), f32(1, 2, 5, 8), f32(1, 2, 6, 8)],
      [f32(1, 2, 3, 8), f32(1, 2, 5, 4), f32(1, 2, 5, 8)],
      [f32(1, 2, 3, 8), f32(2, 2, 5, 8), f32(2, 2, 5, 8)]])
case("squeeze",
     model([helper.make_node("Squeeze", ["x", "axes"], ["y"], name="sq")],
           [vi("x", ["a", "one", 3])], [vi("y", ["a", 3])],
           [numpy_helper.from_array(np.array([1], np.int64), "axes")]),
     [f32(2, 1, 3)], [[f32(2, 2, 3)]])

case("conv channels",
     model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
           [vi("x", ["n", "c", 5, 5])], [vi("y", ["n", 4, 3, 3])],
           [numpy_helper.from_array(f32(4, 3, 3, 3), "w")]),
     [f32(1, 3, 5, 5)], [[f32(1, 2, 5, 5)]])

stats = [numpy_helper.from_array(np.abs(f32(3)) + 0.5, n) for n in ("s", "b", "m", "v")]
case("batch norm channels",
     model([helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y"], name="bn")],
           [vi("x", ["n", "c", 4])], [vi("y", ["n", "c", 4])], stats),
     [f32(2, 3, 4)], [[f32(2, 4, 4)]])
case("einsum label",
     model([helper.make_node("Einsum", ["a", "b"], ["y"], name="es", equation="ij,jk->ik")],
           [vi("a", ["m", "k1"]), vi("b", ["k2", 4])], [vi("y", ["m", 4])], opset=12),
     [f32(2, 3), f32(3, 4)], [[f32(2, 3), f32(5, 4)]])

case("pool window",
     model([helper.make_node("MaxPool", ["x"], ["y"], name="pool", kernel_shape=[3, 3])],
           [vi("x", [1, 1, "h", 5])], [vi("y", [1, 1, "oh", 3])]),
     [f32(1, 1, 5, 5)], [[f32(1, 1, 2, 5)]])

expand = model([helper.make_node("Expand", ["x", "s"], ["y"], name="expand")],
               [vi("x", [3]), helper.make_tensor_value_info("s", TensorProto.INT64, [1])],
               [vi("y", ["n"])])
case("expand", expand, [f32(3), np.array([3], np.int64)], [[f32(3), np.array([4], np.int64)]])

blocked = model([helper.make_node("DequantizeLinear", ["x", "s"], ["y"], name="dqb", axis=1,
                                  block_size=4)],
                [helper.make_tensor_value_info("x", TensorProto.INT8, ["r", 8]),
                 vi("s", ["r2", 2])], [vi("y", ["r", 8])], opset=21)
case("blocked scale", blocked,
     [rng.integers(-128, 127, (3, 8)).astype(np.int8), np.abs(f32(3, 2))],
     [[rng.integers(-128, 127, (3, 8)).astype(np.int8), np.abs(f32(2, 2))]])

pad = model([helper.make_node("Pad", ["x", "p"], ["y"], name="pad")],
            [vi("x", [2, 3]), helper.make_tensor_value_info("p", TensorProto.INT64, ["np"])],
            [vi("y", ["a", "b"])])
case("pad lengths", pad, [f32(2, 3), np.array([1, 0, 0, 1], np.int64)],
     [[f32(2, 3), np.array([1, 0, 0], np.int64)]])

resize = model([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="resize")],
               [vi("x", [1, 1, 2, 2]), vi("sc", ["ns"])], [vi("y", [1, 1, "h", "w"])], opset=13)
case("resize scales", resize, [f32(1, 1, 2, 2), np.array([1, 1, 2, 2], np.float32)],
     [[f32(1, 1, 2, 2), np.array([1, 1, 2], np.float32)]])


def hadamard_case():
    """qopt.hadamard (hand-written IR: not an ONNX op) in blocks of 4 over
    a dynamic axis whose size must be a multiple of the block."""
    global failures
    text = """
func.func @main(%x: tensor<2x?xf32>) -> tensor<2x?xf32> {
  %y = qopt.hadamard %x axis = 1 block = 4 : (tensor<2x?xf32>) -> tensor<2x?xf32>
  return %y : tensor<2x?xf32>
}
"""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "h.mlir")
        open(src, "w").write(text)
        import subprocess
        subprocess.run([os.path.join(BIN, "qoptc"), src, "-o", os.path.join(tmp, "h.so")],
                       check=True, cwd=tmp)
        m = qopt.load(os.path.join(tmp, "h.so"))
        x = f32(2, 8)
        h4 = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], np.float32)
        ref = np.concatenate([x[:, :4] @ h4.T, x[:, 4:] @ h4.T], axis=1) / 2
        ok = np.allclose(m.run(x)[0], ref, atol=1e-5)
        print(f"hadamard blocks consistent: {'ok' if ok else 'FAIL mismatch'}")
        failures += not ok
        try:
            m.run(f32(2, 6))
            print("hadamard blocks inconsistent: FAIL no error")
            failures += 1
        except ValueError as e:
            print(f"hadamard blocks inconsistent: error: {e}")


hadamard_case()

# Losses: labels must be classes or the ignored index, and fit the input.
labels_vi = helper.make_tensor_value_info("t", TensorProto.INT64, ["n2"])
case("cross entropy labels",
     model([helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["y"], name="sce",
                             ignore_index=-1)],
           [vi("x", ["n", 5]), labels_vi], [vi("y", [])], opset=13),
     [f32(4, 5), np.array([0, 4, -1, 2], np.int64)],
     [[f32(4, 5), np.array([0, 5, 1, 2], np.int64)],
      [f32(4, 5), np.array([0, -2, 1, 2], np.int64)],
      [f32(4, 5), np.array([0, 1, 2], np.int64)]])

# RotaryEmbedding: position ids must index the caches and fit the input.
ang = rng.uniform(0, 6, size=(16, 4)).astype(np.float32)
pos_vi = helper.make_tensor_value_info("pos", TensorProto.INT64, ["pb", "ps"])
case("rotary embedding",
     model([helper.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"], name="rope")],
           [vi("x", ["b", 2, "s", 8]), pos_vi], [vi("y", ["b", 2, "s", 8])],
           [numpy_helper.from_array(np.cos(ang), "cos"), numpy_helper.from_array(np.sin(ang), "sin")],
           opset=23),
     [f32(2, 2, 3, 8), np.array([[0, 1, 2], [5, 6, 7]], np.int64)],
     [[f32(2, 2, 3, 8), np.array([[0, 1, 2], [5, 6, 16]], np.int64)],
      [f32(2, 2, 3, 8), np.array([[0, 1, 2, 3], [5, 6, 7, 8]], np.int64)]])

# Stale value_info: the model declares the Relu's output [4] while its input
# became dynamic; the run checks the declared size before trusting it.
stale = model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
               helper.make_node("Neg", ["r"], ["y"], name="neg")],
              [vi("x", ["n"])], [vi("y", ["n"])])
stale.graph.value_info.append(vi("r", [4]))
case("declared size", stale, [f32(4)], [[f32(5)]])
print(f"shape checks: {failures} failures")
sys.exit(1 if failures else 0)
