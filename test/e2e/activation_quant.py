"""qoptc --quantize-activations: dynamic per-token activation quantizers
before integer weights run in integers (the kernel library's per-token
path: every quantized layer's product, the quantizer loops gone), and
compute what the quantizers compute in float (the same model compiled with
--no-blas, where the loops run and the products are plain loops): nearly
all tokens exact, a rounding boundary crossed by a last-bit difference
moving one token by a step at most. W8A8 and W4A4 stay within a stated
error of the float model. Static per-tensor scales and the spec's errors.

Prints one line per check and a summary."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402

failures = 0


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{name}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def run(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), *args], capture_output=True, text=True)
    return r.returncode, r.stderr.strip()


def logits(lib, model):
    ref = np.load(os.path.join(os.path.dirname(model), "reference.npz"))
    names = sorted({k.split(".")[0] for k in ref.files if k.startswith("case")})
    m = qopt.load(lib)
    out = []
    for c in names:
        feeds = {k.split(".", 1)[1]: ref[k] for k in ref.files
                 if k.startswith(c + ".") and not k.endswith("logits") and ".logits" not in k}
        out.append((m.run(**feeds)[0], ref.get(f"{c}.logits.valid")))
    return out


def token_errors(a, b):
    """Per valid token: max |a - b| / max |b| (b: the reference)."""
    errs = []
    for (x, valid), (y, _) in zip(a, b):
        e = np.abs(x.astype(np.float64) - y).max(-1) / np.abs(y).max()
        errs.append(e[valid] if valid is not None else e.reshape(-1))
    return np.concatenate(errs)


with tempfile.TemporaryDirectory() as tmp:
    for name, layers in [("llama-dynamo", 14), ("gpt2-torchscript", 8), ("qwen2-dynamo", 14)]:
        model = os.path.join(HERE, "real", name, "model.onnx")
        base = os.path.join(tmp, f"{name}-float.so")
        run(model, "-o", base)
        float_logits = logits(base, model)
        for i, (weights, acts, flag, bound) in enumerate([
                ("int8", "int8:per-token", 4 | 8 << 8, 0.03),
                ("int4:group=32", "int4:per-token", 4 | 4 << 8, 0.5),
                ("int4:group=16,asym", "int8:per-token", 5 | 8 << 8, 0.1)]):
            label = f"{name} --quantize {weights} --quantize-activations {acts}"
            lib = os.path.join(tmp, f"{name}-{i}.so")
            ir = os.path.join(tmp, "a.ll")
            rc, err = run(model, "--quantize", weights, "--quantize-activations", acts,
                          "--dump-llvm-ir", ir, "-o", lib)
            if rc:
                report(label, False, err[-300:])
                continue
            text = open(ir).read()
            flags = re.findall(r"call void @qopt_kernel_qlinear\(i64 \d+, i64 \d+, i64 (\d+)", text)
            integer = sum(int(f) == flag for f in flags)
            report(f"{label}: {layers} integer products, no quantizer loop left",
                   integer == layers and "roundeven" not in text,
                   f"{integer} of {len(flags)} with flags {flag}")
            ref_lib = os.path.join(tmp, f"{name}-{i}-ref.so")
            rc, err = run(model, "--quantize", weights, "--quantize-activations", acts,
                          "--no-blas", "-o", ref_lib)
            got, want = logits(lib, model), logits(ref_lib, model)
            errs = token_errors(got, want)
            exact = float((errs <= 1e-5).mean())
            report(f"  = the quantizers in float (--no-blas) on 90% of tokens <= 1e-5, all <= 5e-3",
                   exact >= 0.9 and errs.max() <= 5e-3,
                   f"{exact:.0%} exact, max {errs.max():.1e}")
            vs_float = token_errors(got, float_logits).max()
            report(f"  vs the float model <= {bound}", vs_float <= bound, f"{vs_float:.1e}")

    # Static per-tensor scales: quantize-dequantize in float, as the pass
    # computes; --quantize-modules selects the layers without --quantize.
    model = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
    ids = np.random.default_rng(0).integers(0, 128, size=(4, 9)).astype(np.int64)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=np.ones_like(ids))
    rc, err = run(model, "--quantize", "int8", "--quantize-activations", "int8:per-tensor,static",
                  "--calibration-data", calib, "-o", os.path.join(tmp, "s.so"))
    rc2, _ = run(model, "--quantize", "int8", "--quantize-activations", "int8:per-tensor,static",
                 "--calibration-data", calib, "--no-blas", "-o", os.path.join(tmp, "s2.so"))
    if rc or rc2:
        report("static per-tensor int8 activations", False, err[-300:])
    else:
        errs = token_errors(logits(os.path.join(tmp, "s.so"), model),
                            logits(os.path.join(tmp, "s2.so"), model))
        report("static per-tensor int8 activations = the quantizers in float <= 1e-5 on 90% of tokens",
               (errs <= 1e-5).mean() >= 0.9, f"max {errs.max():.1e}")
    rc, err = run(model, "--quantize-activations", "int8:per-token", "--quantize-modules", "q_proj",
                  "--dump-graph-ir", os.path.join(tmp, "g.mlir"), "-o", os.path.join(tmp, "m.so"))
    text = open(os.path.join(tmp, "g.mlir")).read() if rc == 0 else ""
    report("--quantize-modules q_proj: 2 activation quantizers, float weights",
           rc == 0 and text.count("qopt.fake_quant") == 2, err[-200:])

    def error(label, *args):
        rc, err = run(model, *args, "-o", os.path.join(tmp, "e.so"))
        msg = err.splitlines()[0] if err else ""
        print(f"error {label}: rc {rc}: {msg.replace(HERE, 'HERE')}"
              f"{'; library left' if os.path.exists(os.path.join(tmp, 'e.so')) else ''}")

    error("bad spec", "--quantize", "int8", "--quantize-activations", "int8:per-row")
    error("weight format", "--quantize", "int8", "--quantize-activations", "nf4")
    error("static without data", "--quantize", "int8", "--quantize-activations", "int8:per-tensor,static")

print(f"activation-quant: {failures} failed")
sys.exit(1 if failures else 0)
