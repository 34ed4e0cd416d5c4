#!/usr/bin/env python3
"""The fused LoRA branch of the CUDA kernel library's quantized products on a GPU:
a test, then a benchmark, in one run.

  * test: qopt_cuda_gemv_f32_<fmt> (decode: the lanes add s·z·Bᵀ before their shuffle
    reduction) and qopt_cuda_gemm_f32_<fmt> (prefill: the rank as further K steps) with
    a LoRA branch, y = β·y + x·dequant(W)ᵀ + s·z·Bᵀ, β = 0 on a NaN-filled y (every
    output stored) and β = 1, ranks 8 / 40 / 64 (past a warp, past a K step), z given
    and z = x·Aᵀ computed by the same launch (z NaN-filled before; its blocks take the
    first tickets, the others wait for them), against PyTorch in float64;
  * benchmark: the issue's overhead goal (fused LoRA vs the same product without it:
    ≤ 10% per layer) on 4096 x 4096 and 14336 x 4096 NF4 weights (blocks of 64), rank
    16: decode batches 1 / 4 / 16 through the GEMV and prefill 512 rows through the
    GEMM: the whole LoRA layer in one launch (x·Aᵀ and B), B alone in the epilogue (z
    given), and the unfused form (the product, then torch's x·Aᵀ and z·Bᵀ added).

Kernels launched through the driver API with ctypes, as bench/gpu/gemm.py does (whose
helpers it uses): the GEMV with its 17 arguments (LoRAView, a 64-byte struct, and
NestedScales, 1056 bytes, by value), the GEMM with GemmParams and NestedScales by value. Timings: CUDA events around
`--reps` calls after a warm-up; 256 MiB of weight copies rotate so that decode reads
its weight from memory, not L2.
Written without a GPU at hand: its first run on one is its first check.
    python3 bench/gpu/lora.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import argparse
import ctypes
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gemm as g  # noqa: E402  (Driver, make_weight, dequantize, grid)
from structs import pack  # noqa: E402

WARPS = 4  # QLinearTile.h's kWarps: 4 output rows per block of the GEMV


def lora_view(z, ldz, b, ldb, rank, scale, down=None):
    """QLinearTile.h's LoRAView (pointers, int64s, float; 64 bytes); down: A (rank x K),
    whose z = x·Aᵀ the launch then computes itself."""
    ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
    return ctypes.create_string_buffer(pack(
        "LoRAView", ptr(z), ldz, ptr(b), ldb, rank, scale, ptr(down),
        down.stride(0) if down is not None else 0))


def unpack(branch):
    """(z, B, scale, A or None) of a branch (z, B, scale[, A]), or Nones."""
    if not branch:
        return None, None, 0.0, None
    return (*branch[:3], branch[3] if len(branch) > 3 else None)


def gemv(drv, fmt, x, m, codes, scales, n, k, group, y, beta, branch, stream):
    """One launch of qopt_cuda_gemv_f32_<fmt>; branch: (z, B, scale[, A]) or None (with A
    the launch writes z = x·Aᵀ: ceil(rank / 4) blocks more, which take the first tickets)."""
    z, b, s, a = unpack(branch)
    rank = b.shape[1] if b is not None else 0
    view = lora_view(z, rank, b, rank, rank, s, a)
    values = [ctypes.c_void_p(x.data_ptr()), ctypes.c_int64(k), ctypes.c_int32(m),
              ctypes.c_void_p(codes.data_ptr()), ctypes.c_int64(codes.stride(0)),
              ctypes.c_void_p(scales.data_ptr()), ctypes.c_int64(scales.stride(0)),
              ctypes.c_void_p(0), ctypes.c_int64(0), ctypes.c_int64(n), ctypes.c_int64(k),
              ctypes.c_int64(group), ctypes.c_void_p(y.data_ptr()), ctypes.c_int64(n),
              ctypes.c_float(beta)]
    nested = ctypes.create_string_buffer(g.NESTED_SCALES_BYTES)  # f32 scales
    args = (ctypes.c_void_p * 17)(*[ctypes.addressof(v) for v in values], ctypes.addressof(view),
                                  ctypes.addressof(nested))
    blocks = (n + WARPS - 1) // WARPS + ((rank + WARPS - 1) // WARPS if a is not None else 0)
    drv.check(drv.cu.cuLaunchKernel(
        drv.function(f"qopt_cuda_gemv_f32_{fmt}"), ctypes.c_uint(blocks),
        ctypes.c_uint(1), ctypes.c_uint(1), ctypes.c_uint(WARPS * 32), ctypes.c_uint(1),
        ctypes.c_uint(1), ctypes.c_uint(0), ctypes.c_void_p(stream), args, None), "gemv")


def gemm_lora(drv, fmt, x, m, codes, scales, n, k, group, y, overwrite, branch, stream):
    """One launch of qopt_cuda_gemm_f32_<fmt> with GemmParams' LoRA fields set (with A:
    z = x·Aᵀ by the launch's first blocks, a one-dimensional grid of z's tiles and y's)."""
    z, b, s, a = unpack(branch)
    rank = b.shape[1] if b is not None else 0
    base = g.gemm_params(x, (0,) + x.stride(), None, (0, 0, 0), y, (0,) + y.stride(), m, n, k,
                         codes=codes, code_row=codes.stride(0), scales=scales,
                         scale_row=scales.stride(0), group=group)
    lora = [z.data_ptr() if z is not None else 0, 0, 0, rank,
            b.data_ptr() if b is not None else 0, rank, rank]
    gx, gy, gz = g.grid(m, n, 1)
    down = [a.data_ptr(), a.stride(0), gx, gy, gz] if a is not None else [0, 0, 0, 0, 0]
    buf = ctypes.create_string_buffer(
        pack("GemmParams", *base, *lora, s, int(overwrite), *down, 0))
    nested = ctypes.create_string_buffer(g.NESTED_SCALES_BYTES)  # f32 scales
    args = (ctypes.c_void_p * 2)(ctypes.addressof(buf), ctypes.addressof(nested))
    if a is not None:
        gx, gy, gz = gy * gz * ((rank + 63) // 64) + gx * gy * gz, 1, 1
    drv.check(drv.cu.cuLaunchKernel(
        drv.function(f"qopt_cuda_gemm_f32_{fmt}"), ctypes.c_uint(gx), ctypes.c_uint(gy),
        ctypes.c_uint(gz), ctypes.c_uint(g.THREADS), ctypes.c_uint(1), ctypes.c_uint(1),
        ctypes.c_uint(0), ctypes.c_void_p(stream), args, None), "gemm")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cubins", required=True, help="folder with library-sm_XX.cubin")
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    major, minor = torch.cuda.get_device_capability()
    arch = f"sm_{major}{minor}"
    path = os.path.join(args.cubins, f"library-{arch}.cubin")
    if not os.path.exists(path):
        print(f"lora: no cubin for {arch} in {args.cubins}", file=sys.stderr)
        return 1
    torch.zeros(1, device="cuda")
    drv = g.Driver(path)
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    gen = torch.Generator(device="cuda").manual_seed(0)
    results = {"device": torch.cuda.get_device_name(), "arch": arch, "tests": [], "bench": []}
    failures = 0

    def record(label, got, ref, k):
        nonlocal failures
        err = float((got.double() - ref).abs().max() / ref.abs().max())
        ok = err <= 1e-6 * max(8.0, k ** 0.5)  # f32 sums (NaN fails)
        failures += not ok
        print(f"test {label}: {'ok' if ok else 'FAIL'} (max error {err:.1e} of the largest output)")
        results["tests"].append({"case": label, "error": err, "ok": ok})

    for fmt, n, k, group, m, rank, beta in [
            ("nf4", 70, 128, 64, 3, 8, 0.0), ("int4", 65, 96, 32, 16, 40, 1.0),
            ("nf4", 130, 256, 64, 19, 64, 0.0), ("int8", 33, 64, 32, 40, 16, 1.0),
            ("nf4", 4096, 4096, 64, 1, 16, 0.0), ("nf4", 4096, 4096, 64, 512, 16, 0.0)]:
        codes, scales, _ = g.make_weight(torch, fmt, n, k, group, False, gen)
        x = torch.randn(m, k, device="cuda")
        b = torch.randn(n, rank, device="cuda")
        a = torch.randn(rank, k, device="cuda")
        s = 0.75
        w = g.dequantize(torch, fmt, codes, scales, None, n, k, group)
        kind = "gemv" if m <= 16 else "gemm"
        # z given, then z = x·Aᵀ computed by the same launch (z NaN before).
        for down in (False, True):
            z = torch.full((m, rank), float("nan"), device="cuda") if down else \
                torch.randn(m, rank, device="cuda")
            y0 = torch.randn(m, n, device="cuda") if beta else \
                torch.full((m, n), float("nan"), device="cuda")
            y = y0.clone()
            branch = (z, b, s, a) if down else (z, b, s)
            if m <= 16:
                gemv(drv, fmt, x, m, codes, scales, n, k, group, y, beta, branch, stream())
            else:  # m > 16: the GEMM (overwrite for beta 0)
                gemm_lora(drv, fmt, x, m, codes, scales, n, k, group, y, beta == 0.0, branch,
                          stream())
            torch.cuda.synchronize()
            zr = x.double() @ a.double().T if down else z.double()
            ref = x.double() @ w.T + s * (zr @ b.double().T) + (y0.double() if beta else 0.0)
            label = f"{kind} {fmt} {n}x{k} m={m} rank {rank} beta {beta:g}"
            if down:
                record(f"{label}, z = x·Aᵀ in the launch: z", z, zr, k)
            record(label + (", z = x·Aᵀ in the launch" if down else ""), y, ref, k + rank)

    def timed(fn):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / args.reps / 1e3

    rank, s = 16, 2.0
    for n, k in ((4096, 4096), (14336, 4096)):
        copies = max(1, (256 << 20) // (n * k // 2))
        weights = [g.make_weight(torch, "nf4", n, k, 64, False, gen)[:2] for _ in range(copies)]
        a = torch.randn(rank, k, device="cuda")
        b = torch.randn(n, rank, device="cuda")
        for m in (1, 4, 16, 512):
            x = torch.randn(m, k, device="cuda")
            y = torch.zeros(m, n, device="cuda")
            z = x @ a.T  # the branch's x·Aᵀ
            turn = [0]

            def product(branch):
                codes, scales = weights[turn[0] % copies]
                turn[0] += 1
                if m <= 16:
                    gemv(drv, "nf4", x, m, codes, scales, n, k, 64, y, 0.0, branch, stream())
                else:
                    gemm_lora(drv, "nf4", x, m, codes, scales, n, k, 64, y, True, branch, stream())

            def unfused():
                product(None)
                torch.matmul(x, a.T, out=z)
                y.addmm_(z, b.T, alpha=s)

            plain = timed(lambda: product(None))
            epilogue = timed(lambda: product((z, b, s)))
            fused = timed(lambda: product((z, b, s, a)))
            separate = timed(unfused)
            line = {"n": n, "k": k, "m": m, "rank": rank, "plain_us": plain * 1e6,
                    "epilogue_us": epilogue * 1e6, "fused_us": fused * 1e6,
                    "unfused_us": separate * 1e6, "epilogue_overhead": epilogue / plain - 1,
                    "fused_overhead": fused / plain - 1, "unfused_overhead": separate / plain - 1}
            results["bench"].append(line)
            print(f"bench nf4 {n}x{k} m={m} rank {rank}: product {plain * 1e6:.1f} us; the "
                  f"LoRA layer in one launch (x·A and B) +{100 * line['fused_overhead']:.1f}% "
                  f"(goal: <= 10% per layer), B alone in the epilogue "
                  f"+{100 * line['epilogue_overhead']:.1f}%, as torch kernels after the product "
                  f"+{100 * line['unfused_overhead']:.1f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"lora: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
