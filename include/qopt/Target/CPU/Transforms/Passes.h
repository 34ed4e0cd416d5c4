//===- Passes.h - CPU code generation ------------------------*- C++ -*-===//

#ifndef QOPT_TARGET_CPU_TRANSFORMS_PASSES_H
#define QOPT_TARGET_CPU_TRANSFORMS_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qopt {

#define GEN_PASS_DECL
#include "qopt/Target/CPU/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Target/CPU/Transforms/Passes.h.inc"

} // namespace mlir::qopt

#endif // QOPT_TARGET_CPU_TRANSFORMS_PASSES_H
