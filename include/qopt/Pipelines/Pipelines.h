//===- Pipelines.h - qopt's named pass pipelines ----------------*- C++ -*-===//

#ifndef QOPT_PIPELINES_PIPELINES_H
#define QOPT_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassOptions.h"

namespace mlir {
class OpPassManager;
namespace qopt {

struct CPUPipelineOptions : public PassPipelineOptions<CPUPipelineOptions> {
  PassOptions::Option<bool> allowUnsupported{
      *this, "allow-unsupported",
      llvm::cl::desc("Leave ONNX nodes that cannot be converted (the "
                     "pipeline then fails when lowering them)"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> blas{
      *this, "blas",
      llvm::cl::desc("Call the CPU kernel library (qopt_kernel_sgemm, "
                     "OpenBLAS) for f32 matrix products instead of emitting "
                     "loops; the program must then be linked with "
                     "libqopt_kernels_cpu"),
      llvm::cl::init(false)};
  PassOptions::Option<bool> parallel{
      *this, "parallel",
      llvm::cl::desc("Run the outermost parallel loop of every loop nest on "
                     "all cores (OpenMP; the program must then be linked "
                     "with libomp)"),
      llvm::cl::init(false)};
};

/// Graph part of the CPU pipeline: raising of decomposed layers, ONNX
/// conversion, inline parameters as constants, the remaining parameters as
/// arguments of the entry function (what the runtime passes in).
void buildQOptCPUGraphPipeline(OpPassManager &pm,
                               const CPUPipelineOptions &options);

/// Code-generation part: QOpt reference lowering, elementwise fusion,
/// bufferization with buffer deallocation (results are owned by the
/// caller), optional kernel-library calls for matrix products, loops, LLVM.
void buildQOptCPUCodegenPipeline(OpPassManager &pm,
                                 const CPUPipelineOptions &options);

/// Both parts: from imported ONNX (or QOpt graph IR) to the LLVM dialect.
void buildQOptCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// Registers `qopt-lower-to-cpu` for qopt-opt.
void registerQOptPipelines();

} // namespace qopt
} // namespace mlir

#endif // QOPT_PIPELINES_PIPELINES_H
