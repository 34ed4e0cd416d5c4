//===- Passes.h - qopt conversion passes ------------------------*- C++ -*-===//
//
// Every conversion between dialects: the ONNX front end (staging dialect to
// QOpt and upstream ops) and QOpt's linalg reference lowering.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_CONVERSION_PASSES_H
#define QOPT_CONVERSION_PASSES_H

#include "qopt/Conversion/ONNXToQOpt/Passes.h"
#include "qopt/Conversion/QOptToLinalg/Passes.h"

namespace mlir::qopt {

inline void registerConversionPasses() {
  registerONNXToQOptPasses();
  registerQOptToLinalgPasses();
}

} // namespace mlir::qopt

#endif // QOPT_CONVERSION_PASSES_H
