//===- Patterns.h - ONNX node conversion handlers ---------------*- C++ -*-===//
//
// Internal to the ONNX-to-QOpt conversion: the handler table and the helpers
// handlers share (broadcasting, constants, attribute access; Utils.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H
#define QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H

#include "qopt/Dialect/ONNX/IR/ONNX.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
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

/// The handler tables, one per operator family, each defined in the file
/// of that name (getShapeHandlers() in Shape.cpp, ...).
ArrayRef<HandlerEntry> getElementwiseHandlers();
ArrayRef<HandlerEntry> getLinearAlgebraHandlers();
ArrayRef<HandlerEntry> getReductionHandlers();
ArrayRef<HandlerEntry> getNormalizationHandlers();
ArrayRef<HandlerEntry> getConvolutionHandlers();
ArrayRef<HandlerEntry> getPoolingHandlers();
ArrayRef<HandlerEntry> getResizeHandlers();
ArrayRef<HandlerEntry> getAttentionHandlers();
ArrayRef<HandlerEntry> getQuantizationHandlers();
ArrayRef<HandlerEntry> getShapeHandlers();
ArrayRef<HandlerEntry> getIndexHandlers();

/// "node 'NAME' (OP, opset N)": how errors name a node.
std::string nodeDescription(ONNXNodeOp op);

/// Stops the run with `what` (naming `op`) unless the sizes `lhs` and `rhs`
/// (index values or constants) are equal: for sizes the types leave open.
void emitEqualSizes(ONNXNodeOp op, OpBuilder &b, OpFoldResult lhs,
                    OpFoldResult rhs, const Twine &what);

/// The module path (`model.layers.0.mlp.up_proj`) of the layer `op` belongs
/// to, or null: from the exporter's name scopes (torch's dynamo exporter
/// writes `pkg.torch.onnx.name_scopes` metadata), else the name of the
/// parameter `weight` reads when it is `<path>.weight`, else the node's
/// name when it is a path (TorchScript's `/model/layers.0/mlp/up_proj/MatMul`).
StringAttr moduleName(ONNXNodeOp op, Value weight = {});

/// "node 'NAME' (OP, opset N): " prefixed error at the node.
InFlightDiagnostic nodeError(ONNXNodeOp op);

/// A run-time check: the compiled model stops with "node …: `what`" when
/// `cond` (i1) is false (cf.assert; see qopt-lower-runtime-checks).
/// `dataCheck`: `cond` reads tensor values (qopt.data_check).
void emitCheck(ONNXNodeOp op, OpBuilder &b, Value cond, const Twine &what,
               bool dataCheck = false);

/// Checks that every element of the integer tensor `indices` lies in
/// [-size, size) (`size` an index): now, when both are constants (an error
/// at the node), else at run time. `what` names them in the message.
LogicalResult checkIndices(ONNXNodeOp op, OpBuilder &b, Value indices,
                           Value size, const Twine &what);

/// Input `i`, or null when the node omits it (or has fewer inputs).
Value getInput(ONNXNodeOp op, unsigned i);

/// Input `i` with its ranked type (a handler's usual first check); fails
/// with `message` at the node when the input is omitted or unranked.
FailureOr<TypedValue<RankedTensorType>>
rankedInput(ONNXNodeOp op, unsigned i = 0,
            StringRef message = "needs a ranked input");

int64_t getIntAttr(ONNXNodeOp op, StringRef name, int64_t defaultValue);
double getFloatAttr(ONNXNodeOp op, StringRef name, double defaultValue);
StringRef getStringAttr(ONNXNodeOp op, StringRef name, StringRef defaultValue);
std::optional<SmallVector<int64_t>> getIntsAttr(ONNXNodeOp op, StringRef name);

/// Parameter look-ups while a pass runs share one symbol table instead of
/// scanning the module each time: a pass that reads parameters holds one
/// scope for its run (per thread; scopes nest).
class ParamLookupScope {
public:
  ParamLookupScope();
  ~ParamLookupScope();
  ParamLookupScope(const ParamLookupScope &) = delete;
  ParamLookupScope &operator=(const ParamLookupScope &) = delete;
  /// The innermost scope's table, or null outside any scope.
  static SymbolTableCollection *current();

private:
  SymbolTableCollection symbols;
  ParamLookupScope *previous;
};

/// The inline data of the parameter `load` reads, or null (looked up in the
/// current ParamLookupScope's table).
ElementsAttr getInlineParamData(LoadParamOp load);

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

/// Checks inner[d] <= outer[d] for every d but `skip` (an indexed op's
/// indices against its data): now where both are static, else at run time.
LogicalResult checkSizesWithin(ONNXNodeOp op, OpBuilder &b,
                               ArrayRef<OpFoldResult> inner,
                               ArrayRef<OpFoldResult> outer,
                               std::optional<int64_t> skip = std::nullopt);

/// Where a size comes from, followed through the ops conversion creates
/// (destination-style results, tensor.empty, casts, reshapes to computed
/// shapes, Shape's from_elements, index casts, arithmetic identities): two
/// sizes with the same source are equal. A source is (shaped value, dim),
/// (scalar, -1), or (null, constant).
std::pair<Value, int64_t> sizeSource(Value size);
std::pair<Value, int64_t> sizeSource(Value shaped, int64_t dim);

/// Element `i` of a small static 1-D (or 0-D) integer tensor built by shape
/// arithmetic (Shape, Gather, Unsqueeze, Concat, constants): an index
/// attribute when constant, else the scalar it was built from (its element
/// type), or null when unknown.
OpFoldResult shapeElementOf(Value t, int64_t i);

/// size == target || size == 1 (indices), what a broadcast allows.
Value isSizeOrOne(OpBuilder &b, Location loc, Value size, Value target);

/// `x` expanded along dimension `i` to `target` when its size there (which
/// the caller has checked to be `target` or 1) differs: an scf.if that
/// folds away once the sizes are known equal.
Value expandAtRunTime(OpBuilder &b, Location loc, Value x, int64_t i,
                      Value target);

/// `x` broadcast in its dimension `d` to dimension `dim` of `like` where
/// only the run can tell: unless both sizes come from the same place, a
/// check (naming `op`, with `what`) that the size is `like`'s or 1, then
/// expandAtRunTime.
Value broadcastAtRunTime(ONNXNodeOp op, OpBuilder &b, Value x, int64_t d,
                         Value like, int64_t dim, const Twine &what);

/// Elementwise op over `inputs` with ONNX (numpy) broadcasting: a
/// linalg.generic whose body is `body(block arguments)`. Dimensions the
/// types cannot decide broadcast as the run-time sizes say (sizes that are
/// neither equal nor 1 stop the run with an error naming the node).
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
LogicalResult raiseEmbedding(ONNXNodeOp gather, RewriterBase &rewriter,
                             SmallVectorImpl<Operation *> &erased);
LogicalResult raiseAttention(ONNXNodeOp start, RewriterBase &rewriter,
                             SmallVectorImpl<Operation *> &erased);
LogicalResult raiseRotary(ONNXNodeOp add, RewriterBase &rewriter,
                          SmallVectorImpl<Operation *> &erased);
LogicalResult raiseResidualAdd(ONNXNodeOp add, RewriterBase &rewriter,
                               SmallVectorImpl<Operation *> &erased);

/// Whether the softmax result `p` is used only by torch's guard
/// `Where(IsNaN(p), 0, p)` (fully masked rows, NaN, become 0): the IsNaN
/// and Where nodes, which `isNaN` / `where` receive when given.
bool isNaNGuarded(Value p, ONNXNodeOp *isNaN = nullptr,
                  ONNXNodeOp *where = nullptr);

/// The attention mask of node `op` for qopt.attention with 4-D query `q`
/// and key `k`: type checked, static broadcasting checked, dimensions only
/// the run can decide expanded at run time. Fails with a node error.
FailureOr<Value> prepareAttentionMask(ONNXNodeOp op, OpBuilder &b, Value mask,
                                      Value q, Value k);
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

/// An index constant (arith.constant of index type).
Value idx(OpBuilder &b, Location loc, int64_t v);

/// `ofr` as an index value (an index constant when it is an attribute).
Value indexValue(OpBuilder &b, Location loc, OpFoldResult ofr);

/// Product of sizes as an index value (constant when all are static).
OpFoldResult product(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes);

/// Normalises an axis against `rank` (negative counts from the end).
FailureOr<int64_t> normalizeAxis(ONNXNodeOp op, int64_t axis, int64_t rank,
                                 StringRef what = "axis");

} // namespace mlir::qopt::onnx

#endif // QOPT_LIB_CONVERSION_ONNXTOQOPT_PATTERNS_H
