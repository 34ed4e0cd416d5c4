"""The committed training references (test/e2e/train, made by
make_train_fixtures.py with PyTorch autograd + PEFT + torch.optim.AdamW)
against what issue 16's compiled train step is to compute, written here in
numpy from the definitions:

- the labels: the batch's tokens, -100 at padding, at each row's first
  token and at two more places;
- AdamW's first step (decoupled weight decay, bias correction), from the
  adapter's saved values and the recorded gradients:
  p1 = p0·(1 − lr·wd) − lr · m̂ / (√v̂ + eps), m̂ = g, v̂ = g²
  (later steps need the gradients at p1 and p2, which only the compiled
  train step will give);
- the loss falls over the three steps.

Prints one line per case and a summary."""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from checkpoints import read_safetensors  # noqa: E402

TRAIN = os.path.join(HERE, "train")
index = json.load(open(os.path.join(TRAIN, "index.json")))
adamw = index["adamw"]
lr, (b1, b2), eps, wd = adamw["lr"], adamw["betas"], adamw["eps"], adamw["weight_decay"]
failures = 0
for name, case in index["cases"].items():
    ref = np.load(os.path.join(TRAIN, name, "reference.npz"))
    saved = read_safetensors(os.path.join(TRAIN, name, "adapter_model.safetensors"))
    ids, mask, labels = ref["input_ids"], ref["attention_mask"], ref["labels"]
    masked = labels == -100
    # -100 at padding, at each row's first token (after left padding) and
    # at two more places.
    firsts = masked[np.arange(len(mask)), np.argmax(mask, axis=1)]
    labels_ok = (np.array_equal(labels[~masked], ids[~masked]) and masked[mask == 0].all()
                 and firsts.all() and masked.sum() == (mask == 0).sum() + len(mask) + 2)
    worst, missing = 0.0, []
    grads = [k[len("grad."):] for k in ref.files if k.startswith("grad.")]
    for n in grads:
        # PEFT saves DoRA's magnitude without ".weight".
        p0 = saved.get(n, saved.get(n[:-len(".weight")] if n.endswith(".weight") else n))
        if p0 is None:
            missing.append(n)
            continue
        g = ref[f"grad.{n}"].astype(np.float64)
        m_hat = g  # (1 − β1)·g / (1 − β1)
        v_hat = g * g
        want = p0.astype(np.float64) * (1 - lr * wd) - lr * m_hat / (np.sqrt(v_hat) + eps)
        got = ref[f"step1.{n}"]
        worst = max(worst, float(np.max(np.abs(got - want))))
    losses = [float(ref["loss0"])] + [float(ref[f"step{k}.loss"]) for k in range(1, index["steps"] + 1)]
    ok = (labels_ok and not missing and worst <= 1e-6 and len(grads) == case["trainable"]
          and losses[-1] < losses[0])
    print(f"{'ok' if ok else 'FAIL'} {name}: {len(grads)} trainable tensors, labels "
          f"{'as defined' if labels_ok else 'WRONG'}, AdamW step 1 within {worst:.1e} of numpy, "
          f"loss {losses[0]:.4f} -> {losses[-1]:.4f}{', missing ' + str(missing) if missing else ''}")
    failures += not ok
print(f"train fixtures: {failures} failures")
sys.exit(1 if failures else 0)
