#!/usr/bin/env bash
# Builds build/bin/import-onnx-fuzzer: the importer's sources compiled with
# clang-22, libFuzzer and AddressSanitizer, linked against the libraries of
# the main (g++) build. Needs scripts/build.sh first and clang-22 with
# libclang-rt-22-dev (scripts/setup.sh installs both).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${QOPT_BUILD_DIR:-$here/build}
cxx=${QOPT_FUZZ_CXX:-clang++-22}
out=$build/fuzz
mkdir -p "$out" "$build/bin"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address -fno-exceptions
       -DONNX_NAMESPACE=onnx -DONNX_ML=1
       -I"$here/include" -I"$build/include" -I/usr/lib/llvm-22/include)
objs=()
for src in lib/Import/ONNX/ImportONNX.cpp tools/fuzz/import-onnx-fuzzer.cpp; do
  obj=$out/$(basename "$src" .cpp).o
  if [ ! -f "$obj" ] || [ "$here/$src" -nt "$obj" ]; then
    "$cxx" "${flags[@]}" -c "$here/$src" -o "$obj"
  fi
  objs+=("$obj")
done
# libonnx throws from its text parser: that file needs exceptions.
obj=$out/ONNXProtoUtils.o
if [ ! -f "$obj" ] || [ "$here/lib/Import/ONNX/ONNXProtoUtils.cpp" -nt "$obj" ]; then
  "$cxx" "${flags[@]/-fno-exceptions/-fexceptions}" -c "$here/lib/Import/ONNX/ONNXProtoUtils.cpp" -o "$obj"
fi
objs+=("$obj")
"$cxx" -fsanitize=fuzzer,address "${objs[@]}" -o "$build/bin/import-onnx-fuzzer" \
  "$build/lib/libMLIRQOpt.a" "$build/lib/Support/libQOptSupport.a" -L/usr/lib/llvm-22/lib -Wl,-rpath,/usr/lib/llvm-22/lib \
  -lMLIR -lLLVM -lonnx -lonnx_proto -lprotobuf
echo "built $build/bin/import-onnx-fuzzer"
