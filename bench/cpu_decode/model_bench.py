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
model, nothing downloaded), onnxruntime and numpy, and a build. The
llama.cpp peers (`llamacpp.py`: Q4_0 and Q8_0 through its own
`llama-bench`, one token = its generation step with a KV cache) need CMake
and a C++ compiler, and pip to fetch llama-cpp-python's source
distribution (`--llama-cpp ''` leaves them out). qoptc's
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
import llamacpp  # noqa: E402  (beside this script)
from bench import bandwidth  # noqa: E402


def step_bytes(path):
    """Bytes of the weights one token reads: all but the embedding table (one
    row of it is gathered), from the safetensors header."""
    with open(path, "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
               if k != "__metadata__" and "embed_tokens" not in k)


def make_model(args):
    """The randomly initialised LlamaForCausalLM (seeded: the same each run)."""
    import torch
    import transformers
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.ffn,
        num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads, max_position_embeddings=512)
    return transformers.LlamaForCausalLM(cfg).eval(), cfg


def export(args, work):
    import torch
    from torch.export import Dim
    model, _ = make_model(args)
    path = os.path.join(work, "model.onnx")
    ids = torch.randint(0, args.vocab, (1, 8))
    torch.onnx.export(logits_of(model), (ids,), path, dynamo=True, input_names=["input_ids"],
                      output_names=["logits"],
                      dynamic_shapes={"input_ids": {1: Dim("seq", min=1, max=512)}},
                      verbose=False)
    return path


def llama_cpp_models(args, work):
    """llama.cpp's tools and the model as Q4_0 and Q8_0 GGUF files."""
    src, tools = llamacpp.build(args.llama_cpp)
    f32 = os.path.join(work, "model-f32.gguf")
    if not os.path.exists(f32):
        model, cfg = make_model(args)
        llamacpp.write_gguf(src, model, cfg, f32)
    models = {}
    for qtype in ("Q4_0", "Q8_0"):
        models[qtype] = os.path.join(work, f"model-{qtype.lower()}.gguf")
        if not os.path.exists(models[qtype]):
            llamacpp.quantize(tools, f32, models[qtype], qtype)
    return tools, models


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


SHAPE_OPTIONS = ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab")


def add_shape_options(ap, layers):
    """The Llama-shaped model's options (make_model reads them)."""
    ap.add_argument("--layers", type=int, default=layers)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--kv-heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=2816)
    ap.add_argument("--vocab", type=int, default=32000)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_options(ap, layers=8)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--work", help="keep the models here")
    ap.add_argument("--llama-cpp", default=os.path.expanduser("~/.cache/qopt-bench/llama.cpp"),
                    help="where llama.cpp is built (from llama-cpp-python's sdist); "
                         "'' leaves the llama.cpp peers out")
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
    llama = llama_cpp_models(args, work) if args.llama_cpp else None
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
        results["compile"][name] = {"seconds": seconds, "peak_mib": mib, "weight_bytes": weights,
                                    "step_bytes": step_bytes(os.path.splitext(libs[name])[0]
                                                             + ".safetensors")}
        print(f"compile {name}: {seconds:.1f} s, peak {mib:.0f} MiB, weights {weights / 1e6:.0f} MB")
    rng = np.random.default_rng(0)
    results["bandwidth_gbs"] = {}
    for threads in map(int, args.threads.split(",")):
        # A decode step reads each weight once; steps repeat, so the weights
        # come from whatever cache holds a model of their size: the probe
        # reads as many bytes (the W4 model's), again and again, beside the
        # far larger array (memory).
        w4 = results["compile"]["qopt-w4-g32-int8act-head"]["step_bytes"]
        bw = {"memory": bandwidth(threads), "model_sized": bandwidth(threads, max(1, w4 >> 20))}
        results["bandwidth_gbs"][threads] = bw
        print(f"read bandwidth, {threads} thread(s): {bw['memory']:.1f} GB/s from memory, "
              f"{bw['model_sized']:.1f} GB/s over {w4 / 1e6:.0f} MB (the W4 model's weights)")
        llama_ms = {}
        if llama:
            for qtype, path in llama[1].items():
                llama_ms[qtype] = llamacpp.bench(llama[0], path, threads, prompt=128,
                                                 reps=max(3, args.reps // 4))
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
            for qtype, (pp, tg) in llama_ms.items():
                rows[f"llama.cpp-{qtype.lower()}"] = (tg if seq == 1 else pp) / 1e3
            best4 = min(rows["ort-nbits4-acc0"], rows["ort-nbits4-acc4"])
            q4 = rows.get("llama.cpp-q4_0")
            for name, t in rows.items():
                row = {"threads": threads, "seq": seq, "method": name, "ms": t * 1e3,
                       "vs_ort_fp32": rows["ort-fp32"] / t, "vs_ort_nbits4_best": best4 / t}
                if q4:
                    row["vs_llama_cpp_q4_0"] = q4 / t
                if seq == 1 and name in results["compile"]:
                    # Weight bytes a step reads / its time, against the
                    # model-sized probe (the upper bound for a step).
                    gbs = results["compile"][name]["step_bytes"] / t / 1e9
                    row["weight_gbs"] = gbs
                    row["fraction_of_model_sized_bandwidth"] = gbs / bw["model_sized"]
                results["rows"].append(row)
                print(f"  {threads}t seq {seq:<4} {name:<22} {t * 1e3:9.2f} ms  "
                      f"x{rows['ort-fp32'] / t:5.2f} vs ORT fp32  x{best4 / t:5.2f} vs ORT 4-bit best"
                      + (f"  x{q4 / t:5.2f} vs llama.cpp Q4_0" if q4 else "")
                      + (f"  {row['weight_gbs']:5.1f} GB/s of weights "
                         f"({row['fraction_of_model_sized_bandwidth']:4.0%})"
                         if "weight_gbs" in row else ""))
    results["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
