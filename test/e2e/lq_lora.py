"""LQ-LoRA (`qopt-lq-lora`, run by `qoptc --graph-passes`) on the test Llama
(dynamo export): W ≈ Q + B·A, checked against a numpy reference of the same
algorithm (quantizers of test/e2e/quant_reference.py, numpy's SVD in
float64):

- one round: Q is the plain quantization of W, B·A the top-r SVD of what it
  lost; the compiled model's logits equal (<= 1e-5) those of a float
  checkpoint holding deq(Q) + B·A from the reference, for NF4 (blocks of
  64) and int4 groups asym, and the factors are trainable parameters;
- the randomized SVD: one round's error per layer within 1% of the exact
  reference's;
- ten rounds: every layer's error (from the table qoptc prints) is below
  its one-round error and within 2% of the reference's;
- Fisher weighting (a synthetic Fisher file with strong row / column
  structure, named without the export's wrapper prefix): one round equals
  the reference's weighted SVD (logits <= 1e-5), and its weighted error is
  below the unweighted decomposition's;
- budget (int4 groups of 16, asym; widths 2–8, ranks 0 / 2 / 4, one
  round): the total the table prints equals the one recomputed from the
  chosen (bits, rank) and fits the budget, its total error is no larger
  than the best uniform choice that fits, and the logits equal the
  reference of the chosen choices;
- errors of the Fisher file (a missing tensor, a wrong shape, a negative
  value, a tensor that matches no layer) name it.

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
base = read_safetensors(os.path.join(HERE, "bnb", "llama-base", "model.safetensors"))
linear = sorted(n for n in base if n.endswith("_proj.weight"))
inputs = np.load(os.path.join(REAL, "reference.npz"))
cases = sorted({k.split(".")[0] for k in inputs.files})
feeds = {c: {n: inputs[f"{c}.{n}"] for n in ("input_ids", "attention_mask")} for c in cases}
failures = 0


def qoptc(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), MODEL, *args], capture_output=True, text=True)
    return r.returncode, r.stderr


def logits(lib):
    m = qopt.load(lib)
    return [m.run(**feeds[c])[0] for c in cases]


def table(text):
    """{weight name: (bits, rank, rounds, bits/weight, error Q, error Q+BA)}
    from the report, and the printed total."""
    rows = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 8 and f[0].endswith("_proj"):
            rows[f[0][len("m."):] + ".weight"] = (int(f[2]), int(f[3]), int(f[4]), float(f[5]),
                                                  float(f[6]), float(f[7]))
    total = re.search(r"total: ([0-9.]+) bits per weight", text)
    return rows, float(total.group(1)) if total else None


def fit(fisher):
    """The square roots of the rank-1 fit of a Fisher diagonal (as the pass
    floors empty rows and columns)."""
    r, c, s = fisher.sum(1, dtype=np.float64), fisher.sum(0, dtype=np.float64), fisher.sum(dtype=np.float64)
    r, c = np.maximum(r, 1e-6 * r.max()), np.maximum(c, 1e-6 * c.max())
    return np.sqrt(r), np.sqrt(c / s)


def decompose(w, spec, rank, rounds, weights=None):
    """The reference: (deq(Q), B·A, error, rounds run, error of Q alone)."""
    rw, cw = weights if weights is not None else (np.ones(w.shape[0]), np.ones(w.shape[1]))
    f = (rw[:, None] * cw[None, :]) ** 2
    low = np.zeros(w.shape, np.float32)
    best = None
    for t in range(1, rounds + 1):
        dq = reference((w - low).astype(np.float32), spec)
        res = w.astype(np.float64) - dq
        if t == 1:
            qerr = float((f * res ** 2).sum())
        if rank:
            u, s, vt = np.linalg.svd(res * rw[:, None] * cw[None, :], full_matrices=False)
            b = u[:, :rank] * np.sqrt(s[:rank]) / rw[:, None]
            a = np.sqrt(s[:rank])[:, None] * vt[:rank] / cw[None, :]
            low = (b @ a).astype(np.float32)
        else:
            low = np.zeros(w.shape, np.float32)
        err = float((f * (res - low) ** 2).sum())
        if best is not None and not err < best[2]:
            break
        best = (dq, low, err, t, qerr)
    return best


def relative(err, w, weights=None):
    f = 1.0 if weights is None else (weights[0][:, None] * weights[1][None, :]) ** 2
    return np.sqrt(err / float((f * w.astype(np.float64) ** 2).sum()))


def compare(name, args, want, extra=""):
    """Compiles with `args` and a float reference with weights `want`;
    returns (report table, ok)."""
    lib, ref = os.path.join(tmp, f"{name}.so"), os.path.join(tmp, f"{name}-ref.so")
    floats = os.path.join(tmp, f"{name}.safetensors.ref")
    write_f32_safetensors(floats, {**base, **want})
    rc, err = qoptc(*args, "-o", lib)
    rc2, err2 = qoptc("--weights", floats, "-o", ref)
    if rc or rc2:
        print(f"FAIL {name}: {(err if rc else err2)[-400:]}")
        return None, None
    vs = max(rel_error(a, b) for a, b in zip(logits(lib), logits(ref)))
    return table(err), (vs, lib)


with tempfile.TemporaryDirectory() as tmp:
    # One round, NF4 and int4 groups asym: exact against the reference.
    one_round = {}
    for spec in ("nf4:block=64", "int4:group=16,asym"):
        want = {n: (d + l).astype(np.float32)
                for n in linear for d, l, *_ in [decompose(base[n], spec, 4, 1)]}
        (rows, _), res = compare(f"one-{spec[:3]}", ["--graph-passes",
                                 f"qopt-lq-lora{{weights={spec} rank=4 iterations=1}}"], want)
        if rows is None:
            failures += 1
            continue
        vs, lib = res
        one_round[spec] = rows
        trainable = {p.name for p in qopt.load(lib).parameters if p.role == "trainable"}
        ok = (vs <= 1e-5 and sorted(rows) == linear and len(trainable) == 2 * len(linear)
              and all(r[1] == 4 and r[2] == 1 for r in rows.values()))
        print(f"{'ok' if ok else 'FAIL'} one round {spec}: logits vs reference {vs:.1e}, "
              f"{len(rows)} layers, {len(trainable)} trainable factors")
        failures += not ok

    # The randomized SVD (subspace iteration), one round: the error of each
    # layer within 1% of the exact reference's.
    spec = "nf4:block=64"
    rc, err = qoptc("--graph-passes", f"qopt-lq-lora{{weights={spec} rank=4 iterations=1 "
                    "svd=randomized}", "-o", os.path.join(tmp, "randomized.so"))
    rows, _ = table(err)
    worst = max((abs(rows[n][5] - relative(decompose(base[n], spec, 4, 1)[2], base[n]))
                 / relative(decompose(base[n], spec, 4, 1)[2], base[n]) if n in rows else np.inf)
                for n in linear)
    ok = not rc and worst <= 0.01
    print(f"{'ok' if ok else 'FAIL'} randomized svd, one round {spec}: worst difference from "
          f"the exact reference's error {worst:.2%}")
    failures += not ok

    # Ten rounds: the error falls below the one-round error, as the reference's.
    spec = "nf4:block=64"
    rc, err = qoptc("--graph-passes", f"qopt-lq-lora{{weights={spec} rank=4 iterations=10}}",
                    "-o", os.path.join(tmp, "ten.so"))
    rows, _ = table(err)
    worst, lower = 0.0, True
    for n in linear:
        _, _, e, _, _ = decompose(base[n], spec, 4, 10)
        want = relative(e, base[n])
        worst = max(worst, abs(rows[n][5] - want) / want) if n in rows else np.inf
        lower &= n in rows and rows[n][5] < one_round.get(spec, {}).get(n, (0,) * 6)[5]
    ok = not rc and worst <= 0.02 and lower
    print(f"{'ok' if ok else 'FAIL'} ten rounds {spec}: every layer below its one-round error: "
          f"{lower}; worst difference from the reference's error {worst:.1%}")
    failures += not ok

    # Fisher weighting: synthetic diagonals with row / column structure.
    rng = np.random.default_rng(5)
    fisher, weights = {}, {}
    for n in linear:
        rows_, cols_ = base[n].shape
        f = (np.outer(1 + 20 * rng.random(rows_) ** 4, 1 + 20 * rng.random(cols_) ** 4)
             * (0.5 + rng.random((rows_, cols_)))).astype(np.float32)
        fisher[n] = f
        weights[n] = fit(f)
    fisher_path = os.path.join(tmp, "fisher.safetensors")
    write_f32_safetensors(fisher_path, fisher)
    want, better = {}, True
    for n in linear:
        d, l, e, _, _ = decompose(base[n], spec, 4, 1, weights[n])
        want[n] = (d + l).astype(np.float32)
        _, _, plain, _, _ = decompose(base[n], spec, 4, 1)
        dq, low, *_ = decompose(base[n], spec, 4, 1)
        f = (weights[n][0][:, None] * weights[n][1][None, :]) ** 2
        better &= e < float((f * (base[n].astype(np.float64) - dq - low) ** 2).sum())
    (rows, _), res = compare("fisher", ["--graph-passes", f"qopt-lq-lora{{weights={spec} rank=4 "
                                        f"iterations=1 fisher={fisher_path}}}"], want)
    if rows is None:
        failures += 1
    else:
        vs, _ = res
        ok = vs <= 1e-5 and better and sorted(rows) == linear
        print(f"{'ok' if ok else 'FAIL'} fisher-weighted one round: logits vs reference {vs:.1e}, "
              f"weighted error below the unweighted decomposition's: {better}")
        failures += not ok

    # Budget: widths x ranks {0, 2, 4}, one round.
    spec, group, budget = "int4:group=16,asym", 16, 12.0
    choices = {}
    for n in linear:
        rows_, cols_ = base[n].shape
        for bits in (2, 3, 4, 5, 6, 8):
            for r in (0, 2, 4):
                d, l, e, _, _ = decompose(base[n], f"int{bits}:group={group},asym", r, 1)
                cost = (rows_ * -(-cols_ * bits // 8) * 8 + rows_ * (cols_ // group) * 40
                        + 32 * r * (rows_ + cols_))
                choices[n, bits, r] = (cost, e, (d + l).astype(np.float32))
    count = sum(base[n].size for n in linear)
    rc, err = qoptc("--graph-passes", f"qopt-lq-lora{{weights={spec} budget-bits={budget} "
                    "ranks=0,2,4 iterations=1}", "-o", os.path.join(tmp, "budget-probe.so"))
    rows, total = table(err)
    if rc or sorted(rows) != linear:
        print(f"FAIL budget: {err[-400:]}")
        failures += 1
    else:
        picked = {n: choices[n, rows[n][0], rows[n][1]] for n in linear}
        recomputed = sum(c[0] for c in picked.values()) / count
        error = sum(c[1] for c in picked.values())
        uniform = min((sum(choices[n, b, r][1] for n in linear)
                       for b in (2, 3, 4, 5, 6, 8) for r in (0, 2, 4)
                       if sum(choices[n, b, r][0] for n in linear) <= budget * count), default=np.inf)
        (_, _), res = compare("budget", ["--graph-passes", f"qopt-lq-lora{{weights={spec} "
                              f"budget-bits={budget} ranks=0,2,4 iterations=1}}"],
                              {n: c[2] for n, c in picked.items()})
        vs = res[0] if res else np.inf
        kinds = sorted({(rows[n][0], rows[n][1]) for n in linear})
        ok = (abs(recomputed - total) < 1e-3 and recomputed <= budget
              and error <= uniform * (1 + 1e-6) and vs <= 1e-5 and len(kinds) > 1)
        print(f"{'ok' if ok else 'FAIL'} budget {budget}: total {total:.3f} (recomputed "
              f"{recomputed:.3f}), error {error:.4g} vs best uniform {uniform:.4g}, "
              f"(bits, rank) used {kinds}, logits vs reference {vs:.1e}")
        failures += not ok

    # Errors of the Fisher file name the tensor.
    bad = {"missing": {k: v for k, v in fisher.items() if "q_proj" not in k},
           "shape": {**fisher, linear[0]: fisher[linear[0]][:, :8]},
           "negative": {**fisher, linear[0]: -fisher[linear[0]]},
           "extra": {**fisher, "model.layers.0.mlp.extra.weight": fisher[linear[0]]}}
    for kind, tensors in bad.items():
        path = os.path.join(tmp, f"fisher-{kind}.safetensors")
        write_f32_safetensors(path, tensors)
        rc, err = qoptc("--graph-passes", f"qopt-lq-lora{{rank=4 fisher={path}}}",
                        "-o", os.path.join(tmp, "bad.so"))
        message = next((line for line in err.splitlines() if "error:" in line), "")
        left = os.path.exists(os.path.join(tmp, "bad.so"))
        print(f"{'ok' if rc and not left else 'FAIL'} fisher {kind}: "
              f"{message[message.find('error:'):]}")
        failures += not rc or left
print(f"lq-lora: {failures} failures")
sys.exit(1 if failures else 0)
