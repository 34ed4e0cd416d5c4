"""Reference numbers for compiled fine-tuning (issue 16), made by PyTorch
autograd + PEFT + torch.optim.AdamW on the test Llama of the real exports
(test/e2e/real/llama-dynamo: the same seed and model as
make_real_exports.py, checked against its committed logits first).

For each case it wraps the model with PEFT (random non-zero A and B, DoRA
magnitudes perturbed, as after training), saves the adapter, and computes
on one batch (case4 of the export: two rows of 12 tokens, the second
left-padded) with labels = input_ids, -100 at padding and at two more
positions, and at the first token after left padding, which a padded
position (with no key to attend to, where eager PyTorch and the export
differ) would predict (transformers' causal-LM loss shifts the labels
inside and averages over the counted tokens):

  loss0                   the loss before any step
  grad.<PEFT name>        the gradient of every trainable tensor
  step{k}.<PEFT name>, step{k}.loss
                          the trainable tensors after k = 1, 2, 3 AdamW
                          steps (lr 1e-2, betas 0.9 / 0.999, eps 1e-8,
                          weight decay 0.01) and the loss there
  input_ids, attention_mask, labels

in test/e2e/train/<case>/ (adapter_config.json, adapter_model.safetensors,
reference.npz) and test/e2e/train/index.json (versions, hyperparameters);
and for llama-lora's adapter three steps of SGD each (llama-lora/sgd.npz:
momentum and weight decay under transformers' cosine schedule with warm-up
and torch's clip_grad_norm_; sgd-nesterov.npz: Nesterov momentum under the
linear schedule; sgd-dampening.npz: dampened momentum under the constant
schedule with warm-up; each step{k}.loss_before, the loss each step starts
from, and step{k}.<PEFT name>).

Regenerate (needs torch, transformers, peft; CI reads the committed files):

  HF_HUB_OFFLINE=1 /work/fixtures-venv/bin/python test/e2e/train/make_train_fixtures.py [CASE…]

With case names (e.g. llama-embed, or sgd for the SGD files), only those
are made again and index.json keeps the others' entries.
"""
import json
import os
import shutil
import sys

import numpy as np
import peft
import torch
import transformers

HERE = os.path.dirname(os.path.abspath(__file__))
REAL = os.path.join(HERE, "..", "real")
sys.path.insert(0, REAL)
import make_real_exports as mre  # noqa: E402

CASES = {
    "llama-lora": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]),
    "llama-dora": dict(r=4, lora_alpha=16, target_modules="all-linear", use_dora=True,
                       use_rslora=True),
    # PEFT's lora.Embedding on the token table (its A gathered by id, a
    # scatter-add in the backward) beside linear adapters.
    "llama-embed": dict(r=4, lora_alpha=8, target_modules=["embed_tokens", "q_proj", "v_proj"],
                        rank_pattern={"embed_tokens": 3}),
    # Training-mode dropout (see MaskDropout): LoRA, and DoRA, whose PEFT
    # forward then rescales the dropped input's base product.
    "llama-lora-dropout": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                               lora_dropout=0.25),
    "llama-dora-dropout": dict(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"],
                               use_dora=True, lora_dropout=0.25),
}
# qopt's training-mode dropout draws layer L's mask from qopt.random_uniform
# (Philox4x32-10 of the run's key [seed, counter], in the stream of the
# 32-bit FNV-1a hash of L's module path; docs/Training.md) and drops where
# u < p. PEFT's dropout modules are replaced by that mask, computed here in
# numpy from the definition, so that PyTorch sees qopt's masks. The
# gradients use the key (DROPOUT_SEED, DROPOUT_COUNTER); step k of the
# train step runs with counter DROPOUT_COUNTER + k - 1 (the runtime
# advances it after every run).
DROPOUT_SEED, DROPOUT_COUNTER = 1234, 100
MASK32 = 0xFFFFFFFF


def philox_uniform(seed, counter, stream, n):
    x = [np.arange(n, dtype=np.uint64) & MASK32, np.full(n, stream, np.uint64),
         np.full(n, counter & MASK32, np.uint64), np.full(n, counter >> 32, np.uint64)]
    k = [seed & MASK32, seed >> 32]
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & MASK32, (k[1] + 0xBB67AE85) & MASK32]
        p0 = x[0] * np.uint64(0xD2511F53)
        p1 = x[2] * np.uint64(0xCD9E8D57)
        x = [((p1 >> np.uint64(32)) ^ x[1] ^ np.uint64(k[0])) & MASK32, p1 & MASK32,
             ((p0 >> np.uint64(32)) ^ x[3] ^ np.uint64(k[1])) & MASK32, p0 & MASK32]
    return (x[0] >> np.uint64(8)).astype(np.float32) * np.float32(2.0 ** -24)


def fnv1a(text):
    h = 2166136261
    for c in text.encode():
        h = ((h ^ c) * 16777619) & MASK32
    return h


class MaskDropout(torch.nn.Module):
    """nn.Dropout(p) in training with qopt's mask for `path` at the current
    counter (torch's native dropout: x · mask · (1 / (1 - p)))."""
    counter = DROPOUT_COUNTER

    def __init__(self, path, p):
        super().__init__()
        self.stream, self.p = fnv1a(path), p

    def forward(self, x):
        u = philox_uniform(DROPOUT_SEED, MaskDropout.counter, self.stream, x.numel())
        keep = torch.from_numpy((u >= np.float32(self.p)).reshape(x.shape)).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))

# QLoRA: the base of test/e2e/bnb/llama-nf4-double (NF4 + double
# quantization, written by transformers + bitsandbytes on a GPU) dequantized
# by bitsandbytes' own dequantize_4bit into the float model, which is what
# a Linear4bit computes with fp32 compute (its forward is dequantize, then
# the float product). bitsandbytes 0.50.2's CPU forward of that checkpoint
# is 4.6e-2 off its GPU logits, so the 4-bit modules themselves are no
# reference on the CPU; the dequantized model is checked against the GPU
# logits (reference.npz of the checkpoint) before it is used.
QLORA = {"llama-qlora": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])}
NF4 = os.path.join(HERE, "..", "bnb", "llama-nf4-double")
ADAMW = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
STEPS = 3

ref = np.load(os.path.join(REAL, "llama-dynamo", "reference.npz"))
input_ids = ref["case4.input_ids"]
attention_mask = ref["case4.attention_mask"]
labels = np.where(attention_mask == 1, input_ids, -100).astype(np.int64)
labels[0, 3] = -100
labels[1, -2] = -100
# The first token after left padding is predicted from a padded position,
# whose query has no key to attend to: eager PyTorch and the exported graph
# fill such rows differently (the logits there are garbage either way).
for row in range(labels.shape[0]):
    first = int(np.argmax(attention_mask[row]))
    labels[row, first] = -100
index = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                      "peft": peft.__version__},
         "adamw": {k: list(v) if isinstance(v, tuple) else v for k, v in ADAMW.items()},
         "steps": STEPS, "batch": "case4 of test/e2e/real/llama-dynamo", "cases": {}}
ONLY = set(sys.argv[1:])
if ONLY:
    with open(os.path.join(HERE, "index.json")) as f:
        kept = json.load(f)
    assert kept["versions"] == index["versions"], "other versions made the kept fixtures"
    index = kept


def dequantize_nf4_base(wrapper):
    """Replaces the 4-bit checkpoint's layers' weights by their values as
    bitsandbytes' format defines them (numpy: the 8-bit codes of the block
    absmax through the nested map, times the nested absmax, plus the offset;
    each 4-bit code, high nibble first, through quant_map, times its
    block's absmax), and checks the model's logits against the checkpoint's
    GPU logits. (bitsandbytes 0.50.2's own CPU dequantize_4bit is 7e-2 off
    its GPU logits for this checkpoint.)"""
    from safetensors.numpy import load_file
    tensors = load_file(os.path.join(NF4, "model.safetensors"))
    lm = wrapper.m
    done = 0
    for key in tensors:
        if not key.endswith(".weight.quant_state.bitsandbytes__nf4"):
            continue
        base = key[:-len(".quant_state.bitsandbytes__nf4")]
        state = json.loads(bytes(tensors[key]).decode())
        packed = tensors[base].reshape(-1)
        codes = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)
        absmax = (tensors[base + ".nested_quant_map"][tensors[base + ".absmax"]].astype(np.float64)
                  * np.repeat(tensors[base + ".nested_absmax"],
                              state["nested_blocksize"])[:len(tensors[base + ".absmax"])]
                  + state["nested_offset"]).astype(np.float32)
        w = tensors[base + ".quant_map"][codes] * np.repeat(absmax, state["blocksize"])[:len(codes)]
        module = lm.get_submodule(base[:-len(".weight")])
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(w.reshape(state["shape"]).astype(np.float32)))
        done += 1
    gpu = np.load(os.path.join(NF4, "reference.npz"))
    valid = ref["case4.logits.valid"]
    with torch.no_grad():
        logits = wrapper(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))[0].numpy()
    err = np.max(np.abs((logits - gpu["case4.logits"])[valid]))
    assert err < 1e-4, f"the dequantized NF4 model differs from bitsandbytes' GPU logits ({err})"
    print(f"NF4 base: {done} layers dequantized by bitsandbytes, logits within {err:.1e} "
          "of its GPU forward")
    return {"layers": done, "logits_vs_gpu": float(err)}


for name, kwargs in {**CASES, **QLORA}.items():
    if ONLY and name not in ONLY:
        continue
    torch.manual_seed(0)
    valid = ref["case4.logits.valid"]
    _, wrapper, _ = mre.build("llama")
    wrapper.eval()
    with torch.no_grad():
        logits = wrapper(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))[0].numpy()
    err = np.max(np.abs((logits - ref["case4.logits"])[valid]))
    assert err < 1e-5, f"{name}: the rebuilt base model differs from the export ({err})"
    nf4 = dequantize_nf4_base(wrapper) if name in QLORA else None
    pm = peft.get_peft_model(wrapper, peft.LoraConfig(init_lora_weights=False, **kwargs))
    dropout = kwargs.get("lora_dropout", 0.0)
    if dropout:
        for path, module in pm.base_model.model.named_modules():
            if isinstance(module, peft.tuners.lora.LoraLayer) and "default" in module.lora_dropout:
                module.lora_dropout["default"] = MaskDropout(path, dropout)
    MaskDropout.counter = DROPOUT_COUNTER
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for pname, p in pm.named_parameters():
            if any(f"lora_{kind}" in pname for kind in
                   ("A", "B", "embedding_A", "embedding_B")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
            elif "lora_magnitude_vector" in pname:
                p.mul_(1 + 0.2 * torch.rand(p.shape, generator=gen))
    folder = os.path.join(HERE, name)
    shutil.rmtree(folder, ignore_errors=True)
    pm.save_pretrained(folder)
    for extra in os.listdir(folder):
        if extra not in ("adapter_config.json", "adapter_model.safetensors"):
            os.remove(os.path.join(folder, extra))
    # Training mode for the loss (dropout is 0: deterministic).
    pm.train()
    lm = pm.base_model.model.m  # the LlamaForCausalLM inside the wrapper
    ids, mask, lab = (torch.from_numpy(a) for a in (input_ids, attention_mask, labels))
    trainable = {n: p for n, p in pm.named_parameters() if p.requires_grad}

    def peft_name(n):
        # PEFT's saved names: no adapter name, "base_model.model." kept.
        return n.replace(".default", "")

    result = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    optimizer = torch.optim.AdamW(list(trainable.values()), **ADAMW)
    loss = lm(input_ids=ids, attention_mask=mask, labels=lab).loss
    loss.backward()
    result["loss0"] = loss.detach().numpy()
    for n, p in trainable.items():
        result[f"grad.{peft_name(n)}"] = p.grad.detach().numpy().copy()
    for k in range(1, STEPS + 1):
        # Step k from the gradients at the current values, then the loss
        # (and the gradients for the next step) at the new values.
        optimizer.step()
        optimizer.zero_grad()
        for n, p in trainable.items():
            result[f"step{k}.{peft_name(n)}"] = p.detach().numpy().copy()
        MaskDropout.counter = DROPOUT_COUNTER + k  # the next run's masks
        loss = lm(input_ids=ids, attention_mask=mask, labels=lab).loss
        loss.backward()
        result[f"step{k}.loss"] = loss.detach().numpy()
    np.savez_compressed(os.path.join(folder, "reference.npz"), **result)
    grads = [k for k in result if k.startswith("grad.")]
    if dropout:
        kwargs = dict(kwargs, dropout_key=[DROPOUT_SEED, DROPOUT_COUNTER])
    if nf4:
        kwargs = dict(kwargs, base="test/e2e/bnb/llama-nf4-double (bitsandbytes NF4, "
                                  "double quantization)", **{"nf4_" + k: v for k, v in nf4.items()})
    index["cases"][name] = {"config": kwargs, "loss0": float(result["loss0"]),
                            f"loss_after_{STEPS}_steps": float(result[f"step{STEPS}.loss"]),
                            "trainable": len(grads)}
    print(f"{name}: loss {float(result['loss0']):.6f} -> {float(result[f'step{STEPS}.loss']):.6f} "
          f"after {STEPS} steps, {len(grads)} trainable tensors")
# SGD on llama-lora's adapter, three steps each, against torch.optim.SGD,
# transformers' schedulers and torch's clip_grad_norm_:
# llama-lora/<file> (step{k}.loss_before, the loss each step starts from,
# and step{k}.<name>). "sgd": momentum and weight decay, the cosine
# schedule with warm-up (its first step has learning rate 0) and clipping;
# "sgd-nesterov": Nesterov momentum under the linear schedule;
# "sgd-dampening": dampened momentum under the constant schedule with two
# warm-up steps.
SGD_CASES = {
    "sgd": dict(optimizer=dict(lr=0.05, momentum=0.9, weight_decay=0.01),
                schedule=dict(kind="cosine", warmup_steps=1, total_steps=4),
                max_grad_norm=0.5, file="sgd.npz"),
    "sgd-nesterov": dict(optimizer=dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
                         schedule=dict(kind="linear", warmup_steps=1, total_steps=5),
                         max_grad_norm=0.0, file="sgd-nesterov.npz"),
    "sgd-dampening": dict(optimizer=dict(lr=0.1, momentum=0.8, dampening=0.3),
                          schedule=dict(kind="constant", warmup_steps=2, total_steps=0),
                          max_grad_norm=0.0, file="sgd-dampening.npz"),
}
SCHEDULERS = {
    "cosine": lambda o, s: transformers.get_cosine_schedule_with_warmup(
        o, num_warmup_steps=s["warmup_steps"], num_training_steps=s["total_steps"]),
    "linear": lambda o, s: transformers.get_linear_schedule_with_warmup(
        o, num_warmup_steps=s["warmup_steps"], num_training_steps=s["total_steps"]),
    "constant": lambda o, s: transformers.get_constant_schedule_with_warmup(
        o, num_warmup_steps=s["warmup_steps"]),
}
if not ONLY or "sgd" in ONLY:
    index["sgd_cases"] = {}
for sgd_name, case in SGD_CASES.items():
    if ONLY and "sgd" not in ONLY:
        break
    torch.manual_seed(0)
    _, wrapper, _ = mre.build("llama")
    pm = peft.PeftModel.from_pretrained(wrapper, os.path.join(HERE, "llama-lora"),
                                        is_trainable=True)
    pm.train()
    lm = pm.base_model.model.m
    ids, mask, lab = (torch.from_numpy(a) for a in (input_ids, attention_mask, labels))
    trainable = {n.replace(".default", ""): p for n, p in pm.named_parameters() if p.requires_grad}
    optimizer = torch.optim.SGD(list(trainable.values()), **case["optimizer"])
    scheduler = SCHEDULERS[case["schedule"]["kind"]](optimizer, case["schedule"])
    result = {}
    for k in range(1, STEPS + 1):
        loss = lm(input_ids=ids, attention_mask=mask, labels=lab).loss
        loss.backward()
        result[f"step{k}.loss_before"] = loss.detach().numpy()
        if case["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(list(trainable.values()), case["max_grad_norm"])
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        for n, p in trainable.items():
            result[f"step{k}.{n}"] = p.detach().numpy().copy()
    np.savez_compressed(os.path.join(HERE, "llama-lora", case["file"]), **result)
    entry = {"case": "llama-lora", "optimizer": case["optimizer"], "schedule": case["schedule"],
             "max_grad_norm": case["max_grad_norm"], "steps": STEPS, "file": case["file"]}
    # "sgd" keeps its place in the index; the others are listed by name.
    if sgd_name == "sgd":
        index["sgd"] = entry
    else:
        index["sgd_cases"][sgd_name] = entry
    print(f"llama-lora, {sgd_name}: losses "
          + " ".join(f"{float(result[f'step{k}.loss_before']):.6f}" for k in range(1, STEPS + 1)))

with open(os.path.join(HERE, "index.json"), "w") as f:
    json.dump(index, f, indent=1)
    f.write("\n")
