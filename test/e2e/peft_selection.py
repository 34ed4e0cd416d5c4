"""qopt-insert-lora selects the layers PEFT does: for each LoraConfig of
real/peft_selections.json (made by real/peft_selections.py with PEFT
itself), on both torch exports of the architecture, the `qopt.lora` ops
the pass creates (module path, r, alpha) must be exactly the modules PEFT
adapted, or the pass must fail where PEFT refused the config. Prints one
line per case and a summary; exits non-zero on a mismatch."""
import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ["QOPT_BIN"]
data = json.load(open(os.path.join(HERE, "real", "peft_selections.json")))


def options(cfg):
    opts = []
    tm = cfg["target_modules"]
    opts.append("target-modules=" + (tm if isinstance(tm, str) else ",".join(tm)))
    if "exclude_modules" in cfg:
        opts.append("exclude-modules=" + ",".join(cfg["exclude_modules"]))
    if "layers_to_transform" in cfg:
        ltt = cfg["layers_to_transform"]
        opts.append("layers-to-transform=" + ",".join(map(str, ltt if isinstance(ltt, list) else [ltt])))
    if "layers_pattern" in cfg:
        lp = cfg["layers_pattern"]
        opts.append("layers-pattern=" + (lp if isinstance(lp, str) else ",".join(lp)))
    if "r" in cfg:
        opts.append(f"r={cfg['r']}")
    if "rank_pattern" in cfg:
        opts.append("rank-pattern=" + ",".join(f"{k}={v}" for k, v in cfg["rank_pattern"].items()))
    if "alpha_pattern" in cfg:
        opts.append("alpha-pattern=" + ",".join(f"{k}={v}" for k, v in cfg["alpha_pattern"].items()))
    # Quoted: the values hold regular expressions.
    return " ".join(f"{o.split('=', 1)[0]}='{o.split('=', 1)[1]}'" for o in opts)


lora_re = re.compile(r'qopt\.lora .*? alpha = ([0-9.e+-]+).*? module "([^"]*)" : '
                     r'\(tensor<[^>]*>, [^,]*>, tensor<(\d+)x')
imported = {}
failures = 0
for case in data["cases"]:
    arch, cfg = case["arch"], case["config"]
    for exporter in ("torchscript", "dynamo"):
        folder = f"{arch}-{exporter}"
        if folder not in imported:
            imported[folder] = subprocess.run(
                [os.path.join(BIN, "qopt-translate"), "--import-onnx", "--mlir-print-debuginfo",
                 os.path.join(HERE, "real", folder, "model.onnx")],
                capture_output=True, text=True, check=True).stdout
        pipeline = f"builtin.module(convert-onnx-to-qopt,qopt-insert-lora{{{options(cfg)}}})"
        r = subprocess.run([os.path.join(BIN, "qopt-opt"), "--pass-pipeline=" + pipeline,
                            "--mlir-elide-resource-strings-if-larger=1"],
                           input=imported[folder], capture_output=True, text=True)
        label = f"{folder} {json.dumps(cfg, sort_keys=True)}"
        if "error" in case:
            ok = r.returncode != 0 and "matched no linear layer" in r.stderr
            print(f"{'ok' if ok else 'FAIL'} {label}: PEFT refuses it"
                  + ("" if ok else f"; qopt: rc {r.returncode} {r.stderr.strip()[:300]}"))
            failures += not ok
            continue
        if r.returncode:
            print(f"FAIL {label}: {r.stderr.strip()[:400]}")
            failures += 1
            continue
        got = {m.group(2): {"r": int(m.group(3)), "alpha": float(m.group(1))}
               for m in lora_re.finditer(r.stdout)}
        want = {k: {"r": v["r"], "alpha": float(v["alpha"])} for k, v in case["targeted"].items()}
        ok = got == want
        print(f"{'ok' if ok else 'FAIL'} {label}: {len(got)} adapters")
        if not ok:
            for k in sorted(set(got) | set(want)):
                if got.get(k) != want.get(k):
                    print(f"    {k}: qopt {got.get(k)} PEFT {want.get(k)}")
            failures += 1
print(f"peft selection: {failures} failures")
sys.exit(1 if failures else 0)
