"""The training interface users drive from Python, on a library compiled
with `qoptc --train` (all three entries) for the test Llama export and the
llama-lora fixture's PEFT adapter (references: PyTorch + PEFT +
torch.optim.AdamW, test/e2e/train/):

- entries train_step / eval_step / gradients in one library;
- t.loss and t.gradients (keyed by PEFT's names without base_model.model.)
  against PyTorch, parameters untouched by both;
- three t.train_step calls against three AdamW steps;
- t.save_checkpoint after step 1, steps 2 and 3, t.load_checkpoint, steps 2
  and 3 again: the same losses and parameters bit for bit;
- gradient accumulation: t.accumulate sums a micro-batch's gradients,
  t.train_step then takes numpy's AdamW step with their mean;
- t.save_adapter: PEFT's config and tensor names, the trained values; the
  saved adapter compiled for inference gives t.loss's loss.
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
CASE = os.path.join(HERE, "train", "llama-lora")
index = json.load(open(os.path.join(HERE, "train", "index.json")))
adamw = index["adamw"]
OPTIMIZER = (f"adamw:lr={adamw['lr']},betas={adamw['betas'][0]}/{adamw['betas'][1]},"
             f"eps={adamw['eps']},weight_decay={adamw['weight_decay']}")
ref = np.load(os.path.join(CASE, "reference.npz"))
batch = dict(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
             labels=ref["labels"])
failures = 0


def check(what, ok, detail=""):
    global failures
    failures += not ok
    print(f"{what}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


with tempfile.TemporaryDirectory() as tmp:
    lib = os.path.join(tmp, "train.so")
    subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--adapter", CASE, "--train",
                    "--optimizer", OPTIMIZER, "-o", lib], check=True)
    t = qopt.load(lib)
    print("entries:", ", ".join(t.entries))
    trainable = [p.name for p in t.parameters if p.role == "trainable"]
    before = {n: t.get_parameter(n) for n in trainable}

    loss = t.loss(**batch)
    check("loss", abs(loss - float(ref["loss0"])) <= 1e-6 * abs(float(ref["loss0"])),
          f"{loss:.7f} vs PyTorch {float(ref['loss0']):.7f}")
    grads = t.gradients(**batch)
    check("gradients keyed by PEFT's names",
          sorted(grads) == sorted(k[len("grad.base_model.model."):]
                                  for k in ref.files if k.startswith("grad.")),
          f"e.g. {sorted(grads)[0]}")
    worst = max(rel(g, ref["grad.base_model.model." + n]) for n, g in grads.items())
    check("gradients vs PyTorch", worst <= 1e-4, f"relative error {worst:.2g}")
    check("loss and gradients leave the parameters alone",
          all(np.array_equal(t.get_parameter(n), before[n]) for n in trainable))

    losses = [t.train_step(**batch)]
    ckpt = os.path.join(tmp, "ckpt")
    t.save_checkpoint(ckpt, extra={"note": "after step 1"})
    losses += [t.train_step(**batch), t.train_step(**batch)]
    want = [float(ref["loss0"]), float(ref["step1.loss"]), float(ref["step2.loss"])]
    check("train_step losses vs PyTorch",
          all(abs(a - b) <= 1e-5 * abs(b) for a, b in zip(losses, want)),
          " ".join(f"{x:.6f}" for x in losses))
    worst = max(rel(t.get_parameter(n), ref["step3.base_model.model." + n]) for n in trainable)
    check("parameters after three steps vs PyTorch", worst <= 1e-4,
          f"relative error {worst:.2g}")
    after3 = {n: t.get_parameter(n) for n in trainable}

    extra = t.load_checkpoint(ckpt)
    check("checkpoint extra", extra == {"note": "after step 1"})
    check("checkpoint restores the step counter",
          int(t.get_parameter("optimizer.step")) == 1)
    again = [t.train_step(**batch), t.train_step(**batch)]
    check("resumed steps are bit-identical",
          again == losses[1:] and all(np.array_equal(t.get_parameter(n), after3[n])
                                      for n in trainable))

    out = os.path.join(tmp, "adapter")
    t.save_adapter(out)
    config = json.load(open(os.path.join(out, "adapter_config.json")))
    original = json.load(open(os.path.join(CASE, "adapter_config.json")))
    check("saved config", all(config.get(k) == original[k]
                              for k in ("peft_type", "r", "lora_alpha", "use_dora", "use_rslora")))
    saved = qopt._read_safetensors(os.path.join(out, "adapter_model.safetensors"))
    originals = qopt._read_safetensors(os.path.join(CASE, "adapter_model.safetensors"))
    check("saved tensor names are PEFT's", sorted(saved) == sorted(originals))
    check("saved tensors are the trained ones",
          all(np.array_equal(saved["base_model.model." + n], after3[n]) for n in trainable))
    infer = os.path.join(tmp, "infer.so")
    subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--adapter", out, "-o", infer],
                   check=True)
    logits = qopt.load(infer).run(input_ids=batch["input_ids"],
                                  attention_mask=batch["attention_mask"])[0].astype(np.float64)
    z, y = logits[:, :-1], batch["labels"][:, 1:]
    lse = np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)) + z.max(-1)
    counted = y != -100
    picked = np.take_along_axis(z, np.where(counted, y, 0)[..., None], -1)[..., 0]
    numpy_loss = float(((lse - picked) * counted).sum() / counted.sum())
    eval_loss = t.loss(**batch)
    check("saved adapter compiled for inference gives the loss",
          abs(numpy_loss - eval_loss) <= 1e-5 * eval_loss, f"{numpy_loss:.7f} vs {eval_loss:.7f}")

    try:
        t.run(entry="predict", **batch)
        check("unknown entry refused", False)
    except ValueError as e:
        check("unknown entry refused", "no entry 'predict'" in str(e), str(e))

    # Gradient accumulation: accumulate on row 0, train_step on row 1 is one
    # AdamW step with the mean of the two rows' gradients (numpy's AdamW).
    lib = os.path.join(tmp, "accumulate.so")
    subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--adapter", CASE, "--train",
                    "--optimizer", OPTIMIZER, "--train-entry",
                    "train,eval,gradients,accumulate", "-o", lib], check=True)
    a = qopt.load(lib)
    print("entries:", ", ".join(a.entries))
    rows = [{k: v[i:i + 1] for k, v in batch.items()} for i in range(2)]
    g = [a.gradients(**row) for row in rows]
    start = {n: a.get_parameter(n) for n in trainable}
    loss0 = a.accumulate(**rows[0])
    check("accumulate returns the micro-batch's loss", loss0 == a.loss(**rows[0]))
    check("accumulate sums the gradients and counts",
          all(np.array_equal(a.get_parameter(n + ".grad_accum"), g[0][n]) for n in trainable)
          and int(a.get_parameter("optimizer.accumulated")) == 1
          and int(a.get_parameter("optimizer.step")) == 0)
    check("accumulate leaves the parameters alone",
          all(np.array_equal(a.get_parameter(n), start[n]) for n in trainable))
    a.train_step(**rows[1])
    lr, b1, b2 = adamw["lr"], adamw["betas"][0], adamw["betas"][1]
    worst = 0.0
    for n in trainable:
        mean = (g[0][n].astype(np.float64) + g[1][n]) / 2
        m, v = (1 - b1) * mean, (1 - b2) * mean * mean
        p = start[n] * (1 - lr * adamw["weight_decay"])
        p = p - lr / (1 - b1) * m / (np.sqrt(v) / np.sqrt(1 - b2) + adamw["eps"])
        worst = max(worst, rel(a.get_parameter(n), p))
    check("train_step steps with the mean of the accumulated gradients", worst <= 1e-5,
          f"relative error {worst:.2g} vs numpy's AdamW")
    check("train_step empties the sum",
          int(a.get_parameter("optimizer.accumulated")) == 0
          and int(a.get_parameter("optimizer.step")) == 1
          and all(not a.get_parameter(n + ".grad_accum").any() for n in trainable))
    try:
        t.accumulate(**batch)
        check("accumulate without the entry refused", False)
    except ValueError as e:
        check("accumulate without the entry refused", "no accumulate_step entry" in str(e), str(e))
print(f"train api: {failures} failures")
