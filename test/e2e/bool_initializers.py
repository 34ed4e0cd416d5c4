"""Boolean initializers of any size: small ones inline, large ones by
reference into the model file (one byte per element, as ONNX stores them),
compiled and run against numpy."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(0)
failures = 0
for n in (7, 1000, 100003):
    mask = rng.random(n) < 0.5
    graph = helper.make_graph(
        [helper.make_node("Where", ["mask", "x", "zero"], ["y"], name="where")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n])],
        [numpy_helper.from_array(mask, "mask"),
         numpy_helper.from_array(np.zeros((), np.float32), "zero")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bool.onnx")
        onnx.save(model, path)
        ir = subprocess.run([os.path.join(BIN, "qopt-translate"), "--import-onnx", path],
                            capture_output=True, text=True)
        stored = ("external" if "#qopt.external" in ir.stdout
                  else "inline" if "@mask : tensor" in ir.stdout else "?")
        c = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", os.path.join(tmp, "b.so")],
                           capture_output=True, text=True)
        if ir.returncode or c.returncode:
            print(f"bool[{n}]: FAIL {ir.stderr.strip()} {c.stderr.strip()}")
            failures += 1
            continue
        x = rng.standard_normal(n).astype(np.float32)
        y = qopt.load(os.path.join(tmp, "b.so")).run(x)[0]
        ok = np.array_equal(y, np.where(mask, x, np.float32(0)))
        print(f"bool[{n}]: {stored}, {'ok' if ok else 'FAIL wrong values'}")
        failures += not ok
print(f"bool initializers: {failures} failures")
sys.exit(1 if failures else 0)
