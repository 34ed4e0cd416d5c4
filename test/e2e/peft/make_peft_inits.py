"""PEFT's own initialisations of adapters that depend on the base weight
(PiSSA, OLoRA, LoftQ; with DoRA), on the Llama base model of the real
exports: for each case the factors PEFT computes and the base weights it
leaves, in test/e2e/peft/inits/<case>.npz (keys <module>.lora_A,
<module>.lora_B, <module>.base, <module>.magnitude for DoRA; for inits
that change the outputs, as LoftQ does, also logits: the PEFT model's on
the export's case1 inputs), and inits/index.json with the configs.
test/e2e/peft-inits.test checks qopt-insert-lora against them.

PEFT 0.21's loftq_init runs on "cuda" or "xpu" only: peft_cpu.py runs its
very source on the CPU.

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/peft/make_peft_inits.py
"""
import json
import os
import sys

import numpy as np
import peft
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "real"))
import make_real_exports as mre  # noqa: E402
import peft_cpu  # noqa: E402

CASES = {
    "pissa": dict(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights="pissa"),
    "pissa-rslora-dora": dict(r=3, lora_alpha=6, target_modules=["v_proj", "up_proj"],
                              init_lora_weights="pissa", use_rslora=True, use_dora=True),
    "olora": dict(r=4, lora_alpha=16, target_modules=["k_proj", "o_proj"], init_lora_weights="olora"),
    "loftq": dict(r=4, lora_alpha=8, target_modules=["q_proj", "up_proj"], init_lora_weights="loftq",
                  loftq_config={"loftq_bits": 4, "loftq_iter": 1}),
    "loftq-iter3-rslora-dora": dict(r=2, lora_alpha=4, target_modules=["v_proj", "down_proj"],
                                    init_lora_weights="loftq", use_rslora=True, use_dora=True,
                                    loftq_config={"loftq_bits": 4, "loftq_iter": 3}),
}

peft_cpu.patch_loftq()
ref = np.load(os.path.join(HERE, "..", "real", "llama-dynamo", "reference.npz"))
out_dir = os.path.join(HERE, "inits")
os.makedirs(out_dir, exist_ok=True)
index = {"versions": {"torch": torch.__version__, "peft": peft.__version__}, "cases": {}}
for name, kwargs in CASES.items():
    torch.manual_seed(0)
    _, model, _ = mre.build("llama")
    pm = peft.get_peft_model(model, peft.LoraConfig(**kwargs))
    arrays = {}
    if kwargs["init_lora_weights"] == "loftq":
        pm.eval()
        with torch.no_grad():
            arrays["logits"] = pm(torch.from_numpy(ref["case1.input_ids"]),
                                  torch.from_numpy(ref["case1.attention_mask"]))[0].numpy()
    for mod_name, mod in pm.base_model.model.named_modules():
        if isinstance(mod, peft.tuners.lora.LoraLayer):
            arrays[f"{mod_name}.lora_A"] = mod.lora_A["default"].weight.detach().numpy()
            arrays[f"{mod_name}.lora_B"] = mod.lora_B["default"].weight.detach().numpy()
            arrays[f"{mod_name}.base"] = mod.get_base_layer().weight.detach().numpy()
            if mod.use_dora["default"]:
                arrays[f"{mod_name}.magnitude"] = (
                    mod.lora_magnitude_vector["default"].weight.detach().numpy())
    np.savez_compressed(os.path.join(out_dir, f"{name}.npz"), **arrays)
    index["cases"][name] = kwargs
    print(name, sorted(k for k in arrays if k.endswith(".lora_A")))
with open(os.path.join(out_dir, "index.json"), "w") as f:
    json.dump(index, f, indent=1)
    f.write("\n")
