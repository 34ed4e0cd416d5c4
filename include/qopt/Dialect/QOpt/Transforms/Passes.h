//===- Passes.h - QOpt transformation passes --------------------*- C++ -*-===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_H
#define QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
namespace qopt {

#define GEN_PASS_DECL
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"

/// Patterns that replace a qopt.lora whose B or gate is zero by qopt.linear.
/// Trainable parameters count as zero (at their initial value) only when
/// `includeTrainable` is set.
void populateFoldZeroLoRAPatterns(RewritePatternSet &patterns,
                                  bool includeTrainable);

#define GEN_PASS_REGISTRATION
#include "qopt/Dialect/QOpt/Transforms/Passes.h.inc"

} // namespace qopt
} // namespace mlir

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_PASSES_H
