"""Quantization-aware training's prepare and convert on the CPU path:
`qopt-insert-fake-quant` and `qopt-convert-qat`, run by
`qoptc --graph-passes` on the test Llama (dynamo export).

- prepare (int4 groups asym, int8, FP8 E4M3 per channel, and
  bitsandbytes' NF4 / FP4 in blocks, rounded as its kernels): the
  fake-quantized model's logits equal (<= 2e-6) those of the
  model whose weights were quantized and dequantized by the numpy reference
  of the spec (test/e2e/quant_reference.py): the forward pass simulates the
  deployed rounding exactly;
- convert: the converted model (packed weights) gives the fake-quantized
  model's logits (<= 5e-6: the packed layers run on the kernel library's
  quantized products, which sum in another order than BLAS), and its
  weights file holds packed codes;
- LSQ (`qopt-insert-lsq`): one trainable step per output channel,
  initialised 2·mean|w|/sqrt(Qp); the forward equals numpy's rounding on
  those steps, the converted model gives the same logits (<= 5e-6);
- L4Q (`qopt-insert-lsq l4q=true`) on a PEFT adapter: the forward rounds
  W + (alpha/r)·B·A on steps 2·mean|W'|/sqrt(Qp), A, B and the steps are
  trainable and B moves the output; convert packs one matrix per layer
  with the same logits (<= 5e-6) and no adapter left;
- PEQA: the `--quantize` layout with trainable scales, identical logits,
  and the scales change the output;
- activations: one linear layer with int8 per-token input fake-quant and
  int4 grouped asymmetric weight fake-quant, lowered and run, against numpy;
  static int8 per-tensor scales from calibration statistics, on one layer
  against numpy and on the model (statistics of one case from a probe:
  identical to the dynamic per-tensor model on that case, different on
  another); a statistics file missing a layer is an error naming it.

Prints one line per case and a summary."""
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import qopt  # noqa: E402
import qopt_check  # noqa: E402
from checkpoints import read_safetensors, rel_error, write_f32_safetensors  # noqa: E402
from quant_reference import int_group, reference  # noqa: E402

REAL = os.path.join(HERE, "real", "llama-dynamo")
MODEL = os.path.join(REAL, "model.onnx")
base = read_safetensors(os.path.join(HERE, "bnb", "llama-base", "model.safetensors"))
linear = [n for n in base if n.endswith("_proj.weight")]
inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}

def converted_same(float_logits, packed_logits):
    """The packed model computes the fake-quantized one's products from the
    same codes; only f32 summation order differs (the quantized kernels sum
    each group's codes times x, then scale: up to 2.1e-6 measured on L4Q's
    logits; a wrong code moves them by 1e-3 or more)."""
    return max(rel_error(a, b) for a, b in zip(float_logits, packed_logits)) <= 5e-6

failures = 0


def qoptc(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def logits(lib):
    m = qopt.load(lib)
    return [m.run(**feeds[c])[0] for c in cases]


with tempfile.TemporaryDirectory() as tmp:
    for i, (weights, spec) in enumerate((("int4:group=16,asym", "int4:group=16,asym"),
                                         ("int8", "int8:per-channel"),
                                         ("fp8-e4m3:per-channel", "fp8-e4m3:per-channel"),
                                         ("nf4:block=16", "nf4:block=16"),
                                         ("fp4", "fp4:block=64"))):
        prepare = f"qopt-insert-fake-quant{{weights={weights}}}"
        libs = {k: os.path.join(tmp, f"{k}{i}.so") for k in ("fq", "conv", "ref")}
        floats = os.path.join(tmp, f"reference-{i}.safetensors")
        write_f32_safetensors(floats, {n: reference(base[n], spec) for n in linear})
        results = [qoptc("--graph-passes", prepare, "-o", libs["fq"]),
                   qoptc("--graph-passes", prepare + ",qopt-convert-qat", "-o", libs["conv"]),
                   qoptc("--weights", floats, "-o", libs["ref"])]
        if any(rc for rc, _ in results):
            print(f"FAIL {weights}: {[e for rc, e in results if rc][0][-400:]}")
            failures += 1
            continue
        fq, conv, ref = logits(libs["fq"]), logits(libs["conv"]), logits(libs["ref"])
        vs_ref = max(rel_error(a, b) for a, b in zip(fq, ref))
        same = converted_same(fq, conv)
        moved = max(rel_error(a, inputs[f"{c}.logits"], inputs.get(f"{c}.logits.valid"))
                    for a, c in zip(fq, cases))
        size = [os.path.getsize(os.path.splitext(libs[k])[0] + ".safetensors") for k in ("conv", "fq")]
        ok = vs_ref <= 2e-6 and same and moved > 1e-4 and size[0] < 0.7 * size[1]
        print(f"{'ok' if ok else 'FAIL'} {weights}: fake-quant vs reference {vs_ref:.1e}, "
              f"converted {'equal' if same else 'DIFFERENT'}, weights {size[0]} bytes "
              f"(fake-quant model {size[1]})")
        failures += not ok

    # LSQ: trainable steps initialised 2·mean|w|/sqrt(Qp) per output channel
    # (int4: Qp = 7); the forward rounds on them; convert packs on them.
    prepare = "qopt-insert-lsq{weights=int4}"
    libs = {k: os.path.join(tmp, f"lsq-{k}.so") for k in ("lsq", "conv", "ref")}
    want_steps, floats = {}, {}
    for n in linear:
        w = base[n]
        step = (2 * np.abs(w).mean(axis=1, dtype=np.float64) / np.sqrt(7)).astype(np.float32)
        want_steps[n[:-len(".weight")] + ".weight_step"] = step
        floats[n] = (np.clip(np.rint(w / step[:, None]), -8, 7) * step[:, None]).astype(np.float32)
    write_f32_safetensors(os.path.join(tmp, "lsq-reference.safetensors"), floats)
    results = [qoptc("--graph-passes", prepare, "-o", libs["lsq"]),
               qoptc("--graph-passes", prepare + ",qopt-convert-qat", "-o", libs["conv"]),
               qoptc("--weights", os.path.join(tmp, "lsq-reference.safetensors"), "-o", libs["ref"])]
    if any(rc for rc, _ in results):
        print(f"FAIL lsq: {[e for rc, e in results if rc][0][-400:]}")
        failures += 1
    else:
        model = qopt.load(libs["lsq"])
        steps = {p.name[len("m."):]: p for p in model.parameters if p.name.endswith(".weight_step")}
        roles = {p.role for p in steps.values()}
        worst_step = max(np.max(np.abs(model.get_parameter("m." + k) - v) / np.abs(v))
                         if k in steps else np.inf for k, v in want_steps.items())
        lsq, conv, ref = logits(libs["lsq"]), logits(libs["conv"]), logits(libs["ref"])
        vs_ref = max(rel_error(a, b) for a, b in zip(lsq, ref))
        same = converted_same(lsq, conv)
        ok = (len(steps) == len(linear) and roles == {"trainable"} and worst_step <= 1e-6
              and vs_ref <= 2e-6 and same)
        print(f"{'ok' if ok else 'FAIL'} lsq int4: {len(steps)} trainable steps ({roles}), init "
              f"within {worst_step:.1e} of 2·mean|w|/sqrt(7), forward vs reference {vs_ref:.1e}, "
              f"converted {'equal' if same else 'DIFFERENT'}")
        failures += not ok

    # PEQA: the --quantize layout with trainable scales: the same logits, and
    # the scales are parameters the runtime can change.
    lib, qlib = os.path.join(tmp, "peqa.so"), os.path.join(tmp, "quantized.so")
    results = [qoptc("--graph-passes", "qopt-insert-lsq{weights=int4:group=16,asym peqa=true}",
                     "-o", lib), qoptc("--quantize", "int4:group=16,asym", "-o", qlib)]
    if any(rc for rc, _ in results):
        print(f"FAIL peqa: {[e for rc, e in results if rc][0][-400:]}")
        failures += 1
    else:
        model = qopt.load(lib)
        scales = [p for p in model.parameters if p.name.endswith(".weight.scales")]
        same = all(np.array_equal(a, b) for a, b in zip(logits(lib), logits(qlib)))
        # (q_proj could be a no-op on a one-token case: softmax of one score.)
        name = next((p.name for p in scales if "down_proj" in p.name), "")
        before = model.run(**feeds[cases[0]])[0].copy()
        if name:
            model.set_parameter(name, model.get_parameter(name) * np.float32(1.5))
        moved = rel_error(model.run(**feeds[cases[0]])[0], before)
        ok = (len(scales) == len(linear) and {p.role for p in scales} == {"trainable"}
              and same and moved > 1e-3)
        print(f"{'ok' if ok else 'FAIL'} peqa int4 groups: {len(scales)} trainable scales, "
              f"{'identical to' if same else 'DIFFERENT from'} --quantize, scaling one moves "
              f"the logits {moved:.1e}")
        failures += not ok

    # L4Q: the PEFT adapter's layers become lsq(W + (alpha/r)·B·A), steps
    # 2·mean|W'|/sqrt(7) per output channel; convert packs one matrix.
    adapter = os.path.join(HERE, "peft", "llama-lora")
    config = json.load(open(os.path.join(adapter, "adapter_config.json")))
    factors = read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
    prepare = "qopt-insert-lsq{weights=int4 l4q=true}"
    libs = {k: os.path.join(tmp, f"l4q-{k}.so") for k in ("l4q", "conv", "ref")}
    floats, adapted = dict(base), []
    for key, a in factors.items():
        if key.endswith(".lora_A.weight"):
            n = key[len("base_model.model.m."):-len(".lora_A.weight")] + ".weight"
            b = factors[key.replace("lora_A", "lora_B")]
            w = (base[n] + np.float32(config["lora_alpha"] / config["r"]) * (b @ a)).astype(np.float32)
            step = (2 * np.abs(w).mean(axis=1, dtype=np.float64) / np.sqrt(7)).astype(np.float32)
            floats[n] = (np.clip(np.rint(w / step[:, None]), -8, 7) * step[:, None]).astype(np.float32)
            adapted.append(n)
    write_f32_safetensors(os.path.join(tmp, "l4q-reference.safetensors"), floats)
    results = [qoptc("--adapter", adapter, "--graph-passes", prepare, "-o", libs["l4q"]),
               qoptc("--adapter", adapter, "--graph-passes", prepare + ",qopt-convert-qat",
                     "-o", libs["conv"]),
               qoptc("--weights", os.path.join(tmp, "l4q-reference.safetensors"), "-o", libs["ref"])]
    if any(rc for rc, _ in results):
        print(f"FAIL l4q: {[e for rc, e in results if rc][0][-400:]}")
        failures += 1
    else:
        model = qopt.load(libs["l4q"])
        trainable = sorted(p.name for p in model.parameters if p.role == "trainable")
        l4q, conv, ref = logits(libs["l4q"]), logits(libs["conv"]), logits(libs["ref"])
        vs_ref = max(rel_error(a, b) for a, b in zip(l4q, ref))
        same = converted_same(l4q, conv)
        packed = read_safetensors(os.path.splitext(libs["conv"])[0] + ".safetensors")
        leftovers = [k for k in packed if "lora_" in k or "weight_step" in k]
        # The adapter is inside the quantizer: changing B moves the output.
        name = next(p for p in trainable if p.endswith("down_proj.lora_B.weight"))
        before = model.run(**feeds[cases[0]])[0].copy()
        model.set_parameter(name, model.get_parameter(name) * np.float32(3))
        moved = rel_error(model.run(**feeds[cases[0]])[0], before)
        ok = (len(trainable) == 3 * len(adapted) and vs_ref <= 2e-6 and same and not leftovers
              and moved > 1e-4)
        print(f"{'ok' if ok else 'FAIL'} l4q int4: {len(adapted)} layers, {len(trainable)} "
              f"trainable tensors (A, B, steps), forward vs reference {vs_ref:.1e}, converted "
              f"{'equal' if same else 'DIFFERENT'}, leftovers {leftovers}, B x3 moves the "
              f"logits {moved:.1e}")
        failures += not ok

    # Activations: int8 per token (symmetric) on x, int4 groups of 8 asym on W.
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((3, 16)) * 2).astype(np.float32)
    x[1, 4] = 30.0  # an outlier in one token
    w = rng.standard_normal((6, 16)).astype(np.float32)
    text = """func.func @main(%x: tensor<3x16xf32>, %w: tensor<6x16xf32>) -> tensor<3x6xf32> {
  %y = qopt.linear %x, %w module "fc" : (tensor<3x16xf32>, tensor<6x16xf32>) -> tensor<3x6xf32>
  return %y : tensor<3x6xf32>
}"""
    r = subprocess.run([os.path.join(BIN, "qopt-opt"),
                        "--qopt-insert-fake-quant=weights=int4:group=8,asym "
                        "activations=int8:per-token"], input=text, capture_output=True, text=True)
    s = np.abs(x).max(axis=1, keepdims=True) / np.float32(127)
    xq = (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32)
    wq = np.concatenate([np.stack([int_group(w[r, g:g + 8], 4, True, np.float32(1))
                                   for r in range(6)]) for g in (0, 8)], axis=1)
    want = xq @ wq.T
    got = qopt_check.run_module(r.stdout, [x, w])[0] if not r.returncode else None
    ok = got is not None and np.allclose(got, want, rtol=1e-5, atol=1e-5)
    print(f"{'ok' if ok else 'FAIL'} int8 per-token activations + int4 weights: "
          f"max error {np.max(np.abs(got - want)) if got is not None else r.stderr[-300:]}")
    failures += not ok
    # Static activation scales: int8 per tensor from calibration statistics
    # (each layer's input absmax per channel, as a probe of the model
    # returns the inputs). One layer against numpy, with a calibration
    # range narrower than the input (so values clip)...
    xc = (rng.standard_normal((5, 16))).astype(np.float32)
    stats = os.path.join(tmp, "act-stats.safetensors")
    write_f32_safetensors(stats, {"fc.input_absmax": np.abs(xc).max(axis=0)})
    r = subprocess.run([os.path.join(BIN, "qopt-opt"),
                        "--qopt-insert-fake-quant=activations=int8:per-tensor,static "
                        f"activation-stats={stats}"],
                       input=text, capture_output=True, text=True)
    s = np.float32(np.abs(xc).max() / np.float32(127))
    want = (np.clip(np.rint(x / s), -128, 127) * s).astype(np.float32) @ w.T
    # The frozen scale (a resource blob: 4 bytes of alignment, then the
    # f32), made inline so that the module runs without the runtime.
    blob = re.search(r'fc\.input_scale: "0x([0-9A-F]+)"', r.stdout)
    scale = np.frombuffer(bytes.fromhex(blob.group(1))[4:], np.float32) if blob else None
    got = None
    if scale is not None and scale.size == 1:
        inline = re.sub(r"dense_resource<fc\.input_scale>", f"dense<{float(scale[0])!r}>",
                        r.stdout.split("{-#")[0])
        got = qopt_check.run_module(inline, [x, w])[0]
    ok = (got is not None and scale[0] == s and np.allclose(got, want, rtol=1e-5, atol=1e-5))
    print(f"{'ok' if ok else 'FAIL'} static int8 activations (one layer): max error "
          f"{np.max(np.abs(got - want)) if got is not None else r.stderr[-300:]}")
    failures += not ok

    # ... and the whole model: statistics of case A from a probe of the float
    # model; with the first layer's q/k/v fake-quantized (their inputs do
    # not depend on other fake-quants), the static model equals the dynamic
    # per-tensor one on A and differs on another.
    modules = ["m." + n[:-len(".weight")] for n in linear]
    probe = os.path.join(tmp, "probe.so")
    rc, err = qoptc("--graph-passes", "qopt-expose-layer-inputs{modules=" + ",".join(modules) + "}",
                    "-o", probe)
    a_case, b_case = cases[0], cases[-1]
    if not rc:
        acts = qopt.load(probe).run(**feeds[a_case])
        write_f32_safetensors(stats, {f"{m}.input_absmax": np.abs(v).reshape(-1, v.shape[-1]).max(axis=0)
                                      for m, v in zip(modules, acts)})
        libs = {k: os.path.join(tmp, f"act-{k}.so") for k in ("static", "dynamic")}
        first = ",".join(m for m in modules if "layers.0.self_attn" in m and "o_proj" not in m)
        rc, err = qoptc("--graph-passes", "qopt-insert-fake-quant{activations=int8:per-tensor,static "
                        f"activation-stats={stats} target-modules={first}}}", "-o", libs["static"])
    if not rc:
        rc, err = qoptc("--graph-passes", "qopt-insert-fake-quant{activations=int8:per-tensor "
                        f"target-modules={first}}}", "-o", libs["dynamic"])
    if rc:
        print(f"FAIL static activations (model): {err[-400:]}")
        failures += 1
    else:
        st, dy = qopt.load(libs["static"]), qopt.load(libs["dynamic"])
        scales = [p for p in st.parameters if p.name.endswith(".input_scale")]
        same = np.array_equal(st.run(**feeds[a_case])[0], dy.run(**feeds[a_case])[0])
        other = rel_error(st.run(**feeds[b_case])[0], dy.run(**feeds[b_case])[0])
        ok = same and other > 1e-6 and len(scales) == 3
        print(f"{'ok' if ok else 'FAIL'} static int8 activations (model): {len(scales)} frozen "
              f"input scales; calibrated case {'identical to' if same else 'DIFFERENT from'} "
              f"dynamic per-tensor, another case {other:.1e} away")
        failures += not ok

    # A statistics file without a layer's entry names it.
    write_f32_safetensors(stats, {"m.model.layers.0.mlp.down_proj.input_absmax": np.ones(64, np.float32)})
    rc, err = qoptc("--graph-passes", "qopt-insert-fake-quant{activations=int8:per-tensor,static "
                    f"activation-stats={stats}}}", "-o", os.path.join(tmp, "bad.so"))
    message = next((line for line in err.splitlines() if "error:" in line), "")
    ok = rc != 0 and not os.path.exists(os.path.join(tmp, "bad.so"))
    print(f"{'ok' if ok else 'FAIL'} static activation statistics missing a layer: "
          f"{message[message.find('error:'):]}")
    failures += not ok
print(f"qat: {failures} failures")
sys.exit(1 if failures else 0)
