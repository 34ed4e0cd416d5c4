"""Every built-in recipe compiles and runs on the test Llama (dynamo export),
and computes what its parts compute alone:

- adapter recipes whose init keeps the function (lora, dora, pissa) give
  the float model's logits; qlora gives --quantize nf4 + double quant's;
  peqa --quantize int4 groups' (its scales only become trainable); fp8 and
  mxfp4 give their --quantize spec's;
- the others (loftq, l4q, lq-lora, smoothquant-w8a8, quarot-w4a16,
  quarot-w4a4, svdquant-w4a4) stay within a stated error of the float
  model (on this 32-wide model svdquant-w4a4's rank-32 branch holds the
  whole weight; SVDQuant's accuracy is rotate.test's);
- qopt-opt --qopt-recipe=NAME --print-pipeline prints the passes; a
  user's YAML recipe works the same way; its mistakes are errors naming
  the file, line and key.

Prints one line per check and a summary."""
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
from checkpoints import rel_error  # noqa: E402

MODEL = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
refs = np.load(os.path.join(HERE, "real", "llama-dynamo", "reference.npz"))
cases = sorted({k.split(".")[0] for k in refs.files})
feeds = [{n: refs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases]
failures = 0


def report(name, ok, detail=""):
    global failures
    failures += not ok
    print(f"{name}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def run(tool, *args):
    r = subprocess.run([os.path.join(BIN, tool), *args], capture_output=True, text=True)
    return r.returncode, r.stdout, r.stderr.strip()


def logits(lib):
    m = qopt.load(lib)
    return [m.run(**f)[0] for f in feeds]


def error(a, b):
    return max(rel_error(x, y) for x, y in zip(a, b))


# (recipe, what it must equal: a list of qoptc flags, or None for the float
# model; the largest relative error allowed against it)
EXPECT = {
    "lora": (None, 1e-6), "dora": (None, 1e-6), "pissa": (None, 1e-5),
    "qlora": (["--quantize", "nf4:block=64,double-quant"], 1e-6),
    "peqa": (["--quantize", "int4:group=32,asym"], 1e-6),
    "fp8": (["--quantize", "fp8-e4m3:per-channel"], 0.0),
    "mxfp4": (["--quantize", "mxfp4"], 0.0),
    "loftq": (None, 0.25), "l4q": (None, 0.25), "lq-lora": (None, 0.25),
    "smoothquant-w8a8": (None, 0.05), "quarot-w4a16": (None, 0.25),
    "quarot-w4a4": (None, 0.5), "svdquant-w4a4": (None, 0.5),
}

with tempfile.TemporaryDirectory() as tmp:
    ids = np.random.default_rng(0).integers(0, 128, size=(4, 9)).astype(np.int64)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=np.ones_like(ids))
    rc, listing, err = run("qoptc", "--list-recipes")
    names, needs = [], set()
    for line in listing.splitlines():
        if line and not line.startswith(" "):
            names.append(line.split(":")[0])
        elif line.strip() == "needs: --calibration-data":
            needs.add(names[-1])
    report(f"--list-recipes names {len(names)} recipes, each with a paper",
           rc == 0 and sorted(names) == sorted(EXPECT) and listing.count("  paper: ") == len(names),
           ", ".join(names))
    base = os.path.join(tmp, "float.so")
    run("qoptc", MODEL, "-o", base)
    ref = logits(base)
    for name, (equal_to, tolerance) in EXPECT.items():
        lib = os.path.join(tmp, f"{name}.so")
        args = ["--recipe", name, "-o", lib]
        if name in needs:
            args += ["--calibration-data", calib]
        rc, _, err = run("qoptc", MODEL, *args)
        if rc:
            report(f"recipe {name} compiles", False, err[-400:])
            continue
        got = logits(lib)
        finite = all(np.isfinite(g).all() for g in got)
        if equal_to is None:
            e, what = error(got, ref), "float model"
        else:
            other = os.path.join(tmp, f"{name}-parts.so")
            rc, _, err = run("qoptc", MODEL, *equal_to, "-o", other)
            e, what = (error(got, logits(other)), " ".join(equal_to)) if rc == 0 else (float("inf"), err)
        report(f"recipe {name} runs; vs {what} <= {tolerance:g}", finite and e <= tolerance, f"{e:.1e}")

    # The pipeline qopt-opt runs for a recipe.
    rc, out, err = run("qopt-opt", "--qopt-recipe=qlora", "--print-pipeline")
    report("qopt-opt --qopt-recipe=qlora --print-pipeline", rc == 0 and out.startswith("builtin.module(")
           and "qopt-quantize-weights{" in out and "format=nf4" in out and "double-quant=true" in out
           and "qopt-insert-lora{" in out and "target-modules={all-linear}" in out and " r=16" in out, out.strip())
    rc, out, err = run("qopt-opt", "--qopt-recipe=smoothquant-w8a8", "--print-pipeline")
    report("smoothquant-w8a8 pipeline: smoothing before quantization", rc == 0
           and 0 <= out.find("qopt-smooth{") < out.find("qopt-quantize-weights{")
           < out.find("qopt-insert-fake-quant{")
           and "activations=int8:per-token" in out, out.strip())

    # A user's recipe, and its mistakes.
    mine = os.path.join(tmp, "mine.yaml")
    with open(mine, "w") as f:
        f.write("name: mine\nsummary: int8 weights, a rank-4 adapter on q and v\n"
                "quantize: int8\nadapter:\n  r: 4\n  lora_alpha: 8\n  target_modules: [q_proj, v_proj]\n")
    lib = os.path.join(tmp, "mine.so")
    rc, _, err = run("qoptc", MODEL, "--recipe", mine, "-o", lib)
    other = os.path.join(tmp, "mine-parts.so")
    rc2, _, _ = run("qoptc", MODEL, "--quantize", "int8", "-o", other)
    e = error(logits(lib), logits(other)) if rc == 0 and rc2 == 0 else float("inf")
    report("a user's recipe file = its parts", e <= 1e-6, f"{e:.1e}" if rc == 0 else err[-300:])

    def bad(label, text, *extra):
        path = os.path.join(tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write(text)
        rc, _, err = run("qoptc", MODEL, "--recipe", path, "-o", os.path.join(tmp, "out", "bad.so"), *extra)
        first = [l for l in err.splitlines() if "error: " in l]
        msg = first[0].split("error: ", 1)[1] if first else "(no error)"
        left = os.path.exists(os.path.join(tmp, "out"))
        print(f"error {label}: rc {rc}{' LEFT' if left else ''}: {msg.replace(tmp, 'DIR')}")

    bad("unknown key", "name: x\nquantise: int8\n")
    bad("bad quantize", "name: x\nquantize: int9\n")
    bad("adapter not a mapping", "name: x\nadapter: 16\n")
    bad("bad adapter key", "name: x\nadapter:\n  r: 4\n  lora_alhpa: 8\n")
    bad("bad flag", "name: x\nint8-activations: maybe\n")
    bad("bad activations", "name: x\nquantize-activations: int8:per-row\n")
    bad("no name", "quantize: int8\n")
    bad("unterminated quote in the adapter", "name: x\nadapter:\n  r: 16\n  target_modules: \"q_proj\n")
    bad("not a mapping", "- int8\n")
    bad("clash", "name: x\nquantize: int8\n", "--quantize", "int4")
    bad("calibration missing", "name: x\ngraph-passes: qopt-smooth\ncalibration: required\n")
    bad("bad pass", "name: x\ngraph-passes: qopt-smooth{beta=1}\n", "--calibration-data", calib)
    rc, _, err = run("qoptc", MODEL, "--recipe", "qlorax", "-o", os.path.join(tmp, "x.so"))
    print(f"error unknown recipe: rc {rc}: {err.split('error: ', 1)[-1]}")
    pattern = os.path.join(tmp, "pattern.yaml")
    with open(pattern, "w") as f:
        f.write("name: pattern\nadapter:\n  r: 8\n  target_modules: [q_proj]\n  rank_pattern: {q_proj: 4}\n")
    rc, _, err = run("qopt-opt", f"--qopt-recipe={pattern}", "--print-pipeline")
    print(f"error qopt-opt rank_pattern: rc {rc}: {err.replace(tmp, 'DIR')}")
    rc, _, err = run("qopt-opt", "--qopt-recipe=nope", "--print-pipeline")
    print(f"error qopt-opt unknown recipe: rc {rc}: {err}")

# docs/Recipes.md shows each built-in recipe as its file holds it.
doc = open(os.path.join(HERE, "..", "..", "docs", "Recipes.md")).read()
stale = []
for name in EXPECT:
    text = open(os.path.join(HERE, "..", "..", "recipes", f"{name}.yaml")).read()
    body = "\n".join(l for l in text.splitlines()
                     if not l.startswith(("#", "summary:", "paper:", "name:"))).strip()
    section = doc.split(f"### `{name}`", 1)
    if len(section) < 2 or f"```yaml\n{body}\n```" not in section[1].split("### ", 1)[0]:
        stale.append(name)
report("docs/Recipes.md shows every recipe's file", not stale, ", ".join(stale))

print(f"recipes: {failures} failed")
