#!/usr/bin/env python3
"""The CUDA kernel library's tiled GEMM (lib/Runtime/Kernels/CUDA/Gemm.cu) on a GPU:
a test, then a benchmark, in one run.

  * test: qopt_cuda_gemm_f32 and _m16 (f32 B; row- and column-major operands, tile
    borders, a batch of products as one grid) and the quantized entries (every format,
    zero points, groups of 32 / 64; A·Wᵀ and A·W, the `_t` entries of the backward's dX;
    NF4 with QLoRA's double-quantized scales read by the kernel) against PyTorch in
    float64 with the weight dequantized by the formats' definitions; the same on the
    tensor cores (the `_bf16` / `_tf32` entries: operands rounded to bf16 / tf32, f32
    accumulators) against float64 on the operands rounded the same way;
  * benchmark: prefill / training shapes (M = 512 and 2048 rows times 4096 x 4096 and
    4096 x 14336 weights): the f32 GEMM against torch's f32 matmul with TF32 off (the
    same arithmetic), the int4 (groups of 32) and NF4 (blocks of 64) GEMM against torch's
    bf16 matmul on the same shape (the issue's peer), in TFLOP/s; the `_bf16` entries
    against torch's bf16 matmul too, the f32 `_tf32` entry against torch's TF32 matmul.

The kernels are launched through the driver API with ctypes (cuModuleLoad on the cubin
for this GPU's architecture from build/lib/cuda/library-sm_XX.cubin, carried by
scripts/gpu-artifacts.sh; cuLaunchKernel with the GemmParams struct by value, as the
CUDA host library does), on torch's stream, with torch's memory. Timings: CUDA events
around 20 calls after a warm-up.
Written without a GPU at hand: its first run on one is its first check.
    python3 bench/gpu/gemm.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import argparse
import ctypes
import json
import os
import sys

from structs import pack

FORMATS = {"int4": 0, "uint4": 1, "int8": 2, "uint8": 3, "nf4": 4}
FOUR = {"int4", "uint4", "nf4"}
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
THREADS = 256  # Gemm.cu's kGemmThreads
NESTED_SCALES_BYTES = 1056  # QLinearTile.h's NestedScales


class Driver:
    def __init__(self, cubin):
        self.cu = ctypes.CDLL("libcuda.so.1")
        self.module = ctypes.c_void_p()
        self.check(self.cu.cuModuleLoad(ctypes.byref(self.module), cubin.encode()), "cuModuleLoad")
        self.functions = {}

    @staticmethod
    def check(rc, what):
        if rc:
            raise RuntimeError(f"{what} failed: CUDA error {rc}")

    def function(self, name):
        if name not in self.functions:
            fn = ctypes.c_void_p()
            self.check(self.cu.cuModuleGetFunction(ctypes.byref(fn), self.module, name.encode()),
                       f"cuModuleGetFunction({name})")
            self.functions[name] = fn
        return self.functions[name]

    def launch(self, name, grid, params, stream, nested=None):
        """params: GemmParams' 27 fields (pointers and int64s, in order) before its
        LoRA branch, which is left out (rank 0) and C accumulated into."""
        lora = [0, 0, 0, 0, 0, 0, 0]  # lz, sl0, sl1, slm, lb, lRow, rank
        # (then loraScale, overwrite, la, laRow, tiles[3], reserved: GemmParams, 312 bytes)
        buf = ctypes.create_string_buffer(
            pack("GemmParams", *params, *lora, 0.0, 0, 0, 0, 0, 0, 0, 0))
        # The quantized entries' second parameter: NestedScales (1056 bytes; codes
        # null: f32 scales).
        nested = ctypes.create_string_buffer(nested or bytes(NESTED_SCALES_BYTES))
        args = (ctypes.c_void_p * 2)(ctypes.addressof(buf), ctypes.addressof(nested))
        self.check(self.cu.cuLaunchKernel(
            self.function(name), ctypes.c_uint(grid[0]), ctypes.c_uint(grid[1]),
            ctypes.c_uint(grid[2]), ctypes.c_uint(THREADS), ctypes.c_uint(1), ctypes.c_uint(1),
            ctypes.c_uint(0), ctypes.c_void_p(stream), args, None), f"launch {name}")


def open_library(torch, cubins, who):
    """The library's cubin for this GPU loaded through the driver (None, with a
    message, when there is none), with torch's primary context current."""
    major, minor = torch.cuda.get_device_capability()
    arch = f"sm_{major}{minor}"
    path = os.path.join(cubins, f"library-{arch}.cubin")
    if not os.path.exists(path):
        print(f"{who}: no cubin for {arch} in {cubins}", file=sys.stderr)
        return None, arch
    torch.zeros(1, device="cuda")  # the primary context, current on this thread
    return Driver(path), arch


def setup(doc, who):
    """The scripts' common start: arguments (--cubins, --json, --reps), torch, the
    library loaded for this GPU (None: no cubin for it), torch's stream, a seeded
    generator and the results' skeleton."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--cubins", required=True, help="folder with library-sm_XX.cubin")
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    drv, arch = open_library(torch, args.cubins, who)
    stream = lambda: torch.cuda.current_stream().cuda_stream  # noqa: E731
    gen = torch.Generator(device="cuda").manual_seed(0) if drv else None
    results = {"device": torch.cuda.get_device_name(), "arch": arch, "tests": [], "bench": []}
    return args, torch, drv, stream, gen, results


def finish(args, results, failures, who):
    """Writes the results (--json) and returns the exit status."""
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"{who}: {failures} failed")
    return 1 if failures else 0


def launch_1d(drv, name, blocks, threads, params, stream, shared=0):
    """One launch of `name` over `blocks` blocks, its one parameter the packed
    struct `params` by value (none for an empty grid, as the host library), with
    `shared` bytes of dynamic shared memory (past 48 KB: opted in to first, as
    CUDAHost.cpp's launchRows)."""
    if blocks == 0:
        return
    fn = drv.function(name)
    if shared > 48 * 1024:
        drv.check(drv.cu.cuFuncSetAttribute(fn, ctypes.c_int(8), ctypes.c_int(shared)),
                  f"{name}: {shared} bytes of shared memory")
    buf = ctypes.create_string_buffer(params)
    args = (ctypes.c_void_p * 1)(ctypes.addressof(buf))
    drv.check(drv.cu.cuLaunchKernel(
        fn, ctypes.c_uint(blocks), ctypes.c_uint(1), ctypes.c_uint(1),
        ctypes.c_uint(threads), ctypes.c_uint(1), ctypes.c_uint(1), ctypes.c_uint(shared),
        ctypes.c_void_p(stream), args, None), f"launch {name}")


def timer(torch, reps):
    """Seconds per call of fn: CUDA events around `reps` calls after 3."""
    def timed(fn):
        for _ in range(3):
            fn()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps / 1e3
    return timed


def gemm_params(a, sa, b, sb, c, sc, m, n, k, batch=1, codes=None, code_row=0,
                scales=None, scale_row=0, zp=None, zp_row=0, group=0):
    """GemmParams for a batch of `batch` products along outer loop 1 (o1 = batch);
    sa / sb / sc: (outer, row, col) strides in elements."""
    ptr = lambda t: t.data_ptr() if t is not None else 0  # noqa: E731
    return [ptr(a), 0, sa[0], sa[1], sa[2], ptr(b), 0, sb[0], sb[1], sb[2],
            ptr(c), 0, sc[0], sc[1], sc[2], m, n, k, batch, 0,
            ptr(codes), code_row, ptr(scales), scale_row, ptr(zp), zp_row, group]


def grid(m, n, batch, rows=64):
    return ((n + 63) // 64, (m + rows - 1) // rows, batch)


def make_weight(torch, fmt, rows, cols, group, zp, gen):
    row_bytes = cols // 2 if fmt in FOUR else cols
    codes = torch.randint(0, 256, (rows, row_bytes), dtype=torch.uint8, device="cuda", generator=gen)
    scales = torch.rand(rows, cols // group, device="cuda", generator=gen) * 0.09 + 0.01
    zps = None
    if zp:
        lo, hi = {"int4": (-8, 8), "uint4": (0, 16), "int8": (-100, 101), "uint8": (0, 256)}[fmt]
        zps = torch.randint(lo, hi, (rows, cols // group), device="cuda",
                            generator=gen).to(torch.int16).to(torch.uint8).view(torch.int8)
    return codes, scales, zps


def dequantize(torch, fmt, codes, scales, zps, rows, cols, group):
    c = codes.to(torch.int32)
    raw = torch.stack([c & 15, c >> 4], dim=-1).reshape(rows, cols) if fmt in FOUR else c
    if fmt == "int4":
        v = ((raw ^ 8) - 8).double()
    elif fmt == "int8":
        v = raw.to(torch.uint8).view(torch.int8).double()
    elif fmt == "nf4":
        v = torch.tensor(NF4, device="cuda", dtype=torch.float64)[raw]
    else:
        v = raw.double()
    if zps is not None:
        z = zps.to(torch.int32)
        if fmt in ("uint4", "uint8"):
            z = z & 255
        v = v - z.double().repeat_interleave(group, dim=1)
    return v * scales.double().repeat_interleave(group, dim=1)


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "gemm")
    if drv is None:
        return 1
    failures = 0

    def record(label, got, ref, k, unit=1e-6):
        """unit: the f32 sums' error per term (1e-5 for the tensor cores' sums)."""
        nonlocal failures
        err = float((got.double() - ref).abs().max() / ref.abs().max())
        ok = err <= unit * max(8.0, k ** 0.5)  # f32 sums of k terms (NaN fails)
        failures += not ok
        print(f"test {label}: {'ok' if ok else 'FAIL'} (max error {err:.1e} of the largest output)")
        results["tests"].append({"case": label, "error": err, "ok": ok})

    # The precisions: f32 on the CUDA cores against float64, and the tensor-core
    # entries (`_bf16`, `_tf32`: A and B rounded to bf16, nearest even as torch's
    # .bfloat16(), or tf32, nearest with ties away as cvt.rna; f32 accumulators)
    # against float64 on the rounded operands.
    def tf32(t):
        u = t.float().contiguous().view(torch.int32)
        finite = (u & 0x7F800000) != 0x7F800000
        return torch.where(finite, (u + 0x1000) & ~0x1FFF, u).view(torch.float32).double()

    precisions = (("", lambda t: t.double(), 1e-6),
                  ("_bf16", lambda t: t.to(torch.bfloat16).double(), 1e-5),
                  ("_tf32", tf32, 1e-5))

    # f32 B: C += A·B from known C, row-major and transposed operands, borders, batches.
    for suffix, rnd, unit in precisions:
        for m, n, k, batch, a_t, b_t in [(1, 70, 33, 1, False, False), (16, 129, 100, 1, True, False),
                                         (17, 64, 64, 1, False, True), (130, 70, 257, 1, True, True),
                                         (512, 512, 512, 1, False, False), (70, 40, 96, 6, False, True)]:
            A = torch.randn(batch, k, m, device="cuda").transpose(1, 2) if a_t else torch.randn(batch, m, k, device="cuda")
            B = torch.randn(batch, n, k, device="cuda").transpose(1, 2) if b_t else torch.randn(batch, k, n, device="cuda")
            C0 = torch.randn(batch, m, n, device="cuda")
            C = C0.clone()
            rows = 16 if m <= 16 else 64
            name = f"qopt_cuda_gemm_f32{'_m16' if rows == 16 else ''}{suffix}"
            drv.launch(name, grid(m, n, batch, rows),
                       gemm_params(A, A.stride(), B, B.stride(), C, C.stride(), m, n, k, batch), stream())
            torch.cuda.synchronize()
            record(f"{name} {batch}x{m}x{n}x{k}{' At' if a_t else ''}{' Bt' if b_t else ''}",
                   C, C0.double() + rnd(A) @ rnd(B), k, unit)

    # Double-quantized scales (QLoRA's): scale i = table[code i] · absmax[i // 4] + 0.01,
    # read by the kernel (NestedScales) instead of f32 scales.
    for rows, cols, m, t in [(130, 256, 40, False), (4096, 4096, 64, False), (64, 128, 33, True)]:
        codes, _, _ = make_weight(torch, "nf4", rows, cols, 64, False, gen)
        count = rows * cols // 64
        scale_codes = torch.randint(0, 256, (count,), dtype=torch.uint8, device="cuda", generator=gen)
        table = torch.rand(256, device="cuda", generator=gen) * 0.1
        absmax = torch.rand((count + 3) // 4, device="cuda", generator=gen) + 0.5
        idx = torch.arange(count, device="cuda")
        scales = (table[scale_codes.long()] * absmax[idx // 4] + 0.01).reshape(rows, cols // 64)
        nested = pack("NestedScales", scale_codes.data_ptr(), absmax.data_ptr(), 4, 0.01,
                      *table.tolist())
        n, k = (cols, rows) if t else (rows, cols)
        A = torch.randn(m, k, device="cuda")
        C0 = torch.randn(m, n, device="cuda")
        C = C0.clone()
        name = f"qopt_cuda_gemm_f32_nf4{'_t' if t else ''}"
        drv.launch(name, grid(m, n, 1),
                   gemm_params(A, (0,) + A.stride(), None, (0, 0, 0), C, (0,) + C.stride(), m, n, k,
                               codes=codes, code_row=codes.stride(0), scales=scale_codes,
                               scale_row=cols // 64, group=64), stream(), nested=nested)
        torch.cuda.synchronize()
        w = dequantize(torch, "nf4", codes, scales, None, rows, cols, 64)
        record(f"{name} W {rows}x{cols} nested scales m={m}", C, C0.double() + A.double() @ (w if t else w.T), k)

    # Quantized B: C += A·dequant(W)ᵀ (forward) and A·dequant(W) (`_t`, backward).
    def quantized(fmt, rows, cols, group, zp, m, t, suffix="", rnd=None, unit=1e-6):
        """rnd: the tensor cores' rounding of A and of W, dequantized in f32 first
        as the kernel does (None: f32 against the weight dequantized in float64)."""
        codes, scales, zps = make_weight(torch, fmt, rows, cols, group, zp, gen)
        n, k = (cols, rows) if t else (rows, cols)
        A = torch.randn(m, k, device="cuda")
        C0 = torch.randn(m, n, device="cuda")
        C = C0.clone()
        name = f"qopt_cuda_gemm_f32_{fmt}{'_t' if t else ''}{suffix}"
        drv.launch(name, grid(m, n, 1),
                   gemm_params(A, (0,) + A.stride(), None, (0, 0, 0), C, (0,) + C.stride(), m, n, k,
                               codes=codes, code_row=codes.stride(0), scales=scales,
                               scale_row=scales.stride(0), zp=zps,
                               zp_row=zps.stride(0) if zps is not None else 0, group=group),
                   stream())
        torch.cuda.synchronize()
        if rnd is None:
            w, a = dequantize(torch, fmt, codes, scales, zps, rows, cols, group), A.double()
        else:
            # scale · (code − zero) in f32 (exact codes and zero points, one rounding).
            w = dequantize(torch, fmt, codes, torch.ones_like(scales), zps, rows, cols, group)
            w, a = rnd(w.float() * scales.repeat_interleave(group, dim=1)), rnd(A)
        record(f"{name} W {rows}x{cols} group {group}{' zp' if zp else ''} m={m}",
               C, C0.double() + a @ (w if t else w.T), k, unit)

    for case in [("int4", 70, 96, 32, True, 40, False), ("nf4", 130, 256, 64, False, 17, False),
                 ("uint4", 64, 64, 32, True, 66, False), ("int8", 33, 160, 32, False, 80, False),
                 ("uint8", 70, 64, 64, True, 20, False), ("int4", 70, 96, 32, True, 5, True),
                 ("nf4", 130, 160, 32, False, 40, True), ("int8", 45, 96, 32, True, 66, True),
                 ("nf4", 4096, 4096, 64, False, 64, False), ("nf4", 4096, 4096, 64, False, 64, True)]:
        quantized(*case)
    for suffix, rnd, unit in precisions[1:]:
        for case in [("int4", 70, 96, 32, True, 40, False), ("nf4", 130, 256, 64, False, 17, False),
                     ("int8", 33, 160, 32, False, 80, False), ("uint8", 70, 64, 64, True, 20, True),
                     ("nf4", 4096, 4096, 64, False, 64, False), ("nf4", 4096, 4096, 64, False, 64, True)]:
            quantized(*case, suffix, rnd, unit)

    timed = timer(torch, args.reps)

    for n, k in ((4096, 4096), (4096, 14336)):
        for m in (512, 2048):
            flops = 2.0 * m * n * k
            A = torch.randn(m, k, device="cuda")
            C = torch.zeros(m, n, device="cuda")
            B = torch.randn(k, n, device="cuda")
            ours = timed(lambda: drv.launch("qopt_cuda_gemm_f32", grid(m, n, 1), gemm_params(
                A, (0,) + A.stride(), B, (0,) + B.stride(), C, (0,) + C.stride(), m, n, k), stream()))
            peer = timed(lambda: torch.matmul(A, B))
            line = {"kernel": "f32", "m": m, "n": n, "k": k, "tflops": flops / ours / 1e12,
                    "peer": "torch f32 (no TF32)", "peer_tflops": flops / peer / 1e12}
            results["bench"].append(line)
            print(f"bench f32 {m}x{n}x{k}: {line['tflops']:.1f} TFLOP/s, torch f32 {line['peer_tflops']:.1f} (x{peer / ours:.2f})")
            Ab, Wb = A.to(torch.bfloat16), torch.randn(n, k, device="cuda").to(torch.bfloat16)
            peer16 = timed(lambda: torch.matmul(Ab, Wb.T))
            ours = timed(lambda: drv.launch("qopt_cuda_gemm_f32_bf16", grid(m, n, 1), gemm_params(
                A, (0,) + A.stride(), B, (0,) + B.stride(), C, (0,) + C.stride(), m, n, k), stream()))
            line = {"kernel": "f32_bf16", "m": m, "n": n, "k": k, "tflops": flops / ours / 1e12,
                    "peer": "torch bf16", "peer_tflops": flops / peer16 / 1e12}
            results["bench"].append(line)
            print(f"bench f32 on tensor cores {m}x{n}x{k}: {line['tflops']:.1f} TFLOP/s, torch bf16 "
                  f"{line['peer_tflops']:.1f} (x{peer16 / ours:.2f})")
            torch.backends.cuda.matmul.allow_tf32 = True
            peer32 = timed(lambda: torch.matmul(A, B))
            torch.backends.cuda.matmul.allow_tf32 = False
            ours = timed(lambda: drv.launch("qopt_cuda_gemm_f32_tf32", grid(m, n, 1), gemm_params(
                A, (0,) + A.stride(), B, (0,) + B.stride(), C, (0,) + C.stride(), m, n, k), stream()))
            line = {"kernel": "f32_tf32", "m": m, "n": n, "k": k, "tflops": flops / ours / 1e12,
                    "peer": "torch TF32", "peer_tflops": flops / peer32 / 1e12}
            results["bench"].append(line)
            print(f"bench f32 on tensor cores (tf32) {m}x{n}x{k}: {line['tflops']:.1f} TFLOP/s, "
                  f"torch TF32 {line['peer_tflops']:.1f} (x{peer32 / ours:.2f})")
            for fmt, group in (("int4", 32), ("nf4", 64)):
                codes, scales, _ = make_weight(torch, fmt, n, k, group, False, gen)
                ours = timed(lambda: drv.launch(f"qopt_cuda_gemm_f32_{fmt}", grid(m, n, 1), gemm_params(
                    A, (0,) + A.stride(), None, (0, 0, 0), C, (0,) + C.stride(), m, n, k, codes=codes,
                    code_row=codes.stride(0), scales=scales, scale_row=scales.stride(0), group=group),
                    stream()))
                line = {"kernel": fmt, "m": m, "n": n, "k": k, "tflops": flops / ours / 1e12,
                        "peer": "torch bf16", "peer_tflops": flops / peer16 / 1e12}
                results["bench"].append(line)
                print(f"bench {fmt} {m}x{n}x{k}: {line['tflops']:.1f} TFLOP/s, torch bf16 "
                      f"{line['peer_tflops']:.1f} (x{peer16 / ours:.2f})")
                # The same on the tensor cores.
                ours = timed(lambda: drv.launch(f"qopt_cuda_gemm_f32_{fmt}_bf16", grid(m, n, 1),
                                                gemm_params(A, (0,) + A.stride(), None, (0, 0, 0), C,
                                                            (0,) + C.stride(), m, n, k, codes=codes,
                                                            code_row=codes.stride(0), scales=scales,
                                                            scale_row=scales.stride(0), group=group),
                                                stream()))
                line = {"kernel": f"{fmt}_bf16", "m": m, "n": n, "k": k,
                        "tflops": flops / ours / 1e12, "peer": "torch bf16",
                        "peer_tflops": flops / peer16 / 1e12}
                results["bench"].append(line)
                print(f"bench {fmt} tensor cores {m}x{n}x{k}: {line['tflops']:.1f} TFLOP/s, torch "
                      f"bf16 {line['peer_tflops']:.1f} (x{peer16 / ours:.2f})")
    return finish(args, results, failures, "gemm")


if __name__ == "__main__":
    sys.exit(main())
