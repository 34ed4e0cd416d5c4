//===- ONNXToQOpt.cpp - Convert imported ONNX nodes -----------------------===//
//
// The driver walks the imported function in order (ONNX graphs are
// topologically sorted) and hands each qopt.onnx_node to the handler that
// the table names for its (domain, op type, opset).
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"
#include "qopt/Conversion/Passes.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_CONVERTONNXTOQOPTPASS
#include "qopt/Conversion/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

InFlightDiagnostic mlir::qopt::onnx::nodeError(ONNXNodeOp op) {
  std::string name = "?";
  if (auto loc = dyn_cast<NameLoc>(op.getLoc()))
    name = loc.getName().str();
  InFlightDiagnostic diag = op.emitError();
  diag << "node '" << name << "' (";
  if (!op.getDomain().empty())
    diag << op.getDomain() << ".";
  diag << op.getOpType() << ", opset " << op.getOpset() << "): ";
  return diag;
}

Value mlir::qopt::onnx::getInput(ONNXNodeOp op, unsigned i) {
  if (i >= op.getInputs().size())
    return {};
  Value v = op.getInputs()[i];
  return isa<NoneType>(v.getType()) ? Value() : v;
}

int64_t mlir::qopt::onnx::getIntAttr(ONNXNodeOp op, StringRef name,
                                     int64_t defaultValue) {
  if (auto attr = op.getOnnxAttrs().getAs<IntegerAttr>(name))
    return attr.getInt();
  return defaultValue;
}

double mlir::qopt::onnx::getFloatAttr(ONNXNodeOp op, StringRef name,
                                      double defaultValue) {
  if (auto attr = op.getOnnxAttrs().getAs<FloatAttr>(name))
    return attr.getValueAsDouble();
  return defaultValue;
}

StringRef mlir::qopt::onnx::getStringAttr(ONNXNodeOp op, StringRef name,
                                          StringRef defaultValue) {
  if (auto attr = op.getOnnxAttrs().getAs<StringAttr>(name))
    return attr.getValue();
  return defaultValue;
}

std::optional<SmallVector<int64_t>>
mlir::qopt::onnx::getIntsAttr(ONNXNodeOp op, StringRef name) {
  if (auto attr = op.getOnnxAttrs().getAs<DenseI64ArrayAttr>(name))
    return SmallVector<int64_t>(attr.asArrayRef());
  return std::nullopt;
}

/// The elements of a constant (arith.constant or inline parameter), or null.
static Attribute constantData(Value value) {
  Attribute attr;
  if (!value || matchPattern(value, m_Constant(&attr)))
    return attr;
  if (auto load = value.getDefiningOp<LoadParamOp>())
    return load.getInlineData();
  return {};
}

std::optional<SmallVector<int64_t>>
mlir::qopt::onnx::getConstantInts(Value value) {
  auto elements = dyn_cast_or_null<DenseIntElementsAttr>(constantData(value));
  if (!elements)
    return std::nullopt;
  SmallVector<int64_t> result;
  for (const APInt &v : elements.getValues<APInt>())
    result.push_back(v.getSExtValue());
  return result;
}

std::optional<SmallVector<double>>
mlir::qopt::onnx::getConstantFloats(Value value) {
  auto elements = dyn_cast_or_null<DenseFPElementsAttr>(constantData(value));
  if (!elements)
    return std::nullopt;
  SmallVector<double> result;
  for (const APFloat &v : elements.getValues<APFloat>())
    result.push_back(v.convertToDouble());
  return result;
}

Value mlir::qopt::onnx::scalarConstant(OpBuilder &b, Location loc, Type type,
                                       double value) {
  if (auto f = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(b, loc, b.getFloatAttr(f, value));
  return arith::ConstantOp::create(
      b, loc, b.getIntegerAttr(type, static_cast<int64_t>(value)));
}

Value mlir::qopt::onnx::castScalar(OpBuilder &b, Location loc, Value value,
                                   Type to) {
  Type from = value.getType();
  if (from == to)
    return value;
  auto fromFloat = dyn_cast<FloatType>(from);
  auto toFloat = dyn_cast<FloatType>(to);
  if (to.isInteger(1)) { // x != 0
    if (fromFloat)
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, value,
                                   scalarConstant(b, loc, from, 0));
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, value,
                                 scalarConstant(b, loc, from, 0));
  }
  if (fromFloat && toFloat)
    return fromFloat.getWidth() < toFloat.getWidth()
               ? Value(arith::ExtFOp::create(b, loc, to, value))
               : Value(arith::TruncFOp::create(b, loc, to, value));
  if (fromFloat)
    return arith::FPToSIOp::create(b, loc, to, value);
  if (toFloat) // bool converts as 0/1
    return from.isInteger(1) ? Value(arith::UIToFPOp::create(b, loc, to, value))
                             : Value(arith::SIToFPOp::create(b, loc, to, value));
  unsigned fromBits = from.getIntOrFloatBitWidth();
  unsigned toBits = to.getIntOrFloatBitWidth();
  if (fromBits < toBits)
    return from.isInteger(1) ? Value(arith::ExtUIOp::create(b, loc, to, value))
                             : Value(arith::ExtSIOp::create(b, loc, to, value));
  return arith::TruncIOp::create(b, loc, to, value);
}


FailureOr<int64_t> mlir::qopt::onnx::normalizeAxis(ONNXNodeOp op, int64_t axis,
                                                   int64_t rank,
                                                   StringRef what) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1))
    return nodeError(op) << what << " " << axis
                         << " is out of range for rank " << rank;
  return axis < 0 ? axis + rank : axis;
}

FailureOr<Value> mlir::qopt::onnx::buildElementwise(
    ONNXNodeOp op, OpBuilder &b, ValueRange inputs, Type resultElementType,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  Location loc = op.getLoc();
  int64_t rank = 0;
  for (Value v : inputs) {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (!type)
      return nodeError(op) << "needs ranked tensor inputs, got "
                           << v.getType();
    rank = std::max(rank, type.getRank());
  }
  // Result sizes: the non-1 static size where any operand has one (dynamic
  // sizes are assumed to agree with it), else a dynamic operand's size.
  SmallVector<OpFoldResult> sizes;
  SmallVector<int64_t> staticSizes;
  for (int64_t d = 0; d < rank; ++d) {
    int64_t size = 1;
    Value dynSource;
    int64_t dynIndex = 0;
    for (Value v : inputs) {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t i = d - (rank - type.getRank());
      if (i < 0)
        continue;
      int64_t s = type.getDimSize(i);
      if (ShapedType::isDynamic(s)) {
        if (!dynSource) {
          dynSource = v;
          dynIndex = i;
        }
        continue;
      }
      if (s == 1)
        continue;
      if (size != 1 && size != s)
        return nodeError(op) << "operands cannot be broadcast together: "
                             << "dimension " << d << " is " << size
                             << " in one and " << s << " in another";
      size = s;
    }
    if (size == 1 && dynSource) {
      sizes.push_back(
          tensor::DimOp::create(b, loc, dynSource, dynIndex).getResult());
      staticSizes.push_back(ShapedType::kDynamic);
    } else {
      sizes.push_back(b.getIndexAttr(size));
      staticSizes.push_back(size);
    }
  }
  SmallVector<AffineMap> maps;
  for (Value v : inputs) {
    auto type = cast<RankedTensorType>(v.getType());
    SmallVector<AffineExpr> exprs;
    for (int64_t i = 0; i < type.getRank(); ++i) {
      int64_t d = i + (rank - type.getRank());
      bool broadcast = type.getDimSize(i) == 1 && staticSizes[d] != 1;
      exprs.push_back(broadcast ? b.getAffineConstantExpr(0)
                                : b.getAffineDimExpr(d));
    }
    maps.push_back(AffineMap::get(rank, 0, exprs, b.getContext()));
  }
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = tensor::EmptyOp::create(b, loc, sizes, resultElementType);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, init.getType(), inputs, init, maps, iterators,
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        Value result = body(nb, nloc, args.drop_back());
        linalg::YieldOp::create(nb, nloc, result);
      });
  return generic.getResult(0);
}

Value mlir::qopt::onnx::reshapeTo(OpBuilder &b, Location loc, Value value,
                                  ArrayRef<OpFoldResult> sizes) {
  auto type = cast<RankedTensorType>(value.getType());
  SmallVector<int64_t> staticSizes;
  SmallVector<Value> dims;
  for (OpFoldResult s : sizes) {
    std::optional<int64_t> c = getConstantIntValue(s);
    staticSizes.push_back(c ? *c : ShapedType::kDynamic);
    dims.push_back(getValueOrCreateConstantIndexOp(b, loc, s));
  }
  auto resultType = RankedTensorType::get(staticSizes, type.getElementType());
  if (resultType == type)
    return value;
  auto shapeType = RankedTensorType::get(
      {static_cast<int64_t>(dims.size())}, b.getIndexType());
  Value shape = tensor::FromElementsOp::create(b, loc, shapeType, dims);
  return tensor::ReshapeOp::create(b, loc, resultType, value, shape);
}

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

namespace {

class HandlerTable {
public:
  HandlerTable() {
    for (ArrayRef<HandlerEntry> group :
         {getElementwiseHandlers(), getTensorHandlers(),
          getMoreTensorHandlers(), getQuantHandlers(),
          getConvHandlers(), getIndexHandlers(), getAttentionHandlers()})
      for (const HandlerEntry &entry : group)
        table[key(entry.domain, entry.opType)].push_back(&entry);
    for (auto &it : table)
      llvm::sort(it.second, [](const HandlerEntry *a, const HandlerEntry *b) {
        return a->since < b->since;
      });
  }

  /// The handler for `op`'s opset, or null with `oldest` set to the first
  /// supported version when the op is known but the opset too old.
  const HandlerEntry *lookup(ONNXNodeOp op, int64_t &oldest) const {
    oldest = 0;
    auto it = table.find(key(op.getDomain(), op.getOpType()));
    if (it == table.end())
      return nullptr;
    const HandlerEntry *best = nullptr;
    for (const HandlerEntry *entry : it->second)
      if (entry->since <= static_cast<int64_t>(op.getOpset()))
        best = entry;
    if (!best)
      oldest = it->second.front()->since;
    return best;
  }

private:
  static std::string key(StringRef domain, StringRef opType) {
    return (domain + "::" + opType).str();
  }
  llvm::StringMap<SmallVector<const HandlerEntry *, 2>> table;
};

/// The most static type both `a` and `b` describe, or failure when they
/// disagree (different element types, ranks or static sizes).
FailureOr<Type> joinTypes(Type a, Type b) {
  auto ta = dyn_cast<TensorType>(a), tb = dyn_cast<TensorType>(b);
  if (!ta || !tb || ta.getElementType() != tb.getElementType())
    return failure();
  if (!ta.hasRank())
    return b;
  if (!tb.hasRank())
    return a;
  if (ta.getRank() != tb.getRank())
    return failure();
  SmallVector<int64_t> shape;
  for (auto [x, y] : llvm::zip(ta.getShape(), tb.getShape())) {
    if (!ShapedType::isDynamic(x) && !ShapedType::isDynamic(y) && x != y)
      return failure();
    shape.push_back(ShapedType::isDynamic(x) ? y : x);
  }
  return Type(RankedTensorType::get(shape, ta.getElementType()));
}

struct ConvertONNXToQOptPass
    : qopt::impl::ConvertONNXToQOptPassBase<ConvertONNXToQOptPass> {
  using Base::Base;

  void runOnOperation() override {
    static const HandlerTable table;
    SmallVector<ONNXNodeOp> nodes;
    getOperation().walk([&](ONNXNodeOp op) { nodes.push_back(op); });
    bool failedAny = false;
    // Layers are raised to QOpt ops as the walk reaches them, when their
    // inputs already carry the types conversion refined.
    llvm::DenseSet<Operation *> erased;
    IRRewriter rewriter(&getContext());
    for (ONNXNodeOp op : nodes) {
      if (erased.contains(op))
        continue;
      SmallVector<Operation *> gone;
      if (succeeded(tryRaise(op, rewriter, gone))) {
        erased.insert(gone.begin(), gone.end());
        continue;
      }
      if (failed(convert(table, op)))
        failedAny = true;
    }
    // Drop the placeholders of omitted inputs once nothing reads them.
    getOperation().walk([](ONNXNoneOp op) {
      if (op->use_empty())
        op->erase();
    });
    if (failedAny)
      signalPassFailure();
  }

  LogicalResult tryRaise(ONNXNodeOp op, IRRewriter &rewriter,
                         SmallVectorImpl<Operation *> &gone) {
    if (!op.getDomain().empty())
      return failure();
    StringRef type = op.getOpType();
    if (type == "MatMul" || type == "Gemm")
      return raiseLinear(op, rewriter, gone);
    if (type == "Pow" || type == "Mul")
      if (ONNXNodeOp root = findRMSNormRoot(op))
        if (succeeded(raiseRMSNorm(root, rewriter, gone)))
          return success();
    // GELU, SiLU and LayerNorm chains: look for their final node among the
    // nodes this one feeds (a few levels, a bounded number of nodes).
    if (type == "Div" || type == "Pow" || type == "Mul" || type == "Sigmoid" ||
        type == "ReduceMean" || type == "Erf")
      return raiseForward(op, rewriter, gone);
    return failure();
  }

  LogicalResult raiseForward(ONNXNodeOp start, IRRewriter &rewriter,
                             SmallVectorImpl<Operation *> &gone) {
    SmallVector<ONNXNodeOp> queue = {start};
    llvm::SmallPtrSet<Operation *, 32> seen = {start};
    for (size_t i = 0; i < queue.size() && i < 32; ++i) {
      ONNXNodeOp node = queue[i];
      StringRef type = node.getOpType();
      if (node.getDomain().empty() && (type == "Add" || type == "Mul")) {
        if (succeeded(raiseLayerNorm(node, rewriter, gone)) ||
            succeeded(raiseGelu(node, rewriter, gone)) ||
            succeeded(raiseSiLU(node, rewriter, gone)))
          return success();
      }
      for (Operation *user : node->getUsers())
        if (auto next = dyn_cast<ONNXNodeOp>(user))
          if (seen.insert(next).second)
            queue.push_back(next);
    }
    return failure();
  }

  LogicalResult convert(const HandlerTable &table, ONNXNodeOp op) {
    int64_t oldest = 0;
    const HandlerEntry *entry = table.lookup(op, oldest);
    if (!entry) {
      if (allowUnsupported)
        return success();
      if (oldest)
        return nodeError(op) << "opset " << op.getOpset()
                             << " is older than the oldest supported "
                             << "version of this operator (" << oldest << ")";
      return nodeError(op) << "operator '" << op.getOpType()
                           << "' of domain '"
                           << (op.getDomain().empty() ? "ai.onnx"
                                                      : op.getDomain())
                           << "' is not supported";
    }
    OpBuilder b(op);
    SmallVector<Value> results;
    // A handler that fails has said why (an attribute value or input it
    // cannot honour); that is an error even with allow-unsupported.
    if (failed(entry->handler(op, b, results)))
      return failure();
    assert(results.size() == op.getNumResults() && "handler result count");
    for (auto [oldValue, newValue] : llvm::zip(op.getResults(), results)) {
      if (oldValue.use_empty())
        continue;
      if (!newValue)
        return nodeError(op) << "does not produce an output it is asked for";
      if (newValue.getType() == oldValue.getType()) {
        oldValue.replaceAllUsesWith(newValue);
        continue;
      }
      // The model's declared type and the computed one may each know dims
      // the other does not (shape inference often gives up on dynamic
      // reshapes): later nodes get the join of both, other users the
      // declared type.
      FailureOr<Type> joined = joinTypes(newValue.getType(), oldValue.getType());
      if (failed(joined))
        return nodeError(op) << "computes " << newValue.getType()
                             << " but the model declares "
                             << oldValue.getType();
      Value refined = newValue;
      if (*joined != newValue.getType())
        refined = tensor::CastOp::create(b, op.getLoc(), *joined, newValue);
      Value declared;
      for (OpOperand &use : llvm::make_early_inc_range(oldValue.getUses())) {
        if (isa<ONNXNodeOp>(use.getOwner())) {
          use.set(refined);
          continue;
        }
        if (!declared)
          declared = tensor::CastOp::create(b, op.getLoc(), oldValue.getType(),
                                            refined);
        use.set(declared);
      }
    }
    op->erase();
    return success();
  }
};

} // namespace
