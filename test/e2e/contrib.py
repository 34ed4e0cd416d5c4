"""Contrib operators that ONNX Runtime's transformer optimizer writes
(com.microsoft SkipLayerNormalization; SimplifiedLayerNormalization, which
ONNX Runtime registers in the default domain) through qopt,
compared with onnxruntime's kernels."""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

rng = np.random.default_rng(5)
d = 16
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d])
skip = helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["batch", "seq", d])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", d])
gamma = numpy_helper.from_array((1 + 0.1 * rng.standard_normal(d)).astype(np.float32), "ln.weight")
beta = numpy_helper.from_array((0.1 * rng.standard_normal(d)).astype(np.float32), "ln.bias")
bias = numpy_helper.from_array((0.1 * rng.standard_normal(d)).astype(np.float32), "dense.bias")
opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]

cases = {
    "SkipLayerNormalization": helper.make_model(helper.make_graph(
        [helper.make_node("SkipLayerNormalization", ["x", "skip", "ln.weight", "ln.bias", "dense.bias"],
                          ["y"], domain="com.microsoft", epsilon=1e-5)],
        "sln", [x, skip], [y], [gamma, beta, bias]), opset_imports=opsets, ir_version=8),
    "SimplifiedLayerNormalization": helper.make_model(helper.make_graph(
        [helper.make_node("SimplifiedLayerNormalization", ["x", "ln.weight"], ["y"],
                          axis=-1, epsilon=1e-6)],
        "rms", [x], [y], [gamma]), opset_imports=opsets, ir_version=8),
}
failures = 0
for name, model in cases.items():
    for shape in [(1, 3, d), (2, 5, d)]:
        inputs = [rng.standard_normal(shape).astype(np.float32)]
        if name == "SkipLayerNormalization":
            inputs.append(rng.standard_normal(shape).astype(np.float32))
        ok, msg = qopt_check.compare(model, inputs, rtol=1e-4, atol=1e-5)
        print(f"{name} {shape}: {'ok' if ok else 'MISMATCH ' + msg}")
        failures += not ok
print(f"contrib: {4 - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
