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
};

/// From imported ONNX (or QOpt graph IR) down to the LLVM dialect:
/// raising of decomposed layers, ONNX conversion, QOpt reference lowering, inline parameters as
/// constants, bufferization, loops, LLVM. Matrix products are still naive
/// loops (see docs/Status.md).
void buildQOptCPUPipeline(OpPassManager &pm, const CPUPipelineOptions &options);

/// Registers `qopt-lower-to-cpu` for qopt-opt.
void registerQOptPipelines();

} // namespace qopt
} // namespace mlir

#endif // QOPT_PIPELINES_PIPELINES_H
