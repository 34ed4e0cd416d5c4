"""ONNX quantization operators compiled by qoptc and run by qopt-run,
compared with onnxruntime: a QDQ linear layer (uint8 activations per tensor,
int8 weights per output channel), blocked DequantizeLinear, and
MatMulInteger with zero points (uint8 x int8)."""
import copy
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

rng = np.random.default_rng(0)
F = TensorProto.FLOAT


def model(nodes, inputs, outputs, inits, opset=21):
    m = helper.make_model(helper.make_graph(nodes, "q", inputs, outputs, inits),
                          opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    onnx.checker.check_model(m)
    return m


def qdq_linear():
    w = rng.integers(-127, 128, size=(16, 8)).astype(np.int8)
    ws = (rng.random(8) * 0.02 + 0.01).astype(np.float32)
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "xs"),
             numpy_helper.from_array(np.array(128, np.uint8), "xz"),
             numpy_helper.from_array(w, "w"), numpy_helper.from_array(ws, "ws"),
             numpy_helper.from_array(np.zeros(8, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq_x"),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="dq_w", axis=1),
             helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")]
    m = model(nodes, [helper.make_tensor_value_info("x", F, ["batch", 16])],
              [helper.make_tensor_value_info("y", F, ["batch", 8])], inits)
    return m, [rng.standard_normal((5, 16)).astype(np.float32) * 3]


def blocked_dq():
    inits = [numpy_helper.from_array(rng.integers(0, 256, size=(4, 6)).astype(np.uint8), "w"),
             numpy_helper.from_array(rng.random((4, 3)).astype(np.float32), "s"),
             numpy_helper.from_array(rng.integers(0, 256, size=(4, 3)).astype(np.uint8), "z")]
    nodes = [helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"], axis=1, block_size=2),
             helper.make_node("Add", ["wd", "x"], ["y"])]
    m = model(nodes, [helper.make_tensor_value_info("x", F, [4, 6])],
              [helper.make_tensor_value_info("y", F, [4, 6])], inits)
    return m, [rng.standard_normal((4, 6)).astype(np.float32)]


def matmul_integer():
    inits = [numpy_helper.from_array(rng.integers(-128, 128, size=(8, 5)).astype(np.int8), "b"),
             numpy_helper.from_array(np.array(3, np.uint8), "az"),
             numpy_helper.from_array(rng.integers(-4, 4, size=5).astype(np.int8), "bz")]
    nodes = [helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["y"])]
    m = model(nodes, [helper.make_tensor_value_info("a", TensorProto.UINT8, ["batch", 8])],
              [helper.make_tensor_value_info("y", TensorProto.INT32, ["batch", 5])], inits, opset=13)
    return m, [rng.integers(0, 256, size=(3, 8)).astype(np.uint8)]


def matmul_integer_reference(m, inputs):
    """Exact integer arithmetic (onnxruntime's u8·s8 kernel saturates 16-bit
    pair sums on AVX2 machines, so it is not a reference here)."""
    init = {i.name: numpy_helper.to_array(i).astype(np.int64) for i in m.graph.initializer}
    a = inputs[0].astype(np.int64) - init["az"]
    return [(a @ (init["b"] - init["bz"])).astype(np.int32)]


def main():
    failures = 0
    for name, build, reference in [("qdq_linear", qdq_linear, None),
                                   ("blocked_dq", blocked_dq, None),
                                   ("matmul_integer", matmul_integer, matmul_integer_reference)]:
        m, inputs = build()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                library = qopt_check.compile_model(m, tmp)
                if reference:
                    ok, msg = qopt_check.compare_outputs(
                        reference(m, inputs), qopt_check.run_compiled(library, inputs, tmp))
                else:
                    ok, msg = qopt_check.compare(m, inputs, rtol=1e-5, atol=1e-5,
                                                 library=library)
            except qopt_check.QOptError as e:
                ok, msg = False, str(e)
        print(f"{name}: {'ok' if ok else 'MISMATCH ' + msg}")
        failures += not ok
    # The QDQ weight in an external file, compiled from another folder: the
    # codes are read from the model's folder and stored N×K, and the layer
    # takes the quantized weight itself.
    m, inputs = qdq_linear()
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "model")
        os.makedirs(folder)
        path = os.path.join(folder, "model.onnx")
        onnx.save(copy.deepcopy(m), path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location="weights.bin", size_threshold=0)
        graph = os.path.join(tmp, "graph.mlir")
        out = os.path.join(tmp, "m.so")
        r = subprocess.run([os.path.join(os.environ["QOPT_BIN"], "qoptc"), path, "-o", out,
                            f"--dump-graph-ir={graph}"], capture_output=True, text=True, cwd=tmp)
        if r.returncode:
            ok, msg = False, r.stderr.strip()
        else:
            with open(graph) as f:
                linears = [line.strip() for line in f if "qopt.linear" in line]
            print("qdq_linear external graph:", *linears)
            ok, msg = qopt_check.compare(m, inputs, rtol=1e-5, atol=1e-5, library=out)
        print(f"qdq_linear external: {'ok' if ok else 'MISMATCH ' + msg}")
        failures += not ok
    print(f"quant: {4 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
