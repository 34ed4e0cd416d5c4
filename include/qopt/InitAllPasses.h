//===- InitAllPasses.h - Register qopt's passes -----------------*- C++ -*-===//

#ifndef QOPT_INITALLPASSES_H
#define QOPT_INITALLPASSES_H

#include "qopt/Conversion/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Pipelines/Pipelines.h"
#include "qopt/Target/CPU/Transforms/Passes.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"
#include "qopt/Training/Passes.h"

namespace mlir::qopt {

/// Registers every qopt pass and pipeline with the global registry (for
/// qopt-opt).
inline void registerAllPasses() {
  registerQOptPasses();
  registerConversionPasses();
  registerQOptCPUPasses();
  registerQOptCUDAPasses();
  registerQOptTrainingPasses();
  registerQOptPipelines();
}

} // namespace mlir::qopt

#endif // QOPT_INITALLPASSES_H
