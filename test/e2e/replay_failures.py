"""Replays the minimized failures the differential test found
(test/e2e/difftest-failures: NAME.onnx + NAME.npz with case<k>.<input> and
onnxruntime's case<k>.<output>): each is compiled by qoptc and run through
the Python binding, and must match (rtol 1e-4, atol 1e-5).

  python replay_failures.py [DIR]

Prints one line per case and a summary; exits 1 when any case fails.
"""
import os
import sys
import tempfile

import numpy as np
import onnx

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
import qopt_check  # noqa: E402


def main():
    import qopt
    folder = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "difftest-failures")
    names = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".onnx"))
    failures = total = 0
    for name in names:
        model = onnx.load(os.path.join(folder, name + ".onnx"))
        data = np.load(os.path.join(folder, name + ".npz"), allow_pickle=False)
        inputs = [i.name for i in model.graph.input]
        outputs = [o.name for o in model.graph.output]
        with tempfile.TemporaryDirectory() as tmp:
            try:
                compiled = qopt.load(qopt_check.compile_model(model, tmp))
            except qopt_check.QOptError as e:
                print(f"{name}: FAIL compile: {e}")
                failures += 1
                total += 1
                continue
            for case in sorted({k.split(".")[0] for k in data.files}):
                total += 1
                feed = {i: data[f"{case}.{i}"] for i in inputs}
                try:
                    got = compiled.run(**feed)
                except Exception as e:  # the runtime's message
                    ok, msg = False, f"run: {e}"
                else:
                    ok, msg = qopt_check.compare_outputs(
                        [data[f"{case}.{o}"] for o in outputs], got, rtol=1e-4, atol=1e-5)
                print(f"{name} {case}: {'ok' if ok else 'FAIL ' + msg}")
                failures += not ok
    print(f"difftest failures replayed: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
