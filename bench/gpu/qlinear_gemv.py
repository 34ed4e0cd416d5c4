#!/usr/bin/env python3
"""The CUDA kernel library's weight-only GEMV (lib/Runtime/Kernels/CUDA/QLinear.cu)
on a GPU: a test, then a benchmark, in one run.

  * test: every format (int4, uint4, int8, uint8 with and without zero points, NF4;
    groups of 32 / 64 / per channel; 1, 3 and 16 rows of x) against PyTorch computing
    the same product with the weight dequantized by the formats' definitions, in f32;
  * benchmark: int4 (groups of 32) and NF4 (blocks of 64) at batch 1, 4 and 16 for
    4096 x 4096 and 4096 x 14336 (N x K), against PyTorch's bf16 matmul on the same
    shape (the issue's peer), with the weight bytes each reads per second and the
    device's copy bandwidth measured in the same run.

The cubins come from the build machine (build/lib/cuda/library-sm_XX.cubin, carried by
scripts/gpu-artifacts.sh); cupy loads them (the driver API), torch is the reference.
Timings come from CUDA graphs of 50 calls (launch costs out) cycling through enough
copies of the weights (256 MiB) that they stream from memory, not from L2.
Written without a GPU at hand: its first run on one is its first check.
    python3 bench/gpu/qlinear_gemv.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import argparse
import json
import os
import sys

import numpy as np

FORMATS = {"int4": 0, "uint4": 1, "int8": 2, "uint8": 3, "nf4": 4}
FOUR = {"int4", "uint4", "nf4"}
NF4 = [-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
       -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
       0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
       0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0]
WARPS = 4  # output rows per block (QLinear.cu's kWarps)


def make_weight(cp, fmt, n, k, group, zp, rng):
    rows = k // 2 if fmt in FOUR else k
    codes = cp.asarray(rng.integers(0, 256, size=(n, rows), dtype=np.uint8))
    scales = cp.asarray(rng.uniform(0.01, 0.1, size=(n, k // group)).astype(np.float32))
    zps = None
    if zp:
        lo, hi = {"int4": (-8, 8), "uint4": (0, 16), "int8": (-100, 101), "uint8": (0, 256)}[fmt]
        zps = cp.asarray(rng.integers(lo, hi, size=(n, k // group)).astype(np.int16).astype(np.uint8).view(np.int8))
    return codes, scales, zps


def dequantize(torch, fmt, codes, scales, zps, n, k, group):
    c = torch.as_tensor(codes, device="cuda")
    if fmt in FOUR:
        lo, hi = (c & 15).to(torch.int32), (c >> 4).to(torch.int32)
        raw = torch.stack([lo, hi], dim=-1).reshape(n, k)
    else:
        raw = c.to(torch.int32)
    if fmt == "int4":
        v = ((raw ^ 8) - 8).float()
    elif fmt == "int8":
        v = raw.to(torch.uint8).view(torch.int8).float()
    elif fmt == "nf4":
        v = torch.tensor(NF4, device="cuda")[raw]
    else:
        v = raw.float()
    s = torch.as_tensor(scales, device="cuda").repeat_interleave(group, dim=1)
    if zps is not None:
        z = torch.as_tensor(zps, device="cuda").to(torch.int32)
        if fmt in ("uint4", "uint8"):
            z = z & 255
        v = v - z.float().repeat_interleave(group, dim=1)
    return v * s


def launch(cp, fn, x, m, k, codes, scales, zps, n, group, y, beta=0.0):
    grid = ((n + WARPS - 1) // WARPS,)
    fn(grid, (WARPS * 32,),
       (x, np.int64(k), np.int32(m), codes, np.int64(codes.shape[1]), scales,
        np.int64(scales.shape[1]), zps if zps is not None else np.uint64(0),
        np.int64(scales.shape[1]), np.int64(n), np.int64(k), np.int64(group), y,
        np.int64(n), np.float32(beta)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cubins", required=True, help="folder with library-sm_XX.cubin")
    ap.add_argument("--json")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    import cupy as cp
    import torch

    major, minor = cp.cuda.Device().compute_capability[:-1], cp.cuda.Device().compute_capability[-1]
    arch = f"sm_{major}{minor}"
    path = os.path.join(args.cubins, f"library-{arch}.cubin")
    if not os.path.exists(path):
        print(f"qlinear_gemv: no cubin for {arch} in {args.cubins}", file=sys.stderr)
        return 1
    mod = cp.RawModule(path=path)
    fns = {f: mod.get_function(f"qopt_cuda_gemv_{f}") for f in FORMATS}
    rng = np.random.default_rng(0)
    results = {"device": torch.cuda.get_device_name(), "arch": arch, "tests": [], "bench": []}
    failures = 0
    # y starts as NaN (beta = 0 must not read it; every output is written),
    # or, with beta = 0.5, as known values; m = 19 takes two passes of 16.
    for fmt, n, k, group, zp, m, beta in [
            ("int4", 37, 1024, 32, False, 1, 0.0), ("int4", 64, 4096, 64, True, 3, 0.0),
            ("uint4", 40, 2048, 32, True, 16, 0.0), ("nf4", 33, 4096, 64, False, 1, 0.0),
            ("nf4", 8, 512, 512, False, 16, 0.5), ("int8", 29, 1024, 32, False, 3, 0.0),
            ("int8", 16, 2048, 2048, True, 1, 0.5), ("uint8", 21, 768, 64, True, 16, 0.0),
            ("int4", 13, 512, 32, True, 19, 0.0)]:
        codes, scales, zps = make_weight(cp, fmt, n, k, group, zp, rng)
        xf = torch.randn(m, k, device="cuda").to(torch.bfloat16)
        x = cp.asarray(xf.view(torch.int16)).view(cp.uint16)
        y0 = torch.randn(m, n, device="cuda") if beta else torch.full((m, n), float("nan"), device="cuda")
        y = cp.asarray(y0.clone())
        launch(cp, fns[fmt], x, m, k, codes, scales, zps, n, group, y, beta)
        w = dequantize(torch, fmt, codes, scales, zps, n, k, group).double()
        ref = xf.double() @ w.T + (beta * y0.double() if beta else 0.0)
        err = float((torch.as_tensor(y, device="cuda").double() - ref).abs().max() / ref.abs().max())
        ok = err <= 1e-5  # (NaN fails)
        failures += not ok
        label = f"{fmt} {n}x{k} group {group}{' zp' if zp else ''} m={m}{f' beta={beta}' if beta else ''}"
        print(f"test {label}: {'ok' if ok else 'FAIL'} (max error {err:.1e} of the largest output)")
        results["tests"].append({"case": label, "error": err, "ok": ok})

    stream = cp.cuda.Stream(non_blocking=True)

    def graph_time(record, copies):
        """Seconds per call of record(i) (i: which copy of the data), from a
        CUDA graph of args.reps calls cycling through the copies (launch
        costs out of the timing; more bytes than the L2 cache holds)."""
        with stream:
            record(0)  # warm-up (and cuBLAS's workspace) outside the capture
            stream.synchronize()
            stream.begin_capture()
            try:
                for i in range(args.reps):
                    record(i % copies)
            except Exception:
                try:  # leave the stream usable for the fallback
                    stream.end_capture()
                except Exception:
                    pass
                raise
            graph = stream.end_capture()
            graph.launch(stream)
            stream.synchronize()
            start, end = cp.cuda.Event(), cp.cuda.Event()
            start.record(stream)
            graph.launch(stream)
            end.record(stream)
            end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) / args.reps / 1e3

    big, dst = cp.ones(1 << 30, dtype=cp.uint8), cp.empty(1 << 30, dtype=cp.uint8)
    copy_gbs = 2 * big.nbytes / graph_time(lambda i: cp.copyto(dst, big), 1) / 1e9
    del big, dst
    print(f"device copy bandwidth: {copy_gbs:.0f} GB/s (read + write)")
    results["copy_gbs"] = copy_gbs
    budget = 256 << 20  # bytes of weights cycled through: several L2 caches
    for fmt, group in (("int4", 32), ("nf4", 64)):
        for n, k in ((4096, 4096), (4096, 14336)):
            one = make_weight(cp, fmt, n, k, group, False, rng)
            nbytes = one[0].nbytes + one[1].nbytes
            weights = [one] + [make_weight(cp, fmt, n, k, group, False, rng)
                               for _ in range(max(1, budget // nbytes) - 1)]
            peers = [torch.randn(n, k, device="cuda").to(torch.bfloat16)
                     for _ in range(max(2, budget // (2 * n * k)))]
            for m in (1, 4, 16):
                xf = torch.randn(m, k, device="cuda").to(torch.bfloat16)
                x = cp.asarray(xf.view(torch.int16)).view(cp.uint16)
                y = cp.zeros((m, n), dtype=cp.float32)
                out = torch.empty(m, n, device="cuda", dtype=torch.bfloat16)
                t = graph_time(lambda i: launch(cp, fns[fmt], x, m, k, weights[i][0], weights[i][1],
                                                None, n, group, y), len(weights))
                try:
                    with torch.cuda.stream(torch.cuda.ExternalStream(stream.ptr)):
                        peer = graph_time(lambda i: torch.matmul(xf, peers[i].T, out=out),
                                          len(peers))
                except Exception as e:  # capture refused: eager calls, launch costs in
                    print(f"  (torch in a captured graph failed: {e}; timing it eagerly)")
                    for i in range(5):
                        torch.matmul(xf, peers[i % len(peers)].T, out=out)
                    t0, t1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    t0.record()
                    for i in range(args.reps):
                        torch.matmul(xf, peers[i % len(peers)].T, out=out)
                    t1.record()
                    torch.cuda.synchronize()
                    peer = t0.elapsed_time(t1) / args.reps / 1e3
                gbs = nbytes / t / 1e9
                print(f"bench {fmt} {n}x{k} batch {m}: {t * 1e6:7.1f} us, torch bf16 {peer * 1e6:7.1f} us "
                      f"(x{peer / t:4.2f}), {gbs:6.0f} GB/s of weights ({gbs / (copy_gbs / 2):4.0%} of the copy's read rate)")
                results["bench"].append({"format": fmt, "n": n, "k": k, "batch": m, "us": t * 1e6,
                                         "torch_bf16_us": peer * 1e6, "speedup": peer / t,
                                         "weight_gbs": gbs})
            del weights, peers
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    print(f"qlinear_gemv: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
