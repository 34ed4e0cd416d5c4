#!/usr/bin/env python3
"""The CUDA kernel library's fast Walsh-Hadamard transform (lib/Runtime/Kernels/CUDA/
Hadamard.cu) on a GPU: a test, then a benchmark, in one run.

  * test: qopt_cuda_hadamard_f32 against y = (1/sqrt(n)) · H_n · diag(signs) · x in
    float64 (Sylvester's H_n) for blocks 2 to 8192, with and without signs, rows that
    cross thread blocks, transposed x and y;
  * benchmark: QuaRot's online rotations on a prefill of 2048 tokens (blocks 128 per
    head on 4096 channels, and 4096 / 8192 whole rows) against torch's f32 matmul with
    the explicit H_n (the product QuaRot's fallback computes), in GB/s of x read and y
    written;
  * the transform fused with per-token quantization (qopt_cuda_hadamard_quant_f32, a
    block a row, QuaRot's W4A4 input): codes, steps and y against the transform then
    qopt_cuda_token_quant, bit for bit; timed against those two launches;
  * orders base · 2^k and blocks past 8192 (qopt_cuda_hadamard_mixed_f32, dynamic
    shared memory opted in past 48 KB): y = H_base ⊗ H_power · diag(signs) · x / sqrt(n)
    against float64 for any ±1 base matrix (a random one here: the kernel applies what
    the compiler passes, Paley's or Williamson's), QuaRot's 11008 = 172·64,
    14336 = 28·512 and 18944 = 148·128 among them; with quantization, against the
    transform then qopt_cuda_token_quant bit for bit; timed against torch's matmul
    with the explicit matrix;
  * blocks past 23040 (the split plan: qopt_cuda_hadamard_f32's butterflies over runs
    of min(power, 8192), then qopt_cuda_hadamard_columns_f32): Llama-3-70B's 28672 =
    28·1024 and 32768 against float64, 28672 on 2048 tokens timed against torch's
    matmul with the explicit matrix.

Launched through the driver API with ctypes as bench/gpu/gemm.py does (HadamardParams,
104 bytes, HadamardQuantParams, 128, HadamardMixedParams, 8216, by value). Written
without a GPU at hand: its first run on one is its first check.
    python3 bench/gpu/hadamard.py --cubins gpu-artifacts [--json out.json]
Exit status: 0 when every test case matches, 1 otherwise.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gemm import finish, launch_1d, setup, timer  # noqa: E402
from structs import pack  # noqa: E402
from w8a8 import fused_outputs, launch_token_quant, same_quantization  # noqa: E402

THREADS = 256  # HadamardTile.h's kHadamardThreads


def launch(drv, x, y, signs, n, stream):
    """y = H_n · diag(signs) · x / sqrt(n) over each run of n along x's last axis
    (x, y: [rows, cols] with any strides)."""
    rows, cols = x.shape
    runs_per_block = 1 if n >= 2048 else 2048 // n
    blocks = (rows * (cols // n) + runs_per_block - 1) // runs_per_block
    params = pack("HadamardParams", x.data_ptr(), y.data_ptr(),
                  signs.data_ptr() if signs is not None else 0, *x.stride(),
                  *y.stride(), signs.stride(0) if signs is not None else 0,
                  rows, cols, n, runs_per_block, 1 / math.sqrt(n), 1)
    launch_1d(drv, "qopt_cuda_hadamard_f32", blocks, THREADS, params, stream)


def launch_quant(drv, x, y, signs, n, codes, steps, bits, stream):
    """Hadamard.cu's qopt_cuda_hadamard_quant_f32 (HadamardQuantParams, 128 bytes): a
    block a row (cols <= 8192); the rows' int8 codes and steps, y too where given."""
    rows, cols = x.shape
    yp, ys = (y.data_ptr(), y.stride()) if y is not None else (0, (0, 0))
    params = pack("HadamardQuantParams", x.data_ptr(), yp,
                  signs.data_ptr() if signs is not None else 0, *x.stride(), *ys,
                  signs.stride(0) if signs is not None else 0, rows, cols, n, cols // n,
                  1 / math.sqrt(n), 1, codes.data_ptr(), steps.data_ptr(), bits, 0)
    launch_1d(drv, "qopt_cuda_hadamard_quant_f32", rows, THREADS, params, stream)


def column_bits(order, negative):
    """HadamardMixedParams' words per column and its 2016 words of bits for a ±1
    matrix M of `order`: bit a % 32 of word r · words + a // 32 set where M[a][r]
    is −1 (negative(a, r))."""
    words = (order + 31) // 32
    columns = [0] * 2016
    for a in range(order):
        for r in range(order):
            if negative(a, r):
                columns[r * words + a // 32] |= 1 << (a % 32)
    return words, columns


def mixed_params(x, y, signs, base_matrix, n, codes=None, steps=None, bits=0):
    """Hadamard.cu's qopt_cuda_hadamard_mixed_f32 launch (HadamardMixedParams, 8216
    bytes): n = base · power with H_base = base_matrix (±1, base <= 252); with codes, a
    block a row and the rows' int8 codes and steps (y only where given). Returns the
    parameters' bytes, the blocks and the dynamic shared memory in bytes."""
    rows, cols = x.shape
    base = base_matrix.shape[0]
    words, columns = column_bits(base, lambda a, r: base_matrix[a, r] < 0)
    quant = codes is not None
    runs_per_block = cols // n if quant else (1 if n >= 2048 else 2048 // n)
    blocks = rows if quant else (rows * (cols // n) + runs_per_block - 1) // runs_per_block
    yp, ys = (y.data_ptr(), y.stride()) if y is not None else (0, (0, 0))
    params = pack("HadamardMixedParams", x.data_ptr(), yp,
                  signs.data_ptr() if signs is not None else 0, *x.stride(), *ys,
                  signs.stride(0) if signs is not None else 0, rows, cols, n, runs_per_block,
                  1 / math.sqrt(n), 1, codes.data_ptr() if quant else 0,
                  steps.data_ptr() if quant else 0, bits, 0, base, n // base, words, 0,
                  *columns)
    return params, blocks, 4 * (runs_per_block * n + base * words + THREADS // 32)


def launch_mixed(drv, stream, packed):
    """One launch of mixed_params' packing (done once, outside any timing)."""
    params, blocks, shared = packed
    launch_1d(drv, "qopt_cuda_hadamard_mixed_f32", blocks, THREADS, params, stream,
              shared=shared)


def split_params(x, y, signs, base_matrix, n):
    """The two launches HadamardTile.h's split plan makes for a block n past 23040:
    the butterflies over runs of P2 = min(power, 8192) (HadamardParams: signs with
    period n, unscaled, x to y) and qopt_cuda_hadamard_columns_f32 (HadamardMixedParams:
    M = H_base ⊗ H_(power / P2) across the runs, in place in y, scaled). Returns both
    parameters' bytes and blocks."""
    rows, cols = x.shape
    base = base_matrix.shape[0]
    power = n // base
    p2 = min(power, 8192)
    inner = power // p2
    p1 = base * inner
    # (M[a][r] = H_base[a // inner][r // inner] · Sylvester's (−1)^popcount.)
    words, columns = column_bits(
        p1, lambda a, r: (base_matrix[a // inner, r // inner] < 0)
        != (bin(a % inner & r % inner).count("1") % 2 == 1))
    runs_per_block = 1 if p2 >= 2048 else 2048 // p2
    runs = rows * (cols // p2)
    first = pack("HadamardParams", x.data_ptr(), y.data_ptr(),
                 signs.data_ptr() if signs is not None else 0, *x.stride(), *y.stride(),
                 signs.stride(0) if signs is not None else 0, rows, cols, p2, runs_per_block,
                 1.0, p1)
    second = pack("HadamardMixedParams", x.data_ptr(), y.data_ptr(), 0, *x.stride(),
                  *y.stride(), 0, rows, cols, n, 1, 1 / math.sqrt(n), 1, 0, 0, 0, 0, p1, p2,
                  words, 0, *columns)
    return (first, (runs + runs_per_block - 1) // runs_per_block,
            second, rows * (cols // n) * (p2 // 32))


def launch_split(drv, stream, packed):
    """The two launches of split_params' packing."""
    first, blocks, second, column_blocks = packed
    launch_1d(drv, "qopt_cuda_hadamard_f32", blocks, THREADS, first, stream)
    launch_1d(drv, "qopt_cuda_hadamard_columns_f32", column_blocks, THREADS, second, stream)


def sylvester(torch, n, dtype):
    i = torch.arange(n, device="cuda")
    bits = (i[:, None] & i[None, :])
    parity = torch.zeros_like(bits)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return (1 - 2 * parity).to(dtype)


def main():
    args, torch, drv, stream, gen, results = setup(__doc__, "hadamard")
    if drv is None:
        return 1
    failures = 0
    for n, rows, runs, signed, transposed in ((2, 3, 5, True, False), (32, 5, 3, False, True),
                                              (64, 700, 9, True, False),
                                              (512, 3, 5, True, True), (4096, 20, 1, True, False),
                                              (8192, 3, 2, False, False)):
        cols = n * runs
        x = torch.randn(rows, cols, device="cuda", generator=gen)
        y = torch.full((rows, cols), float("nan"), device="cuda")
        if transposed:
            x, y = x.T.contiguous().T, y.T.contiguous().T
        signs = (torch.randint(0, 2, (n,), device="cuda", generator=gen) * 2 - 1).float() \
            if signed else None
        launch(drv, x, y, signs, n, stream())
        torch.cuda.synchronize()
        h = sylvester(torch, n, torch.float64)
        xs = x.double().reshape(rows, runs, n) * (signs.double() if signed else 1.0)
        want = (xs @ h.T).reshape(rows, cols) / math.sqrt(n)
        err = ((y.double() - want).abs().max() / want.abs().max()).item()
        ok = not math.isnan(err) and err <= 1e-5
        failures += not ok
        name = f"n={n} rows={rows} cols={cols} signs={signed} transposed={transposed}"
        results["tests"].append({"case": name, "error": err, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} ({err:.1e} of the largest)")

    # Fused with per-token quantization (QuaRot's W4A4 input): codes, steps and y equal
    # the transform followed by qopt_cuda_token_quant, bit for bit.
    for n, rows, runs, signed, bits in ((32, 5, 1, True, 4), (128, 300, 32, True, 4),
                                        (2048, 7, 2, False, 8), (8192, 3, 1, True, 4)):
        cols = n * runs
        x = torch.randn(rows, cols, device="cuda", generator=gen)
        signs = (torch.randint(0, 2, (n,), device="cuda", generator=gen) * 2 - 1).float() \
            if signed else None
        y = torch.full((rows, cols), float("nan"), device="cuda")
        fy, codes, fcodes, steps, fsteps = fused_outputs(torch, y)
        launch(drv, x, y, signs, n, stream())
        launch_token_quant(drv, y, codes, steps, bits, stream())
        launch_quant(drv, x, fy, signs, n, fcodes, fsteps, bits, stream())
        torch.cuda.synchronize()
        ok = same_quantization(torch, (fcodes, fsteps, fy), (codes, steps, y))
        failures += not ok
        name = f"hadamard+quant n={n} rows={rows} cols={cols} signs={signed} bits={bits}"
        results["tests"].append({"case": name, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} (codes, steps and y bit for bit)")

    # Orders base · 2^k (a random ±1 base: the kernel applies what it is given) and
    # power-of-two blocks past 8192, alone and fused with the rows' quantization.
    def kron(base_matrix, n, dtype):
        power = n // base_matrix.shape[0]
        return torch.kron(base_matrix.to("cuda", dtype), sylvester(torch, power, dtype))

    cpu_gen = torch.Generator().manual_seed(5)

    def case(n, base, rows, cols, signed):
        """A random ±1 base of order `base` ([1] for 1: the kernels apply
        whatever they are given), x [rows, cols], a NaN-filled y and random
        signs [n] (or None)."""
        hb = torch.randint(0, 2, (base, base), generator=cpu_gen) * 2 - 1 if base > 1 \
            else torch.ones((1, 1), dtype=torch.int64)
        x = torch.randn(rows, cols, device="cuda", generator=gen)
        y = torch.full((rows, cols), float("nan"), device="cuda")
        signs = (torch.randint(0, 2, (n,), device="cuda", generator=gen) * 2 - 1).float() \
            if signed else None
        return hb, x, y, signs

    def record(name, y, want):
        """y against want (float64) within 1e-5 of the largest; recorded and
        printed. Returns whether it passed."""
        err = ((y.double() - want).abs().max() / want.abs().max()).item()
        ok = not math.isnan(err) and err <= 1e-5
        results["tests"].append({"case": name, "error": err, "ok": ok})
        print(f"test {name}: {'ok' if ok else 'MISMATCH'} ({err:.1e} of the largest)")
        return ok

    for n, base, rows, runs, signed in ((12, 12, 3, 5, True), (96, 12, 700, 3, True),
                                        (176, 44, 5, 4, False), (504, 252, 3, 2, True),
                                        (11008, 172, 5, 1, True), (14336, 28, 3, 1, False),
                                        (18944, 148, 2, 1, True), (16384, 1, 3, 1, True)):
        cols = n * runs
        hb, x, y, signs = case(n, base, rows, cols, signed)
        launch_mixed(drv, stream(), mixed_params(x, y, signs, hb, n))
        torch.cuda.synchronize()
        xs = x.double().reshape(rows, runs, n) * (signs.double() if signed else 1.0)
        want = (xs @ kron(hb, n, torch.float64).T).reshape(rows, cols) / math.sqrt(n)
        name = f"mixed n={n} base={base} rows={rows} cols={cols} signs={signed}"
        failures += not record(name, y, want)
        if cols > 23040:
            continue
        fy, codes, fcodes, steps, fsteps = fused_outputs(torch, y)
        launch_token_quant(drv, y, codes, steps, 4, stream())
        launch_mixed(drv, stream(), mixed_params(x, fy, signs, hb, n, fcodes, fsteps, 4))
        torch.cuda.synchronize()
        ok = same_quantization(torch, (fcodes, fsteps, fy), (codes, steps, y))
        failures += not ok
        results["tests"].append({"case": name + " +quant", "ok": ok})
        print(f"test {name} +quant: {'ok' if ok else 'MISMATCH'} (codes, steps and y bit for bit)")

    # Blocks past 23040 (two launches): Llama-3-70B's 28672 = 28 · 1024, and 32768 =
    # H_4 ⊗ H_8192.
    for n, base, rows, signed in ((28672, 28, 3, True), (32768, 1, 2, False)):
        hb, x, y, signs = case(n, base, rows, n, signed)
        launch_split(drv, stream(), split_params(x, y, signs, hb, n))
        torch.cuda.synchronize()
        xs = x.double() * (signs.double() if signed else 1.0)
        want = (xs @ kron(hb, n, torch.float64).T) / math.sqrt(n)
        failures += not record(f"split n={n} base={base} rows={rows} signs={signed}", y, want)

    timed = timer(torch, args.reps)
    for n, cols in ((128, 4096), (4096, 4096), (8192, 8192)):
        rows = 2048
        x = torch.randn(rows, cols, device="cuda")
        y = torch.empty_like(x)
        ours = timed(lambda: launch(drv, x, y, None, n, stream()))
        h = sylvester(torch, n, torch.float32) / math.sqrt(n)
        xr = x.view(rows, cols // n, n)
        peer = timed(lambda: torch.matmul(xr, h))
        gbs = 2 * x.numel() * 4 / 1e9
        line = {"n": n, "rows": rows, "cols": cols, "ms": ours * 1e3, "gbs": gbs / ours,
                "torch_matmul_ms": peer * 1e3}
        results["bench"].append(line)
        print(f"bench n={n} {rows}x{cols}: {ours * 1e3:.3f} ms ({gbs / ours:.0f} GB/s); "
              f"torch f32 x·H {peer * 1e3:.3f} ms (x{peer / ours:.2f})")
    # The fused launch (no y) against the transform then the rows' quantization.
    for n, cols in ((128, 4096), (4096, 4096), (8192, 8192)):
        rows = 2048
        x = torch.randn(rows, cols, device="cuda")
        y = torch.empty_like(x)
        codes = torch.empty((rows, cols), dtype=torch.int8, device="cuda")
        steps = torch.empty(rows, device="cuda")
        fused = timed(lambda: launch_quant(drv, x, None, None, n, codes, steps, 4, stream()))
        two = timed(lambda: (launch(drv, x, y, None, n, stream()),
                             launch_token_quant(drv, y, codes, steps, 4, stream())))
        line = {"n": n, "rows": rows, "cols": cols, "kind": "quant", "ms": fused * 1e3,
                "unfused_ms": two * 1e3}
        results["bench"].append(line)
        print(f"bench hadamard+quant n={n} {rows}x{cols}: fused {fused * 1e3:.3f} ms; "
              f"transform + token_quant {two * 1e3:.3f} ms (x{two / fused:.2f})")
    # QuaRot's online rotations of intermediate sizes base · 2^k on 2048 tokens, alone
    # and fused with the W4A4 input's quantization (no y), against torch's f32 matmul
    # with the explicit matrix.
    for n, base in ((11008, 172), (14336, 28), (18944, 148)):
        rows = 2048
        hb = torch.randint(0, 2, (base, base), generator=cpu_gen) * 2 - 1
        x = torch.randn(rows, n, device="cuda")
        y = torch.empty_like(x)
        codes = torch.empty((rows, n), dtype=torch.int8, device="cuda")
        steps = torch.empty(rows, device="cuda")
        plain = mixed_params(x, y, None, hb, n)
        quantizing = mixed_params(x, None, None, hb, n, codes, steps, 4)
        ours = timed(lambda: launch_mixed(drv, stream(), plain))
        fused = timed(lambda: launch_mixed(drv, stream(), quantizing))
        h = kron(hb, n, torch.float32) / math.sqrt(n)
        peer = timed(lambda: torch.matmul(x, h))
        gbs = 2 * x.numel() * 4 / 1e9
        line = {"n": n, "base": base, "rows": rows, "cols": n, "kind": "mixed",
                "ms": ours * 1e3, "gbs": gbs / ours, "quant_ms": fused * 1e3,
                "torch_matmul_ms": peer * 1e3}
        results["bench"].append(line)
        print(f"bench mixed n={n} (base {base}) {rows}x{n}: {ours * 1e3:.3f} ms "
              f"({gbs / ours:.0f} GB/s); with quantization {fused * 1e3:.3f} ms; "
              f"torch f32 x·H {peer * 1e3:.3f} ms (x{peer / ours:.2f})")
    # Llama-3-70B's 28672 on 2048 tokens: the split plan's two launches.
    n, base, rows = 28672, 28, 2048
    hb = torch.randint(0, 2, (base, base), generator=cpu_gen) * 2 - 1
    x = torch.randn(rows, n, device="cuda")
    y = torch.empty_like(x)
    packed = split_params(x, y, None, hb, n)
    ours = timed(lambda: launch_split(drv, stream(), packed))
    h = kron(hb, n, torch.float32) / math.sqrt(n)
    peer = timed(lambda: torch.matmul(x, h))
    gbs = 4 * x.numel() * 4 / 1e9  # (two passes over y)
    results["bench"].append({"n": n, "base": base, "rows": rows, "cols": n, "kind": "split",
                             "ms": ours * 1e3, "gbs": gbs / ours,
                             "torch_matmul_ms": peer * 1e3})
    print(f"bench split n={n} (base {base}) {rows}x{n}: {ours * 1e3:.3f} ms "
          f"({gbs / ours:.0f} GB/s over both passes); torch f32 x·H {peer * 1e3:.3f} ms "
          f"(x{peer / ours:.2f})")
    return finish(args, results, failures, "hadamard")


if __name__ == "__main__":
    sys.exit(main())
