//===- ActivationMemory.h - Checkpointing and activation memory -*- C++ -*-===//

#ifndef QOPT_TRAINING_ACTIVATIONMEMORY_H
#define QOPT_TRAINING_ACTIVATIONMEMORY_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {

/// On the forward pass's values the backward pass computes again (gradient
/// checkpointing): keeps CSE from merging them back into the forward ones.
constexpr StringLiteral kRecomputedAttr = "qopt.recomputed";

/// Gradient checkpointing on `func`, whose ops from `firstBackward` on are
/// the backward pass (Autodiff.h's buildGradients) and the ones before it
/// the forward. The ops marked `qopt.checkpoint` (the residual stream
/// after each sublayer) cut the forward into segments; a segment's values
/// that the backward reads — except the checkpoints themselves and values
/// that other segments read too (masks, position tables) — are computed
/// again, the whole segment at once, just before the backward first reads
/// one of them. The forward's copies then die in the forward. The last
/// segment (head and loss), which the backward reads first, is kept.
/// Returns the number of ops cloned (0 when the forward has no
/// checkpoint).
unsigned recomputeSegments(func::FuncOp func, Operation *firstBackward);

/// The tensors `func` holds at once, estimated on its tensor program:
/// every tensor.empty, concat, pad or scf.if result is a buffer (views and
/// destination-passing results share their source's), alive from its
/// definition to the last use of any view of it; arguments and constants
/// are not counted. Dynamic sizes come from `sizes`, keyed by the
/// arguments' dimension names (`qopt.dim_names`).
struct ActivationMemory {
  uint64_t peakBytes = 0;
  /// The op at which the peak is reached.
  Operation *peakOp = nullptr;
  /// Of the buffers defined before `firstBackward`, those still alive at
  /// it: what the forward pass keeps for the backward.
  uint64_t keptBytes = 0;
};
/// Fails with an error on the op whose size it cannot compute (naming the
/// missing dimension).
FailureOr<ActivationMemory>
estimateActivationMemory(func::FuncOp func, Operation *firstBackward,
                         const llvm::StringMap<int64_t> &sizes);

} // namespace mlir::qopt

#endif // QOPT_TRAINING_ACTIVATIONMEMORY_H
