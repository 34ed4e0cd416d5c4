"""PEFT adapters for the real exports (test/e2e/real), made by PEFT itself,
with the outputs PEFT computes with each adapter active.

For each case below this rebuilds the exact base model of a real export
(same seed as make_real_exports.py: its outputs are checked against the
committed reference first), wraps it with peft.get_peft_model(LoraConfig),
gives every adapter tensor random non-zero values (B included; DoRA
magnitudes perturbed, as after training), saves it with save_pretrained,
and runs it on the real export's test inputs. It writes
test/e2e/peft/<case>/:
  adapter_config.json, adapter_model.safetensors   PEFT's own files
  reference.npz    case{k}.<input> and case{k}.<output> (+ .valid masks)
                   with the adapter active; base.<output> for case0 without
and test/e2e/peft/index.json (case -> real export, PEFT/torch versions).
test/e2e/peft-adapters.test compiles the exports with qoptc --adapter
(unmerged and --merge) and compares.

Regenerate (needs torch, transformers, peft; CI reads the committed files):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/peft/make_peft_adapters.py
"""
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real")
sys.path.insert(0, REAL)
import make_real_exports as mre  # noqa: E402
import peft_cpu  # noqa: E402

peft_cpu.patch_loftq()

CASES = {
    "llama-lora": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])),
    "llama-dora-rslora": ("llama", dict(r=4, lora_alpha=16, target_modules="all-linear",
                                        use_dora=True, use_rslora=True, lora_dropout=0.1)),
    "llama-rank-pattern": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "o_proj", "up_proj"],
                                         rank_pattern={"o_proj": 2}, alpha_pattern={"up_proj": 2})),
    # Adapters for one compiled model's run-time slots (q_proj, v_proj,
    # down_proj up to rank 4): a smaller rank, rsLoRA, a subset of layers.
    "llama-slot-small": ("llama", dict(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"])),
    "llama-slot-rslora": ("llama", dict(r=3, lora_alpha=6, target_modules=["down_proj", "v_proj"],
                                        use_rslora=True)),
    "llama-slot-alphas": ("llama", dict(r=2, lora_alpha=4, target_modules=["q_proj", "down_proj"],
                                        alpha_pattern={"down_proj": 16,
                                                       r"layers\.1\.self_attn\.q_proj": 1})),
    # PiSSA / OLoRA adapters "after training" (factors moved off their
    # initial values): saved plainly (init_lora_weights names the init;
    # PEFT recomputes the residual from the original weights on loading),
    # and PiSSA with a randomized SVD in PEFT's converted form
    # (save_pretrained(path_initial_model_for_weight_conversion=...): a
    # rank-2r LoRA for the original weights).
    "llama-pissa": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"],
                                  init_lora_weights="pissa")),
    "llama-olora-rslora": ("llama", dict(r=2, lora_alpha=4, target_modules=["k_proj", "o_proj"],
                                         init_lora_weights="olora", use_rslora=True)),
    # LoftQ (2 iterations): the base weights become their NF4 quantization,
    # which qopt recomputes on loading as PEFT does.
    "llama-loftq": ("llama", dict(r=4, lora_alpha=4, target_modules=["q_proj", "o_proj", "gate_proj"],
                                  init_lora_weights="loftq",
                                  loftq_config={"loftq_bits": 4, "loftq_iter": 2})),
    "llama-pissa-converted": ("llama", dict(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                                            init_lora_weights="pissa_niter_4")),
    # LoRA on embeddings (PEFT's lora.Embedding: lora_embedding_A / _B) beside
    # linear layers; Gemma scales the lookup by sqrt(hidden) and ties its
    # head to the table; GPT-2 adapts the token and the position tables.
    "llama-embed": ("llama", dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj", "v_proj"],
                                  rank_pattern={"embed_tokens": 2})),
    "gemma-embed-rslora": ("gemma", dict(r=4, lora_alpha=4, target_modules=["embed_tokens", "o_proj"],
                                         use_rslora=True)),
    "gpt2-embed": ("gpt2", dict(r=2, lora_alpha=4, target_modules=["wte", "wpe", "c_attn"],
                                fan_in_fan_out=True)),
    # RandLoRA (peft_type RANDLORA): shared random bases saved with every
    # layer, trained lambda / gamma; layers wider than tall and taller than
    # wide (the scaled basis goes on the smaller side).
    "llama-randlora": ("llama", dict(randlora=True, r=8, randlora_alpha=64,
                                     target_modules=["q_proj", "k_proj", "up_proj", "down_proj"])),
    "gpt2-lora": ("gpt2", dict(r=4, lora_alpha=8, target_modules=["c_attn", "c_fc"],
                               fan_in_fan_out=True)),
    "bert-lora": ("bert", dict(r=2, lora_alpha=4, target_modules=["query", "value"])),
}


def inputs_of(arch):
    ref = np.load(os.path.join(REAL, f"{arch}-dynamo", "reference.npz"))
    meta = json.load(open(os.path.join(REAL, f"{arch}-dynamo", "meta.json")))
    names = [i["name"] for i in meta["inputs"]]
    out = meta["outputs"][0]["name"]
    cases = sorted({k.split(".")[0] for k in ref.files})
    return ref, names, out, cases


# Named cases only (python make_peft_adapters.py llama-embed ...): the others'
# folders and index entries stay as they are.
only = sys.argv[1:]
unknown = [c for c in only if c not in CASES]
assert not unknown, f"unknown cases {unknown}"
index = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__}, "cases": {}}
if only:
    with open(os.path.join(HERE, "index.json")) as f:
        old = json.load(f)
    assert old["versions"] == index["versions"], "other versions made the other cases"
    index["cases"] = {c: old["cases"][c] for c in CASES if c in old["cases"]}
for name, (arch, kwargs) in CASES.items():
    if only and name not in only:
        continue
    ref, names, out, cases = inputs_of(arch)
    torch.manual_seed(0)
    _, model, _ = mre.build(arch)
    model.eval()
    with torch.no_grad():
        feeds = {n: torch.from_numpy(ref[f"case0.{n}"]) for n in names}
        base = model(*[feeds[n] for n in names])[0].numpy()
    err = np.max(np.abs(base - ref[f"case0.{out}"]))
    assert err < 1e-5, f"{name}: the rebuilt base model differs from the export ({err})"
    principal = "init_lora_weights" in kwargs  # PiSSA / OLoRA
    if kwargs.get("randlora"):
        config = {k: v for k, v in kwargs.items() if k != "randlora"}
        pm = peft.get_peft_model(model, peft.RandLoraConfig(**config))
    else:
        config = dict(kwargs) if principal else dict(init_lora_weights=False, **kwargs)
        pm = peft.get_peft_model(model, peft.LoraConfig(**config))
    folder = os.path.join(HERE, name)
    shutil.rmtree(folder, ignore_errors=True)
    converted = name.endswith("-converted")
    initial = os.path.join(folder + "-tmp", "initial")
    if converted:
        # PEFT's recipe: save the initial adapter with init_lora_weights=True.
        pm.peft_config["default"].init_lora_weights = True
        pm.save_pretrained(initial)
        pm.peft_config["default"].init_lora_weights = kwargs["init_lora_weights"]
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for pname, p in pm.named_parameters():
            if principal and ("lora_A" in pname or "lora_B" in pname):
                p.add_(torch.randn(p.shape, generator=gen) * 0.05 * p.abs().mean())
            elif ("lora_A" in pname or "lora_B" in pname or "lora_embedding_" in pname
                  or "randlora_lambda" in pname or "randlora_gamma" in pname):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif "lora_magnitude_vector" in pname:
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=gen))
    pm.eval()
    if converted:
        pm.save_pretrained(folder, path_initial_model_for_weight_conversion=initial)
        shutil.rmtree(folder + "-tmp")
    else:
        pm.save_pretrained(folder)
    for extra in os.listdir(folder):
        if extra not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(folder, extra))
    result = {f"base.{out}": base}
    with torch.no_grad():
        for c in cases:
            feeds = [torch.from_numpy(ref[f"{c}.{n}"]) for n in names]
            result[f"{c}.{out}"] = pm(*feeds)[0].numpy()
            for n in names:
                result[f"{c}.{n}"] = ref[f"{c}.{n}"]
            if f"{c}.{out}.valid" in ref.files:
                result[f"{c}.{out}.valid"] = ref[f"{c}.{out}.valid"]
    np.savez_compressed(os.path.join(folder, "reference.npz"), **result)
    change = np.max(np.abs(result[f"case0.{out}"] - base)) / np.max(np.abs(base))
    index["cases"][name] = {"export": arch, "output": out, "inputs": names,
                            "config": kwargs, "relative_change_by_adapter": float(change)}
    print(f"{name}: adapter changes the output by {change:.3g} (relative)")
index["cases"] = {c: index["cases"][c] for c in CASES if c in index["cases"]}
with open(os.path.join(HERE, "index.json"), "w") as f:
    json.dump(index, f, indent=1)
    f.write("\n")
