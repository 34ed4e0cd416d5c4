//===- QTensorConversion.h - !qopt.qtensor to its storage ------*- C++ -*-===//
//
// A quantized tensor is a value of the graph IR, but code generation only
// knows tensors: this 1:N type conversion replaces every `!qopt.qtensor`
// value by the tensors it is stored in, wherever it flows — function
// arguments and results, calls, branches and `scf` loops and conditionals.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_CONVERSION_QOPTTOLINALG_QTENSORCONVERSION_H
#define QOPT_CONVERSION_QOPTTOLINALG_QTENSORCONVERSION_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Transforms/DialectConversion.h"

namespace mlir::qopt {

/// Appends the storage of `type` in its flattened order: data, scales (the
/// storage of nested scales in turn), zero points, offset.
void appendStorageTypes(QTensorType type, SmallVectorImpl<Type> &types);

/// Converts `!qopt.qtensor` to its storage types; every other type is kept.
class QTensorTypeConverter : public TypeConverter {
public:
  QTensorTypeConverter();
};

/// Patterns and legality that decompose quantized tensors: `qopt.assemble`
/// and `qopt.disassemble` vanish into their storage; functions, calls,
/// returns, branches and `scf` ops carry the storage instead.
void populateQTensorDecompositionPatterns(const TypeConverter &converter,
                                          RewritePatternSet &patterns,
                                          ConversionTarget &target);

} // namespace mlir::qopt

#endif // QOPT_CONVERSION_QOPTTOLINALG_QTENSORCONVERSION_H
