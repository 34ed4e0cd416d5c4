//===- CPUTarget.h - Compile a model to a CPU shared library ----*- C++ -*-===//
//
// From imported graph IR to what the runtime loads: `model.so` (native code,
// entry `qopt_run_packed`, embedded manifest), `model.safetensors` (the
// weights, memory-mapped at load, never in the .so or in IR text) and
// `model.json` (the manifest: inputs, outputs, parameters).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TARGET_CPUTARGET_H
#define QOPT_TARGET_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir::qopt {

struct CPUTargetOptions {
  /// The shared library to write; the weights and manifest go beside it.
  std::string outputPath;
  /// Folder against which parameters' external data locations resolve.
  std::string modelDir;
  /// LLVM CPU name, or "host" for the machine qoptc runs on.
  std::string cpu = "host";
  unsigned optLevel = 2;
  /// Matrix products through the kernel library (OpenBLAS) rather than
  /// generated loops.
  bool blas = true;
  /// The outermost parallel loop of every loop nest on all cores (OpenMP).
  /// Off by default: on 2 cores it only pays off on large batches
  /// (docs/Benchmarks.md).
  bool parallel = false;
  bool allowUnsupported = false;
  /// Compiler driver that links the shared library.
  std::string linker = "c++";
  /// libqopt_kernels_cpu.a.
  std::string kernelsLibrary;
  /// Where to print the IR after the graph and codegen stages ("" = never).
  std::string dumpGraphIR, dumpLLVMIR;
  /// Print how long each step took to stderr.
  bool timing = false;
};

/// Compiles `module` (as qopt-translate --import-onnx produces it) and writes
/// the three files. Diagnostics go to the module's context; on failure no
/// output file is left behind.
LogicalResult compileForCPU(ModuleOp module, const CPUTargetOptions &options);

} // namespace mlir::qopt

#endif // QOPT_TARGET_CPUTARGET_H
