#!/usr/bin/env python3
"""The CUDA kernel library's RMSNorm / LayerNorm (lib/Runtime/Kernels/CUDA/Norm.cu, a warp
per row) on a GPU: a test, then a benchmark, in one run.

  * test: qopt_cuda_norm_f32 against the definitions in float64: RMSNorm, LayerNorm
    with and without beta, rows shorter and longer than a warp, transposed x and y;
  * benchmark: Llama- and GPT-2-shaped rows (2048 tokens × 4096 / 768) against
    torch's f32 rms_norm / layer_norm, in GB/s of x read and y written.

Launched through the driver API with ctypes as bench/gpu/gemm.py does (NormParams,
104 bytes, by value). Written without a GPU at hand: its first run on one is its first
check.
    python3 bench/gpu/norm.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import finish, launch_1d, setup, timer  # noqa: E402

THREADS, ROWS_PER_BLOCK = 256, 8  # NormTile.h's kNormThreads, kNormRowsPerBlock
LAYER, BETA = 1, 2


def launch(drv, x, gamma, beta, y, eps, layer, stream):
    rows, cols = x.shape
    flags = (LAYER if layer else 0) | (BETA if beta is not None else 0)
    b = beta if beta is not None else gamma
    params = struct.pack("<4Q6q2qfi", x.data_ptr(), y.data_ptr(), gamma.data_ptr(),
                         b.data_ptr(), *x.stride(), *y.stride(), gamma.stride(0), b.stride(0),
                         rows, cols, eps, flags)
    launch_1d(drv, "qopt_cuda_norm_f32", (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK, THREADS,
              params, stream)


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "norm")
    if drv is None:
        return 1
    failures = 0
    eps = 1e-5
    for rows, cols, layer, with_beta, transposed in ((3, 1, False, False, False),
                                                     (9, 31, True, False, True),
                                                     (5, 33, False, False, True),
                                                     (2, 4096, True, True, False),
                                                     (1000, 96, True, True, True)):
        x = torch.randn(rows, cols, device="cuda", generator=gen) + 3.0
        y = torch.full((rows, cols), float("nan"), device="cuda")
        if transposed:
            x, y = x.T.contiguous().T, y.T.contiguous().T
        gamma = torch.randn(cols, device="cuda", generator=gen)
        beta = torch.randn(cols, device="cuda", generator=gen) if with_beta else None
        launch(drv, x, gamma, beta, y, eps, layer, stream())
        torch.cuda.synchronize()
        xd = x.double()
        mean = xd.mean(dim=1, keepdim=True) if layer else torch.zeros_like(xd[:, :1])
        want = (xd - mean) / torch.sqrt(((xd - mean) ** 2).mean(dim=1, keepdim=True) + eps)
        want = want * gamma.double() + (beta.double() if with_beta else 0.0)
        err = ((y.double() - want).abs().max() / want.abs().max()).item()
        ok = not math.isnan(err) and err <= 1e-5
        failures += not ok
        name = (f"{'layer' if layer else 'rms'} rows={rows} cols={cols} beta={with_beta} "
                f"transposed={transposed}")
        results["tests"].append({"case": name, "error": err, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} ({err:.1e} of the largest)")

    timed = timer(torch, args.reps)
    for cols, layer in ((4096, False), (768, True)):
        rows = 2048
        x = torch.randn(rows, cols, device="cuda")
        y = torch.empty_like(x)
        gamma, beta = torch.randn(cols, device="cuda"), torch.randn(cols, device="cuda")
        ours = timed(lambda: launch(drv, x, gamma, beta if layer else None, y, eps, layer,
                                    stream()))
        if layer:
            peer = timed(lambda: torch.nn.functional.layer_norm(x, (cols,), gamma, beta, eps))
        else:
            peer = timed(lambda: torch.nn.functional.rms_norm(x, (cols,), gamma, eps))
        gbs = 2 * x.numel() * 4 / 1e9
        line = {"kind": "layer" if layer else "rms", "rows": rows, "cols": cols,
                "ms": ours * 1e3, "gbs": gbs / ours, "torch_ms": peer * 1e3}
        results["bench"].append(line)
        print(f"bench {line['kind']} {rows}x{cols}: {ours * 1e3:.3f} ms ({gbs / ours:.0f} GB/s); "
              f"torch f32 {peer * 1e3:.3f} ms (x{peer / ours:.2f})")
    return finish(args, results, failures, "norm")


if __name__ == "__main__":
    sys.exit(main())
