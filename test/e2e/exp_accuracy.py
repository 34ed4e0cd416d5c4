"""ONNX Exp, Sigmoid and Softmax compiled by qoptc (exp is a vectorized
polynomial, qopt-cpu-math) against float64 numpy over the whole float
range: relative error within 3.5e-7 (6 ulp) where the result is a normal float,
+inf above 88.7, 0 below -87.7, NaN kept; softmax rows with -inf and very
negative entries give exact zeros and sum to 1."""
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import qopt_check  # noqa: E402


def model(op, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "k"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "k"])
    g = helper.make_graph([helper.make_node(op, ["x"], ["y"], **attrs)], op, [x], [y])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def run(m, x):
    with tempfile.TemporaryDirectory() as tmp:
        return qopt_check.run_compiled(qopt_check.compile_model(m, tmp), [x], tmp)[0]


def main():
    failures = 0

    def report(ok, what):
        nonlocal failures
        failures += not ok
        print(f"{what}: {'ok' if ok else 'FAILED'}")

    x = np.linspace(-110, 95, 1 << 21, dtype=np.float32)
    x = np.concatenate([x, np.array([np.inf, -np.inf, np.nan, 0.0, -0.0] + [0.0] * 3, np.float32)])
    x = x.reshape(-1, 8)
    y = run(model("Exp"), x).ravel()
    x, ref = x.ravel(), np.exp(x.ravel().astype(np.float64))
    normal = (x >= -87.33) & (x <= 88.72)
    rel = np.abs(y[normal] - ref[normal]) / ref[normal]
    report(rel.max() <= 3.5e-7, f"exp: max relative error {rel.max():.2e} over [-87.33, 88.72]")
    report(bool(np.all(y[x > 88.73] == np.inf)), "exp: +inf above 88.73")
    report(bool(np.all(y[x < -87.7] == 0)), "exp: 0 below -87.7")
    report(bool(np.isnan(y[np.isnan(x)]).all()), "exp: NaN stays NaN")
    report(bool(np.all(y[x == 0] == 1)), "exp: exp(0) = 1")

    s = np.linspace(-30, 30, 1 << 16, dtype=np.float32).reshape(-1, 16)
    got = run(model("Sigmoid"), s)
    want = 1 / (1 + np.exp(-s.astype(np.float64)))
    err = np.max(np.abs(got - want) / want)
    report(err <= 5e-7, f"sigmoid: max relative error {err:.2e}")

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(64, 128)).astype(np.float32)
    logits[:, ::3] = -np.inf
    logits[:, 1::7] = -3.0e38
    got = run(model("Softmax", axis=1), logits)
    e = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    want = e / e.sum(axis=1, keepdims=True)
    # Smaller entries inherit the rounding of x - max in float32.
    big = want > 1e-4
    err = np.max(np.abs(got[big] - want[big]) / want[big])
    report(err <= 1e-6, f"softmax: max relative error {err:.2e} on entries > 1e-4")
    report(bool(np.all(got[:, ::3] == 0) and np.all(got[:, 1::7] == 0)),
           "softmax: masked entries exactly 0")
    report(bool(np.all(np.abs(got.sum(axis=1) - 1) <= 1e-6)), "softmax: rows sum to 1")
    print(f"exp accuracy: {'all passed' if failures == 0 else f'{failures} failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
