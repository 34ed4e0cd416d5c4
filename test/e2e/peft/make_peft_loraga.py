"""PEFT's LoRA-GA initialisation (preprocess_loraga + init_lora_weights=
"lora_ga": the gradient of the loss with respect to each targeted weight,
averaged over the calibration batches, and its top 2r singular components
split between A and B) on the test Llama, as references for qopt's
reimplementation (qoptc --lora-config with init_lora_weights "lora_ga" and
--calibration-data). It writes test/e2e/peft/loraga/:

  calib.npz        input_ids, attention_mask, labels (6 samples of 12
                   tokens, one right-padded; labels -100 at padding and at
                   the first two tokens), the calibration data
  <case>.json      the case's adapter_config.json (as qoptc --lora-config
                   reads it)
  <case>.npz       per targeted module (PEFT's name without
                   base_model.model.): <module>.grad (out x in, the
                   estimated gradient), <module>.lora_A, <module>.lora_B,
                   <module>.weight (the residual base weight PEFT leaves);
                   logits of the PEFT model on the export's case1 (equal to
                   the base model's: the residual plus the adapter is W)
  index.json       versions, cases, batch size

PEFT computes the components with torch.svd_lowrank (randomized, q = 4r,
4 power iterations), which is not reproducible outside torch; this script
replaces it with the exact SVD (torch.linalg.svd), which qopt computes.

Regenerate (needs torch, transformers, peft; CI reads the committed files):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/peft/make_peft_loraga.py [CASE…]

With case names, only those cases are made again (index.json keeps the
others).
"""
import json
import os
import sys

import numpy as np
import peft
import torch
import transformers
from peft.tuners.lora import layer as peft_layer

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real")
sys.path.insert(0, REAL)
import make_real_exports as mre  # noqa: E402

OUT = os.path.join(HERE, "loraga")
N, S, BATCH = 6, 12, 2
TARGETS = ["q_proj", "v_proj", "down_proj"]
CASES = {
    "loraga-default": dict(r=2, lora_alpha=4, target_modules=TARGETS,
                           lora_ga_config=dict()),
    "loraga-a2rbr-gd-rslora": dict(r=3, lora_alpha=6, target_modules=["k_proj", "o_proj", "up_proj"],
                                   use_rslora=True,
                                   lora_ga_config=dict(direction="A2rBr", scale="gd_scale")),
    "loraga-arbr-unit": dict(r=2, lora_alpha=8, target_modules=TARGETS,
                             lora_ga_config=dict(direction="ArBr", scale="unit")),
    # B scaled by W's top singular value over its own (PEFT estimates W's
    # with torch.svd_lowrank too, made exact here).
    "loraga-weight-svd": dict(r=2, lora_alpha=4, target_modules=TARGETS,
                              lora_ga_config=dict(scale="weight_svd")),
}


def exact_svd_lowrank(a, q=None, niter=2, M=None):
    """torch.svd_lowrank's (U, S, V), from the exact SVD."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    return u, s, vh.T


def make_calib(cfg):
    rng = np.random.default_rng(20241205)
    ids = rng.integers(0, cfg.vocab_size, size=(N, S), dtype=np.int64)
    mask = np.ones((N, S), dtype=np.int64)
    mask[3, S - 4:] = 0
    ids = np.where(mask == 1, ids, mre.pad_id(cfg)).astype(np.int64)
    labels = np.where(mask == 1, ids, -100).astype(np.int64)
    labels[:, :2] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def main():
    assert "svd_lowrank" in open(peft_layer.__file__).read(), "PEFT's lora_ga_init changed"
    peft_layer.torch.svd_lowrank = exact_svd_lowrank
    ref = np.load(os.path.join(REAL, "llama-dynamo", "reference.npz"))
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    cfg, _, _ = mre.build("llama")
    calib = make_calib(cfg)
    if not sys.argv[1:]:
        np.savez(os.path.join(OUT, "calib.npz"), **calib)
    else:  # the kept cases were made on the committed data
        kept = np.load(os.path.join(OUT, "calib.npz"))
        assert all(np.array_equal(kept[k], v) for k, v in calib.items())
    index = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__},
             "svd": "exact (torch.svd_lowrank replaced by torch.linalg.svd)",
             "calib": {"samples": N, "tokens": S, "batch_size": BATCH}, "cases": {}}
    only = set(sys.argv[1:])
    if only:
        with open(os.path.join(OUT, "index.json")) as f:
            kept = json.load(f)
        assert kept["versions"] == index["versions"], "other versions made the kept fixtures"
        index = kept
    for name, kwargs in CASES.items():
        if only and name not in only:
            continue
        torch.manual_seed(0)
        _, model, _ = mre.build("llama")
        lm = model.m
        config = peft.LoraConfig(init_lora_weights="lora_ga",
                                 **dict(kwargs, lora_ga_config=peft.LoraGAConfig(
                                     **kwargs["lora_ga_config"])))

        def train_step():
            for i in range(0, N, BATCH):
                batch = {k: torch.from_numpy(v[i:i + BATCH]) for k, v in calib.items()}
                lm(**batch).loss.backward()

        peft.preprocess_loraga(model, config, train_step)
        grads = {n: m._peft_loraga_grad.detach().numpy().copy()
                 for n, m in model.named_modules() if hasattr(m, "_peft_loraga_grad")}
        pm = peft.get_peft_model(model, config)
        arrays = {}
        for n, m in pm.base_model.model.named_modules():
            if isinstance(m, peft.tuners.lora.LoraLayer):
                arrays[f"{n}.grad"] = grads[n]
                arrays[f"{n}.lora_A"] = m.lora_A["default"].weight.detach().numpy()
                arrays[f"{n}.lora_B"] = m.lora_B["default"].weight.detach().numpy()
                arrays[f"{n}.weight"] = m.get_base_layer().weight.detach().numpy()
        pm.eval()
        names = ["input_ids", "attention_mask"]
        with torch.no_grad():
            arrays["logits"] = pm(*[torch.from_numpy(ref[f"case1.{n}"]) for n in names])[0].numpy()
        err = float(np.max(np.abs(arrays["logits"] - ref["case1.logits"])))
        assert err < 1e-4, f"{name}: logits differ from the base model's ({err})"
        np.savez(os.path.join(OUT, f"{name}.npz"), **arrays)
        saved = dict(peft_type="LORA", init_lora_weights="lora_ga", lora_dropout=0.0,
                     bias="none", **kwargs)
        with open(os.path.join(OUT, f"{name}.json"), "w") as f:
            json.dump(saved, f, indent=1)
            f.write("\n")
        index["cases"][name] = {"config": saved, "modules": sorted(grads),
                                "logits_vs_base": err}
        print(f"== {name}: {len(grads)} modules, logits {err:.1e} from the base model's")
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
