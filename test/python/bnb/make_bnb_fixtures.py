"""bitsandbytes' own quantizations, for test/python/test_quantize.py to compare
qopt.quantize / qopt.dequantize with byte for byte (CI never installs torch or
bitsandbytes; it reads the committed bnb_quant.npz).

Cases: NF4 and FP4 (quantize_4bit) with and without double quantization
(compress_statistics), blocks 64 and 128, an odd number of elements, outliers,
a bf16 input (stored as its float32 values, which is what bitsandbytes
quantizes); the 8-bit dynamic format (quantize_blockwise) with blocks 256 and
4096. For each: the input, bitsandbytes' QuantState arrays (packed weight,
absmax, quant_map, nested_*) and its dequantized output (in the input's dtype,
bf16 for the bf16 case, stored as float32).

    /work/fixtures-venv/bin/python test/python/bnb/make_bnb_fixtures.py
"""
import os

import bitsandbytes
import bitsandbytes.functional as F
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(31)


def outliers(shape):
    x = rng.standard_normal(shape).astype(np.float32)
    idx = rng.choice(x.size, size=max(1, x.size // 200), replace=False)
    x.reshape(-1)[idx] *= 100.0
    return x


cases = {
    "nf4_b64_odd": ("nf4", 64, False, rng.standard_normal((33, 31)).astype(np.float32), None),
    "nf4_b64_double": ("nf4", 64, True, rng.standard_normal((96, 80)).astype(np.float32), None),
    "fp4_b128_outliers": ("fp4", 128, False, outliers((64, 100)), None),
    "fp4_b64_double_odd": ("fp4", 64, True, outliers((129, 65)), None),
    "nf4_b128_double_bf16": ("nf4", 128, True, None, torch.bfloat16),
    "fp4_b64_bf16": ("fp4", 64, False, None, torch.bfloat16),
    "int8_dynamic_b256": ("int8-dynamic", 256, False, outliers((40, 50)), None),
    "int8_dynamic_b4096_odd": ("int8-dynamic", 4096, False,
                               rng.standard_normal(5001).astype(np.float32), None),
}
out = {"versions": np.array([f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}"])}
for name, (fmt, block, double, x, dtype) in cases.items():
    if dtype is not None:
        t = torch.from_numpy(rng.standard_normal((70, 90)).astype(np.float32)).to(dtype)
        x = t.float().numpy()
    else:
        t = torch.from_numpy(x)
    if fmt == "int8-dynamic":
        q, st = F.quantize_blockwise(t.reshape(-1), blocksize=block)
        back = F.dequantize_blockwise(q, st).float().numpy().reshape(x.shape)
        out[f"{name}.weight"] = q.numpy().reshape(-1)
    else:
        # Flattened: bitsandbytes' native CPU dequantize_4bit decodes a 2-D
        # state row by row, which misplaces blocks when a row is not a
        # multiple of the block (0.50.2); on one row it is the format's
        # definition (its fallback and GPU kernels agree).
        q, st = F.quantize_4bit(t.reshape(-1), blocksize=block, quant_type=fmt,
                                compress_statistics=double)
        back = F.dequantize_4bit(q, st).float().numpy().reshape(x.shape)
        out[f"{name}.weight"] = q.numpy().reshape(-1).astype(np.uint8)
    out[f"{name}.input"] = x
    out[f"{name}.absmax"] = st.absmax.numpy()
    out[f"{name}.quant_map"] = st.code.float().numpy()
    out[f"{name}.dequantized"] = back
    out[f"{name}.config"] = np.array([fmt, str(block), str(int(double))])
    if double:
        out[f"{name}.nested_absmax"] = st.state2.absmax.float().numpy()
        out[f"{name}.nested_quant_map"] = st.state2.code.float().numpy()
        out[f"{name}.nested_offset"] = np.float32(st.offset.item())
np.savez_compressed(os.path.join(HERE, "bnb_quant.npz"), **out)
print("wrote", len(cases), "cases")
