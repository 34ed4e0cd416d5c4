"""Train steps through quantizers on the test Llama export (qoptc --train
with --graph-passes qopt-insert-lsq): PEQA (frozen int4 codes, trainable
scales per group), L4Q (LSQ of W + scale·B·A with the PEFT adapter of
llama-lora: A, B and the steps trained) and LSQ (weights and steps).

- PEQA's loss is smooth in its scales (the codes are frozen): the gradient
  along a random direction matches central finite differences of the loss;
- L4Q's and LSQ's gradients are straight-through estimates (checked against
  qopt.lsq's stated formulas in test/Training/gradients-fd.test): here every
  trainable tensor gets a finite, non-zero gradient, and 30 AdamW steps on
  the counting task (train/task) move every trained tensor and lower the
  loss (L4Q, PEQA; LSQ trains the steps alone, whose loss barely moves).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_OBJ_ROOT"], "python"))
import qopt  # noqa: E402

BIN = os.path.join(os.environ["QOPT_OBJ_ROOT"], "bin")
HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
ids = np.array([json.loads(line)["input_ids"]
                for line in open(os.path.join(HERE, "train", "task", "train.jsonl"))])
failures = 0


def check(what, ok, detail=""):
    global failures
    failures += not ok
    print(f"{what}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


CASES = {
    "PEQA": ["--graph-passes", "qopt-insert-lsq{weights=int4:group=16,asym peqa=true}"],
    "L4Q": ["--adapter", os.path.join(HERE, "train", "llama-lora"),
            "--graph-passes", "qopt-insert-lsq{weights=int4 l4q=true}"],
    "LSQ": ["--graph-passes", "qopt-insert-lsq{weights=int4:group=16}"],
}
with tempfile.TemporaryDirectory() as tmp:
    for name, extra in CASES.items():
        lib = os.path.join(tmp, f"{name}.so")
        subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--train", "--optimizer",
                        "adamw:lr=1e-2,betas=0.9/0.999,eps=1e-8,weight_decay=0.0",
                        "-o", lib, *extra], check=True)
        t = qopt.load(lib)
        batch = dict(input_ids=ids[:16], attention_mask=np.ones_like(ids[:16]))
        grads = t.gradients(**batch)
        kinds = sorted({n.rsplit(".", 1)[-1] if "lora" not in n else n.split(".")[-2]
                        for n in grads})
        finite = all(np.isfinite(g).all() for g in grads.values())
        nonzero = sum(bool(np.abs(g).max() > 0) for g in grads.values())
        check(f"{name}: {len(grads)} trainable tensors ({', '.join(kinds)}) get finite, "
              f"non-zero gradients", finite and nonzero == len(grads), f"{nonzero} non-zero")
        if name == "PEQA":
            rng = np.random.default_rng(0)
            p = sorted(grads)[0]
            s0 = t.get_parameter(p)
            # Along the gradient's signs, scaled by the scales: a change of
            # the loss well above f32's resolution.
            d = (np.sign(grads[p]) * np.abs(s0)).astype(np.float32)
            h = 2e-2
            t.set_parameter(p, s0 + h * d)
            up = t.loss(**batch)
            t.set_parameter(p, s0 - h * d)
            down = t.loss(**batch)
            t.set_parameter(p, s0)
            fd = (up - down) / (2 * h)
            an = float((grads[p].astype(np.float64) * d).sum())
            check(f"PEQA: gradient of {p} along its signs vs finite differences",
                  abs(fd - an) <= 2e-2 * abs(an) + 1e-5, f"{an:.6g} vs {fd:.6g}")
        before = {n: t.get_parameter(n) for n in grads}
        losses = []
        for step in range(30):
            rows = np.arange(16 * step, 16 * step + 16) % len(ids)
            losses.append(t.train_step(input_ids=ids[rows], attention_mask=np.ones_like(ids[rows])))
        first, last = np.mean(losses[:5]), np.mean(losses[-5:])
        moved = all(not np.array_equal(t.get_parameter(n), before[n]) for n in grads)
        if name == "LSQ":  # only the steps train: the loss barely moves
            check("LSQ: 30 AdamW steps move every step size, the loss stays finite",
                  moved and np.isfinite(losses).all(), f"loss {first:.3f} -> {last:.3f}")
        else:
            check(f"{name}: 30 AdamW steps lower the loss", moved and last < first - 0.05,
                  f"mean of the first five {first:.3f}, of the last five {last:.3f}")
print(f"train quantized: {failures} failures")
