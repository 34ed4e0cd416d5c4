"""Generated loop nests on the kernel library's thread pool (qoptc's
default) against the same model compiled with --parallel=false, at 1 and 2
threads, and against onnxruntime: GPT-2-, Llama- and BERT-shaped models
large enough that norms, softmax, activations and copies are split among
the threads (qopt-run --verbose counts the loop nests that were)."""
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import onnx

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, here)
sys.path.insert(0, os.path.join(here, "..", "lib"))
import models  # noqa: E402
import qopt_check  # noqa: E402

BIN = os.environ["QOPT_BIN"]


def compile_model(path, out, *flags):
    r = subprocess.run([os.path.join(BIN, "qoptc"), path, "-o", out, *flags],
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit("qoptc failed:\n" + r.stderr)
    return out


def run(lib, inputs, threads, tmp, tag):
    out = os.path.join(tmp, tag)
    r = subprocess.run([os.path.join(BIN, "qopt-run"), lib, "--threads", str(threads),
                        "--verbose", "--output-dir", out] + inputs,
                       capture_output=True, text=True, timeout=600)
    if r.returncode:
        sys.exit("qopt-run failed:\n" + r.stderr)
    pooled, on_caller = map(int, re.search(
        r"loop nests run: (\d+) on the thread pool, (\d+) on the calling thread",
        r.stderr).groups())
    outputs = [np.load(line.rsplit(" -> ", 1)[1]) for line in r.stdout.splitlines()
               if " -> " in line]
    return outputs, pooled, on_caller


def check(name, model, feeds):
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        onnx.save(model, path)
        pool = compile_model(path, os.path.join(tmp, "pool.so"))
        serial = compile_model(path, os.path.join(tmp, "serial.so"), "--parallel=false")
        files = []
        for i, a in enumerate(feeds):
            files.append(os.path.join(tmp, f"in{i}.npy"))
            np.save(files[-1], a)
        got = {}
        for lib, tag in ((pool, "pool"), (serial, "serial")):
            for t in (1, 2):
                got[tag, t] = run(lib, files, t, tmp, f"{tag}{t}")
        expected = qopt_check.run_onnxruntime(model, feeds)

        def report(ok, what):
            nonlocal failures
            failures += not ok
            print(f"{name}: {what}: {'ok' if ok else 'FAILED'}")

        # The split changes no arithmetic: each iteration runs the same code.
        for t in (1, 2):
            a, b = got["pool", t][0], got["serial", t][0]
            same = len(a) == len(b) == len(expected) and all(
                np.array_equal(x, y) for x, y in zip(a, b))
            report(same, f"pool == serial at {t} thread(s), bit for bit")
        _, pooled2, caller2 = got["pool", 2]
        _, pooled1, caller1 = got["pool", 1]
        report(pooled2 > 0 and pooled1 == 0 and caller1 > 0,
               f"2 threads split loop nests (1: {pooled1 > 0}, 2: {pooled2 > 0})")
        report(got["serial", 2][1] == 0 and got["serial", 2][2] == 0,
               "--parallel=false calls no pool")
        ok, msg = qopt_check.compare_outputs(got["pool", 1][0], got["pool", 2][0], rtol=1e-5, atol=1e-6)
        report(ok, f"1 vs 2 threads ({msg})")
        ok, msg = qopt_check.compare_outputs(expected, got["pool", 2][0], rtol=1e-4, atol=1e-4)
        report(ok, f"vs onnxruntime ({msg})")
    return failures


def main():
    rng = np.random.default_rng(0)
    failures = 0
    ids = rng.integers(0, 300, size=(3, 47), dtype=np.int64)  # odd splits
    failures += check("gpt2", models.gpt2(layers=2, d=256, heads=4, vocab=300, max_pos=64), [ids])
    failures += check("llama", models.llama(layers=2, d=256, heads=8, kv_heads=2, ffn=512, vocab=300,
                                            max_pos=64), [ids])
    failures += check("bert", models.bert(layers=2, d=256, heads=4, ffn=512, vocab=300, max_pos=64),
                      [ids, np.ones_like(ids)])
    print(f"parallel loops: {'all passed' if failures == 0 else f'{failures} failed'}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
