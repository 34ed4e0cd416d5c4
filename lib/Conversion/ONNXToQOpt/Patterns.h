//===- Patterns.h - ONNX node conversion handlers ---------------*- C++ -*-===//
//
// Internal to the ONNX-to-QOpt conversion: the handler table and the helpers
// handlers share (broadcasting, constants, attribute access).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H
#define QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"

namespace mlir::qopt::onnx {

/// Converts one node into `results` (one value per ONNX output; null for
/// outputs the node omits). On failure it has emitted an error through
/// nodeError().
using Handler = LogicalResult (*)(ONNXNodeOp op, OpBuilder &b,
                                  SmallVectorImpl<Value> &results);

/// A handler for (domain, op type) from opset `since` on, until the next
/// entry for the same operator.
struct HandlerEntry {
  StringLiteral domain;
  StringLiteral opType;
  int64_t since;
  Handler handler;
};

ArrayRef<HandlerEntry> getElementwiseHandlers();
ArrayRef<HandlerEntry> getTensorHandlers();
ArrayRef<HandlerEntry> getMoreTensorHandlers();
ArrayRef<HandlerEntry> getQuantHandlers();
ArrayRef<HandlerEntry> getConvHandlers();
ArrayRef<HandlerEntry> getIndexHandlers();
ArrayRef<HandlerEntry> getAttentionHandlers();

/// "node 'NAME' (OP, opset N): " prefixed error at the node.
InFlightDiagnostic nodeError(ONNXNodeOp op);

/// Input `i`, or null when the node omits it (or has fewer inputs).
Value getInput(ONNXNodeOp op, unsigned i);

int64_t getIntAttr(ONNXNodeOp op, StringRef name, int64_t defaultValue);
double getFloatAttr(ONNXNodeOp op, StringRef name, double defaultValue);
StringRef getStringAttr(ONNXNodeOp op, StringRef name, StringRef defaultValue);
std::optional<SmallVector<int64_t>> getIntsAttr(ONNXNodeOp op, StringRef name);

/// The integer values of `value` when it is a constant (arith.constant or
/// an inline parameter).
std::optional<SmallVector<int64_t>> getConstantInts(Value value);
/// The float values of `value` when it is a constant (likewise).
std::optional<SmallVector<double>> getConstantFloats(Value value);

/// A scalar constant of `type` (float or integer) with `value`.
Value scalarConstant(OpBuilder &b, Location loc, Type type, double value);

/// Converts a scalar between element types as ONNX Cast does (floats round
/// to nearest, floats to integers truncate, to bool compares with zero).
Value castScalar(OpBuilder &b, Location loc, Value value, Type to);

/// Elementwise op over `inputs` with ONNX (numpy) broadcasting: a
/// linalg.generic whose body is `body(block arguments)`.
FailureOr<Value>
buildElementwise(ONNXNodeOp op, OpBuilder &b, ValueRange inputs,
                 Type resultElementType,
                 function_ref<Value(OpBuilder &, Location, ValueRange)> body);

/// numpy matmul of `lhs` and `rhs` (1-D operands, batch broadcasting),
/// accumulated as accumulatorType(); errors name `op`.
LogicalResult buildMatMul(ONNXNodeOp op, OpBuilder &b, Value lhs, Value rhs,
                          SmallVectorImpl<Value> &results);

/// Reshapes `value` to `sizes` (one per result dimension) with the element
/// type kept; `resultType` gives the static sizes known.
Value reshapeTo(OpBuilder &b, Location loc, Value value,
                ArrayRef<OpFoldResult> sizes);

/// Raising of decomposed layers (RaiseONNX.cpp). Each returns success when
/// it replaced the pattern, listing the nodes it erased.
LogicalResult raiseLinear(ONNXNodeOp op, RewriterBase &rewriter,
                          SmallVectorImpl<Operation *> &erased);
LogicalResult raiseRMSNorm(ONNXNodeOp finalMul, RewriterBase &rewriter,
                           SmallVectorImpl<Operation *> &erased);
LogicalResult raiseLayerNorm(ONNXNodeOp root, RewriterBase &rewriter,
                             SmallVectorImpl<Operation *> &erased);
LogicalResult raiseGelu(ONNXNodeOp root, RewriterBase &rewriter,
                        SmallVectorImpl<Operation *> &erased);
LogicalResult raiseSiLU(ONNXNodeOp mul, RewriterBase &rewriter,
                        SmallVectorImpl<Operation *> &erased);
/// The final Mul of an RMSNorm chain that starts at `square`, if any.
ONNXNodeOp findRMSNormRoot(ONNXNodeOp square);

/// The value's ranked tensor type, or null.
inline RankedTensorType rankedType(Value v) {
  return v ? dyn_cast<RankedTensorType>(v.getType()) : RankedTensorType();
}

/// f32 for floats narrower than 32 bits (what sums and products accumulate
/// in, as onnxruntime does on the CPU), else `element` itself.
Type accumulatorType(OpBuilder &b, Type element);

/// Casts a tensor accumulated in accumulatorType() back to `element`.
Value fromAccumulator(OpBuilder &b, Location loc, Value acc, Type element);

/// Normalises an axis against `rank` (negative counts from the end).
FailureOr<int64_t> normalizeAxis(ONNXNodeOp op, int64_t axis, int64_t rank,
                                 StringRef what = "axis");

} // namespace mlir::qopt::onnx

#endif // QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H
