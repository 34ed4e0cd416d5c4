//===- LoopUtils.h - Shared helpers of the CUDA loop passes ----*- C++ -*-===//

#ifndef QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H
#define QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H

#include "mlir/Dialect/SCF/IR/SCF.h"

#include <optional>

namespace mlir::qopt {

/// The number of iterations of `op` when every bound is a constant (none
/// where one is not, a step is not positive, or the product overflows).
std::optional<int64_t> staticTotal(scf::ParallelOp op);

} // namespace mlir::qopt

#endif // QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H
