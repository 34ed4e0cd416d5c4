"""Reads the CUDA kernel library's ptxas reports (one per architecture,
written beside each cubin by lib/Runtime/Kernels/CUDA/RunNvcc.cmake) and
checks each kernel: present for every architecture, no local-memory stack
frame, no spills, at most 128 registers (4 warps a block keep several
blocks per SM). Prints every kernel's registers (the record the issue asks
for) and one verdict line per architecture.

    python ptxas_report.py DIR ARCH…
"""
import os
import re
import sys

FORMATS = ("int4", "uint4", "int8", "uint8", "nf4", "fp8e4m3", "fp8e5m2")
KERNELS = ([f"qopt_cuda_gemv_{f}" for f in FORMATS[:5]]  # bf16 x
           + [f"qopt_cuda_gemv_f32_{f}" for f in FORMATS]
           # (`_bf16`, `_tf32`: the same GEMMs on the tensor cores.)
           + [f"qopt_cuda_gemm_f32{m}{p}" for m in ("", "_m16") for p in ("", "_bf16", "_tf32")]
           + [f"qopt_cuda_gemm_f32_{f}{t}{p}" for f in FORMATS for t in ("", "_t")
              for p in ("", "_bf16", "_tf32")]
           + ["qopt_cuda_attention_f32", "qopt_cuda_attention_bwd_dq_f32",
              "qopt_cuda_attention_bwd_dkv_f32", "qopt_cuda_hadamard_f32", "qopt_cuda_norm_f32",
              "qopt_cuda_token_quant", "qopt_cuda_norm_bwd_dx_f32", "qopt_cuda_norm_bwd_cols_f32",
              "qopt_cuda_norm_bwd_sum_f32", "qopt_cuda_norm_quant_f32",
              "qopt_cuda_hadamard_quant_f32", "qopt_cuda_hadamard_mixed_f32",
              "qopt_cuda_hadamard_columns_f32",
              "qopt_cuda_adamw_f32"]
           # (FP8: E4M3 tokens times FP8 codes on the tensor cores.)
           + [f"qopt_cuda_gemm_w8a8_{f}{t}" for f in FORMATS[:3] + FORMATS[5:]
              for t in ("", "_m16")])
folder, archs = sys.argv[1], sys.argv[2:]
failures = 0
for arch in archs:
    text = open(os.path.join(folder, f"library-{arch}.ptxas.txt")).read()
    # "Compiling entry function 'K' for 'sm_90'" then its "Function properties"
    # and "Used N registers" lines.
    found = {}
    for block in re.split(r"ptxas info\s*: Compiling entry function ", text)[1:]:
        name = re.match(r"'([^']+)'", block).group(1)
        regs = int(re.search(r"Used (\d+) registers", block).group(1))
        stack = int(re.search(r"(\d+) bytes stack frame", block).group(1))
        spills = [int(v) for v in re.findall(r"(\d+) bytes spill (?:stores|loads)", block)]
        smem = re.search(r"(\d+) bytes smem", block)
        found[name] = (regs, stack, sum(spills), int(smem.group(1)) if smem else 0)
    # (A kernel of the library this list does not name is a failure too:
    # every kernel is checked.)
    bad = [f"{k} not checked" for k in found if k not in KERNELS]
    for k in KERNELS:
        if k not in found:
            bad.append(f"{k} missing")
            continue
        regs, stack, spill, smem = found[k]
        print(f"  {arch} {k}: {regs} registers, {smem} bytes shared, {stack} bytes stack, {spill} bytes spilled")
        if stack or spill or regs > 128:
            bad.append(k)
    failures += bool(bad)
    print(f"{arch}: {len(KERNELS)} kernels, no stack frame, no spills, <= 128 registers: "
          + ("ok" if not bad else "FAIL " + ", ".join(bad)))
print(f"ptxas reports: {failures} failed")
