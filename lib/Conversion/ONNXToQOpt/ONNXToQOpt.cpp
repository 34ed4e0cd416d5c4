//===- ONNXToQOpt.cpp - Convert imported ONNX nodes -----------------------===//
//
// The driver walks the imported function in order (ONNX graphs are
// topologically sorted) and hands each onnx.node to the handler that
// the table names for its (domain, op type, opset). The tables come from the
// operator-family files (Elementwise.cpp, Shape.cpp, ...); the helpers they
// share are in Utils.cpp.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"
#include "qopt/Conversion/ONNXToQOpt/Passes.h"
#include "qopt/Support/ONNXSchemas.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_CONVERTONNXTOQOPTPASS
#include "qopt/Conversion/ONNXToQOpt/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

//===----------------------------------------------------------------------===//
// Driver
//===----------------------------------------------------------------------===//

namespace {

class HandlerTable {
public:
  HandlerTable() {
    for (ArrayRef<HandlerEntry> group :
         {getElementwiseHandlers(), getLinearAlgebraHandlers(),
          getReductionHandlers(), getNormalizationHandlers(),
          getConvolutionHandlers(), getPoolingHandlers(), getResizeHandlers(),
          getAttentionHandlers(), getQuantizationHandlers(), getShapeHandlers(),
          getIndexHandlers()})
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
    : mlir::qopt::impl::ConvertONNXToQOptPassBase<ConvertONNXToQOptPass> {
  using Base::Base;

  void runOnOperation() override {
    static const HandlerTable table;
    ParamLookupScope symbols;
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
      if (failed(checkSchema(op))) {
        failedAny = true;
        continue;
      }
      // A raise that starts at this node may replace a chain further on
      // (a GELU or norm this node feeds): the node itself is converted
      // unless the raise consumed it.
      SmallVector<Operation *> gone;
      if (succeeded(tryRaise(op, rewriter, gone))) {
        erased.insert(gone.begin(), gone.end());
        if (erased.contains(op))
          continue;
      }
      if (failed(convert(table, op)))
        failedAny = true;
    }
    // Every node is converted now, or refused above.
    if (!failedAny && !allowUnsupported)
      getOperation().walk([&](ONNXNodeOp op) {
        nodeError(op) << "was left unconverted (internal error)";
        failedAny = true;
      });
    // Drop the placeholders of omitted inputs once nothing reads them.
    getOperation().walk([](ONNXNoneOp op) {
      if (op->use_empty())
        op->erase();
    });
    if (failedAny)
      signalPassFailure();
  }

  /// A default-domain node against its operator's schema (what the importer
  /// checks too; IR may also be written by hand): the operator exists at
  /// the node's opset, input / output counts, attribute names and kinds.
  /// Handlers and raising patterns rely on it.
  LogicalResult checkSchema(ONNXNodeOp op) {
    namespace schema = ::qopt::onnx_schema;
    if (!op.getDomain().empty())
      return success();
    const schema::Schema *s =
        schema::lookup(op.getOpType().str(), op.getOpset());
    if (!s && schema::isRuntimeExtension(op.getOpType().str(), op.getOpset()))
      return success();
    if (!s || s->deprecated)
      return allowUnsupported
                 ? success()
                 : LogicalResult(nodeError(op)
                                 << "'" << op.getOpType()
                                 << "' is not an operator of the default "
                                    "ONNX domain at this opset");
    std::string counts =
        schema::checkCounts(*s, op.getInputs().size(), op.getNumResults());
    if (!counts.empty())
      return nodeError(op) << op.getOpType() << " " << counts;
    for (NamedAttribute attr : op.getOnnxAttrs()) {
      const schema::Attribute *expected = s->attribute(attr.getName().strref());
      if (!expected)
        return nodeError(op) << op.getOpType() << " has no attribute '"
                             << attr.getName().getValue() << "'";
      Attribute v = attr.getValue();
      bool ok = true;
      switch (expected->type) {
      case schema::AttrType::Int:
        ok = isa<IntegerAttr>(v);
        break;
      case schema::AttrType::Float:
        ok = isa<FloatAttr>(v);
        break;
      case schema::AttrType::String:
        ok = isa<StringAttr>(v);
        break;
      case schema::AttrType::Ints:
        ok = isa<DenseI64ArrayAttr>(v);
        break;
      case schema::AttrType::Floats:
        ok = isa<DenseF32ArrayAttr, DenseF64ArrayAttr>(v);
        break;
      case schema::AttrType::Strings:
        ok = isa<ArrayAttr>(v);
        break;
      case schema::AttrType::Tensor:
        ok = isa<ElementsAttr>(v);
        break;
      default:
        break;
      }
      if (!ok)
        return nodeError(op)
               << "attribute '" << attr.getName().getValue() << "' must be "
               << schema::attrTypeName(expected->type) << ", got " << v;
    }
    return success();
  }

  LogicalResult tryRaise(ONNXNodeOp op, IRRewriter &rewriter,
                         SmallVectorImpl<Operation *> &gone) {
    if (!op.getDomain().empty())
      return failure();
    StringRef type = op.getOpType();
    if (type == "MatMul" || type == "Gemm")
      return raiseLinear(op, rewriter, gone);
    if (type == "Gather")
      return raiseEmbedding(op, rewriter, gone);
    if (type == "Add")
      return raiseResidualAdd(op, rewriter, gone);
    if (type == "Mul" && succeeded(raiseAttention(op, rewriter, gone)))
      return success();
    if (type == "Pow" || type == "Mul")
      if (ONNXNodeOp root = findRMSNormRoot(op))
        if (succeeded(raiseRMSNorm(root, rewriter, gone)))
          return success();
    // GELU, SiLU and LayerNorm chains: look for their final node among the
    // nodes this one feeds (a few levels, a bounded number of nodes).
    if (type == "Div" || type == "Pow" || type == "Mul" || type == "Sigmoid" ||
        type == "ReduceMean" || type == "Erf" || type == "Slice")
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
            succeeded(raiseRotary(node, rewriter, gone)) ||
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
      return nodeError(op) << "operator '" << op.getOpType() << "' of domain '"
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
    for (auto [index, pair] :
         llvm::enumerate(llvm::zip(op.getResults(), results))) {
      auto [oldValue, newValue] = pair;
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
      FailureOr<Type> joined =
          joinTypes(newValue.getType(), oldValue.getType());
      if (failed(joined))
        return nodeError(op)
               << "computes " << newValue.getType()
               << " but the model declares " << oldValue.getType();
      Value refined = newValue;
      if (*joined != newValue.getType()) {
        // Sizes only the declaration knows are trusted by what follows:
        // checked, since value_info can be stale (inputs made dynamic after
        // export).
        auto computed = dyn_cast<RankedTensorType>(newValue.getType());
        auto target = dyn_cast<RankedTensorType>(*joined);
        if (computed && target)
          for (int64_t d = 0; d < computed.getRank(); ++d)
            if (computed.isDynamicDim(d) && !target.isDynamicDim(d))
              emitEqualSizes(
                  op, b, tensor::getMixedSize(b, op.getLoc(), newValue, d),
                  b.getIndexAttr(target.getDimSize(d)),
                  "output " + Twine(index) + " has another size in dimension " +
                      Twine(d) + " than the model declares (" +
                      Twine(target.getDimSize(d)) + ")");
        refined = tensor::CastOp::create(b, op.getLoc(), *joined, newValue);
      }
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
