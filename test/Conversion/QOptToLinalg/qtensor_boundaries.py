"""Quantized tensors across boundaries, compiled with qoptc and run through
the Python binding: a `!qopt.qtensor` passed to and returned from functions,
carried by an `scf.for` loop and chosen by an `scf.if`, a QLoRA layer
(`qopt.lora` on a quantized base), and a quantized tensor of dynamic shape
whose scales are checked against its codes at run time. Each result is
compared with numpy's dequantize-then-multiply."""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
rng = np.random.default_rng(11)
failures = 0


def compile_mlir(text, tmp, name):
    src = os.path.join(tmp, name + ".mlir")
    with open(src, "w") as f:
        f.write(text)
    out = os.path.join(tmp, name + ".so")
    r = subprocess.run([os.path.join(BIN, "qoptc"), src, "-o", out], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr.strip())
    return qopt.load(out)


def report(name, got, want, rtol=1e-5, atol=1e-5):
    global failures
    if got.shape == want.shape and np.allclose(got, want, rtol=rtol, atol=atol):
        print(f"{name}: ok")
    else:
        err = np.max(np.abs(got - want)) if got.shape == want.shape else "shape " + str(got.shape)
        print(f"{name}: FAIL (max abs error {err})")
        failures += 1


def uint4_weight(n, k, group):
    """Codes packed two per byte (low nibble first), zero points and scales
    per group along K, and the float weight they stand for."""
    codes = rng.integers(0, 16, size=(n, k))
    zps = rng.integers(0, 16, size=(n, k // group)).astype(np.int8)
    scales = (rng.uniform(0.02, 0.1, size=(n, k // group))).astype(np.float32)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8).view(np.int8)
    w = (codes - np.repeat(zps, group, axis=1)) * np.repeat(scales, group, axis=1)
    return packed, scales, zps, w.astype(np.float32)


Q = ("!qopt.qtensor<8x8, #qopt.int<4, unsigned, zero_point>, "
     "#qopt.per_group<axis = 1, size = 4>, scales = f32>")
PARTS = "tensor<8x4xi8>, tensor<8x2xf32>, tensor<8x2xi8>"

with tempfile.TemporaryDirectory() as tmp:
    # A layer function applied in a loop whose quantized weight switches
    # from W1 to W2 after the first step (an scf.if in a called function
    # picks it): y = x W1ᵀ W2ᵀ W2ᵀ.
    text = f"""
!q = {Q}
func.func private @layer(%x: tensor<3x8xf32>, %w: !q) -> tensor<3x8xf32> {{
  %y = qopt.linear %x, %w : (tensor<3x8xf32>, !q) -> tensor<3x8xf32>
  return %y : tensor<3x8xf32>
}}
func.func private @pick(%first: i1, %a: !q, %b: !q) -> !q {{
  %r = scf.if %first -> !q {{
    scf.yield %a : !q
  }} else {{
    scf.yield %b : !q
  }}
  return %r : !q
}}
func.func @main(%x: tensor<3x8xf32>, %d1: tensor<8x4xi8>, %s1: tensor<8x2xf32>, %z1: tensor<8x2xi8>,
                %d2: tensor<8x4xi8>, %s2: tensor<8x2xf32>, %z2: tensor<8x2xi8>) -> tensor<3x8xf32> {{
  %q1 = qopt.assemble %d1, %s1 zero_points %z1 : ({PARTS}) -> !q
  %q2 = qopt.assemble %d2, %s2 zero_points %z2 : ({PARTS}) -> !q
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %r:2 = scf.for %i = %c0 to %c3 step %c1 iter_args(%acc = %x, %w = %q1) -> (tensor<3x8xf32>, !q) {{
    %y = func.call @layer(%acc, %w) : (tensor<3x8xf32>, !q) -> tensor<3x8xf32>
    %first = arith.cmpi eq, %i, %c0 : index
    %next = func.call @pick(%first, %q2, %w) : (i1, !q, !q) -> !q
    scf.yield %y, %next : tensor<3x8xf32>, !q
  }}
  return %r#0 : tensor<3x8xf32>
}}
"""
    d1, s1, z1, w1 = uint4_weight(8, 8, 4)
    d2, s2, z2, w2 = uint4_weight(8, 8, 4)
    x = rng.standard_normal((3, 8)).astype(np.float32)
    m = compile_mlir(text, tmp, "loop")
    report("qtensor through calls, scf.for and scf.if", m.run(x, d1, s1, z1, d2, s2, z2)[0],
           x @ w1.T @ w2.T @ w2.T, rtol=1e-4)

    # QLoRA: a LoRA branch on a quantized base weight.
    a = rng.standard_normal((2, 8)).astype(np.float32)
    b = rng.standard_normal((8, 2)).astype(np.float32)
    text = f"""
!q = {Q}
func.func @main(%x: tensor<3x8xf32>, %d: tensor<8x4xi8>, %s: tensor<8x2xf32>, %z: tensor<8x2xi8>,
                %a: tensor<2x8xf32>, %b: tensor<8x2xf32>) -> tensor<3x8xf32> {{
  %q = qopt.assemble %d, %s zero_points %z : ({PARTS}) -> !q
  %y = qopt.lora %x, %q, %a, %b alpha = 4.0
      : (tensor<3x8xf32>, !q, tensor<2x8xf32>, tensor<8x2xf32>) -> tensor<3x8xf32>
  return %y : tensor<3x8xf32>
}}
"""
    m = compile_mlir(text, tmp, "qlora")
    report("qlora", m.run(x, d1, s1, z1, a, b)[0], x @ w1.T + 2.0 * (x @ a.T) @ b.T, rtol=1e-4)

    # Dynamic rows: int8 per output channel; the scales must have one entry
    # per row of codes.
    text = """
!dq = !qopt.qtensor<?x8, #qopt.int<8>, #qopt.per_channel<0>, scales = f32>
func.func private @layer(%x: tensor<3x8xf32>, %w: !dq) -> tensor<3x?xf32> {
  %y = qopt.linear %x, %w : (tensor<3x8xf32>, !dq) -> tensor<3x?xf32>
  return %y : tensor<3x?xf32>
}
func.func @main(%x: tensor<3x8xf32>, %d: tensor<?x8xi8>, %s: tensor<?xf32>) -> tensor<3x?xf32> {
  %q = qopt.assemble %d, %s : (tensor<?x8xi8>, tensor<?xf32>) -> !dq
  %y = func.call @layer(%x, %q) : (tensor<3x8xf32>, !dq) -> tensor<3x?xf32>
  return %y : tensor<3x?xf32>
}
"""
    m = compile_mlir(text, tmp, "dynamic")
    for rows in (5, 12):
        codes = rng.integers(-128, 128, size=(rows, 8)).astype(np.int8)
        scales = rng.uniform(0.001, 0.01, size=rows).astype(np.float32)
        report(f"dynamic qtensor, {rows} rows", m.run(x, codes, scales)[0],
               x @ (codes.astype(np.float32) * scales[:, None]).T)
    try:
        m.run(x, codes, scales[:-1])
        print("dynamic qtensor, short scales: FAIL (no error)")
        failures += 1
    except Exception as e:  # noqa: BLE001
        print(f"dynamic qtensor, short scales: error: {e}")

print(f"qtensor boundaries: {failures} failures")
sys.exit(1 if failures else 0)
