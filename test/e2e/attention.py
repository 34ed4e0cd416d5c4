"""ONNX Attention (opset 23) compiled by qoptc and run by qopt-run, against
onnxruntime: 4-D grouped-query causal attention with dynamic batch and
sequence, and 3-D inputs with a boolean mask and softcap."""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402

rng = np.random.default_rng(0)
F = TensorProto.FLOAT


def model(inputs, outputs, **attrs):
    node = helper.make_node("Attention", [i.name for i in inputs], ["y"], name="attn", **attrs)
    m = helper.make_model(helper.make_graph([node], "a", inputs, outputs),
                          opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
    onnx.checker.check_model(m)
    return m


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


gqa = model([vi("q", F, ["b", 4, "s", 8]), vi("k", F, ["b", 2, "s", 8]), vi("v", F, ["b", 2, "s", 6])],
            [vi("y", F, ["b", 4, "s", 6])], is_causal=1)
masked = model([vi("q", F, [2, 5, 12]), vi("k", F, [2, 7, 12]), vi("v", F, [2, 7, 12]),
                vi("m", TensorProto.BOOL, [5, 7])],
               [vi("y", F, [2, 5, 12])], q_num_heads=3, kv_num_heads=3, softcap=2.0, scale=0.3)


def main():
    failures = 0
    cases = [("gqa_causal", gqa, [[(1, 4, 5, 8), (1, 2, 5, 8), (1, 2, 5, 6)],
                                  [(3, 4, 9, 8), (3, 2, 9, 8), (3, 2, 9, 6)]]),
             ("3d_bool_mask_softcap", masked, [[(2, 5, 12), (2, 7, 12), (2, 7, 12), "mask"]])]
    for name, m, runs in cases:
        with tempfile.TemporaryDirectory() as tmp:
            library = qopt_check.compile_model(m, tmp)
            for shapes in runs:
                inputs = []
                for s in shapes:
                    if s == "mask":
                        mask = rng.random((5, 7)) > 0.3
                        mask[:, 0] = True  # no fully masked rows
                        inputs.append(mask)
                    else:
                        inputs.append(rng.standard_normal(s).astype(np.float32))
                try:
                    ok, msg = qopt_check.compare(m, inputs, rtol=1e-5, atol=1e-5, library=library)
                except qopt_check.QOptError as e:
                    ok, msg = False, str(e)
                print(f"{name} {inputs[0].shape}: {'ok' if ok else 'MISMATCH ' + msg}")
                failures += not ok
    print(f"attention: {3 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
