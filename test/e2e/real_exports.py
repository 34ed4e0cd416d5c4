"""Real Hugging Face exports (test/e2e/real, made by make_real_exports.py
with torch + transformers, committed) compiled by qoptc — one library per
model, with dynamic batch and sequence — and run through the runtime's
Python binding at every shape the fixture has. Each output is compared with
torch's own output (at the positions the attention mask keeps) and with
onnxruntime's (everywhere), relative error max|d| / max|ref| <= 1e-4.

  python real_exports.py [NAME ...]    # default: every fixture folder

Prints one line per case and a summary; exits 1 when anything fails.
"""
import json
import os
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import qopt_check  # noqa: E402

REAL = os.path.join(HERE, "real")
TOLERANCE = 1e-4


def rel_error(got, ref, valid=None):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    if valid is not None:
        # valid: [batch, seq] (or the leading dims); broadcast over the rest.
        mask = valid.reshape(valid.shape + (1,) * (ref.ndim - valid.ndim))
        mask = np.broadcast_to(mask, ref.shape)
        got, ref = got[mask], ref[mask]
    if not np.all(np.isfinite(got)):
        return "non-finite values"
    scale = max(np.max(np.abs(ref)), 1e-30) if ref.size else 1.0
    return float(np.max(np.abs(got - ref)) / scale) if ref.size else 0.0


def cases(npz):
    ids = sorted({int(k.split(".")[0][4:]) for k in npz.files})
    return ids


def check_model(name, workdir):
    folder = os.path.join(REAL, name)
    model_path = os.path.join(folder, "model.onnx")
    model = onnx.load(model_path)
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    npz = np.load(os.path.join(folder, "reference.npz"), allow_pickle=False)
    lines, failures = [], 0
    try:
        library = qopt_check.compile_model(model_path, workdir)
    except qopt_check.QOptError as e:
        first = e.message.strip().splitlines()[0] if e.message.strip() else "?"
        return [f"{name}: FAIL compile: {first}"], len(cases(npz)), len(cases(npz))
    import qopt
    compiled = qopt.load(library)
    session = qopt_check.reference_session(model)
    for k in cases(npz):
        feed = {i: npz[f"case{k}.{i}"] for i in inputs}
        shapes = ",".join("x".join(map(str, a.shape)) for a in feed.values())
        try:
            got = compiled.run(**feed)
        except Exception as e:  # the runtime's message
            lines.append(f"{name} case{k} [{shapes}]: FAIL run: {e}")
            failures += 1
            continue
        expected = session.run(None, feed)
        problems = []
        for o, g, e in zip(outputs, got, expected):
            if f"case{k}.{o}" in npz.files:
                valid = npz[f"case{k}.{o}.valid"] if f"case{k}.{o}.valid" in npz.files else None
                err = rel_error(g, npz[f"case{k}.{o}"], valid)
                if not isinstance(err, float) or err > TOLERANCE:
                    problems.append(f"{o} vs torch: {err}")
            err = rel_error(g, e)
            if not isinstance(err, float) or err > TOLERANCE:
                problems.append(f"{o} vs onnxruntime: {err}")
        if problems:
            failures += 1
            lines.append(f"{name} case{k} [{shapes}]: FAIL " + "; ".join(problems))
        else:
            lines.append(f"{name} case{k}: ok")
    return lines, failures, len(cases(npz))


def main():
    names = sys.argv[1:] or sorted(
        d for d in os.listdir(REAL) if os.path.isfile(os.path.join(REAL, d, "model.onnx")))
    total_failures = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            workdir = os.path.join(tmp, name)
            os.makedirs(workdir)
            lines, failures, count = check_model(name, workdir)
            for line in lines:
                print(line, flush=True)
            total += count
            total_failures += failures
    print(f"real exports: {total - total_failures} passed, {total_failures} failed")
    return 1 if total_failures else 0


if __name__ == "__main__":
    sys.exit(main())
