//===- MulAddBody.h - The body of a plain C += A·B contraction ---*- C++
//-*-===//
//
// Shared by qopt-linalg-to-blas (which products become kernel calls) and
// qopt-fuse-elementwise (which products may start from another
// accumulator).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_LIB_TARGET_CPU_TRANSFORMS_MULADDBODY_H
#define QOPT_LIB_TARGET_CPU_TRANSFORMS_MULADDBODY_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"

namespace mlir::qopt {

/// Whether the body of a generic with two inputs and one init is exactly
/// acc + a*b (either operand order), nothing around it.
inline bool isMulAddBody(linalg::GenericOp op) {
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != 3 || body.getNumArguments() != 3)
    return false;
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  auto add = yield.getValues()[0].getDefiningOp<arith::AddFOp>();
  if (!add)
    return false;
  Value acc = body.getArgument(2);
  Value other = add.getLhs() == acc ? add.getRhs() : add.getLhs();
  if (add.getLhs() != acc && add.getRhs() != acc)
    return false;
  auto mul = other.getDefiningOp<arith::MulFOp>();
  if (!mul)
    return false;
  Value a = body.getArgument(0), b = body.getArgument(1);
  return (mul.getLhs() == a && mul.getRhs() == b) ||
         (mul.getLhs() == b && mul.getRhs() == a);
}

} // namespace mlir::qopt

#endif // QOPT_LIB_TARGET_CPU_TRANSFORMS_MULADDBODY_H
