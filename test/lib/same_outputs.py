"""same_outputs.py A.so B.so reference.npz: runs both compiled models on
every case{k}.<input> of the npz (inputs named as the models' inputs) and
prints "same outputs on N cases" when all outputs agree to 1e-6 relative,
else the first difference (exit 1)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.environ["QOPT_BIN"], "..", "python"))
import qopt  # noqa: E402

a, b = qopt.load(sys.argv[1]), qopt.load(sys.argv[2])
ref = np.load(sys.argv[3])
names = [i.name for i in a.inputs]
cases = sorted({k.split(".")[0] for k in ref.files})
for c in cases:
    feed = {n: ref[f"{c}.{n}"] for n in names}
    for i, (x, y) in enumerate(zip(a.run(**feed), b.run(**feed))):
        err = np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30)
        if x.shape != y.shape or err > 1e-6:
            print(f"{c} output {i}: differs ({err:.3g})")
            sys.exit(1)
print(f"same outputs on {len(cases)} cases")
