//===- Passes.h - ONNX front-end passes ----------------------*- C++ -*-===//

#ifndef QOPT_CONVERSION_ONNXTOQOPT_PASSES_H
#define QOPT_CONVERSION_ONNXTOQOPT_PASSES_H

#include "qopt/Dialect/ONNX/IR/ONNX.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"

namespace mlir::qopt {

#define GEN_PASS_DECL
#include "qopt/Conversion/ONNXToQOpt/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "qopt/Conversion/ONNXToQOpt/Passes.h.inc"

} // namespace mlir::qopt

#endif // QOPT_CONVERSION_ONNXTOQOPT_PASSES_H
