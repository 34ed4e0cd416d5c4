"""`qoptc model.onnx --quantize SPEC --adapter DIR --merge --requantize` on
the test Llama (dynamo export) with a PEFT LoRA adapter (q/v/down_proj):
the adapter is merged into the quantized weights and the sum quantized again
in the same layout. Checked against a numpy reference of the same steps,
written from the definitions (test/e2e/quant_reference.py): every linear
weight quantized and dequantized, the target layers' plus (alpha / r) · B·A
quantized and dequantized again, compiled from a float checkpoint with
`--weights`. The same for QLoRA's own case, the adapter merged into a
bitsandbytes NF4 checkpoint (`--weights`, test/e2e/bnb/llama-nf4-double):
its weights dequantized, plus B·A, NF4 with double quantization again. The
logits must be equal up to fp32 rounding (<= 2e-6), and the per-layer
report must list each merged layer once.

Prints one line per case and a summary."""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import (dequantized_checkpoint, read_safetensors, rel_error,  # noqa: E402
                         write_f32_safetensors)
from quant_reference import reference  # noqa: E402

SPECS = ["nf4:block=64,double-quant", "int4:group=16,asym", "fp8-e4m3:per-channel",
         "mxfp4", "nvfp4", "qlora"]
ADAPTER = os.path.join(HERE, "peft", "llama-lora")
REAL = os.path.join(HERE, "real", "llama-dynamo")
QLORA = os.path.join(HERE, "bnb", "llama-nf4-double", "model.safetensors")

base = read_safetensors(os.path.join(HERE, "bnb", "llama-base", "model.safetensors"))
linear = [n for n in base if n.endswith("_proj.weight")]
qlora = dequantized_checkpoint(read_safetensors(QLORA))
config = json.load(open(os.path.join(ADAPTER, "adapter_config.json")))
scale = config["lora_alpha"] / config["r"]
factors = read_safetensors(os.path.join(ADAPTER, "adapter_model.safetensors"))
delta = {}
for key, a in factors.items():
    if key.endswith(".lora_A.weight"):
        module = key[len("base_model.model.m."):-len(".lora_A.weight")]
        b = factors[key.replace("lora_A", "lora_B")]
        delta[module + ".weight"] = scale * (b.astype(np.float64) @ a.astype(np.float64))
assert delta and all(k in base for k in delta), sorted(delta)

inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}
failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for i, spec in enumerate(SPECS):
        weights = {}
        for n in linear:
            if spec == "qlora":  # bitsandbytes' NF4 (blocks of 64, double quant)
                w = qlora[n]
                if n in delta:
                    w = reference((w + delta[n]).astype(np.float32), "nf4:block=64,double-quant")
            else:
                w = reference(base[n], spec)
                if n in delta:
                    w = reference((w + delta[n]).astype(np.float32), spec)
            weights[n] = w
        floats = os.path.join(tmp, f"reference-{i}.safetensors")
        write_f32_safetensors(floats, weights)
        lib, flib = os.path.join(tmp, f"{i}.so"), os.path.join(tmp, f"{i}-float.so")
        source = ["--weights", QLORA] if spec == "qlora" else ["--quantize", spec]
        r = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(REAL, "model.onnx"), *source,
                            "--adapter", ADAPTER, "--merge", "--requantize",
                            "-o", lib], capture_output=True, text=True)
        r2 = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(REAL, "model.onnx"),
                             "--weights", floats, "-o", flib], capture_output=True, text=True)
        if r.returncode or r2.returncode:
            print(f"FAIL {spec}: {(r.stderr if r.returncode else r2.stderr)[-400:]}")
            failures += 1
            continue
        rows = re.findall(r"^m\.(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+([\d.]+)%$", r.stderr, re.M)
        reported = sorted(m + ".weight" for m, *_ in rows)
        got, ref = qopt.load(lib), qopt.load(flib)
        worst = max(rel_error(got.run(**feeds[c])[0], ref.run(**feeds[c])[0]) for c in cases)
        kept = min(float(k) for *_, k in rows) if rows else float("nan")
        ok = worst <= 2e-6 and reported == sorted(delta)
        print(f"{'ok' if ok else 'FAIL'} {spec}: {len(rows)} layers reported (update kept "
              f">= {kept:.1f}%), max relative error {worst:.1e} vs the reference")
        failures += not ok
print(f"merge re-quantized: {failures} failures")
sys.exit(1 if failures else 0)
