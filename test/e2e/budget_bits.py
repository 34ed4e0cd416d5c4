"""`qoptc model.onnx --quantize int4:group=32,asym --budget-bits B` on the test
Llama (dynamo export): per-layer integer widths within a memory budget.

For each budget, from the table qoptc prints:
- every selected layer is listed once, and the total it reports is the sum
  recomputed here from the widths (codes packed per row, an f32 scale and a
  zero point per group of 32) and is within the budget;
- the total squared error of the chosen widths (measured here with the numpy
  reference of test/e2e/quant_reference.py) is no larger than that of the
  best single width for all layers that fits the budget;
- the compiled model's logits equal (<= 2e-6) those of a float checkpoint
  whose layers were quantized at the chosen widths by the reference;
- a larger budget never gives a layer fewer bits;
and a budget below the 2-bit choice is an error. With Fisher-weighted
errors (`--fisher`), a layer weighted 10^4 times gets 8 bits and the
weighted error is no larger than the best uniform width's; a misshapen
Fisher tensor is an error naming it.

Prints one line per case and a summary."""
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
from checkpoints import read_safetensors, rel_error, write_f32_safetensors  # noqa: E402
from quant_reference import reference  # noqa: E402

REAL = os.path.join(HERE, "real", "llama-dynamo")
MODEL = os.path.join(REAL, "model.onnx")
GROUP = 32
WIDTHS = (2, 3, 4, 5, 6, 8)

base = read_safetensors(os.path.join(HERE, "bnb", "llama-base", "model.safetensors"))
linear = sorted(n for n in base if n.endswith("_proj.weight"))
inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}


def cost(w, bits):
    rows, cols = w.shape
    return rows * (-(-cols * bits // 8) * 8 + -(-cols // GROUP) * 40)


def spec(bits):
    return f"int{bits}:group={GROUP},asym"


deq = {(n, b): reference(base[n], spec(b)) for n in linear for b in WIDTHS}
err = {(n, b): float(np.sum((deq[n, b].astype(np.float64) - base[n]) ** 2))
       for n in linear for b in WIDTHS}
weights = sum(base[n].size for n in linear)
failures = 0
previous = None
with tempfile.TemporaryDirectory() as tmp:
    for i, budget in enumerate((3.5, 4.25, 5.25, 7.0)):
        lib = os.path.join(tmp, f"b{i}.so")
        r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--quantize", spec(4),
                            "--budget-bits", str(budget), "-o", lib],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL budget {budget}: {r.stderr[-400:]}")
            failures += 1
            continue
        rows = re.findall(r"^m\.(\S+)\s+\d+x\d+\s+(\d)\s+([\d.]+)\s+\S+$", r.stderr, re.M)
        total = re.search(r"^total: ([\d.]+) bits per weight", r.stderr, re.M)
        chosen = {m + ".weight": int(b) for m, b, _ in rows}
        problems = []
        if sorted(chosen) != linear or not total:
            problems.append(f"table lists {sorted(chosen)}")
        else:
            spent = sum(cost(base[n], chosen[n]) for n in linear) / weights
            if abs(spent - float(total.group(1))) > 1e-3 or spent > budget:
                problems.append(f"total {total.group(1)} (recomputed {spent:.3f}) vs {budget}")
            mine = sum(err[n, chosen[n]] for n in linear)
            uniform = [sum(err[n, b] for n in linear) for b in WIDTHS
                       if sum(cost(base[n], b) for n in linear) <= budget * weights]
            if uniform and mine > min(uniform) * (1 + 1e-9):
                problems.append(f"error {mine:.4g} above the best uniform width's {min(uniform):.4g}")
            if previous and any(chosen[n] < previous[n] for n in linear):
                problems.append("a larger budget gave a layer fewer bits")
            previous = chosen
            floats = os.path.join(tmp, f"reference-{i}.safetensors")
            write_f32_safetensors(floats, {n: deq[n, chosen[n]] for n in linear})
            flib = os.path.join(tmp, f"f{i}.so")
            subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--weights", floats, "-o", flib],
                           check=True, capture_output=True)
            got, ref = qopt.load(lib), qopt.load(flib)
            worst = max(rel_error(got.run(**feeds[c])[0], ref.run(**feeds[c])[0]) for c in cases)
            if worst > 2e-6:
                problems.append(f"logits {worst:.1e} from the reference")
        widths = sorted(set(chosen.values()))
        print(f"{'FAIL' if problems else 'ok'} budget {budget}: widths {widths}, total "
              f"{total.group(1) if total else '?'} bits per weight{': ' if problems else ''}"
              f"{'; '.join(problems)}")
        failures += bool(problems)
    # Fisher-weighted errors (--fisher): a layer whose errors weigh 10^4
    # times more gets the widest codes; the weighted error of the choice is
    # no larger than the best uniform width's.
    hot = "model.layers.1.mlp.down_proj.weight"
    fisher = {n: np.full(base[n].shape, 1e4 if n == hot else 1.0, np.float32) for n in linear}
    fpath = os.path.join(tmp, "fisher.safetensors")
    write_f32_safetensors(fpath, fisher)
    budget = 4.25
    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--quantize", spec(4),
                        "--budget-bits", str(budget), "--fisher", fpath,
                        "-o", os.path.join(tmp, "fisher.so")], capture_output=True, text=True)
    rows = re.findall(r"^m\.(\S+)\s+\d+x\d+\s+(\d)\s+([\d.]+)\s+\S+$", r.stderr, re.M)
    chosen = {m + ".weight": int(b) for m, b, _ in rows}
    problems = [] if not r.returncode and sorted(chosen) == linear else [r.stderr[-300:]]
    if not problems:
        werr = {k: v * (1e4 if k[0] == hot else 1.0) for k, v in err.items()}
        mine = sum(werr[n, chosen[n]] for n in linear)
        uniform = min(sum(werr[n, b] for n in linear) for b in WIDTHS
                      if sum(cost(base[n], b) for n in linear) <= budget * weights)
        spent = sum(cost(base[n], chosen[n]) for n in linear) / weights
        if chosen[hot] != 8 or mine > uniform * (1 + 1e-9) or spent > budget:
            problems.append(f"{hot} got {chosen[hot]} bits, weighted error {mine:.4g} vs "
                            f"uniform {uniform:.4g}, {spent:.3f} bits per weight")
    print(f"{'FAIL' if problems else 'ok'} fisher-weighted budget {budget}: "
          f"{hot[:-len('.weight')]} gets {chosen.get(hot)} bits{': ' if problems else ''}"
          f"{'; '.join(problems)}")
    failures += bool(problems)
    fisher[hot] = fisher[hot][:, :8]
    write_f32_safetensors(fpath, fisher)
    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--quantize", spec(4),
                        "--budget-bits", str(budget), "--fisher", fpath,
                        "-o", os.path.join(tmp, "y.so")], capture_output=True, text=True)
    message = next((line for line in r.stderr.splitlines() if "error:" in line), "")
    ok = r.returncode != 0 and not os.path.exists(os.path.join(tmp, "y.so"))
    print(f"{'ok' if ok else 'FAIL'} fisher misshapen: {message[message.find('error:'):]}")
    failures += not ok

    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, "--quantize", spec(4),
                        "--budget-bits", "2", "-o", os.path.join(tmp, "x.so")],
                       capture_output=True, text=True)
    ok = r.returncode != 0 and "below the narrowest choice" in r.stderr \
        and not os.path.exists(os.path.join(tmp, "x.so"))
    print(f"{'ok' if ok else 'FAIL'} budget 2: {r.stderr.strip()[:200]}")
    failures += not ok
print(f"budget bits: {failures} failures")
sys.exit(1 if failures else 0)
