"""Llama- and Qwen2-shaped models whose hidden sizes are not powers of two
(48 = 12 * 4, 80 = 20 * 4; MLP 96 = 12 * 8, 160 = 20 * 8; heads of 12 and 20),
for qopt-rotate's Hadamard rotations of other orders: tiny random configs
exported by torch's dynamo exporter, with torch's logits, in the format of
test/e2e/real (model.onnx, reference.npz with case{k}.<input> / .logits /
.logits.valid).

Regenerate (needs torch, transformers, onnx, onnxscript, numpy; CI reads the
committed outputs):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/rotate/make_rotate_models.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "real"))
import make_real_exports as R  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import transformers as T  # noqa: E402

MODELS = {
    "llama-h48": (T.LlamaConfig, T.LlamaForCausalLM, dict(hidden_size=48, intermediate_size=96)),
    "qwen2-h80": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(hidden_size=80, intermediate_size=160)),
}

for name, (cfg_cls, model_cls, kw) in MODELS.items():
    torch.manual_seed(0)
    cfg = R._llama_like(cfg_cls, **kw)
    model = R.CausalLM(model_cls(cfg)).eval()
    arch = name.split("-")[0]
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "model.onnx")
    ins, outs, dyn = R.input_spec("causal", arch, model)
    R.export(model, R.export_example("causal", arch, cfg, model), ins, outs, dyn, "dynamo", path)
    m = onnx.load(path)
    R.strip(m)
    onnx.save(m, path)  # one self-contained file
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")
    arrays = {}
    with torch.no_grad():
        for k, (desc, feeds, valid) in enumerate(R.make_cases("causal", arch, cfg, model)):
            logits = model(*(feeds[n] for n in ins))[0].numpy()
            for n in ins:
                arrays[f"case{k}.{n}"] = feeds[n].numpy()
            arrays[f"case{k}.logits"] = logits
            if valid is not None:
                arrays[f"case{k}.logits.valid"] = valid.numpy()
    np.savez_compressed(os.path.join(out, "reference.npz"), **arrays)
    print(name, os.path.getsize(path), "bytes,", len(arrays), "arrays")
