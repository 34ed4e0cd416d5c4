"""EVA (init_lora_weights "eva", qoptc --calibration-data) against PEFT's
own initialize_lora_eva_weights (peft/eva, made by peft/make_peft_eva.py
with PEFT's incremental PCA on the exact SVD) on the Llama exports: the
ranks EVA redistributes, the alphas it adjusts (in the saved
adapter_config.json), A (the components; rows are compared with their
signs, which both fix the same way) and B = 0 in the saved
adapter_model.safetensors, and the compiled model's outputs unchanged.
Then PEFT's saved EVA adapters load with qoptc --adapter. Prints one line
per case; exits 1 on a mismatch."""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402

EVA = os.path.join(HERE, "peft", "eva")
index = json.load(open(os.path.join(EVA, "index.json")))
failures = 0


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for key, e in header.items():
        if key == "__metadata__":
            continue
        b, end = e["data_offsets"]
        out[key] = np.frombuffer(raw[8 + n + b:8 + n + end], np.float32).reshape(e["shape"])
    return out


def pattern_value(patterns, module, default):
    """PEFT's lookup: the first key that matches the module's path."""
    for key, value in patterns.items():
        if re.fullmatch(rf"(.*\.)?{key}", module):
            return value
    return default


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


with tempfile.TemporaryDirectory() as tmp:
    for name, case in index["cases"].items():
        ref = np.load(os.path.join(EVA, f"{name}.npz"))
        config_path = os.path.join(tmp, f"{name}.json")
        json.dump({"peft_type": "LORA", **case["config"]}, open(config_path, "w"))
        # All three naming styles once; the second case on one (time).
        exporters = ("dynamo", "torchscript", "params") if name == "eva-default" else ("dynamo",)
        for exporter in exporters:
            folder = os.path.join(HERE, "real", f"llama-{exporter}")
            label = f"{name} on llama-{exporter}"
            lib, saved = os.path.join(tmp, f"{name}-{exporter}.so"), os.path.join(tmp, f"{name}-{exporter}")
            c = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(folder, "model.onnx"),
                                "--lora-config", config_path,
                                "--calibration-data", os.path.join(EVA, "calib.npz"),
                                "--calibration-batch-size", str(case["batch_size"]),
                                "--save-adapter", saved, "-o", lib],
                               capture_output=True, text=True)
            if c.returncode:
                print(f"FAIL {label}: {c.stderr.strip()[:300]}")
                failures += 1
                continue
            problems, worst = [], 0.0
            cfg = json.load(open(os.path.join(saved, "adapter_config.json")))
            tensors = read_safetensors(os.path.join(saved, "adapter_model.safetensors"))
            for module, rank in case["ranks"].items():
                key = f"base_model.model.{module}.lora_A.weight"
                if rank == 0:
                    if key in tensors:
                        problems.append(f"{module}: an adapter PEFT dropped")
                    continue
                if key not in tensors:
                    problems.append(f"{module}: no adapter")
                    continue
                a, b = tensors[key], tensors[key.replace("lora_A", "lora_B")]
                got_rank = pattern_value(cfg["rank_pattern"], module, cfg["r"])
                alpha = pattern_value(cfg["alpha_pattern"], module, cfg["lora_alpha"])
                if a.shape[0] != rank or got_rank != rank:
                    problems.append(f"{module}: rank {a.shape[0]} (config {got_rank}), PEFT {rank}")
                    continue
                if abs(alpha - case["alphas"][module]) > 1e-12:
                    problems.append(f"{module}: alpha {alpha}, PEFT {case['alphas'][module]}")
                if np.any(b != 0):
                    problems.append(f"{module}: B is not zero")
                worst = max(worst, rel(a.astype(np.float64), ref[f"{module}.lora_A"]))
            if worst > 1e-4:
                problems.append(f"A off by {worst:.2g}")
            base = np.load(os.path.join(folder, "reference.npz"))
            got = qopt.load(lib).run(input_ids=base["case1.input_ids"],
                                     attention_mask=base["case1.attention_mask"])[0]
            err = rel(got, ref["logits"])
            if err > 1e-5:
                problems.append(f"outputs changed by {err:.2g}")
            print(f"{'ok' if not problems else 'FAIL'} {label}: " +
                  ("; ".join(problems) if problems else f"ranks equal, A {worst:.1e}"))
            failures += bool(problems)
        # PEFT's own saved EVA adapter (init_lora_weights "eva", eva_config)
        # loads, unmerged and merged.
        folder = os.path.join(HERE, "real", "llama-dynamo")
        base = np.load(os.path.join(folder, "reference.npz"))
        for merge in ([], ["--merge"]) if name == "eva-default" else ([],):
            lib = os.path.join(tmp, f"{name}-peft{len(merge)}.so")
            c = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(folder, "model.onnx"),
                                "--adapter", os.path.join(EVA, name), "-o", lib] + merge,
                               capture_output=True, text=True)
            label = f"PEFT's {name} adapter loaded{' merged' if merge else ''}"
            if c.returncode:
                print(f"FAIL {label}: {c.stderr.strip()[:300]}")
                failures += 1
                continue
            got = qopt.load(lib).run(input_ids=base["case1.input_ids"],
                                     attention_mask=base["case1.attention_mask"])[0]
            err = rel(got, ref["logits"])
            print(f"{'ok' if err <= 1e-5 else 'FAIL'} {label}: outputs {err:.1e}")
            failures += err > 1e-5
    # Slots compiled from PEFT's saved EVA config (per-module ranks) take
    # its adapter at run time.
    folder = os.path.join(HERE, "real", "llama-dynamo")
    base = np.load(os.path.join(folder, "reference.npz"))
    lib = os.path.join(tmp, "eva-slots.so")
    adapter = os.path.join(EVA, "eva-default")
    c = subprocess.run([os.path.join(BIN, "qoptc"), os.path.join(folder, "model.onnx"), "--lora-slots",
                        os.path.join(adapter, "adapter_config.json"), "-o", lib],
                       capture_output=True, text=True)
    if c.returncode:
        print(f"FAIL slots from PEFT's EVA config: {c.stderr.strip()[:300]}")
        failures += 1
    else:
        m = qopt.load(lib)
        m.load_adapter(adapter)
        got = m.run(input_ids=base["case1.input_ids"], attention_mask=base["case1.attention_mask"])[0]
        err = rel(got, base["case1.logits"])
        ranks = sorted({r for _, r in m.lora_slots})
        print(f"{'ok' if err <= 1e-5 else 'FAIL'} slots from PEFT's EVA config (ranks {ranks}), "
              f"its adapter loaded: outputs {err:.1e}")
        failures += err > 1e-5
print(f"peft eva: {failures} failures")
sys.exit(1 if failures else 0)
