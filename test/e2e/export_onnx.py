"""qoptc --export-onnx: the rewritten model as ONNX that onnxruntime runs.

For every recipe on the test Llama, and for quantized weights, PEFT
adapters, smoothing, rotations and SVDQuant on the other exports, the
exported file run by onnxruntime gives qopt's own compiled logits. The
reference session uses ORT_ENABLE_BASIC: at its default level onnxruntime
fuses DequantizeLinear -> MatMul into kernels that quantize the
activations to int8 (MatMulNBits accuracy_level 4, DynamicQuantizeMatMul),
which changes the numbers by that quantization's error; that error is
reported too, within a looser bound. With adapters, the export also gives
PEFT's own logits. Without passes, the export equals the original model.
The export's form is checked (MatMulNBits, DequantizeLinear block-wise at
opset 21 with int4 / uint4 initializers, codebook Gathers, Hadamard
MatMuls, weights in <out>.data), and export errors leave no file behind.

Prints one line per check and a summary."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import rel_error  # noqa: E402

REAL = os.path.join(HERE, "real")
PEFT = os.path.join(HERE, "peft")
with open(os.path.join(PEFT, "index.json")) as f:
    PEFT_INDEX = json.load(f)
failures = 0


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{name}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def run(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def model_path(name):
    return os.path.join(REAL, name, "model.onnx") if "/" not in name else name


def cases(model):
    ref = np.load(os.path.join(os.path.dirname(model), "reference.npz"))
    names = sorted({k.split(".")[0] for k in ref.files if k.startswith("case")})
    return ref, names


def session(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC):
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    return ort.InferenceSession(path, options)


def feeds_of(sess, ref, names):
    return [{i.name: ref[f"{c}.{i.name}"] for i in sess.get_inputs()} for c in names]


def compare(label, model, args, tmp, tol=1e-5, default_tol=None, peft=None,
            int8_activations=False, flips=False):
    """Compiles `model` with `args` and --export-onnx; the export run by
    onnxruntime must give the library's logits (and PEFT's, given its
    folder). With int8_activations (--int8-activations: qopt quantizes the
    activations of quantized layers to int8 as onnxruntime's fused kernels
    do), the exact comparison is at onnxruntime's default level and the
    looser one at ORT_ENABLE_BASIC. Returns the export's path, or None."""
    out = os.path.join(tmp, label.replace(" ", "_").replace("/", "_"))
    rc, err = run(model, *args, "--export-onnx", out + ".onnx", "-o", out + ".so")
    if rc:
        report(f"{label}", False, err[-400:])
        return None
    ref, names = cases(model)
    exact, loose = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if int8_activations:
        exact, loose = loose, exact
    sess = session(out + ".onnx", exact)
    lib = qopt.load(out + ".so")
    feeds = feeds_of(sess, ref, names)
    got = [sess.run(None, f)[0] for f in feeds]
    want = [lib.run(**f)[0] for f in feeds]
    valid = [ref[f"{c}.logits.valid"] if f"{c}.logits.valid" in ref.files else None for c in names]
    worst = max(rel_error(g, w, v) for g, w, v in zip(got, want, valid))
    detail = f"{worst:.1e}"
    ok = worst <= tol
    if flips:
        # Activation quantizers: a last-bit difference upstream (a norm's
        # kernel) may move one value across a rounding boundary, and that
        # token's logits by one step. Nearly all tokens must be exact.
        exact = total = 0
        for g, w, v in zip(got, want, valid):
            err = np.abs(g.astype(np.float64) - w).max(-1) / np.abs(w).max()
            err = err[v] if v is not None else err.reshape(-1)
            exact += int((err <= tol).sum())
            total += err.size
        ok = exact >= 0.9 * total and worst <= 5e-3
        detail += f"; {exact}/{total} tokens exact, the rest <= 5e-3"
    if default_tol is not None:
        dsess = session(out + ".onnx", loose)
        dworst = max(rel_error(dsess.run(None, f)[0], w) for f, w in zip(feeds, want))
        ok = ok and dworst <= default_tol
        detail += (f"; at {'ORT_ENABLE_BASIC' if int8_activations else 'the default level'}"
                   f" {dworst:.1e} <= {default_tol}")
    if peft:
        # PEFT's own logits on its reference inputs.
        pref = np.load(os.path.join(peft, "reference.npz"))
        output = PEFT_INDEX["cases"][os.path.basename(peft)]["output"]
        pcases = sorted({k.split(".")[0] for k in pref.files if k.startswith("case")})
        pworst = 0.0 if pcases else float("inf")
        for f, c in zip(feeds_of(sess, pref, pcases), pcases):
            key = f"{c}.{output}.valid"
            valid = pref[key] if key in pref.files else None
            pworst = max(pworst, rel_error(sess.run(None, f)[0], pref[f"{c}.{output}"], valid))
        ok = ok and pworst <= 1e-4
        detail += f"; vs PEFT {pworst:.1e} <= 1e-4"
    level = "default level" if int8_activations else "ORT_ENABLE_BASIC"
    bound = f"<= {tol}" if not flips else f"on 90% of tokens <= {tol}, all <= 5e-3"
    report(f"{label}: onnxruntime ({level}) on the export = qopt {bound}", ok, detail)
    return out + ".onnx"


def ops(path):
    m = onnx.load(path, load_external_data=False)
    return m, {(n.domain or "ai.onnx", n.op_type) for n in m.graph.node}


def opset(m):
    return max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


def data_bytes(path):
    return os.path.getsize(path + ".data")


with tempfile.TemporaryDirectory() as tmp:
    llama = model_path("llama-dynamo")
    ids = np.random.default_rng(0).integers(0, 128, size=(4, 9)).astype(np.int64)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=np.ones_like(ids))

    # Without passes every linear layer is re-emitted as a MatMul of its
    # weight: the export computes what the original model does.
    for name in ["llama-dynamo", "gpt2-torchscript", "bert-dynamo", "t5-encoder-dynamo",
                 "vit-dynamo", "whisper-encoder-dynamo", "resnet-dynamo", "phi3-dynamo"]:
        model = model_path(name)
        out = os.path.join(tmp, f"float-{name}.onnx")
        rc, err = run(model, "--export-onnx", out)
        if rc:
            report(f"float export {name}", False, err[-300:])
            continue
        ref, names = cases(model)
        a, b = session(out), session(model)
        worst = max(rel_error(a.run(None, f)[0], b.run(None, f)[0]) for f in feeds_of(a, ref, names))
        report(f"float export {name} = the original model <= 1e-6", worst <= 1e-6, f"{worst:.1e}")
    report("--export-onnx without -o writes no library",
           not any(f.endswith(".so") for f in os.listdir(tmp)))

    # Every recipe.
    recipes = {}
    for recipe in ["lora", "dora", "pissa", "loftq", "qlora", "l4q", "peqa", "lq-lora",
                   "smoothquant-w8a8", "quarot-w4a16", "quarot-w4a4", "svdquant-w4a4",
                   "fp8", "mxfp4"]:
        extra = ["--calibration-data", calib] if recipe in ("smoothquant-w8a8", "svdquant-w4a4") else []
        recipes[recipe] = compare(f"recipe {recipe}", llama, ["--recipe", recipe, *extra], tmp,
                                  default_tol=0.05,
                                  flips=recipe in ("smoothquant-w8a8", "quarot-w4a4", "svdquant-w4a4"))

    def has(path, *wanted):
        if not path:
            return False
        _, present = ops(path)
        return all(w in present for w in wanted)

    report("quarot-w4a16 export: MatMulNBits, online Hadamards as MatMuls",
           has(recipes["quarot-w4a16"], ("com.microsoft", "MatMulNBits"))
           and any(".hadamard" in t.name for t in ops(recipes["quarot-w4a16"])[0].graph.initializer))
    report("quarot-w4a4 export: per-token activation quantization (Round, Clip)",
           has(recipes["quarot-w4a4"], ("ai.onnx", "Round"), ("ai.onnx", "Clip"),
               ("ai.onnx", "ReduceMax")))
    report("qlora export: NF4 codebook Gathers, LoRA factors",
           has(recipes["qlora"], ("ai.onnx", "Gather"))
           and any(".codebook" in t.name for t in ops(recipes["qlora"])[0].graph.initializer)
           and any(".lora_A" in t.name for t in ops(recipes["qlora"])[0].graph.initializer))
    report("svdquant-w4a4 export: the low-rank branch",
           recipes["svdquant-w4a4"] is not None
           and any(".svd_A" in t.name for t in ops(recipes["svdquant-w4a4"])[0].graph.initializer))
    m = onnx.load(recipes["lora"], load_external_data=False) if recipes["lora"] else None
    external = m and all(t.data_location == onnx.TensorProto.EXTERNAL
                         for t in m.graph.initializer if np.prod(t.dims) * 4 > 1024)
    report("weights over 1 KiB lie in <out>.onnx.data", bool(external))

    # ai.onnx only: DequantizeLinear block-wise, int4 / uint4 at opset 21.
    for spec, dtype in [("int4:group=16", onnx.TensorProto.INT4),
                        ("int4:group=16,asym", onnx.TensorProto.UINT4),
                        ("int8:group=16", onnx.TensorProto.INT8),
                        ("int4", onnx.TensorProto.INT4), ("int3:group=16", onnx.TensorProto.INT4),
                        ("nf4:block=64,double-quant", None), ("fp8-e4m3:per-channel", None),
                        ("mxfp4", None), ("nvfp4", None)]:
        path = compare(f"--quantize {spec} --export-onnx-contrib=false", llama,
                       ["--quantize", spec, "--export-onnx-contrib=false"], tmp, default_tol=0.05)
        if not path:
            continue
        m, present = ops(path)
        ok = all(d == "ai.onnx" for d, _ in present)
        if dtype is None:
            # Codebook formats: every quantized layer (all 14 but the head)
            # is a Gather of its table, none stored dequantized.
            ok = ok and sum(".codebook" in t.name for t in m.graph.initializer) == 14
        if dtype is not None:
            blocked = [n for n in m.graph.node if n.op_type == "DequantizeLinear"
                       and any(a.name == "block_size" for a in n.attribute)]
            ok = ok and opset(m) == 21 and any(t.data_type == dtype for t in m.graph.initializer)
            ok = ok and (bool(blocked) or "group" not in spec)
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as e:  # noqa: BLE001
            ok = False
            print(f"  checker: {str(e)[:200]}")
        report(f"  {spec}: ai.onnx operators only, opset {opset(m)}, passes onnx.checker", ok)

    # Before opset 18 (TorchScript exports) grouped int4 codes have no
    # DequantizeLinear: stored dequantized, with a note.
    path = os.path.join(tmp, "old-opset.onnx")
    rc, err = run(model_path("llama-torchscript"), "--quantize", "int4:group=16",
                  "--export-onnx-contrib=false", "--export-onnx", path)
    report("opset 17, int4 groups, ai.onnx only: stored dequantized with a note",
           rc == 0 and "at opset 17 (before 18) have no block-wise DequantizeLinear; "
           "stored dequantized (f32)" in err and opset(ops(path)[0]) == 17)

    # Stored size: 4-bit codes against the float export.
    float_bytes = data_bytes(os.path.join(tmp, "float-llama-dynamo.onnx"))
    for spec, bound in [("int4:group=32", 0.45), ("nf4:block=64", 0.6)]:
        path = compare(f"--quantize {spec}", llama, ["--quantize", spec], tmp)
        if path:
            ratio = data_bytes(path) / float_bytes
            report(f"  {spec}: weights file {ratio:.2f} x the float export's <= {bound}", ratio <= bound)

    # Other architectures, PEFT adapters (their logits too), LayerNorm
    # smoothing, rotations of non-power-of-two sizes, SVDQuant.
    for name in ["gpt2-dynamo", "gpt2-torchscript", "qwen2-dynamo", "bert-torchscript",
                 "llama-torchscript", "t5-decoder-dynamo", "mistral-dynamo"]:
        compare(f"{name} --quantize int4:group=16", model_path(name), ["--quantize", "int4:group=16"], tmp)
    for adapter, name, extra in [("llama-lora", "llama-dynamo", []),
                                 ("llama-dora-rslora", "llama-dynamo", []),
                                 ("gpt2-lora", "gpt2-dynamo", []),
                                 ("bert-lora", "bert-dynamo", []),
                                 ("llama-embed", "llama-dynamo", []),
                                 ("gemma-embed-rslora", "gemma-dynamo", []),
                                 ("llama-lora", "llama-torchscript", ["--quantize", "nf4:block=64,double-quant"])]:
        compare(f"{name} --adapter {adapter} {' '.join(extra)}".strip(), model_path(name),
                ["--adapter", os.path.join(PEFT, adapter), *extra], tmp,
                peft=None if extra else os.path.join(PEFT, adapter))
    for name in ["gpt2-dynamo", "gpt2-torchscript", "qwen2-dynamo"]:
        compare(f"{name} smooth + int8 + per-token int8 activations", model_path(name),
                ["--graph-passes", "qopt-smooth{alpha=0.5},qopt-insert-fake-quant{activations=int8:per-token}",
                 "--quantize", "int8", "--calibration-data", calib], tmp, flips=True)
    compare("qwen2-dynamo svdquant-w4a4", model_path("qwen2-dynamo"),
            ["--recipe", "svdquant-w4a4", "--calibration-data", calib], tmp, flips=True)
    for name in ["llama-h48", "qwen2-h80"]:
        path = compare(f"{name} rotated, int4 weights, int4 per-token activations",
                       os.path.join(HERE, "rotate", name, "model.onnx"),
                       ["--graph-passes", "qopt-rotate{seed=0},qopt-insert-fake-quant{activations=int4:per-token}",
                        "--quantize", "int4:group=16"], tmp, flips=True)
        if path:
            sizes = {tuple(t.dims) for t in ops(path)[0].graph.initializer if ".hadamard" in t.name}
            report(f"  {name}: online Hadamards as MatMuls by factors of orders {sorted(s[0] for s in sizes)}", bool(sizes))
    path = compare("llama-h48 static per-tensor int8 activations",
                   os.path.join(HERE, "rotate", "llama-h48", "model.onnx"),
                   ["--graph-passes", "qopt-insert-fake-quant{activations=int8:per-tensor,static}",
                    "--calibration-data", calib], tmp, flips=True)
    report("  static scales: QuantizeLinear / DequantizeLinear pairs",
           has(path, ("ai.onnx", "QuantizeLinear"), ("ai.onnx", "DequantizeLinear")))

    # A layer reading another layer's output directly (x · W1ᵀ · W2ᵀ): the
    # second reads the first's rewritten output.
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(1)
    w1 = rng.standard_normal((16, 32)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((32, 8)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "model.up.weight"], ["h"], name="up"),
         helper.make_node("MatMul", ["h", "model.down.weight"], ["y"], name="down")],
        "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 8])],
        [numpy_helper.from_array(w1, "model.up.weight"), numpy_helper.from_array(w2, "model.down.weight")])
    chain_dir = os.path.join(tmp, "chain")
    os.makedirs(chain_dir)
    chain = os.path.join(chain_dir, "model.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), chain)
    x = rng.standard_normal((5, 16)).astype(np.float32)
    np.savez(os.path.join(chain_dir, "reference.npz"), **{"case0.x": x})
    for spec in ["int8", "int4:group=16"]:
        compare(f"two chained layers --quantize {spec}", chain,
                ["--quantize", spec, "--quantize-modules", ".*"], tmp)

    # Errors: a message naming the layer or flag, rc 1, no file left.
    def error(label, *args, out=None):
        target = out or os.path.join(tmp, "err", "e.onnx")
        os.makedirs(os.path.dirname(target), exist_ok=True) if not out else None
        rc, err = run(*args, "--export-onnx", target, "-o", os.path.join(tmp, "err", "e.so"))
        left = [f for f in os.listdir(os.path.join(tmp, "err"))] if os.path.isdir(os.path.join(tmp, "err")) else []
        msg = err.splitlines()[0] if err else ""
        msg = msg.replace(tmp, "DIR").replace(HERE, "HERE")
        print(f"error {label}: rc {rc}: {msg}{'; files left: ' + ', '.join(left) if left else ''}")

    error("mlir input", os.path.join(HERE, "..", "Dialect", "QOpt", "ops.mlir"))
    error("train", llama, "--lora-config", os.path.join(PEFT, "fresh-lora-config.json"), "--train")
    error("bnb fake-quant weights", llama, "--graph-passes",
          "qopt-insert-fake-quant{weights=nf4:block=64}")
    error("unwritable", llama, out=os.path.join(tmp, "missing", "dir", "e.onnx"))
    rc, err = run(llama, "--export-onnx-contrib=false", "-o", os.path.join(tmp, "x.so"))
    print(f"error contrib without export: rc {rc}: {err.splitlines()[0] if err else ''}")

print(f"export-onnx: {failures} failed")
sys.exit(1 if failures else 0)
