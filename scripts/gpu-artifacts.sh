#!/usr/bin/env bash
# Builds, on this machine (no GPU needed), what scripts/gpu-check.sh runs on a GPU
# machine: the kernels of test/gpu/smoke-kernels.mlir lowered by MLIR's NVPTX path to
# PTX (format=isa) and to a cubin (format=bin, MLIR calling the toolkit's ptxas), plus
# ptxas's resource report (registers, spills) for each kernel.
#   scripts/gpu-artifacts.sh [OUT_DIR]      # default: gpu-artifacts/ (git-ignored)
# Environment: QOPT_MLIR_OPT (default build/bin/qopt-opt, else LLVM 22's mlir-opt),
#   QOPT_GPU_CHIP (default sm_90), QOPT_PTXAS (default /usr/local/cuda/bin/ptxas),
#   QOPT_PYTHON (default the project's .venv, else python3).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/gpu-artifacts}
opt=${QOPT_MLIR_OPT:-$here/build/bin/qopt-opt}
[ -x "$opt" ] || opt=/usr/lib/llvm-22/bin/mlir-opt
chip=${QOPT_GPU_CHIP:-sm_90}
ptxas=${QOPT_PTXAS:-/usr/local/cuda/bin/ptxas}
# (The project's venv, where scripts/setup.sh made one: numpy for the references.)
py=${QOPT_PYTHON:-python3}
[ -n "${QOPT_PYTHON:-}" ] || [ ! -x "$here/.venv/bin/python" ] || py=$here/.venv/bin/python
# gpu-module-to-binary finds libdevice and ptxas through CUDA_ROOT.
export CUDA_ROOT=${CUDA_ROOT:-$(dirname "$(dirname "$ptxas")")}
mkdir -p "$out"

lower() { # $1 = gpu-module-to-binary format
  "$opt" "$here/test/gpu/smoke-kernels.mlir" --pass-pipeline="builtin.module(nvvm-attach-target{chip=$chip features=+ptx80 O=3}, gpu.module(convert-scf-to-cf, convert-gpu-to-nvvm, canonicalize, cse, reconcile-unrealized-casts), gpu-module-to-binary{format=$1})"
}

extract() { "$py" "$here/scripts/extract-gpu-object.py" "$@"; }

lower isa | extract assembly "$out/smoke.ptx"
lower bin | extract bin "$out/smoke.cubin"
if [ -x "$ptxas" ]; then
  "$ptxas" -arch="$chip" -O3 -v "$out/smoke.ptx" -o "$out/smoke-ptxas.cubin" \
    2> "$out/ptxas-report.txt"
  cat "$out/ptxas-report.txt"
  if grep -E "[1-9][0-9]* bytes spill" "$out/ptxas-report.txt"; then
    echo "gpu-artifacts: a kernel spills registers" >&2
    exit 1
  fi
fi
# The CUDA kernel library's cubins (built by scripts/build.sh where nvcc is found).
if ls "$here"/build/lib/cuda/library-*.cubin >/dev/null 2>&1; then
  cp "$here"/build/lib/cuda/library-*.cubin "$here"/build/lib/cuda/library-*.ptxas.txt "$out/"
else
  echo "gpu-artifacts: no build/lib/cuda/library-*.cubin (build with nvcc first)" >&2
fi
ls -l "$out"

# Models compiled by qoptc --target cuda (the README example, also with int4
# weights, with W8A8 and with FP8 W8A8; a Hadamard rotation of 28672; the lora, qlora, quarot-w4a16, quarot-w4a4 and
# smoothquant-w8a8 recipes on the test Llama; the qlora train step; some again
# with the GEMM on the tensor cores), with their inputs and the CPU target's
# outputs, and qopt-run with the
# runtime to run them there (scripts/gpu-check.sh compares).
bin=$here/build/bin
if [ -x "$bin/qoptc" ]; then
  models=$out/models
  # (No archive of an earlier run survives a failed one.)
  rm -rf "$models" "$out/models.tar.xz" && mkdir -p "$models" "$out/bin" "$out/lib"
  cp "$bin/qopt-run" "$out/bin/" && cp "$here/build/lib/libqopt_runtime.so" "$out/lib/"
  llama=$here/test/e2e/real/llama-dynamo/model.onnx
  "$py" - "$models" <<'PY'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(0)
ids = rng.integers(0, 128, size=(2, 7)).astype(np.int64)
mask = np.ones_like(ids)
mask[1, 5:] = 0
np.save(f"{d}/input_ids.npy", ids)
np.save(f"{d}/attention_mask.npy", mask)
labels = np.where(mask == 1, ids, -100)
np.save(f"{d}/labels.npy", labels)
calib = rng.integers(0, 128, size=(4, 9)).astype(np.int64)
np.savez(f"{d}/calib.npz", input_ids=calib, attention_mask=np.ones_like(calib))
# 36 and 20 rows: past the GEMV's 16, the quantized products take the GEMM.
np.save(f"{d}/prefill_ids.npy", calib)
np.save(f"{d}/prefill_mask.npy", np.ones_like(calib))
np.save(f"{d}/gpt2-prefill_ids.npy", rng.integers(0, 50, size=(2, 10)).astype(np.int64))
# A rotation of 28672 (Llama-3-70B's intermediate size: the Hadamard
# transform's two launches past 23040), on 3 rows.
np.save(f"{d}/hadamard-x.npy", rng.standard_normal((3, 28672)).astype(np.float32))
with open(f"{d}/hadamard-28672.mlir", "w") as f:
    f.write('func.func @main(%x: tensor<3x28672xf32> {qopt.name = "x"}) -> '
            '(tensor<3x28672xf32> {qopt.name = "y"}) {\n'
            '  %y = qopt.hadamard %x : (tensor<3x28672xf32>) -> tensor<3x28672xf32>\n'
            '  return %y : tensor<3x28672xf32>\n}\n')
PY
  in="--input input_ids=$models/input_ids.npy --input attention_mask=$models/attention_mask.npy"
  # The lent machines' GPUs (H100, H200) are sm_90; one architecture keeps
  # the artifacts small enough to carry (QOPT_GPU_ARCHS=sm_80,sm_90,… for
  # others).
  archs=${QOPT_GPU_ARCHS:-sm_90}
  compile() { # name, qoptc args...
    local name=$1; shift
    "$bin/qoptc" "$@" --target cuda --cuda-archs "$archs" -o "$models/$name.so" &&
      "$bin/qoptc" "$@" -o "$models/$name-cpu.so" || return 1
  }
  compile gpt2 "$here/examples/gpt2-tiny.onnx" &&
    "$bin/qopt-run" "$models/gpt2-cpu.so" --input "$here/examples/gpt2-tiny-input_ids.npy" \
      --output-dir "$models/gpt2-ref" >/dev/null
  cp "$here/examples/gpt2-tiny-input_ids.npy" "$models/gpt2-input_ids.npy"
  # int4 weights in groups of 32 (the GEMV's and the quantized GEMM's
  # format), on 2 x 10 tokens.
  compile gpt2-int4 "$here/examples/gpt2-tiny.onnx" --quantize int4:group=32 &&
    "$bin/qopt-run" "$models/gpt2-int4-cpu.so" --input "$models/gpt2-prefill_ids.npy" \
      --output-dir "$models/gpt2-int4-ref" >/dev/null
  # W8A8 on 2 x 10 tokens: the activations' codes from the LayerNorms and
  # the rows' quantization, the integer GEMM.
  compile gpt2-w8a8 "$here/examples/gpt2-tiny.onnx" --quantize int8 \
      --quantize-activations int8:per-token &&
    "$bin/qopt-run" "$models/gpt2-w8a8-cpu.so" --input "$models/gpt2-prefill_ids.npy" \
      --output-dir "$models/gpt2-w8a8-ref" >/dev/null
  # FP8 W8A8: E4M3 per-token activations times E4M3 weights per channel (the
  # FP8 GEMM on the tensor cores), on 2 x 10 tokens.
  compile gpt2-fp8 "$here/examples/gpt2-tiny.onnx" --quantize fp8-e4m3:per-channel \
      --quantize-activations fp8-e4m3:per-token &&
    "$bin/qopt-run" "$models/gpt2-fp8-cpu.so" --input "$models/gpt2-prefill_ids.npy" \
      --output-dir "$models/gpt2-fp8-ref" >/dev/null
  compile hadamard-28672 "$models/hadamard-28672.mlir" &&
    "$bin/qopt-run" "$models/hadamard-28672-cpu.so" --input "x=$models/hadamard-x.npy" \
      --output-dir "$models/hadamard-28672-ref" >/dev/null
  for recipe in lora qlora quarot-w4a16 quarot-w4a4 smoothquant-w8a8; do
    extra=()
    [ "$recipe" = smoothquant-w8a8 ] && extra=(--calibration-data "$models/calib.npz")
    compile "$recipe" "$llama" --recipe "$recipe" "${extra[@]}" &&
      "$bin/qopt-run" "$models/$recipe-cpu.so" $in --output-dir "$models/$recipe-ref" >/dev/null
  done
  "$bin/qopt-run" "$models/qlora-cpu.so" --input "input_ids=$models/prefill_ids.npy" \
    --input "attention_mask=$models/prefill_mask.npy" --output-dir "$models/qlora-prefill-ref" >/dev/null
  # Three AdamW steps of the QLoRA train step (entry train_step; its output
  # after the third is that step's loss).
  compile qlora-train "$llama" --recipe qlora --train \
      --optimizer adamw:lr=1e-2,betas=0.9/0.999,eps=1e-8,weight_decay=0.0 &&
    "$bin/qopt-run" "$models/qlora-train-cpu.so" $in --input "labels=$models/labels.npy" \
      --repeat 3 --output-dir "$models/qlora-train-ref" >/dev/null
  # The same on the tensor cores (--cuda-matmul-precision: medium = bf16, high =
  # tf32), checked against the f32 references above within the formats' error.
  tc() { # name, precision, qoptc args...
    local name=$1 precision=$2; shift 2
    "$bin/qoptc" "$@" --target cuda --cuda-archs "$archs" \
      --cuda-matmul-precision="$precision" -o "$models/$name.so" ||
      echo "gpu-artifacts: $name not built (gpu-check.sh reports it missing)" >&2
  }
  tc gpt2-bf16 medium "$here/examples/gpt2-tiny.onnx"
  tc gpt2-tf32 high "$here/examples/gpt2-tiny.onnx"
  tc gpt2-int4-bf16 medium "$here/examples/gpt2-tiny.onnx" --quantize int4:group=32
  tc qlora-prefill-bf16 medium "$llama" --recipe qlora
  tc qlora-train-bf16 medium "$llama" --recipe qlora --train \
      --optimizer adamw:lr=1e-2,betas=0.9/0.999,eps=1e-8,weight_decay=0.0
  rm -f "$models"/*-cpu.so "$models"/*-cpu.safetensors "$models"/*-cpu.json "$models"/*.ptxas.txt
  ls -l "$models"
  # Each model embeds the kernel library's cubins (~8 MB, ~1 MB compressed):
  # carried as one xz archive, well inside what a device run may carry
  # (64 MiB), which gpu-check.sh unpacks.
  "$py" - "$out" <<'PY'
import os, sys, tarfile
out = sys.argv[1]
with tarfile.open(os.path.join(out, "models.tar.xz"), "w:xz") as tar:
    tar.add(os.path.join(out, "models"), arcname="models")
PY
  rm -rf "$models"
  ls -l "$out/models.tar.xz"
else
  echo "gpu-artifacts: no build/bin/qoptc (build first): no CUDA models" >&2
fi
