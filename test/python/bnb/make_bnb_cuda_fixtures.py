"""bitsandbytes' CUDA kernels on the inputs of bnb_quant.npz (+ one tensor whose
double-quantized absmax spans several nested blocks of 256): what a user's
QLoRA checkpoint holds, since transformers quantizes on the GPU. Needs a GPU;
run by scripts/gpu-fixtures.sh, its output committed as bnb_quant_cuda.npz
(the keys of bnb_quant.npz: <case>.input (or .input_of, another case's name) /
.weight / .absmax / .quant_map / .nested_* / .dequantized / .config; and
mean.<n>.input / .mean, torch's CUDA mean of n floats).

    python test/python/bnb/make_bnb_cuda_fixtures.py OUT.npz
"""
import os
import sys

import bitsandbytes
import bitsandbytes.functional as F
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
cpu = np.load(os.path.join(HERE, "bnb_quant.npz"))
cases = {}
for key in cpu.files:
    if key.endswith(".config"):
        name = key[: -len(".config")]
        fmt, block, double = cpu[key]
        cases[name] = (str(fmt), int(block), bool(int(double)), cpu[f"{name}.input"])
rng = np.random.default_rng(5)
big = rng.standard_normal((256, 320)).astype(np.float32)
big[:, 7] *= 40.0  # an outlier channel: absmax far from the mean
cases["nf4_b64_double_big"] = ("nf4", 64, True, big)
cases["fp4_b128_double_big"] = ("fp4", 128, True, big)
zero = rng.standard_normal((8, 64)).astype(np.float32)
zero[2] = 0.0  # an all-zero block: bitsandbytes scales it by 1/0
cases["nf4_b64_double_zero_block"] = ("nf4", 64, True, zero)
cases["fp4_b64_zero_block"] = ("fp4", 64, False, zero)
for name in [n for n in cases if n.startswith(("nf4", "fp4"))]:
    fmt, block, _, x = cases[name]
    cases[name + "_as8bit"] = ("int8-dynamic", 256, False, x)  # the CUDA 8-bit search
# Cases that quantize another case's input name it (<case>.input_of)
# instead of storing it again; the 8-bit ones keep no dequantized copy.
shares = {name: name[: -len("_as8bit")] for name in cases if name.endswith("_as8bit")}
shares["fp4_b128_double_big"] = "nf4_b64_double_big"

out = {"versions": np.array([f"bitsandbytes {bitsandbytes.__version__}, torch {torch.__version__}, "
                             f"{torch.cuda.get_device_name()}"])}
for name, (fmt, block, double, x) in cases.items():
    t = torch.from_numpy(x).cuda()
    if "bf16" in name:
        t = t.to(torch.bfloat16)
    if fmt == "int8-dynamic":
        q, st = F.quantize_blockwise(t.reshape(-1), blocksize=block)
        back = F.dequantize_blockwise(q, st)
        out[f"{name}.weight"] = q.cpu().numpy().reshape(-1)
    else:
        q, st = F.quantize_4bit(t, blocksize=block, quant_type=fmt, compress_statistics=double)
        back = F.dequantize_4bit(q, st)
        out[f"{name}.weight"] = q.cpu().numpy().reshape(-1).astype(np.uint8)
    if name in shares:
        out[f"{name}.input_of"] = np.array([shares[name]])
    else:
        out[f"{name}.input"] = x
    out[f"{name}.absmax"] = st.absmax.cpu().numpy()
    out[f"{name}.quant_map"] = st.code.float().cpu().numpy()
    if not name.endswith("_as8bit"):
        out[f"{name}.dequantized"] = back.float().cpu().numpy().reshape(x.shape)
    out[f"{name}.config"] = np.array([fmt, str(block), str(int(double))])
    if double:
        out[f"{name}.nested_absmax"] = st.state2.absmax.float().cpu().numpy()
        out[f"{name}.nested_quant_map"] = st.state2.code.float().cpu().numpy()
        out[f"{name}.nested_offset"] = np.float32(st.offset.item())
# Double quantization subtracts absmax.mean(), a CUDA reduction whose f32
# rounding qopt reproduces: torch's mean over many lengths.
for count in [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 50, 63, 64, 65, 100, 120, 127, 128, 129, 132, 200,
              255, 256, 257, 300, 511, 512, 513, 640, 1000, 1023, 1024, 1025, 1280, 2047, 2048,
              2049, 3000, 4095, 4096, 4097, 5000, 8192, 10000, 16384, 20000]:
    v = (np.abs(rng.standard_normal(count)) * rng.uniform(0.5, 20.0)).astype(np.float32)
    out[f"mean.{count}.input"] = v
    out[f"mean.{count}.mean"] = np.float32(torch.from_numpy(v).cuda().mean().item())
np.savez_compressed(sys.argv[1], **out)
print("wrote", len(cases), "cases to", sys.argv[1])
