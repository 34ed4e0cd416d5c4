"""CPU inference: a compiled qopt model vs onnxruntime on the same ONNX file.

  bench.py [--layers 12 --d 768 --heads 12 --vocab 50257] [--seq 128]
           [--batches 1,8] [--threads 1,2] [--repeat 5] [--json out.json]

Builds a GPT-2-shaped model (the exporter-style graph of test/e2e/models.py:
Shape/Gather chains, causal mask from Trilu, tanh GELU, tied LM head), saves
it, compiles it once with qoptc (wall time and peak memory of the whole
import + lowering + codegen + link are measured), then times qopt-run and
onnxruntime with the same thread count. qopt-run's --repeat reports the mean
of the runs after its first (warm-up) one; onnxruntime gets one warm-up run
too. Prints a table and writes JSON. The defaults are GPT-2 small.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "..", "test", "e2e"))
sys.path.insert(0, os.path.join(here, "..", "..", "test", "lib"))
sys.path.insert(0, os.path.join(here, ".."))
import models  # noqa: E402  (the GPT-2-shaped builder)
from machine import cpu_name  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--bin", default=os.environ.get("QOPT_BIN", os.path.join(here, "..", "..", "build", "bin")))
    ap.add_argument("--max-pos", type=int, default=1024)
    ap.add_argument("--json")
    ap.add_argument("--max-error", type=float,
                    help="fail (exit 1) when any run's max error, relative to the "
                         "largest onnxruntime output, exceeds this")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]

    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "gpt2.onnx")
    model = models.gpt2(layers=args.layers, d=args.d, heads=args.heads, vocab=args.vocab,
                        max_pos=max(args.max_pos, args.seq))
    onnx.save(model, path)
    del model
    params = sum(int(np.prod(t.dims)) for t in onnx.load(path, load_external_data=False).graph.initializer)

    lib = os.path.join(tmp.name, "gpt2.so")
    start = time.perf_counter()
    r = subprocess.run([os.path.join(args.bin, "qoptc"), path, "-o", lib, "--time"],
                       capture_output=True, text=True)
    compile_s = time.perf_counter() - start
    if r.returncode:
        sys.exit("qoptc failed:\n" + r.stderr)
    # Peak resident memory of the largest child so far: qoptc (the linker
    # runs as its child and is far smaller).
    compile_peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    steps = dict(re.findall(r"qoptc: (.+?)\s+([0-9.]+) s", r.stderr))

    rng = np.random.default_rng(0)
    results = []
    for batch in batches:
        ids = rng.integers(0, args.vocab, size=(batch, args.seq), dtype=np.int64)
        ids_path = os.path.join(tmp.name, f"ids{batch}.npy")
        np.save(ids_path, ids)
        for t in threads:
            r = subprocess.run([os.path.join(args.bin, "qopt-run"), lib, "--input", f"input_ids={ids_path}",
                                "--threads", str(t), "--repeat", str(args.repeat + 1),
                                "--output-dir", os.path.join(tmp.name, "out")],
                               capture_output=True, text=True)
            if r.returncode:
                sys.exit("qopt-run failed:\n" + r.stderr)
            qopt_ms = float(re.search(r"mean latency over \d+ runs \(after the first\): ([0-9.]+) ms",
                                      r.stdout).group(1))
            so = ort.SessionOptions()
            so.intra_op_num_threads = t
            so.inter_op_num_threads = 1
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            expected = sess.run(None, {"input_ids": ids})[0]  # warm-up
            start = time.perf_counter()
            for _ in range(args.repeat):
                sess.run(None, {"input_ids": ids})
            ort_ms = 1e3 * (time.perf_counter() - start) / args.repeat
            got = np.load(os.path.join(tmp.name, "out", "logits.npy"))
            err = float(np.max(np.abs(got - expected)) / (np.max(np.abs(expected)) + 1e-30))
            del sess
            results.append({"batch": batch, "seq": args.seq, "threads": t, "qopt_ms": qopt_ms,
                            "onnxruntime_ms": ort_ms, "ratio": qopt_ms / ort_ms,
                            "max_error_rel_to_max": err})

    report = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "model": {"shape": "gpt2", "layers": args.layers, "d": args.d, "heads": args.heads,
                  "vocab": args.vocab, "parameters": params,
                  "onnx_mb": os.path.getsize(path) / 2**20},
        "compile": {"wall_s": compile_s, "peak_rss_mb": compile_peak_mb, "steps_s": steps},
        "onnxruntime": ort.__version__,
        "results": results,
    }
    print(f"machine: {report['machine']['cpu']} ({os.cpu_count()} cores)")
    print(f"model: GPT-2-shaped, {args.layers} layers, d={args.d}, vocab={args.vocab}, "
          f"{params / 1e6:.1f} M parameters, {report['model']['onnx_mb']:.0f} MiB ONNX")
    print(f"qoptc: {compile_s:.2f} s wall, peak RSS {compile_peak_mb:.0f} MiB "
          f"({', '.join(f'{k} {v} s' for k, v in steps.items())})")
    print(f"{'batch':>5} {'seq':>4} {'threads':>7} {'qopt ms':>9} {'ort ms':>9} {'ratio':>6} {'max err':>8}")
    for x in results:
        print(f"{x['batch']:>5} {x['seq']:>4} {x['threads']:>7} {x['qopt_ms']:>9.1f} "
              f"{x['onnxruntime_ms']:>9.1f} {x['ratio']:>6.2f} {x['max_error_rel_to_max']:>8.1e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    tmp.cleanup()
    if args.max_error is not None:
        worst = max(x["max_error_rel_to_max"] for x in results)
        if not worst <= args.max_error:  # NaN fails too
            print(f"max error {worst:.1e} exceeds {args.max_error:.0e}")
            sys.exit(1)
        print(f"max error {worst:.1e} within {args.max_error:.0e}")


if __name__ == "__main__":
    main()
