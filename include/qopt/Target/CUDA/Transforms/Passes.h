//===- Passes.h - CUDA code generation -------------------------*- C++ -*-===//

#ifndef QOPT_TARGET_CUDA_TRANSFORMS_PASSES_H
#define QOPT_TARGET_CUDA_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qopt {

#define GEN_PASS_DECL
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"

} // namespace mlir::qopt

#endif // QOPT_TARGET_CUDA_TRANSFORMS_PASSES_H
