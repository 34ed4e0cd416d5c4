"""qopt-insert-lora's weight-dependent initialisations (PiSSA, OLoRA,
LoftQ; with rsLoRA and DoRA) against PEFT's own (peft/inits, made by
peft/make_peft_inits.py) on both Llama exports: the adapter's product
scale*B*A (sign-free: SVD and QR vectors are defined up to sign), the base
weight left behind (LoftQ: its NF4 quantization) and DoRA's magnitudes,
read from the printed IR; and the compiled model (qoptc --lora-config)
computes the base model's outputs (PiSSA, OLoRA) or PEFT's (LoftQ, which
changes them). Prints one line per case; exits 1 on a mismatch."""
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

INITS = os.path.join(HERE, "peft", "inits")
index = json.load(open(os.path.join(INITS, "index.json")))
failures = 0


def blob(ir, name, shape):
    m = re.search(r'\n\s*' + re.escape(name) + r': "0x([0-9A-F]+)"', ir)
    if not m:
        return None
    return np.frombuffer(bytes.fromhex(m.group(1))[4:], np.float32).reshape(shape).astype(np.float64)


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


with tempfile.TemporaryDirectory() as tmp:
    for name, cfg in index["cases"].items():
        ref = np.load(os.path.join(INITS, f"{name}.npz"))
        modules = sorted(k[:-len(".lora_A")] for k in ref.files if k.endswith(".lora_A"))
        r, alpha = cfg["r"], cfg["lora_alpha"]
        scale = alpha / (np.sqrt(r) if cfg.get("use_rslora") else r)
        options = (f"target-modules={','.join(cfg['target_modules'])} r={r} lora-alpha={alpha} "
                   f"init-lora-weights={cfg['init_lora_weights']} "
                   f"use-rslora={'true' if cfg.get('use_rslora') else 'false'} "
                   f"use-dora={'true' if cfg.get('use_dora') else 'false'}"
                   + (f" loftq-iter={cfg['loftq_config']['loftq_iter']}"
                      if "loftq_config" in cfg else ""))
        config_path = os.path.join(tmp, f"{name}.json")
        json.dump({"peft_type": "LORA", **cfg}, open(config_path, "w"))
        for exporter in ("dynamo", "torchscript"):
            folder = os.path.join(HERE, "real", f"llama-{exporter}")
            imported = subprocess.run([os.path.join(BIN, "qopt-translate"), "--import-onnx",
                                       "--mlir-print-debuginfo",
                                       os.path.join(folder, "model.onnx")],
                                      capture_output=True, text=True, check=True).stdout
            res = subprocess.run([os.path.join(BIN, "qopt-opt"), "--convert-onnx-to-qopt",
                                  f"--qopt-insert-lora={options} model-dir={folder}"],
                                 input=imported, capture_output=True, text=True)
            label = f"{name} on llama-{exporter}"
            if res.returncode:
                print(f"FAIL {label}: {res.stderr.strip()[:300]}")
                failures += 1
                continue
            worst = {"B*A": 0.0, "base": 0.0, "magnitude": 0.0}
            problems = []
            for mod in modules:
                pa, pb, pw = ref[f"{mod}.lora_A"], ref[f"{mod}.lora_B"], ref[f"{mod}.base"]
                a = blob(res.stdout, f"{mod}.lora_A.weight", pa.shape)
                b = blob(res.stdout, f"{mod}.lora_B.weight", pb.shape)
                w = blob(res.stdout, f"{mod}.weight", pw.shape)
                if a is None or b is None or w is None:
                    problems.append(f"{mod}: factors or residual weight missing")
                    continue
                worst["B*A"] = max(worst["B*A"], rel(scale * b @ a, scale * pb.astype(np.float64) @ pa))
                worst["base"] = max(worst["base"], rel(w, pw.astype(np.float64)))
                if f"{mod}.magnitude" in ref.files:
                    m = blob(res.stdout, f"{mod}.lora_magnitude_vector", ref[f"{mod}.magnitude"].shape)
                    worst["magnitude"] = max(worst["magnitude"], rel(m, ref[f"{mod}.magnitude"]))
            for what, err in worst.items():
                if err > 1e-4:
                    problems.append(f"{what} off by {err:.2g}")
            # Compiled: the adapter starts at the base model's outputs, or
            # at PEFT's where the init changes them.
            lib = os.path.join(tmp, f"{name}-{exporter}.so")
            c = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(folder, "model.onnx"),
                                "--lora-config", config_path, "-o", lib],
                               capture_output=True, text=True)
            if c.returncode:
                problems.append(c.stderr.strip()[:200])
            else:
                base = np.load(os.path.join(folder, "reference.npz"))
                got = qopt.load(lib).run(input_ids=base["case1.input_ids"],
                                         attention_mask=base["case1.attention_mask"])[0]
                err = rel(got, ref["logits"] if "logits" in ref.files else base["case1.logits"])
                if err > 1e-4:
                    problems.append(f"outputs changed by {err:.2g}")
            print(f"{'ok' if not problems else 'FAIL'} {label}: " +
                  ("; ".join(problems) if problems else
                   ", ".join(f"{k} {v:.1e}" for k, v in worst.items() if v)))
            failures += bool(problems)
print(f"peft inits: {failures} failures")
sys.exit(1 if failures else 0)
