//===- CPUTarget.h - Compile a model to a CPU shared library ----*- C++ -*-===//
//
// From graph IR (after the front end and the graph stage: parameters are
// entry arguments) to what the runtime loads: `model.so` (native code,
// entry `qopt_run_packed`, embedded manifest), `model.safetensors` (the
// weights, memory-mapped at load, never in the .so or in IR text) and
// `model.json` (the manifest: inputs, outputs, parameters).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_TARGET_CPU_CPUTARGET_H
#define QOPT_TARGET_CPU_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir::qopt {

/// On the module: JSON {"config": PEFT adapter_config, "tensors": [names]}
/// of the adapter a train step trains, which the manifest carries as
/// "adapter" (Model.save_adapter writes it back in PEFT's format).
constexpr llvm::StringLiteral kAdapterManifestAttr = "qopt.adapter";

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
  /// Quantized products quantize their activations to int8 per block of 32
  /// (integer dot products where the CPU has AVX-512 VNNI).
  bool int8Activations = false;
  /// The outer parallel loops of every loop nest on the kernel library's
  /// thread pool (qopt-parallel-to-pool); loops too small to pay for it
  /// stay on the calling thread at run time.
  bool parallel = true;
  /// Compiler driver that links the shared library.
  std::string linker = "c++";
  /// libqopt_kernels_cpu.a.
  std::string kernelsLibrary;
  /// Where to print the optimized LLVM IR ("" = never).
  std::string dumpLLVMIR;
  /// Print how long each step took to stderr.
  bool timing = false;

  /// `qoptc --target cuda`: the loop nests become GPU kernels (the CUDA
  /// target's pipeline), embedded as a fatbin; this target compiles the
  /// host code around them, which links the CUDA host library
  /// (lib/Runtime/CUDAHost) instead of calling BLAS.
  struct CUDA {
    bool enabled = false;
    /// Run the kernels on the CPU as loops over their blocks and threads
    /// (`--cuda-emulate`): tests their index arithmetic without a GPU. The
    /// library is then an ordinary CPU model.
    bool emulate = false;
    /// The toolkit (bin/ptxas, bin/fatbinary, nvvm/libdevice).
    std::string toolkit;
    /// Architectures with a cubin; the first is the PTX's target.
    std::vector<std::string> archs;
    /// libqopt_cuda_host.a.
    std::string hostLibrary;
    /// libqopt_cuda_library.a (the kernel library as a fatbin), or "": the
    /// matrix products call it (qopt_cuda_qlinear, qopt_cuda_sgemm) instead
    /// of becoming generated kernels.
    std::string kernelLibrary;
    unsigned blockSize = 256;
    /// How the library's GEMM multiplies (`--cuda-matmul-precision`):
    /// highest (f32), high (tf32 tensor cores) or medium (bf16).
    std::string matmulPrecision = "highest";
  } cuda;
};

/// Runs the target's code-generation pipeline on `module` (graph IR; see
/// qopt/Pipelines for the whole model) and writes the three files.
/// Diagnostics go to the module's context; on failure no output file is
/// left behind.
LogicalResult compileForCPU(ModuleOp module, const CPUTargetOptions &options);

} // namespace mlir::qopt

#endif // QOPT_TARGET_CPU_CPUTARGET_H
