//===- Autodiff.h - Reverse-mode differentiation of tensor programs -*- C++
//-*-===//

#ifndef QOPT_TRAINING_AUTODIFF_H
#define QOPT_TRAINING_AUTODIFF_H

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::qopt {

/// Builds, before the terminator of `func`'s single block, the reverse-mode
/// derivative of `loss` (a float tensor of one element computed in that
/// block) with respect to each of `wrt` (values of the block, usually its
/// trainable arguments) and returns one gradient per `wrt`, of its type
/// (zeros where the loss does not depend on it).
///
/// Works on tensors after the QOpt lowering: every `linalg` op through one
/// rule derived from its indexing maps and scalar body (contractions stay
/// multiply-add contractions), and the `tensor` ops that move data. Only
/// ops that depend on a `wrt` value and that the loss depends on are
/// differentiated; any such op without a rule is an error naming it (its
/// location carries the ONNX node), never a silently wrong gradient.
///
/// Results of ops marked `qopt.no_gradient` (kNoGradientAttr) are constants
/// to the differentiation (torch's detach()): DoRA's weight norm, which the
/// QOpt lowering marks.
FailureOr<SmallVector<Value>> buildGradients(func::FuncOp func, Value loss,
                                             ArrayRef<Value> wrt);

} // namespace mlir::qopt

#endif // QOPT_TRAINING_AUTODIFF_H
