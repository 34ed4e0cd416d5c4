"""The weight quantizers of `qoptc --quantize`, written in numpy from each
format's definition (for nf4 / fp4: qopt.quantize, byte-equal to
bitsandbytes in test/python; for fp8: ml_dtypes' rounding): test/e2e/quantize_weights.py compares the
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
