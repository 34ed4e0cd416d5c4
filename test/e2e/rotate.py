"""qopt-rotate (QuaRot / HALO) on real exports, and what smoothing and
rotation do to quantization error on a model with outlier channels.

- Invariance: with the residual stream rotated (norm scales folded, offline
  rotations in the embedding, readers and writers, online Hadamards before
  o_proj and down_proj) the float logits are unchanged (<= 1e-5) on the
  Llama / Qwen2 dynamo exports (hidden 32) and on Llama / Qwen2 exports with
  hidden sizes 48 and 80 (Hadamard orders 12 * 4 and 20 * 4; MLPs 96, 160).
- The fold is a rotation: with random=false the embedding table becomes
  E·Hᵀ/√n for H = H_12 ⊗ H_4 built here from Paley's construction.
- Accuracy: the 48-wide Llama with two outlier channels made by a
  function-preserving transform (a norm scale multiplied by 40 on them, the
  weights reading it divided by 40): the logit error (max |error| / max
  |logit|) of W8A8, W4A16 and W4A4 quantization (fake-quant activations,
  --quantize weights) with qopt-smooth and with qopt-rotate against the
  plain quantized model, each below the stated fraction of it; the table is
  docs/Quantization.md's.

Prints one line per check and a summary."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import read_safetensors, rel_error  # noqa: E402

failures = 0


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{name}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def qoptc(model, *args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), model, *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def folder(name):
    real = os.path.join(HERE, "real", name)
    return real if os.path.isdir(real) else os.path.join(HERE, "rotate", name)


def cases(name):
    refs = np.load(os.path.join(folder(name), "reference.npz"))
    keys = sorted({k.split(".")[0] for k in refs.files})
    return [({n: refs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")},
             refs[f"{c}.logits"], refs[f"{c}.logits.valid"] if f"{c}.logits.valid" in refs.files else None)
            for c in keys]


def logits(lib, feeds):
    m = qopt.load(lib)
    return [m.run(**f)[0] for f in feeds]


def paley1(q):
    chi = np.array([0] + [1 if pow(v, (q - 1) // 2, q) == 1 else -1 for v in range(1, q)])
    c = np.zeros((q + 1, q + 1))
    c[0, 1:] = 1
    c[1:, 0] = -1
    a = np.arange(q)
    c[1:, 1:] = chi[(a[:, None] - a[None, :]) % q]
    return np.eye(q + 1) + c


def sylvester(n):
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h


with tempfile.TemporaryDirectory() as tmp:
    # --- invariance -----------------------------------------------------------
    for name in ("llama-dynamo", "qwen2-dynamo", "llama-h48", "qwen2-h80"):
        model = os.path.join(folder(name), "model.onnx")
        data = cases(name)
        feeds = [f for f, _, _ in data]
        base, rot = os.path.join(tmp, f"{name}.so"), os.path.join(tmp, f"{name}-rot.so")
        graph = os.path.join(tmp, f"{name}.mlir")
        rc0, e0 = qoptc(model, "-o", base)
        rc1, e1 = qoptc(model, "--graph-passes", "qopt-rotate{seed=7}", "-o", rot, "--dump-graph-ir", graph)
        if rc0 or rc1:
            report(f"{name} rotate compiles", False, (e0 + e1)[-400:])
            continue
        a, b = logits(base, feeds), logits(rot, feeds)
        err = max(rel_error(y, x) for x, y in zip(a, b))
        torch_err = max(rel_error(y, ref, valid) for y, (_, ref, valid) in zip(b, data))
        ir = open(graph).read()
        online = len(re.findall(r"qopt\.hadamard ", ir))
        report(f"{name} rotated logits unchanged ({online} online qopt.hadamard)",
               err <= 1e-5 and torch_err <= 1e-4, f"{err:.1e} vs unrotated, {torch_err:.1e} vs torch")

    # --- the fold is a rotation: E' = E (H_12 kron H_4)^T / sqrt(48) -----------
    model = os.path.join(folder("llama-h48"), "model.onnx")
    lib = os.path.join(tmp, "plain.so")
    rc, err = qoptc(model, "--graph-passes", "qopt-rotate{random=false online=none}", "-o", lib)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(model).graph.initializer}
    table = [v for k, v in inits.items() if v.shape == (128, 48)][0]
    h = np.kron(paley1(11), sylvester(4)) / np.sqrt(48)
    got = read_safetensors(lib.replace(".so", ".safetensors")) if rc == 0 else {}
    rotated = [v for k, v in got.items() if "embed" in k]
    ok = rc == 0 and len(rotated) == 1 and rel_error(rotated[0], table @ h.T) <= 1e-6
    report("embedding table = E H^T / sqrt(48), H = Paley H_12 kron H_4 (random=false)", ok,
           f"{rel_error(rotated[0], table @ h.T):.1e}" if rc == 0 and rotated else err[-300:])

    # --- accuracy with outlier channels --------------------------------------
    m = onnx.load(model)
    inits = {i.name: i for i in m.graph.initializer}
    scale_names = [n for n, i in inits.items() if tuple(i.dims) == (48,) and "norm" in n]
    # Every norm scale (the exporter may share one initializer between
    # norms) gets two outlier channels; every weight reading a norm's
    # output (K x N MatMul operands with K = 48, the lm_head included)
    # loses them again.
    outliers, factor = [5, 29], 40.0
    for n in scale_names:
        g = numpy_helper.to_array(inits[n]).copy()
        g[outliers] *= factor
        inits[n].CopyFrom(numpy_helper.from_array(g, n))
    readers = set()
    # The reader weights: the MatMuls whose weight is K x N with K = 48 and
    # whose input is not the attention output (o_proj also has K = 48).
    for node in m.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            scopes = [p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
            module = eval(scopes[0])[-2] if scopes else ""
            if module.split(".")[-1] in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "lm_head"):
                readers.add(node.input[1])
    for n in readers:
        w = numpy_helper.to_array(inits[n]).copy()
        w[outliers, :] /= factor
        inits[n].CopyFrom(numpy_helper.from_array(w, n))
    outlier_model = os.path.join(tmp, "outliers.onnx")
    onnx.save(m, outlier_model)
    data = cases("llama-h48")
    feeds = [f for f, _, _ in data]
    ids = np.random.default_rng(1).integers(0, 128, size=(4, 12)).astype(np.int64)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=np.ones_like(ids))
    # (scheme, the flags that quantize, the largest error ratio asserted
    # for smoothing and for rotation against the plain quantized model).
    # SVDQuant (smoothing, a rank-4 float branch, the residual quantized as
    # the row's weights) as a third method, with its own bound.
    schemes = [
        ("W8A8 (int8 per channel, activations per tensor)", "fq",
         ("int8", "int8:per-tensor"), 0.25, 0.25, 0.25),
        ("W8A8 (activations per token)", "fq", ("int8", "int8:per-token"), 0.25, 0.25, 0.25),
        ("W4A16 (int4 groups of 16)", "quantize", ("int4:group=16", None), 0.75, 0.75, 0.5),
        ("W4A4 (int4 groups of 16, activations per token)", "fq",
         ("int4:group=16", "int4:per-token"), 0.5, 0.25, 0.25),
    ]

    def build(tag, scheme_kind, spec, outlier_pass):
        lib = os.path.join(tmp, f"acc-{tag}.so")
        passes, args = [], []
        wspec, aspec = spec if spec else (None, None)
        if outlier_pass in ("smooth", "svdquant"):
            passes.append("qopt-smooth{alpha=0.5}")
            args += ["--calibration-data", calib]
        if outlier_pass == "rotate":
            passes.append("qopt-rotate{seed=3}")
        if outlier_pass == "svdquant":
            # The residual takes the weights' format; activations as the row.
            passes.append(f"qopt-svdquant{{weights={wspec} rank=4}}")
            if aspec:
                passes.append(f"qopt-insert-fake-quant{{activations={aspec}}}")
        elif scheme_kind == "fq":
            passes.append(f"qopt-insert-fake-quant{{weights={wspec} activations={aspec}}}")
        elif scheme_kind == "quantize":
            args += ["--quantize", wspec]
        if passes:
            args += ["--graph-passes", ",".join(passes)]
        rc, err = qoptc(outlier_model, *args, "-o", lib)
        if rc:
            report(f"outlier model {tag} compiles", False, err[-400:])
            return None
        return logits(lib, feeds)

    ref = build("float", None, None, None)
    invariant = max(rel_error(x, r, v) for x, (_, r, v) in zip(ref, data))
    report("outlier model computes the original function", invariant <= 1e-4, f"{invariant:.1e}")
    print("| scheme | plain | qopt-smooth | qopt-rotate | SVDQuant (rank 4) |")
    for i, (label, kind, spec, smooth_max, rotate_max, svd_max) in enumerate(schemes):
        e = {}
        for method in ("plain", "smooth", "rotate", "svdquant"):
            out = build(f"{i}-{method}", kind, spec, method)
            e[method] = max(rel_error(y, x) for x, y in zip(ref, out)) if out else float("inf")
        print(f"| {label} | {e['plain']:.3f} | {e['smooth']:.3f} | {e['rotate']:.3f} | {e['svdquant']:.3f} |")
        report(f"{label}: smoothed error <= {smooth_max} x plain", e["smooth"] <= smooth_max * e["plain"])
        report(f"{label}: rotated error <= {rotate_max} x plain", e["rotate"] <= rotate_max * e["plain"])
        report(f"{label}: SVDQuant error <= {svd_max} x plain", e["svdquant"] <= svd_max * e["plain"])

print(f"rotate: {failures} failed")
