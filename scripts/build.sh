#!/usr/bin/env bash
# Configures (once) and builds qopt into ${QOPT_BUILD_DIR:-build}.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${QOPT_BUILD_DIR:-$here/build}
jobs=${QOPT_JOBS:-2}
if [ ! -f "$build/build.ninja" ]; then
  launcher=()
  if command -v ccache >/dev/null; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache); fi
  cmake -G Ninja -S "$here" -B "$build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DPython3_EXECUTABLE="${QOPT_VENV:-$here/.venv}/bin/python" \
    -DQOPT_ENABLE_PYTHON=ON \
    -DQOPT_ENABLE_FUZZER=ON \
    "${launcher[@]}" "$@"
elif ! grep -q '^QOPT_ENABLE_FUZZER:BOOL=ON' "$build/CMakeCache.txt"; then
  # A build folder configured before the fuzzer was a CMake target.
  cmake "$build" -DQOPT_ENABLE_FUZZER=ON
fi
ninja -C "$build" -j "$jobs" ${QOPT_BUILD_TARGETS:-}
