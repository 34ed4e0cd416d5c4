"""qopt.hadamard compiled for the CPU, against numpy and against itself.

The f32 last-axis transform runs as products of Kronecker factors (BLAS);
the butterfly lowering (another axis, other element types) is a separate
implementation. For each order: the transform of the identity is an
orthonormal matrix of entries ±1/√n that is kron(B, H_p) with H_p
Sylvester's (numpy) — B, the tabulated base, is checked by orthogonality;
both lowerings agree on random data with signs, over dynamic leading axes
and in blocks.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
failures = 0


def report(label, ok, detail=""):
    global failures
    failures += not ok
    print(f"{label}: {'ok' if ok else 'FAIL'}" + (f" ({detail})" if not ok and detail else ""))


def sylvester(p):
    h = np.ones((1, 1))
    while h.shape[0] < p:
        h = np.block([[h, h], [h, -h]])
    return h


def split(n):
    """n = base * 2^k with base 1 or 4 * (odd): qopt's construction."""
    odd = n
    while odd % 2 == 0:
        odd //= 2
    base = 1 if odd == 1 else 4 * odd
    return base, n // base


def compile_module(text, tmp, name):
    src = os.path.join(tmp, f"{name}.mlir")
    open(src, "w").write(text)
    lib = os.path.join(tmp, f"{name}.so")
    subprocess.run([os.path.join(BIN, "qoptc"), src, "-o", lib], check=True, cwd=tmp)
    return qopt.load(lib)


rng = np.random.default_rng(0)
with tempfile.TemporaryDirectory() as tmp:
    for n in (8, 12, 48, 1024, 2816):
        # The identity through the product path: row i is H_n e_i / √n.
        m = compile_module(f"""
func.func @main(%x: tensor<{n}x{n}xf32>) -> tensor<{n}x{n}xf32> {{
  %y = qopt.hadamard %x : (tensor<{n}x{n}xf32>) -> tensor<{n}x{n}xf32>
  return %y : tensor<{n}x{n}xf32>
}}""", tmp, f"eye{n}")
        h = m.run(np.eye(n, dtype=np.float32))[0].astype(np.float64).T * np.sqrt(n)
        base, p = split(n)
        b = h[::p, ::p]
        ok = (np.abs(np.abs(h) - 1).max() <= 1e-5 and
              np.abs(h @ h.T / n - np.eye(n)).max() <= 1e-5 and
              np.abs(h - np.kron(b, sylvester(p))).max() <= 1e-5)
        report(f"order {n} = {base} x {p}: orthogonal, entries +-1/sqrt(n), H_base (x) Sylvester H_{p}", ok)
        # Random data with signs over dynamic leading axes: the product
        # lowering (last axis, f32) against the butterflies (axis 0 of the
        # transposed data).
        s = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
        m2 = compile_module(f"""
func.func @main(%x: tensor<?x?x{n}xf32>, %t: tensor<{n}x?xf32>, %s: tensor<{n}xf32>) -> (tensor<?x?x{n}xf32>, tensor<{n}x?xf32>) {{
  %y = qopt.hadamard %x signs %s : (tensor<?x?x{n}xf32>, tensor<{n}xf32>) -> tensor<?x?x{n}xf32>
  %z = qopt.hadamard %t signs %s axis = 0 : (tensor<{n}x?xf32>, tensor<{n}xf32>) -> tensor<{n}x?xf32>
  return %y, %z : tensor<?x?x{n}xf32>, tensor<{n}x?xf32>
}}""", tmp, f"cmp{n}")
        x = rng.standard_normal((2, 3, n)).astype(np.float32)
        y, z = m2.run(x, np.ascontiguousarray(x.reshape(6, n).T), s)
        ref = (x.reshape(6, n).astype(np.float64) * s) @ h.T / np.sqrt(n)
        e1 = np.abs(y.reshape(6, n) - ref).max() / np.abs(ref).max()
        e2 = np.abs(z.T - ref).max() / np.abs(ref).max()
        report(f"order {n}: products and butterflies = numpy within 1e-6 (signs, [2, 3, {n}])",
               e1 <= 1e-6 and e2 <= 1e-6, f"{e1:.1e} / {e2:.1e}")
    # Blocks: 24 over a last axis of 48.
    m3 = compile_module("""
func.func @main(%x: tensor<?x48xf32>) -> tensor<?x48xf32> {
  %y = qopt.hadamard %x block = 24 : (tensor<?x48xf32>) -> tensor<?x48xf32>
  return %y : tensor<?x48xf32>
}""", tmp, "blocks")
    # The reference H_24 from the butterfly lowering (axis 0 of the
    # identity: its columns are H e_i).
    h24 = compile_module("""
func.func @main(%x: tensor<24x24xf32>) -> tensor<24x24xf32> {
  %y = qopt.hadamard %x axis = 0 : (tensor<24x24xf32>) -> tensor<24x24xf32>
  return %y : tensor<24x24xf32>
}""", tmp, "eye24").run(np.eye(24, dtype=np.float32))[0].astype(np.float64)
    x = rng.standard_normal((5, 48)).astype(np.float32)
    ref = np.concatenate([x[:, :24] @ h24.T, x[:, 24:] @ h24.T], axis=1)
    e = np.abs(m3.run(x)[0] - ref).max()
    report("blocks of 24 over 48 = each half transformed", e <= 1e-5, f"{e:.1e}")
print(f"hadamard numerics: {failures} failed")
