//===- TensorOps.cpp - ONNX matmul, reductions, shape operators -----------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

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
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, acc), element);
  return linalg::GenericOp::create(
             b, loc, init.getType(), acc, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(nb, l, castScalar(nb, l, a[0], element));
             })
      .getResult(0);
}

namespace {

Value indexValue(OpBuilder &b, Location loc, OpFoldResult ofr) {
  return getValueOrCreateConstantIndexOp(b, loc, ofr);
}

/// Product of sizes as an index value (constant when all are static).
OpFoldResult product(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes) {
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

//===----------------------------------------------------------------------===//
// Constant
//===----------------------------------------------------------------------===//

LogicalResult convertConstant(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  DictionaryAttr attrs = op.getOnnxAttrs();
  Location loc = op.getLoc();
  if (auto value = attrs.getAs<DenseElementsAttr>("value")) {
    results.push_back(arith::ConstantOp::create(b, loc, value));
    return success();
  }
  if (auto f = attrs.getAs<FloatAttr>("value_float")) {
    auto type = RankedTensorType::get({}, b.getF32Type());
    results.push_back(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, f.getValue())));
    return success();
  }
  if (auto i = attrs.getAs<IntegerAttr>("value_int")) {
    auto type = RankedTensorType::get({}, b.getI64Type());
    results.push_back(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, i.getValue())));
    return success();
  }
  if (auto fs = attrs.getAs<DenseF32ArrayAttr>("value_floats")) {
    auto type = RankedTensorType::get({fs.size()}, b.getF32Type());
    results.push_back(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, fs.asArrayRef())));
    return success();
  }
  if (auto is = attrs.getAs<DenseI64ArrayAttr>("value_ints")) {
    auto type = RankedTensorType::get({is.size()}, b.getI64Type());
    results.push_back(arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(type, is.asArrayRef())));
    return success();
  }
  return nodeError(op) << "only tensor, float(s) and int(s) values are "
                          "supported";
}

//===----------------------------------------------------------------------===//
// MatMul / Gemm
//===----------------------------------------------------------------------===//

/// Contraction body: acc + a * b in the accumulator's type (f32 for
/// narrower floats, as onnxruntime and PyTorch accumulate on the CPU).
void contractionBody(OpBuilder &b, Location loc, ValueRange args) {
  Value a = args[0], w = args[1], acc = args[2];
  a = castScalar(b, loc, a, acc.getType());
  w = castScalar(b, loc, w, acc.getType());
  Value r;
  if (isa<FloatType>(acc.getType()))
    r = arith::AddFOp::create(b, loc, acc, arith::MulFOp::create(b, loc, a, w));
  else
    r = arith::AddIOp::create(b, loc, acc, arith::MulIOp::create(b, loc, a, w));
  linalg::YieldOp::create(b, loc, r);
}

Value zeroFilled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                 Type elementType) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, elementType);
  Value zero = scalarConstant(b, loc, elementType, 0);
  return linalg::FillOp::create(b, loc, zero, empty).getResult(0);
}

} // namespace

LogicalResult mlir::qopt::onnx::buildMatMul(ONNXNodeOp op, OpBuilder &b,
                                            Value lhs, Value rhs,
                                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  auto lhsType = rankedType(lhs), rhsType = rankedType(rhs);
  if (!lhsType || !rhsType)
    return nodeError(op) << "needs ranked inputs";
  Type element = lhsType.getElementType();
  if (element != rhsType.getElementType() || !element.isSignlessIntOrFloat())
    return nodeError(op) << "needs inputs of one signless element type";
  // numpy: a 1-D operand is a row (lhs) or column (rhs) vector, removed
  // from the result again.
  bool lhsVector = lhsType.getRank() == 1, rhsVector = rhsType.getRank() == 1;
  if (lhsVector) {
    SmallVector<OpFoldResult> sizes = {b.getIndexAttr(1)};
    llvm::append_range(sizes, tensor::getMixedSizes(b, loc, lhs));
    lhs = reshapeTo(b, loc, lhs, sizes);
  }
  if (rhsVector) {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, rhs);
    sizes.push_back(b.getIndexAttr(1));
    rhs = reshapeTo(b, loc, rhs, sizes);
  }
  lhsType = rankedType(lhs);
  rhsType = rankedType(rhs);
  int64_t lhsBatch = lhsType.getRank() - 2, rhsBatch = rhsType.getRank() - 2;
  int64_t batch = std::max(lhsBatch, rhsBatch);
  SmallVector<OpFoldResult> lhsSizes = tensor::getMixedSizes(b, loc, lhs);
  SmallVector<OpFoldResult> rhsSizes = tensor::getMixedSizes(b, loc, rhs);
  if (!ShapedType::isDynamic(lhsType.getDimSize(lhsBatch + 1)) &&
      !ShapedType::isDynamic(rhsType.getDimSize(rhsBatch)) &&
      lhsType.getDimSize(lhsBatch + 1) != rhsType.getDimSize(rhsBatch))
    return nodeError(op) << "inner dimensions differ: "
                         << lhsType.getDimSize(lhsBatch + 1) << " vs "
                         << rhsType.getDimSize(rhsBatch);
  // The inner dimensions must agree at run time too.
  if ((lhsType.isDynamicDim(lhsBatch + 1) || rhsType.isDynamicDim(rhsBatch)) &&
      sizeSource(lhs, lhsBatch + 1) != sizeSource(rhs, rhsBatch))
    emitCheck(op, b,
              arith::CmpIOp::create(
                  b, loc, arith::CmpIPredicate::eq,
                  getValueOrCreateConstantIndexOp(b, loc, lhsSizes[lhsBatch + 1]),
                  getValueOrCreateConstantIndexOp(b, loc, rhsSizes[rhsBatch])),
              "inner dimensions differ");
  // Batch dimensions the types cannot decide broadcast as the run says
  // (as for elementwise operands): checked, then expanded where 1.
  for (int64_t d = 0; d < batch; ++d) {
    int64_t li = d - (batch - lhsBatch), ri = d - (batch - rhsBatch);
    if (li < 0 || ri < 0)
      continue;
    int64_t ls = lhsType.getDimSize(li), rs = rhsType.getDimSize(ri);
    if (ls == 1 || rs == 1 ||
        (!ShapedType::isDynamic(ls) && !ShapedType::isDynamic(rs)) ||
        sizeSource(lhs, li) == sizeSource(rhs, ri))
      continue;
    Value l = getValueOrCreateConstantIndexOp(b, loc, lhsSizes[li]);
    Value r = getValueOrCreateConstantIndexOp(b, loc, rhsSizes[ri]);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value out =
        !ShapedType::isDynamic(ls) ? l
        : !ShapedType::isDynamic(rs)
            ? r
            : Value(arith::SelectOp::create(
                  b, loc,
                  arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, l, one),
                  r, l));
    emitCheck(op, b,
              arith::AndIOp::create(b, loc, isSizeOrOne(b, loc, l, out),
                                    isSizeOrOne(b, loc, r, out)),
              "batch dimension " + Twine(d) + " cannot be broadcast");
    if (ShapedType::isDynamic(ls))
      lhs = expandAtRunTime(b, loc, lhs, li, out);
    if (ShapedType::isDynamic(rs))
      rhs = expandAtRunTime(b, loc, rhs, ri, out);
    lhsSizes[li] = rhsSizes[ri] = out;
  }
  // Loops: batch..., m, n, k.
  int64_t numLoops = batch + 3;
  SmallVector<OpFoldResult> outSizes;
  SmallVector<AffineExpr> lhsExprs, rhsExprs, outExprs;
  for (int64_t d = 0; d < batch; ++d) {
    int64_t li = d - (batch - lhsBatch), ri = d - (batch - rhsBatch);
    int64_t ls = li >= 0 ? lhsType.getDimSize(li) : 1;
    int64_t rs = ri >= 0 ? rhsType.getDimSize(ri) : 1;
    if (ls != 1 && rs != 1 && !ShapedType::isDynamic(ls) &&
        !ShapedType::isDynamic(rs) && ls != rs)
      return nodeError(op) << "batch dimensions cannot be broadcast: " << ls
                           << " vs " << rs;
    bool useLhs = li >= 0 && ls != 1;
    outSizes.push_back(useLhs ? lhsSizes[li]
                              : (ri >= 0 ? rhsSizes[ri] : b.getIndexAttr(1)));
    bool outIsOne = !useLhs && !(ri >= 0 && rs != 1);
    if (li >= 0)
      lhsExprs.push_back(ls == 1 && !outIsOne ? b.getAffineConstantExpr(0)
                                              : b.getAffineDimExpr(d));
    if (ri >= 0)
      rhsExprs.push_back(rs == 1 && !outIsOne ? b.getAffineConstantExpr(0)
                                              : b.getAffineDimExpr(d));
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineExpr m = b.getAffineDimExpr(batch), n = b.getAffineDimExpr(batch + 1),
             k = b.getAffineDimExpr(batch + 2);
  lhsExprs.append({m, k});
  rhsExprs.append({k, n});
  outExprs.append({m, n});
  outSizes.push_back(lhsSizes[lhsBatch]);
  outSizes.push_back(rhsSizes[rhsBatch + 1]);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(numLoops, 0, lhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, rhsExprs, ctx),
                                 AffineMap::get(numLoops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(numLoops - 1,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  Value init = zeroFilled(b, loc, outSizes, accumulatorType(b, element));
  Value result = linalg::GenericOp::create(b, loc, init.getType(),
                                           ValueRange{lhs, rhs}, init, maps,
                                           iterators, contractionBody)
                     .getResult(0);
  result = fromAccumulator(b, loc, result, element);
  if (lhsVector || rhsVector) {
    SmallVector<OpFoldResult> sizes(outSizes.begin(), outSizes.end() - 2);
    if (!lhsVector)
      sizes.push_back(outSizes[batch]);
    if (!rhsVector)
      sizes.push_back(outSizes[batch + 1]);
    result = reshapeTo(b, loc, result, sizes);
  }
  results.push_back(result);
  return success();
}

namespace {
LogicalResult convertMatMul(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  return buildMatMul(op, b, op.getInputs()[0], op.getInputs()[1], results);
}

LogicalResult convertGemm(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value a = op.getInputs()[0], w = op.getInputs()[1], c = getInput(op, 2);
  auto aType = rankedType(a), wType = rankedType(w);
  if (!aType || !wType || aType.getRank() != 2 || wType.getRank() != 2)
    return nodeError(op) << "needs 2-D A and B";
  Type element = aType.getElementType();
  if (!isa<FloatType>(element) || wType.getElementType() != element)
    return nodeError(op) << "needs float A and B of one element type";
  bool transA = getIntAttr(op, "transA", 0), transB = getIntAttr(op, "transB", 0);
  double alpha = getFloatAttr(op, "alpha", 1.0), beta = getFloatAttr(op, "beta", 1.0);
  SmallVector<OpFoldResult> aSizes = tensor::getMixedSizes(b, loc, a), wSizes = tensor::getMixedSizes(b, loc, w);
  OpFoldResult mSize = aSizes[transA ? 1 : 0], nSize = wSizes[transB ? 0 : 1];
  AffineExpr m = b.getAffineDimExpr(0), n = b.getAffineDimExpr(1),
             k = b.getAffineDimExpr(2);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {
      AffineMap::get(3, 0, transA ? ArrayRef<AffineExpr>{k, m}
                                  : ArrayRef<AffineExpr>{m, k}, ctx),
      AffineMap::get(3, 0, transB ? ArrayRef<AffineExpr>{n, k}
                                  : ArrayRef<AffineExpr>{k, n}, ctx),
      AffineMap::get(3, 0, {m, n}, ctx)};
  SmallVector<utils::IteratorType> iterators = {
      utils::IteratorType::parallel, utils::IteratorType::parallel,
      utils::IteratorType::reduction};
  Value init = zeroFilled(b, loc, {mSize, nSize}, accumulatorType(b, element));
  Value product = linalg::GenericOp::create(b, loc, init.getType(),
                                            ValueRange{a, w}, init, maps,
                                            iterators, contractionBody)
                      .getResult(0);
  product = fromAccumulator(b, loc, product, element);
  if (alpha == 1.0 && (!c || beta == 0.0)) {
    results.push_back(product);
    return success();
  }
  SmallVector<Value> inputs = {product};
  if (c && beta != 0.0)
    inputs.push_back(c);
  FailureOr<Value> result = buildElementwise(
      op, b, inputs, element,
      [&](OpBuilder &nb, Location l, ValueRange args) -> Value {
        Value v = args[0];
        if (alpha != 1.0)
          v = arith::MulFOp::create(nb, l, v, scalarConstant(nb, l, element, alpha));
        if (args.size() > 1) {
          Value cv = args[1];
          if (beta != 1.0)
            cv = arith::MulFOp::create(nb, l, cv, scalarConstant(nb, l, element, beta));
          v = arith::AddFOp::create(nb, l, v, cv);
        }
        return v;
      });
  if (failed(result))
    return failure();
  results.push_back(*result);
  return success();
}

//===----------------------------------------------------------------------===//
// Transpose
//===----------------------------------------------------------------------===//

LogicalResult convertTranspose(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  int64_t rank = type.getRank();
  SmallVector<int64_t> perm;
  if (auto attr = getIntsAttr(op, "perm"))
    perm = *attr;
  else
    for (int64_t i = rank - 1; i >= 0; --i)
      perm.push_back(i);
  SmallVector<int64_t> sorted(perm);
  llvm::sort(sorted);
  if (static_cast<int64_t>(perm.size()) != rank ||
      llvm::any_of(llvm::enumerate(sorted),
                   [](auto p) { return p.value() != (int64_t)p.index(); }))
    return nodeError(op) << "perm is not a permutation of 0.." << rank - 1;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), outSizes;
  for (int64_t p : perm)
    outSizes.push_back(sizes[p]);
  Value init = tensor::EmptyOp::create(b, loc, outSizes, type.getElementType());
  results.push_back(
      linalg::TransposeOp::create(b, loc, x, init, perm).getResult()[0]);
  return success();
}

//===----------------------------------------------------------------------===//
// Reductions and Softmax
//===----------------------------------------------------------------------===//

enum class ReduceKind { Sum, Mean, Max, Min, Prod, SumSquare, L2 };

/// Reduces `x` over `axes` (sorted, normalised); keeps them as size 1 when
/// `keepDims`.
Value reduce(OpBuilder &b, Location loc, Value x, ArrayRef<int64_t> axes,
             bool keepDims, ReduceKind kind) {
  auto type = rankedType(x);
  Type inElement = type.getElementType();
  // Sums accumulate narrow floats in f32; max/min are exact in any type.
  bool sums = kind != ReduceKind::Max && kind != ReduceKind::Min;
  Type element = sums ? accumulatorType(b, inElement) : inElement;
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), outSizes, reduced;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    if (llvm::is_contained(axes, d)) {
      iterators.push_back(utils::IteratorType::reduction);
      reduced.push_back(sizes[d]);
      continue;
    }
    iterators.push_back(utils::IteratorType::parallel);
    outSizes.push_back(sizes[d]);
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  bool isFloat = isa<FloatType>(element);
  double initValue = 0;
  if (kind == ReduceKind::Max)
    initValue = isFloat ? -INFINITY : (double)std::numeric_limits<int64_t>::min();
  if (kind == ReduceKind::Min)
    initValue = isFloat ? INFINITY : (double)std::numeric_limits<int64_t>::max();
  if (kind == ReduceKind::Prod)
    initValue = 1;
  Value init = tensor::EmptyOp::create(b, loc, outSizes, element);
  Value start;
  if (!isFloat && (kind == ReduceKind::Max || kind == ReduceKind::Min)) {
    unsigned width = element.getIntOrFloatBitWidth();
    APInt v = kind == ReduceKind::Max ? APInt::getSignedMinValue(width)
                                      : APInt::getSignedMaxValue(width);
    start = arith::ConstantOp::create(b, loc, b.getIntegerAttr(element, v));
  } else {
    start = scalarConstant(b, loc, element, initValue);
  }
  init = linalg::FillOp::create(b, loc, start, init).getResult(0);
  SmallVector<AffineMap> maps = {
      b.getMultiDimIdentityMap(rank),
      AffineMap::get(rank, 0, outExprs, b.getContext())};
  Value result =
      linalg::GenericOp::create(
          b, loc, init.getType(), x, init, maps, iterators,
          [&](OpBuilder &nb, Location l, ValueRange args) {
            Value v = castScalar(nb, l, args[0], element), acc = args[1], r;
            if (kind == ReduceKind::SumSquare || kind == ReduceKind::L2)
              v = isFloat ? Value(arith::MulFOp::create(nb, l, v, v))
                          : Value(arith::MulIOp::create(nb, l, v, v));
            switch (kind) {
            case ReduceKind::Max:
              r = isFloat ? Value(arith::MaximumFOp::create(nb, l, acc, v))
                          : Value(arith::MaxSIOp::create(nb, l, acc, v));
              break;
            case ReduceKind::Min:
              r = isFloat ? Value(arith::MinimumFOp::create(nb, l, acc, v))
                          : Value(arith::MinSIOp::create(nb, l, acc, v));
              break;
            case ReduceKind::Prod:
              r = isFloat ? Value(arith::MulFOp::create(nb, l, acc, v))
                          : Value(arith::MulIOp::create(nb, l, acc, v));
              break;
            default:
              r = isFloat ? Value(arith::AddFOp::create(nb, l, acc, v))
                          : Value(arith::AddIOp::create(nb, l, acc, v));
            }
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0);
  if (kind == ReduceKind::Mean || kind == ReduceKind::L2) {
    Value count;
    if (kind == ReduceKind::Mean) {
      count = arith::IndexCastOp::create(
          b, loc, b.getI64Type(), indexValue(b, loc, product(b, loc, reduced)));
      count = isFloat ? Value(arith::SIToFPOp::create(b, loc, element, count))
                      : Value(arith::TruncIOp::create(b, loc, element, count));
    }
    SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(outSizes.size()));
    SmallVector<utils::IteratorType> par(outSizes.size(),
                                         utils::IteratorType::parallel);
    Value out = tensor::EmptyOp::create(b, loc, outSizes, element);
    result = linalg::GenericOp::create(
                 b, loc, out.getType(), result, out, idMaps, par,
                 [&](OpBuilder &nb, Location l, ValueRange args) {
                   Value r = kind == ReduceKind::L2
                                 ? Value(math::SqrtOp::create(nb, l, args[0]))
                                 : (isFloat ? Value(arith::DivFOp::create(
                                                  nb, l, args[0], count))
                                            : Value(arith::DivSIOp::create(
                                                  nb, l, args[0], count)));
                   linalg::YieldOp::create(nb, l, r);
                 })
                 .getResult(0);
  }
  result = fromAccumulator(b, loc, result, inElement);
  if (keepDims) {
    SmallVector<OpFoldResult> kept;
    unsigned next = 0;
    for (int64_t d = 0; d < rank; ++d)
      kept.push_back(llvm::is_contained(axes, d) ? OpFoldResult(b.getIndexAttr(1))
                                                 : outSizes[next++]);
    result = reshapeTo(b, loc, result, kept);
  }
  return result;
}

template <ReduceKind kind>
LogicalResult convertReduce(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type || !type.getElementType().isSignlessIntOrFloat())
    return nodeError(op) << "needs a ranked tensor of signless integers or "
                            "floats";
  std::optional<SmallVector<int64_t>> axes;
  if (Value axesInput = getInput(op, 1)) {
    axes = getConstantInts(axesInput);
    if (!axes)
      return nodeError(op) << "axes must be a constant";
  } else {
    axes = getIntsAttr(op, "axes");
  }
  bool keepDims = getIntAttr(op, "keepdims", 1) != 0;
  bool noopEmpty = getIntAttr(op, "noop_with_empty_axes", 0) != 0;
  SmallVector<int64_t> normalized;
  if (!axes || axes->empty()) {
    if (noopEmpty) {
      results.push_back(x);
      return success();
    }
    for (int64_t d = 0; d < type.getRank(); ++d)
      normalized.push_back(d);
  } else {
    for (int64_t a : *axes) {
      FailureOr<int64_t> axis = normalizeAxis(op, a, type.getRank());
      if (failed(axis))
        return failure();
      if (!llvm::is_contained(normalized, *axis))
        normalized.push_back(*axis);
    }
    llvm::sort(normalized);
  }
  results.push_back(reduce(b, op.getLoc(), x, normalized, keepDims, kind));
  return success();
}

/// y = op(x, r) where r was reduced over `axis` (without keepdims).
Value combineWithReduced(OpBuilder &b, Location loc, Value x, Value r,
                         int64_t axis,
                         function_ref<Value(OpBuilder &, Location, Value, Value)> fn) {
  auto type = rankedType(x);
  int64_t rank = type.getRank();
  SmallVector<AffineExpr> rExprs;
  for (int64_t d = 0; d < rank; ++d)
    if (d != axis)
      rExprs.push_back(b.getAffineDimExpr(d));
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank),
                                 AffineMap::get(rank, 0, rExprs, b.getContext()),
                                 b.getMultiDimIdentityMap(rank)};
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x),
                                       type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), ValueRange{x, r}, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               linalg::YieldOp::create(nb, l, fn(nb, l, args[0], args[1]));
             })
      .getResult(0);
}

LogicalResult softmax(ONNXNodeOp op, OpBuilder &b,
                      SmallVectorImpl<Value> &results, bool logSoftmax) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type || !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "needs a ranked float input";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", -1), type.getRank());
  if (failed(axis))
    return failure();
  // exp(x - max) / sum(exp(x - max)), stable for large inputs.
  Value max = reduce(b, loc, x, *axis, false, ReduceKind::Max);
  Value shifted = combineWithReduced(
      b, loc, x, max, *axis, [](OpBuilder &nb, Location l, Value v, Value m) {
        return Value(arith::SubFOp::create(nb, l, v, m));
      });
  SmallVector<Value> exps;
  FailureOr<Value> e = buildElementwise(
      op, b, shifted, type.getElementType(),
      [](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return math::ExpOp::create(nb, l, a[0]);
      });
  if (failed(e))
    return failure();
  Value sum = reduce(b, loc, *e, *axis, false, ReduceKind::Sum);
  Value result =
      logSoftmax
          ? combineWithReduced(b, loc, shifted, sum, *axis,
                               [](OpBuilder &nb, Location l, Value v, Value s) {
                                 return Value(arith::SubFOp::create(
                                     nb, l, v, math::LogOp::create(nb, l, s)));
                               })
          : combineWithReduced(b, loc, *e, sum, *axis,
                               [](OpBuilder &nb, Location l, Value v, Value s) {
                                 return Value(arith::DivFOp::create(nb, l, v, s));
                               });
  results.push_back(result);
  return success();
}

LogicalResult convertSoftmax(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  return softmax(op, b, results, false);
}
LogicalResult convertLogSoftmax(ONNXNodeOp op, OpBuilder &b,
                                SmallVectorImpl<Value> &results) {
  return softmax(op, b, results, true);
}

//===----------------------------------------------------------------------===//
// Shape manipulation
//===----------------------------------------------------------------------===//

/// The entries of a 1-D integer tensor as index values (constants where the
/// tensor is constant), or failure when its length is unknown.
FailureOr<SmallVector<OpFoldResult>> shapeEntries(OpBuilder &b, Location loc,
                                                  Value shape) {
  SmallVector<OpFoldResult> entries;
  if (std::optional<SmallVector<int64_t>> c = getConstantInts(shape)) {
    for (int64_t v : *c)
      entries.push_back(b.getIndexAttr(v));
    return entries;
  }
  auto type = rankedType(shape);
  if (!type || type.getRank() != 1 || type.isDynamicDim(0))
    return failure();
  for (int64_t i = 0; i < type.getDimSize(0); ++i) {
    // Entries that shape arithmetic made from constants and sizes are used
    // as such (so that -1, 0 and sizes are known now); others are read.
    OpFoldResult known = shapeElementOf(shape, i);
    if (auto attr = dyn_cast_if_present<Attribute>(known)) {
      entries.push_back(attr);
      continue;
    }
    Value v = dyn_cast_if_present<Value>(known);
    if (!v) {
      Value idx = arith::ConstantIndexOp::create(b, loc, i);
      v = tensor::ExtractOp::create(b, loc, shape, idx);
    }
    if (!v.getType().isIndex())
      v = arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
    entries.push_back(v);
  }
  return entries;
}

LogicalResult convertReshape(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  bool allowZero = getIntAttr(op, "allowzero", 0) != 0;
  FailureOr<SmallVector<OpFoldResult>> entries =
      shapeEntries(b, loc, op.getInputs()[1]);
  if (failed(entries))
    return nodeError(op) << "the shape input must be 1-D with a static length";
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> sizes;
  llvm::SmallDenseSet<size_t> knownSize; // entries that are plain sizes
  int64_t inferred = -1;
  for (auto [i, entry] : llvm::enumerate(*entries)) {
    std::optional<int64_t> c = getConstantIntValue(entry);
    if (!c) { // computed at run time: 0 copies, -1 is resolved below
      Value v = cast<Value>(entry);
      // An entry measured from a tensor dimension is a size: neither -1 nor
      // (unless it equals the input's size, which 0 would copy) special.
      std::pair<Value, int64_t> source = sizeSource(v);
      if (source.first && source.second >= 0 &&
          (allowZero || static_cast<int64_t>(i) >= type.getRank() ||
           sizeSource(x, i) == source)) {
        sizes.push_back(v);
        knownSize.insert(i);
        continue;
      }
      if (!allowZero && static_cast<int64_t>(i) < type.getRank()) {
        Value zero = arith::ConstantIndexOp::create(b, loc, 0);
        Value isZero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, zero);
        v = arith::SelectOp::create(b, loc, isZero,
                                    indexValue(b, loc, inSizes[i]), v);
      }
      sizes.push_back(v);
      continue;
    }
    if (*c == 0 && !allowZero) {
      if (static_cast<int64_t>(i) >= type.getRank())
        return nodeError(op) << "shape entry " << i
                             << " is 0 (copy) but the input has rank "
                             << type.getRank();
      sizes.push_back(inSizes[i]);
    } else if (*c == -1) {
      if (inferred >= 0)
        return nodeError(op) << "shape has more than one -1";
      inferred = i;
      sizes.push_back(b.getIndexAttr(-1));
    } else if (*c < 0) {
      return nodeError(op) << "shape entry " << i << " is " << *c;
    } else {
      sizes.push_back(b.getIndexAttr(*c));
    }
  }
  // Entries computed at run time may be -1: resolve every position as
  // numel / (product of the others), selected where the entry is -1.
  Value numel = indexValue(b, loc, product(b, loc, inSizes));
  auto resolve = [&](int64_t pos) -> Value {
    SmallVector<OpFoldResult> others;
    for (auto [j, s] : llvm::enumerate(sizes)) {
      if (static_cast<int64_t>(j) == pos)
        continue;
      Value v = indexValue(b, loc, s);
      Value minusOne = arith::ConstantIndexOp::create(b, loc, -1);
      Value isNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, minusOne);
      others.push_back(arith::SelectOp::create(
                           b, loc, isNeg, arith::ConstantIndexOp::create(b, loc, 1), v)
                           .getResult());
    }
    return arith::DivUIOp::create(b, loc, numel,
                                  indexValue(b, loc, product(b, loc, others)));
  };
  // The -1 entry symbolically: the input's sizes, less the factors the
  // other entries take (matched by their source); what is left is a
  // constant or one of the input's sizes ([b, s, h, d] -> [b, s, -1] is
  // h*d; -> [b*s?, -1, d] is not followed).
  auto cancelFactors = [&](int64_t pos) -> OpFoldResult {
    SmallVector<std::pair<std::pair<Value, int64_t>, OpFoldResult>> factors;
    int64_t constIn = 1, constOut = 1;
    for (auto [k, size] : llvm::enumerate(inSizes)) {
      if (std::optional<int64_t> c = getConstantIntValue(size))
        constIn *= *c;
      else
        factors.push_back({sizeSource(x, k), size});
    }
    for (auto [j, size] : llvm::enumerate(sizes)) {
      if (static_cast<int64_t>(j) == pos)
        continue;
      if (std::optional<int64_t> c = getConstantIntValue(size)) {
        constOut *= *c;
        continue;
      }
      if (!knownSize.contains(j))
        return {};
      auto source = sizeSource(cast<Value>(size));
      auto it = llvm::find_if(factors, [&](auto &f) { return f.first == source; });
      if (it == factors.end())
        return {};
      factors.erase(it);
    }
    if (constOut <= 0 || constIn % constOut)
      return {};
    int64_t rest = constIn / constOut;
    if (factors.empty())
      return b.getIndexAttr(rest);
    if (factors.size() == 1 && rest == 1)
      return factors.front().second;
    return {};
  };
  if (inferred >= 0) {
    // Static -1 with all else static folds to a constant.
    SmallVector<OpFoldResult> others;
    bool allStatic = true;
    for (auto [j, s] : llvm::enumerate(sizes))
      if (static_cast<int64_t>(j) != inferred) {
        others.push_back(s);
        allStatic &= getConstantIntValue(s).has_value();
      }
    std::optional<int64_t> total = getConstantIntValue(product(b, loc, inSizes));
    if (allStatic && total) {
      int64_t rest = *getConstantIntValue(product(b, loc, others));
      if (rest == 0 || *total % rest != 0)
        return nodeError(op) << "cannot reshape " << *total
                             << " elements with the given shape";
      sizes[inferred] = b.getIndexAttr(*total / rest);
    } else if (OpFoldResult cancelled = cancelFactors(inferred)) {
      sizes[inferred] = cancelled;
      knownSize.insert(inferred);
    } else {
      sizes[inferred] = resolve(inferred);
      knownSize.insert(inferred); // a quotient of sizes, never -1
    }
  }
  for (auto [i, s] : llvm::enumerate(sizes))
    if (!getConstantIntValue(s) && !knownSize.contains(i)) {
      Value v = cast<Value>(s);
      Value minusOne = arith::ConstantIndexOp::create(b, loc, -1);
      Value isNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, minusOne);
      sizes[i] = arith::SelectOp::create(b, loc, isNeg, resolve(i), v).getResult();
    }
  // The element count must be kept (a run-time shape can say otherwise).
  OpFoldResult outNumel = product(b, loc, sizes);
  std::optional<int64_t> inCount = getConstantIntValue(numel),
                         outCount = getConstantIntValue(outNumel);
  if (inCount && outCount) {
    if (*inCount != *outCount)
      return nodeError(op) << "cannot reshape " << *inCount
                           << " elements into " << *outCount;
  } else {
    Value ok = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                     indexValue(b, loc, outNumel), numel);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    for (OpFoldResult size : sizes)
      if (!getConstantIntValue(size))
        ok = arith::AndIOp::create(
            b, loc, ok,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge,
                                  cast<Value>(size), zero));
    emitCheck(op, b, ok,
              "the shape does not keep the input's element count");
  }
  results.push_back(reshapeTo(b, loc, x, sizes));
  return success();
}

LogicalResult convertFlatten(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  int64_t rank = type.getRank();
  int64_t axis = getIntAttr(op, "axis", 1);
  if (axis < -rank || axis > rank)
    return nodeError(op) << "axis " << axis << " is out of range for rank "
                         << rank;
  if (axis < 0)
    axis += rank;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outer(sizes.begin(), sizes.begin() + axis);
  SmallVector<OpFoldResult> inner(sizes.begin() + axis, sizes.end());
  results.push_back(reshapeTo(
      b, loc, x, {product(b, loc, outer), product(b, loc, inner)}));
  return success();
}

LogicalResult squeezeOrUnsqueeze(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results,
                                 bool unsqueeze) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  std::optional<SmallVector<int64_t>> axes;
  if (Value axesInput = getInput(op, 1)) {
    axes = getConstantInts(axesInput);
    if (!axes)
      return nodeError(op) << "axes must be a constant";
  } else {
    axes = getIntsAttr(op, "axes");
  }
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  int64_t rank = type.getRank();
  if (unsqueeze) {
    if (!axes)
      return nodeError(op) << "needs axes";
    int64_t outRank = rank + axes->size();
    SmallVector<int64_t> normalized;
    for (int64_t a : *axes) {
      FailureOr<int64_t> axis = normalizeAxis(op, a, outRank);
      if (failed(axis))
        return failure();
      normalized.push_back(*axis);
    }
    SmallVector<OpFoldResult> out;
    unsigned next = 0;
    for (int64_t d = 0; d < outRank; ++d)
      out.push_back(llvm::is_contained(normalized, d)
                        ? OpFoldResult(b.getIndexAttr(1))
                        : sizes[next++]);
    results.push_back(reshapeTo(b, loc, x, out));
    return success();
  }
  SmallVector<int64_t> normalized;
  if (axes) {
    for (int64_t a : *axes) {
      FailureOr<int64_t> axis = normalizeAxis(op, a, rank);
      if (failed(axis))
        return failure();
      if (type.getDimSize(*axis) != 1 && !type.isDynamicDim(*axis))
        return nodeError(op) << "cannot squeeze axis " << *axis << " of size "
                             << type.getDimSize(*axis);
      normalized.push_back(*axis);
    }
  } else {
    for (int64_t d = 0; d < rank; ++d) {
      if (type.isDynamicDim(d))
        return nodeError(op) << "squeezing all size-1 axes needs static "
                                "sizes; give axes";
      if (type.getDimSize(d) == 1)
        normalized.push_back(d);
    }
  }
  SmallVector<OpFoldResult> out;
  for (int64_t d = 0; d < rank; ++d)
    if (!llvm::is_contained(normalized, d))
      out.push_back(sizes[d]);
  results.push_back(reshapeTo(b, loc, x, out));
  return success();
}

LogicalResult convertSqueeze(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  return squeezeOrUnsqueeze(op, b, results, false);
}
LogicalResult convertUnsqueeze(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  return squeezeOrUnsqueeze(op, b, results, true);
}

LogicalResult convertShape(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  int64_t rank = type.getRank();
  auto clampIndex = [&](int64_t v) {
    if (v < 0)
      v += rank;
    return std::clamp<int64_t>(v, 0, rank);
  };
  int64_t start = clampIndex(getIntAttr(op, "start", 0));
  int64_t end = clampIndex(getIntAttr(op, "end", rank));
  SmallVector<Value> dims;
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  for (int64_t d = start; d < end; ++d)
    dims.push_back(arith::IndexCastOp::create(b, loc, b.getI64Type(),
                                              indexValue(b, loc, sizes[d])));
  auto resultType = RankedTensorType::get(
      {static_cast<int64_t>(dims.size())}, b.getI64Type());
  results.push_back(tensor::FromElementsOp::create(b, loc, resultType, dims));
  return success();
}

LogicalResult convertConcat(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  SmallVector<Value> inputs(op.getInputs());
  auto type = rankedType(inputs.front());
  if (!type)
    return nodeError(op) << "needs ranked inputs";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", 0), type.getRank());
  if (failed(axis))
    return failure();
  if (inputs.size() == 1) {
    results.push_back(inputs.front());
    return success();
  }
  // The other dimensions must agree: checked now where static, else at run
  // time (tensor.concat assumes it).
  Location loc = op.getLoc();
  for (auto [k, input] : llvm::enumerate(inputs)) {
    auto t = rankedType(input);
    if (!t || t.getRank() != type.getRank() ||
        t.getElementType() != type.getElementType())
      return nodeError(op) << "input #" << k << " has type " << input.getType()
                           << ", which does not concatenate with "
                           << inputs.front().getType();
    for (int64_t d = 0; d < type.getRank(); ++d) {
      if (d == *axis || k == 0)
        continue;
      int64_t a = type.getDimSize(d), c = t.getDimSize(d);
      if (!ShapedType::isDynamic(a) && !ShapedType::isDynamic(c)) {
        if (a != c)
          return nodeError(op) << "input #" << k << " has size " << c
                               << " in dimension " << d << ", input #0 " << a;
        continue;
      }
      if (sizeSource(input, d) == sizeSource(inputs.front(), d))
        continue;
      emitCheck(op, b,
                arith::CmpIOp::create(
                    b, loc, arith::CmpIPredicate::eq,
                    tensor::DimOp::create(b, loc, input, d),
                    tensor::DimOp::create(b, loc, inputs.front(), d)),
                "input #" + Twine(k) + " differs from input #0 in dimension " +
                    Twine(d));
    }
  }
  results.push_back(tensor::ConcatOp::create(b, loc, *axis, inputs));
  return success();
}

LogicalResult convertGather(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dataType = rankedType(data), indexType = rankedType(indices);
  if (!dataType || !indexType || !indexType.getElementType().isSignlessInteger())
    return nodeError(op) << "needs ranked data and integer indices";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", 0), dataType.getRank());
  if (failed(axis))
    return failure();
  int64_t q = indexType.getRank();
  // Shape arithmetic (Shape → Gather(i) → …): constant indices into a small
  // 1-D tensor give its elements as scalars, which later shape computations
  // and broadcasts can follow back to the tensor dimensions they measure.
  if (dataType.getRank() == 1 && dataType.hasStaticShape() &&
      dataType.getDimSize(0) <= 16 && indexType.hasStaticShape() &&
      indexType.getNumElements() <= 16) {
    if (std::optional<SmallVector<int64_t>> c = getConstantInts(indices)) {
      int64_t n = dataType.getDimSize(0);
      SmallVector<Value> elements;
      for (int64_t v : *c) {
        if (v < -n || v >= n)
          return nodeError(op) << "an index into axis 0 is " << v
                               << ", out of range (valid: " << -n << " to "
                               << n - 1 << ")";
        Value at = arith::ConstantIndexOp::create(b, loc, v < 0 ? v + n : v);
        elements.push_back(tensor::ExtractOp::create(b, loc, data, at));
      }
      results.push_back(tensor::FromElementsOp::create(
          b, loc,
          RankedTensorType::get(indexType.getShape(), dataType.getElementType()),
          elements));
      return success();
    }
  }
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  // out[i_0..i_{axis-1}, j_0..j_{q-1}, k...] = data[i..., idx[j...], k...]
  SmallVector<OpFoldResult> outSizes(dataSizes.begin(),
                                     dataSizes.begin() + *axis);
  llvm::append_range(outSizes, indexSizes);
  outSizes.append(dataSizes.begin() + *axis + 1, dataSizes.end());
  int64_t outRank = outSizes.size();
  SmallVector<AffineExpr> indexExprs;
  for (int64_t j = 0; j < q; ++j)
    indexExprs.push_back(b.getAffineDimExpr(*axis + j));
  SmallVector<AffineMap> maps = {
      AffineMap::get(outRank, 0, indexExprs, b.getContext()),
      b.getMultiDimIdentityMap(outRank)};
  Value init = tensor::EmptyOp::create(b, loc, outSizes, dataType.getElementType());
  Value axisSize = indexValue(b, loc, dataSizes[*axis]);
  if (failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))))
    return failure();
  SmallVector<utils::IteratorType> par(outRank, utils::IteratorType::parallel);
  Value result =
      linalg::GenericOp::create(
          b, loc, init.getType(), indices, init, maps, par,
          [&](OpBuilder &nb, Location l, ValueRange args) {
            Value idx = arith::IndexCastOp::create(nb, l, nb.getIndexType(),
                                                   args[0]);
            // Negative indices count from the end.
            Value zero = arith::ConstantIndexOp::create(nb, l, 0);
            Value neg = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt,
                                              idx, zero);
            idx = arith::SelectOp::create(
                nb, l, neg, arith::AddIOp::create(nb, l, idx, axisSize), idx);
            SmallVector<Value> coords;
            for (int64_t d = 0; d < *axis; ++d)
              coords.push_back(linalg::IndexOp::create(nb, l, d));
            coords.push_back(idx);
            for (int64_t d = *axis + q; d < outRank; ++d)
              coords.push_back(linalg::IndexOp::create(nb, l, d));
            Value v = tensor::ExtractOp::create(nb, l, data, coords);
            linalg::YieldOp::create(nb, l, v);
          })
          .getResult(0);
  results.push_back(result);
  return success();
}

LogicalResult convertConstantOfShape(ONNXNodeOp op, OpBuilder &b,
                                     SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<SmallVector<OpFoldResult>> sizes =
      shapeEntries(b, loc, op.getInputs()[0]);
  if (failed(sizes))
    return nodeError(op) << "the shape input must be 1-D with a static length";
  Attribute value = b.getZeroAttr(b.getF32Type());
  Type element = b.getF32Type();
  if (auto v = op.getOnnxAttrs().getAs<DenseElementsAttr>("value")) {
    element = v.getElementType();
    value = v.getValues<Attribute>()[0];
  }
  Value fill = arith::ConstantOp::create(b, loc, cast<TypedAttr>(value));
  Value empty = tensor::EmptyOp::create(b, loc, *sizes, element);
  results.push_back(linalg::FillOp::create(b, loc, fill, empty).getResult(0));
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Constant", 13, convertConstant},
    {"", "MatMul", 13, convertMatMul},
    {"", "Gemm", 13, convertGemm},
    {"", "Transpose", 13, convertTranspose},
    {"", "Softmax", 13, convertSoftmax},
    {"", "LogSoftmax", 13, convertLogSoftmax},
    {"", "ReduceSum", 13, convertReduce<ReduceKind::Sum>},
    {"", "ReduceMean", 13, convertReduce<ReduceKind::Mean>},
    {"", "ReduceMax", 13, convertReduce<ReduceKind::Max>},
    {"", "ReduceMin", 13, convertReduce<ReduceKind::Min>},
    {"", "ReduceProd", 13, convertReduce<ReduceKind::Prod>},
    {"", "ReduceSumSquare", 13, convertReduce<ReduceKind::SumSquare>},
    {"", "ReduceL2", 13, convertReduce<ReduceKind::L2>},
    {"", "Reshape", 13, convertReshape},
    {"", "Flatten", 13, convertFlatten},
    {"", "Squeeze", 13, convertSqueeze},
    {"", "Unsqueeze", 13, convertUnsqueeze},
    {"", "Shape", 13, convertShape},
    {"", "Concat", 13, convertConcat},
    {"", "Gather", 13, convertGather},
    {"", "ConstantOfShape", 9, convertConstantOfShape},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getTensorHandlers() {
  return kHandlers;
}
