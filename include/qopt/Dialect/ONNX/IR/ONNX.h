//===- ONNX.h - ONNX import staging dialect ---------------------*- C++ -*-===//
//
// The front end's staging dialect: `onnx.node` and `onnx.none`, what the
// importer produces and ONNX-to-QOpt conversion consumes.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_ONNX_IR_ONNX_H
#define QOPT_DIALECT_ONNX_IR_ONNX_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "qopt/Dialect/ONNX/IR/ONNXOpsDialect.h.inc"

#define GET_OP_CLASSES
#include "qopt/Dialect/ONNX/IR/ONNXOps.h.inc"

#endif // QOPT_DIALECT_ONNX_IR_ONNX_H
