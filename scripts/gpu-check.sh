#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, in one run: tests first, then benchmarks, then a
# summary. Runs unchanged on any machine with a GPU, its driver, a C compiler and
# python3 with torch/transformers/peft; it needs no MLIR: the GPU code is built
# beforehand, on the build machine, by scripts/gpu-artifacts.sh (carry gpu-artifacts/).
#   scripts/gpu-check.sh [RESULTS_DIR]    # default: gpu-check-results/
# Exit status: 0 when every test passed, 1 when one failed, 2 when there is no GPU.
# What it covers (the CUDA back end, issue 19, awaits its first run on a GPU):
#   tests:      MLIR-generated kernels (test/gpu/smoke-kernels.mlir) loaded through the
#               CUDA driver API alone, as cubin and as PTX, checked against the CPU;
#               models compiled by qoptc --target cuda (replayed as CUDA graphs, and
#               gpt2-tiny and the train step again without: QOPT_CUDA_GRAPHS=0) (gpt2-tiny, also with int4
#               weights, with W8A8 and FP8 W8A8; a Hadamard rotation of 28672; five recipes on the test Llama; a QLoRA train
#               step) run by qopt-run against the CPU target's outputs (per-token
#               activation codes: looser bounds, below);
#               the CUDA kernel library's weight-only GEMV (bench/gpu/qlinear_gemv.py:
#               every format against torch, then timings against torch's bf16 matmul),
#               its GEMM, fused LoRA branch, fused attention, Hadamard transform and
#               norms, W8A8, AdamW (gemm.py, lora.py, attention.py, hadamard.py, norm.py, w8a8.py, adamw.py: against
#               torch, then timings);
#   benchmarks: the PyTorch + PEFT (+ bitsandbytes) peer on a Llama-3.2-1B shape.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
results=${1:-$here/gpu-check-results}
artifacts=${QOPT_GPU_ARTIFACTS:-$here/gpu-artifacts}
py=${QOPT_GPU_PYTHON:-python3}
mkdir -p "$results"
summary=()
failed=0

echo "== machine"
if ! nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader; then
  echo "gpu-check: no NVIDIA GPU here (nvidia-smi failed)" >&2
  exit 2
fi
command -v nvcc >/dev/null && nvcc --version | tail -1
"$py" -c 'import torch, transformers, peft; print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)'

echo "== tests"
cc -O2 -Wall "$here/test/gpu/driver_smoke.c" -ldl -lm -o "$results/driver_smoke" ||
  { echo "gpu-check: driver_smoke does not compile" >&2; exit 1; }
if [ ! -f "$artifacts/smoke.cubin" ]; then
  echo "gpu-check: $artifacts/smoke.cubin missing: run scripts/gpu-artifacts.sh on the build machine and carry gpu-artifacts/" >&2
  failed=1
  summary+=("FAIL driver-smoke: no artifacts")
else
  for image in smoke.cubin smoke-ptxas.cubin smoke.ptx; do
    [ -f "$artifacts/$image" ] || continue
    if "$results/driver_smoke" "$artifacts/$image" | tee "$results/driver-smoke-$image.log"; then
      summary+=("PASS driver-smoke $image: $(grep -o 'swiglu.*GB/s' "$results/driver-smoke-$image.log")")
    else
      failed=1
      summary+=("FAIL driver-smoke $image")
    fi
  done
fi

# The CUDA kernel library's GEMV: each format against torch, then decode timings
# against torch's bf16 matmul (a test and a benchmark in one script).
if ls "$artifacts"/library-*.cubin >/dev/null 2>&1; then
  if PYTHONUNBUFFERED=1 "$py" "$here/bench/gpu/qlinear_gemv.py" --cubins "$artifacts" \
      --json "$results/qlinear_gemv.json" 2>&1 | tee "$results/qlinear_gemv.log"; then
    summary+=("PASS qlinear-gemv: $(grep -c '^test .*: ok' "$results/qlinear_gemv.log") cases; timings in $results/qlinear_gemv.json")
  else
    failed=1
    summary+=("FAIL qlinear-gemv (see $results/qlinear_gemv.log)")
  fi
else
  failed=1
  summary+=("FAIL qlinear-gemv: no library-*.cubin in $artifacts")
fi

# The rest of the CUDA kernel library, each script a test against torch then
# timings against torch's peer:
#   gemm.py       the tiled GEMM (f32, quantized A·Wᵀ and A·W); prefill against
#                 torch's f32 and bf16 matmuls;
#   lora.py       the fused LoRA branch (GEMV and GEMM); its overhead;
#   attention.py  the fused attention, forward and backward; Llama-shaped
#                 prefill against scaled_dot_product_attention (f32 and bf16);
#   hadamard.py   the fast Walsh-Hadamard transform; QuaRot-sized rotations
#                 against torch's matmul with the explicit matrix;
#   norm.py       RMSNorm / LayerNorm; 2048-token rows against torch's;
#   w8a8.py       per-token int8 activations times int8 / int4 codes (the
#                 token quantization and the dp4a GEMM); against torch's
#                 bf16 matmul and its int8 _int_mm;
#   adamw.py      the multi-tensor AdamW, bit for bit against the optimizer's
#                 formula; Llama-2-7B's LoRA adapters against torch's fused
#                 and foreach AdamW.
if ls "$artifacts"/library-*.cubin >/dev/null 2>&1; then
  for bench in gemm lora attention hadamard norm w8a8 adamw; do
    if PYTHONUNBUFFERED=1 "$py" "$here/bench/gpu/$bench.py" --cubins "$artifacts" \
        --json "$results/$bench.json" 2>&1 | tee "$results/$bench.log"; then
      summary+=("PASS $bench: $(grep -c '^test .*: ok' "$results/$bench.log") cases; timings in $results/$bench.json")
    else
      failed=1
      summary+=("FAIL $bench (see $results/$bench.log)")
    fi
  done
fi

# Models compiled by qoptc --target cuda (gpu-artifacts.sh): each run on the GPU
# through qopt-run and compared with the CPU target's outputs computed on the
# build machine (f32 both ways: 1e-4 relative), and the QLoRA train step's
# loss after three steps; the tensor-core builds (-bf16, -tf32) against the
# same f32 references within the formats' error.
models=$artifacts/models
# (gpu-artifacts.sh packs them: unpacked beside the results.)
if [ -f "$artifacts/models.tar.xz" ]; then
  mkdir -p "$results"
  "$py" - "$artifacts/models.tar.xz" "$results" <<'PY'
import sys, tarfile
with tarfile.open(sys.argv[1]) as tar:
    tar.extractall(sys.argv[2])
PY
  models=$results/models
fi
if [ -x "$artifacts/bin/qopt-run" ] && [ -d "$models" ]; then
  run() { LD_LIBRARY_PATH="$artifacts/lib" "$artifacts/bin/qopt-run" "$@"; }
  compare() { # name, reference dir, result dir, tolerance
    "$py" - "$@" <<'PY'
import glob, os, sys, numpy as np
name, ref, got, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
worst = 0.0
for f in sorted(glob.glob(os.path.join(ref, "*.npy"))):
    a, b = np.load(f).astype(np.float64), np.load(os.path.join(got, os.path.basename(f))).astype(np.float64)
    worst = max(worst, float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30)))
print(f"{name}: {worst:.2e} relative to the CPU target (tolerance {tol:g})")
sys.exit(0 if worst <= tol else 1)
PY
  }
  llama_in=(--input "input_ids=$models/input_ids.npy" --input "attention_mask=$models/attention_mask.npy")
  for name in gpt2 gpt2-int4 gpt2-w8a8 gpt2-fp8 hadamard-28672 lora qlora qlora-prefill \
      quarot-w4a16 quarot-w4a4 smoothquant-w8a8 qlora-train gpt2-bf16 gpt2-tf32 \
      gpt2-int4-bf16 qlora-prefill-bf16 qlora-train-bf16; do
    lib=$models/$name.so
    # (The tensor-core builds, `-bf16` / `-tf32`, against the f32 references.)
    ref=$models/${name%-[bt]f[13][62]}-ref
    # Per-token activation codes: where the GPU's contracted multiply-adds
    # differ from the CPU's in the last bit, a value on a rounding boundary
    # takes the next code, which moves one term of a product by a step
    # (1/127 of its row's largest for 8 bits, 1/7 for 4): looser bounds.
    tol=1e-4
    case $name in
      # (E4M3 tokens: a flipped code moves a term by 1/16 of itself.)
      gpt2-w8a8 | gpt2-fp8 | smoothquant-w8a8) tol=1e-2 ;;
      quarot-w4a4) tol=5e-2 ;;
      # bf16 operands (8 significant bits) and tf32's (11) against f32: the
      # emulated runs here are within 6.4e-3 / 5.9e-4 (norm-relative) of the
      # CPU target, and the qlora train step's loss after 3 steps 5.1e-4.
      *-bf16) tol=4e-2 ;;
      *-tf32) tol=5e-3 ;;
    esac
    case $name in
      gpt2 | gpt2-bf16 | gpt2-tf32) args=(--input "$models/gpt2-input_ids.npy" --repeat 20) ;;
      # 20 and 36 rows: the quantized products take the tiled GEMM.
      gpt2-int4 | gpt2-w8a8 | gpt2-fp8 | gpt2-int4-bf16)
        args=(--input "$models/gpt2-prefill_ids.npy" --repeat 20) ;;
      hadamard-28672) args=(--input "x=$models/hadamard-x.npy" --repeat 20) ;;
      qlora-prefill | qlora-prefill-bf16)
        [ "$name" = qlora-prefill ] && lib=$models/qlora.so
        args=(--input "input_ids=$models/prefill_ids.npy" --input "attention_mask=$models/prefill_mask.npy" --repeat 20) ;;
      qlora-train | qlora-train-bf16)
        args=("${llama_in[@]}" --input "labels=$models/labels.npy" --repeat 3) ;;
      *) args=("${llama_in[@]}" --repeat 20) ;;
    esac
    [ -f "$lib" ] || { failed=1; summary+=("FAIL cuda-model $name: not in the artifacts"); continue; }
    if run "$lib" --device cuda --verbose "${args[@]}"         --output-dir "$results/cuda-$name" > "$results/cuda-$name.log" 2>&1 &&
        compare "$name" "$ref" "$results/cuda-$name" "$tol" >> "$results/cuda-$name.log"; then
      summary+=("PASS cuda-model $name: $(tail -1 "$results/cuda-$name.log"); $(grep -o 'mean latency.*' "$results/cuda-$name.log")")
    else
      failed=1
      summary+=("FAIL cuda-model $name (see $results/cuda-$name.log)")
    fi
    cat "$results/cuda-$name.log"
  done
  # The runs above replay as CUDA graphs after their second (entries whose
  # host code touches only host memory: every model here); the same without
  # graphs, for the reference and the latency they save.
  for name in gpt2 qlora-train; do
    lib=$models/$name.so
    case $name in
      gpt2) args=(--input "$models/gpt2-input_ids.npy" --repeat 20) ;;
      qlora-train) args=("${llama_in[@]}" --input "labels=$models/labels.npy" --repeat 3) ;;
    esac
    if QOPT_CUDA_GRAPHS=0 run "$lib" --device cuda --verbose "${args[@]}" \
          --output-dir "$results/cuda-$name-eager" > "$results/cuda-$name-eager.log" 2>&1 &&
        compare "$name without CUDA graphs" "$models/$name-ref" "$results/cuda-$name-eager" 1e-4 \
          >> "$results/cuda-$name-eager.log"; then
      summary+=("PASS cuda-model $name, QOPT_CUDA_GRAPHS=0: $(tail -1 "$results/cuda-$name-eager.log"); $(grep -o 'mean latency.*' "$results/cuda-$name-eager.log")")
    else
      failed=1
      summary+=("FAIL cuda-model $name, QOPT_CUDA_GRAPHS=0 (see $results/cuda-$name-eager.log)")
    fi
  done
else
  failed=1
  summary+=("FAIL cuda-models: no $artifacts/models or bin/qopt-run (run scripts/gpu-artifacts.sh after building)")
fi

echo "== benchmarks"
if PYTHONUNBUFFERED=1 "$py" "$here/bench/gpu/peft_lora_step.py" \
    --json "$results/peft_lora_step.json" 2>&1 | tee "$results/peft_lora_step.log"; then
  summary+=("BENCH peft_lora_step: see $results/peft_lora_step.json")
else
  summary+=("BENCH peft_lora_step: did not finish (see its log)")
fi

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
