"""A run stopped by a failed run-time check frees the buffers it had
allocated: a model computes an 8 MiB intermediate, then gathers with an
index out of range; 60 failed runs must not grow the process by anything
like 60 x 8 MiB (measured on resident memory)."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


graph = helper.make_graph(
    [helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
     helper.make_node("Gather", ["sq", "i"], ["y"], name="pick", axis=1)],
    "g",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "m"]),
     helper.make_tensor_value_info("i", TensorProto.INT64, [1])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 8
with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, "m.onnx")
    onnx.save(model, path)
    subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", os.path.join(tmp, "m.so")],
                   check=True)
    m = qopt.load(os.path.join(tmp, "m.so"))
    x = np.ones((2, 1 << 20), np.float32)  # the square is 8 MiB
    good = m.run(x, np.array([3], np.int64))[0]
    print("good run:", "ok" if good.shape == (2, 1) and np.all(good == 1) else "FAIL")
    errors = 0
    for _ in range(3):  # warm up the allocator
        try:
            m.run(x, np.array([1 << 21], np.int64))
        except ValueError:
            errors += 1
    before = rss_mib()
    for _ in range(60):
        try:
            m.run(x, np.array([1 << 21], np.int64))
        except ValueError as e:
            errors += 1
            message = str(e)
    growth = rss_mib() - before
    print("failed runs:", errors, "message:", message)
    print("growth:", "ok" if growth < 64 else f"FAIL {growth:.0f} MiB after 60 failed runs")
