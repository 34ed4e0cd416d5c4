"""The weight quantizers of `qoptc --quantize`, written in numpy from each
format's definition (for nf4 / fp4: qopt.quantize, byte-equal to
bitsandbytes in test/python; for fp8 / mxfp4 / nvfp4: ml_dtypes' rounding): test/e2e/quantize_weights.py compares the
compiler with them, bench/quant_error_table.py measures their error."""
import ml_dtypes
import numpy as np

import qopt


def int_group(x, bits, asym, ratio):
    """One group quantized and dequantized (float32, as the definition)."""
    lo, hi = np.float32(x.min() * ratio), np.float32(x.max() * ratio)
    if asym:
        qmax = 2 ** bits - 1
        lo, hi = min(lo, np.float32(0)), max(hi, np.float32(0))
        s = np.float32((hi - lo) / np.float32(qmax)) or np.float32(1)
        zp = np.clip(np.rint(-lo / s), 0, qmax)
        q = np.clip(np.rint(x / s) + zp, 0, qmax)
        return ((q - zp) * s).astype(np.float32)
    qmax = 2 ** (bits - 1) - 1
    s = np.float32(max(abs(lo), abs(hi)) / np.float32(qmax)) or np.float32(1)
    q = np.clip(np.rint(x / s), -qmax - 1, qmax)
    return (q * s).astype(np.float32)


def reference(w, spec):
    fmt, _, rest = spec.partition(":")
    opts = dict(o.partition("=")[::2] for o in rest.split(",") if o)
    if fmt in ("fp8-e4m3", "fp8-e5m2"):
        # One scale per tensor (or row): absmax / the largest value; codes
        # rounded to nearest even by ml_dtypes.
        dtype, largest = ((ml_dtypes.float8_e4m3fn, 448.0) if fmt == "fp8-e4m3"
                          else (ml_dtypes.float8_e5m2, 57344.0))
        rows = w if "per-channel" in opts else w.reshape(1, -1)
        amax = np.abs(rows).max(axis=1, keepdims=True).astype(np.float32)
        s = np.where(amax > 0, amax / np.float32(largest), np.float32(1)).astype(np.float32)
        q = (rows / s).astype(dtype).astype(np.float32)
        return (q * s).astype(np.float32).reshape(w.shape)
    if fmt == "mxfp4":
        # OCP MX v1.0: per 32 along a row, X = 2^(floor(log2 amax) - 2)
        # (E2M1's emax), clamped to E8M0's range; x / X to E2M1, saturating.
        out = np.empty_like(w)
        for g in range(0, w.shape[1], 32):
            x = w[:, g:g + 32]
            amax = np.abs(x).max(axis=1, keepdims=True)
            e = np.where(amax > 0, np.floor(np.log2(np.where(amax > 0, amax, 1))) - 2, -127)
            X = np.exp2(np.clip(e, -127, 127)).astype(ml_dtypes.float8_e8m0fnu).astype(np.float32)
            q = np.clip(x / X, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
            out[:, g:g + 32] = q * X
        return out
    if fmt == "nvfp4":
        # torchao's two-level NVFP4: g = amax / (448 * 6); per 16 along a row
        # the E4M3 of (block amax / 6) / g clamped to [2^-6, 448]; x / (g * s)
        # clamped to +-6, to E2M1.
        g = np.float32(np.abs(w).max() / np.float32(448 * 6)) or np.float32(1)
        out = np.empty_like(w)
        for b in range(0, w.shape[1], 16):
            x = w[:, b:b + 16]
            bs = np.clip(np.abs(x).max(axis=1, keepdims=True) / np.float32(6) / g,
                         np.float32(2.0 ** -6), np.float32(448))
            s = bs.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
            total = (g * s).astype(np.float32)
            q = np.clip(x / total, -6, 6).astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
            out[:, b:b + 16] = (q * total).astype(np.float32)
        return out
    if fmt in ("nf4", "fp4"):
        return qopt.dequantize(qopt.quantize(w, fmt, block_size=int(opts.get("block", 64)),
                                             double_quant="double-quant" in opts))
    bits, asym = int(fmt[3:]), "asym" in opts
    group = int(opts.get("group", w.shape[1]))
    out = np.empty_like(w)
    for r in range(w.shape[0]):
        for g in range(0, w.shape[1], group):
            x = w[r, g:g + group]
            best, best_err = int_group(x, bits, asym, np.float32(1)), None
            if opts.get("clip") == "mse":
                best_err = np.sum((best.astype(np.float64) - x) ** 2)
                for step in range(1, 51):
                    cand = int_group(x, bits, asym, np.float32(1) - np.float32(0.01) * step)
                    err = np.sum((cand.astype(np.float64) - x) ** 2)
                    if err < best_err:
                        best, best_err = cand, err
            out[r, g:g + group] = best
    return out
