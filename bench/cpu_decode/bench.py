"""Quantized products at decode (M = 1) and prefill (M = 128) shapes: qopt's
kernel (`qopt_kernel_qlinear`, the call compiled models make for a
quantized linear layer) next to onnxruntime's fp32 MatMul and its 4-bit
`MatMulNBits` (accuracy levels 0 and 4) on the same weights, with the
machine's read bandwidth measured in the same run and the weight GB/s each
method reaches.

    .venv/bin/python bench/cpu_decode/bench.py [--shapes 4096x4096,11008x4096]
        [--threads 1,2] [--json out.json]

Needs a build (build/lib/libqopt_kernels_cpu.so), numpy, onnx and
onnxruntime (the project's .venv has them) and a C compiler (for the
bandwidth probe). Times are the median of --reps calls after warm-up,
cycling through enough weight copies that each call reads from memory,
not from the caches. Not yet here: llama.cpp's Q4_0 / Q8_0 and whole-model
decode (issue 17).
"""
import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

FORMATS = {  # name: (kernel format, bits, group or 0 = per channel, flags)
    "qopt-w4-g32": (0, 4, 32, 0),
    "qopt-w4-g32-int8act": (0, 4, 32, 2),
    "qopt-nf4-g64": (4, 4, 64, 0),
    "qopt-w8": (2, 8, 0, 0),
    "qopt-w8-int8act": (2, 8, 0, 2),
    "qopt-fp8-e4m3": (5, 8, 0, 0),
    # Activations quantized per token, integer products (--quantize-activations).
    "qopt-w8-a8tok": (2, 8, 0, 4 | 8 << 8),
    "qopt-w4-g32-a8tok": (0, 4, 32, 4 | 8 << 8),
    "qopt-w4-g32-a4tok": (0, 4, 32, 4 | 4 << 8),
}


def bandwidth(threads, mib=512):
    """Read GB/s over `mib` MiB (the default: far larger than the caches)."""
    exe = os.path.join(tempfile.gettempdir(), "qopt-bench-bandwidth")
    subprocess.run(["cc", "-O3", "-march=native", os.path.join(HERE, "bandwidth.c"),
                    "-o", exe, "-lpthread"], check=True)
    return float(subprocess.run([exe, str(threads), str(mib)], check=True,
                                capture_output=True, text=True).stdout)


def load_kernels(build):
    lib = ctypes.CDLL(os.path.join(build, "lib", "libqopt_kernels_cpu.so"))
    lib.qopt_kernel_qlinear.argtypes = [ctypes.c_int64] * 29
    lib.qopt_kernel_qlinear.restype = None
    lib.qopt_kernel_set_num_threads.argtypes = [ctypes.c_int]
    lib.qopt_kernel_cpu_path.restype = ctypes.c_char_p
    lib.qopt_kernel_cpu_name.restype = ctypes.c_char_p
    return lib


def timed(fn, copies, reps):
    for c in range(copies):
        fn(c)
    times = []
    for r in range(reps):
        t0 = time.perf_counter()
        fn(r % copies)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def weights(n, k, bits, group, copies, rng):
    """`copies` random weights: codes as qopt stores them, f32 scales."""
    row = (k + 1) // 2 if bits == 4 else k
    groups = (k + group - 1) // group if group else 1
    out = []
    for _ in range(copies):
        codes = rng.integers(0, 256, size=(n, row), dtype=np.uint8)
        scales = rng.uniform(0.005, 0.02, size=(n, groups)).astype(np.float32)
        out.append((codes, scales))
    return out, row, groups


def bench_qopt(lib, n, k, m, spec, copies, reps, rng):
    fmt, bits, group, flags = spec
    ws, row, groups = weights(n, k, bits, group or k, copies, rng)
    x = rng.standard_normal((m, k)).astype(np.float32)
    y = np.zeros((m, n), np.float32)
    ptr = lambda a: a.ctypes.data  # noqa: E731

    def call(c):
        codes, scales = ws[c]
        lib.qopt_kernel_qlinear(fmt, group or k, flags, 1, 1, m, n, k, ptr(x), 0, 0, 0, k, 1,
                                ptr(codes), 0, row, ptr(scales), 0, groups, 0, 0, 0,
                                ptr(y), 0, 0, 0, n, 1)
    return timed(call, copies, reps), ws[0][0].nbytes + ws[0][1].nbytes


def ort_session(model, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts,
                                providers=["CPUExecutionProvider"])


def bench_ort(n, k, m, kind, threads, copies, reps, rng):
    """onnxruntime on `copies` models (one weight each): fp32 MatMul,
    MatMulNBits (4-bit, block 32, accuracy level 0 or 4), or
    DynamicQuantizeMatMul (int8 weights per channel, activations quantized
    to uint8 per tensor at run time: its W8A8)."""
    from onnx import TensorProto, helper, numpy_helper
    sessions, size = [], 0
    for _ in range(copies):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
        if kind == "fp32":
            w = rng.standard_normal((k, n)).astype(np.float32)
            inits = [numpy_helper.from_array(w, "w")]
            node = helper.make_node("MatMul", ["x", "w"], ["y"])
            size = w.nbytes
            opsets = [helper.make_opsetid("", 17)]
        elif kind == "dynq-w8a8":
            w = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
            s = rng.uniform(0.005, 0.02, size=(n,)).astype(np.float32)
            inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(s, "s")]
            node = helper.make_node("DynamicQuantizeMatMul", ["x", "w", "s"], ["y"],
                                    domain="com.microsoft")
            size = w.nbytes + s.nbytes
            opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        else:
            level = int(kind[-1])
            blocks = (k + 31) // 32
            codes = rng.integers(0, 256, size=(n, blocks, 16), dtype=np.uint8)
            scales = rng.uniform(0.005, 0.02, size=(n * blocks,)).astype(np.float32)
            inits = [numpy_helper.from_array(codes, "b"), numpy_helper.from_array(scales, "s")]
            node = helper.make_node("MatMulNBits", ["x", "b", "s"], ["y"], domain="com.microsoft",
                                    K=k, N=n, bits=4, block_size=32, accuracy_level=level)
            size = codes.nbytes + scales.nbytes
            opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        graph = helper.make_graph([node], "g", [x], [y], inits)
        sessions.append(ort_session(helper.make_model(graph, opset_imports=opsets), threads))
    feed = {"x": rng.standard_normal((m, k)).astype(np.float32)}
    return timed(lambda c: sessions[c].run(None, feed), copies, reps), size


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x4096,11008x4096", help="NxK,…")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rows", default="1,128", help="M values")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--json")
    args = ap.parse_args()
    lib = load_kernels(args.build)
    rng = np.random.default_rng(0)
    results = {"machine": {"cpu": lib.qopt_kernel_cpu_name().decode(),
                           "kernel_path": lib.qopt_kernel_cpu_path().decode(),
                           "platform": platform.platform()},
               "bandwidth_gbs": {}, "rows": []}
    print(f"CPU: {results['machine']['cpu']}; qopt kernel path: "
          f"{results['machine']['kernel_path']}")
    for threads in map(int, args.threads.split(",")):
        bw = bandwidth(threads)
        results["bandwidth_gbs"][threads] = bw
        print(f"read bandwidth, {threads} thread(s): {bw:.1f} GB/s")
        lib.qopt_kernel_set_num_threads(threads)
        for shape in args.shapes.split(","):
            n, k = map(int, shape.split("x"))
            for m in map(int, args.rows.split(",")):
                copies = 2 if m > 1 else max(2, int(512e6 // (n * k * 0.6)) + 1)
                reps = max(5, args.reps // (4 if m > 1 else 1))
                entries = []
                for name, spec in FORMATS.items():
                    entries.append((name,) + bench_qopt(lib, n, k, m, spec, copies, reps, rng))
                for kind in ("fp32", "nbits4-acc0", "nbits4-acc4", "dynq-w8a8"):
                    c = 2 if kind == "fp32" else copies
                    entries.append((f"ort-{kind}",) + bench_ort(n, k, m, kind, threads, c, reps, rng))
                base = {e[0]: e[1] for e in entries}
                for name, t, size in entries:
                    gbs = size / t / 1e9
                    row = {"threads": threads, "n": n, "k": k, "m": m, "method": name,
                           "ms": t * 1e3, "weight_gbs": gbs,
                           "fraction_of_bandwidth": gbs / bw,
                           "speedup_vs_ort_nbits4_best": min(base["ort-nbits4-acc0"],
                                                             base["ort-nbits4-acc4"]) / t}
                    results["rows"].append(row)
                    print(f"  {threads}t {n}x{k} m={m:<4} {name:<22} {t * 1e3:8.3f} ms "
                          f"{gbs:6.1f} GB/s ({gbs / bw:5.0%} of bandwidth) "
                          f"x{row['speedup_vs_ort_nbits4_best']:.2f} vs ORT 4-bit best")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
