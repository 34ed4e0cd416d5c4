"""Run-time adapter slots: one library compiled with `qoptc --lora-slots`
(q_proj, v_proj, down_proj of the Llama exports, rank 4) loads four PEFT
adapters in turn -- rank 4; rank 2 on a subset (padded); rank 3 rsLoRA;
rank 2 with an alpha_pattern (a suffix and a regular expression) --
and each gives PEFT's own outputs and those of the same adapter compiled in
with `qoptc --adapter`; unloading gives the base model's outputs again;
adapters that do not fit are refused with the module named and leave the
loaded one in place; qopt-run --adapter does the same from the command
line. Prints one line per check; exits 1 on a failure."""
import json
import re
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402

PEFT = os.path.join(HERE, "peft")
failures = 0


def check(label, ok, detail=""):
    global failures
    print(f"{'ok' if ok else 'FAIL'} {label}" + (f": {detail}" if detail else ""))
    failures += not ok


def rel(got, want, valid=None):
    if valid is not None:
        mask = np.broadcast_to(valid[..., None], want.shape)
        got, want = got[mask], want[mask]
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def cases(npz):
    return sorted({k.split(".")[0] for k in npz.files if k.startswith("case")})


def outputs(model, npz):
    return {c: model.run(input_ids=npz[f"{c}.input_ids"],
                         attention_mask=npz[f"{c}.attention_mask"])[0] for c in cases(npz)}


def matches(got, npz, tol=1e-4):
    worst = max(rel(got[c], npz[f"{c}.logits"], npz[f"{c}.logits.valid"]
                    if f"{c}.logits.valid" in npz.files else None) for c in cases(npz))
    return worst <= tol, f"max relative error {worst:.1e}"


def write_adapter(folder, tensors, config):
    """An adapter folder in PEFT's layout (f32 safetensors)."""
    os.makedirs(folder)
    header, blob = {}, b""
    for name, a in tensors.items():
        raw = np.ascontiguousarray(a, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    open(os.path.join(folder, "adapter_model.safetensors"), "wb").write(
        struct.pack("<Q", len(h)) + h + blob)
    json.dump(config, open(os.path.join(folder, "adapter_config.json"), "w"))


with tempfile.TemporaryDirectory() as tmp:
    # Rank 5 on q_proj: more than the slot holds.
    rank5 = os.path.join(tmp, "rank5")
    p = "base_model.model.m.model.layers.0.self_attn.q_proj."
    write_adapter(rank5, {p + "lora_A.weight": np.ones((5, 32)), p + "lora_B.weight": np.ones((32, 5))},
                  {"peft_type": "LORA", "r": 5, "lora_alpha": 5, "target_modules": ["q_proj"]})
    # An alpha_pattern key in Python's own syntax (named group).
    badregex = os.path.join(tmp, "badregex")
    write_adapter(badregex, {p + "lora_A.weight": np.ones((2, 32)), p + "lora_B.weight": np.ones((32, 2))},
                  {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj"],
                   "alpha_pattern": {"(?P<p>q)_proj": 4}})
    # An alpha_pattern value that is not a positive number.
    badalpha = os.path.join(tmp, "badalpha")
    write_adapter(badalpha, {p + "lora_A.weight": np.ones((2, 32)), p + "lora_B.weight": np.ones((32, 2))},
                  {"peft_type": "LORA", "r": 2, "lora_alpha": 2, "target_modules": ["q_proj"],
                   "alpha_pattern": {"q_proj": "16"}})
    # PEFT's EVA adapter (init_lora_weights "eva", eva_config, per-module
    # rank_pattern / alpha_pattern) on the slotted modules, B made nonzero.
    evaslots = os.path.join(tmp, "evaslots")
    eva_dir = os.path.join(PEFT, "eva", "eva-default")
    eva_config = json.load(open(os.path.join(eva_dir, "adapter_config.json")))
    raw = open(os.path.join(eva_dir, "adapter_model.safetensors"), "rb").read()
    hlen = struct.unpack("<Q", raw[:8])[0]
    rng = np.random.default_rng(7)
    eva_tensors = {}
    for key, e in json.loads(raw[8:8 + hlen]).items():
        if key == "__metadata__" or not re.search(r"(q_proj|v_proj|down_proj)\.", key):
            continue
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[8 + hlen + b:8 + hlen + end], np.float32).reshape(e["shape"])
        eva_tensors[key] = rng.normal(0, 0.1, a.shape) if "lora_B" in key else a
    eva_config["target_modules"] = [t for t in eva_config["target_modules"]
                                    if re.search(r"(q_proj|v_proj|down_proj)$", t)]
    write_adapter(evaslots, eva_tensors, eva_config)
    for exporter in ("dynamo", "torchscript"):
        model_path = os.path.join(HERE, "real", f"llama-{exporter}", "model.onnx")
        lib = os.path.join(tmp, f"slots-{exporter}.so")
        subprocess.run([os.path.join(BIN, "qoptc"), model_path, "--lora-slots",
                        os.path.join(PEFT, "slots-config.json"), "-o", lib], check=True)
        m = qopt.load(lib)
        check(f"{exporter}: slots", [r for _, r in m.lora_slots] == [4] * 6,
              ", ".join(f"{n.rsplit('.', 2)[-2]}.{n.rsplit('.', 1)[-1]} r{r}"
                        for n, r in m.lora_slots[:3]) + ", ...")
        base = np.load(os.path.join(HERE, "real", f"llama-{exporter}", "reference.npz"))
        check(f"{exporter}: no adapter = the base model", *matches(outputs(m, base), base))
        for name in ("llama-lora", "llama-slot-small", "llama-slot-rslora", "llama-slot-alphas",
                     evaslots):
            ref = np.load(os.path.join(PEFT, name, "reference.npz")) if name != evaslots else base
            m.load_adapter(os.path.join(PEFT, name))
            got = outputs(m, ref)
            if name == evaslots:
                name = "evaslots"
                changed = max(rel(got[c], outputs(qopt.load(lib), ref)[c]) for c in got)
                check(f"{exporter}: PEFT's EVA adapter loaded (B nonzero)", changed > 1e-3,
                      f"outputs moved by {changed:.1e}")
            else:
                check(f"{exporter}: {name} loaded = PEFT", *matches(got, ref))
            compiled = os.path.join(tmp, f"{name}-{exporter}.so")
            subprocess.run([os.path.join(BIN, "qoptc"), model_path, "--adapter",
                            evaslots if name == "evaslots" else os.path.join(PEFT, name),
                            "-o", compiled], check=True)
            fixed = outputs(qopt.load(compiled), ref)
            worst = max(rel(got[c], fixed[c]) for c in got)
            check(f"{exporter}: {name} loaded = compiled in", worst <= 1e-5,
                  f"max relative difference {worst:.1e}")
        before = outputs(m, base)
        for name, message in (("llama-rank-pattern", "has no LoRA slot"),
                              (rank5, "the adapter's rank 5 exceeds its slot's rank 4"),
                              (badregex, "is not a regular expression the slots can read"),
                              (badalpha, "the alpha of 'q_proj' is not a positive number"),
                              ("llama-dora-rslora", "DoRA adapters do not fit"),
                              ("bert-lora", "has no LoRA slot")):
            try:
                m.load_adapter(os.path.join(PEFT, name))
                check(f"{exporter}: {os.path.basename(name)} refused", False, "loaded")
            except ValueError as e:
                after = outputs(m, base)
                same = all(np.array_equal(before[c], after[c]) for c in before)
                check(f"{exporter}: {os.path.basename(name)} refused", message in str(e) and same,
                      str(e).replace(PEFT, "PEFT").replace(tmp, "TMP"))
        m.unload_adapter()
        check(f"{exporter}: unloaded = the base model", *matches(outputs(m, base), base))
    # The command line.
    ref = np.load(os.path.join(PEFT, "llama-slot-small", "reference.npz"))
    for n in ("input_ids", "attention_mask"):
        np.save(os.path.join(tmp, f"{n}.npy"), ref[f"case1.{n}"])
    r = subprocess.run([os.path.join(BIN, "qopt-run"), os.path.join(tmp, "slots-dynamo.so"),
                        "--adapter", os.path.join(PEFT, "llama-slot-small"),
                        "--input", f"input_ids={tmp}/input_ids.npy",
                        "--input", f"attention_mask={tmp}/attention_mask.npy",
                        "--output-dir", tmp], capture_output=True, text=True)
    got = np.load(os.path.join(tmp, "logits.npy")) if r.returncode == 0 else None
    check("qopt-run --adapter = PEFT", got is not None and rel(got, ref["case1.logits"]) <= 1e-4,
          r.stderr.strip())
    r = subprocess.run([os.path.join(BIN, "qopt-run"), os.path.join(tmp, "slots-dynamo.so"),
                        "--adapter", os.path.join(PEFT, "bert-lora"),
                        "--input", f"input_ids={tmp}/input_ids.npy",
                        "--input", f"attention_mask={tmp}/attention_mask.npy"],
                       capture_output=True, text=True)
    check("qopt-run --adapter refuses an adapter that does not fit",
          r.returncode != 0 and "has no LoRA slot" in r.stderr,
          r.stderr.strip().replace(PEFT, "PEFT")[:160])
print(f"lora slots: {failures} failures")
sys.exit(1 if failures else 0)
