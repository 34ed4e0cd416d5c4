"""Compiled training against PyTorch autograd + PEFT + torch.optim.AdamW
(fixtures in test/e2e/train/, made by make_train_fixtures.py).

For each case, the test Llama export with the case's PEFT adapter is
compiled twice with `qoptc --train`:

- `--train-entry gradients`: the loss and every trainable tensor's gradient
  on the fixture's batch (labels with ignored positions) must match
  PyTorch's (relative error max|g - g_ref| / max|g_ref| <= 1e-4 per tensor);
- the train entry with AdamW (lr 1e-2, betas 0.9 / 0.999, eps 1e-8, weight
  decay 0.01), run three times: each run's loss must be PyTorch's loss
  before that step, and the trainable tensors after each step PyTorch's
  (<= 1e-4), the step counter 1, 2, 3;
- for llama-lora also SGD, three steps each, against torch.optim.SGD +
  transformers' schedulers (+ clip_grad_norm_): momentum and weight decay
  under the cosine schedule with warm-up and global-norm clipping
  (sgd.npz), Nesterov momentum under the linear schedule
  (sgd-nesterov.npz), dampened momentum under the constant schedule with
  two warm-up steps (sgd-dampening.npz).

- the gradients entry again with `--gradient-checkpointing`: the same
  gradients bit for bit, and `--activation-report` estimates less memory
  kept from the forward for the backward.

llama-lora's gradients are also checked on the TorchScript export.

llama-lora is compiled with dynamic batch and sequence (the run-time
broadcast choices are differentiated), llama-dora with both pinned;
llama-qlora trains on the NF4 base of test/e2e/bnb/llama-nf4-double, kept
quantized and dequantized on the fly; llama-embed has PEFT's embedding
adapter on the token table (A's columns gathered by id: a scatter-add in
the backward) beside q/v adapters; llama-lora-dropout and
llama-dora-dropout train with lora_dropout 0.25 (the fixture's PyTorch
drew qopt's masks for the run's key: the runtime advances the counter
after each step, so each step has new masks).
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
index = json.load(open(os.path.join(HERE, "train", "index.json")))
adamw = index["adamw"]
OPTIMIZER = (f"adamw:lr={adamw['lr']},betas={adamw['betas'][0]}/{adamw['betas'][1]},"
             f"eps={adamw['eps']},weight_decay={adamw['weight_decay']}")
failures = 0


def peft_key(name):
    """The fixture's key (torch's parameter name) of a qopt parameter."""
    key = "base_model.model." + name
    return key + ".weight" if key.endswith("lora_magnitude_vector") else key


def rel(got, ref):
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def report(what, err, tol):
    global failures
    ok = err <= tol
    failures += not ok
    print(f"{what}: {'ok' if ok else 'MISMATCH'} (relative error {err:.2g})")


# QLoRA: the base weights of the bitsandbytes NF4 + double quantization
# checkpoint, kept quantized (the reference dequantizes them as
# bitsandbytes' format defines).
BASES = {"llama-qlora": ["--weights", os.path.join(HERE, "bnb", "llama-nf4-double",
                                                   "model.safetensors")]}


def compile_model(tmp, case, kind, extra, dims, stderr=None):
    out = os.path.join(tmp, f"{case}-{kind}.so")
    cmd = [os.path.join(BIN, "qoptc"), MODEL, "--adapter", os.path.join(HERE, "train", case),
           "--train", "-o", out] + BASES.get(case, []) + extra
    if dims:
        cmd += ["--dim", dims]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    sys.stderr.write(r.stderr)
    if stderr is not None:
        stderr.append(r.stderr)
    return qopt.load(out)


def kept_bytes(stderr):
    """The bytes qoptc's --activation-report says the forward keeps for
    the backward ("... keeps for the backward X MiB (N bytes)")."""
    line = [x for x in stderr.splitlines() if "activation memory of gradients" in x][0]
    return int(line.split("keeps for the backward")[1].split("(")[1].split()[0])


with tempfile.TemporaryDirectory() as tmp:
    for case, dims in (("llama-lora", None), ("llama-dora", "batch=2,seq=12"),
                       ("llama-qlora", None), ("llama-embed", None),
                       ("llama-lora-dropout", None), ("llama-dora-dropout", "batch=2,seq=12")):
        ref = np.load(os.path.join(HERE, "train", case, "reference.npz"))
        # Dropout: the run's key the fixture's masks were drawn with.
        key = index["cases"][case]["config"].get("dropout_key")
        feed = dict(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                    labels=ref["labels"])
        plain_log, ckpt_log = [], []
        model = compile_model(tmp, case, "gradients", [
            "--train-entry", "gradients", "--activation-report=batch=2,seq=12"], dims, plain_log)
        if key:
            model.rng = tuple(key)
        outputs = model.run(**feed)
        names = [o.name for o in model.outputs]
        report(f"{case}: loss", rel(outputs[0], ref["loss0"]), 1e-6)
        grads = {n[len("grad."):]: g for n, g in zip(names[1:], outputs[1:])}
        expected = sorted(k[len("grad.base_model.model."):] for k in ref.keys()
                          if k.startswith("grad."))
        got = sorted(peft_key(n)[len("base_model.model."):] for n in grads)
        print(f"{case}: {len(grads)} gradients, {'the' if got == expected else 'NOT the'} "
              f"{len(expected)} trainable tensors of PEFT")
        failures += got != expected
        # DoRA's gradients go through the weight's column norms and carry
        # more fp32 summation noise against PEFT: 5.1e-5 with OpenBLAS's
        # products, 1.1e-4 with the kernel library's AVX-512 tiles (another
        # order); LoRA's stay near 1e-6.
        tol = 2e-4 if case == "llama-dora" else 1e-4
        report(f"{case}: every gradient", max(rel(g, ref["grad." + peft_key(n)])
                                             for n, g in grads.items()), tol)
        # Gradient checkpointing: the same gradients, bit for bit (the same
        # ops recomputed), with less kept from the forward.
        again = compile_model(tmp, case, "checkpointed", [
            "--train-entry", "gradients", "--gradient-checkpointing",
            "--activation-report=batch=2,seq=12"], dims, ckpt_log)
        if key:
            again.rng = tuple(key)
        again = again.run(**feed)
        same = all(np.array_equal(a, b) for a, b in zip(outputs, again))
        before, after = kept_bytes(plain_log[0]), kept_bytes(ckpt_log[0])
        print(f"{case}: gradient checkpointing: gradients {'bit-identical' if same else 'DIFFER'}, "
              f"{'less' if after < before else 'NOT less'} kept for the backward "
              f"({after} bytes instead of {before})")
        failures += not same or not after < before

        model = compile_model(tmp, case, "train", ["--train-entry", "train", "--optimizer", OPTIMIZER], dims)
        if key:
            model.rng = tuple(key)
        trainable = [p.name for p in model.parameters if p.role == "trainable"]
        for k in range(1, index["steps"] + 1):
            loss = model.run(**feed)[0]
            before = ref["loss0"] if k == 1 else ref[f"step{k - 1}.loss"]
            report(f"{case}: AdamW step {k} loss", rel(loss, before), 1e-5)
            report(f"{case}: parameters after step {k}",
                   max(rel(model.get_parameter(n), ref[f"step{k}." + peft_key(n)])
                       for n in trainable), 1e-4)
        step = int(model.get_parameter("optimizer.step"))
        print(f"{case}: optimizer.step {step}")
        failures += step != index["steps"]
        if case == "llama-embed":
            # PEFT's file back: lora_embedding_A / _B named as PEFT saves them.
            out = os.path.join(tmp, "embed-saved")
            model.save_adapter(out)
            saved = qopt._read_safetensors(os.path.join(out, "adapter_model.safetensors"))
            original = qopt._read_safetensors(
                os.path.join(HERE, "train", case, "adapter_model.safetensors"))
            same = sorted(saved) == sorted(original)
            print(f"{case}: saved adapter has {'' if same else 'NOT '}PEFT's tensor names")
            failures += not same
            report(f"{case}: saved adapter after step 3",
                   max(rel(saved[k], ref[f"step{index['steps']}.{k}"]) for k in saved), 1e-4)
    # Dropout is for training only: eval_step of the dropout adapter gives,
    # whatever the key, the loss without dropout (llama-lora's, whose
    # tensors are the same).
    same_tensors = all(
        np.array_equal(a, b) for a, b in zip(
            *(qopt._read_safetensors(os.path.join(HERE, "train", c, "adapter_model.safetensors"))
              .values() for c in ("llama-lora-dropout", "llama-lora"))))
    ref = np.load(os.path.join(HERE, "train", "llama-lora", "reference.npz"))
    feed = dict(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                labels=ref["labels"])
    model = compile_model(tmp, "llama-lora-dropout", "eval", ["--train-entry", "train,eval"], None)
    losses = []
    for key in ((1, 2), (3, 4)):
        model.rng = key
        losses.append(float(model.loss(**feed)))
    print(f"llama-lora-dropout: eval_step {'is' if losses[0] == losses[1] else 'is NOT'} "
          "independent of the key")
    failures += losses[0] != losses[1] or not same_tensors
    report("llama-lora-dropout: eval_step loss, without dropout", rel(losses[0], ref["loss0"]),
           1e-6)
    # Other exports of the same model, on the left-padded batch: the
    # TorchScript export, whose rotary halves are Slices at run-time bounds
    # (strided views, differentiated like the dynamo export's); the export
    # without constant folding or shapes (llama-params), whose attention
    # stays torch's decomposition with its softmax guarded by
    # Where(IsNaN(P), 0, P): the padded queries' fully masked rows must give
    # zero gradients, not NaN.
    ref = np.load(os.path.join(HERE, "train", "llama-lora", "reference.npz"))
    feed = dict(input_ids=ref["input_ids"], attention_mask=ref["attention_mask"],
                labels=ref["labels"])
    for export, label in (("llama-torchscript", "the TorchScript export"),
                          ("llama-params", "the llama-params export (left-padded batch)")):
        out = os.path.join(tmp, f"{export}.so")
        subprocess.run([os.path.join(BIN, "qoptc"),
                        os.path.join(HERE, "real", export, "model.onnx"), "--adapter",
                        os.path.join(HERE, "train", "llama-lora"), "--train", "--train-entry",
                        "gradients", "-o", out], check=True)
        grads = qopt.load(out).gradients(**feed)
        report(f"llama-lora on {label}: {len(grads)} gradients",
               max(rel(g, ref["grad." + peft_key(n)]) for n, g in grads.items()), 1e-4)
    # SGD against torch.optim.SGD + transformers' schedulers (+
    # clip_grad_norm_): momentum and weight decay under the cosine schedule
    # with warm-up (its first step has learning rate 0) and clipping;
    # Nesterov momentum under the linear schedule; dampened momentum under
    # the constant schedule with warm-up.
    for label, sgd in [("SGD + cosine + clipping", index["sgd"])] + [
            (name, case) for name, case in index["sgd_cases"].items()]:
        o, sch = sgd["optimizer"], sgd["schedule"]
        ref = np.load(os.path.join(HERE, "train", sgd["case"], sgd["file"]))
        base = np.load(os.path.join(HERE, "train", sgd["case"], "reference.npz"))
        feed = dict(input_ids=base["input_ids"], attention_mask=base["attention_mask"],
                    labels=base["labels"])
        spec = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                        for k, v in o.items())
        flags = ["--train-entry", "train", "--optimizer", f"sgd:{spec}",
                 "--lr-schedule", sch["kind"], "--warmup-steps", str(sch["warmup_steps"]),
                 "--total-steps", str(sch["total_steps"])]
        if sgd["max_grad_norm"]:
            flags += ["--max-grad-norm", str(sgd["max_grad_norm"])]
        model = compile_model(tmp, sgd["case"], sgd["file"], flags, None)
        trainable = [p.name for p in model.parameters if p.role == "trainable"]
        for k in range(1, sgd["steps"] + 1):
            loss = model.run(**feed)[0]
            report(f"{label}: step {k} loss", rel(loss, ref[f"step{k}.loss_before"]), 1e-5)
            report(f"{label}: parameters after step {k}",
                   max(rel(model.get_parameter(n), ref[f"step{k}." + peft_key(n)])
                       for n in trainable), 1e-4)
print(f"train: {failures} failures")
