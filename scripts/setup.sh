#!/usr/bin/env bash
# Installs everything qopt needs to build and test on a fresh Debian 12 machine.
# Idempotent: re-running only checks what is already there.
#   scripts/setup.sh            # system packages + Python test dependencies
# Environment: QOPT_VENV (default .venv in the checkout) holds the Python packages.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi

pkgs=(
  # C++ toolchain and build
  g++ cmake ninja-build ccache git ca-certificates
  # LLVM / MLIR 22 (lit, FileCheck, not, mlir-tblgen come with the tools packages)
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools
  # ONNX import (used from the importer issue on)
  libonnx-dev libprotobuf-dev protobuf-compiler
  # unit tests, and the importer's libFuzzer target (clang with libFuzzer)
  libgtest-dev clang-22 libclang-rt-22-dev
  # the formatting check (test/lint/format.test): LLVM style, .clang-format
  clang-format-22
  # compiled models: the linker driver (g++) and OpenBLAS for matrix products
  libopenblas-dev
  # Python for tests and reference numerics
  python3 python3-venv python3-pip
  # the Python binding (nanobind extension)
  python3-dev
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python test dependencies live in a venv so Debian's python3 (PEP 668) is left alone.
venv=${QOPT_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ]; then
  /usr/bin/python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import numpy, onnx, onnxruntime, ml_dtypes, pytest, nanobind" 2>/dev/null; then
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -r "$here/python/requirements-test.txt"
fi
# The CUDA kernel library (lib/Runtime/Kernels/CUDA) is built by nvcc and checked with
# ptxas: the CUDA toolkit where one is installed, else NVIDIA's CUDA 13.0 wheels (about
# 100 MB) in the venv. QOPT_CUDA=0 skips them (the library is then not built).
if [ "${QOPT_CUDA:-1}" != 0 ] && ! command -v nvcc >/dev/null &&
    [ ! -x /usr/local/cuda/bin/nvcc ] && [ -z "${QOPT_CUDA_ROOT:-}" ] &&
    ! ls "$venv"/lib/python3*/site-packages/nvidia/cu13/bin/nvcc >/dev/null 2>&1; then
  echo "setup: no CUDA toolkit: installing NVIDIA's nvcc wheels into $venv"
  "$venv/bin/python" -m pip install -q nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 \
    nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 ||
    echo "setup: warning: NVIDIA's nvcc wheels did not install; the CUDA kernel library will not be built" >&2
fi
echo "setup: done ($(/usr/lib/llvm-22/bin/llvm-config --version 2>/dev/null || echo 'no llvm'), venv $venv)"
