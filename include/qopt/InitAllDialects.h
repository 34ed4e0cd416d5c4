//===- InitAllDialects.h - Register qopt's dialects -------------*- C++ -*-===//

#ifndef QOPT_INITALLDIALECTS_H
#define QOPT_INITALLDIALECTS_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/IR/DialectRegistry.h"

namespace mlir::qopt {

/// Adds the dialects qopt defines to `registry`.
inline void registerAllDialects(DialectRegistry &registry) {
  registry.insert<QOptDialect>();
}

} // namespace mlir::qopt

#endif // QOPT_INITALLDIALECTS_H
