"""LoRA-SB (qoptc --lora-config with init_lora_weights "lora-sb" and
--calibration-data, batches of one sample) against the authors' procedure
in PyTorch (lorasb/, made by lorasb/make_lorasb_fixtures.py with the exact
SVD):

- per targeted module, the frozen A and B equal the reference's up to the
  sign of each singular component, the trainable middle R equals its
  diag(S_r) / scale, and scale·B·R·A equals its (relative error <= 1e-4) —
  which checks the estimated gradient's signs (a compiled gradient probe),
  the SVD and the scale;
- the compiled model's logits equal PyTorch's base model with
  W + scale·B·R·A (<= 1e-4);
- a train library from the LoRA-SB init trains the middles only, and its
  loss goes down; save_adapter refuses (PEFT has no form for the middles).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "lorasb")
MODEL = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
CALIB = os.path.join(HERE, "peft", "loraga", "calib.npz")
index = json.load(open(os.path.join(DATA, "index.json")))
failures = 0


def check(what, ok, detail=""):
    global failures
    failures += not ok
    print(f"{'ok' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")


def rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def qoptc(*args):
    return subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--calibration-data", CALIB,
                           "--calibration-batch-size", str(index["calib_batch_size"])]
                          + list(args), capture_output=True, text=True)


real = np.load(os.path.join(HERE, "real", "llama-dynamo", "reference.npz"))
with tempfile.TemporaryDirectory() as tmp:
    for case, info in index["cases"].items():
        config = os.path.join(DATA, f"{case}.json")
        lib = os.path.join(tmp, f"{case}.so")
        r = qoptc("--lora-config", config, "-o", lib)
        if r.returncode:
            check(f"{case}: qoptc", False, r.stderr[-1000:])
            continue
        ref = np.load(os.path.join(DATA, f"{case}.npz"))
        model = qopt.load(lib)
        cfg = info["config"]
        rank = cfg["r"]
        scale = cfg["lora_alpha"] / (rank ** 0.5 if cfg.get("use_rslora") else rank)
        worst_factor = worst_product = 0.0
        for module in info["modules"]:
            a = model.get_parameter(f"{module}.lora_A.weight")
            b = model.get_parameter(f"{module}.lora_B.weight")
            middle = model.get_parameter(f"{module}.lora_middle")
            ra, rb = ref[f"{module}.lora_A"], ref[f"{module}.lora_B"]
            # Each component's sign is the SVD's choice: align B's columns
            # (and A's rows with them) before comparing.
            signs = np.sign(np.sum(b * rb, axis=0))
            worst_factor = max(worst_factor, rel(b * signs, rb), rel(a * signs[:, None], ra),
                               rel(middle, ref[f"{module}.lora_middle"]))
            worst_product = max(worst_product, rel(scale * b @ middle @ a,
                                                   scale * rb @ ref[f"{module}.lora_middle"] @ ra))
        check(f"{case}: A, B and R of {len(info['modules'])} modules equal the reference's",
              worst_factor <= 1e-4, f"relative error {worst_factor:.2g}")
        check(f"{case}: scale·B·R·A equals the reference's", worst_product <= 1e-4,
              f"relative error {worst_product:.2g}")
        logits = model.run(input_ids=real["case1.input_ids"],
                           attention_mask=real["case1.attention_mask"])[0]
        err = float(np.max(np.abs(logits - ref["logits"])))
        check(f"{case}: logits equal PyTorch's with W + scale·B·R·A", err <= 1e-4,
              f"max difference {err:.2g}")
    # Training: only the middles, and the loss goes down.
    train = os.path.join(tmp, "train.so")
    r = qoptc("--lora-config", os.path.join(DATA, "lorasb-default.json"), "--train",
              "--optimizer", "adamw:lr=1e-2", "-o", train)
    if r.returncode:
        check("LoRA-SB train library", False, r.stderr[-1000:])
    else:
        t = qopt.load(train)
        trainable = sorted(p.name for p in t.parameters if p.role == "trainable")
        check("LoRA-SB trains the middles only",
              trainable and all(n.endswith(".lora_middle") for n in trainable),
              f"{len(trainable)} trainable")
        calib = dict(np.load(CALIB))
        losses = [t.train_step(**calib) for _ in range(5)]
        check("LoRA-SB train steps lower the loss", losses[-1] < losses[0],
              " -> ".join(f"{x:.4f}" for x in losses))
        try:
            t.save_adapter(os.path.join(tmp, "saved"))
            check("save_adapter of a LoRA-SB adapter refused", False)
        except ValueError as e:
            check("save_adapter of a LoRA-SB adapter refused", "no PEFT" in str(e), str(e))
print(f"lorasb: {failures} failures")
