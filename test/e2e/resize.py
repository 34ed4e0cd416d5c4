"""Resize as torch.onnx exports F.interpolate (constant scales or sizes,
dynamic batch), compiled by qoptc and run by qopt-run, against
onnxruntime."""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

rng = np.random.default_rng(0)
F = TensorProto.FLOAT


def resize(name, attrs, scales=None, sizes=None, out_hw=None):
    inits = [numpy_helper.from_array(np.array([], np.float32), "roi")]
    inputs = ["x", "roi"]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        inputs.append("scales")
    else:
        inits.append(numpy_helper.from_array(np.array([], np.float32), "no_scales"))
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        inputs += ["no_scales", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], name=name, **attrs)
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", F, ["batch", 3, 5, 7])],
                          [helper.make_tensor_value_info("y", F, ["batch", 3] + out_hw)], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(m)
    return m


CASES = [
    # F.interpolate(scale_factor=2, mode="nearest")
    ("nearest_x2", resize("up", {"mode": "nearest", "coordinate_transformation_mode": "asymmetric",
                                 "nearest_mode": "floor"}, scales=[1, 1, 2, 2], out_hw=[10, 14])),
    # F.interpolate(size=(8, 11), mode="bilinear", align_corners=False)
    ("bilinear_sizes", resize("bl", {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
                              sizes=[2, 3, 8, 11], out_hw=[8, 11])),
    # align_corners=True to sizes. (With scales whose product is not an
    # integer, onnxruntime divides by the rounded output length and the ONNX
    # reference, which qopt follows, by the exact one; they then differ.)
    ("bilinear_align_corners", resize("ac", {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
                                      sizes=[3, 3, 3, 4], out_hw=[3, 4])),
]


def main():
    failures = 0
    for name, m in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                library = qopt_check.compile_model(m, tmp)
                batch = {"bilinear_sizes": 2}.get(name, 3)  # sizes pin the batch
                x = rng.standard_normal((batch, 3, 5, 7)).astype(np.float32)
                ok, msg = qopt_check.compare(m, [x], rtol=1e-5, atol=1e-5, library=library)
            except qopt_check.QOptError as e:
                ok, msg = False, str(e)
        print(f"{name}: {'ok' if ok else 'MISMATCH ' + msg}")
        failures += not ok
    print(f"resize: {len(CASES) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
