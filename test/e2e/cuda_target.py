"""qoptc --target cuda, checked without a GPU:

- the README example and the lora, qlora, quarot-w4a16, quarot-w4a4 and
  smoothquant-w8a8 recipes on the test Llama compile for sm_80, sm_90 and
  sm_100 (the W4A4 / W8A8 ones quantizing their activations in the kernels
  that write them: norms, online Hadamards): the
  library embeds a fatbin, the manifest names the architectures, and
  ptxas's report covers every kernel for every architecture with no spills;
  the four recipes' train steps compile too (for sm_80, to keep the test
  short: ptxas is most of the time);
- the same kernels run on the CPU (--cuda-emulate: each launch a loop over
  its blocks and threads; the matrix products through the kernel
  library's launch plans and its GEMV lanes' and GEMM threads' code) give
  the CPU target's outputs, losses and gradients (inference and train
  steps; with --cuda-matmul-precision=medium / high, the GEMM's
  tensor-core entries, within bf16's / tf32's error);
- the runtime's CUDA path (driver loading, memory pool, parameter and input
  copies, results back to the host, errors) runs against a stand-in for
  the driver (Inputs/fake_libcuda.c: kernels only counted), through
  qopt-run and the Python package.

Prints one line per check and a summary."""
import json
import os
import re
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ["QOPT_BIN"]
PYTHON_DIR = os.path.join(BIN, "..", "python")
sys.path.insert(0, PYTHON_DIR)
import qopt  # noqa: E402
from checkpoints import rel_error  # noqa: E402

GPT2 = os.path.join(ROOT, "examples", "gpt2-tiny.onnx")
GPT2_IDS = os.path.join(ROOT, "examples", "gpt2-tiny-input_ids.npy")
LLAMA = os.path.join(HERE, "real", "llama-dynamo", "model.onnx")
FRESH = os.path.join(HERE, "peft", "fresh-lora-config.json")
ARCHS = ["sm_80", "sm_90", "sm_100"]
failures = 0


def check(what, ok, detail=""):
    global failures
    failures += not ok
    print(f"{what}: {'ok' if ok else 'FAIL'}{' (' + detail + ')' if detail else ''}")


def qoptc(*args):
    r = subprocess.run([os.path.join(BIN, "qoptc"), *args], capture_output=True, text=True)
    if r.returncode:
        print(r.stderr, file=sys.stderr)
    return r.returncode, r.stderr


def ptxas_report(lib):
    """{arch: [(kernel, stack bytes, spill bytes, registers)]} from the
    report qoptc writes beside the library."""
    text = open(lib[:-3] + ".ptxas.txt").read()
    out = {}
    for block in re.split(r"^# \S+ ", text, flags=re.M)[1:]:
        arch, body = block.split("\n", 1)
        kernels = []
        for m in re.finditer(r"Function properties for (\S+)\n\s+(\d+) bytes stack frame, "
                             r"(\d+) bytes spill stores, (\d+) bytes spill loads\n"
                             r".*?Used (\d+) registers", body, re.S):
            kernels.append((m[1], int(m[2]), int(m[3]) + int(m[4]), int(m[5])))
        out[arch.strip()] = kernels
    return out


def check_compiled(name, lib, archs):
    manifest = json.load(open(lib[:-3] + ".json"))
    check(f"{name}: manifest says target cuda, cubins for {','.join(archs)}",
          manifest["target"] == "cuda" and manifest["cuda"]["archs"] == archs
          and manifest["cuda"]["ptx"] == archs[0])
    report = ptxas_report(lib)
    counts = {a: len(report.get(a, [])) for a in archs}
    spills = sum(k[2] for a in archs for k in report.get(a, []))
    regs = max(k[3] for a in archs for k in report.get(a, []))
    stack = sum(1 for a in archs for k in report.get(a, []) if k[1])
    same = len(set(counts.values())) == 1 and counts[archs[0]] > 0
    check(f"{name}: ptxas compiled every kernel for every architecture, no spills",
          same and spills == 0 and set(report) == set(archs),
          f"{counts[archs[0]]} kernels x {len(archs)}, at most {regs} registers, "
          f"{stack} with a stack frame")
    return manifest


def outputs(lib, feeds, **load):
    m = qopt.load(lib, **load)
    return [m.run(**f) for f in feeds]


def llama_feeds():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 128, size=(2, 7)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    return [dict(input_ids=ids, attention_mask=mask)]


with tempfile.TemporaryDirectory() as tmp:
    # --- The README example: compile, emulate, and the runtime's CUDA path.
    gpu = os.path.join(tmp, "gpt2.so")
    rc, err = qoptc(GPT2, "--target", "cuda", "-o", gpu)
    check("gpt2-tiny compiles for cuda", rc == 0, err.strip()[-200:])
    check_compiled("gpt2-tiny", gpu, ARCHS)
    emu = os.path.join(tmp, "gpt2-emu.so")
    cpu = os.path.join(tmp, "gpt2-cpu.so")
    qoptc(GPT2, "--target", "cuda", "--cuda-emulate", "-o", emu)
    qoptc(GPT2, "-o", cpu)
    gfeeds = [dict(input_ids=np.load(GPT2_IDS))]
    e = rel_error(outputs(emu, gfeeds)[0][0], outputs(cpu, gfeeds)[0][0])
    check("gpt2-tiny: emulated kernels = CPU target (<= 1e-5)", e <= 1e-5, f"{e:.1e}")

    fake = os.path.join(tmp, "fake")
    os.makedirs(fake)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", os.path.join(fake, "libcuda.so.1"),
                    os.path.join(HERE, "..", "Runtime", "Inputs", "fake_libcuda.c")],
                   check=True)

    def run_fake(lib, *args, inputs=GPT2_IDS, **env):
        e = dict(os.environ, LD_LIBRARY_PATH=fake, FAKE_CUDA_LOG=os.path.join(tmp, "fake.log"))
        e.update(env)
        r = subprocess.run([os.path.join(BIN, "qopt-run"), lib,
                            *(["--input", inputs] if inputs else []), *args],
                           capture_output=True, text=True, env=e)
        return r.returncode, r.stdout + r.stderr

    def counts():
        log = open(os.path.join(tmp, "fake.log")).read()
        return int(re.search(r"launches (\d+)", log)[1]), int(re.search(r"syncs (\d+)", log)[1])

    def launches():
        return counts()[0]

    run_fake(gpu)
    once, waits = counts()
    check("fake driver: launches queue back to back (the host waits only where it reads)",
          1 <= waits <= once // 10, f"{waits} waits for {once} launches")
    rc, out = run_fake(gpu, "--device", "cuda", "--verbose", "--repeat", "5",
                       QOPT_CUDA_POOL_BYTES="4000000")
    five = launches()
    loaded = re.search(r"gpu pool after loading: (\d+) of (\d+)", out)
    after = re.search(r"gpu pool after the runs: (\d+) of", out)
    check("fake driver: qopt-run --device cuda runs 5 times, logits [1, 6, 50] back on the host",
          rc == 0 and "logits: float32 [1, 6, 50]" in out and "gpu: Fake GPU" in out,
          out.strip().splitlines()[-1] if rc else "")
    kernels = len(ptxas_report(gpu)["sm_80"])
    check("fake driver: each run makes the same launches",
          five == 5 * once and once > kernels // 2,
          f"{once} per run of the {kernels} kernels (the rest in branches not taken)")
    weights = os.path.getsize(gpu[:-3] + ".safetensors")
    fake_log = open(os.path.join(tmp, "fake.log")).read()
    prefetches = int(re.search(r"prefetches (\d+)", fake_log)[1])
    prefetched = int(re.search(r"prefetched (\d+)", fake_log)[1])
    with open(gpu[:-3] + ".safetensors", "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    spans = [v["data_offsets"] for k, v in header.items() if k != "__metadata__"]
    param_bytes = sum(end - begin for begin, end in spans)
    input_bytes = np.load(GPT2_IDS).nbytes
    # Every parameter once at load, the input once per run, ahead of the
    # kernels (they would fault the managed pages over otherwise).
    check("fake driver: parameters and each run's input prefetched to the GPU",
          prefetches == len(spans) + 5 and prefetched == param_bytes + 5 * input_bytes,
          f"{prefetches} prefetches ({len(spans)} parameters, 5 runs), {prefetched} bytes "
          f"({param_bytes} + 5 x {input_bytes})")
    # A driver older than CUDA 12.2 (no cuMemPrefetchAsync_v2): the same
    # prefetches through the first version.
    fake_v1 = os.path.join(tmp, "fake-v1")
    os.makedirs(fake_v1)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-DFAKE_CUDA_PREFETCH_V1_ONLY", "-o",
                    os.path.join(fake_v1, "libcuda.so.1"),
                    os.path.join(HERE, "..", "Runtime", "Inputs", "fake_libcuda.c")],
                   check=True)
    rc, out = run_fake(gpu, "--repeat", "5", LD_LIBRARY_PATH=fake_v1)
    fake_log = open(os.path.join(tmp, "fake.log")).read()
    v1 = (int(re.search(r"prefetches (\d+)", fake_log)[1]),
          int(re.search(r"prefetched (\d+)", fake_log)[1]))
    check("fake driver without cuMemPrefetchAsync_v2: the same prefetches through the first "
          "version", rc == 0 and v1 == (prefetches, prefetched),
          f"{v1[0]} prefetches, {v1[1]} bytes; {out.strip()[-120:]}")
    # The runs replay as a CUDA graph (the entry's host code touches only
    # host memory): the first measures the pool it needs, the second is
    # captured (its launches recorded, then the graph launched), the others
    # replay it; the launches are the same. The graph keeps its input
    # buffer and its arena between runs, and more runs take no more.
    fake_log = open(os.path.join(tmp, "fake.log")).read()
    graph_counts = [int(re.search(rf"{k} (\d+)", fake_log)[1])
                    for k in ("captures", "graph_launches")]
    gpu_manifest = json.load(open(gpu[:-3] + ".json"))
    check("fake driver: gpt2-tiny's 5 runs are one captured CUDA graph launched 4 times "
          "(manifest cuda_graph), the same launches as without",
          gpu_manifest.get("cuda_graph") is True and graph_counts == [1, 4]
          and five == 5 * once, f"{graph_counts}; {five} launches, {once} per run")
    rc, out = run_fake(gpu, "--verbose", "--repeat", "20")
    after20 = re.search(r"gpu pool after the runs: (\d+) of", out)
    rc0, out0 = run_fake(gpu, "--verbose", "--repeat", "5", QOPT_CUDA_GRAPHS="0")
    after0 = re.search(r"gpu pool after the runs: (\d+) of", out0)
    no_graph = [int(re.search(rf"{k} (\d+)", open(os.path.join(tmp, "fake.log")).read())[1])
                for k in ("captures", "launches")]
    check("fake driver: the pool holds only the parameters between runs, and the graph's "
          "buffers (no leak: 5 and 20 replays alike; QOPT_CUDA_GRAPHS=0: none captured)",
          loaded and after and after20 and after0 and int(loaded[1]) <= weights
          and after[1] == after20[1] and int(after[1]) > int(loaded[1])
          and after0[1] == loaded[1] and no_graph == [0, five],
          f"{loaded and loaded[1]} bytes after loading, {after and after[1]} after 5 runs, "
          f"{after20 and after20[1]} after 20, {after0 and after0[1]} after 5 without graphs; "
          f"weights file {weights}; {no_graph}")
    # A capture the driver refuses: the runs go on without a graph.
    rc, out = run_fake(gpu, "--repeat", "5", FAKE_CUDA_CAPTURE_FAIL="1")
    fake_log = open(os.path.join(tmp, "fake.log")).read()
    refused = [int(re.search(rf"{k} (\d+)", fake_log)[1])
               for k in ("captures", "graph_launches", "launches")]
    check("fake driver: a capture the driver refuses leaves the runs to run without a graph",
          rc == 0 and refused == [0, 0, five], f"{refused}; {out.strip()[-120:]}")
    rc, out = run_fake(gpu, "--repeat", "20", QOPT_CUDA_POOL_BYTES=str(int(loaded[1]) + 60000))
    check("fake driver: 20 runs in a pool just above the parameters", rc == 0,
          out.strip()[-200:])

    def modules():
        return int(re.search(r"modules (\d+)", open(os.path.join(tmp, "fake.log")).read())[1])

    def library():
        """The kernel library's kernels the last run launched."""
        return re.findall(r"library (\S+)", open(os.path.join(tmp, "fake.log")).read())

    def library_grids():
        """{(kernel, blocks): launches} of the last run's library launches."""
        log = open(os.path.join(tmp, "fake.log")).read()
        return {(m[1], int(m[2])): int(m[3])
                for m in re.finditer(r"launch (\S+) (\d+) (\d+)", log)}

    run_fake(gpu)
    check("fake driver: gpt2-tiny loads the kernel library for its f32 products (GEMM)",
          # (6 rows: the GEMM's 16-row tiles; its LayerNorms: the row kernel)
          modules() == 2 and library() == ["qopt_cuda_norm_f32", "qopt_cuda_gemm_f32_m16"],
          f"{modules()} modules; {' '.join(library())}")
    # The library loads at its first call: a model without matrix products
    # does not depend on it.
    import onnx
    from onnx import TensorProto, helper
    graph = helper.make_graph(
        [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
         helper.make_node("Relu", ["f"], ["y"])], "elementwise",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(tmp, "elementwise.onnx"))
    ew = os.path.join(tmp, "elementwise.so")
    qoptc(os.path.join(tmp, "elementwise.onnx"), "--target", "cuda", "-o", ew)
    rc, out = run_fake(ew)
    check("fake driver: a model without matrix products loads only its own kernels",
          rc == 0 and modules() == 1, f"{modules()} modules; {out.strip()[-120:]}")
    # int4 weights: the products call the kernel library's GEMV, loaded at
    # its first call; emulated, its lanes equal the CPU target's product.
    q4 = os.path.join(tmp, "gpt2-int4.so")
    rc, err = qoptc(GPT2, "--quantize", "int4:group=32", "--target", "cuda", "-o", q4)
    rc, out = run_fake(q4)
    check("fake driver: int4 gpt2-tiny runs, loading the kernel library for its GEMV",
          rc == 0 and modules() == 2 and "qopt_cuda_gemv_f32_int4" in library()
          and "qopt_cuda_gemm_f32_int4" not in library(),
          f"{modules()} modules; {' '.join(library())}; {out.strip()[-120:]}")
    # 2 x 10 tokens: 20 rows, past the GEMV's 16: the tiled GEMM reads the
    # int4 codes.
    ids20 = os.path.join(tmp, "ids-2x10.npy")
    np.save(ids20, np.random.default_rng(3).integers(0, 50, size=(2, 10)).astype(np.int64))
    rc, out = run_fake(q4, inputs=ids20)
    check("fake driver: int4 gpt2-tiny on 20 rows takes the quantized GEMM",
          rc == 0 and "qopt_cuda_gemm_f32_int4" in library()
          and "qopt_cuda_gemv_f32_int4" not in library(),
          f"{' '.join(library())}; {out.strip()[-120:]}")
    q4e, q4c = os.path.join(tmp, "gpt2-int4-emu.so"), os.path.join(tmp, "gpt2-int4-cpu.so")
    qoptc(GPT2, "--quantize", "int4:group=32", "--target", "cuda", "--cuda-emulate", "-o", q4e)
    qoptc(GPT2, "--quantize", "int4:group=32", "-o", q4c)
    e = rel_error(outputs(q4e, gfeeds)[0][0], outputs(q4c, gfeeds)[0][0])
    check("int4 gpt2-tiny: emulated GEMV = CPU target (<= 1e-5)", e <= 1e-5, f"{e:.1e}")
    f20 = [dict(input_ids=np.load(ids20))]
    e = rel_error(outputs(q4e, f20)[0][0], outputs(q4c, f20)[0][0])
    check("int4 gpt2-tiny on 20 rows: emulated quantized GEMM = CPU target (<= 1e-5)",
          e <= 1e-5, f"{e:.1e}")
    # --cuda-matmul-precision=medium / high: the library's GEMM on the tensor
    # cores (operands rounded to bf16 / tf32, f32 accumulators): the `_bf16` /
    # `_tf32` entries run; emulated, the logits are the CPU target's within the
    # format's error (8 significant bits: 2^-9 relative per operand; tf32's
    # 11: 2^-12), and not within f32's (the rounding happens).
    for precision, suffix, low, high in (("medium", "bf16", 1e-4, 2e-2),
                                         ("high", "tf32", 1e-5, 3e-3)):
        flag = f"--cuda-matmul-precision={precision}"
        bf = os.path.join(tmp, f"gpt2-{suffix}.so")
        qoptc(GPT2, "--target", "cuda", "--cuda-archs", "sm_80", flag, "-o", bf)
        rc, out = run_fake(bf)
        check(f"fake driver: gpt2-tiny with {flag} takes the GEMM's tensor-core entry",
              rc == 0 and library() == ["qopt_cuda_norm_f32", f"qopt_cuda_gemm_f32_m16_{suffix}"],
              f"{' '.join(library())}; {out.strip()[-120:]}")
        bf4 = os.path.join(tmp, f"gpt2-int4-{suffix}.so")
        qoptc(GPT2, "--quantize", "int4:group=32", "--target", "cuda", "--cuda-archs", "sm_80",
              flag, "-o", bf4)
        rc, out = run_fake(bf4, inputs=ids20)
        check(f"fake driver: int4 gpt2-tiny on 20 rows with {flag} takes the quantized GEMM's "
              "tensor-core entry",
              rc == 0 and f"qopt_cuda_gemm_f32_int4_{suffix}" in library()
              and "qopt_cuda_gemm_f32_int4" not in library(), f"{' '.join(library())}")
        bfe = os.path.join(tmp, f"gpt2-{suffix}-emu.so")
        qoptc(GPT2, "--target", "cuda", "--cuda-emulate", flag, "-o", bfe)
        e = [rel_error(outputs(bfe, f)[0][0], outputs(cpu, f)[0][0]) for f in (gfeeds, f20)]
        check(f"gpt2-tiny with {flag}: emulated tensor-core GEMM = CPU target within {suffix}'s "
              f"error ({low:g} < error <= {high:g}), 6 and 20 rows",
              all(low < x <= high for x in e), " ".join(f"{x:.1e}" for x in e))
    # LoRA adapters (rank 8) on its int4 c_attn (32 -> 96) and c_fc (32 -> 128):
    # each LoRA layer is one launch that computes z = x·Aᵀ too (the adapters
    # read the product's own x): the GEMV's grid has ceil(rank / 4) = 2
    # blocks for A's rows besides W's (24 + 2, 32 + 2); on 20 rows the
    # GEMM's one-dimensional grid a tile of z besides y's 2 (no launch of
    # its own for z either way); emulated = CPU target.
    cfg = os.path.join(tmp, "gpt2-lora.json")
    json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 16, "lora_dropout": 0.0,
               "target_modules": ["c_attn", "c_fc"], "init_lora_weights": "gaussian",
               "bias": "none", "task_type": "CAUSAL_LM"}, open(cfg, "w"))
    lora = ["--quantize", "int4:group=32", "--lora-config", cfg]
    q4l = os.path.join(tmp, "gpt2-int4-lora.so")
    rc, err = qoptc(GPT2, *lora, "--target", "cuda", "--cuda-archs", "sm_80", "-o", q4l)
    for rows, inputs, kernel, expected in (
            (6, GPT2_IDS, "qopt_cuda_gemv_f32_int4", {26: 2, 34: 2, 8: 4}),
            (20, ids20, "qopt_cuda_gemm_f32_int4", {3: 4, 1: 4})):
        rc, out = run_fake(q4l, inputs=inputs)
        grids = {b: n for (k, b), n in library_grids().items() if k == kernel}
        check(f"fake driver: int4 + LoRA gpt2-tiny on {rows} rows: a LoRA layer is one "
              f"{kernel} launch, x·Aᵀ included", rc == 0 and grids == expected,
              f"{kernel} blocks: launches {grids}; {out.strip()[-120:]}")
    q4le, q4lc = os.path.join(tmp, "gpt2-lora-emu.so"), os.path.join(tmp, "gpt2-lora-cpu.so")
    qoptc(GPT2, *lora, "--target", "cuda", "--cuda-emulate", "-o", q4le)
    qoptc(GPT2, *lora, "-o", q4lc)
    e = max(rel_error(outputs(q4le, f)[0][0], outputs(q4lc, f)[0][0]) for f in (gfeeds, f20))
    check("int4 + LoRA gpt2-tiny: emulated one-launch LoRA layers = CPU target, 6 and 20 "
          "rows (<= 1e-5)", e <= 1e-5, f"{e:.1e}")
    # The same layers on the tensor cores (20 rows: the GEMM with x·Aᵀ and the
    # branch's K steps in bf16 / tf32).
    for precision, suffix, high in (("medium", "bf16", 2e-2), ("high", "tf32", 3e-3)):
        lib = os.path.join(tmp, f"gpt2-lora-{suffix}-emu.so")
        qoptc(GPT2, *lora, "--target", "cuda", "--cuda-emulate",
              f"--cuda-matmul-precision={precision}", "-o", lib)
        e = rel_error(outputs(lib, f20)[0][0], outputs(q4lc, f20)[0][0])
        check(f"int4 + LoRA gpt2-tiny on 20 rows with --cuda-matmul-precision={precision}: "
              f"one-launch LoRA layers on the tensor cores = CPU target within {suffix}'s "
              f"error (<= {high:g})", e <= high, f"{e:.1e}")
    # FP8 weights (one scale per tensor, or per row): the library decodes
    # the codes through a table of their 256 values.
    for spec, feeds, path, kernel in (
            ("fp8-e4m3", gfeeds, GPT2_IDS, "qopt_cuda_gemv_f32_fp8e4m3"),
            ("fp8-e5m2:per-channel", f20, ids20, "qopt_cuda_gemm_f32_fp8e5m2")):
        tag = spec.replace(":", "-")
        lib, libe, libc = (os.path.join(tmp, f"gpt2-{tag}{x}.so") for x in ("", "-emu", "-cpu"))
        qoptc(GPT2, "--quantize", spec, "--target", "cuda", "-o", lib)
        qoptc(GPT2, "--quantize", spec, "--target", "cuda", "--cuda-emulate", "-o", libe)
        qoptc(GPT2, "--quantize", spec, "-o", libc)
        rc, out = run_fake(lib, inputs=path)
        e = rel_error(outputs(libe, feeds)[0][0], outputs(libc, feeds)[0][0])
        check(f"{spec} gpt2-tiny: the library's {kernel} runs, emulated = CPU target (<= 1e-5)",
              rc == 0 and kernel in library() and e <= 1e-5,
              f"{' '.join(library())}; {e:.1e}; {out.strip()[-100:]}")
    # Per-token int8 / int4 activations before integer weights (W8A8, W4A4):
    # every product is the integer (dp4a) GEMM on codes quantized once per
    # quantizer: by the LayerNorm before it (c_attn, c_fc:
    # qopt_cuda_norm_quant_f32, no y written) or by qopt_cuda_token_quant
    # (the projections after attention and GELU); the quantizers' generated
    # kernels go. FP8 E4M3 tokens before FP8 weights (per channel or per
    # tensor) likewise, the GEMM on the codes as f16 on the tensor cores;
    # its bound is looser: the CPU target multiplies the dequantized values,
    # so a last-bit difference upstream can move a token across a rounding
    # boundary of E4M3's finer grid (the tokens' quantization itself changes
    # the logits by 4e-2 to 6e-2).
    for spec, acts, feeds, path, kernel, bound in (
            ("int8", "int8:per-token", gfeeds, GPT2_IDS, "qopt_cuda_gemm_w8a8_int8_m16", 1e-5),
            ("int8", "int8:per-token", f20, ids20, "qopt_cuda_gemm_w8a8_int8", 1e-5),
            ("int4:group=32", "int4:per-token", f20, ids20, "qopt_cuda_gemm_w8a8_int4", 1e-5),
            ("fp8-e4m3:per-channel", "fp8-e4m3:per-token", gfeeds, GPT2_IDS,
             "qopt_cuda_gemm_w8a8_fp8e4m3_m16", 1e-4),
            ("fp8-e4m3:per-channel", "fp8-e4m3:per-token", f20, ids20,
             "qopt_cuda_gemm_w8a8_fp8e4m3", 1e-4),
            ("fp8-e5m2", "fp8-e4m3:per-token", f20, ids20, "qopt_cuda_gemm_w8a8_fp8e5m2", 1e-4)):
        flags = ["--quantize", spec, "--quantize-activations", acts]
        tag = kernel  # (a library per case: a loaded one is never rewritten)
        lib, libe, libc = (os.path.join(tmp, f"gpt2-{tag}{x}.so") for x in ("", "-emu", "-cpu"))
        qoptc(GPT2, *flags, "--target", "cuda", "-o", lib)
        qoptc(GPT2, *flags, "--target", "cuda", "--cuda-emulate", "-o", libe)
        qoptc(GPT2, *flags, "-o", libc)
        rc, out = run_fake(lib, inputs=path)
        grids = library_grids()
        quant = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_token_quant")
        normq = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_norm_quant_f32")
        norm = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_norm_f32")
        gemm = sum(n for (k, _), n in grids.items() if k == kernel)
        others = [k for k in library() if k.startswith(
            ("qopt_cuda_gemv", "qopt_cuda_gemm_f32_int", "qopt_cuda_gemm_f32_uint",
             "qopt_cuda_gemm_f32_fp8"))]
        e = rel_error(outputs(libe, feeds)[0][0], outputs(libc, feeds)[0][0])
        check(f"{spec} weights, {acts} activations, gpt2-tiny on {len(feeds[0]['input_ids'].ravel())} "
              f"rows: each of the 8 products is one {kernel}, on codes from its LayerNorm "
              f"(4 qopt_cuda_norm_quant_f32) or qopt_cuda_token_quant (4), emulated = "
              f"CPU target (<= {bound:g})",
              rc == 0 and quant == 4 and normq == 4 and norm == 1 and gemm == 8
              and not others and e <= bound,
              f"{quant} + {normq} + {norm} + {gemm} launches; {' '.join(library())}; {e:.1e}; "
              f"{out.strip()[-100:]}")

    # A train step through the stand-in driver (gpt2-tiny, LoRA on c_attn):
    # its LayerNorms are the library's forward and backward kernels: 5
    # forward, 4 backward (the first layer's input, the embeddings, needs no
    # gradient); the gammas are frozen, so no column sums.
    tcfg = os.path.join(tmp, "c_attn-lora.json")
    with open(tcfg, "w") as f:
        json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["c_attn"],
                   "lora_dropout": 0.0, "bias": "none", "init_lora_weights": "gaussian",
                   "task_type": "CAUSAL_LM"}, f)
    tlib = os.path.join(tmp, "gpt2-train.so")
    tll = os.path.join(tmp, "gpt2-train.ll")
    rc, err = qoptc(GPT2, "--lora-config", tcfg, "--train", "--target", "cuda", "--cuda-archs",
                    "sm_80", "--dump-llvm-ir", tll, "-o", tlib)
    step = (f"import sys, numpy as np; sys.path.insert(0, {PYTHON_DIR!r}); import qopt; "
            f"m = qopt.load({tlib!r}, device='cuda'); "
            f"m.train_step(input_ids=np.load({GPT2_IDS!r}))")
    r = subprocess.run([sys.executable, "-c", step], capture_output=True, text=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=fake,
                                FAKE_CUDA_LOG=os.path.join(tmp, "fake.log")))
    grids = library_grids()
    fwd = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_norm_f32")
    bwd = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_norm_bwd_dx_f32")
    cols = [k for k in library() if k.startswith(("qopt_cuda_norm_bwd_cols", "qopt_cuda_norm_bwd_sum"))]
    check("fake driver: gpt2-tiny + LoRA train step runs; its LayerNorms are 5 qopt_cuda_norm_f32 "
          "and 4 qopt_cuda_norm_bwd_dx_f32 launches, no column sums (frozen gammas)",
          rc == 0 and r.returncode == 0 and fwd == 5 and bwd == 4 and not cols,
          f"{fwd} + {bwd} launches; {' '.join(library())}; {(err + r.stderr).strip()[-200:]}")
    # Train steps as a CUDA graph: 6 steps, the ids' shape changing at the
    # 4th and back at the 6th: step 1 measures, 2 is captured and launched,
    # 3 replays, 4 (new shape) drops the graph and measures, 5 captures and
    # launches, 6 measures again: 2 captures, 3 graph launches, every
    # launch made as without graphs; after each launch the 13 updated
    # buffers (4 LoRA factors, their 8 moments, the step) are copied into
    # the parameters the graph reads.
    steps = (f"import sys, numpy as np; sys.path.insert(0, {PYTHON_DIR!r}); import qopt; "
             f"m = qopt.load({tlib!r}, device='cuda'); a = np.load({GPT2_IDS!r}); "
             f"[m.train_step(input_ids=x) for x in (a, a, a, a[:, :5], a[:, :5], a)]")
    graph_runs = {}
    for graphs in ("1", "0"):
        r = subprocess.run([sys.executable, "-c", steps], capture_output=True, text=True,
                           env=dict(os.environ, LD_LIBRARY_PATH=fake, QOPT_CUDA_GRAPHS=graphs,
                                    FAKE_CUDA_LOG=os.path.join(tmp, "fake.log")))
        log = open(os.path.join(tmp, "fake.log")).read()
        graph_runs[graphs] = (r.returncode, *[int(re.search(rf"\n{k} (\d+)", "\n" + log)[1])
                                              for k in ("captures", "graph_launches", "copies",
                                                        "launches")])
    tmanifest = json.load(open(tlib[:-3] + ".json")) if os.path.exists(tlib[:-3] + ".json") else {}
    check("fake driver: gpt2-tiny + LoRA train steps replay as a CUDA graph per input shape "
          "(manifest cuda_graph on every entry): 2 captures, 3 launches, 13 parameter copies "
          "each, the same kernel launches as QOPT_CUDA_GRAPHS=0",
          tmanifest.get("cuda_graph") is True
          and all(e.get("cuda_graph") for e in tmanifest.get("entries", [{}]))
          and graph_runs["1"][:4] == (0, 2, 3, 39) and graph_runs["0"][:4] == (0, 0, 0, 0)
          and graph_runs["1"][4] == graph_runs["0"][4],
          f"{graph_runs}")
    # Its optimizer: AdamW's 4 parameters (2 layers' lora_A and lora_B) in
    # one multi-tensor call, one launch (the update to which bufferization
    # gave an earlier one's dead gradient buffer gets a fresh buffer).
    adamw_calls = [int(m[1]) for m in re.finditer(r"call void @qopt_cuda_adamw\(i64 (\d+),",
                                                   open(tll).read() if os.path.exists(tll) else "")]
    adamw = sum(n for (k, _), n in grids.items() if k == "qopt_cuda_adamw_f32")
    check("fake driver: gpt2-tiny + LoRA train step updates its 4 parameters in one "
          "multi-tensor AdamW launch",
          adamw_calls == [4] and adamw == 1,
          f"calls {adamw_calls}; {adamw} launches of qopt_cuda_adamw_f32")
    # The step's host work on device memory (the loss's sums over tokens,
    # its mean, the step counter and AdamW's bias corrections) runs in
    # one-thread kernels, the input ids, which nothing writes, are read
    # without waiting, and the position ids' range check compares the ends
    # of their Range without reading them: the entry waits for the GPU only
    # at its end.
    entry = re.search(r"^define [^\n]*@qopt_entry\(.*?^}",
                      open(tll).read() if os.path.exists(tll) else "", re.S | re.M)
    waits = entry.group(0).count("call void @qopt_cuda_host_sync()") if entry else -1
    check("gpt2-tiny + LoRA train step: the host waits for the GPU once, at the end",
          waits == 1, f"{waits} waits")
    # So with gradient clipping and a schedule: the gradients' norms (sums
    # of squares into buffers the runs share), the clipping coefficient and
    # the learning rate are one-thread kernels too; emulated steps = CPU.
    clip = ["--lora-config", tcfg, "--train", "--optimizer", "adamw:lr=1e-2",
            "--max-grad-norm", "0.5", "--lr-schedule", "cosine", "--total-steps", "10",
            "--warmup-steps", "2"]
    cll = os.path.join(tmp, "gpt2-clip.ll")
    qoptc(GPT2, *clip, "--target", "cuda", "--cuda-archs", "sm_80", "--dump-llvm-ir", cll,
          "-o", os.path.join(tmp, "gpt2-clip.so"))
    entry = re.search(r"^define [^\n]*@qopt_entry\(.*?^}",
                      open(cll).read() if os.path.exists(cll) else "", re.S | re.M)
    waits = entry.group(0).count("call void @qopt_cuda_host_sync()") if entry else -1
    clip_emu = os.path.join(tmp, "gpt2-clip-emu.so")
    clip_cpu = os.path.join(tmp, "gpt2-clip-cpu.so")
    qoptc(GPT2, *clip, "--target", "cuda", "--cuda-emulate", "-o", clip_emu)
    qoptc(GPT2, *clip, "-o", clip_cpu)
    clip_ids = np.random.default_rng(3).integers(0, 50, (2, 12)).astype(np.int64)
    la, lb, stops, after = [], [], [], []
    if os.path.exists(clip_emu) and os.path.exists(clip_cpu):
        a, b = qopt.load(clip_emu), qopt.load(clip_cpu)
        la = [float(a.train_step(input_ids=clip_ids)) for _ in range(4)]
        lb = [float(b.train_step(input_ids=clip_ids)) for _ in range(4)]
        # An id out of range: the emulated step's check is a device check
        # (the status word), the CPU's an assertion; both stop the step with
        # the same message and change nothing, so the next steps agree.
        bad = clip_ids.copy()
        bad[1, 3] = 50
        for m in (a, b):
            try:
                m.train_step(input_ids=bad)
                stops.append("ran")
            except Exception as ex:  # noqa: BLE001
                stops.append(str(ex))
        after = [float(m.train_step(input_ids=clip_ids)) for m in (a, b)]
    e = max((abs(x - y) / abs(y) for x, y in zip(la, lb)), default=1.0)
    check("gpt2-tiny + LoRA train step with --max-grad-norm and a cosine schedule: one wait, "
          "at the end; emulated = CPU (4 steps' losses <= 1e-5, loss falls)",
          waits == 1 and len(la) == 4 and e <= 1e-5 and la[-1] < la[0],
          f"{waits} waits; {e:.1e}; {la}")
    manifest = json.load(open(os.path.join(tmp, "gpt2-clip.json"))) \
        if os.path.exists(os.path.join(tmp, "gpt2-clip.json")) else {}
    check("gpt2-tiny + LoRA train step: the embedding's id check is made on the device "
          "(manifest 'checks'); an id out of range stops the emulated step with the CPU "
          "target's message, and the next step's loss is the CPU's (<= 1e-5)",
          len(manifest.get("checks", [])) == 1 and "out of range" in manifest["checks"][0]
          and len(stops) == 2
          and stops[0] == stops[1] and "an id is out of range (valid: -50 to 49)"
          in stops[0] and len(after) == 2
          and abs(after[0] - after[1]) <= 1e-5 * abs(after[1]),
          f"{manifest.get('checks')}; {stops}; {after}")

    # ONNX Attention (opset 23, attention.py's models): each qopt.attention
    # is one launch of the library's fused kernel (a block per 16 query
    # rows of each batch and head), the scores never stored; emulated =
    # CPU target for grouped-query causal attention with dynamic sizes and
    # for a bool mask with a soft cap.
    sys.path.insert(0, HERE)
    import attention  # noqa: E402
    rng = np.random.default_rng(5)
    for name, m, shapes, blocks in (
            ("grouped-query causal", attention.gqa, [(3, 4, 9, 8), (3, 2, 9, 8), (3, 2, 9, 6)],
             3 * 4),
            ("bool mask + soft cap", attention.masked, [(2, 5, 12), (2, 7, 12), (2, 7, 12)],
             2 * 3)):
        tag = name.split()[0]
        path = os.path.join(tmp, f"attention-{tag}.onnx")
        onnx.save(m, path)
        lib, libe, libc = (os.path.join(tmp, f"attention-{tag}{x}.so") for x in ("", "-emu", "-cpu"))
        rc, err = qoptc(path, "--target", "cuda", "--cuda-archs", "sm_80", "-o", lib)
        qoptc(path, "--target", "cuda", "--cuda-emulate", "-o", libe)
        qoptc(path, "-o", libc)
        feed = {i.name: rng.standard_normal(s).astype(np.float32)
                for i, s in zip(m.graph.input, shapes)}
        if len(m.graph.input) > 3:
            mask = rng.random((5, 7)) > 0.3
            mask[1] = False  # a row with every key masked: zeros
            feed["m"] = mask
        args = []
        for k, v in feed.items():
            np.save(os.path.join(tmp, f"att-{k}.npy"), v)
            args += ["--input", f"{k}={os.path.join(tmp, f'att-{k}.npy')}"]
        rc, out = run_fake(lib, *args, inputs=None)
        grids = {b: n for (k, b), n in library_grids().items()
                 if k == "qopt_cuda_attention_f32"}
        e = rel_error(outputs(libe, [feed])[0][0], outputs(libc, [feed])[0][0])
        check(f"attention, {name}: one qopt_cuda_attention_f32 launch of {blocks} blocks; "
              f"emulated = CPU target (<= 1e-5)",
              rc == 0 and grids == {blocks: 1} and e <= 1e-5,
              f"attention grids {grids}; {e:.1e}; {out.strip()[-120:]}")

    def error(name, lib, expect, *args, **env):
        rc, out = run_fake(lib, *args, **env)
        ok = rc == 1 and expect in out and "Segmentation" not in out
        line = out.strip().splitlines()[-1] if out.strip() else ""
        check(f"error {name}", ok, line.replace(tmp, "TMP"))

    error("no driver", gpu, "no CUDA driver on this machine", LD_LIBRARY_PATH="/nonexistent")
    error("old GPU", gpu, "is sm_75, older than every architecture the model was compiled for",
          FAKE_CUDA_CC="75")
    error("no such GPU", gpu, "QOPT_CUDA_DEVICE=3: there are 1 GPUs", QOPT_CUDA_DEVICE="3")
    error("pool too small for the parameters", gpu, "out of GPU memory for parameter",
          QOPT_CUDA_POOL_BYTES="1000")
    error("pool too small for a run", gpu, "the model stopped: CUDA: out of memory:",
          QOPT_CUDA_POOL_BYTES=str(int(loaded[1]) + 1024))
    error("pool larger than the GPU", gpu, "cannot reserve a pool of",
          FAKE_CUDA_MEM="1000", QOPT_CUDA_POOL_BYTES="1000000000000")
    error("kernel launch fails", gpu, "the model stopped: CUDA: cannot launch a kernel",
          FAKE_CUDA_FAIL_LAUNCH="3")
    error("no concurrent managed access", gpu, "lacks concurrent managed memory access",
          FAKE_CUDA_CONCURRENT_MANAGED="0")
    error("cpu model on --device cuda", cpu, "was compiled for cpu, not cuda", "--device", "cuda")
    error("cuda model on --device cpu", gpu, "was compiled for cuda, not cpu", "--device", "cpu")
    # The Python package: device="cuda", numpy in and out.
    code = (f"import sys; sys.path.insert(0, {PYTHON_DIR!r}); import numpy as np, qopt\n"
            f"m = qopt.load({gpu!r}, device='cuda')\n"
            f"out = m.run(input_ids=np.load({GPT2_IDS!r}))\n"
            f"print(m.device, m.gpu_name, out[0].shape, out[0].dtype)\n"
            f"try:\n    qopt.load({gpu!r}, device='cpu')\nexcept RuntimeError as e:\n    print(e)\n"
            # The same library twice shares one GPU state: dropping one
            # keeps the other's pool and kernels.
            # (With the stand-in driver no kernel runs: a run-time check may
            # stop the second copy's run on the garbage the pool holds.)
            f"a, b = qopt.load({gpu!r}), qopt.load({gpu!r})\n"
            f"del a\n"
            f"try:\n    b.run(input_ids=np.load({GPT2_IDS!r}))\n"
            f"    print('second copy ran')\n"
            f"except ValueError as e:\n    print('second copy ran:', e)\n"
            f"del b\nprint('both dropped')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, LD_LIBRARY_PATH=fake))
    check("python: qopt.load(device='cuda') runs on the fake driver, device='cpu' refused",
          r.returncode == 0 and "cuda Fake GPU (1, 6, 50) float32" in r.stdout
          and "was compiled for cuda, not cpu" in r.stdout, (r.stdout + r.stderr).strip()[-300:])
    check("python: one library loaded twice, the first dropped, the second still runs",
          r.returncode == 0 and "second copy ran" in r.stdout and "both dropped" in r.stdout
          and "initialized" not in r.stdout, r.stdout.strip().splitlines()[-2][:200])

    # --- The recipes: inference for every architecture, emulated = CPU.
    feeds = llama_feeds()
    ids = np.random.default_rng(1).integers(0, 128, size=(4, 9)).astype(np.int64)
    calib = os.path.join(tmp, "calib.npz")
    np.savez(calib, input_ids=ids, attention_mask=np.ones_like(ids))
    # A batch of 4 x 9 tokens too: 36 rows, past the GEMV's 16, so the
    # quantized products take the tiled GEMM with the codes dequantized
    # into its tiles.
    feeds.append(dict(input_ids=ids, attention_mask=np.ones_like(ids)))
    # (The host code's calls, from the LLVM IR: the library's symbols are in
    # every CUDA model.)
    calls_of = {}
    for recipe in ["lora", "qlora", "quarot-w4a16", "quarot-w4a4", "smoothquant-w8a8"]:
        extra = ["--calibration-data", calib] if recipe == "smoothquant-w8a8" else []
        lib = os.path.join(tmp, f"{recipe}.so")
        ll = os.path.join(tmp, f"{recipe}.ll")
        rc, err = qoptc(LLAMA, "--recipe", recipe, *extra, "--target", "cuda",
                        "--dump-llvm-ir", ll, "-o", lib)
        calls_of[recipe] = re.findall(r"call void @(qopt_cuda_\w+)\(",
                                      open(ll).read() if os.path.exists(ll) else "")
        check(f"recipe {recipe} compiles for cuda", rc == 0, err.strip()[-200:])
        if rc == 0:
            check_compiled(f"recipe {recipe}", lib, ARCHS)
        if recipe == "qlora" and os.path.exists(
                os.path.join(BIN, "..", "lib", "libqopt_cuda_library.a")):
            # Its NF4 products call the kernel library's GEMV (embedded).
            check("recipe qlora: the library embeds the CUDA kernel library",
                  b"qopt_cuda_library_fatbin" in open(lib, "rb").read())
            # Its down projections (K = 64, the NF4 block) add their LoRA
            # branch in the library's kernels (qopt_cuda_qlinear_lora).
            check("recipe qlora: LoRA branches fused into the quantized products",
                  "qopt_cuda_qlinear_lora" in calls_of[recipe])
        # W4A4 / W8A8: every activation quantization is part of the kernel
        # that writes the rows (the norms, QuaRot's online Hadamards) or,
        # with the smoothing where no norm takes it, one launch for all the
        # products of its rows.
        if recipe in ("quarot-w4a4", "smoothquant-w8a8"):
            c = calls_of[recipe]
            count = {k: c.count(k) for k in ("qopt_cuda_norm_quant", "qopt_cuda_hadamard_quant",
                                             "qopt_cuda_quantize_rows", "qopt_cuda_qlinear")}
            want = ({"qopt_cuda_norm_quant": 4, "qopt_cuda_hadamard_quant": 4,
                     "qopt_cuda_quantize_rows": 0, "qopt_cuda_qlinear": 14}
                    if recipe == "quarot-w4a4" else
                    {"qopt_cuda_norm_quant": 4, "qopt_cuda_hadamard_quant": 0,
                     "qopt_cuda_quantize_rows": 4, "qopt_cuda_qlinear": 14})
            # (SmoothQuant's o_proj smoothing, x / s, inside the rows'
            # quantization: its 11th argument, 2.)
            ll = open(os.path.join(tmp, f"{recipe}.ll")).read()
            smoothed = sum(a.split(", ")[10] == "i64 2" for a in re.findall(
                r"call void @qopt_cuda_quantize_rows\(([^)]*)\)", ll))
            want_smoothed = 2 if recipe == "smoothquant-w8a8" else 0
            check(f"recipe {recipe}: the 14 products' activations quantized in "
                  f"{want['qopt_cuda_norm_quant']} norms, {want['qopt_cuda_hadamard_quant']} "
                  f"Hadamard transforms and {want['qopt_cuda_quantize_rows']} row quantizations "
                  f"({want_smoothed} smoothing as they quantize)",
                  count == want and smoothed == want_smoothed, f"{count}; {smoothed} smoothed")
        emu, cpu = os.path.join(tmp, f"{recipe}-emu.so"), os.path.join(tmp, f"{recipe}-cpu.so")
        qoptc(LLAMA, "--recipe", recipe, *extra, "--target", "cuda", "--cuda-emulate", "-o", emu)
        qoptc(LLAMA, "--recipe", recipe, *extra, "-o", cpu)
        e = max(rel_error(a[0], b[0]) for a, b in zip(outputs(emu, feeds), outputs(cpu, feeds)))
        check(f"recipe {recipe}: emulated kernels = CPU target (<= 1e-5)", e <= 1e-5, f"{e:.1e}")

    # --- Hadamard orders base · 2^k: a real Llama export of hidden size 48
    # (12 · 4) and intermediate size 96 (12 · 8). QuaRot's online rotations
    # (48 before o_proj, 96 before down_proj, fused with the W4A4 input's
    # quantization) are library calls with Paley's H_12 passed as the host
    # constant (the launch plan reads it on the host: a device copy would
    # be written by a queued kernel the host does not wait for); emulated =
    # CPU target. (The stand-in driver cannot run this model: its shape
    # checks read values that kernels compute.)
    h48 = os.path.join(HERE, "rotate", "llama-h48", "model.onnx")
    ref = np.load(os.path.join(HERE, "rotate", "llama-h48", "reference.npz"))
    h48_feeds = [{k: ref[f"{case}.{k}"] for k in ("input_ids", "attention_mask")}
                 for case in ("case2", "case4")]
    for recipe, entry in (("quarot-w4a16", "qopt_cuda_hadamard"),
                          ("quarot-w4a4", "qopt_cuda_hadamard_quant")):
        lib, ll = os.path.join(tmp, f"h48-{recipe}.so"), os.path.join(tmp, f"h48-{recipe}.ll")
        rc, err = qoptc(h48, "--recipe", recipe, "--target", "cuda", "--cuda-archs", "sm_80",
                        "--dump-llvm-ir", ll, "-o", lib)
        check(f"llama-h48 {recipe} compiles for cuda", rc == 0, err.strip()[-200:])
        if rc:
            continue
        check_compiled(f"llama-h48 {recipe}", lib, ["sm_80"])
        text = open(ll).read()
        base = r", ptr nonnull @__constant_12x12xi8, i64 0, i64 12, i64 12, i64 12, i64 1,"
        calls = [(m[1], int(m[2])) for m in re.finditer(
            r"call void @(qopt_cuda_hadamard\w*)\(i64 1, i64 (\d+), [^\n]*" + base, text)]
        want = [("qopt_cuda_hadamard", 48), (entry, 96)] * 2
        check(f"llama-h48 {recipe}: the rotations of 48 and 96 are library calls with H_12 "
              "from the host", calls == want, f"{calls}")
        emu, cpu = os.path.join(tmp, f"h48-{recipe}-emu.so"), os.path.join(tmp, f"h48-{recipe}-cpu.so")
        qoptc(h48, "--recipe", recipe, "--target", "cuda", "--cuda-emulate", "-o", emu)
        qoptc(h48, "--recipe", recipe, "-o", cpu)
        e = max(rel_error(a[0], b[0]) for a, b in zip(outputs(emu, h48_feeds),
                                                      outputs(cpu, h48_feeds)))
        check(f"llama-h48 {recipe}: emulated kernels = CPU target (<= 1e-5)", e <= 1e-5,
              f"{e:.1e}")

    def rotation(n, seed):
        """A graph of one qopt.hadamard over [2, n], compiled for CUDA (sm_80),
        emulated and for the CPU; an input x saved. Returns the three
        libraries, x and its path."""
        had = os.path.join(tmp, f"hadamard-{n}.mlir")
        with open(had, "w") as f:
            f.write(f'func.func @main(%x: tensor<2x{n}xf32> {{qopt.name = "x"}}) -> '
                    f'(tensor<2x{n}xf32> {{qopt.name = "y"}}) {{\n'
                    f'  %y = qopt.hadamard %x : (tensor<2x{n}xf32>) -> tensor<2x{n}xf32>\n'
                    f'  return %y : tensor<2x{n}xf32>\n}}\n')
        libs = [os.path.join(tmp, f"hadamard-{n}{s}.so") for s in ("", "-emu", "-cpu")]
        qoptc(had, "--target", "cuda", "--cuda-archs", "sm_80", "-o", libs[0])
        qoptc(had, "--target", "cuda", "--cuda-emulate", "-o", libs[1])
        qoptc(had, "-o", libs[2])
        x = np.random.default_rng(seed).standard_normal((2, n)).astype(np.float32)
        path = os.path.join(tmp, f"hadamard-x-{n}.npy")
        np.save(path, x)
        return libs, x, path

    # A rotation of 18944 = 148 · 128 (Qwen2-7B's intermediate size), a graph
    # of its own: through the stand-in driver, one launch of the mixed
    # kernel, its 78768 bytes of shared memory opted in to first (the
    # stand-in refuses launches past 48 KB without); a GPU that gives less
    # stops the run with a message; emulated = CPU target.
    (hlib, hemu, hcpu), hx, hx_path = rotation(18944, 3)
    rc, out = run_fake(hlib, "--input", f"x={hx_path}", inputs=None)
    check("fake driver: a Hadamard rotation of 18944 is one launch of the mixed kernel (2 rows, "
          "78768 bytes of shared memory opted in to)",
          rc == 0 and library_grids() == {("qopt_cuda_hadamard_mixed_f32", 2): 1},
          f"{out.strip()[-200:]}; {library_grids()}")
    rc, out = run_fake(hlib, "--input", f"x={hx_path}", inputs=None,
                       FAKE_CUDA_SHARED_OPTIN="65536")
    check("fake driver: a GPU without 78768 bytes of shared memory per block stops the run "
          "with a message", rc != 0 and "qopt_cuda_hadamard_mixed_f32 needs 78768 bytes of "
          "shared memory per block, which this GPU does not give" in out, out.strip()[-200:])
    e = rel_error(outputs(hemu, [dict(x=hx)])[0][0], outputs(hcpu, [dict(x=hx)])[0][0])
    check("Hadamard rotation of 18944: emulated kernels = CPU target (<= 1e-5)", e <= 1e-5,
          f"{e:.1e}")
    # Past 23040: 28672 = 28 · 1024 (Llama-3-70B's intermediate size) is two
    # launches, the butterflies over the 56 runs of 1024 (2 a block), then
    # H_28 across them (2 rows x 32 blocks of 32 columns); emulated = CPU.
    (hlib, hemu, hcpu), hx, hx_path = rotation(28672, 4)
    rc, out = run_fake(hlib, "--input", f"x={hx_path}", inputs=None)
    check("fake driver: a Hadamard rotation of 28672 is the butterflies' launch (28 blocks) and "
          "the columns' (64 blocks)",
          rc == 0 and library_grids() == {("qopt_cuda_hadamard_f32", 28): 1,
                                          ("qopt_cuda_hadamard_columns_f32", 64): 1},
          f"{out.strip()[-200:]}; {library_grids()}")
    e = rel_error(outputs(hemu, [dict(x=hx)])[0][0], outputs(hcpu, [dict(x=hx)])[0][0])
    check("Hadamard rotation of 28672: emulated kernels = CPU target (<= 1e-5)", e <= 1e-5,
          f"{e:.1e}")

    # --- Train steps: compile for a GPU; emulated steps = CPU steps.
    batch = dict(input_ids=ids, attention_mask=np.ones_like(ids))

    def compare_steps(emu, cpu):
        """The CPU model, the largest relative gradient error, both models'
        losses over 3 train steps and their largest relative difference."""
        a, b = qopt.load(emu), qopt.load(cpu)
        ga, gb = a.gradients(**batch), b.gradients(**batch)
        eg = max(rel_error(ga[k], gb[k]) for k in gb)
        la = [a.train_step(**batch) for _ in range(3)]
        lb = [b.train_step(**batch) for _ in range(3)]
        return b, eg, la, lb, max(abs(x - y) / abs(y) for x, y in zip(la, lb))
    for recipe in ["lora", "qlora", "quarot-w4a16", "smoothquant-w8a8"]:
        extra = ["--calibration-data", calib] if recipe == "smoothquant-w8a8" else []
        if recipe in ("quarot-w4a16", "smoothquant-w8a8"):
            extra += ["--lora-config", FRESH]  # the recipe has no adapter
        train = [LLAMA, "--recipe", recipe, *extra, "--train", "--optimizer",
                 "adamw:lr=1e-2,betas=0.9/0.999,eps=1e-8,weight_decay=0.0"]
        lib = os.path.join(tmp, f"{recipe}-train.so")
        tll = os.path.join(tmp, f"{recipe}-train.ll")
        rc, err = qoptc(*train, "--target", "cuda", "--cuda-archs", "sm_80", "--dump-llvm-ir",
                        tll, "-o", lib)
        check(f"recipe {recipe} train step compiles for cuda", rc == 0, err.strip()[-200:])
        if recipe == "qlora":
            # The GatherND's index checks read position ids kernels compute:
            # made on the device, the step waits for the GPU only at its end.
            entry = re.search(r"^define [^\n]*@qopt_entry\(.*?^}",
                              open(tll).read() if os.path.exists(tll) else "", re.S | re.M)
            waits = entry.group(0).count("call void @qopt_cuda_host_sync()") if entry else -1
            checks = json.load(open(lib[:-3] + ".json")).get("checks", []) if rc == 0 else []
            check("recipe qlora train step: its 3 index checks (embedding, GatherND) made on the "
                  "device; the host waits for the GPU once, at the end",
                  waits == 1 and len(checks) == 3, f"{waits} waits; checks {checks}")
        if rc == 0:
            manifest = check_compiled(f"recipe {recipe} train step", lib, ["sm_80"])
            # Every trainable parameter's AdamW update in one call of the
            # library's multi-tensor AdamW.
            calls = [int(m[1]) for m in re.finditer(r"call void @qopt_cuda_adamw\(i64 (\d+),",
                                                    open(tll).read())]
            trainable = sum(p["role"] == "trainable" for p in manifest["parameters"])
            check(f"recipe {recipe} train step: every parameter's AdamW update in one "
                  "multi-tensor call",
                  calls == [trainable],
                  f"{trainable} trainable parameters; calls of {calls}")
        emu, cpu = os.path.join(tmp, f"{recipe}-temu.so"), os.path.join(tmp, f"{recipe}-tcpu.so")
        qoptc(*train, "--target", "cuda", "--cuda-emulate", "-o", emu)
        qoptc(*train, "-o", cpu)
        b, eg, la, lb, el = compare_steps(emu, cpu)
        check(f"recipe {recipe} train step: emulated = CPU (gradients <= 1e-4, 3 steps' "
              f"losses <= 1e-5, loss falls)", eg <= 1e-4 and el <= 1e-5 and lb[2] < lb[0],
              f"gradients {eg:.1e}, losses {el:.1e}, {lb[0]:.4f} -> {lb[2]:.4f}")
        if recipe in ("quarot-w4a16", "smoothquant-w8a8"):
            # Adapters of the rewritten model have no PEFT form.
            try:
                b.save_adapter(os.path.join(tmp, f"{recipe}-adapter"))
                refused = False
            except ValueError:
                refused = True
            check(f"recipe {recipe} train step: save_adapter refused", refused)

    # Mixed precision in the train step: the qlora recipe's products on the
    # tensor cores (bf16 operands, f32 accumulators, f32 master weights and
    # AdamW): gradients within bf16's error of the CPU target's f32, the
    # loss falling as on the CPU.
    train = [LLAMA, "--recipe", "qlora", "--train", "--optimizer",
             "adamw:lr=1e-2,betas=0.9/0.999,eps=1e-8,weight_decay=0.0"]
    emu, cpu = os.path.join(tmp, "qlora-bf16-temu.so"), os.path.join(tmp, "qlora-tcpu.so")
    qoptc(*train, "--target", "cuda", "--cuda-emulate", "--cuda-matmul-precision=medium",
          "-o", emu)
    _, eg, la, lb, el = compare_steps(emu, cpu)
    check("recipe qlora train step with --cuda-matmul-precision=medium: emulated = CPU within "
          "bf16's error (gradients <= 3e-2, 3 steps' losses <= 2e-3, loss falls)",
          eg <= 3e-2 and el <= 2e-3 and la[2] < la[0],
          f"gradients {eg:.1e}, losses {el:.1e}, {la[0]:.4f} -> {la[2]:.4f}")

print(f"cuda target: {failures} failed")
