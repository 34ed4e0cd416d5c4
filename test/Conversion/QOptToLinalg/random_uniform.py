"""qopt.random_uniform compiled and run, against an independent numpy
Philox4x32-10 (checked first against Random123's known-answer vectors), with
the runtime's key: each run advances the counter, setting the key back
replays a run bit for bit, streams and seeds give different numbers."""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
MASK = 0xFFFFFFFF


def philox4x32_10(ctr, key):
    """Random123's philox4x32 with 10 rounds, on numpy uint64 arrays holding
    32-bit words (ctr: 4 arrays, key: 2 arrays or ints)."""
    x = [np.asarray(c, np.uint64) & MASK for c in ctr]
    k = [np.asarray(v, np.uint64) & MASK for v in key]
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & MASK, (k[1] + 0xBB67AE85) & MASK]
        p0 = x[0] * np.uint64(0xD2511F53)
        p1 = x[2] * np.uint64(0xCD9E8D57)
        x = [((p1 >> np.uint64(32)) ^ x[1] ^ k[0]) & MASK, p1 & MASK,
             ((p0 >> np.uint64(32)) ^ x[3] ^ k[1]) & MASK, p0 & MASK]
    return x


# Known-answer vectors of philox4x32-10 from Random123 (kat_vectors).
kats = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
        ((MASK,) * 4, (MASK, MASK), (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
        ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
         (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
kat_ok = all(tuple(int(v) for v in philox4x32_10(c, k)) == out for c, k, out in kats)
print("reference known answers:", "ok" if kat_ok else "FAIL")


def reference(shape, stream, seed, counter):
    n = int(np.prod(shape))
    idx = np.arange(n, dtype=np.uint64)
    x0 = philox4x32_10([idx & MASK, np.full(n, stream), np.full(n, counter & MASK),
                        np.full(n, (counter >> 32) & MASK)],
                       [seed & MASK, (seed >> 32) & MASK])[0]
    return ((x0 >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)).reshape(shape)


MODULE = """
func.func @main(%x: tensor<?x5xf32>) -> (tensor<?x5xf32>, tensor<3x2xf32>) {
  %k = qopt.random_key : tensor<2xi64>
  %c0 = arith.constant 0 : index
  %n = tensor.dim %x, %c0 : tensor<?x5xf32>
  %u = qopt.random_uniform %k[%n] stream 7 : tensor<2xi64> -> tensor<?x5xf32>
  %v = qopt.random_uniform %k stream 8 : tensor<2xi64> -> tensor<3x2xf32>
  return %u, %v : tensor<?x5xf32>, tensor<3x2xf32>
}
"""
results = [kat_ok]
with tempfile.TemporaryDirectory() as tmp:
    src = os.path.join(tmp, "rng.mlir")
    open(src, "w").write(MODULE)
    subprocess.run([os.path.join(BIN, "qoptc"), src, "-o", os.path.join(tmp, "rng.so")],
                   check=True, cwd=tmp)
    m = qopt.load(os.path.join(tmp, "rng.so"))
    seed = 0x1234_5678_9ABC
    m.rng = (seed, 41)
    x = np.zeros((20000, 5), np.float32)
    u1, v1 = m.run(x)
    u2, v2 = m.run(x)

    def same(a, b):
        return a.shape == b.shape and np.array_equal(a, b)
    results.append(same(u1, reference((20000, 5), 7, seed, 41)) and
                   same(v1, reference((3, 2), 8, seed, 41)))
    print("run 1 equals the reference:", "ok" if results[-1] else "FAIL")
    results.append(same(u2, reference((20000, 5), 7, seed, 42)) and not np.array_equal(u1, u2))
    print("run 2 (counter advanced) equals the reference:", "ok" if results[-1] else "FAIL")
    m.rng = (seed, 41)
    u3, _ = m.run(x)
    results.append(same(u1, u3))
    print("replay with the same key:", "ok" if results[-1] else "FAIL")
    m.rng = (seed + 1, 41)
    u4, _ = m.run(x)
    results.append(not np.array_equal(u1, u4))
    print("another seed differs:", "ok" if results[-1] else "FAIL")
    results.append(0.0 <= u1.min() and u1.max() < 1.0 and abs(u1.mean() - 0.5) < 0.01)
    print(f"range [0, 1) and mean 0.5 +- 0.01: {'ok' if results[-1] else 'FAIL'}")
print(f"random_uniform: {results.count(False)} failures")
sys.exit(0 if all(results) else 1)
