"""Whole-model latency of a Llama-shaped model at one token (the weight
streaming a decode step does, without a KV cache: sequence length 1) and
at a 128-token prefill: qopt fp32, W4 (int4, groups of 32) and W8 (int8
per channel), with f32 and int8 activations, next to onnxruntime on the
fp32 export and on the same export with its MatMuls quantized to
`MatMulNBits` (4-bit, block 32, symmetric; accuracy levels 0 and 4) by
onnxruntime's own quantizer. Also the compile time and peak memory of
`qoptc` for the fp32 and W4 models.

    /work/fixtures-venv/bin/python bench/cpu_decode/model_bench.py \\
        [--layers 8 --hidden 1024 --heads 16 --kv-heads 4 --ffn 2816 \\
         --vocab 32000] [--threads 1,2] [--json out.json]

Needs torch + transformers (to build and export the randomly initialised
model, nothing downloaded), onnxruntime and numpy, and a build. qoptc's
`--quantize` leaves the output head in f32 by default; onnxruntime's
quantizer quantizes it too, as does the `-head` variant
(`--quantize-modules '.*'`), so the table also gives each model's weight
bytes.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))
from hf_models import logits_of  # noqa: E402


def export(args, work):
    import torch
    import transformers
    from torch.export import Dim
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=512)
    model = transformers.LlamaForCausalLM(cfg).eval()
    path = os.path.join(work, "model.onnx")
    ids = torch.randint(0, args.vocab, (1, 8))
    torch.onnx.export(logits_of(model), (ids,), path, dynamo=True, input_names=["input_ids"],
                      output_names=["logits"],
                      dynamic_shapes={"input_ids": {1: Dim("seq", min=1, max=512)}},
                      verbose=False)
    return path


def quantize_ort(src, dst, level):
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    q = MatMulNBitsQuantizer(onnx.load(src), block_size=32, is_symmetric=True,
                             accuracy_level=level)
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=True)


def compile_qopt(model, out, extra):
    """qoptc's wall time and peak memory (its own process: /usr/bin/time)."""
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", os.path.join(ROOT, "build", "bin", "qoptc"),
                        model, "-o", out, *extra], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"qoptc failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0, int(r.stderr.strip().splitlines()[-1]) / 1024


def timed(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--work", help="keep the models here")
    ap.add_argument("--json")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "build", "python"))
    import onnxruntime as ort
    import qopt

    work = args.work or tempfile.mkdtemp(prefix="qopt-decode-")
    os.makedirs(work, exist_ok=True)
    # A --work folder from an earlier run keeps its exports (same shape
    # options assumed); qoptc always compiles, for its timings.
    model = os.path.join(work, "model.onnx")
    if not os.path.exists(model):
        export(args, work)
    ort4 = {level: os.path.join(work, f"model-nbits4-acc{level}.onnx") for level in (0, 4)}
    for level, path in ort4.items():
        if not os.path.exists(path):
            quantize_ort(model, path, level)
    variants = {"qopt-fp32": [], "qopt-w4-g32": ["--quantize", "int4:group=32"],
                "qopt-w4-g32-int8act": ["--quantize", "int4:group=32", "--int8-activations"],
                "qopt-w4-g32-int8act-head": ["--quantize", "int4:group=32", "--int8-activations",
                                             "--quantize-modules", ".*"],
                "qopt-w8": ["--quantize", "int8:per-channel"],
                "qopt-w8-int8act": ["--quantize", "int8:per-channel", "--int8-activations"]}
    results = {"config": vars(args), "compile": {}, "rows": []}
    libs = {}
    for name, extra in variants.items():
        libs[name] = os.path.join(work, name + ".so")
        seconds, mib = compile_qopt(model, libs[name], extra)
        weights = os.path.getsize(os.path.splitext(libs[name])[0] + ".safetensors")
        results["compile"][name] = {"seconds": seconds, "peak_mib": mib, "weight_bytes": weights}
        print(f"compile {name}: {seconds:.1f} s, peak {mib:.0f} MiB, weights {weights / 1e6:.0f} MB")
    rng = np.random.default_rng(0)
    for threads in map(int, args.threads.split(",")):
        for seq in (1, 128):
            ids = rng.integers(0, args.vocab, size=(1, seq), dtype=np.int64)
            rows = {}
            for name, lib in libs.items():
                m = qopt.load(lib)
                m.set_num_threads(threads)
                rows[name] = timed(lambda: m.run(input_ids=ids), args.reps)
                del m
            for name, path in (("ort-fp32", model), ("ort-nbits4-acc0", ort4[0]),
                               ("ort-nbits4-acc4", ort4[4])):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                rows[name] = timed(lambda: sess.run(None, {"input_ids": ids}), args.reps)
                del sess
            best4 = min(rows["ort-nbits4-acc0"], rows["ort-nbits4-acc4"])
            for name, t in rows.items():
                results["rows"].append({"threads": threads, "seq": seq, "method": name,
                                        "ms": t * 1e3, "vs_ort_fp32": rows["ort-fp32"] / t,
                                        "vs_ort_nbits4_best": best4 / t})
                print(f"  {threads}t seq {seq:<4} {name:<22} {t * 1e3:9.2f} ms  "
                      f"x{rows['ort-fp32'] / t:5.2f} vs ORT fp32  x{best4 / t:5.2f} vs ORT 4-bit best")
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
