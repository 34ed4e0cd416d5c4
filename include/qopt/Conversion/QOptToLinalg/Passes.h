//===- Passes.h - QOpt to linalg -----------------------------*- C++ -*-===//

#ifndef QOPT_CONVERSION_QOPTTOLINALG_PASSES_H
#define QOPT_CONVERSION_QOPTTOLINALG_PASSES_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qopt {

#define GEN_PASS_DECL
#include "qopt/Conversion/QOptToLinalg/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Conversion/QOptToLinalg/Passes.h.inc"

} // namespace mlir::qopt

#endif // QOPT_CONVERSION_QOPTTOLINALG_PASSES_H
