//===- Utils.cpp - Helpers the ONNX node handlers share -------------------===//
//
// Node errors and run-time checks, inputs, attributes and constants, size
// tracing (sizeSource), broadcasting (buildElementwise), reshapes, the
// accumulator type and index arithmetic; declared in Patterns.h.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

#include <limits>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

InFlightDiagnostic mlir::qopt::onnx::nodeError(ONNXNodeOp op) {
  InFlightDiagnostic diag = op.emitError();
  diag << nodeDescription(op) << ": ";
  return diag;
}

Value mlir::qopt::onnx::getInput(ONNXNodeOp op, unsigned i) {
  if (i >= op.getInputs().size())
    return {};
  Value v = op.getInputs()[i];
  return isa<NoneType>(v.getType()) ? Value() : v;
}

FailureOr<TypedValue<RankedTensorType>>
mlir::qopt::onnx::rankedInput(ONNXNodeOp op, unsigned i, StringRef message) {
  Value v = getInput(op, i);
  if (!rankedType(v))
    return nodeError(op) << message;
  return cast<TypedValue<RankedTensorType>>(v);
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

static thread_local ParamLookupScope *innermostScope = nullptr;

ParamLookupScope::ParamLookupScope() : previous(innermostScope) {
  innermostScope = this;
}

ParamLookupScope::~ParamLookupScope() { innermostScope = previous; }

SymbolTableCollection *ParamLookupScope::current() {
  return innermostScope ? &innermostScope->symbols : nullptr;
}

ElementsAttr mlir::qopt::onnx::getInlineParamData(LoadParamOp load) {
  return load.getInlineData(ParamLookupScope::current());
}

/// The elements of a constant (arith.constant or inline parameter), or of
/// an op that folds to one from such operands (exports without constant
/// folding compute Slice axes, Reshape shapes, … as Unsqueeze / Concat /
/// Cast chains of constants), or null. `depth` bounds the chains followed.
static Attribute constantData(Value value, int depth = 8) {
  Attribute attr;
  if (!value || matchPattern(value, m_Constant(&attr)))
    return attr;
  if (auto load = value.getDefiningOp<LoadParamOp>())
    return getInlineParamData(load);
  // Only ops whose folds neither edit the op (as commutative ones do) nor
  // touch large data: reshapes, element builders and integer casts.
  Operation *op = value.getDefiningOp();
  if (!op || depth == 0 ||
      !isa<tensor::ReshapeOp, tensor::ExpandShapeOp, tensor::CollapseShapeOp,
           tensor::FromElementsOp, tensor::CastOp, arith::IndexCastOp,
           arith::ExtSIOp, arith::ExtUIOp, arith::TruncIOp>(op))
    return {};
  SmallVector<Attribute> operands;
  for (Value operand : op->getOperands()) {
    Attribute c = constantData(operand, depth - 1);
    // Scalars and small tensors: shapes and indices, not weights.
    auto elements = dyn_cast_or_null<ElementsAttr>(c);
    if (!(elements ? elements.getNumElements() <= 64
                   : isa_and_nonnull<IntegerAttr, FloatAttr>(c)))
      return {};
    operands.push_back(c);
  }
  SmallVector<OpFoldResult> results;
  if (failed(op->fold(operands, results)) ||
      results.size() != op->getNumResults())
    return {};
  auto folded = dyn_cast_if_present<Attribute>(
      results[cast<OpResult>(value).getResultNumber()]);
  // A fold may return a fold-to-operand Value or a non-elements attribute.
  return isa_and_nonnull<ElementsAttr>(folded) ? folded : Attribute();
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
    return from.isInteger(1)
               ? Value(arith::UIToFPOp::create(b, loc, to, value))
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
    return nodeError(op) << what << " " << axis << " is out of range for rank "
                         << rank;
  return axis < 0 ? axis + rank : axis;
}

std::string mlir::qopt::onnx::nodeDescription(ONNXNodeOp op) {
  std::string text;
  llvm::raw_string_ostream os(text);
  std::string name = "?";
  if (auto loc = dyn_cast<NameLoc>(op.getLoc()))
    name = loc.getName().str();
  os << "node '" << name << "' (";
  if (!op.getDomain().empty())
    os << op.getDomain() << ".";
  os << op.getOpType() << ", opset " << op.getOpset() << ")";
  return text;
}

StringAttr mlir::qopt::onnx::moduleName(ONNXNodeOp op, Value weight) {
  MLIRContext *context = op.getContext();
  // "['', 'm', 'm.model', 'm.model.layers.0', …, 'm.model.layers.0.mlp',
  //   'm.model.layers.0.mlp.up_proj', 'linear']": the longest chain of
  // nested paths; the last entry names the op, not a module.
  if (DictionaryAttr metadata = op.getMetadataAttr())
    if (auto scopes =
            metadata.getAs<StringAttr>("pkg.torch.onnx.name_scopes")) {
      StringRef rest = scopes.getValue(), path;
      while (true) {
        size_t open = rest.find('\'');
        if (open == StringRef::npos)
          break;
        size_t close = rest.find('\'', open + 1);
        if (close == StringRef::npos)
          break;
        StringRef entry = rest.slice(open + 1, close);
        rest = rest.drop_front(close + 1);
        if (!entry.empty() && (path.empty() || entry.starts_with(path)) &&
            (path.empty() || entry.drop_front(path.size()).starts_with(".")))
          path = entry;
        else if (!entry.empty() && !path.empty())
          break; // the op's own name ends the chain
      }
      if (!path.empty())
        return StringAttr::get(context, path);
    }
  if (auto load = weight ? weight.getDefiningOp<LoadParamOp>() : nullptr) {
    StringRef name = load.getName();
    if (name.consume_back(".weight") && !name.empty())
      return StringAttr::get(context, name);
  }
  // "/model/layers.0/mlp/up_proj/MatMul" -> model.layers.0.mlp.up_proj
  if (auto loc = dyn_cast<NameLoc>(op.getLoc())) {
    StringRef name = loc.getName().getValue();
    if (name.consume_front("/")) {
      SmallVector<StringRef> parts;
      name.split(parts, '/');
      if (parts.size() >= 2 &&
          llvm::none_of(parts, [](StringRef part) { return part.empty(); }))
        return StringAttr::get(
            context, llvm::join(ArrayRef<StringRef>(parts).drop_back(), "."));
    }
  }
  return {};
}

void mlir::qopt::onnx::emitEqualSizes(ONNXNodeOp op, OpBuilder &b,
                                      OpFoldResult lhs, OpFoldResult rhs,
                                      const Twine &what) {
  Location loc = op.getLoc();
  emitCheck(op, b,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                  getValueOrCreateConstantIndexOp(b, loc, lhs),
                                  getValueOrCreateConstantIndexOp(b, loc, rhs)),
            what);
}

void mlir::qopt::onnx::emitCheck(ONNXNodeOp op, OpBuilder &b, Value cond,
                                 const Twine &what, bool dataCheck) {
  // Nothing to check at run time when folding already decides.
  if (std::optional<int64_t> c = getConstantIntValue(cond); c && *c)
    return;
  auto check = cf::AssertOp::create(b, op.getLoc(), cond,
                                    (nodeDescription(op) + ": " + what).str());
  if (dataCheck)
    QOptDialect::DataCheckAttrHelper(b.getContext())
        .setAttr(check, b.getUnitAttr());
}

LogicalResult mlir::qopt::onnx::checkIndices(ONNXNodeOp op, OpBuilder &b,
                                             Value indices, Value size,
                                             const Twine &what) {
  Location loc = op.getLoc();
  // Constant indices (shape arithmetic) are checked now when the size is
  // known too.
  std::optional<int64_t> staticSize = getConstantIntValue(size);
  std::optional<SmallVector<int64_t>> values = getConstantInts(indices);
  if (values && staticSize) {
    for (int64_t v : *values)
      if (v < -*staticSize || v >= *staticSize)
        return nodeError(op) << what << " is " << v
                             << ", out of range (valid: " << -*staticSize
                             << " to " << *staticSize - 1 << ")";
    return success();
  }
  bool readsData = false;
  Value ok = createIndicesInRange(b, loc, indices, size, &readsData);
  std::string range;
  if (staticSize)
    range = (" (valid: " + Twine(-*staticSize) + " to " +
             Twine(*staticSize - 1) + ")")
                .str();
  emitCheck(op, b, ok, what + " is out of range" + range, readsData);
  return success();
}

LogicalResult mlir::qopt::onnx::checkSizesWithin(ONNXNodeOp op, OpBuilder &b,
                                                 ArrayRef<OpFoldResult> inner,
                                                 ArrayRef<OpFoldResult> outer,
                                                 std::optional<int64_t> skip) {
  Location loc = op.getLoc();
  for (auto [d, pair] : llvm::enumerate(llvm::zip(inner, outer))) {
    if (skip && static_cast<int64_t>(d) == *skip)
      continue;
    auto [in, out] = pair;
    std::optional<int64_t> a = getConstantIntValue(in),
                           c = getConstantIntValue(out);
    if (a && c) {
      if (*a > *c)
        return nodeError(op) << "dimension " << d << " of the indices (" << *a
                             << ") exceeds the data's (" << *c << ")";
      continue;
    }
    emitCheck(
        op, b,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sle,
                              getValueOrCreateConstantIndexOp(b, loc, in),
                              getValueOrCreateConstantIndexOp(b, loc, out)),
        "dimension " + Twine(d) + " of the indices exceeds the data's");
  }
  return success();
}

/// Marks the scf.if of a run-time broadcast (for size tracing during the
/// conversion only).
static constexpr StringLiteral kRuntimeBroadcast = "qopt.runtime_broadcast";

namespace {
/// Where a dimension size comes from, followed through the ops conversion
/// creates (results of destination-style ops, tensor.empty, casts, reshapes
/// to computed shapes, Shape's from_elements and index casts): two dynamic
/// sizes with the same source are equal. A source is a (shaped value, dim)
/// pair, or an index-like scalar with dim -1; a constant has a null value.
using DimSource = std::pair<Value, int64_t>;

DimSource scalarSource(Value v, unsigned depth = 0);
Value shapeElement(Value t, int64_t i, unsigned depth);
OpFoldResult shapeElementImpl(Value t, int64_t i, unsigned depth);

DimSource dimSource(Value v, int64_t dim, unsigned depth = 0) {
  if (depth > 64)
    return {v, dim};
  auto type = dyn_cast<ShapedType>(v.getType());
  if (type && type.hasRank() && !type.isDynamicDim(dim))
    return {Value(), type.getDimSize(dim)};
  Operation *def = v.getDefiningOp();
  if (!def) {
    // Inputs whose dimensions share an ONNX name ("batch", "seq") are
    // equal: the runtime checks that before it runs the model.
    auto arg = dyn_cast<BlockArgument>(v);
    auto func = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                    : func::FuncOp();
    if (!func || arg.getOwner() != &func.getBody().front())
      return {v, dim};
    auto nameAt = [&](unsigned i, int64_t d) -> StringRef {
      auto names = func.getArgAttrOfType<ArrayAttr>(
          i, QOptDialect::DimNamesAttrHelper::getNameStr());
      if (!names || d >= static_cast<int64_t>(names.size()))
        return {};
      auto name = dyn_cast<StringAttr>(names[d]);
      return name ? name.getValue() : StringRef();
    };
    StringRef name = nameAt(arg.getArgNumber(), dim);
    if (name.empty())
      return {v, dim};
    for (unsigned i = 0; i < func.getNumArguments(); ++i) {
      auto type = dyn_cast<RankedTensorType>(func.getArgument(i).getType());
      for (int64_t d = 0; type && d < type.getRank(); ++d)
        if (type.isDynamicDim(d) && nameAt(i, d) == name)
          return {func.getArgument(i), d};
    }
    return {v, dim};
  }
  // Along other dimensions than its axis, a concatenation has its inputs'
  // (equal, as checked) sizes.
  if (auto concat = dyn_cast<tensor::ConcatOp>(def))
    if (static_cast<int64_t>(concat.getDim()) != dim)
      return dimSource(concat.getInputs().front(), dim, depth + 1);
  if (auto dps = dyn_cast<DestinationStyleOpInterface>(def))
    if (auto result = dyn_cast<OpResult>(v);
        result && dps.hasPureTensorSemantics())
      return dimSource(dps.getDpsInits()[result.getResultNumber()], dim,
                       depth + 1);
  if (auto empty = dyn_cast<tensor::EmptyOp>(def))
    return scalarSource(empty.getDynamicSize(dim), depth + 1);
  // QOpt graph ops keep their input's shape (the linear ops all but the
  // last dimension).
  if (isa<LayerNormOp, RMSNormOp, GeluOp, SiLUOp, SmoothOp, HadamardOp,
          FakeQuantOp, LSQOp>(def))
    return dimSource(def->getOperand(0), dim, depth + 1);
  if (isa<LinearOp, LoRAOp>(def) &&
      dim + 1 < cast<ShapedType>(v.getType()).getRank())
    return dimSource(def->getOperand(0), dim, depth + 1);
  if (auto cast = dyn_cast<tensor::CastOp>(def))
    return dimSource(cast.getSource(), dim, depth + 1);
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def))
    if (slice.getSourceType().getRank() == slice.getType().getRank())
      if (auto size = dyn_cast<Value>(slice.getMixedSizes()[dim]))
        return scalarSource(size, depth + 1);
  // A run-time broadcast has the expanded branch's sizes either way.
  if (auto ifOp = dyn_cast<scf::IfOp>(def))
    if (ifOp->hasAttr(kRuntimeBroadcast))
      return dimSource(ifOp.thenYield().getOperand(0), dim, depth + 1);
  if (auto reshape = dyn_cast<tensor::ReshapeOp>(def))
    if (auto shape = reshape.getShape().getDefiningOp<tensor::FromElementsOp>())
      return scalarSource(shape.getElements()[dim], depth + 1);
  return {v, dim};
}

DimSource scalarSource(Value v, unsigned depth) {
  if (std::optional<int64_t> c = getConstantIntValue(v))
    return {Value(), *c};
  if (depth > 64)
    return {v, -1};
  if (auto dim = v.getDefiningOp<tensor::DimOp>())
    if (std::optional<int64_t> index = dim.getConstantIndex())
      return dimSource(dim.getSource(), *index, depth + 1);
  if (auto cast = v.getDefiningOp<arith::IndexCastOp>())
    return scalarSource(cast.getIn(), depth + 1);
  // Identities the shape arithmetic of exports is full of (Range's count
  // (limit - 0) ceildiv 1, clamped at 0, …).
  auto isConstant = [](Value x, int64_t c) {
    std::optional<int64_t> v = getConstantIntValue(x);
    return v && *v == c;
  };
  Operation *def = v.getDefiningOp();
  if (isa_and_present<arith::SubIOp, arith::DivSIOp, arith::DivUIOp,
                      arith::CeilDivSIOp, arith::CeilDivUIOp>(def) &&
      isConstant(def->getOperand(1), isa<arith::SubIOp>(def) ? 0 : 1))
    return scalarSource(def->getOperand(0), depth + 1);
  if (isa_and_present<arith::AddIOp, arith::MulIOp>(def))
    for (int k = 0; k < 2; ++k)
      if (isConstant(def->getOperand(1 - k), isa<arith::AddIOp>(def) ? 0 : 1))
        return scalarSource(def->getOperand(k), depth + 1);
  if (isa_and_present<arith::MaxSIOp>(def))
    for (int k = 0; k < 2; ++k)
      if (isConstant(def->getOperand(1 - k), 0)) {
        // max(size, 0) is the size: sizes are never negative.
        DimSource inner = scalarSource(def->getOperand(k), depth + 1);
        if (inner.first && inner.second >= 0)
          return inner;
      }
  if (auto select = dyn_cast_or_null<arith::SelectOp>(def)) {
    DimSource a = scalarSource(select.getTrueValue(), depth + 1);
    if (a == scalarSource(select.getFalseValue(), depth + 1))
      return a;
  }
  if (auto extract = v.getDefiningOp<tensor::ExtractOp>()) {
    // A shape tensor's element (Shape → Gather → Unsqueeze → Concat …).
    auto type = cast<RankedTensorType>(extract.getTensor().getType());
    if (type.hasStaticShape() && type.getRank() <= 1) {
      int64_t i = 0;
      if (type.getRank() == 1) {
        std::optional<int64_t> c = getConstantIntValue(extract.getIndices()[0]);
        if (!c)
          return {v, -1};
        i = *c;
      }
      if (Value element = shapeElement(extract.getTensor(), i, depth + 1))
        return scalarSource(element, depth + 1);
    }
  }
  return {v, -1};
}

Value shapeElement(Value t, int64_t i, unsigned depth) {
  OpFoldResult element = shapeElementImpl(t, i, depth);
  return dyn_cast_if_present<Value>(element);
}

OpFoldResult shapeElementImpl(Value t, int64_t i, unsigned depth) {
  auto type = dyn_cast<RankedTensorType>(t.getType());
  if (depth > 64 || !type || !type.hasStaticShape() || type.getRank() > 1 ||
      i < 0 || i >= type.getNumElements())
    return {};
  if (std::optional<SmallVector<int64_t>> c = getConstantInts(t))
    return IntegerAttr::get(IndexType::get(t.getContext()), (*c)[i]);
  Operation *def = t.getDefiningOp();
  if (auto elements = dyn_cast_or_null<tensor::FromElementsOp>(def))
    return elements.getElements()[i];
  if (auto cast = dyn_cast_or_null<tensor::CastOp>(def))
    return shapeElementImpl(cast.getSource(), i, depth + 1);
  // Reshapes of rank <= 1 keep the element order.
  if (auto reshape = dyn_cast_or_null<tensor::ReshapeOp>(def))
    return shapeElementImpl(reshape.getSource(), i, depth + 1);
  if (auto concat = dyn_cast_or_null<tensor::ConcatOp>(def)) {
    for (Value input : concat.getInputs()) {
      auto inType = dyn_cast<RankedTensorType>(input.getType());
      if (!inType || !inType.hasStaticShape())
        return {};
      if (i < inType.getNumElements())
        return shapeElementImpl(input, i, depth + 1);
      i -= inType.getNumElements();
    }
  }
  return {};
}
} // namespace

OpFoldResult mlir::qopt::onnx::shapeElementOf(Value t, int64_t i) {
  return shapeElementImpl(t, i, 0);
}

std::pair<Value, int64_t> mlir::qopt::onnx::sizeSource(Value size) {
  return scalarSource(size);
}

std::pair<Value, int64_t> mlir::qopt::onnx::sizeSource(Value shaped,
                                                       int64_t dim) {
  return dimSource(shaped, dim);
}

Value mlir::qopt::onnx::isSizeOrOne(OpBuilder &b, Location loc, Value size,
                                    Value target) {
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  return arith::OrIOp::create(
      b, loc,
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, size, target),
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, size, one));
}

Value mlir::qopt::onnx::broadcastAtRunTime(ONNXNodeOp op, OpBuilder &b, Value x,
                                           int64_t d, Value like, int64_t dim,
                                           const Twine &what) {
  if (sizeSource(x, d) == sizeSource(like, dim))
    return x;
  Location loc = op.getLoc();
  Value target = tensor::DimOp::create(b, loc, like, dim);
  Value size = tensor::DimOp::create(b, loc, x, d);
  emitCheck(op, b, isSizeOrOne(b, loc, size, target), what);
  return expandAtRunTime(b, loc, x, d, target);
}

Value mlir::qopt::onnx::expandAtRunTime(OpBuilder &b, Location loc, Value x,
                                        int64_t i, Value target) {
  auto type = cast<RankedTensorType>(x.getType());
  // Callers have checked that the size is the target's or 1, so the operand
  // expands exactly when the two differ. Written this way the condition
  // folds to false once canonicalization and CSE make equal sizes one value.
  Value size = tensor::DimOp::create(b, loc, x, i);
  Value expand =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, size, target);
  auto ifOp = scf::IfOp::create(
      b, loc, expand,
      [&](OpBuilder &tb, Location l) {
        // The size-1 slice (not a cast to size 1: folding may later learn
        // the size this branch never runs with).
        SmallVector<OpFoldResult> outSizes = tensor::getMixedSizes(tb, l, x);
        SmallVector<OpFoldResult> sliceSizes(outSizes);
        sliceSizes[i] = tb.getIndexAttr(1);
        Value single = tensor::ExtractSliceOp::create(
            tb, l, x,
            SmallVector<OpFoldResult>(type.getRank(), tb.getIndexAttr(0)),
            sliceSizes,
            SmallVector<OpFoldResult>(type.getRank(), tb.getIndexAttr(1)));
        outSizes[i] = target;
        Value init =
            tensor::EmptyOp::create(tb, l, outSizes, type.getElementType());
        SmallVector<AffineExpr> exprs;
        for (int64_t k = 0; k < type.getRank(); ++k)
          exprs.push_back(k == i ? tb.getAffineConstantExpr(0)
                                 : tb.getAffineDimExpr(k));
        SmallVector<AffineMap> maps = {
            AffineMap::get(type.getRank(), 0, exprs, tb.getContext()),
            tb.getMultiDimIdentityMap(type.getRank())};
        SmallVector<utils::IteratorType> par(type.getRank(),
                                             utils::IteratorType::parallel);
        Value expanded = linalg::GenericOp::create(
                             tb, l, init.getType(), single, init, maps, par,
                             [](OpBuilder &gb, Location gl, ValueRange a) {
                               linalg::YieldOp::create(gb, gl, a[0]);
                             })
                             .getResult(0);
        if (expanded.getType() != type)
          expanded = tensor::CastOp::create(tb, l, type, expanded);
        scf::YieldOp::create(tb, l, expanded);
      },
      [&](OpBuilder &eb, Location l) { scf::YieldOp::create(eb, l, x); });
  ifOp->setAttr(kRuntimeBroadcast, b.getUnitAttr());
  return ifOp.getResult(0);
}

FailureOr<Value> mlir::qopt::onnx::buildElementwise(
    ONNXNodeOp op, OpBuilder &b, ValueRange inputs, Type resultElementType,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  Location loc = op.getLoc();
  int64_t rank = 0;
  for (Value v : inputs) {
    auto type = dyn_cast<RankedTensorType>(v.getType());
    if (!type)
      return nodeError(op) << "needs ranked tensor inputs, got " << v.getType();
    rank = std::max(rank, type.getRank());
  }
  SmallVector<Value> operands(inputs.begin(), inputs.end());
  // Result sizes. Per dimension: the static size > 1 where an operand has
  // one; else the size of the dynamic operands when they provably agree;
  // else decided at run time. Dynamic operand dimensions that may differ
  // from the result's (they may be 1 at run time) are broadcast at run time.
  SmallVector<OpFoldResult> sizes;
  SmallVector<int64_t> staticSizes;
  SmallVector<SmallVector<int64_t>> runtimeBroadcast(operands.size());
  for (int64_t d = 0; d < rank; ++d) {
    int64_t size = 1;
    SmallVector<std::pair<unsigned, int64_t>> dynamic; // (operand, its dim)
    for (auto [n, v] : llvm::enumerate(operands)) {
      auto type = cast<RankedTensorType>(v.getType());
      int64_t i = d - (rank - type.getRank());
      if (i < 0)
        continue;
      int64_t s = type.getDimSize(i);
      if (ShapedType::isDynamic(s)) {
        dynamic.push_back({n, i});
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
    auto dimOf = [&](std::pair<unsigned, int64_t> entry) -> Value {
      return tensor::DimOp::create(b, loc, operands[entry.first], entry.second);
    };
    auto message = [&]() {
      return ("operands cannot be broadcast together: dimension " + Twine(d) +
              " of the result has sizes that are neither equal nor 1")
          .str();
    };
    if (dynamic.empty()) {
      sizes.push_back(b.getIndexAttr(size));
      staticSizes.push_back(size);
      continue;
    }
    if (size != 1) {
      // A static size: each dynamic operand size must be it or 1.
      Value expected = arith::ConstantIndexOp::create(b, loc, size);
      for (auto entry : dynamic) {
        if (dimSource(operands[entry.first], entry.second) ==
            DimSource{Value(), size})
          continue;
        emitCheck(op, b, isSizeOrOne(b, loc, dimOf(entry), expected),
                  message());
        runtimeBroadcast[entry.first].push_back(entry.second);
      }
      sizes.push_back(b.getIndexAttr(size));
      staticSizes.push_back(size);
      continue;
    }
    // Only dynamic sizes (and 1s): those with the same source as the first
    // are equal to it; the others are compared at run time.
    DimSource first = dimSource(operands[dynamic[0].first], dynamic[0].second);
    SmallVector<std::pair<unsigned, int64_t>> undecided;
    for (auto entry : ArrayRef(dynamic).drop_front())
      if (dimSource(operands[entry.first], entry.second) != first)
        undecided.push_back(entry);
    Value result = dimOf(dynamic[0]);
    if (!undecided.empty()) {
      // result = the size that is not 1 (all must be it or 1).
      Value one = arith::ConstantIndexOp::create(b, loc, 1);
      for (auto entry : undecided) {
        Value s = dimOf(entry);
        Value isOne = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            result, one);
        result = arith::SelectOp::create(b, loc, isOne, s, result);
      }
      SmallVector<std::pair<unsigned, int64_t>> checked = {dynamic[0]};
      llvm::append_range(checked, undecided);
      for (auto entry : checked) {
        emitCheck(op, b, isSizeOrOne(b, loc, dimOf(entry), result), message());
        runtimeBroadcast[entry.first].push_back(entry.second);
      }
      // Operands with the first one's size broadcast with it.
      for (auto entry : ArrayRef(dynamic).drop_front())
        if (!llvm::is_contained(undecided, entry))
          runtimeBroadcast[entry.first].push_back(entry.second);
    }
    sizes.push_back(result);
    staticSizes.push_back(ShapedType::kDynamic);
  }

  // Runtime broadcasting: where an operand's size is 1 and the result's is
  // not, the operand is expanded along that dimension first (the common
  // case, equal sizes, runs the loop below on the operand as it is).
  for (auto [n, dims] : llvm::enumerate(runtimeBroadcast))
    for (int64_t i : dims) {
      auto type = cast<RankedTensorType>(operands[n].getType());
      operands[n] =
          expandAtRunTime(b, loc, operands[n], i,
                          getValueOrCreateConstantIndexOp(
                              b, loc, sizes[i + (rank - type.getRank())]));
    }

  SmallVector<AffineMap> maps;
  for (Value v : operands) {
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
      b, loc, init.getType(), operands, init, maps, iterators,
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
  // A no-op only when every size provably stays: equal types alone say
  // nothing about dynamic sizes (`?x?` can become a different `?x?`).
  if (resultType == type && llvm::all_of(llvm::enumerate(sizes), [&](auto it) {
        auto [i, s] = it;
        if (!type.isDynamicDim(i))
          return true;
        tensor::DimOp dim;
        if (auto v = dyn_cast_if_present<Value>(s))
          dim = v.template getDefiningOp<tensor::DimOp>();
        std::optional<int64_t> index =
            dim ? dim.getConstantIndex() : std::nullopt;
        return dim && dim.getSource() == value && index &&
               *index == static_cast<int64_t>(i);
      }))
    return value;
  auto shapeType = RankedTensorType::get({static_cast<int64_t>(dims.size())},
                                         b.getIndexType());
  Value shape = tensor::FromElementsOp::create(b, loc, shapeType, dims);
  return tensor::ReshapeOp::create(b, loc, resultType, value, shape);
}

Type mlir::qopt::onnx::accumulatorType(OpBuilder &b, Type element) {
  auto f = dyn_cast<FloatType>(element);
  return f && f.getWidth() < 32 ? b.getF32Type() : element;
}

Value mlir::qopt::onnx::fromAccumulator(OpBuilder &b, Location loc, Value acc,
                                        Type element) {
  auto type = cast<RankedTensorType>(acc.getType());
  if (type.getElementType() == element)
    return acc;
  int64_t rank = type.getRank();
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, acc), element);
  return linalg::GenericOp::create(
             b, loc, init.getType(), acc, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(nb, l, castScalar(nb, l, a[0], element));
             })
      .getResult(0);
}

Value mlir::qopt::onnx::idx(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

Value mlir::qopt::onnx::indexValue(OpBuilder &b, Location loc,
                                   OpFoldResult ofr) {
  return getValueOrCreateConstantIndexOp(b, loc, ofr);
}

OpFoldResult mlir::qopt::onnx::product(OpBuilder &b, Location loc,
                                       ArrayRef<OpFoldResult> sizes) {
  int64_t constant = 1;
  Value dynamic;
  for (OpFoldResult s : sizes) {
    if (std::optional<int64_t> c = getConstantIntValue(s)) {
      constant *= *c;
      continue;
    }
    Value v = cast<Value>(s);
    dynamic = dynamic ? Value(arith::MulIOp::create(b, loc, dynamic, v)) : v;
  }
  if (!dynamic)
    return b.getIndexAttr(constant);
  if (constant != 1)
    dynamic = arith::MulIOp::create(
        b, loc, dynamic, arith::ConstantIndexOp::create(b, loc, constant));
  return dynamic;
}
