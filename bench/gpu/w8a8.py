#!/usr/bin/env python3
"""The CUDA kernel library's W8A8 product (lib/Runtime/Kernels/CUDA/W8A8.cu: per-token
quantization of x, then a dp4a GEMM through the weight's codes) on a GPU: a test, then
a benchmark, in one run.

  * test: qopt_cuda_token_quant + qopt_cuda_gemm_w8a8_<format>[_m16] against the
    definition in float64 (steps max|x| / qmax per row in f32, codes round-half-even of
    x / step clamped, the integer sums per scale group times the group's scale and the
    row's step): int8 per channel, int4 with zero points in groups of 32, uint4; 8- and
    4-bit tokens; 1, 16 and 70 rows; N past a 64-column tile; a NaN row.
  * FP8 (E4M3 tokens: steps max|x| / 448, codes x / step rounded to E4M3FN by torch;
    FP8 E4M3FN / E5M2 weight codes scaled per row or per tensor):
    qopt_cuda_gemm_w8a8_fp8{e4m3,e5m2}[_m16], the codes as f16 on the tensor cores,
    against the definition in float64.
  * benchmark: SmoothQuant-shaped layers (4096 x 4096 and 14336 x 4096 int8 per
    channel) at 1, 16 and 2048 tokens, quantization included, against torch's bf16
    matmul and (2048 tokens) torch._int_mm on int8 codes (cuBLASLt), in TOPS; the same
    with FP8 E4M3 tokens and weights against torch's bf16 matmul and (2048 tokens)
    torch._scaled_mm on FP8 codes (cuBLASLt, sm_89 and later).

Launched through the driver API with ctypes as bench/gpu/gemm.py does (TokenQuantParams,
96 bytes, and W8A8Params, 200 bytes, by value). Written without a GPU at hand: its
first run on one is its first check.
    python3 bench/gpu/w8a8.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import ctypes
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import dequantize, finish, make_weight, setup, timer  # noqa: E402
from structs import pack  # noqa: E402

THREADS = 256  # kTokenThreads, kGemmThreads
FORMATS = {"int4": 0, "uint4": 1, "int8": 2}
TOKEN_FP8 = 0xE4  # W8A8Tile.h's kTokenFP8E4M3: E4M3 tokens


def launch(drv, name, grid, params, stream):
    buf = ctypes.create_string_buffer(params)
    args = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
    drv.check(drv.cu.cuLaunchKernel(
        drv.function(name), *(ctypes.c_uint(g) for g in grid), ctypes.c_uint(THREADS),
        ctypes.c_uint(1), ctypes.c_uint(1), ctypes.c_uint(0), ctypes.c_void_p(stream), args,
        None), f"launch {name}")


def launch_token_quant(drv, x, codes, steps, bits, stream):
    """W8A8.cu's qopt_cuda_token_quant (TokenQuantParams): the rows of x [m, k] (any row
    stride, contiguous along K) to int8 codes [m, k] (contiguous) and steps [m]."""
    m, k = x.shape
    launch(drv, "qopt_cuda_token_quant", ((m + 7) // 8, 1, 1),
           pack("TokenQuantParams", x.data_ptr(), 0, 0, x.stride(0), codes.data_ptr(),
                steps.data_ptr(), m, k, 1, 0, bits, 0, 0, 0), stream)


def fused_outputs(torch, y):
    """Outputs for checking a launch that writes y's rows and quantizes them against
    the unfused pair (y, then launch_token_quant): (fy, codes, fcodes, steps, fsteps),
    NaN- and 99-filled so that every element must be written."""
    rows, cols = y.shape
    codes = torch.full((rows, cols), 99, dtype=torch.int8, device="cuda")
    steps = torch.full((rows,), float("nan"), device="cuda")
    return (torch.full_like(y, float("nan")), codes, torch.full_like(codes, 99), steps,
            torch.full_like(steps, float("nan")))


def same_quantization(torch, fused, unfused):
    """Whether (codes, steps, y) of the fused launch equal the pair's bit for bit."""
    return all(torch.equal(a, b) for a, b in zip(fused, unfused))


def w8a8(drv, torch, fmt, x, codes, scales, zps, group, bits, y, scratch, stream):
    """y = the product of x's per-token codes and W (W8A8Tile.h's two launches)."""
    m, k = x.shape
    n = y.shape[1]
    q = scratch[: (m * k + 255) // 256 * 256]
    steps = scratch[(m * k + 255) // 256 * 256:].view(torch.float32)
    launch_token_quant(drv, x, q, steps, bits, stream)
    skinny = m <= 16
    name = f"qopt_cuda_gemm_w8a8_{fmt}{'_m16' if skinny else ''}"
    rows = 16 if skinny else 64
    launch(drv, name, ((n + 63) // 64, (m + rows - 1) // rows, 1),
           pack("W8A8Params", q.data_ptr(), steps.data_ptr(), y.data_ptr(), 0, 0, y.stride(0),
                1, codes.data_ptr(), codes.stride(0), scales.data_ptr(), scales.stride(0),
                zps.data_ptr() if zps is not None else 0,
                zps.stride(0) if zps is not None else 0, group, m, n, k, 1, 0, 1, 0,
                0, 0, k, 0, 0, 1),
           stream)


def reference(torch, fmt, x, codes, scales, zps, group, bits):
    n, k = scales.shape[0], x.shape[1]
    qmax = float(2 ** (bits - 1) - 1)
    amax = x.abs().amax(dim=1, keepdim=True)
    step = amax / qmax  # f32, as the kernel
    step = torch.where(step == 0, torch.ones_like(step), step)
    step = torch.where(torch.isfinite(x).all(dim=1, keepdim=True), step,
                       torch.full_like(step, float("nan")))
    q = torch.clamp(torch.round(x / step), -qmax - 1, qmax)
    q = torch.where(torch.isnan(step), torch.zeros_like(q), q)
    w = dequantize(torch, fmt, codes, scales, zps, n, k, group)
    return (q.double() @ w.T) * step.double()


def fp8_dtype(torch, fmt):
    return torch.float8_e4m3fn if fmt == "fp8e4m3" else torch.float8_e5m2


def make_fp8_weight(torch, fmt, n, k, per_tensor, gen):
    """Random finite FP8 codes [n, k] (uint8) and scales [n, 1] (stride 0 per tensor)."""
    codes = torch.randint(0, 256, (n, k), dtype=torch.uint8, device="cuda", generator=gen)
    finite = torch.isfinite(codes.view(fp8_dtype(torch, fmt)).float())
    codes = torch.where(finite, codes, torch.zeros_like(codes))
    scales = torch.rand(1 if per_tensor else n, 1, device="cuda", generator=gen) * 0.01 + 0.001
    return codes, scales.expand(n, 1)


def reference_fp8(torch, fmt, x, codes, scales):
    amax = x.abs().amax(dim=1, keepdim=True)
    step = amax / 448.0  # f32, as the kernel
    step = torch.where(step == 0, torch.ones_like(step), step)
    step = torch.where(torch.isfinite(x).all(dim=1, keepdim=True), step,
                       torch.full_like(step, float("nan")))
    q = (x / step).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).double()
    q = torch.where(torch.isnan(step), torch.zeros_like(q), q)
    w = codes.view(fp8_dtype(torch, fmt)).double() * scales.double()
    return (q @ w.T) * step.double()


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "w8a8")
    if drv is None:
        return 1
    failures = 0
    scratch = torch.empty(1 << 26, dtype=torch.uint8, device="cuda")

    def tokens(m, k):
        """Activations x [m, k], with a NaN in row 1 where m > 2."""
        x = torch.randn(m, k, device="cuda", generator=gen) * 2.0
        if m > 2:
            x[1, 5] = float("nan")
        return x

    def record(name, y, want):
        """y against want (float64): within 1e-5 of the largest, NaN where
        want is; recorded and printed. Returns whether it passed."""
        finite = torch.isfinite(want)
        nan_ok = bool(torch.isnan(y[~finite]).all())
        err = ((y.double() - want)[finite].abs().max() / want[finite].abs().max()).item()
        ok = nan_ok and not math.isnan(err) and err <= 1e-5
        results["tests"].append({"case": name, "error": err, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} ({err:.1e} of the largest"
              f"{'' if nan_ok else '; a NaN row not NaN'})")
        return ok
    for fmt, zp, group, bits, m, n, k in (("int8", False, 128, 8, 1, 96, 128),
                                           ("int8", False, 64, 8, 70, 130, 64),
                                           ("int4", True, 32, 8, 16, 64, 128),
                                           ("uint4", True, 32, 4, 70, 96, 96),
                                           ("uint4", False, 32, 8, 3, 160, 64)):
        codes, scales, zps = make_weight(torch, fmt, n, k, group, zp, gen)
        x = tokens(m, k)
        y = torch.full((m, n), float("nan"), device="cuda")
        w8a8(drv, torch, fmt, x, codes, scales, zps, group, bits, y, scratch, stream())
        torch.cuda.synchronize()
        failures += not record(f"{fmt} zp={zp} group={group} bits={bits} m={m} n={n} k={k}",
                               y, reference(torch, fmt, x, codes, scales, zps, group, bits))

    for fmt, per_tensor, m, n, k in (("fp8e4m3", False, 1, 96, 128),
                                     ("fp8e4m3", True, 70, 130, 64),
                                     ("fp8e5m2", False, 16, 64, 256),
                                     ("fp8e5m2", True, 33, 160, 96)):
        codes, scales = make_fp8_weight(torch, fmt, n, k, per_tensor, gen)
        x = tokens(m, k)
        y = torch.full((m, n), float("nan"), device="cuda")
        w8a8(drv, torch, fmt, x, codes, scales, None, k, TOKEN_FP8, y, scratch, stream())
        torch.cuda.synchronize()
        failures += not record(f"{fmt} tokens=e4m3 per_tensor={per_tensor} m={m} n={n} k={k}",
                               y, reference_fp8(torch, fmt, x, codes, scales))

    timed = timer(torch, args.reps)
    for n, k in ((4096, 4096), (14336, 4096)):
        codes, scales, _ = make_weight(torch, "int8", n, k, k, False, gen)
        w16 = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        for m in (1, 16, 2048):
            x = torch.randn(m, k, device="cuda")
            y = torch.empty(m, n, device="cuda")
            ours = timed(lambda: w8a8(drv, torch, "int8", x, codes, scales, None, k, 8, y,
                                      scratch, stream()))
            x16 = x.to(torch.bfloat16)
            peer = timed(lambda: x16 @ w16.T)
            line = {"m": m, "n": n, "k": k, "ms": ours * 1e3,
                    "tops": 2 * m * n * k / ours / 1e12, "torch_bf16_ms": peer * 1e3}
            text = f"torch bf16 {peer * 1e3:.3f} ms (x{peer / ours:.2f})"
            if m > 16:
                xq = torch.randint(-127, 128, (m, k), device="cuda", dtype=torch.int8)
                wq = codes.view(torch.int8).T
                mm = timed(lambda: torch._int_mm(xq, wq))
                line["torch_int_mm_ms"] = mm * 1e3
                text += f"; torch._int_mm {mm * 1e3:.3f} ms (x{mm / ours:.2f})"
            results["bench"].append(line)
            print(f"bench int8 {m}x{n}x{k}: {ours * 1e3:.3f} ms "
                  f"({line['tops']:.1f} TOPS); {text}")
    for n, k in ((4096, 4096), (14336, 4096)):
        codes, scales = make_fp8_weight(torch, "fp8e4m3", n, k, False, gen)
        w16 = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        for m in (1, 16, 2048):
            x = torch.randn(m, k, device="cuda")
            y = torch.empty(m, n, device="cuda")
            ours = timed(lambda: w8a8(drv, torch, "fp8e4m3", x, codes, scales, None, k,
                                      TOKEN_FP8, y, scratch, stream()))
            x16 = x.to(torch.bfloat16)
            peer = timed(lambda: x16 @ w16.T)
            line = {"format": "fp8e4m3", "m": m, "n": n, "k": k, "ms": ours * 1e3,
                    "tflops": 2 * m * n * k / ours / 1e12, "torch_bf16_ms": peer * 1e3}
            text = f"torch bf16 {peer * 1e3:.3f} ms (x{peer / ours:.2f})"
            if m > 16:
                xq = x.to(torch.float8_e4m3fn)
                wq = codes.view(torch.float8_e4m3fn)
                one = torch.ones((), device="cuda")
                try:
                    mm = timed(lambda: torch._scaled_mm(xq, wq.T, scale_a=one, scale_b=one,
                                                        out_dtype=torch.bfloat16))
                    line["torch_scaled_mm_ms"] = mm * 1e3
                    text += f"; torch._scaled_mm {mm * 1e3:.3f} ms (x{mm / ours:.2f})"
                except Exception as e:  # (no FP8 cuBLASLt before sm_89)
                    text += f"; torch._scaled_mm unavailable ({type(e).__name__})"
            results["bench"].append(line)
            print(f"bench fp8e4m3 {m}x{n}x{k}: {ours * 1e3:.3f} ms "
                  f"({line['tflops']:.1f} TFLOPS); {text}")
    return finish(args, results, failures, "w8a8")


if __name__ == "__main__":
    sys.exit(main())
