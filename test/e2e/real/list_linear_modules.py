"""Writes test/e2e/real/linear_modules.json: for every architecture of
make_real_exports.py, the module paths of its linear layers as torch names
them (`named_modules()` of the exported wrapper: torch.nn.Linear and
transformers' Conv1D, the layers PEFT adapts). The import test compares the
`module` of every raised `qopt.linear` against this list.

Regenerate (needs torch and transformers; CI reads the committed JSON):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/real/list_linear_modules.py
"""
import json
import os
import sys

import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_real_exports as mre  # noqa: E402

linear_types = (torch.nn.Linear, transformers.pytorch_utils.Conv1D)
result = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
          "modules": {}}
for arch in mre.ARCHS:
    torch.manual_seed(0)
    _, model, _ = mre.build(arch)
    result["modules"][arch] = [name for name, module in model.named_modules()
                               if isinstance(module, linear_types)]
with open(os.path.join(mre.HERE, "linear_modules.json"), "w") as f:
    json.dump(result, f, indent=1)
    f.write("\n")
