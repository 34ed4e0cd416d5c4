"""Module paths of the linear layers of the real exports (test/e2e/real),
as the importer reads them (dynamo name scopes, `.weight` parameter names,
TorchScript node-name paths), compared with torch's own names
(real/linear_modules.json, written by real/list_linear_modules.py).

Prints one line per model: how many `qopt.linear` the conversion made, how
many carry a module path, how many of those are torch's names (exactly,
or as a unique dotted suffix: TorchScript names scopes from the outermost
module the wrapper calls, so `self.m.decoder(...)` gives `decoder.…`, not
`m.decoder.…`; PEFT's target matching is by suffix too); FAIL lines for a
layer without a path, a path torch does not have, or a repeated one."""
import json
import os
import re
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.environ["QOPT_BIN"]
real = os.path.join(here, "real")
torch_names = json.load(open(os.path.join(real, "linear_modules.json")))["modules"]
index = json.load(open(os.path.join(real, "index.json")))
linear = re.compile(r"qopt\.linear [^:]*?(?: module \"([^\"]*)\")? :")
failures = 0
for entry in index["models"]:
    if "error" in entry:
        continue
    folder, arch = entry["folder"], entry["arch"]
    # Debug locations carry the node names through the text form.
    imported = subprocess.run(
        [os.path.join(root, "qopt-translate"), "--import-onnx", "--mlir-print-debuginfo",
         os.path.join(real, folder, "model.onnx")],
        capture_output=True, text=True, check=True).stdout
    converted = subprocess.run([os.path.join(root, "qopt-opt"), "--convert-onnx-to-qopt"],
                               input=imported, capture_output=True, text=True,
                               check=True).stdout
    names = [m.group(1) for m in linear.finditer(converted)]
    named = [n for n in names if n]
    known = set(torch_names[arch])
    def resolves(n):
        return n in known or len([k for k in known if k.endswith("." + n)]) == 1
    exact = [n for n in named if n in known]
    suffix = [n for n in named if n not in known and resolves(n)]
    print(f"{folder}: {len(names)} linear, {len(named)} named, {len(exact)} torch names"
          + (f", {len(suffix)} suffixes of torch names" if suffix else ""))
    for n in named:
        if not resolves(n):
            print(f"FAIL {folder}: module '{n}' is not a linear layer of the torch model")
            failures += 1
    if len(set(named)) != len(named):
        print(f"FAIL {folder}: module names repeat")
        failures += 1
    if len(named) != len(names):
        print(f"FAIL {folder}: {len(names) - len(named)} linear layers without a module path")
        failures += 1
    # The other named layers the conversion raises, and their paths.
    embeddings = re.findall(r"qopt\.embedding [^:]*?(?: module \"([^\"]*)\")? :", converted)
    residual = re.findall(r"qopt\.residual_add [^:]*?(?: module \"([^\"]*)\")? :", converted)
    print(f"  {folder}: {converted.count('qopt.attention ')} attention, "
          f"{len(embeddings)} embedding ({', '.join(sorted(embeddings))}), "
          f"{converted.count('qopt.rotary ')} rotary, {len(residual)} residual "
          f"({', '.join(sorted(set(m.rsplit('.', 1)[-1] for m in residual)))})")
print(f"module names: {failures} failures")
sys.exit(1 if failures else 0)
