"""QLoRA checkpoints written by transformers + bitsandbytes on a GPU
(test/e2e/bnb, made by bnb/make_bnb_checkpoint.py: the real Llama export's
base model loaded with load_in_4bit, NF4 with double quantization, and FP4,
then save_pretrained) compiled onto both torch exports by
`qoptc model.onnx --weights model.safetensors`:

- the logits match bitsandbytes' own model run on the GPU in fp32
  (relative error max|d| / max|ref| <= 1e-4 at the kept positions);
- they equal, up to fp32 rounding (<= 2e-6), the same export compiled with
  the checkpoint's weights dequantized by qopt.dequantize (itself checked
  byte for byte against bitsandbytes in test/python) as a float checkpoint;
- the unquantized model is far from bitsandbytes' (> 1e-2), so the first
  check tells a quantized model from a float one;
- the compiled weights file holds the packed codes: it is under half the
  float one's size;
- with a PEFT adapter on top (`--weights … --adapter DIR`: LoRA, and DoRA +
  rsLoRA on every layer), the logits match PEFT's QLoRA forward
  (PeftModel.from_pretrained on bitsandbytes' 4-bit model, on the GPU)
  within 1e-4, and differ from the model without the adapter.

Prints one line per model and a summary; exits 1 on a mismatch."""
import json
import os
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

ADAPTERS = ["llama-lora", "llama-dora-rslora"]


def compile_with(model, weights, lib):
    r = subprocess.run([os.path.join(BIN, "qoptc"), model, "--weights", weights, "-o", lib],
                       capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for case in sorted(d for d in os.listdir(os.path.join(HERE, "bnb"))
                       if os.path.exists(os.path.join(HERE, "bnb", d, "reference.npz"))):
        folder = os.path.join(HERE, "bnb", case)
        checkpoint = os.path.join(folder, "model.safetensors")
        want = np.load(os.path.join(folder, "reference.npz"))
        floats = os.path.join(tmp, f"{case}-dequantized.safetensors")
        write_f32_safetensors(floats, dequantized_checkpoint(read_safetensors(checkpoint)))
        for exporter in ("torchscript", "dynamo"):
            label = f"{case} on llama-{exporter}"
            real = os.path.join(HERE, "real", f"llama-{exporter}")
            inputs = np.load(os.path.join(real, "reference.npz"))
            model = os.path.join(real, "model.onnx")
            libs = {kind: os.path.join(tmp, f"{case}-{exporter}-{kind}.so")
                    for kind in ("quantized", "float")}
            rc, err = compile_with(model, checkpoint, libs["quantized"])
            rc2, err2 = compile_with(model, floats, libs["float"])
            if rc or rc2:
                print(f"FAIL {label}: {(err or err2)[:400]}")
                failures += 1
                continue
            quantized, dense = qopt.load(libs["quantized"]), qopt.load(libs["float"])
            cases = sorted({k.split(".")[0] for k in want.files})
            vs_bnb = vs_float = float_vs_bnb = 0.0
            for c in cases:
                feeds = {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")}
                valid = inputs.get(f"{c}.logits.valid")
                got = quantized.run(**feeds)[0]
                vs_bnb = max(vs_bnb, rel_error(got, want[f"{c}.logits"], valid))
                vs_float = max(vs_float, rel_error(got, dense.run(**feeds)[0]))
                # The unquantized model (torch's fp32 reference): far off,
                # so the 1e-4 above tells the formats apart.
                float_vs_bnb = max(float_vs_bnb, rel_error(inputs[f"{c}.logits"],
                                                           want[f"{c}.logits"], valid))
            sizes = [os.path.getsize(os.path.splitext(libs[k])[0] + ".safetensors")
                     for k in ("quantized", "float")]
            # LLM.int8: bitsandbytes also rounds the activations to int8 per
            # row (qopt computes with the dequantized weight in f32), so its
            # logits are only near; the dequantized model is the exact check.
            near = 3e-2 if case == "llama-int8" else 1e-4
            ok = (vs_bnb <= near and vs_float <= 2e-6 and float_vs_bnb > 1e-3
                  and sizes[0] < (0.6 if case == "llama-int8" else 0.5) * sizes[1])
            print(f"{'ok' if ok else 'FAIL'} {label}: {len(cases)} shapes, max relative error "
                  f"{vs_bnb:.1e} vs bitsandbytes (the float model: {float_vs_bnb:.1e}), "
                  f"{vs_float:.1e} vs dequantized fp32; "
                  f"weights {sizes[0]} bytes, float {sizes[1]}")
            failures += not ok
            for adapter in ADAPTERS:
                if not os.path.exists(os.path.join(folder, f"peft-{adapter}.npz")):
                    continue  # no QLoRA forward recorded for this checkpoint
                peft_ref = np.load(os.path.join(folder, f"peft-{adapter}.npz"))
                lib = os.path.join(tmp, f"{case}-{exporter}-{adapter}.so")
                r = subprocess.run([os.path.join(BIN, "qoptc"), model, "--weights", checkpoint,
                                    "--adapter", os.path.join(HERE, "peft", adapter), "-o", lib],
                                   capture_output=True, text=True)
                if r.returncode:
                    print(f"FAIL {label} + {adapter}: {r.stderr.strip()[:400]}")
                    failures += 1
                    continue
                qlora = qopt.load(lib)
                worst = moved = 0.0
                for c in cases:
                    feeds = {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")}
                    valid = inputs.get(f"{c}.logits.valid")
                    worst = max(worst, rel_error(qlora.run(**feeds)[0], peft_ref[f"{c}.logits"], valid))
                    moved = max(moved, rel_error(want[f"{c}.logits"], peft_ref[f"{c}.logits"], valid))
                ok = worst <= 1e-4 and moved > 1e-3
                print(f"{'ok' if ok else 'FAIL'} {label} + {adapter}: {len(cases)} shapes, max "
                      f"relative error {worst:.1e} vs PEFT's QLoRA (the adapter moves it {moved:.1e})")
                failures += not ok
print(f"bnb weights: {failures} failures")
sys.exit(1 if failures else 0)
