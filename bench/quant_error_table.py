"""The error each `qoptc --quantize` format adds, on the test Llama export
(test/e2e/real/llama-dynamo: a tiny random-initialised model, 2 layers,
hidden 32; real checkpoints behave differently, so read the columns as a
comparison of formats, not as model quality). For each spec: the weight
error of the quantized linear layers (relative RMSE against the float
checkpoint, test/e2e/bnb/llama-base), the logits' error against torch's
float logits over the export's 5 test inputs (max |d| / max |ref|, and
mean |d| / mean |ref|), how often the top-1 token agrees, and the
weights file size. Prints a Markdown table for docs/Quantization.md.

    QOPT_BIN=build/bin .venv/bin/python bench/quant_error_table.py
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BIN = os.environ.get("QOPT_BIN", os.path.join(ROOT, "build", "bin"))
sys.path.insert(0, os.path.join(BIN, "..", "python"))
sys.path.insert(0, os.path.join(ROOT, "test", "e2e"))
import qopt  # noqa: E402
from checkpoints import read_safetensors  # noqa: E402
from quant_reference import reference  # noqa: E402  (the numpy definitions)

SPECS = ["nf4:block=64,double-quant", "nf4:block=64", "fp4:block=64", "int8:per-channel",
         "int4:group=16", "int4:group=16,asym", "int4:group=16,asym,clip=mse",
         "int4:per-channel", "int2:group=16,asym,clip=mse", "fp8-e4m3", "fp8-e4m3:per-channel",
         "fp8-e5m2", "mxfp4", "nvfp4"]
REAL = os.path.join(ROOT, "test", "e2e", "real", "llama-dynamo")
inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
base = read_safetensors(os.path.join(ROOT, "test", "e2e", "bnb", "llama-base", "model.safetensors"))
linear = [n for n in base if n.endswith("_proj.weight")]

print("| spec | weight rel. RMSE | logits max rel. error | logits mean rel. error | top-1 agreement | weights file |")
print("|---|---|---|---|---|---|")
with tempfile.TemporaryDirectory() as tmp:
    lib = os.path.join(tmp, "f.so")
    subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(REAL, "model.onnx"), "-o", lib], check=True)
    float_size = os.path.getsize(os.path.join(tmp, "f.safetensors"))
    for i, spec in enumerate(SPECS):
        lib = os.path.join(tmp, f"q{i}.so")  # one path per library: dlopen caches by path
        subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(REAL, "model.onnx"),
                        "--quantize", spec, "-o", lib], check=True)
        model = qopt.load(lib)
        num = sum(float(np.sum((reference(base[n], spec) - base[n]).astype(np.float64) ** 2))
                  for n in linear)
        den = sum(float(np.sum(base[n].astype(np.float64) ** 2)) for n in linear)
        worst = mean_d = mean_r = 0.0
        agree = total = 0
        for c in cases:
            got = model.run(input_ids=inputs[f"{c}.input_ids"],
                            attention_mask=inputs[f"{c}.attention_mask"])[0].astype(np.float64)
            ref = inputs[f"{c}.logits"].astype(np.float64)
            valid = inputs.get(f"{c}.logits.valid")
            mask = np.ones(ref.shape[:2], bool) if valid is None else valid
            g, r = got[mask], ref[mask]
            worst = max(worst, np.max(np.abs(g - r)) / np.max(np.abs(r)))
            mean_d += np.sum(np.abs(g - r))
            mean_r += np.sum(np.abs(r))
            agree += int(np.sum(g.argmax(-1) == r.argmax(-1)))
            total += g.shape[0]
        size = os.path.getsize(os.path.join(tmp, f"q{i}.safetensors"))
        print(f"| `{spec}` | {np.sqrt(num / den):.4f} | {worst:.2e} | {mean_d / mean_r:.2e} | "
              f"{agree}/{total} | {size / 1024:.1f} KiB (float {float_size / 1024:.1f}) |")
