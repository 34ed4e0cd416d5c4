//===- QOptOps.cpp - QOpt operations --------------------------------------===//

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/Hadamard.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/MathExtras.h"

#include <cmath>
#include <string>

using namespace mlir;
using namespace mlir::qopt;

#include "qopt/Dialect/QOpt/IR/QOptOpInterfaces.cpp.inc"

/// "4096x?x64" for diagnostics ("scalar" for rank 0).
static std::string shapeStr(ArrayRef<int64_t> shape) {
  if (shape.empty())
    return "scalar";
  std::string s;
  llvm::raw_string_ostream os(s);
  llvm::interleave(
      shape, os,
      [&](int64_t d) {
        if (ShapedType::isDynamic(d))
          os << "?";
        else
          os << d;
      },
      "x");
  return s;
}

/// Two dimensions agree when either is dynamic or they are equal.
static bool dimsCompatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

static bool shapesCompatible(ArrayRef<int64_t> a, ArrayRef<int64_t> b) {
  return a.size() == b.size() && llvm::all_of(llvm::zip(a, b), [](auto p) {
           return dimsCompatible(std::get<0>(p), std::get<1>(p));
         });
}

/// Resolves a possibly negative axis against `rank`; fails with a diagnostic
/// naming the attribute.
static FailureOr<int64_t> normalizeAxis(Operation *op, int64_t axis,
                                        int64_t rank) {
  if (axis < -rank || axis >= rank)
    return op->emitOpError() << "axis " << axis << " is out of range for an "
                             << "input of rank " << rank << " (expected "
                             << -rank << " to " << rank - 1 << ")";
  return axis < 0 ? axis + rank : axis;
}

//===----------------------------------------------------------------------===//
// ParamOp / LoadParamOp
//===----------------------------------------------------------------------===//

DictionaryAttr mlir::qopt::getRandomKeyArgAttrs(MLIRContext *ctx) {
  Builder b(ctx);
  return b.getDictionaryAttr(
      {b.getNamedAttr(QOptDialect::RngKeyAttrHelper::getNameStr(),
                      b.getUnitAttr()),
       b.getNamedAttr("bufferization.writable", b.getBoolAttr(false))});
}

FailureOr<uint64_t> mlir::qopt::getStoredByteSize(RankedTensorType type) {
  // Booleans take a byte each, as ONNX, numpy and safetensors store them.
  unsigned bits =
      type.getElementType().isInteger(1) ? 8 : type.getElementTypeBitWidth();
  uint64_t numel = 1;
  for (int64_t d : type.getShape()) {
    if (d != 0 && numel > UINT64_MAX / static_cast<uint64_t>(d))
      return failure();
    numel *= static_cast<uint64_t>(d);
  }
  if (numel > (UINT64_MAX - 7) / bits)
    return failure();
  return (numel * bits + 7) / 8;
}

LogicalResult ParamOp::verify() {
  RankedTensorType type = getTensorType();
  if (getTrainable() && getState())
    return emitOpError() << "parameter @" << getSymName()
                         << " cannot be both trainable and state";
  if (!type.getElementType().isIntOrFloat())
    return emitOpError() << "parameter @" << getSymName()
                         << " must have an integer or float element type, got "
                         << type.getElementType();
  FailureOr<uint64_t> bytes = getStoredByteSize(type);
  if (failed(bytes))
    return emitOpError() << "parameter @" << getSymName() << " of type " << type
                         << " is too large to address";
  std::optional<Attribute> init = getInitialValue();
  if (!init)
    return success();
  if (auto elements = dyn_cast<ElementsAttr>(*init)) {
    if (elements.getType() != type)
      return emitOpError() << "inline data of @" << getSymName() << " has type "
                           << elements.getType()
                           << " but the parameter is declared " << type;
    // A resource blob (weights computed by a pass) holds the stored bytes.
    if (auto resource = dyn_cast<DenseResourceElementsAttr>(elements))
      if (AsmResourceBlob *blob = resource.getRawHandle().getBlob();
          blob && blob->getData().size() != *bytes)
        return emitOpError() << "resource data of @" << getSymName()
                             << " holds " << blob->getData().size()
                             << " bytes but " << type << " needs " << *bytes;
    return success();
  }
  auto external = cast<ExternalDataAttr>(*init);
  if (external.getLength() != *bytes)
    return emitOpError() << "external data of @" << getSymName() << " holds "
                         << external.getLength() << " bytes but " << type
                         << " needs " << *bytes;
  return success();
}

ElementsAttr LoadParamOp::getInlineData(SymbolTableCollection *symbols) {
  ParamOp param =
      symbols
          ? symbols->lookupNearestSymbolFrom<ParamOp>(*this, getNameAttr())
          : SymbolTable::lookupNearestSymbolFrom<ParamOp>(*this, getNameAttr());
  if (!param || !param.getInitialValue())
    return {};
  return dyn_cast<ElementsAttr>(*param.getInitialValue());
}

/// The random key is [seed, counter] (ODS checks the 1-D i64 part).
static LogicalResult verifyKeyType(Operation *op, Value key) {
  auto type = cast<RankedTensorType>(key.getType());
  if (type.getShape() != ArrayRef<int64_t>{2})
    return op->emitOpError() << "the key is [seed, counter]: its type must "
                                "be tensor<2xi64>, got "
                             << type;
  return success();
}

LogicalResult RandomKeyOp::verify() { return verifyKeyType(*this, getKey()); }

LogicalResult RandomUniformOp::verify() {
  if (failed(verifyKeyType(*this, getKey())))
    return failure();
  int64_t dynamic = getResult().getType().getNumDynamicDims();
  if (static_cast<int64_t>(getDynamicSizes().size()) != dynamic)
    return emitOpError() << "needs " << dynamic
                         << " dynamic sizes for its result type, got "
                         << getDynamicSizes().size();
  if (getStream() > UINT32_MAX) // also a negative one, read unsigned
    return emitOpError() << "stream must fit 32 unsigned bits";
  return success();
}

LogicalResult
StoreParamOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto param =
      symbolTable.lookupNearestSymbolFrom<ParamOp>(*this, getNameAttr());
  if (!param)
    return emitOpError() << "'" << getName() << "' does not name a qopt.param";
  if (!param.isMutable())
    return emitOpError() << "parameter @" << getName()
                         << " is frozen: only trainable and state parameters "
                            "can be written";
  if (param.getType() != getValue().getType())
    return emitOpError() << "value type " << getValue().getType()
                         << " does not match the type of @" << getName() << ", "
                         << param.getType();
  return success();
}

LogicalResult
LoadParamOp::verifySymbolUses(SymbolTableCollection &symbolTable) {
  auto param =
      symbolTable.lookupNearestSymbolFrom<ParamOp>(*this, getNameAttr());
  if (!param)
    return emitOpError() << "'" << getName() << "' does not name a qopt.param";
  if (param.getType() != getType())
    return emitOpError() << "result type " << getType()
                         << " does not match the type of @" << getName() << ", "
                         << param.getType();
  return success();
}

//===----------------------------------------------------------------------===//
// AssembleOp / DisassembleOp
//===----------------------------------------------------------------------===//

/// Checks the storage parts against what `type` lists; `what` is "operand"
/// or "result".
static LogicalResult verifyStorage(Operation *op, QTensorType type, Type data,
                                   Type scales, Value zeroPoints, Value offset,
                                   StringRef what) {
  if (data != type.getDataType())
    return op->emitOpError()
           << "packed data " << what << " has type " << data << " but " << type
           << " stores its codes in " << type.getDataType();
  if (scales != type.getScalesType())
    return op->emitOpError()
           << "scales " << what << " has type " << scales << " but " << type
           << " needs " << type.getScalesType();
  if (RankedTensorType zpType = type.getZeroPointsType()) {
    if (!zeroPoints)
      return op->emitOpError() << "format " << type.getFormat()
                               << " has zero points: expected a "
                                  "zero_points "
                               << what << " of type " << zpType;
    if (zeroPoints.getType() != zpType)
      return op->emitOpError()
             << "zero points " << what << " has type " << zeroPoints.getType()
             << " but " << type << " needs " << zpType;
  } else if (zeroPoints) {
    return op->emitOpError()
           << "format " << type.getFormat()
           << " has no zero points; remove the zero_points " << what;
  }
  if (type.getOffset() != static_cast<bool>(offset))
    return op->emitOpError()
           << (type.getOffset() ? "the type has an offset: expected an offset "
                                : "the type has no offset; remove the offset ")
           << what;
  return success();
}

LogicalResult AssembleOp::verify() {
  return verifyStorage(*this, getType(), getData().getType(),
                       getScales().getType(), getZeroPoints(), getOffset(),
                       "operand");
}

OpFoldResult AssembleOp::fold(FoldAdaptor) {
  // assemble(disassemble(q)) -> q
  auto source = getData().getDefiningOp<DisassembleOp>();
  if (!source || source.getInput().getType() != getType())
    return {};
  if (getScales() != source.getScales() ||
      getZeroPoints() != source.getZeroPoints() ||
      getOffset() != source.getOffset())
    return {};
  return source.getInput();
}

LogicalResult DisassembleOp::verify() {
  return verifyStorage(*this, getInput().getType(), getData().getType(),
                       getScales().getType(), getZeroPoints(), getOffset(),
                       "result");
}

LogicalResult DisassembleOp::fold(FoldAdaptor,
                                  SmallVectorImpl<OpFoldResult> &results) {
  // disassemble(assemble(parts...)) -> parts...
  auto source = getInput().getDefiningOp<AssembleOp>();
  if (!source)
    return failure();
  results.push_back(source.getData());
  results.push_back(source.getScales());
  if (Value zp = source.getZeroPoints())
    results.push_back(zp);
  if (Value offset = source.getOffset())
    results.push_back(offset);
  return success();
}

//===----------------------------------------------------------------------===//
// QuantizeOp / DequantizeOp
//===----------------------------------------------------------------------===//

static LogicalResult verifyQuantizedShape(Operation *op,
                                          RankedTensorType floatType,
                                          QTensorType qtype) {
  if (!shapesCompatible(floatType.getShape(), qtype.getShape()))
    return op->emitOpError()
           << "float tensor has shape " << shapeStr(floatType.getShape())
           << " but the quantized tensor has shape "
           << shapeStr(qtype.getShape());
  return success();
}

LogicalResult QuantizeOp::verify() {
  return verifyQuantizedShape(*this, getInput().getType(), getType());
}

LogicalResult DequantizeOp::verify() {
  return verifyQuantizedShape(*this, getType(), getInput().getType());
}

//===----------------------------------------------------------------------===//
// LinearOp / LoRAOp
//===----------------------------------------------------------------------===//

static ArrayRef<int64_t> weightShape(Value weight) {
  if (auto q = dyn_cast<QTensorType>(weight.getType()))
    return q.getShape();
  return cast<RankedTensorType>(weight.getType()).getShape();
}

/// Common checks of x·Wᵀ + b: x is [..., K], W is N×K, b is [N], the result
/// is [..., N] with x's element type. Returns N.
static FailureOr<int64_t> verifyLinear(Operation *op, Value input, Value weight,
                                       Value bias, Type resultType) {
  auto xType = cast<RankedTensorType>(input.getType());
  if (xType.getRank() < 1)
    return op->emitOpError() << "input must have rank 1 or more";
  ArrayRef<int64_t> w = weightShape(weight);
  if (w.size() != 2)
    return op->emitOpError() << "weight must be 2-D (out_features x "
                                "in_features), got shape "
                             << shapeStr(w);
  int64_t k = xType.getShape().back();
  if (!dimsCompatible(k, w[1]))
    return op->emitOpError()
           << "input has " << k << " features but the weight expects " << w[1]
           << " (weight shape " << shapeStr(w) << " is out x in)";
  if (bias) {
    auto bType = cast<RankedTensorType>(bias.getType());
    if (bType.getRank() != 1 || !dimsCompatible(bType.getDimSize(0), w[0]))
      return op->emitOpError() << "bias must have shape " << shapeStr({w[0]})
                               << ", got " << shapeStr(bType.getShape());
    if (bType.getElementType() != xType.getElementType())
      return op->emitOpError()
             << "bias element type " << bType.getElementType()
             << " differs from the input's " << xType.getElementType();
  }
  if (auto wType = dyn_cast<RankedTensorType>(weight.getType()))
    if (wType.getElementType() != xType.getElementType())
      return op->emitOpError()
             << "weight element type " << wType.getElementType()
             << " differs from the input's " << xType.getElementType()
             << "; insert a cast or quantize the weight";
  auto yType = cast<RankedTensorType>(resultType);
  SmallVector<int64_t> expected(xType.getShape().drop_back());
  expected.push_back(w[0]);
  if (!shapesCompatible(yType.getShape(), expected) ||
      yType.getElementType() != xType.getElementType())
    return op->emitOpError()
           << "result must be "
           << RankedTensorType::get(expected, xType.getElementType())
           << ", got " << yType;
  return w[0];
}

LogicalResult LinearOp::verify() {
  return verifyLinear(*this, getInput(), getWeight(), getBias(), getType());
}

double AttentionOp::getScaleValue() {
  if (std::optional<APFloat> scale = getScale())
    return scale->convertToDouble();
  return 1.0 /
         std::sqrt(static_cast<double>(getQuery().getType().getDimSize(3)));
}

LogicalResult AttentionGradOp::verify() {
  auto shape = [](Value v) { return cast<RankedTensorType>(v.getType()); };
  Type element = shape(getQuery()).getElementType();
  for (Value v :
       {getQuery(), getKey(), getValue(), getOutput(), getOutputGrad()})
    if (shape(v).getRank() != 4 || shape(v).getElementType() != element)
      return emitOpError() << "query, key, value, output and output_grad must "
                              "be 4-D with one element type";
  Value operands[] = {getQuery(), getKey(), getValue()};
  for (auto [operand, result] : llvm::zip(operands, getResults()))
    if (operand.getType() != result.getType())
      return emitOpError() << "each gradient must have its operand's type";
  for (Value v : {getOutput(), getOutputGrad()})
    if (!dimsCompatible(shape(v).getDimSize(3),
                        shape(getValue()).getDimSize(3)) ||
        !dimsCompatible(shape(v).getDimSize(1),
                        shape(getQuery()).getDimSize(1)))
      return emitOpError() << "output and output_grad must be [batch, query "
                              "heads, sequence, value head size]";
  return success();
}

LogicalResult AttentionOp::verify() {
  auto q = getQuery().getType(), k = getKey().getType(),
       v = getValue().getType();
  auto y = getType();
  if (q.getRank() != 4 || k.getRank() != 4 || v.getRank() != 4 ||
      y.getRank() != 4)
    return emitOpError() << "query, key, value and result must be 4-D "
                            "[batch, heads, sequence, head size]";
  Type element = q.getElementType();
  if (k.getElementType() != element || v.getElementType() != element ||
      y.getElementType() != element)
    return emitOpError() << "query, key, value and result must have one "
                            "element type";
  auto same = [&](int64_t a, int64_t b, StringRef what) -> LogicalResult {
    if (!dimsCompatible(a, b))
      return emitOpError() << what << " differ: " << a << " vs " << b;
    return success();
  };
  int64_t hq = q.getDimSize(1), hkv = k.getDimSize(1);
  if (failed(same(q.getDimSize(0), k.getDimSize(0), "batch sizes")) ||
      failed(same(k.getDimSize(0), v.getDimSize(0), "batch sizes")) ||
      failed(same(hkv, v.getDimSize(1), "key and value head counts")) ||
      failed(
          same(q.getDimSize(3), k.getDimSize(3), "query and key head sizes")) ||
      failed(same(k.getDimSize(2), v.getDimSize(2),
                  "key and value sequence lengths")))
    return failure();
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv) &&
      (hkv < 1 || hq % hkv))
    return emitOpError() << "needs the query's head count a multiple of the "
                            "key's (got "
                         << hq << " and " << hkv << ")";
  SmallVector<int64_t> expected = {q.getDimSize(0), hq, q.getDimSize(2),
                                   v.getDimSize(3)};
  if (!shapesCompatible(y.getShape(), expected))
    return emitOpError() << "result must have shape " << shapeStr(expected)
                         << ", got " << shapeStr(y.getShape());
  if (!getScale() && q.isDynamicDim(3))
    return emitOpError() << "needs a scale when the head size is dynamic";
  if (getSoftcap() && getSoftcap()->convertToDouble() <= 0)
    return emitOpError() << "softcap must be positive";
  if (Value mask = getMask()) {
    auto m = cast<RankedTensorType>(mask.getType());
    if (m.getRank() > 4 ||
        !(m.getElementType().isInteger(1) || m.getElementType() == element))
      return emitOpError() << "mask must be bool or of the query's element "
                              "type, of rank 4 or less";
    SmallVector<int64_t> scores = {q.getDimSize(0), hq, q.getDimSize(2),
                                   k.getDimSize(2)};
    for (int64_t d = 0; d < m.getRank(); ++d) {
      int64_t ms = m.getDimSize(d), ss = scores[4 - m.getRank() + d];
      if (ms != 1 && !dimsCompatible(ms, ss))
        return emitOpError()
               << "mask of shape " << shapeStr(m.getShape())
               << " does not broadcast to the scores' " << shapeStr(scores);
    }
  }
  return success();
}

/// The checks qopt.embedding and qopt.lora_embedding share: a 2-D table and
/// a result of the ids' shape plus the table's width, in its element type.
static LogicalResult verifyLookup(Operation *op, Value ids, Value table,
                                  RankedTensorType resultType) {
  ArrayRef<int64_t> w = weightShape(table);
  if (w.size() != 2)
    return op->emitOpError() << "table must be 2-D (num_embeddings x "
                                "embedding_dim), got shape "
                             << shapeStr(w);
  SmallVector<int64_t> expected(
      cast<RankedTensorType>(ids.getType()).getShape());
  expected.push_back(w[1]);
  if (!shapesCompatible(resultType.getShape(), expected))
    return op->emitOpError()
           << "result must have shape " << shapeStr(expected)
           << " (the ids' shape, then the embedding size), got "
           << shapeStr(resultType.getShape());
  if (auto t = dyn_cast<RankedTensorType>(table.getType());
      t && t.getElementType() != resultType.getElementType())
    return op->emitOpError()
           << "result element type " << resultType.getElementType()
           << " differs from the table's " << t.getElementType();
  return success();
}

LogicalResult EmbeddingOp::verify() {
  return verifyLookup(*this, getIds(), getWeight(), getType());
}

int64_t LoRAOp::getRank() { return getLoraA().getType().getDimSize(0); }

double LoRAOp::getScale() {
  double r = static_cast<double>(getRank());
  double alpha = getAlpha().convertToDouble();
  return getScaling() == LoRAScaling::RsLoRA ? alpha / std::sqrt(r) : alpha / r;
}

LogicalResult LoRAOp::verify() {
  FailureOr<int64_t> n =
      verifyLinear(*this, getInput(), getWeight(), getBias(), getType());
  if (failed(n))
    return failure();
  ArrayRef<int64_t> w = weightShape(getWeight());
  Type elementType = getInput().getType().getElementType();

  auto checkShape = [&](Value v, StringRef name,
                        ArrayRef<int64_t> expected) -> LogicalResult {
    auto type = cast<RankedTensorType>(v.getType());
    if (!shapesCompatible(type.getShape(), expected))
      return emitOpError() << name << " must have shape " << shapeStr(expected)
                           << ", got " << shapeStr(type.getShape());
    if (type.getElementType() != elementType)
      return emitOpError() << name << " element type " << type.getElementType()
                           << " differs from the input's " << elementType;
    return success();
  };

  auto aType = getLoraA().getType();
  if (aType.getRank() != 2)
    return emitOpError() << "lora_a must be 2-D (rank x in_features), got "
                         << shapeStr(aType.getShape());
  int64_t r = aType.getDimSize(0);
  if (ShapedType::isDynamic(r) || r < 1)
    return emitOpError() << "lora_a must have a static, positive rank "
                            "(first dimension)";
  if (failed(checkShape(getLoraA(), "lora_a", {r, w[1]})) ||
      failed(checkShape(getLoraB(), "lora_b", {w[0], r})))
    return failure();
  if (getMagnitude() &&
      failed(checkShape(getMagnitude(), "magnitude (DoRA)", {w[0]})))
    return failure();
  if (getMiddle() && failed(checkShape(getMiddle(), "middle", {r, r})))
    return failure();
  if (getGate() && failed(checkShape(getGate(), "gate", {r})))
    return failure();
  double alpha = getAlpha().convertToDouble();
  if (!(alpha > 0.0) || !std::isfinite(alpha))
    return emitOpError() << "alpha must be positive and finite, got " << alpha;
  double p = getDropout().convertToDouble();
  if (!(p >= 0.0 && p < 1.0))
    return emitOpError() << "dropout must be in [0, 1), got " << p;
  if (getMerged() && getMagnitude())
    return emitOpError() << "a DoRA branch cannot be marked merged (the row "
                            "norms unmerging needs are not kept)";
  if (getMerged() && isa<QTensorType>(getWeight().getType()))
    return emitOpError() << "a branch on a quantized base weight cannot be "
                            "marked merged";
  return success();
}

//===----------------------------------------------------------------------===//
// LoRAEmbeddingOp
//===----------------------------------------------------------------------===//

int64_t LoRAEmbeddingOp::getRank() {
  return getLoraA().getType().getDimSize(0);
}

double LoRAEmbeddingOp::getScale() {
  double r = static_cast<double>(getRank());
  double alpha = getAlpha().convertToDouble();
  return getScaling() == LoRAScaling::RsLoRA ? alpha / std::sqrt(r) : alpha / r;
}

LogicalResult LoRAEmbeddingOp::verify() {
  if (failed(verifyLookup(*this, getIds(), getWeight(), getType())))
    return failure();
  ArrayRef<int64_t> w = weightShape(getWeight());
  Type element = getType().getElementType();
  auto aType = getLoraA().getType();
  if (aType.getRank() != 2)
    return emitOpError() << "lora_a must be 2-D (rank x num_embeddings), got "
                         << shapeStr(aType.getShape());
  int64_t r = aType.getDimSize(0);
  if (ShapedType::isDynamic(r) || r < 1)
    return emitOpError() << "lora_a must have a static, positive rank "
                            "(first dimension)";
  for (auto [v, name, shape] :
       {std::tuple<Value, StringRef, SmallVector<int64_t>>{
            getLoraA(), "lora_a", {r, w[0]}},
        {getLoraB(), "lora_b", {w[1], r}}}) {
    auto type = cast<RankedTensorType>(v.getType());
    if (!shapesCompatible(type.getShape(), shape))
      return emitOpError() << name << " must have shape " << shapeStr(shape)
                           << ", got " << shapeStr(type.getShape());
    if (type.getElementType() != element)
      return emitOpError() << name << " element type " << type.getElementType()
                           << " differs from the result's " << element;
  }
  double alpha = getAlpha().convertToDouble();
  if (!(alpha > 0.0) || !std::isfinite(alpha))
    return emitOpError() << "alpha must be positive and finite, got " << alpha;
  if (getMerged() && isa<QTensorType>(getWeight().getType()))
    return emitOpError() << "a branch on a quantized table cannot be marked "
                            "merged";
  return success();
}

//===----------------------------------------------------------------------===//
// RandLoRAScaleOp / RandLoRAFlattenOp
//===----------------------------------------------------------------------===//

/// Every dimension of `type` static, and the element type `element`.
static LogicalResult checkStaticFloat(Operation *op, StringRef name,
                                      RankedTensorType type, int64_t rank,
                                      Type element) {
  if (type.getRank() != rank || !type.hasStaticShape())
    return op->emitOpError()
           << name << " must be a static " << rank << "-D tensor, got " << type;
  if (type.getElementType() != element)
    return op->emitOpError()
           << name << " element type " << type.getElementType()
           << " differs from the result's " << element;
  return success();
}

LogicalResult RandLoRAScaleOp::verify() {
  Type element = getType().getElementType();
  auto basis = getBasis().getType(), lambda = getLambda().getType(),
       gamma = getGamma().getType();
  if (failed(checkStaticFloat(*this, "basis", basis, 3, element)) ||
      failed(checkStaticFloat(*this, "lambda", lambda, 2, element)) ||
      failed(checkStaticFloat(*this, "gamma", gamma, 2, element)) ||
      failed(checkStaticFloat(*this, "result", getType(), 2, element)))
    return failure();
  int64_t r = basis.getDimSize(0), nb = lambda.getDimSize(1),
          m = gamma.getDimSize(1);
  if (r <= 0 || nb <= 0 || m <= 0)
    return emitOpError() << "basis, lambda and gamma must not be empty";
  if (basis.getDimSize(1) != 1)
    return emitOpError() << "basis must be r x 1 x M, got "
                         << shapeStr(basis.getShape());
  if (lambda.getDimSize(0) != r)
    return emitOpError() << "lambda must have " << r
                         << " rows (the basis' rank), got "
                         << shapeStr(lambda.getShape());
  if (gamma.getDimSize(0) != nb)
    return emitOpError() << "gamma must have " << nb
                         << " rows (lambda's bases), got "
                         << shapeStr(gamma.getShape());
  if (basis.getDimSize(2) < m)
    return emitOpError() << "the basis has " << basis.getDimSize(2)
                         << " columns, fewer than gamma's " << m;
  SmallVector<int64_t> expected = {r * nb, m};
  if (getType().getShape() != ArrayRef<int64_t>(expected))
    return emitOpError() << "result must have shape " << shapeStr(expected)
                         << ", got " << shapeStr(getType().getShape());
  return success();
}

LogicalResult RandLoRAFlattenOp::verify() {
  Type element = getType().getElementType();
  auto basis = getBasis().getType();
  if (failed(checkStaticFloat(*this, "basis", basis, 3, element)) ||
      failed(checkStaticFloat(*this, "result", getType(), 2, element)))
    return failure();
  int64_t r = basis.getDimSize(2), n = getType().getDimSize(0),
          cols = getType().getDimSize(1);
  if (r <= 0)
    return emitOpError() << "basis must have a positive rank (last "
                            "dimension), got "
                         << shapeStr(basis.getShape());
  if (cols % r != 0 || cols / r > basis.getDimSize(1) || cols == 0)
    return emitOpError() << "result columns " << cols << " must be nb x " << r
                         << " with 0 < nb <= " << basis.getDimSize(1);
  if (n > basis.getDimSize(0) || n == 0)
    return emitOpError() << "result rows " << n << " must be in [1, "
                         << basis.getDimSize(0) << "]";
  return success();
}

//===----------------------------------------------------------------------===//
// FakeQuantOp / LSQOp
//===----------------------------------------------------------------------===//

static LogicalResult verifyQuantizer(Operation *op, Value input, Value scale,
                                     Value zeroPoint,
                                     QuantFormatAttrInterface format,
                                     GranularityAttrInterface granularity) {
  auto xType = cast<RankedTensorType>(input.getType());
  FailureOr<SmallVector<int64_t>> scaleShape = granularity.getScaleShape(
      xType.getShape(), [&] { return op->emitOpError(); });
  if (failed(scaleShape))
    return failure();
  auto sType = cast<RankedTensorType>(scale.getType());
  if (!shapesCompatible(sType.getShape(), *scaleShape))
    return op->emitOpError()
           << "scale must have shape " << shapeStr(*scaleShape) << " for "
           << granularity << " over an input of shape "
           << shapeStr(xType.getShape()) << ", got "
           << shapeStr(sType.getShape());
  if (format.hasZeroPoint()) {
    if (!zeroPoint)
      return op->emitOpError() << "format " << format
                               << " has zero points: add a zero_point "
                                  "operand shaped like the scale";
    auto zType = cast<RankedTensorType>(zeroPoint.getType());
    if (zType.getShape() != sType.getShape())
      return op->emitOpError() << "zero_point must have the scale's shape "
                               << shapeStr(sType.getShape()) << ", got "
                               << shapeStr(zType.getShape());
  } else if (zeroPoint) {
    return op->emitOpError() << "format " << format
                             << " is symmetric: remove the zero_point "
                                "operand or use a format with zero_point";
  }
  return success();
}

LogicalResult FakeQuantOp::verify() {
  return verifyQuantizer(*this, getInput(), getScale(), getZeroPoint(),
                         getFormat(), getGranularity());
}

OpFoldResult LinearOp::fold(FoldAdaptor) {
  // linear(x, dequantize(q)) -> linear(x, q), in place: the op dequantizes
  // its weight to the input's element type itself.
  auto dequantize = getWeight().getDefiningOp<DequantizeOp>();
  if (!dequantize || dequantize.getType().getElementType() !=
                         getInput().getType().getElementType())
    return {};
  getWeightMutable().assign(dequantize.getInput());
  return getResult();
}

OpFoldResult FakeQuantOp::fold(FoldAdaptor) {
  // fq(fq(x, s, zp), s, zp) -> fq(x, s, zp): values already on the grid.
  auto inner = getInput().getDefiningOp<FakeQuantOp>();
  if (inner && inner.getScale() == getScale() &&
      inner.getZeroPoint() == getZeroPoint() &&
      inner.getFormat() == getFormat() &&
      inner.getGranularity() == getGranularity())
    return getInput();
  return {};
}

LogicalResult LSQOp::verify() {
  if (failed(verifyQuantizer(*this, getInput(), getScale(), getZeroPoint(),
                             getFormat(), getGranularity())))
    return failure();
  if (FloatAttr attr = getGradScaleAttr()) {
    double g = attr.getValueAsDouble();
    if (!(g > 0.0) || !std::isfinite(g))
      return emitOpError() << "grad_scale must be positive and finite, got "
                           << g;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// SmoothOp / HadamardOp
//===----------------------------------------------------------------------===//

LogicalResult SmoothOp::verify() {
  auto xType = getInput().getType();
  FailureOr<int64_t> axis =
      normalizeAxis(*this, static_cast<int64_t>(getAxis()), xType.getRank());
  if (failed(axis))
    return failure();
  auto sType = getScale().getType();
  int64_t channels = xType.getDimSize(*axis);
  if (sType.getRank() != 1 || !dimsCompatible(sType.getDimSize(0), channels))
    return emitOpError() << "scale must have shape " << shapeStr({channels})
                         << " (one per channel along axis " << *axis
                         << "), got " << shapeStr(sType.getShape());
  if (sType.getElementType() != xType.getElementType())
    return emitOpError() << "scale element type " << sType.getElementType()
                         << " differs from the input's "
                         << xType.getElementType();
  return success();
}

OpFoldResult SmoothOp::fold(FoldAdaptor adaptor) {
  // x / 1 -> x
  auto scale = dyn_cast_or_null<DenseElementsAttr>(adaptor.getScale());
  if (scale && isa<FloatType>(scale.getElementType()) &&
      llvm::all_of(scale.getValues<APFloat>(),
                   [](const APFloat &v) { return v.isExactlyValue(1.0); }))
    return getInput();
  return {};
}

OpFoldResult HadamardOp::fold(FoldAdaptor) {
  // H(H(x)) -> x for Sylvester matrices (powers of two), which are
  // symmetric; the tabulated m * 2^k matrices need not be, and signs break
  // the symmetry.
  auto inner = getInput().getDefiningOp<HadamardOp>();
  if (!inner || getSigns() || inner.getSigns())
    return {};
  auto type = getInput().getType();
  int64_t rank = type.getRank();
  // I64Attr getters return uint64_t; axes are signed (-1 = last).
  auto normalized = [&](HadamardOp op) {
    int64_t axis = static_cast<int64_t>(op.getAxis());
    return axis < 0 ? axis + rank : axis;
  };
  int64_t axis = normalized(*this);
  int64_t innerAxis = normalized(inner);
  if (axis != innerAxis || getBlock() != inner.getBlock())
    return {};
  int64_t n = getBlock() ? *getBlock() : type.getDimSize(axis);
  if (ShapedType::isDynamic(n) || !llvm::isPowerOf2_64(n))
    return {};
  return inner.getInput();
}

bool HadamardOp::isSupportedSize(int64_t n) {
  return ::qopt::hadamard::isSupported(n);
}

LogicalResult HadamardOp::verify() {
  auto xType = getInput().getType();
  FailureOr<int64_t> axis =
      normalizeAxis(*this, static_cast<int64_t>(getAxis()), xType.getRank());
  if (failed(axis))
    return failure();
  int64_t dim = xType.getDimSize(*axis);
  std::optional<int64_t> block = getBlock();
  if (block && *block < 1)
    return emitOpError() << "block must be positive, got " << *block;
  if (block && !ShapedType::isDynamic(dim) && dim % *block != 0)
    return emitOpError() << "block " << *block << " does not divide dimension "
                         << dim << " of axis " << *axis;
  int64_t n = block ? *block : dim;
  if (ShapedType::isDynamic(n)) {
    if (getSigns())
      return emitOpError() << "signs need a static transform size: give "
                              "block or a static dimension";
    return success();
  }
  if (!isSupportedSize(n))
    return emitOpError()
           << "no Hadamard matrix of order " << n
           << " is known: orders are 2^k, or m * 2^k with m = 4 * odd (12, "
              "20, 28, 36, 44, 52, 60, ..., 172, ... up to "
           << ::qopt::hadamard::kMaxBaseOrder
           << ") built by the Paley or Williamson constructions; the nearest "
              "block-diagonal rotation is block = "
           << ::qopt::hadamard::largestSupportedDivisor(n);
  if (Value signs = getSigns()) {
    auto sType = cast<RankedTensorType>(signs.getType());
    if (sType.getRank() != 1 || !dimsCompatible(sType.getDimSize(0), n))
      return emitOpError() << "signs must have shape " << shapeStr({n})
                           << ", got " << shapeStr(sType.getShape());
    if (sType.getElementType() != xType.getElementType())
      return emitOpError() << "signs element type " << sType.getElementType()
                           << " differs from the input's "
                           << xType.getElementType();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// RMSNormOp / LayerNormOp
//===----------------------------------------------------------------------===//

/// gamma (and beta) must have the normalised shape x.shape[axis:] and x's
/// element type.
static LogicalResult verifyNorm(Operation *op, Value input, int64_t axisAttr,
                                ArrayRef<std::pair<Value, StringRef>> params) {
  auto xType = cast<RankedTensorType>(input.getType());
  FailureOr<int64_t> axis = normalizeAxis(op, axisAttr, xType.getRank());
  if (failed(axis))
    return failure();
  ArrayRef<int64_t> normalized = xType.getShape().drop_front(*axis);
  for (auto [value, name] : params) {
    if (!value)
      continue;
    auto type = cast<RankedTensorType>(value.getType());
    if (!shapesCompatible(type.getShape(), normalized))
      return op->emitOpError()
             << name << " must have the normalised shape "
             << shapeStr(normalized) << " (input dimensions from axis " << *axis
             << "), got " << shapeStr(type.getShape());
    if (type.getElementType() != xType.getElementType())
      return op->emitOpError()
             << name << " element type " << type.getElementType()
             << " differs from the input's " << xType.getElementType();
  }
  return success();
}

static LogicalResult verifyEpsilon(Operation *op, APFloat epsilon) {
  double eps = epsilon.convertToDouble();
  if (!(eps >= 0.0) || !std::isfinite(eps))
    return op->emitOpError()
           << "epsilon must be non-negative and finite, got " << eps;
  return success();
}

LogicalResult NormGradOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  auto x = cast<RankedTensorType>(getInput().getType());
  auto gamma = cast<RankedTensorType>(getGamma().getType());
  if (x.getRank() < 1 || gamma.getRank() != 1)
    return emitOpError() << "input must have a rank and gamma be 1-D";
  if (x.getElementType() != gamma.getElementType())
    return emitOpError() << "input and gamma must have one element type";
  if (!dimsCompatible(x.getDimSize(x.getRank() - 1), gamma.getDimSize(0)))
    return emitOpError() << "gamma must have the size of the input's last "
                            "axis: "
                         << gamma.getDimSize(0) << " vs "
                         << x.getDimSize(x.getRank() - 1);
  return success();
}

LogicalResult RMSNormOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  return verifyNorm(*this, getInput(), static_cast<int64_t>(getAxis()),
                    {{getGamma(), "gamma"}});
}

LogicalResult LayerNormOp::verify() {
  if (failed(verifyEpsilon(*this, getEpsilon())))
    return failure();
  return verifyNorm(*this, getInput(), static_cast<int64_t>(getAxis()),
                    {{getGamma(), "gamma"}, {getBeta(), "beta"}});
}

#define GET_OP_CLASSES
#include "qopt/Dialect/QOpt/IR/QOptOps.cpp.inc"

//===----------------------------------------------------------------------===//
// GeluOp
//===----------------------------------------------------------------------===//

LogicalResult GeluOp::verify() {
  if (getApproximate() != "none" && getApproximate() != "tanh")
    return emitOpError("approximate must be \"none\" or \"tanh\", got \"")
           << getApproximate() << "\"";
  return success();
}

//===----------------------------------------------------------------------===//
// LogSoftmaxOp / CrossEntropyOp
//===----------------------------------------------------------------------===//

LogicalResult LogSoftmaxOp::verify() {
  return normalizeAxis(*this, getAxis(), getInput().getType().getRank());
}

LogicalResult CrossEntropyOp::verify() {
  auto x = getInput().getType();
  auto labels = getLabels().getType();
  if (x.getRank() < 2)
    return emitOpError() << "input must have rank 2 or more [N, C, d1…dk], "
                            "got shape "
                         << shapeStr(x.getShape());
  SmallVector<int64_t> labelShape = {x.getDimSize(0)};
  llvm::append_range(labelShape, x.getShape().drop_front(2));
  if (labels.getRank() != x.getRank() - 1 ||
      !shapesCompatible(labels.getShape(), labelShape))
    return emitOpError() << "labels must have shape " << shapeStr(labelShape)
                         << " (the input's without its class axis 1), got "
                         << shapeStr(labels.getShape());
  if (Value w = getWeight()) {
    auto wType = cast<RankedTensorType>(w.getType());
    if (wType.getRank() != 1 ||
        !dimsCompatible(wType.getDimSize(0), x.getDimSize(1)))
      return emitOpError() << "weight must have shape "
                           << shapeStr({x.getDimSize(1)})
                           << " (one per class), got "
                           << shapeStr(wType.getShape());
    if (wType.getElementType() != x.getElementType())
      return emitOpError() << "weight must have the input's element type";
  }
  StringRef reduction = getReduction();
  if (reduction != "none" && reduction != "sum" && reduction != "mean")
    return emitOpError() << "reduction must be \"none\", \"sum\" or \"mean\", "
                            "got \""
                         << reduction << "\"";
  auto y = getType();
  if (y.getElementType() != x.getElementType())
    return emitOpError() << "result must have the input's element type";
  ArrayRef<int64_t> expected =
      reduction == "none" ? ArrayRef<int64_t>(labelShape) : ArrayRef<int64_t>();
  if (y.getRank() != static_cast<int64_t>(expected.size()) ||
      !shapesCompatible(y.getShape(), expected))
    return emitOpError() << "result must have shape " << shapeStr(expected)
                         << " for reduction \"" << reduction << "\", got "
                         << shapeStr(y.getShape());
  return success();
}

//===----------------------------------------------------------------------===//
// RotaryOp
//===----------------------------------------------------------------------===//

LogicalResult RotaryOp::verify() {
  auto x = getInput().getType();
  auto c = getCos().getType(), s = getSin().getType();
  if (c != s)
    return emitOpError() << "cos and sin must have one type, got " << c
                         << " and " << s;
  if (c.getElementType() != x.getElementType())
    return emitOpError() << "cos and sin must have the input's element type";
  if (c.getRank() != x.getRank())
    return emitOpError() << "cos and sin must have the input's rank "
                         << x.getRank() << ", got " << c.getRank();
  int64_t rank = x.getRank();
  for (int64_t d = 0; d + 1 < rank; ++d)
    if (c.getDimSize(d) != 1 &&
        !dimsCompatible(c.getDimSize(d), x.getDimSize(d)))
      return emitOpError() << "cos and sin dimension " << d << " ("
                           << c.getDimSize(d) << ") must be 1 or the input's ("
                           << x.getDimSize(d) << ")";
  int64_t r = c.getDimSize(rank - 1), dim = x.getDimSize(rank - 1);
  if (ShapedType::isDynamic(r))
    return emitOpError() << "needs a static rotary width (the last dimension "
                            "of cos and sin)";
  if (r < 2 || r % 2)
    return emitOpError() << "rotary width " << r
                         << " must be even and positive";
  if (!ShapedType::isDynamic(dim) && r > dim)
    return emitOpError() << "rotary width " << r
                         << " exceeds the input's feature size " << dim;
  return success();
}
