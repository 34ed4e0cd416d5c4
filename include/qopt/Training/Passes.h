//===- Passes.h - Training passes ----------------------------*- C++ -*-===//

#ifndef QOPT_TRAINING_PASSES_H
#define QOPT_TRAINING_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qopt {

#define GEN_PASS_DECL
#include "qopt/Training/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Training/Passes.h.inc"

} // namespace mlir::qopt

#endif // QOPT_TRAINING_PASSES_H
