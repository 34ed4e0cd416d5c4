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

/// On an op of the lowered model: its results are constants to training
/// (torch's detach()); set by lowerings, read by the differentiation.
constexpr StringLiteral kNoGradientAttr = "qopt.no_gradient";
/// On an op of the lowered model computed from parameters alone (a
/// dequantized weight): the backward pass computes it again where it needs
/// it instead of keeping the forward's value alive (QLoRA's memory: no
/// float copy of a frozen quantized weight lives from forward to backward).
constexpr StringLiteral kRecomputeAttr = "qopt.recompute";
/// On a quantizer's rounding (a scalar op in a loop body) or on a whole
/// codebook quantizer op: differentiated as the identity of its first
/// operand (the straight-through estimator); clamps around it still mask.
constexpr StringLiteral kStraightThroughAttr = "qopt.straight_through";
/// On a lowered quantizer: a factor per operand for the gradients it
/// passes back (LSQ's gradient scale g for the step and offset).
constexpr StringLiteral kGradientScaleAttr = "qopt.gradient_scale";
/// On the op of the lowered model that adds a sublayer's output to the
/// residual stream (`qopt.residual_add`'s loop, the module path as value):
/// the boundaries of gradient checkpointing, whose results the backward
/// pass keeps while it recomputes what lies between them.
constexpr StringLiteral kCheckpointAttr = "qopt.checkpoint";
/// On a `linalg.softmax` whose fully masked rows (all -inf, NaN in plain
/// softmax) are to be 0, as torch's `Where(IsNaN(P), 0, P)` guard after it
/// makes them: its lowering computes them as 0 without a NaN.
constexpr StringLiteral kSafeSoftmaxAttr = "qopt.safe_softmax";
/// On the loop of the lowered model that applies training-mode dropout
/// (its first input is the undropped value): an entry that evaluates
/// (`eval_step`) replaces its result by that input.
constexpr StringLiteral kDropoutAttr = "qopt.dropout";
} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_IR_QOPT_H
