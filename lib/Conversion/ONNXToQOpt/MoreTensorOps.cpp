//===- MoreTensorOps.cpp - ONNX slicing, broadcasting, index ops ----------===//
//
// Slice, Expand, Range, Size, Split, Trilu, ArgMax/ArgMin and the
// normalisation operators (which become qopt.layer_norm / qopt.rms_norm).
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

Value idx(OpBuilder &b, Location loc, int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}

/// Scalar (or 1-element) integer or float tensor read at run time.
Value readScalar(OpBuilder &b, Location loc, Value t) {
  auto type = rankedType(t);
  SmallVector<Value> zeros(type.getRank(), idx(b, loc, 0));
  return tensor::ExtractOp::create(b, loc, t, zeros);
}

Value toIndex(OpBuilder &b, Location loc, Value v) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}

/// The i-th entry of a 1-D integer tensor as an index value (folded when the
/// tensor is constant).
Value entryAt(OpBuilder &b, Location loc, Value t,
              const std::optional<SmallVector<int64_t>> &constant, int64_t i) {
  if (constant)
    return idx(b, loc, (*constant)[i]);
  return toIndex(b, loc, tensor::ExtractOp::create(b, loc, t, idx(b, loc, i)));
}

Value clampIdx(OpBuilder &b, Location loc, Value v, Value lo, Value hi) {
  return b.createOrFold<arith::MinSIOp>(loc, b.createOrFold<arith::MaxSIOp>(loc, v, lo),
                                hi);
}

OpFoldResult foldIndex(Value v) {
  if (std::optional<int64_t> c = getConstantIntValue(v))
    return OpFoldResult(IntegerAttr::get(IndexType::get(v.getContext()), *c));
  return v;
}

//===----------------------------------------------------------------------===//
// Slice
//===----------------------------------------------------------------------===//

LogicalResult convertSlice(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  int64_t rank = type.getRank();
  Value starts = getInput(op, 1), ends = getInput(op, 2);
  Value axesIn = getInput(op, 3), stepsIn = getInput(op, 4);
  auto startsType = rankedType(starts);
  if (!startsType || startsType.getRank() != 1 || startsType.isDynamicDim(0))
    return nodeError(op) << "starts must be 1-D with a static length";
  int64_t n = startsType.getDimSize(0);
  auto cStarts = getConstantInts(starts), cEnds = getConstantInts(ends);
  auto cSteps = getConstantInts(stepsIn);
  SmallVector<int64_t> axes;
  if (axesIn) {
    auto c = getConstantInts(axesIn);
    if (!c)
      return nodeError(op) << "axes must be a constant";
    axes = *c;
  } else {
    for (int64_t i = 0; i < n; ++i)
      axes.push_back(i);
  }
  if (static_cast<int64_t>(axes.size()) != n)
    return nodeError(op) << "starts and axes differ in length";
  if (stepsIn && !cSteps)
    return nodeError(op) << "steps must be a constant";

  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<Value> offsets(rank, idx(b, loc, 0)), strides(rank, idx(b, loc, 1));
  SmallVector<OpFoldResult> outSizes(inSizes);
  for (int64_t i = 0; i < n; ++i) {
    FailureOr<int64_t> axis = normalizeAxis(op, axes[i], rank);
    if (failed(axis))
      return failure();
    int64_t step = cSteps ? (*cSteps)[i] : 1;
    if (step == 0)
      return nodeError(op) << "step 0 on axis " << *axis;
    // Entries may be INT64_MAX/MIN: clamp before they meet arithmetic.
    auto bounded = [&](Value t, const std::optional<SmallVector<int64_t>> &c) {
      if (c) {
        int64_t v = std::clamp<int64_t>((*c)[i], -(int64_t(1) << 62),
                                        int64_t(1) << 62);
        return idx(b, loc, v);
      }
      return entryAt(b, loc, t, c, i);
    };
    Value dim = getValueOrCreateConstantIndexOp(b, loc, inSizes[*axis]);
    Value start = bounded(starts, cStarts), end = bounded(ends, cEnds);
    Value zero = idx(b, loc, 0);
    auto wrap = [&](Value v) {
      Value neg = b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::slt, v, zero);
      return b.createOrFold<arith::SelectOp>(
          loc, neg, b.createOrFold<arith::AddIOp>(loc, v, dim), v);
    };
    start = wrap(start);
    end = wrap(end);
    Value size;
    if (step > 0) {
      start = clampIdx(b, loc, start, zero, dim);
      end = clampIdx(b, loc, end, zero, dim);
      Value span = b.createOrFold<arith::SubIOp>(loc, end, start);
      size = b.createOrFold<arith::CeilDivSIOp>(loc, span, idx(b, loc, step));
    } else {
      Value dimMinus1 = b.createOrFold<arith::SubIOp>(loc, dim, idx(b, loc, 1));
      start = clampIdx(b, loc, start, zero, dimMinus1);
      end = clampIdx(b, loc, end, idx(b, loc, -1), dimMinus1);
      Value span = b.createOrFold<arith::SubIOp>(loc, start, end);
      size = b.createOrFold<arith::CeilDivSIOp>(loc, span, idx(b, loc, -step));
    }
    size = b.createOrFold<arith::MaxSIOp>(loc, size, zero);
    offsets[*axis] = start;
    strides[*axis] = idx(b, loc, step);
    outSizes[*axis] = foldIndex(size);
  }
  // Fold the index arithmetic so static slices get static types.
  Value init = tensor::EmptyOp::create(b, loc, outSizes, type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  Value result =
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(rank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d) {
              Value i = linalg::IndexOp::create(nb, l, d);
              coords.push_back(arith::AddIOp::create(
                  nb, l, offsets[d], arith::MulIOp::create(nb, l, i, strides[d])));
            }
            linalg::YieldOp::create(nb, l,
                                    tensor::ExtractOp::create(nb, l, x, coords)
                                        .getResult());
          })
          .getResult(0);
  results.push_back(result);
  return success();
}

//===----------------------------------------------------------------------===//
// Expand
//===----------------------------------------------------------------------===//

LogicalResult convertExpand(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], shape = op.getInputs()[1];
  auto type = rankedType(x), shapeType = rankedType(shape);
  if (!type || !shapeType || shapeType.getRank() != 1 ||
      shapeType.isDynamicDim(0))
    return nodeError(op) << "needs a ranked input and a 1-D shape of static "
                            "length";
  auto constant = getConstantInts(shape);
  int64_t n = shapeType.getDimSize(0);
  int64_t rank = std::max<int64_t>(n, type.getRank());
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes;
  SmallVector<int64_t> staticOut;
  // x's dynamic dimensions whose run-time size may be 1 where the result's
  // is not: checked, then expanded at run time.
  SmallVector<std::pair<int64_t, int64_t>> runtimeExpand; // (x dim, out dim)
  for (int64_t d = 0; d < rank; ++d) {
    int64_t si = d - (rank - n), xi = d - (rank - type.getRank());
    std::optional<int64_t> s =
        si >= 0 && constant ? std::optional<int64_t>((*constant)[si]) : std::nullopt;
    int64_t xs = xi >= 0 ? type.getDimSize(xi) : 1;
    if (si < 0) {
      outSizes.push_back(inSizes[xi]);
    } else if (s && *s != 1) {
      if (xs != 1 && !ShapedType::isDynamic(xs) && xs != *s)
        return nodeError(op) << "cannot expand dimension of size " << xs
                             << " to " << *s;
      outSizes.push_back(b.getIndexAttr(*s));
      if (ShapedType::isDynamic(xs))
        runtimeExpand.push_back({xi, d});
    } else if (s) { // 1: keep x's size
      outSizes.push_back(xi >= 0 ? inSizes[xi] : b.getIndexAttr(1));
    } else {
      // Run-time entry: 1 keeps x's size, anything else is the size.
      Value v = entryAt(b, loc, shape, constant, si);
      if (xi < 0 || xs == 1) {
        outSizes.push_back(v);
      } else {
        Value one = b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::eq, v,
                                          idx(b, loc, 1));
        outSizes.push_back(arith::SelectOp::create(
                               b, loc, one,
                               getValueOrCreateConstantIndexOp(b, loc, inSizes[xi]),
                               v)
                               .getResult());
        if (ShapedType::isDynamic(xs) &&
            sizeSource(v) != sizeSource(x, xi))
          runtimeExpand.push_back({xi, d});
      }
    }
    std::optional<int64_t> c = getConstantIntValue(outSizes.back());
    staticOut.push_back(c ? *c : ShapedType::kDynamic);
  }
  // A size that is neither the result's nor 1 does not expand.
  for (auto [xi, d] : runtimeExpand) {
    Value size = getValueOrCreateConstantIndexOp(b, loc, inSizes[xi]);
    Value target = getValueOrCreateConstantIndexOp(b, loc, outSizes[d]);
    emitCheck(op, b, isSizeOrOne(b, loc, size, target),
              "cannot expand dimension " + Twine(xi) +
                  " of the input: its size is neither 1 nor the shape's");
    x = expandAtRunTime(b, loc, x, xi, target);
  }
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < type.getRank(); ++i) {
    int64_t d = i + (rank - type.getRank());
    exprs.push_back(type.getDimSize(i) == 1 && staticOut[d] != 1
                        ? b.getAffineConstantExpr(0)
                        : b.getAffineDimExpr(d));
  }
  Value init = tensor::EmptyOp::create(b, loc, outSizes, type.getElementType());
  SmallVector<AffineMap> maps = {AffineMap::get(rank, 0, exprs, b.getContext()),
                                 b.getMultiDimIdentityMap(rank)};
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(linalg::GenericOp::create(
                        b, loc, init.getType(), x, init, maps, par,
                        [](OpBuilder &nb, Location l, ValueRange a) {
                          linalg::YieldOp::create(nb, l, a[0]);
                        })
                        .getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Range, Size
//===----------------------------------------------------------------------===//

LogicalResult convertRange(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value startT = op.getInputs()[0], limitT = op.getInputs()[1],
        deltaT = op.getInputs()[2];
  Type element = rankedType(startT).getElementType();
  if (!element.isSignlessIntOrFloat())
    return nodeError(op) << "element type " << element << " is not supported";
  // Constants as constants, so that the count folds (and its source shows).
  auto scalar = [&](Value t) -> Value {
    if (isa<IntegerType>(element))
      if (auto c = getConstantInts(t); c && c->size() == 1)
        return scalarConstant(b, loc, element, static_cast<double>((*c)[0]));
    return readScalar(b, loc, t);
  };
  Value start = scalar(startT), limit = scalar(limitT), delta = scalar(deltaT);
  // n = max(ceil((limit - start) / delta), 0)
  Value count;
  if (auto f = dyn_cast<FloatType>(element)) {
    Value q = arith::DivFOp::create(b, loc,
                                    arith::SubFOp::create(b, loc, limit, start),
                                    delta);
    Value c = math::CeilOp::create(b, loc, q);
    count = arith::FPToSIOp::create(b, loc, b.getI64Type(), c);
  } else {
    count = arith::CeilDivSIOp::create(
        b, loc, b.createOrFold<arith::SubIOp>(loc, limit, start), delta);
  }
  Value n = b.createOrFold<arith::MaxSIOp>(loc, toIndex(b, loc, count), idx(b, loc, 0));
  // 0 … size-1 (a position table's range): the size itself, so that later
  // broadcasts see it equals the tensor dimension it came from.
  if (isa<IntegerType>(element)) {
    std::pair<Value, int64_t> source = sizeSource(n);
    if (source.first && source.second >= 0)
      n = tensor::DimOp::create(b, loc, source.first, source.second);
  }
  Value init = tensor::EmptyOp::create(b, loc, ArrayRef<OpFoldResult>{foldIndex(n)},
                                       element);
  SmallVector<utils::IteratorType> par = {utils::IteratorType::parallel};
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(1)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            Value i = linalg::IndexOp::create(nb, l, 0);
            Value iv = arith::IndexCastOp::create(nb, l, nb.getI64Type(), i);
            Value v;
            if (isa<FloatType>(element))
              v = arith::AddFOp::create(
                  nb, l, start,
                  arith::MulFOp::create(
                      nb, l, arith::SIToFPOp::create(nb, l, element, iv), delta));
            else
              v = arith::AddIOp::create(
                  nb, l, start,
                  arith::MulIOp::create(nb, l, castScalar(nb, l, iv, element),
                                        delta));
            linalg::YieldOp::create(nb, l, v);
          })
          .getResult(0));
  return success();
}

LogicalResult convertSize(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  if (!rankedType(x))
    return nodeError(op) << "needs a ranked input";
  Value n = idx(b, loc, 1);
  for (OpFoldResult s : tensor::getMixedSizes(b, loc, x))
    n = b.createOrFold<arith::MulIOp>(loc, n,
                              getValueOrCreateConstantIndexOp(b, loc, s));
  Value v = arith::IndexCastOp::create(b, loc, b.getI64Type(), n);
  results.push_back(tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get({}, b.getI64Type()), v));
  return success();
}

//===----------------------------------------------------------------------===//
// Split
//===----------------------------------------------------------------------===//

LogicalResult convertSplit(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", 0), type.getRank());
  if (failed(axis))
    return failure();
  int64_t parts = op.getNumResults();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  Value dim = getValueOrCreateConstantIndexOp(b, loc, sizes[*axis]);
  SmallVector<Value> lengths;
  if (Value split = getInput(op, 1)) {
    auto c = getConstantInts(split);
    if (!c)
      return nodeError(op) << "split must be a constant";
    if (static_cast<int64_t>(c->size()) != parts)
      return nodeError(op) << "split has " << c->size() << " entries for "
                           << parts << " outputs";
    for (int64_t v : *c)
      lengths.push_back(idx(b, loc, v));
  } else if (auto attr = getIntsAttr(op, "split")) {
    for (int64_t v : *attr)
      lengths.push_back(idx(b, loc, v));
  } else {
    // Equal parts (the last smaller when it does not divide, opset 18).
    Value each = b.createOrFold<arith::CeilDivSIOp>(loc, dim, idx(b, loc, parts));
    Value used = idx(b, loc, 0);
    for (int64_t i = 0; i < parts; ++i) {
      Value left = b.createOrFold<arith::SubIOp>(loc, dim, used);
      Value len = b.createOrFold<arith::MinSIOp>(loc, each, left);
      lengths.push_back(len);
      used = b.createOrFold<arith::AddIOp>(loc, used, len);
    }
  }
  // Given lengths must cover the axis exactly.
  if (getInput(op, 1) || getIntsAttr(op, "split")) {
    Value total = idx(b, loc, 0);
    for (Value len : lengths)
      total = b.createOrFold<arith::AddIOp>(loc, total, len);
    std::optional<int64_t> t = getConstantIntValue(total),
                           n = getConstantIntValue(dim);
    if (t && n && *t != *n)
      return nodeError(op) << "split lengths sum to " << *t << ", the axis has "
                           << *n;
    if (!t || !n)
      emitCheck(op, b,
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, total,
                                      dim),
                "split lengths do not sum to the size of the axis");
    for (Value len : lengths)
      if (std::optional<int64_t> c = getConstantIntValue(len); c && *c < 0)
        return nodeError(op) << "split length " << *c << " is negative";
  }
  Value offset = idx(b, loc, 0);
  for (Value len : lengths) {
    SmallVector<OpFoldResult> offsets(type.getRank(), b.getIndexAttr(0));
    SmallVector<OpFoldResult> partSizes(sizes);
    SmallVector<OpFoldResult> strides(type.getRank(), b.getIndexAttr(1));
    offsets[*axis] = foldIndex(offset);
    partSizes[*axis] = foldIndex(len);
    results.push_back(tensor::ExtractSliceOp::create(b, loc, x, offsets,
                                                     partSizes, strides));
    offset = b.createOrFold<arith::AddIOp>(loc, offset, len);
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Trilu
//===----------------------------------------------------------------------===//

LogicalResult convertTrilu(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type || type.getRank() < 2)
    return nodeError(op) << "needs an input of rank 2 or more";
  bool upper = getIntAttr(op, "upper", 1) != 0;
  Value k = idx(b, loc, 0);
  if (Value kIn = getInput(op, 1))
    k = toIndex(b, loc, readScalar(b, loc, kIn));
  int64_t rank = type.getRank();
  Type element = type.getElementType();
  FailureOr<Value> result = buildElementwise(
      op, b, x, element, [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value i = linalg::IndexOp::create(nb, l, rank - 2);
        Value j = linalg::IndexOp::create(nb, l, rank - 1);
        Value diff = arith::SubIOp::create(nb, l, j, i);
        // upper keeps j - i >= k, lower keeps j - i <= k.
        Value keep = arith::CmpIOp::create(
            nb, l, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
            diff, k);
        Value zero = element.isInteger(1)
                         ? arith::ConstantOp::create(nb, l, nb.getBoolAttr(false))
                         : scalarConstant(nb, l, element, 0);
        return arith::SelectOp::create(nb, l, keep, a[0], zero);
      });
  if (failed(result))
    return failure();
  results.push_back(*result);
  return success();
}

//===----------------------------------------------------------------------===//
// ArgMax / ArgMin
//===----------------------------------------------------------------------===//

LogicalResult argExtreme(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results, bool isMax) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type || !type.getElementType().isSignlessIntOrFloat())
    return nodeError(op) << "needs a ranked tensor of signless integers or "
                            "floats";
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, getIntAttr(op, "axis", 0), rank);
  if (failed(axis))
    return failure();
  bool keepDims = getIntAttr(op, "keepdims", 1) != 0;
  bool last = getIntAttr(op, "select_last_index", 0) != 0;
  Type element = type.getElementType();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), outSizes;
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    if (d == *axis) {
      iterators.push_back(utils::IteratorType::reduction);
      continue;
    }
    iterators.push_back(utils::IteratorType::parallel);
    outSizes.push_back(sizes[d]);
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  bool isFloat = isa<FloatType>(element);
  TypedAttr startAttr;
  if (isFloat)
    startAttr = b.getFloatAttr(element, isMax ? -INFINITY : INFINITY);
  else {
    unsigned w = element.getIntOrFloatBitWidth();
    startAttr = b.getIntegerAttr(element, isMax ? APInt::getSignedMinValue(w)
                                                : APInt::getSignedMaxValue(w));
  }
  Value valInit = linalg::FillOp::create(
                      b, loc, arith::ConstantOp::create(b, loc, startAttr).getResult(),
                      tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
                      .getResult(0);
  Value idxInit = linalg::FillOp::create(
                      b, loc, arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(-1)).getResult(),
                      tensor::EmptyOp::create(b, loc, outSizes, b.getI64Type()).getResult())
                      .getResult(0);
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, b.getContext());
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank), outMap, outMap};
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{valInit.getType(), idxInit.getType()}, x,
      ValueRange{valInit, idxInit}, maps, iterators,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value v = a[0], best = a[1], bestIdx = a[2];
        Value i = arith::IndexCastOp::create(nb, l, nb.getI64Type(),
                                             linalg::IndexOp::create(nb, l, *axis));
        Value better, equal;
        if (isFloat) {
          better = arith::CmpFOp::create(nb, l,
                                         isMax ? arith::CmpFPredicate::OGT
                                               : arith::CmpFPredicate::OLT,
                                         v, best);
          equal = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ, v, best);
        } else {
          better = arith::CmpIOp::create(nb, l,
                                         isMax ? arith::CmpIPredicate::sgt
                                               : arith::CmpIPredicate::slt,
                                         v, best);
          equal = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, v, best);
        }
        // Ties keep the first index, or take the last with select_last_index;
        // the first element always wins over the initial -1.
        Value unset = arith::CmpIOp::create(
            nb, l, arith::CmpIPredicate::eq, bestIdx,
            arith::ConstantOp::create(nb, l, nb.getI64IntegerAttr(-1)));
        Value take = arith::OrIOp::create(nb, l, better, unset);
        if (last)
          take = arith::OrIOp::create(nb, l, take, equal);
        linalg::YieldOp::create(
            nb, l,
            ValueRange{arith::SelectOp::create(nb, l, take, v, best),
                       arith::SelectOp::create(nb, l, take, i, bestIdx)});
      });
  Value result = generic.getResult(1);
  if (keepDims) {
    SmallVector<OpFoldResult> kept;
    unsigned next = 0;
    for (int64_t d = 0; d < rank; ++d)
      kept.push_back(d == *axis ? OpFoldResult(b.getIndexAttr(1))
                                : outSizes[next++]);
    result = reshapeTo(b, loc, result, kept);
  }
  results.push_back(result);
  return success();
}

LogicalResult convertArgMax(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  return argExtreme(op, b, results, true);
}
LogicalResult convertArgMin(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  return argExtreme(op, b, results, false);
}

//===----------------------------------------------------------------------===//
// Normalisation: qopt.layer_norm / qopt.rms_norm
//===----------------------------------------------------------------------===//

/// ONNX scale/bias may be broadcastable to the normalised shape; QOpt wants
/// it exactly: expand with a generic when they differ.
FailureOr<Value> toNormalizedShape(ONNXNodeOp op, OpBuilder &b, Value v,
                                   Value x, int64_t axis) {
  auto type = rankedType(v), xType = rankedType(x);
  ArrayRef<int64_t> normalized = xType.getShape().drop_front(axis);
  if (type.getShape() == normalized)
    return v;
  if (type.getRank() > static_cast<int64_t>(normalized.size()))
    return nodeError(op) << "scale/bias of rank " << type.getRank()
                         << " does not broadcast to the normalised shape";
  Location loc = op.getLoc();
  SmallVector<OpFoldResult> allSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> sizes(allSizes.begin() + axis, allSizes.end());
  int64_t rank = normalized.size();
  SmallVector<AffineExpr> exprs;
  for (int64_t i = 0; i < type.getRank(); ++i) {
    int64_t d = i + (rank - type.getRank());
    exprs.push_back(type.getDimSize(i) == 1 && normalized[d] != 1
                        ? b.getAffineConstantExpr(0)
                        : b.getAffineDimExpr(d));
  }
  Value init = tensor::EmptyOp::create(b, loc, sizes, type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  SmallVector<AffineMap> maps = {AffineMap::get(rank, 0, exprs, b.getContext()),
                                 b.getMultiDimIdentityMap(rank)};
  return linalg::GenericOp::create(b, loc, init.getType(), v, init, maps, par,
                                   [](OpBuilder &nb, Location l, ValueRange a) {
                                     linalg::YieldOp::create(nb, l, a[0]);
                                   })
      .getResult(0);
}

/// LayerNormalization's optional outputs: the f32 mean and inverse standard
/// deviation over the dims from `axis`, kept as size 1.
std::pair<Value, Value> layerNormStats(OpBuilder &b, Location loc, Value x,
                                       int64_t axis, double epsilon) {
  auto type = rankedType(x);
  int64_t rank = type.getRank();
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> lead(sizes.begin(), sizes.begin() + axis);
  SmallVector<AffineExpr> leadExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(d < axis ? utils::IteratorType::parallel
                                 : utils::IteratorType::reduction);
    if (d < axis)
      leadExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineMap leadMap = AffineMap::get(rank, 0, leadExprs, b.getContext());
  Value count = idx(b, loc, 1);
  for (int64_t d = axis; d < rank; ++d)
    count = arith::MulIOp::create(b, loc, count,
                                  getValueOrCreateConstantIndexOp(b, loc, sizes[d]));
  Value countF = arith::SIToFPOp::create(
      b, loc, f32, arith::IndexCastOp::create(b, loc, b.getI64Type(), count));
  // sum over the normalised dims of f(x, previous), divided by the count.
  auto meanOf = [&](Value previous,
                    function_ref<Value(OpBuilder &, Location, Value, Value)> f) {
    Value init = linalg::FillOp::create(
                     b, loc, scalarConstant(b, loc, f32, 0),
                     tensor::EmptyOp::create(b, loc, lead, f32).getResult())
                     .getResult(0);
    SmallVector<Value> inputs = {x};
    SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
    if (previous) {
      inputs.push_back(previous);
      maps.push_back(leadMap);
    }
    maps.push_back(leadMap);
    Value sum = linalg::GenericOp::create(
                    b, loc, init.getType(), inputs, init, maps, iterators,
                    [&](OpBuilder &nb, Location l, ValueRange a) {
                      Value v = f(nb, l, castScalar(nb, l, a[0], f32),
                                  previous ? a[1] : Value());
                      linalg::YieldOp::create(
                          nb, l, arith::AddFOp::create(nb, l, a.back(), v).getResult());
                    })
                    .getResult(0);
    SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(axis));
    SmallVector<utils::IteratorType> par(axis, utils::IteratorType::parallel);
    return linalg::GenericOp::create(
               b, loc, sum.getType(), sum,
               tensor::EmptyOp::create(b, loc, lead, f32).getResult(), idMaps, par,
               [&](OpBuilder &nb, Location l, ValueRange a) {
                 linalg::YieldOp::create(
                     nb, l, arith::DivFOp::create(nb, l, a[0], countF).getResult());
               })
        .getResult(0);
  };
  Value mean = meanOf(Value(), [](OpBuilder &, Location, Value v, Value) { return v; });
  Value var = meanOf(mean, [](OpBuilder &nb, Location l, Value v, Value m) {
    Value d = arith::SubFOp::create(nb, l, v, m);
    return Value(arith::MulFOp::create(nb, l, d, d));
  });
  SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(axis));
  SmallVector<utils::IteratorType> par(axis, utils::IteratorType::parallel);
  Value invStd = linalg::GenericOp::create(
                     b, loc, var.getType(), var,
                     tensor::EmptyOp::create(b, loc, lead, f32).getResult(), idMaps,
                     par,
                     [&](OpBuilder &nb, Location l, ValueRange a) {
                       Value s = math::SqrtOp::create(
                           nb, l, arith::AddFOp::create(
                                      nb, l, a[0], scalarConstant(nb, l, f32, epsilon)));
                       linalg::YieldOp::create(
                           nb, l, arith::DivFOp::create(nb, l, scalarConstant(nb, l, f32, 1), s)
                                      .getResult());
                     })
                     .getResult(0);
  SmallVector<OpFoldResult> kept(lead);
  kept.append(rank - axis, b.getIndexAttr(1));
  return {reshapeTo(b, loc, mean, kept), reshapeTo(b, loc, invStd, kept)};
}

LogicalResult normalization(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results, bool rms,
                            double defaultEpsilon) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], scale = getInput(op, 1), bias = getInput(op, 2);
  auto type = rankedType(x);
  if (!type || !isa<FloatType>(type.getElementType()) || !scale)
    return nodeError(op) << "needs a ranked float input and a scale";
  bool wantStats = false;
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    wantStats |= !op.getResult(i).use_empty();
  if (wantStats && rms)
    return nodeError(op) << "the InvStdDev output is not supported";
  if (getIntAttr(op, "stash_type", 1) != 1)
    return nodeError(op) << "only stash_type = 1 (statistics in float) is "
                            "supported";
  FailureOr<int64_t> axis =
      normalizeAxis(op, getIntAttr(op, "axis", -1), type.getRank());
  if (failed(axis))
    return failure();
  double epsilon = getFloatAttr(op, "epsilon", defaultEpsilon);
  FailureOr<Value> gamma = toNormalizedShape(op, b, scale, x, *axis);
  if (failed(gamma))
    return failure();
  Value beta;
  if (bias && !rms) {
    FailureOr<Value> expanded = toNormalizedShape(op, b, bias, x, *axis);
    if (failed(expanded))
      return failure();
    beta = *expanded;
  }
  if (rankedType(*gamma).getElementType() != type.getElementType() ||
      (beta && rankedType(beta).getElementType() != type.getElementType()))
    return nodeError(op) << "scale and bias must have the input's element type";
  FloatAttr eps = b.getF64FloatAttr(epsilon);
  IntegerAttr axisAttr = b.getI64IntegerAttr(*axis);
  Value y = rms ? Value(RMSNormOp::create(b, loc, x.getType(), x, *gamma, eps,
                                          axisAttr))
                : Value(LayerNormOp::create(b, loc, x.getType(), x, *gamma,
                                            beta, eps, axisAttr));
  results.push_back(y);
  if (wantStats) {
    // Mean and 1/sqrt(var + eps) in f32, with the normalised dims kept as 1.
    auto [mean, invStd] = layerNormStats(b, loc, x, *axis, epsilon);
    results.push_back(mean);
    results.push_back(invStd);
  } else {
    for (unsigned i = 1; i < op.getNumResults(); ++i)
      results.push_back(Value());
  }
  return success();
}

LogicalResult convertLayerNorm(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  return normalization(op, b, results, false, 1e-5);
}
LogicalResult convertRMSNorm(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  return normalization(op, b, results, true, 1e-5);
}

const HandlerEntry kHandlers[] = {
    {"", "Slice", 13, convertSlice},
    {"", "Expand", 13, convertExpand},
    {"", "Range", 11, convertRange},
    {"", "Size", 13, convertSize},
    {"", "Split", 13, convertSplit},
    {"", "Trilu", 14, convertTrilu},
    {"", "ArgMax", 13, convertArgMax},
    {"", "ArgMin", 13, convertArgMin},
    {"", "LayerNormalization", 17, convertLayerNorm},
    {"", "RMSNormalization", 23, convertRMSNorm},
    // ONNX Runtime registers it in the default domain.
    {"", "SimplifiedLayerNormalization", 1, convertRMSNorm},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getMoreTensorHandlers() {
  return kHandlers;
}
