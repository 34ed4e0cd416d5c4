//===- QOpt.h - QOpt dialect ------------------------------------*- C++ -*-===//
//
// The one header to include for the QOpt dialect: dialect, attributes,
// types, interfaces and ops.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPT_H
#define QOPT_DIALECT_QOPT_IR_QOPT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "qopt/Dialect/QOpt/IR/QOptMarkers.h"

#include "qopt/Dialect/QOpt/IR/QOptEnums.h.inc"

#include "qopt/Dialect/QOpt/IR/QOptAttrInterfaces.h.inc"

#define GET_ATTRDEF_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptAttrs.h.inc"

// After the attributes: its discardable-attribute helpers return them.
#include "qopt/Dialect/QOpt/IR/QOptOpsDialect.h.inc"

#define GET_TYPEDEF_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptOpsTypes.h.inc"

#include "qopt/Dialect/QOpt/IR/QOptOpInterfaces.h.inc"

namespace mlir::qopt {
/// What qopt.load_param reads and qopt.store_param writes: the model's
/// parameters (one resource; ops name the parameter by symbol).
struct ParameterResource
    : public SideEffects::Resource::Base<ParameterResource> {
  StringRef getName() final { return "qopt.parameters"; }
};
} // namespace mlir::qopt

#define GET_OP_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptOps.h.inc"

namespace mlir::qopt {
/// The bytes a parameter of `type` occupies in a file: its elements packed
/// row-major (sub-byte integers several to a byte), booleans one byte each
/// as ONNX, numpy and safetensors store them; failure when that overflows.
FailureOr<uint64_t> getStoredByteSize(RankedTensorType type);

/// The attributes of the entry argument that passes the run's random key
/// (`qopt.rng_key`, read-only to bufferization).
DictionaryAttr getRandomKeyArgAttrs(MLIRContext *ctx);

} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_IR_QOPT_H
