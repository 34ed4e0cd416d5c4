"""What the outlier recipes cost at run time on the CPU: whole-model latency
of a Llama-shaped model at one token and at a 128-token prefill for each
recipe, next to its plain quantized counterpart (the difference is the
recipe's online work: QuaRot's Hadamards before o_proj / down_proj,
SVDQuant's low-rank branch, per-token activation quantization) and next to
onnxruntime running the same recipe's `--export-onnx` output (the peer, in
the same run).

    /work/fixtures-venv/bin/python bench/cpu_decode/recipe_bench.py \\
        [--layers 4 --hidden 1024 --heads 16 --kv-heads 4 --ffn 2816 \\
         --vocab 32000] [--threads 1] [--json out.json]

Needs torch + transformers (to build and export the randomly initialised
model, nothing downloaded), onnxruntime and numpy, and a build.
"""
import argparse
import json
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from machine import cpu_name  # noqa: E402
from model_bench import SHAPE_OPTIONS, add_shape_options, compile_qopt, export, timed  # noqa: E402

# name: (qoptc arguments, the variant it is compared with)
VARIANTS = {
    "w4-g32": (["--quantize", "int4:group=32"], None),
    "quarot-w4a16": (["--recipe", "quarot-w4a16"], "w4-g32"),
    "w8": (["--quantize", "int8"], None),
    "w8a8-per-token": (["--quantize", "int8", "--quantize-activations", "int8:per-token"], "w8"),
    "smoothquant-w8a8": (["--recipe", "smoothquant-w8a8"], "w8a8-per-token"),
    "w4-g32-a4-per-token": (["--quantize", "int4:group=32", "--quantize-activations",
                             "int4:per-token"], "w4-g32"),
    "quarot-w4a4": (["--recipe", "quarot-w4a4"], "w4-g32-a4-per-token"),
    "svdquant-w4a4": (["--recipe", "svdquant-w4a4"], None),
}
CALIBRATED = ("smoothquant-w8a8", "svdquant-w4a4")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(ap, layers=4)
    ap.add_argument("--threads", default="1")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--work", help="keep the models here")
    ap.add_argument("--json")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "python"))
    import onnxruntime as ort
    import qopt

    work = args.work or tempfile.mkdtemp(prefix="qopt-recipes-")
    os.makedirs(work, exist_ok=True)
    model = os.path.join(work, "model.onnx")
    # A --work folder keeps its export only for the same shape options.
    shape = {k: getattr(args, k) for k in SHAPE_OPTIONS}
    stamp = os.path.join(work, "shape.json")
    if not os.path.exists(model) or not os.path.exists(stamp) or json.load(open(stamp)) != shape:
        export(args, work)
        json.dump(shape, open(stamp, "w"))
    rng = np.random.default_rng(0)
    calib = os.path.join(work, "calib.npz")
    np.savez(calib, input_ids=rng.integers(0, args.vocab, size=(4, 32), dtype=np.int64))
    results = {"config": vars(args), "cpu": cpu_name(), "compile": {}, "rows": []}
    libs, exports = {}, {}
    for name, (extra, _) in VARIANTS.items():
        libs[name] = os.path.join(work, f"{name}.so")
        exports[name] = os.path.join(work, f"{name}.onnx")
        cal = ["--calibration-data", calib] if name in CALIBRATED else []
        seconds, mib = compile_qopt(model, libs[name],
                                    extra + cal + ["--export-onnx", exports[name]])
        results["compile"][name] = {"seconds": seconds, "peak_mib": mib}
        print(f"compile {name}: {seconds:.1f} s, peak {mib:.0f} MiB")
    for threads in map(int, args.threads.split(",")):
        for seq in (1, 128):
            ids = rng.integers(0, args.vocab, size=(1, seq), dtype=np.int64)
            rows = {}
            for name, lib in libs.items():
                m = qopt.load(lib)
                m.set_num_threads(threads)
                rows[name] = timed(lambda: m.run(input_ids=ids), args.reps)
                del m
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                sess = ort.InferenceSession(exports[name], opts,
                                            providers=["CPUExecutionProvider"])
                rows["ort:" + name] = timed(lambda: sess.run(None, {"input_ids": ids}),
                                            args.reps)
                del sess
            for name in libs:
                t, peer = rows[name], rows["ort:" + name]
                base = VARIANTS[name][1]
                row = {"threads": threads, "seq": seq, "method": name, "ms": t * 1e3,
                       "ort_ms": peer * 1e3, "vs_ort_same_export": peer / t}
                text = (f"  {threads}t seq {seq:<4} {name:<22} {t * 1e3:8.2f} ms   "
                        f"onnxruntime on its export {peer * 1e3:8.2f} ms (x{peer / t:4.2f})")
                if base:
                    row["vs_" + base] = rows[base] / t
                    text += f"   {t / rows[base]:5.2f}x the time of {base}"
                results["rows"].append(row)
                print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
