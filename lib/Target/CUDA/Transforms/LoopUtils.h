//===- LoopUtils.h - Shared helpers of the CUDA passes ---------*- C++ -*-===//

#ifndef QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H
#define QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H

#include "mlir/Dialect/SCF/IR/SCF.h"

#include <optional>

namespace mlir::qopt {

/// The number of iterations of `op` when every bound is a constant (none
/// where one is not, a step is not positive, or the product overflows).
std::optional<int64_t> staticTotal(scf::ParallelOp op);

/// The buffer `memref` is a view of (itself when it is not a view).
Value rootOf(Value memref);

/// Whether anything may write the memory `memref` names: a store, a copy, a
/// kernel storing through the launch's operand, its address taken (a call
/// of the kernel library), a call; loads, sizes and views that are only
/// read do not.
bool mayWrite(Value memref);

} // namespace mlir::qopt

#endif // QOPT_LIB_TARGET_CUDA_TRANSFORMS_LOOPUTILS_H
