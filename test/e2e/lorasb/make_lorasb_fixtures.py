"""Reference LoRA-SB initialisations (Ponkshe et al. 2024, "Initialization
using update approximation is a silver bullet for extremely efficient
low-rank fine-tuning"; the authors' code: github.com/RaghavSinghal10/lora-sb)
on the test Llama, for qoptc --lora-config with init_lora_weights "lora-sb"
and --calibration-data. PEFT has no LoRA-SB, so this script follows the
authors' procedure in PyTorch:

- the base model in training mode runs each calibration sample alone
  (`estimate_and_process_grads_torch`: one sample per backward pass, the
  sample's causal-LM loss) and sums the gradients of the targeted weights;
- the approximated first update is ΔW = -lr · sign(ΣG);
- its top-r SVD U·S·Vᵀ gives the frozen B = U_r (out × r) and A = V_rᵀ
  (r × in) and the trainable r × r middle R = diag(S_r) / scale (scale =
  lora_alpha / r, or / √r with rsLoRA). The authors' code sets R = diag(S_r)
  and always runs with lora_alpha = r (scale 1), where the two agree; the
  division keeps scale·B·R·A the rank-r approximation of ΔW for any alpha.

The authors compute the SVD with torch.svd_lowrank (q = r, 10 power
iterations); this script, like qopt, uses the exact SVD.

It writes test/e2e/lorasb/:

  <case>.json   the adapter config (init_lora_weights "lora-sb",
                lora_sb_config.lr) qoptc --lora-config reads
  <case>.npz    per targeted module (without base_model.model.):
                <module>.delta (ΔW), <module>.lora_A, <module>.lora_B,
                <module>.lora_middle; logits of the base model with
                W + scale·B·R·A on the export's case1
  index.json    versions, cases, the calibration data used

The calibration data is test/e2e/peft/loraga/calib.npz (6 samples).

Regenerate (needs torch, transformers; CI reads the committed files):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/lorasb/make_lorasb_fixtures.py
"""
import json
import math
import os
import sys

import numpy as np
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real")
CALIB = os.path.join(HERE, "..", "peft", "loraga", "calib.npz")
sys.path.insert(0, REAL)
import make_real_exports as mre  # noqa: E402

CASES = {
    # The authors' setting: lora_alpha = r.
    "lorasb-default": dict(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj", "down_proj"],
                           lora_sb_config=dict(lr=1e-3)),
    "lorasb-rslora": dict(r=3, lora_alpha=6, use_rslora=True,
                          target_modules=["k_proj", "o_proj", "up_proj"],
                          lora_sb_config=dict(lr=5e-4)),
}


def main():
    ref = np.load(os.path.join(REAL, "llama-dynamo", "reference.npz"))
    calib = dict(np.load(CALIB))
    samples = calib["input_ids"].shape[0]
    index = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
             "svd": "exact (torch.linalg.svd)", "calib": "test/e2e/peft/loraga/calib.npz",
             "calib_batch_size": 1, "cases": {}}
    for name, kwargs in CASES.items():
        torch.manual_seed(0)
        _, model, _ = mre.build("llama")
        lm = model.m
        targets = [(n, m) for n, m in model.named_modules()
                   if isinstance(m, torch.nn.Linear) and n.split(".")[-1] in kwargs["target_modules"]]
        lm.train()
        sums = {n: torch.zeros_like(m.weight) for n, m in targets}
        for i in range(samples):
            sample = {k: torch.from_numpy(v[i:i + 1]) for k, v in calib.items()}
            lm.zero_grad()
            lm(**sample).loss.backward()
            for n, m in targets:
                sums[n] += m.weight.grad
        r, alpha = kwargs["r"], kwargs["lora_alpha"]
        scale = alpha / math.sqrt(r) if kwargs.get("use_rslora") else alpha / r
        lr = kwargs["lora_sb_config"]["lr"]
        arrays = {}
        with torch.no_grad():
            for n, m in targets:
                delta = -lr * torch.sign(sums[n]).double()
                u, s, vh = torch.linalg.svd(delta, full_matrices=False)
                b, a, middle = u[:, :r], vh[:r], torch.diag(s[:r]) / scale
                arrays[f"{n}.delta"] = delta.float().numpy()
                arrays[f"{n}.lora_B"] = b.float().numpy()
                arrays[f"{n}.lora_A"] = a.float().numpy()
                arrays[f"{n}.lora_middle"] = middle.float().numpy()
                m.weight += (scale * b @ middle @ a).float()
            lm.eval()
            names = ["input_ids", "attention_mask"]
            arrays["logits"] = model(*[torch.from_numpy(ref[f"case1.{n}"]) for n in names])[0].numpy()
        np.savez(os.path.join(HERE, f"{name}.npz"), **arrays)
        config = dict(peft_type="LORA", init_lora_weights="lora-sb", lora_dropout=0.0,
                      bias="none", **kwargs)
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(config, f, indent=1)
            f.write("\n")
        moved = float(np.max(np.abs(arrays["logits"] - ref["case1.logits"])))
        index["cases"][name] = {"config": config, "modules": [n for n, _ in targets],
                                "logits_moved_by": moved}
        print(f"== {name}: {len(targets)} modules, logits moved by {moved:.2e} from the base's")
    with open(os.path.join(HERE, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
