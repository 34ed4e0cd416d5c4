"""Writes test/e2e/real/peft_selections.json: for LoraConfig selections on
the architectures of make_real_exports.py, the modules PEFT itself puts an
adapter on, with their r and alpha (get_peft_model on the exported wrapper,
whose module names are the exports' `m.…`; for "all-linear", which leaves
out a PreTrainedModel's output head, on the Hugging Face model it wraps as
`m`). A configuration PEFT refuses (no module matches) is recorded as an
error. test/e2e/peft-selection.test checks that qopt selects the same layers
of the ONNX exports.

Regenerate (needs torch, transformers and peft; CI reads the committed JSON):

  /work/fixtures-venv/bin/pip install peft
  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/real/peft_selections.py
"""
import json
import os
import sys

import peft
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_real_exports as mre  # noqa: E402

# Per architecture: its attention / MLP names, so that every kind of
# selection (list, suffix, regex, all-linear, exclusion, layer indices,
# rank and alpha patterns) is tried on each.
NAMES = {
    "llama": ("q_proj", "v_proj", "down_proj"),
    "qwen2": ("q_proj", "v_proj", "down_proj"),
    "phi3": ("qkv_proj", "o_proj", "down_proj"),
    "gpt2": ("c_attn", "c_proj", "c_fc"),
    "bert": ("query", "value", "dense"),
    "distilbert": ("q_lin", "v_lin", "lin2"),
    "t5-encoder": ("q", "v", "wo"),
    "whisper-encoder": ("q_proj", "v_proj", "fc2"),
    "vit": ("q_proj", "v_proj", "fc2"),
}


def configs(arch):
    a, b, c = NAMES[arch]
    return [
        {"target_modules": [a, b]},
        {"target_modules": ["no_such_layer"]},
        {"target_modules": "all-linear"},
        {"target_modules": "all-linear", "exclude_modules": [c]},
        {"target_modules": rf".*\.1\..*({a}|{c})"},
        {"target_modules": [a, b, c], "layers_to_transform": [1]},
        {"target_modules": [a, b, c], "layers_to_transform": 0,
         "layers_pattern": {"gpt2": "h", "t5-encoder": "block", "bert": "layer",
                            "distilbert": "layer"}.get(arch, "layers")},
        {"target_modules": [a, c], "r": 4, "rank_pattern": {rf"^.*\.0\..*{a}": 2},
         "alpha_pattern": {c: 32}},
    ]


result = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                       "peft": peft.__version__}, "cases": []}
for arch in NAMES:
    torch.manual_seed(0)
    _, wrapper, _ = mre.build(arch)
    for kwargs in configs(arch):
        all_linear = kwargs["target_modules"] == "all-linear"
        model = wrapper.m if all_linear else wrapper
        prefix = "m." if all_linear else ""
        cfg = peft.LoraConfig(**kwargs)
        try:
            peft_model = peft.get_peft_model(model, cfg)
        except ValueError as e:
            result["cases"].append({"arch": arch, "config": kwargs, "error": str(e)})
            continue
        targeted = {}
        for name, module in peft_model.base_model.model.named_modules():
            if isinstance(module, peft.tuners.lora.LoraLayer):
                targeted[prefix + name] = {"r": module.r["default"],
                                         "alpha": module.lora_alpha["default"]}
        result["cases"].append({"arch": arch, "config": kwargs, "targeted": targeted})
        peft_model.unload()  # back to the plain model for the next config
with open(os.path.join(mre.HERE, "peft_selections.json"), "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
print(f"{len(result['cases'])} cases")
