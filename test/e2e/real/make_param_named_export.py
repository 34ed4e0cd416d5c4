"""The Llama of the real exports in a third naming style: layers known only
by their weights' initializer names (`m.model.layers.0.self_attn.q_proj.weight`,
as Optimum-style exports and graph optimizers leave them), with no module
path in node names or metadata. torch's TorchScript exporter without
constant folding keeps torch's parameter names on the initializers (the
MatMul weights behind Transpose nodes); every node name is then replaced by
an anonymous one and all metadata removed, as optimizers that rename nodes
do. Writes test/e2e/real/llama-params/model.onnx and reference.npz (the
same model and inputs as llama-dynamo, whose reference torch computed; the
script checks that torch and onnxruntime agree with it on this export).

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/real/make_param_named_export.py
"""
import os
import shutil
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_real_exports as mre  # noqa: E402

out = os.path.join(HERE, "llama-params")
os.makedirs(out, exist_ok=True)
ref_path = os.path.join(HERE, "llama-dynamo", "reference.npz")
ref = np.load(ref_path)
torch.manual_seed(0)
cfg, model, kind = mre.build("llama")
model.eval()
ins, outs, dyn = mre.input_spec(kind, "llama", model)
example = mre.export_example(kind, "llama", cfg, model)
path = os.path.join(out, "model.onnx")
torch.onnx.export(model, tuple(example[n] for n in ins), path, dynamo=False,
                  opset_version=mre.TS_OPSET, input_names=ins, output_names=outs,
                  dynamic_axes=dyn, do_constant_folding=False)
m = onnx.load(path)
mre.strip(m)
for i, node in enumerate(m.graph.node):
    node.name = f"node_{i}"
    del node.metadata_props[:]
onnx.save(m, path)
names = sorted(i.name for i in m.graph.initializer if i.name.endswith("proj.weight"))
print(len(names), "projection weights named by torch, e.g.", names[0])
session = ort.InferenceSession(path)
cases = sorted({k.split(".")[0] for k in ref.files})
for c in cases:
    feeds = {n: ref[f"{c}.{n}"] for n in ins}
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        want = model(*[torch.from_numpy(feeds[n]) for n in ins])[0].numpy()
    valid = ref[f"{c}.logits.valid"] if f"{c}.logits.valid" in ref.files else np.ones(got.shape[:2], bool)
    mask = np.broadcast_to(valid[..., None], got.shape)
    e_ort = np.max(np.abs(got - ref[f"{c}.logits"])[mask]) / np.max(np.abs(ref[f"{c}.logits"]))
    e_torch = np.max(np.abs(want - ref[f"{c}.logits"])[mask]) / np.max(np.abs(ref[f"{c}.logits"]))
    print(f"{c}: onnxruntime vs reference {e_ort:.2g}, torch vs reference {e_torch:.2g}")
    assert e_ort < 1e-4 and e_torch < 1e-5
shutil.copy(ref_path, os.path.join(out, "reference.npz"))
