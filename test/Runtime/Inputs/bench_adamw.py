"""Checks bench/gpu/adamw.py's launches() without a GPU: the bytes it passes
qopt_cuda_adamw_f32 hold AdamWParams' fields where AdamWTile.h declares
them (the address of the step's scalars in device memory, the body's
constants, flags, count, then each tensor's seven addresses,
elements and first block), empty tensors are skipped and a launch carries
at most 256 tensors, as CUDAHost.cpp's planAdamW plans them.

    python bench_adamw.py ROOT
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(sys.argv[1], "bench/gpu"))
import adamw  # noqa: E402
from structs import FORMATS  # noqa: E402


class Tensor:
    """What launches() reads of a torch tensor."""

    def __init__(self, n, address):
        self.n, self.address = n, address

    def numel(self):
        return self.n

    def data_ptr(self):
        return self.address


class Torch:
    """What launches() calls of torch: the step's scalars' device buffer."""
    float32 = "float32"

    def tensor(self, values, dtype, device):
        self.values = (list(values), dtype, device)
        return Tensor(4, 0xABC0)


sizes = [5, 0, 4096, 4097] + [1] * 300
tensors = [tuple(Tensor(n, 1000 * i + k) for k in range(7)) for i, n in enumerate(sizes)]
scalars = [0.5, 0.25, 0.75, 1.0, 0.375, 0.875, 0.125, 0.0625]  # (exact in f32)
torch = Torch()
out, step = adamw.launches(tensors, scalars, 3, torch)
failures = 0
taken = [t for t in tensors if t[0].n]
seen = 0
for blocks, params in out:
    fields = struct.unpack(FORMATS["AdamWParams"], params)
    count = fields[6]
    ok = fields[0] == step.data_ptr() == 0xABC0 and list(fields[1:5]) == scalars[4:] \
        and fields[5] == 3 and 1 <= count <= 256
    first = 0
    for j in range(count):
        row = fields[7 + 9 * j:16 + 9 * j]
        want = taken[seen + j]
        ok = ok and list(row[:7]) == [x.address for x in want] and row[7] == want[0].n \
            and row[8] == first
        first += -(-want[0].n // 4096)
    ok = ok and blocks == first and not any(fields[7 + 9 * count:])
    seen += count
    failures += not ok
    print(f"launch of {count} tensors, {blocks} blocks: {'ok' if ok else 'MISMATCH'}")
ok = seen == len(taken) and len(out) == 2 and \
    torch.values == (scalars[:4], "float32", "cuda")
failures += not ok
print(f"{len(out)} launches for {len(taken)} tensors (one empty skipped), the step's "
      f"scalars in one device buffer: "
      f"{'ok' if ok else 'MISMATCH'}")
sys.exit(1 if failures else 0)
