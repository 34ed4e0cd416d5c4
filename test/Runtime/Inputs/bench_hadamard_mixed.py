"""Checks bench/gpu/hadamard.py's mixed_params / launch_mixed without a GPU:
the bytes they pass qopt_cuda_hadamard_mixed_f32 hold HadamardMixedParams' fields where
HadamardTile.h declares them (base, power, words; H_base's −1 entries as
the bits of column r's word w at r · words + w, bit a % 32 of word a / 32),
the grid and the dynamic shared memory the host library would launch.

    python bench_hadamard_mixed.py ROOT
"""
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(sys.argv[1], "bench/gpu"))
import hadamard  # noqa: E402
from structs import FORMATS  # noqa: E402


class Tensor:
    """What launch_mixed reads of a torch tensor."""

    def __init__(self, rows, cols, address):
        self.shape = (rows, cols)
        self.address = address

    def data_ptr(self):
        return self.address

    def stride(self, dim=None):
        return (self.shape[1], 1) if dim is None else (self.shape[1], 1)[dim]


launches = []
hadamard.launch_1d = lambda drv, name, blocks, threads, params, stream, shared=0: \
    launches.append((name, blocks, threads, params, shared))
failures = 0
rng = np.random.default_rng(0)
for n, base, rows, runs, quant in ((96, 12, 7, 3, False), (11008, 172, 5, 1, True),
                                   (504, 252, 3, 2, False)):
    h = rng.integers(0, 2, (base, base)) * 2 - 1
    x = Tensor(rows, n * runs, 4096)
    codes = Tensor(rows, n * runs, 8192) if quant else None
    steps = Tensor(rows, 1, 12288) if quant else None
    hadamard.launch_mixed(None, 0, hadamard.mixed_params(x, x, None, h, n, codes, steps,
                                                         4 if quant else 0))
    name, blocks, threads, params, shared = launches.pop()
    fields = struct.unpack(FORMATS["HadamardMixedParams"], params)
    # HadamardParams (14 fields: 3 pointers, 5 strides, rows, cols, n,
    # runsPerBlock, scale, signRuns), codes, steps, bits, reserved, then base,
    # power, words, reserved and the 2016 words of bits.
    got_base, power, words = fields[18], fields[19], fields[20]
    columns = fields[22:]
    runs_per_block = fields[11]
    rebuilt = np.array([[-1 if columns[r * words + a // 32] >> (a % 32) & 1 else 1
                         for r in range(base)] for a in range(base)])
    want_blocks = rows if quant else -(-rows * runs // runs_per_block)
    ok = (name == "qopt_cuda_hadamard_mixed_f32" and got_base == base and
          power == n // base and words == -(-base // 32) and (rebuilt == h).all() and
          not any(columns[base * words:]) and fields[10] == n and blocks == want_blocks and
          fields[13] == 1 and (fields[14] != 0) == quant and
          fields[16] == (4 if quant else 0) and
          shared == 4 * (runs_per_block * n + base * words + 8))
    failures += not ok
    print(f"launch_mixed n={n} base={base} quant={quant}: base {got_base}, power {power}, "
          f"{words} words, {blocks} blocks, {shared} bytes shared: {'ok' if ok else 'MISMATCH'}")

# The split plan past 23040 (split_params / launch_split): the butterflies'
# HadamardParams over runs of P2 = min(power, 8192), signs of period n
# (signRuns = P1), unscaled; then the columns kernel's HadamardMixedParams with
# base P1 = base · power / P2 and M = H_base ⊗ H_(power / P2) (Sylvester's) as
# bits, scaled by 1/sqrt(n); the grids as HadamardTile.h plans them.
def sylvester(n):
    i = np.arange(n)
    return np.array([[-1 if bin(a & b).count("1") % 2 else 1 for b in i] for a in i])


for n, base, rows in ((28672, 28, 3), (12 * 16384, 12, 2), (32768, 1, 2)):
    h = rng.integers(0, 2, (base, base)) * 2 - 1 if base > 1 else np.ones((1, 1), int)
    x = Tensor(rows, n, 4096)
    power = n // base
    p2 = min(power, 8192)
    p1 = n // p2
    hadamard.launch_split(None, 0, hadamard.split_params(x, x, x, h, n))
    (name2, blocks2, _, params2, _), (name1, blocks1, _, params1, _) = \
        launches.pop(), launches.pop()
    first = struct.unpack(FORMATS["HadamardParams"], params1)
    second = struct.unpack(FORMATS["HadamardMixedParams"], params2)
    words = second[20]
    columns = second[22:]
    rebuilt = np.array([[-1 if columns[r * words + a // 32] >> (a % 32) & 1 else 1
                         for r in range(p1)] for a in range(p1)])
    m = np.kron(h, sylvester(p1 // base))
    ok = (name1 == "qopt_cuda_hadamard_f32" and name2 == "qopt_cuda_hadamard_columns_f32"
          and first[10] == p2 and first[12] == 1.0 and first[13] == p1 and
          blocks1 == -(-rows * (n // p2) // (1 if p2 >= 2048 else 2048 // p2)) and
          second[10] == n and second[18] == p1 and second[19] == p2 and
          words == -(-p1 // 32) and (rebuilt == m).all() and
          abs(second[12] - n ** -0.5) < 1e-9 and blocks2 == rows * (p2 // 32))
    failures += not ok
    print(f"launch_split n={n} base={base}: butterflies over {p2}, M of order {p1}, "
          f"{blocks1} + {blocks2} blocks: {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if failures else 0)
