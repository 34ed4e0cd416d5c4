"""EVA initialisation time: qoptc --calibration-data against PEFT's
initialize_lora_eva_weights on the same model and calibration batches, in
one run, on the CPU. Needs torch, transformers and PEFT (the fixtures
venv), so it is run by hand, not in CI:

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python bench/adapters/eva_vs_peft.py \
      --qopt-bin build/bin [--hidden 256 --layers 4 --samples 32 --seq 64 --r 8]

A random-initialised Llama of the given width is exported with torch's
dynamo exporter; both tools then compute EVA (r, rho = 2, tau, q/k/v/
o/gate/up/down) over the same .npz batches. PEFT runs twice: as it ships
(torch.svd_lowrank) and with the exact SVD qopt takes; the ranks qopt
assigns are compared with the exact run's. Prints times, forward passes
and ratios. Random weights and tokens give nearly flat spectra, on which
both tools can cycle for hundreds of passes (docs/Benchmarks.md): point it
at structured data before reading anything into a ratio."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import peft
import torch
import transformers
from torch.export import Dim

ap = argparse.ArgumentParser()
ap.add_argument("--qopt-bin", required=True)
ap.add_argument("--hidden", type=int, default=256)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--samples", type=int, default=32)
ap.add_argument("--seq", type=int, default=64)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--r", type=int, default=8)
# PEFT's default 0.99 can take hundreds of passes on a random model.
ap.add_argument("--tau", type=float, default=0.9)
args = ap.parse_args()
torch.set_num_threads(os.cpu_count())
# The fixtures' wrapper: plain tensors in, (logits,) out.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "test", "e2e", "real"))
from make_real_exports import CausalLM  # noqa: E402


def build():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=1000, hidden_size=args.hidden,
                                   intermediate_size=args.hidden * 8 // 3 // 8 * 8,
                                   num_hidden_layers=args.layers, num_attention_heads=8,
                                   num_key_value_heads=4, max_position_embeddings=2 * args.seq)
    return CausalLM(transformers.LlamaForCausalLM(cfg)).eval()


TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CONFIG = {"r": args.r, "lora_alpha": 2 * args.r, "target_modules": TARGETS,
          "init_lora_weights": "eva", "eva_config": {"rho": 2.0, "tau": args.tau}}

with tempfile.TemporaryDirectory() as tmp:
    model = build()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 1000, (args.samples, args.seq)).astype(np.int64)
    mask = np.ones_like(ids)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=mask)
    onnx_path = os.path.join(tmp, "model.onnx")
    b, s = Dim("batch", min=1, max=64), Dim("seq", min=1, max=2 * args.seq)
    ex = (torch.from_numpy(ids[:2]), torch.from_numpy(mask[:2]))
    torch.onnx.export(model, ex, onnx_path, dynamo=True, input_names=["input_ids", "attention_mask"],
                      output_names=["logits"],
                      dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})
    batches = [{"input_ids": torch.from_numpy(ids[i:i + args.batch]),
                "attention_mask": torch.from_numpy(mask[i:i + args.batch])}
               for i in range(0, args.samples, args.batch)]

    def peft_eva(exact):
        m = build()
        pm = peft.get_peft_model(m, peft.LoraConfig(**CONFIG))
        orig = peft.tuners.lora.eva.IncrementalPCA
        if exact:
            class Exact(orig):
                def __init__(self, *a, **k):
                    k["lowrank"] = False
                    super().__init__(*a, **k)
            peft.tuners.lora.eva.IncrementalPCA = Exact
        forwards = [0]

        def forward(mm, x):
            forwards[0] += 1
            return mm(**x)
        try:
            t = time.perf_counter()
            peft.initialize_lora_eva_weights(pm, dataloader=batches, forward_fn=forward,
                                             show_progress_bar=False)
            return time.perf_counter() - t, forwards[0], {
                n: mod.r["default"] for n, mod in pm.base_model.model.named_modules()
                if isinstance(mod, peft.tuners.lora.LoraLayer)}
        finally:
            peft.tuners.lora.eva.IncrementalPCA = orig

    t_lowrank, f_lowrank, _ = peft_eva(False)
    t_exact, f_exact, exact_ranks = peft_eva(True)
    cfg_path = os.path.join(tmp, "cfg.json")
    json.dump({"peft_type": "LORA", **CONFIG}, open(cfg_path, "w"))
    r = subprocess.run([os.path.join(args.qopt_bin, "qoptc"), onnx_path, "--lora-config", cfg_path,
                        "--calibration-data", calib, "--calibration-batch-size", str(args.batch),
                        "--calibration-max-passes", "100000",
                        "--save-adapter", os.path.join(tmp, "out"), "--time",
                        "-o", os.path.join(tmp, "m.so")], capture_output=True, text=True)
    if r.returncode:
        sys.exit(r.stderr)
    t_qopt = float(re.search(r"calibration \(EVA\)\s+([\d.]+) s", r.stderr).group(1))
    t_import = float(re.search(r"import\s+([\d.]+) s", r.stderr).group(1))
    t_qopt -= t_import  # the step's clock includes the import
    saved = json.load(open(os.path.join(tmp, "out", "adapter_config.json")))

    def rank_of(name):
        for key, v in saved["rank_pattern"].items():
            if re.fullmatch(rf"(.*\.)?{key}", name):
                return v
        return saved["r"] if name in saved["target_modules"] else 0

    same = sum(rank_of(n) == v for n, v in exact_ranks.items())
    print(f"model: hidden {args.hidden}, {args.layers} layers; calibration {args.samples} x "
          f"{args.seq} tokens in batches of {args.batch}; r {args.r}; tau {args.tau}; "
          f"{torch.get_num_threads()} threads")
    print(f"PEFT (svd_lowrank)     {t_lowrank:8.2f} s, {f_lowrank} forward passes")
    print(f"PEFT (exact SVD)       {t_exact:8.2f} s, {f_exact} forward passes")
    print(f"qoptc (probe compile + runs + PCA) {t_qopt:8.2f} s  "
          f"ratio to PEFT lowrank {t_qopt / t_lowrank:.2f}, to exact {t_qopt / t_exact:.2f}")
    print(f"ranks equal to PEFT's exact run: {same}/{len(exact_ranks)}")
