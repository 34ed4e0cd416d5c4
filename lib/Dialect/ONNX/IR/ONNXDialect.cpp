//===- ONNXDialect.cpp - ONNX import staging dialect ----------------------===//

#include "qopt/Dialect/ONNX/IR/ONNX.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::qopt;

#include "qopt/Dialect/ONNX/IR/ONNXOpsDialect.cpp.inc"

void ONNXDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "qopt/Dialect/ONNX/IR/ONNXOps.cpp.inc"
      >();
}

LogicalResult ONNXNodeOp::verify() {
  if (getOpType().empty())
    return emitOpError() << "needs an ONNX operator type";
  if (getOpset() < 1)
    return emitOpError() << "opset must be positive, got " << getOpset();
  return success();
}

#define GET_OP_CLASSES
#include "qopt/Dialect/ONNX/IR/ONNXOps.cpp.inc"
