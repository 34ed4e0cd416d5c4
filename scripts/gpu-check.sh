#!/usr/bin/env bash
# Every check that needs an NVIDIA GPU, in one run: tests first, then benchmarks, then a
# summary. Runs unchanged on any machine with a GPU, its driver, a C compiler and
# python3 with torch/transformers/peft; it needs no MLIR: the GPU code is built
# beforehand, on the build machine, by scripts/gpu-artifacts.sh (carry gpu-artifacts/).
#   scripts/gpu-check.sh [RESULTS_DIR]    # default: gpu-check-results/
# Exit status: 0 when every test passed, 1 when one failed, 2 when there is no GPU.
# What it covers today (the CUDA back end, issue 19, is being written):
#   tests:      MLIR-generated kernels (test/gpu/smoke-kernels.mlir) loaded through the
#               CUDA driver API alone, as cubin and as PTX, checked against the CPU;
#               the CUDA kernel library's weight-only GEMV (bench/gpu/qlinear_gemv.py:
#               every format against torch, then timings against torch's bf16 matmul);
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
if ls "$artifacts"/qlinear-*.cubin >/dev/null 2>&1; then
  if PYTHONUNBUFFERED=1 "$py" "$here/bench/gpu/qlinear_gemv.py" --cubins "$artifacts" \
      --json "$results/qlinear_gemv.json" 2>&1 | tee "$results/qlinear_gemv.log"; then
    summary+=("PASS qlinear-gemv: $(grep -c '^test .*: ok' "$results/qlinear_gemv.log") cases; timings in $results/qlinear_gemv.json")
  else
    failed=1
    summary+=("FAIL qlinear-gemv (see $results/qlinear_gemv.log)")
  fi
else
  failed=1
  summary+=("FAIL qlinear-gemv: no qlinear-*.cubin in $artifacts")
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
