"""PEFT adapters (test/e2e/peft, saved by PEFT itself by
make_peft_adapters.py) compiled onto the real exports by
`qoptc --adapter DIR` -- unmerged, and with `--merge` -- for both torch
exporters (and, for two Llama adapters, the export whose layers are known
only by their weights' initializer names), and run at every shape of the fixture: each output must match
PEFT's own with the adapter active (relative error max|d| / max|ref| <=
1e-4, at the positions the attention mask keeps). Prints one line per
model and a summary; exits 1 on a mismatch."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
sys.path.insert(0, os.path.join(BIN, "..", "python"))
import qopt  # noqa: E402
TOLERANCE = 1e-4
index = json.load(open(os.path.join(HERE, "peft", "index.json")))


def rel_error(got, ref, valid=None):
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if valid is not None:
        mask = np.broadcast_to(valid.reshape(valid.shape + (1,) * (ref.ndim - valid.ndim)),
                               ref.shape)
        got, ref = got[mask], ref[mask]
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))


failures = 0
with tempfile.TemporaryDirectory() as tmp:
    for name, case in index["cases"].items():
        folder = os.path.join(HERE, "peft", name)
        ref = np.load(os.path.join(folder, "reference.npz"))
        out = case["output"]
        ids = sorted({k.split(".")[0] for k in ref.files if k.startswith("case")})
        # llama-params: the same Llama known only by initializer names
        # (make_param_named_export.py), for two adapters.
        extra = ["params"] if name in ("llama-lora", "llama-dora-rslora") else []
        for exporter in ["torchscript", "dynamo"] + extra:
            model = os.path.join(HERE, "real", f"{case['export']}-{exporter}", "model.onnx")
            for merge in (False, True):
                label = f"{name} on {case['export']}-{exporter}{' merged' if merge else ''}"
                lib = os.path.join(tmp, f"{name}-{exporter}-{int(merge)}.so")
                r = subprocess.run([os.path.join(BIN, "qoptc"), model, "--adapter", folder, "-o", lib]
                                   + (["--merge"] if merge else []), capture_output=True, text=True)
                if r.returncode:
                    print(f"FAIL {label}: {r.stderr.strip()[:400]}")
                    failures += 1
                    continue
                compiled = qopt.load(lib)
                worst = 0.0
                for c in ids:
                    got = compiled.run(**{n: ref[f"{c}.{n}"] for n in case["inputs"]})[0]
                    valid = ref[f"{c}.{out}.valid"] if f"{c}.{out}.valid" in ref.files else None
                    worst = max(worst, rel_error(got, ref[f"{c}.{out}"], valid))
                ok = worst <= TOLERANCE
                print(f"{'ok' if ok else 'FAIL'} {label}: {len(ids)} shapes, "
                      f"max relative error {worst:.1e}")
                failures += not ok
print(f"peft adapters: {failures} failures")
sys.exit(1 if failures else 0)
