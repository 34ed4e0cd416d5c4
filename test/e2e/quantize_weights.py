"""`qoptc model.onnx --quantize SPEC` on both torch exports of the test Llama
(test/e2e/real) against references written here from each format's
definition:

- every spec: the logits equal (<= 2e-6, fp32 rounding) those of the same
  export compiled with `--weights` of a float checkpoint whose linear
  weights (all but lm_head; with `--quantize-modules '.*'` lm_head too)
  were quantized and dequantized by the numpy
  reference below (for nf4 / fp4 by qopt.dequantize(qopt.quantize(...)),
  itself byte-equal to bitsandbytes in test/python), and differ from the
  float model's; the weights file holds packed codes (under 60% of the
  float one's size);
- nf4:block=64,double-quant (QLoRA): the logits match bitsandbytes' own
  4-bit model (test/e2e/bnb/llama-nf4-double, made on a GPU) and, with a
  PEFT adapter, PEFT's QLoRA forward (<= 1e-4).

Prints one line per case and a summary; exits 1 on a mismatch."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import read_safetensors, rel_error, write_f32_safetensors  # noqa: E402
from quant_reference import reference  # noqa: E402

BASE = os.path.join(HERE, "bnb", "llama-base", "model.safetensors")
SPECS = ["nf4:block=64,double-quant", "fp4:block=128", "int8:per-channel",
         "int4:group=16,asym", "int4:group=32,clip=mse", "int2:group=16,asym,clip=mse",
         "int3:group=16,asym", "fp8-e4m3", "fp8-e5m2:per-channel", "mxfp4", "nvfp4"]


def qoptc(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


base = read_safetensors(BASE)
linear = [n for n in base if n.endswith("_proj.weight")]
failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for exporter in ("dynamo", "torchscript"):
        real = os.path.join(HERE, "real", f"llama-{exporter}")
        model = os.path.join(real, "model.onnx")
        inputs = np.load(os.path.join(real, "reference.npz"))
        cases = sorted({k.split(".")[0] for k in inputs.files})
        feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}
        # Every spec on the default layers; one with the output head too.
        for spec, modules, names in ([(s, [], linear) for s in SPECS] +
                                     [("int4:group=32", ["--quantize-modules", ".*"],
                                       linear + ["lm_head.weight"])]):
            label = f"{spec} {' '.join(modules)} on llama-{exporter}".replace("  ", " ")
            tag = (spec + "".join(modules)).replace(":", "_").replace(",", "_").replace(
                "=", "").replace("-", "_").replace(".*", "all")
            lib = os.path.join(tmp, f"{exporter}-{tag}.so")
            floats = os.path.join(tmp, f"{tag}.safetensors")
            flib = os.path.join(tmp, f"{exporter}-{tag}-float.so")
            write_f32_safetensors(floats, {n: reference(base[n], spec) for n in names})
            rc, err = qoptc(model, "--quantize", spec, *modules, "-o", lib)
            rc2, err2 = qoptc(model, "--weights", floats, "-o", flib)
            if rc or rc2:
                print(f"FAIL {label}: {(err or err2)[:400]}")
                failures += 1
                continue
            got, ref = qopt.load(lib), qopt.load(flib)
            worst = max(rel_error(got.run(**feeds[c])[0], ref.run(**feeds[c])[0]) for c in cases)
            # The float model (torch's logits) is elsewhere: quantization did happen.
            moved = max(rel_error(got.run(**feeds[c])[0], inputs[f"{c}.logits"],
                                  inputs.get(f"{c}.logits.valid")) for c in cases)
            sizes = [os.path.getsize(os.path.splitext(p)[0] + ".safetensors") for p in (lib, flib)]
            ok = worst <= 2e-6 and moved > 1e-4 and sizes[0] < 0.6 * sizes[1]
            print(f"{'ok' if ok else 'FAIL'} {label}: {len(cases)} shapes, max relative error "
                  f"{worst:.1e} vs the reference-dequantized model ({moved:.1e} vs the float "
                  f"model); weights {sizes[0]} bytes, float {sizes[1]}")
            failures += not ok
        # QLoRA: qopt's own NF4 + double quantization against bitsandbytes'.
        bnb = os.path.join(HERE, "bnb", "llama-nf4-double")
        for adapter in (None, "llama-lora", "llama-dora-rslora"):
            want = np.load(os.path.join(bnb, f"peft-{adapter}.npz" if adapter else "reference.npz"))
            lib = os.path.join(tmp, f"{exporter}-qlora-{adapter}.so")
            extra = ["--adapter", os.path.join(HERE, "peft", adapter)] if adapter else []
            rc, err = qoptc(model, "--quantize", "nf4:block=64,double-quant", *extra, "-o", lib)
            label = f"QLoRA on llama-{exporter}" + (f" + {adapter}" if adapter else "")
            if rc:
                print(f"FAIL {label}: {err[:400]}")
                failures += 1
                continue
            m = qopt.load(lib)
            worst = max(rel_error(m.run(**feeds[c])[0], want[f"{c}.logits"],
                                  inputs.get(f"{c}.logits.valid")) for c in cases)
            ok = worst <= 1e-4
            print(f"{'ok' if ok else 'FAIL'} {label}: {len(cases)} shapes, max relative error "
                  f"{worst:.1e} vs {'PEFT on ' if adapter else ''}bitsandbytes' 4-bit model")
            failures += not ok
print(f"quantize weights: {failures} failures")
sys.exit(1 if failures else 0)
