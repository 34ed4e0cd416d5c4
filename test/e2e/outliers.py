"""Calibration statistics and SmoothQuant on real exports (issue 18).

- qopt-calibrate: every linear layer's per-channel input absmax over the
  tokens the attention mask keeps, against onnxruntime running the same
  export with those inputs as extra outputs (.npz in batches, .jsonl lines
  of different lengths); kept input rows; the metadata.
- qopt-smooth through `qoptc --graph-passes` with `--calibration-data`
  (.npz, or the .qstats file qopt-calibrate wrote): the float model's
  logits are unchanged (relative error <= 1e-5) on Llama-, Qwen2- and
  GPT-2-shaped exports; the smoothed weights equal W·diag(s) with
  SmoothQuant's s computed here in numpy from the statistics and the
  export's own weights; the divisions fold into norms and linear layers
  except where no producer allows it (counted).

Prints one line per check and a summary."""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import read_safetensors, rel_error, safetensors_dtypes  # noqa: E402

failures = 0


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{name}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def run(tool, *args):
    r = subprocess.run([os.path.join(BIN, tool), *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def model_path(name):
    return os.path.join(HERE, "real", name, "model.onnx")


def linear_inputs(path):
    """{module path: input value name} of the export's linear layers
    (MatMul / Gemm with an initializer weight), from the dynamo exporter's
    name scopes."""
    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}
    out = {}
    for n in m.graph.node:
        if n.op_type in ("MatMul", "Gemm") and n.input[1] in inits:
            scopes = [p.value for p in n.metadata_props if p.key == "pkg.torch.onnx.name_scopes"]
            out[eval(scopes[0])[-2]] = (n.input[0], n.input[1], n.op_type)
    return out


def ort_layer_inputs(path, feeds):
    """Each linear layer's input as onnxruntime computes it: [rows, K]."""
    m = onnx.load(path)
    layers = linear_inputs(path)
    for name, (value, _, _) in layers.items():
        m.graph.output.append(onnx.helper.make_tensor_value_info(value, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got = dict(zip(names, sess.run(None, feeds)))
    return {name: got[value].reshape(-1, got[value].shape[-1]) for name, (value, _, _) in layers.items()}


def qstats_metadata(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(size))["__metadata__"]


rng = np.random.default_rng(3)

with tempfile.TemporaryDirectory() as tmp:
    # --- qopt-calibrate against onnxruntime ---------------------------------
    for export in ("llama-dynamo", "gpt2-dynamo"):
        path = model_path(export)
        ids = rng.integers(0, 100, size=(5, 9)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[1, :4] = 0  # left padding
        mask[3, 6:] = 0  # right padding
        npz = os.path.join(tmp, f"{export}.npz")
        np.savez(npz, input_ids=ids, attention_mask=mask, labels=ids)
        stats = os.path.join(tmp, f"{export}.qstats")
        rc, err = run("qopt-calibrate", path, "--data", npz, "-o", stats, "--batch-size", "2",
                      "--keep-rows", "4", "--no-progress")
        report(f"{export} qopt-calibrate npz", rc == 0 and re.match(
            r"qopt-calibrate: \d+ layers over 5 samples \(\d+ tokens\) in [\d.]+ s -> ", err), err[-300:] if rc else "")
        got = read_safetensors(stats)
        ref_max, ref_rows = {}, {}
        keep = mask.reshape(-1).astype(bool)
        for lo in range(0, 5, 2):  # batches of 2, as calibrated
            sl = slice(lo, lo + 2)
            inputs = ort_layer_inputs(path, {"input_ids": ids[sl], "attention_mask": mask[sl]})
            k = mask[sl].reshape(-1).astype(bool)
            for name, x in inputs.items():
                x = x[k]
                ref_max[name] = np.maximum(ref_max.get(name, 0), np.abs(x).max(axis=0))
                ref_rows[name] = np.concatenate([ref_rows.get(name, x[:0]), x])[:4]
        err_max = max(rel_error(got[f"{n}.input_absmax"], r) for n, r in ref_max.items())
        err_rows = max(rel_error(got[f"{n}.input_rows"], r) for n, r in ref_rows.items())
        report(f"{export} absmax of {len(ref_max)} layers vs onnxruntime", err_max <= 1e-5
               and len(got) == 2 * len(ref_max), f"{err_max:.1e}")
        report(f"{export} kept rows vs onnxruntime", err_rows <= 1e-5, f"{err_rows:.1e}")
        meta = qstats_metadata(stats)
        report(f"{export} metadata", meta["format"] == "qopt-stats" and meta["samples"] == "5"
               and meta["tokens"] == str(int(keep.sum())), json.dumps(meta))
        # One sample per line, of different lengths.
        jsonl = os.path.join(tmp, f"{export}.jsonl")
        lines = [rng.integers(0, 100, size=n) for n in (3, 7, 5)]
        with open(jsonl, "w") as f:
            for ln in lines:
                f.write(json.dumps({"input_ids": ln.tolist(), "attention_mask": [1] * len(ln)}) + "\n")
        stats2 = os.path.join(tmp, f"{export}-lines.qstats")
        rc, err = run("qopt-calibrate", path, "--data", jsonl, "-o", stats2, "--no-progress",
                      "--modules", ".*attn.*")
        if rc:
            report(f"{export} jsonl", False, err[-300:])
            continue
        got = read_safetensors(stats2)
        ref = {}
        for ln in lines:
            for name, x in ort_layer_inputs(path, {"input_ids": ln[None], "attention_mask": np.ones((1, len(ln)), np.int64)}).items():
                ref[name] = np.maximum(ref.get(name, 0), np.abs(x).max(axis=0))
        names = [n for n in ref if re.search(r"\battn\b|self_attn", n)]
        err = max(rel_error(got[f"{n}.input_absmax"], ref[n]) for n in names)
        report(f"{export} jsonl lines, --modules '.*attn.*' ({len(got)} layers)", rc == 0 and err <= 1e-5
               and len(got) == len(names), f"{err:.1e}")

    # --- qopt-smooth: the float function is unchanged -----------------------
    ref = np.load(os.path.join(HERE, "real", "llama-dynamo", "reference.npz"))
    for export in ("llama-dynamo", "qwen2-dynamo", "gpt2-dynamo", "llama-torchscript"):
        path = model_path(export)
        refs = np.load(os.path.join(HERE, "real", export, "reference.npz"))
        cases = sorted({k.split(".")[0] for k in refs.files})
        feeds = [{n: refs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases]
        npz = os.path.join(tmp, "calib.npz")
        ids = rng.integers(0, 100, size=(4, 8)).astype(np.int64)
        np.savez(npz, input_ids=ids, attention_mask=np.ones_like(ids))
        base, smooth = os.path.join(tmp, f"{export}.so"), os.path.join(tmp, f"{export}-sm.so")
        graph = os.path.join(tmp, f"{export}-sm.mlir")
        rc0, e0 = run("qoptc", path, "-o", base)
        rc1, e1 = run("qoptc", path, "--graph-passes", "qopt-smooth{alpha=0.5}", "--calibration-data",
                      npz, "-o", smooth, "--dump-graph-ir", graph)
        if rc0 or rc1:
            report(f"{export} smooth compiles", False, (e0 + e1)[-300:])
            continue
        a, b = qopt.load(base), qopt.load(smooth)
        err = max(rel_error(b.run(**f)[0], a.run(**f)[0]) for f in feeds)
        ir = open(graph).read()
        explicit = len(re.findall(r"qopt\.smooth ", ir))
        linears = len(re.findall(r"qopt\.linear ", ir))
        report(f"{export} smoothed logits unchanged ({explicit} explicit qopt.smooth for {linears} "
               f"linear layers)", err <= 1e-5, f"{err:.1e}")
        # SVDQuant's split before quantization: W = B·A + R, R kept float.
        split = os.path.join(tmp, f"{export}-svd.so")
        rc2, e2 = run("qoptc", path, "--graph-passes", "qopt-svdquant{weights= rank=8}", "-o", split)
        err2 = max(rel_error(qopt.load(split).run(**f)[0], a.run(**f)[0]) for f in feeds) if rc2 == 0 else 1
        report(f"{export} SVDQuant's low-rank split leaves the logits unchanged", err2 <= 1e-5,
               f"{err2:.1e}" if rc2 == 0 else e2[-300:])
        del a, b

    # The smoothed weights against SmoothQuant's formula, from a .qstats.
    path = model_path("llama-dynamo")
    stats = os.path.join(tmp, "llama-dynamo.qstats")
    smooth = os.path.join(tmp, "llama-alpha.so")
    rc, err = run("qoptc", path, "--graph-passes", "qopt-smooth{alpha=0.75}", "--calibration-data",
                  stats, "-o", smooth)
    weights = read_safetensors(smooth.replace(".so", ".safetensors"))
    st = read_safetensors(stats)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    layers = linear_inputs(path)
    worst = 0.0

    def factors(group, alpha):
        xmax = np.max([st[f"{n}.input_absmax"] for n in group], axis=0)
        wmax = np.max([np.abs(inits[layers[n][1]].T).max(axis=0) for n in group], axis=0)
        return np.maximum(np.maximum(xmax, 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha), 1e-5)

    p = "m.model.layers.1."
    s_qkv = factors([p + "self_attn.q_proj", p + "self_attn.k_proj", p + "self_attn.v_proj"], 0.75)
    s_gu = factors([p + "mlp.gate_proj", p + "mlp.up_proj"], 0.75)
    s_down = factors([p + "mlp.down_proj"], 0.75)
    expect = {p + "self_attn.q_proj": (s_qkv, 1), p + "self_attn.k_proj": (s_qkv, 1),
              p + "self_attn.v_proj": (s_qkv, 1), p + "mlp.gate_proj": (s_gu, 1),
              # up_proj's rows also absorb down_proj's division (silu(gate) * up).
              p + "mlp.up_proj": (s_gu, 1 / s_down[:, None]),
              p + "mlp.down_proj": (s_down, 1)}
    for n, (cols, rows) in expect.items():
        worst = max(worst, rel_error(weights[f"{n}.weight"], inits[layers[n][1]].T * cols[None, :] * rows))
    report("smoothed q/k/v, gate/up/down weights = W diag(s) (up_proj's rows / down_proj's s), alpha 0.75, qstats file", rc == 0 and worst <= 1e-6,
           f"{worst:.1e}" if rc == 0 else err[-300:])

    # SVDQuant's branch is W's rank-8 truncation (numpy's SVD), the base the
    # rest.
    split = os.path.join(tmp, "llama-svd.so")
    rc, err = run("qoptc", path, "--graph-passes", "qopt-svdquant{weights= rank=8 svd=exact}", "-o", split)
    worst = float("inf")
    if rc == 0:
        got = read_safetensors(split.replace(".so", ".safetensors"))
        worst = 0.0
        for n in (p + "self_attn.q_proj", p + "mlp.down_proj"):
            w = inits[layers[n][1]].T.astype(np.float64)
            u, sv, vt = np.linalg.svd(w, full_matrices=False)
            low = (u[:, :8] * sv[:8]) @ vt[:8]
            worst = max(worst, rel_error(got[f"{n}.svd_B"] @ got[f"{n}.svd_A"], low),
                        rel_error(got[f"{n}.weight"], w - low))
    report("SVDQuant branch = numpy's rank-8 truncation of W, base = the rest", worst <= 1e-5,
           f"{worst:.1e}" if rc == 0 else err[-300:])

    # The 16-bit branch (branch-type=bf16): factors stored as BF16, equal to
    # the truncation to bf16's precision (2^-8 relative), the base exactly
    # W - B~A~ (the rounding moved into it), the logits unchanged.
    split16 = os.path.join(tmp, "llama-svd16.so")
    rc, err = run("qoptc", path, "--graph-passes",
                  "qopt-svdquant{weights= rank=8 svd=exact branch-type=bf16}", "-o", split16)
    worst_f, worst_b, logits16, stored = float("inf"), float("inf"), float("inf"), {}
    if rc == 0:
        file16 = split16.replace(".so", ".safetensors")
        got, stored = read_safetensors(file16), safetensors_dtypes(file16)
        worst_f = worst_b = 0.0
        for n in (p + "self_attn.q_proj", p + "mlp.down_proj"):
            w = inits[layers[n][1]].T.astype(np.float64)
            u, sv, vt = np.linalg.svd(w, full_matrices=False)
            low = (u[:, :8] * sv[:8]) @ vt[:8]
            b16, a16 = got[f"{n}.svd_B"].astype(np.float64), got[f"{n}.svd_A"].astype(np.float64)
            worst_f = max(worst_f, rel_error(b16 @ a16, low))
            worst_b = max(worst_b, rel_error(got[f"{n}.weight"], w - b16 @ a16))
        rng16 = np.random.default_rng(5)
        ids16 = rng16.integers(0, 100, size=(1, 6)).astype(np.int64)
        feed16 = {"input_ids": ids16, "attention_mask": np.ones_like(ids16)}
        base16 = os.path.join(tmp, "llama-base16.so")
        run("qoptc", path, "-o", base16)
        logits16 = rel_error(qopt.load(split16).run(**feed16)[0], qopt.load(base16).run(**feed16)[0])
    factor_types = {stored.get(p + "self_attn.q_proj.svd_A"), stored.get(p + "self_attn.q_proj.svd_B")}
    report("SVDQuant 16-bit branch: factors stored BF16, = the truncation within 1e-2, base = W - B~A~ "
           "within 1e-5, logits unchanged within 1e-5",
           rc == 0 and factor_types == {"BF16"} and worst_f <= 1e-2 and worst_b <= 1e-5 and logits16 <= 1e-5,
           f"{sorted(map(str, factor_types))}, factors {worst_f:.1e}, base {worst_b:.1e}, logits {logits16:.1e}"
           if rc == 0 else err[-300:])

    # Fisher diagonals (qopt-calibrate --fisher, one sample a batch) against
    # central finite differences of the causal-LM loss that onnxruntime's
    # logits give, for a few entries of q_proj's weight (its K x N MatMul
    # initializer), over two samples: mean of squared per-sample gradients.
    fisher_npz = os.path.join(tmp, "fisher.npz")
    fids = rng.integers(0, 100, size=(2, 7)).astype(np.int64)
    fmask = np.ones_like(fids)
    fmask[1, :2] = 0
    np.savez(fisher_npz, input_ids=fids, attention_mask=fmask)
    fstats = os.path.join(tmp, "fisher.qstats")
    rc, err = run("qopt-calibrate", path, "--data", fisher_npz, "-o", fstats, "--fisher",
                  "--modules", "q_proj", "--no-progress")
    worst, checked = float("inf"), 0
    if rc == 0:
        got = read_safetensors(fstats)
        module = "m.model.layers.0.self_attn.q_proj"
        weight_name = layers[module][1]
        m0 = onnx.load(path)
        init = [i for i in m0.graph.initializer if i.name == weight_name][0]
        base_w = numpy_helper.to_array(init).copy()  # K x N

        def loss(w, sample):
            init.CopyFrom(numpy_helper.from_array(w, weight_name))
            sess = ort.InferenceSession(m0.SerializeToString(), providers=["CPUExecutionProvider"])
            logits = sess.run(None, {"input_ids": fids[sample:sample + 1],
                                     "attention_mask": fmask[sample:sample + 1]})[0][0].astype(np.float64)
            labels = np.where(fmask[sample] == 1, fids[sample], -100)
            z = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            keep = labels[1:] != -100
            return -logp[keep, labels[1:][keep]].mean()

        fisher_w = got[f"{module}.weight"]  # N x K, the layer's weight layout
        worst, eps = 0.0, 1e-2
        for (k, n) in [(0, 0), (5, 3), (17, 29), (31, 7)]:
            grads = []
            for sample in range(2):
                w = base_w.copy()
                w[k, n] += eps
                up = loss(w, sample)
                w[k, n] -= 2 * eps
                grads.append((up - loss(w, sample)) / (2 * eps))
            ref = np.mean(np.square(grads))
            worst = max(worst, abs(fisher_w[n, k] - ref) / max(ref, 1e-6))
            checked += 1
    report(f"Fisher diagonal of q_proj = finite differences of onnxruntime's loss ({checked} entries)",
           rc == 0 and worst <= 0.05, f"{worst:.1e}" if rc == 0 else err[-300:])
    # The file feeds LQ-LoRA's Fisher weighting as it is.
    rc, err = run("qoptc", path, "--graph-passes",
                  f"qopt-lq-lora{{weights=int4:group=16 rank=2 fisher={fstats} target-modules=q_proj}}",
                  "-o", os.path.join(tmp, "lq.so"))
    report("LQ-LoRA reads qopt-calibrate's Fisher diagonals", rc == 0, err[-300:] if rc else "")

    # Static activation scales from qoptc --calibration-data (samples) equal
    # those from the .qstats qopt-calibrate wrote for the same samples.
    npz = os.path.join(tmp, "llama-dynamo.npz")
    fq = "qopt-insert-fake-quant{{activations=int8:per-tensor,static{}}}"
    libs = [os.path.join(tmp, f"static{i}.so") for i in range(2)]
    rc0, e0 = run("qoptc", path, "--graph-passes", fq.format(""), "--calibration-data", npz,
                  "--calibration-batch-size", "2", "-o", libs[0])
    rc1, e1 = run("qoptc", path, "--graph-passes", fq.format(" activation-stats=" + stats), "-o", libs[1])
    same = False
    if rc0 == 0 and rc1 == 0:
        a, b = qopt.load(libs[0]), qopt.load(libs[1])
        same = all(np.array_equal(a.run(**f)[0], b.run(**f)[0]) for f in feeds)
    report("static int8 scales from --calibration-data samples = from the .qstats file", same,
           "" if same else (e0 + e1)[-300:])

print(f"outliers: {failures} failed")
