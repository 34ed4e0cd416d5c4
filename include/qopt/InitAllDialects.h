//===- InitAllDialects.h - Register qopt's dialects -------------*- C++ -*-===//

#ifndef QOPT_INITALLDIALECTS_H
#define QOPT_INITALLDIALECTS_H

#include "qopt/Dialect/ONNX/IR/ONNX.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/IR/DialectRegistry.h"

namespace mlir::qopt {

/// Adds the dialects qopt defines to `registry`: QOpt and the front end's
/// ONNX staging dialect.
inline void registerAllDialects(DialectRegistry &registry) {
  registry.insert<QOptDialect, ONNXDialect>();
}

} // namespace mlir::qopt

#endif // QOPT_INITALLDIALECTS_H
