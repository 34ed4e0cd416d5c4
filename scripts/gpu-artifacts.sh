#!/usr/bin/env bash
# Builds, on this machine (no GPU needed), what scripts/gpu-check.sh runs on a GPU
# machine: the kernels of test/gpu/smoke-kernels.mlir lowered by MLIR's NVPTX path to
# PTX (format=isa) and to a cubin (format=bin, MLIR calling the toolkit's ptxas), plus
# ptxas's resource report (registers, spills) for each kernel.
#   scripts/gpu-artifacts.sh [OUT_DIR]      # default: gpu-artifacts/ (git-ignored)
# Environment: QOPT_MLIR_OPT (default build/bin/qopt-opt, else LLVM 22's mlir-opt),
#   QOPT_GPU_CHIP (default sm_90), QOPT_PTXAS (default /usr/local/cuda/bin/ptxas).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/gpu-artifacts}
opt=${QOPT_MLIR_OPT:-$here/build/bin/qopt-opt}
[ -x "$opt" ] || opt=/usr/lib/llvm-22/bin/mlir-opt
chip=${QOPT_GPU_CHIP:-sm_90}
ptxas=${QOPT_PTXAS:-/usr/local/cuda/bin/ptxas}
py=${QOPT_PYTHON:-python3}
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
if ls "$here"/build/lib/cuda/qlinear-*.cubin >/dev/null 2>&1; then
  cp "$here"/build/lib/cuda/qlinear-*.cubin "$here"/build/lib/cuda/qlinear-*.ptxas.txt "$out/"
else
  echo "gpu-artifacts: no build/lib/cuda/qlinear-*.cubin (build with nvcc first)" >&2
fi
ls -l "$out"
