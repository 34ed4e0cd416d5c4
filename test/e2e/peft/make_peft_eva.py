"""PEFT's EVA initialisation (init_lora_weights="eva": LoRA A = the leading
right-singular vectors of each targeted layer's inputs on calibration data,
ranks redistributed across layers by explained variance) on the Llama base
model of the real exports (test/e2e/real/llama-dynamo), as reference data
for qopt's reimplementation. It writes test/e2e/peft/eva/:

  calib.npz        the calibration data (np.savez, stored entries):
                   input_ids, attention_mask, labels (int64, [N, S]);
                   right-padded samples (attention_mask 0, input_ids the pad
                   id 0), labels = input_ids with -100 at padded positions
                   and at the first 2 positions (a prompt) of every sample.
                   input_ids / attention_mask are the ONNX model's inputs;
                   labels only masks tokens out of the SVD.
  <case>/          pm.save_pretrained after initialize_lora_eva_weights:
                   adapter_config.json (rank_pattern / alpha_pattern /
                   target_modules as EVA rewrote them) and
                   adapter_model.safetensors (A = EVA components, B = 0)
  <case>.npz       (np.savez) for every LoRA layer PEFT kept:
                   <module>.lora_A [rank, in], <module>.rank (int64),
                   <module>.alpha (float64: the layer's lora_alpha after
                   PEFT's adjustment); logits: the PEFT model's on case1 of
                   the export's reference.npz (B = 0: the base model's)
  index.json       versions; per case the LoraConfig kwargs, batch size, the
                   number of forward passes PEFT made in
                   initialize_lora_eva_weights (the first one only hashes
                   layer inputs to find layers sharing an input), the rank
                   distribution (0 = layer dropped) and alphas, the groups
                   of layers sharing an input, each SVD hook's final state
                   (n_components, n_samples_seen, explained_variance_ratio,
                   converged), and the ranks a stable argsort would give:
                   PEFT ranks by torch.argsort(descending=True), which is
                   not stable, and layers sharing an input have equal
                   explained variances, so a tie at the rank budget's
                   cut-off splits between them in torch's order
                   (eva-default: layer 0's k_proj / v_proj). On the CPU
                   that order is std::sort's with a ">" comparator, which
                   qopt uses too.

Module names are those of the other fixtures of this folder: the model is
make_real_exports.build("llama")'s CausalLM wrapper, so PEFT names layers
m.model.layers.<i>.self_attn.q_proj etc. (safetensors keys
base_model.model.m.model.layers...).

The calibration batches are consecutive samples of calib.npz in order
(batch size per case, the last batch may be smaller), dicts with input_ids,
attention_mask and labels; PEFT cycles over them until every layer's
components have converged. forward_fn drops labels (the model does not
take them; PEFT's prepare_model_inputs_fn reads them for its label mask).

Exact SVD: PEFT's SVDHook builds IncrementalPCA(..., lowrank=True,
lowrank_seed=42), i.e. torch.svd_lowrank, a randomized SVD that cannot be
reproduced outside torch. This script replaces peft.tuners.lora.eva's
IncrementalPCA by a subclass that forces lowrank=False (torch.linalg.svd);
everything else is PEFT's own code. qopt computes EVA with the exact SVD, as
it does for pissa_niter_N.

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/peft/make_peft_eva.py
"""
import collections
import dataclasses
import inspect
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
import transformers
from peft.tuners.lora import eva as peft_eva

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real")
sys.path.insert(0, REAL)
import make_real_exports as mre  # noqa: E402

OUT = os.path.join(HERE, "eva")
N, S = 6, 8  # calibration samples, tokens per sample
PAD = {1: 2, 4: 3}  # sample -> trailing padded tokens
PROMPT = 2  # leading tokens of every sample with label -100
MAX_FORWARDS = 20000  # give up if PEFT's loop does not converge

ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
CASES = {
    "eva-default": (2, dict(r=2, lora_alpha=4, target_modules=ALL, init_lora_weights="eva",
                            eva_config=dict())),
    "eva-whiten": (3, dict(r=3, lora_alpha=6, target_modules=["q_proj", "o_proj", "down_proj"],
                           init_lora_weights="eva",
                           eva_config=dict(rho=1.5, tau=0.95, use_label_mask=False, whiten=True,
                                           adjust_scaling_factors=False),
                           use_rslora=True)),
    # Whitening where layers share an input: PEFT divides the shared
    # components in place once per layer of the group.
    "eva-whiten-shared": (2, dict(r=2, lora_alpha=4,
                                  target_modules=["q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"],
                                  init_lora_weights="eva",
                                  eva_config=dict(tau=0.95, whiten=True))),
}


# --- exact SVD in PEFT's incremental PCA ----------------------------------
assert "lowrank=True" in inspect.getsource(peft_eva.SVDHook.__init__), "PEFT's SVDHook changed"
_PeftIncrementalPCA = peft_eva.IncrementalPCA
EXACT_PCAS = []


class ExactIncrementalPCA(_PeftIncrementalPCA):
    def __init__(self, *args, **kwargs):
        kwargs["lowrank"] = False
        super().__init__(*args, **kwargs)
        EXACT_PCAS.append(self)


peft_eva.IncrementalPCA = ExactIncrementalPCA

# Only records PEFT's SVD hooks (name -> hook) for index.json.
SVD_HOOKS = {}


class RecordedSVDHook(peft_eva.SVDHook):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        SVD_HOOKS[self.name] = self


peft_eva.SVDHook = RecordedSVDHook
EQUAL_INPUTS = []  # PEFT's groups of layers with equal inputs (first: the one with the SVD hook)
_peft_find_equal_values = peft_eva.find_equal_values


def recorded_find_equal_values(dictionary):
    groups = _peft_find_equal_values(dictionary)
    EQUAL_INPUTS.extend(groups.values())
    return groups


peft_eva.find_equal_values = recorded_find_equal_values


def rank_distribution(hooks, equal_inputs_map, rank_budget, stable):
    """PEFT's _get_rank_distribution (a nested function of _get_eva_state_dict)
    on the final hooks, with torch's default (unstable) or a stable argsort."""
    layer_hook_map = {**{k: k for k in hooks}, **equal_inputs_map}
    exp_vars = {k: h.svd.explained_variance_ratio_[: h.n_components] for k, h in hooks.items()}
    keys, values = zip(*[(k, c) for k, name in layer_hook_map.items() for c in exp_vars[name]])
    idx = torch.stack(values).argsort(descending=True, **({"stable": True} if stable else {}))
    counts = collections.Counter([keys[i] for i in idx[:rank_budget]])
    counts = {k: counts.get(k, 0) for k in layer_hook_map}
    for k, k_hook in equal_inputs_map.items():
        if counts[k_hook] < counts[k]:
            counts[k_hook], counts[k] = counts[k], counts[k_hook]
    return counts


# --- calibration data -------------------------------------------------------
def make_calib(cfg):
    assert S <= cfg.max_position_embeddings
    rng = np.random.default_rng(20240517)
    ids = rng.integers(0, cfg.vocab_size, size=(N, S), dtype=np.int64)
    mask = np.ones((N, S), dtype=np.int64)
    for i, p in PAD.items():
        mask[i, S - p:] = 0
    ids = np.where(mask == 1, ids, mre.pad_id(cfg)).astype(np.int64)
    labels = np.where(mask == 1, ids, -100).astype(np.int64)
    labels[:, :PROMPT] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def batches(calib, bs):
    return [{k: torch.from_numpy(v[i:i + bs]) for k, v in calib.items()} for i in range(0, N, bs)]


def main():
    ref = np.load(os.path.join(REAL, "llama-dynamo", "reference.npz"))
    meta = json.load(open(os.path.join(REAL, "llama-dynamo", "meta.json")))
    names = [i["name"] for i in meta["inputs"]]
    assert names == ["input_ids", "attention_mask"], names

    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    cfg, _, _ = mre.build("llama")
    calib = make_calib(cfg)
    np.savez(os.path.join(OUT, "calib.npz"), **calib)

    index = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                          "peft": peft.__version__},
             "svd": "exact (PEFT's IncrementalPCA with lowrank=False)",
             "calib": {"samples": N, "tokens": S, "padded": {str(k): v for k, v in PAD.items()},
                       "prompt_tokens_with_label_-100": PROMPT},
             "cases": {}}
    for name, (bs, kwargs) in CASES.items():
        torch.manual_seed(0)
        _, model, _ = mre.build("llama")
        model.eval()
        with torch.no_grad():
            base = model(*[torch.from_numpy(ref[f"case0.{n}"]) for n in names])[0].numpy()
        err = np.max(np.abs(base - ref["case0.logits"]))
        assert err < 1e-5, f"{name}: the rebuilt base model differs from the export ({err})"

        config = dict(kwargs, eva_config=peft.EvaConfig(**kwargs["eva_config"]))
        pm = peft.get_peft_model(model, peft.LoraConfig(**config))
        targeted = [n for n, m in pm.base_model.model.named_modules()
                    if isinstance(m, peft.tuners.lora.LoraLayer)]
        accepted = set(inspect.signature(pm.base_model.model.forward).parameters)
        forwards = [0]

        def forward_fn(model, inputs):
            forwards[0] += 1
            if forwards[0] > MAX_FORWARDS:
                raise RuntimeError(f"{name}: EVA did not converge in {MAX_FORWARDS} forward passes")
            return model(**{k: v for k, v in inputs.items() if k in accepted})

        n_pcas = len(EXACT_PCAS)
        SVD_HOOKS.clear()
        del EQUAL_INPUTS[:]
        peft.initialize_lora_eva_weights(pm, dataloader=batches(calib, bs), forward_fn=forward_fn,
                                         show_progress_bar=False)
        assert len(EXACT_PCAS) > n_pcas, "PEFT did not use the patched IncrementalPCA"

        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        pm.save_pretrained(folder)
        for extra in os.listdir(folder):
            if extra not in ("adapter_config.json", "adapter_model.safetensors"):
                os.remove(os.path.join(folder, extra))

        arrays, ranks, alphas = {}, {}, {}
        kept = {n: m for n, m in pm.base_model.model.named_modules()
                if isinstance(m, peft.tuners.lora.LoraLayer)}
        for mod_name in targeted:
            mod = kept.get(mod_name)
            if mod is None:
                ranks[mod_name] = 0
                continue
            a = mod.lora_A["default"].weight.detach().numpy()
            assert not mod.lora_B["default"].weight.detach().any()
            ranks[mod_name] = int(mod.r["default"])
            alphas[mod_name] = float(mod.lora_alpha["default"])
            assert a.shape[0] == ranks[mod_name]
            arrays[f"{mod_name}.lora_A"] = a
            arrays[f"{mod_name}.rank"] = np.array(ranks[mod_name], dtype=np.int64)
            arrays[f"{mod_name}.alpha"] = np.array(alphas[mod_name], dtype=np.float64)
        pm.eval()
        with torch.no_grad():
            arrays["logits"] = pm(*[torch.from_numpy(ref[f"case1.{n}"]) for n in names])[0].numpy()
        err = np.max(np.abs(arrays["logits"] - ref["case1.logits"]))
        assert err < 1e-5, f"{name}: logits differ from the base model's ({err})"
        np.savez(os.path.join(OUT, f"{name}.npz"), **arrays)

        budget = kwargs["r"] * len(targeted)
        assert sum(ranks.values()) == budget
        # Check the recorded hooks reproduce PEFT's ranks; with a stable sort
        # ties (layers sharing an input have equal explained variances) may
        # split differently.
        short = lambda n: n.replace("base_model.model.", "", 1)  # noqa: E731
        equal = {short(n): short(g[0]) for g in EQUAL_INPUTS for n in g[1:]}
        hooks = {short(n): h for n, h in SVD_HOOKS.items()}
        assert rank_distribution(hooks, equal, budget, stable=False) == {
            n: ranks[n] for n in {**hooks, **equal}}
        stable = rank_distribution(hooks, equal, budget, stable=True)
        index["cases"][name] = {
            "config": dict(kwargs, eva_config=dataclasses.asdict(config["eva_config"])),
            "batch_size": bs, "forward_passes": forwards[0],
            "rank_budget": budget, "ranks": ranks, "alphas": alphas,
            "equal_inputs": equal,
            "ranks_with_stable_argsort": {n: stable[n] for n in targeted},
            "svd": {n: {"n_components": h.n_components,
                        "n_samples_seen": int(h.svd.n_samples_seen_),
                        "explained_variance_ratio": h.svd.explained_variance_ratio_.tolist(),
                        "converged": h.converged.tolist()} for n, h in hooks.items()}}
        print(f"== {name}: {forwards[0]} forward passes (batch size {bs})")
        for mod_name in targeted:
            print(f"   {mod_name}: rank {ranks[mod_name]}"
                  + (f", alpha {alphas[mod_name]:g}" if mod_name in alphas else " (dropped)")
                  + (f" (input of {equal[mod_name]})" if mod_name in equal else "")
                  + (f" [stable argsort: {stable[mod_name]}]" if stable[mod_name] != ranks[mod_name]
                     else ""))
    with open(os.path.join(OUT, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
