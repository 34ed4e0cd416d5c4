#!/usr/bin/env python3
"""The CUDA kernel library's RMSNorm / LayerNorm (lib/Runtime/Kernels/CUDA/Norm.cu, a warp
per row) on a GPU: a test, then a benchmark, in one run.

  * test: qopt_cuda_norm_f32 against the definitions in float64: RMSNorm, LayerNorm
    with and without beta, rows shorter and longer than a warp, transposed x and y;
  * benchmark: Llama- and GPT-2-shaped rows (2048 tokens × 4096 / 768) against
    torch's f32 rms_norm / layer_norm, in GB/s of x read and y written;
  * the norm fused with per-token quantization (qopt_cuda_norm_quant_f32, what W8A8
    products after a norm read): codes, steps and y against the norm followed by
    qopt_cuda_token_quant, bit for bit; timed against those two launches and torch;
  * the backward (qopt_cuda_norm_bwd_{dx,cols,sum}_f32: dx a warp per row, gamma's and
    beta's gradients as column sums over chunks of 64 rows): against torch's autograd
    in float64, then timed against torch's f32 autograd backward.

Launched through the driver API with ctypes as bench/gpu/gemm.py does (NormParams,
104 bytes, NormQuantParams, 128, and NormBwdParams, 168 bytes, by value). Written without a GPU at hand: its first run on one is its first
check.
    python3 bench/gpu/norm.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import ctypes
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import finish, launch_1d, setup, timer  # noqa: E402
from structs import pack  # noqa: E402
from w8a8 import fused_outputs, launch_token_quant, same_quantization  # noqa: E402

THREADS, ROWS_PER_BLOCK = 256, 8  # NormTile.h's kNormThreads, kNormRowsPerBlock
LAYER, BETA, GAMMA_GRAD, BETA_GRAD = 1, 2, 4, 8
CHUNK = 64  # NormTile.h's kNormBwdChunk


def launch(drv, x, gamma, beta, y, eps, layer, stream):
    rows, cols = x.shape
    flags = (LAYER if layer else 0) | (BETA if beta is not None else 0)
    b = beta if beta is not None else gamma
    params = pack("NormParams", x.data_ptr(), y.data_ptr(), gamma.data_ptr(),
                  b.data_ptr(), *x.stride(), *y.stride(), gamma.stride(0), b.stride(0),
                  rows, cols, eps, flags)
    launch_1d(drv, "qopt_cuda_norm_f32", (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK, THREADS,
              params, stream)


def launch_quant(drv, x, gamma, beta, y, codes, steps, bits, eps, layer, stream):
    """Norm.cu's qopt_cuda_norm_quant_f32 (NormQuantParams, 128 bytes): the norm's int8
    codes [rows, cols] and steps [rows], y too where `y` is not None."""
    rows, cols = x.shape
    flags = (LAYER if layer else 0) | (BETA if beta is not None else 0)
    b = beta if beta is not None else gamma
    yp, ys = (y.data_ptr(), y.stride()) if y is not None else (0, (0, 0))
    params = pack("NormQuantParams", x.data_ptr(), yp, gamma.data_ptr(), b.data_ptr(),
                  *x.stride(), *ys, gamma.stride(0), b.stride(0), rows, cols, eps, flags,
                  codes.data_ptr(), steps.data_ptr(), bits, 0)
    launch_1d(drv, "qopt_cuda_norm_quant_f32", (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK,
              THREADS, params, stream)


def launch_backward(drv, x, gamma, dy, dx, dgamma, dbeta, eps, layer, scratch, stream):
    """Norm.cu's backward: dx, then gamma's and beta's gradients (NormBwdParams)."""
    rows, cols = x.shape
    flags = (LAYER if layer else 0) | GAMMA_GRAD | BETA_GRAD
    chunks = (rows + CHUNK - 1) // CHUNK
    stats = scratch
    partials = scratch[2 * rows:]
    params = pack("NormBwdParams", x.data_ptr(), gamma.data_ptr(), dy.data_ptr(),
                  dx.data_ptr(), dgamma.data_ptr(), dbeta.data_ptr(), stats.data_ptr(),
                  partials.data_ptr(), *x.stride(), gamma.stride(0), *dy.stride(),
                  *dx.stride(), dgamma.stride(0), dbeta.stride(0), rows, cols, chunks,
                  eps, flags)
    launch_1d(drv, "qopt_cuda_norm_bwd_dx_f32", (rows + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK,
              THREADS, params, stream)
    blocks = (cols + THREADS - 1) // THREADS
    buf = ctypes.create_string_buffer(params)
    args = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
    drv.check(drv.cu.cuLaunchKernel(
        drv.function("qopt_cuda_norm_bwd_cols_f32"), ctypes.c_uint(blocks),
        ctypes.c_uint(chunks), ctypes.c_uint(1), ctypes.c_uint(THREADS), ctypes.c_uint(1),
        ctypes.c_uint(1), ctypes.c_uint(0), ctypes.c_void_p(stream), args, None),
        "launch qopt_cuda_norm_bwd_cols_f32")
    launch_1d(drv, "qopt_cuda_norm_bwd_sum_f32", blocks, THREADS, params, stream)


def reference_backward(torch, x, gamma, dy, eps, layer):
    """dx, dgamma, dbeta by torch's autograd in float64."""
    xd = x.double().requires_grad_()
    gd = gamma.double().requires_grad_()
    bd = torch.zeros_like(gd, requires_grad=True)
    if layer:
        y = torch.nn.functional.layer_norm(xd, (x.shape[1],), gd, bd, eps)
    else:
        y = xd * torch.rsqrt((xd * xd).mean(dim=1, keepdim=True) + eps) * gd
    dx, dg, db = torch.autograd.grad(y, (xd, gd, bd), dy.double(), allow_unused=True)
    return dx, dg, (db if db is not None else dy.double().sum(dim=0))


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

    # The norm fused with per-token quantization: its codes, steps and y equal the norm's
    # y quantized by qopt_cuda_token_quant, bit for bit (the same per-element formula);
    # the steps also against torch's max|y| / qmax.
    for rows, cols, layer, with_beta, bits in ((5, 32, False, False, 8), (300, 4096, False, False, 8),
                                               (77, 768, True, True, 8), (9, 96, True, False, 4)):
        x = torch.randn(rows, cols, device="cuda", generator=gen) + 1.0
        gamma = torch.randn(cols, device="cuda", generator=gen)
        beta = torch.randn(cols, device="cuda", generator=gen) if with_beta else None
        y = torch.full((rows, cols), float("nan"), device="cuda")
        fy, codes, fcodes, steps, fsteps = fused_outputs(torch, y)
        launch(drv, x, gamma, beta, y, eps, layer, stream())
        launch_token_quant(drv, y, codes, steps, bits, stream())
        launch_quant(drv, x, gamma, beta, fy, fcodes, fsteps, bits, eps, layer, stream())
        torch.cuda.synchronize()
        want = y.abs().amax(dim=1) / float(2 ** (bits - 1) - 1)
        ok = (same_quantization(torch, (fcodes, fsteps, fy), (codes, steps, y))
              and torch.equal(steps, torch.where(want == 0, torch.ones_like(want), want)))
        failures += not ok
        name = (f"norm+quant {'layer' if layer else 'rms'} rows={rows} cols={cols} "
                f"beta={with_beta} bits={bits}")
        results["tests"].append({"case": name, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} (codes, steps and y bit for bit)")

    scratch = torch.empty(1 << 24, device="cuda")
    for rows, cols, layer, transposed in ((3, 1, False, False), (9, 31, True, True),
                                          (150, 300, True, False), (130, 4096, False, True)):
        x = torch.randn(rows, cols, device="cuda", generator=gen) + 2.0
        dy = torch.randn(rows, cols, device="cuda", generator=gen)
        dx = torch.full((rows, cols), float("nan"), device="cuda")
        if transposed:
            x, dy, dx = x.T.contiguous().T, dy.T.contiguous().T, dx.T.contiguous().T
        gamma = torch.randn(cols, device="cuda", generator=gen)
        dgamma = torch.full((cols,), float("nan"), device="cuda")
        dbeta = torch.full((cols,), float("nan"), device="cuda")
        launch_backward(drv, x, gamma, dy, dx, dgamma, dbeta, eps, layer, scratch, stream())
        torch.cuda.synchronize()
        want = reference_backward(torch, x, gamma, dy, eps, layer)
        # dx against each row's scale max|dy·gamma| / d (its terms' size: a single
        # column cancels almost to nothing), the column sums against their terms'.
        xd = x.double()
        mean = xd.mean(dim=1, keepdim=True) if layer else torch.zeros_like(xd[:, :1])
        d = torch.sqrt(((xd - mean) ** 2).mean(dim=1, keepdim=True) + eps)
        row_scale = ((dy.double() * gamma.double()).abs().amax(dim=1, keepdim=True) / d)
        err = ((dx.double() - want[0]).abs() / row_scale.clamp_min(1e-30)).max().item()
        for got, w in zip((dgamma, dbeta), want[1:]):
            scale = (dy.double().abs() * 4.0).sum(dim=0).clamp_min(1e-30)
            err = max(err, ((got.double() - w).abs() / scale).max().item())
        ok = not math.isnan(err) and err <= 1e-4
        failures += not ok
        name = (f"backward {'layer' if layer else 'rms'} rows={rows} cols={cols} "
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
    # SmoothQuant's W8A8 input: the fused launch (no y) against the norm then the rows'
    # quantization, and against torch (norm, amax, divide, round, clamp, cast).
    for cols, layer in ((4096, False), (768, True)):
        rows = 2048
        x = torch.randn(rows, cols, device="cuda")
        y = torch.empty_like(x)
        gamma = torch.randn(cols, device="cuda")
        codes = torch.empty((rows, cols), dtype=torch.int8, device="cuda")
        steps = torch.empty(rows, device="cuda")
        fused = timed(lambda: launch_quant(drv, x, gamma, None, None, codes, steps, 8, eps,
                                           layer, stream()))
        two = timed(lambda: (launch(drv, x, gamma, None, y, eps, layer, stream()),
                             launch_token_quant(drv, y, codes, steps, 8, stream())))

        def torch_quant():
            if layer:
                t = torch.nn.functional.layer_norm(x, (cols,), gamma, None, eps)
            else:
                t = torch.nn.functional.rms_norm(x, (cols,), gamma, eps)
            s = t.abs().amax(dim=1, keepdim=True) / 127.0
            return torch.round(t / s).clamp(-128, 127).to(torch.int8), s
        peer = timed(torch_quant)
        line = {"kind": ("layer" if layer else "rms") + "-quant", "rows": rows, "cols": cols,
                "ms": fused * 1e3, "unfused_ms": two * 1e3, "torch_ms": peer * 1e3}
        results["bench"].append(line)
        print(f"bench {line['kind']} {rows}x{cols}: fused {fused * 1e3:.3f} ms; norm + "
              f"token_quant {two * 1e3:.3f} ms (x{two / fused:.2f}); torch f32 "
              f"{peer * 1e3:.3f} ms (x{peer / fused:.2f})")
    for cols, layer in ((4096, False), (768, True)):
        rows = 2048
        x = torch.randn(rows, cols, device="cuda")
        dy, dx = torch.randn_like(x), torch.empty_like(x)
        gamma = torch.randn(cols, device="cuda")
        dgamma, dbeta = torch.empty_like(gamma), torch.empty_like(gamma)
        ours = timed(lambda: launch_backward(drv, x, gamma, dy, dx, dgamma, dbeta, eps, layer,
                                             scratch, stream()))
        xr, gr = x.clone().requires_grad_(), gamma.clone().requires_grad_()
        if layer:
            y = torch.nn.functional.layer_norm(xr, (cols,), gr, None, eps)
        else:
            y = torch.nn.functional.rms_norm(xr, (cols,), gr, eps)
        peer = timed(lambda: torch.autograd.grad(y, (xr, gr), dy, retain_graph=True))
        line = {"kind": ("layer" if layer else "rms") + "-backward", "rows": rows,
                "cols": cols, "ms": ours * 1e3, "torch_ms": peer * 1e3}
        results["bench"].append(line)
        print(f"bench {line['kind']} {rows}x{cols}: {ours * 1e3:.3f} ms; torch f32 autograd "
              f"{peer * 1e3:.3f} ms (x{peer / ours:.2f})")
    return finish(args, results, failures, "norm")


if __name__ == "__main__":
    sys.exit(main())
