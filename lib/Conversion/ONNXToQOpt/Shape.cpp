//===- Shape.cpp - ONNX shape and data-movement operators -----------------===//
//
// Constant, ConstantOfShape, Range, Shape, Size, Reshape, Flatten, Squeeze,
// Unsqueeze, Transpose, Expand, Tile, Concat, Split, Slice, Trilu and Pad;
// shape arithmetic stays foldable, so that sizes can be traced.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

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
  return b.createOrFold<arith::MinSIOp>(
      loc, b.createOrFold<arith::MaxSIOp>(loc, v, lo), hi);
}

OpFoldResult foldIndex(Value v) {
  if (std::optional<int64_t> c = getConstantIntValue(v))
    return OpFoldResult(IntegerAttr::get(IndexType::get(v.getContext()), *c));
  return v;
}

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

//===----------------------------------------------------------------------===//
// Constant, ConstantOfShape, Range, Shape, Size
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
    Value q = arith::DivFOp::create(
        b, loc, arith::SubFOp::create(b, loc, limit, start), delta);
    Value c = math::CeilOp::create(b, loc, q);
    count = arith::FPToSIOp::create(b, loc, b.getI64Type(), c);
  } else {
    count = arith::CeilDivSIOp::create(
        b, loc, b.createOrFold<arith::SubIOp>(loc, limit, start), delta);
  }
  Value n = b.createOrFold<arith::MaxSIOp>(loc, toIndex(b, loc, count),
                                           idx(b, loc, 0));
  // 0 … size-1 (a position table's range): the size itself, so that later
  // broadcasts see it equals the tensor dimension it came from.
  if (isa<IntegerType>(element)) {
    std::pair<Value, int64_t> source = sizeSource(n);
    if (source.first && source.second >= 0)
      n = tensor::DimOp::create(b, loc, source.first, source.second);
  }
  Value init = tensor::EmptyOp::create(
      b, loc, ArrayRef<OpFoldResult>{foldIndex(n)}, element);
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
                      nb, l, arith::SIToFPOp::create(nb, l, element, iv),
                      delta));
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

LogicalResult convertShape(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
  auto resultType = RankedTensorType::get({static_cast<int64_t>(dims.size())},
                                          b.getI64Type());
  results.push_back(tensor::FromElementsOp::create(b, loc, resultType, dims));
  return success();
}

LogicalResult convertSize(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  Value n = idx(b, loc, 1);
  for (OpFoldResult s : tensor::getMixedSizes(b, loc, x))
    n = b.createOrFold<arith::MulIOp>(
        loc, n, getValueOrCreateConstantIndexOp(b, loc, s));
  Value v = arith::IndexCastOp::create(b, loc, b.getI64Type(), n);
  results.push_back(tensor::FromElementsOp::create(
      b, loc, RankedTensorType::get({}, b.getI64Type()), v));
  return success();
}

//===----------------------------------------------------------------------===//
// Reshape, Flatten, Squeeze, Unsqueeze, Transpose
//===----------------------------------------------------------------------===//

LogicalResult convertReshape(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
        Value isZero =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, zero);
        v = arith::SelectOp::create(b, loc, isZero,
                                    indexValue(b, loc, inSizes[i]), v);
      }
      sizes.push_back(v);
      continue;
    }
    if (*c == 0 && !allowZero) {
      if (static_cast<int64_t>(i) >= type.getRank())
        return nodeError(op)
               << "shape entry " << i << " is 0 (copy) but the input has rank "
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
      Value isNeg =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, minusOne);
      others.push_back(
          arith::SelectOp::create(b, loc, isNeg,
                                  arith::ConstantIndexOp::create(b, loc, 1), v)
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
      auto it =
          llvm::find_if(factors, [&](auto &f) { return f.first == source; });
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
    std::optional<int64_t> total =
        getConstantIntValue(product(b, loc, inSizes));
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
      Value isNeg =
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, v, minusOne);
      sizes[i] =
          arith::SelectOp::create(b, loc, isNeg, resolve(i), v).getResult();
    }
  // The element count must be kept (a run-time shape can say otherwise).
  OpFoldResult outNumel = product(b, loc, sizes);
  std::optional<int64_t> inCount = getConstantIntValue(numel),
                         outCount = getConstantIntValue(outNumel);
  if (inCount && outCount) {
    if (*inCount != *outCount)
      return nodeError(op) << "cannot reshape " << *inCount << " elements into "
                           << *outCount;
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
    emitCheck(op, b, ok, "the shape does not keep the input's element count");
  }
  results.push_back(reshapeTo(b, loc, x, sizes));
  return success();
}

LogicalResult convertFlatten(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
  results.push_back(
      reshapeTo(b, loc, x, {product(b, loc, outer), product(b, loc, inner)}));
  return success();
}

LogicalResult squeezeOrUnsqueeze(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results,
                                 bool unsqueeze) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
      if (type.isDynamicDim(*axis))
        emitEqualSizes(
            op, b, tensor::getMixedSize(b, loc, x, *axis), b.getIndexAttr(1),
            "cannot squeeze axis " + Twine(*axis) + ": its size is not 1");
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

LogicalResult convertTranspose(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
// Expand, Tile
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
    std::optional<int64_t> s = si >= 0 && constant
                                   ? std::optional<int64_t>((*constant)[si])
                                   : std::nullopt;
    int64_t xs = xi >= 0 ? type.getDimSize(xi) : 1;
    if (si < 0) {
      outSizes.push_back(inSizes[xi]);
    } else if (s && *s != 1) {
      if (xs != 1 && !ShapedType::isDynamic(xs) && xs != *s)
        return nodeError(op)
               << "cannot expand dimension of size " << xs << " to " << *s;
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
        Value one = b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::eq,
                                                  v, idx(b, loc, 1));
        outSizes.push_back(
            arith::SelectOp::create(
                b, loc, one,
                getValueOrCreateConstantIndexOp(b, loc, inSizes[xi]), v)
                .getResult());
        if (ShapedType::isDynamic(xs) && sizeSource(v) != sizeSource(x, xi))
          runtimeExpand.push_back({xi, d});
        // A static size other than 1 only expands to itself.
        if (!ShapedType::isDynamic(xs))
          emitCheck(op, b, isSizeOrOne(b, loc, v, idx(b, loc, xs)),
                    "the shape's entry " + Twine(si) +
                        " is neither 1 nor the input's size " + Twine(xs));
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
  results.push_back(
      linalg::GenericOp::create(b, loc, init.getType(), x, init, maps, par,
                                [](OpBuilder &nb, Location l, ValueRange a) {
                                  linalg::YieldOp::create(nb, l, a[0]);
                                })
          .getResult(0));
  return success();
}

LogicalResult convertTile(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> repeats =
      getConstantInts(op.getInputs()[1]);
  if (!type || !repeats || (int64_t)repeats->size() != type.getRank())
    return nodeError(op) << "needs a ranked input and constant repeats, one "
                            "per dimension";
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), out;
  for (int64_t d = 0; d < rank; ++d) {
    if ((*repeats)[d] < 0)
      return nodeError(op) << "repeats must be non-negative";
    if (std::optional<int64_t> c = getConstantIntValue(sizes[d]))
      out.push_back(b.getIndexAttr(*c * (*repeats)[d]));
    else
      out.push_back(arith::MulIOp::create(
                        b, loc, cast<Value>(sizes[d]),
                        arith::ConstantIndexOp::create(b, loc, (*repeats)[d]))
                        .getResult());
  }
  Value init = tensor::EmptyOp::create(b, loc, out, type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(rank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d)
              coords.push_back(arith::RemUIOp::create(
                  nb, l, linalg::IndexOp::create(nb, l, d),
                  getValueOrCreateConstantIndexOp(nb, l, sizes[d])));
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, x, coords).getResult());
          })
          .getResult(0));
  return success();
}

//===----------------------------------------------------------------------===//
// Concat, Split, Slice
//===----------------------------------------------------------------------===//

LogicalResult convertConcat(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  SmallVector<Value> inputs(op.getInputs());
  FailureOr<TypedValue<RankedTensorType>> first =
      rankedInput(op, 0, "needs ranked inputs");
  if (failed(first))
    return failure();
  auto type = first->getType();
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

LogicalResult convertSplit(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
    Value each =
        b.createOrFold<arith::CeilDivSIOp>(loc, dim, idx(b, loc, parts));
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
      emitCheck(
          op, b,
          arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, total, dim),
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
    results.push_back(
        tensor::ExtractSliceOp::create(b, loc, x, offsets, partSizes, strides));
    offset = b.createOrFold<arith::AddIOp>(loc, offset, len);
  }
  return success();
}

LogicalResult convertSlice(ONNXNodeOp op, OpBuilder &b,
                           SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
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
  if (cSteps && static_cast<int64_t>(cSteps->size()) != n)
    return nodeError(op) << "starts and steps differ in length";
  if (cStarts && static_cast<int64_t>(cStarts->size()) != n)
    return nodeError(op) << "starts has " << cStarts->size()
                         << " entries for a length of " << n;
  // ends: a constant of the same length, or a 1-D tensor checked to have it.
  auto endsType = rankedType(ends);
  if (!endsType || endsType.getRank() != 1)
    return nodeError(op) << "ends must be 1-D";
  if (cEnds ? static_cast<int64_t>(cEnds->size()) != n
            : (!endsType.isDynamicDim(0) && endsType.getDimSize(0) != n))
    return nodeError(op) << "starts and ends differ in length";
  if (!cEnds && endsType.isDynamicDim(0))
    emitEqualSizes(op, b, tensor::getMixedSize(b, loc, ends, 0),
                   b.getIndexAttr(n), "starts and ends differ in length");

  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<Value> offsets(rank, idx(b, loc, 0)),
      strides(rank, idx(b, loc, 1));
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
        int64_t v =
            std::clamp<int64_t>((*c)[i], -(int64_t(1) << 62), int64_t(1) << 62);
        return idx(b, loc, v);
      }
      return entryAt(b, loc, t, c, i);
    };
    Value dim = getValueOrCreateConstantIndexOp(b, loc, inSizes[*axis]);
    Value start = bounded(starts, cStarts), end = bounded(ends, cEnds);
    Value zero = idx(b, loc, 0);
    auto wrap = [&](Value v) {
      Value neg = b.createOrFold<arith::CmpIOp>(loc, arith::CmpIPredicate::slt,
                                                v, zero);
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
  // Forward steps: a strided view, whose offsets and sizes the clamping
  // keeps in bounds (bufferized as a subview; differentiated as data
  // movement).
  if (!cSteps || llvm::all_of(*cSteps, [](int64_t s) { return s > 0; })) {
    SmallVector<OpFoldResult> viewOffsets, viewStrides;
    for (int64_t d = 0; d < rank; ++d) {
      viewOffsets.push_back(foldIndex(offsets[d]));
      viewStrides.push_back(foldIndex(strides[d]));
    }
    results.push_back(tensor::ExtractSliceOp::create(b, loc, x, viewOffsets,
                                                     outSizes, viewStrides));
    return success();
  }
  // Backward steps: a gather. Fold the index arithmetic so static slices
  // get static types.
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
                  nb, l, offsets[d],
                  arith::MulIOp::create(nb, l, i, strides[d])));
            }
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, x, coords).getResult());
          })
          .getResult(0);
  results.push_back(result);
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
        Value keep = arith::CmpIOp::create(nb, l,
                                           upper ? arith::CmpIPredicate::sge
                                                 : arith::CmpIPredicate::sle,
                                           diff, k);
        Value zero =
            element.isInteger(1)
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
// Pad
//===----------------------------------------------------------------------===//

/// Pad in every mode (constant, edge, reflect, wrap), with constant or
/// run-time pads (negative ones crop), as a gather: output index o reads
/// input index o - pad_begin, mapped into range as the mode says.
LogicalResult convertPad(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
  StringRef mode = getStringAttr(op, "mode", "constant");
  if (mode != "constant" && mode != "edge" && mode != "reflect" &&
      mode != "wrap")
    return nodeError(op) << "mode '" << mode << "' is unknown";
  Value padsIn = getInput(op, 1);
  auto padsType = rankedType(padsIn);
  if (!padsType || padsType.getRank() != 1 ||
      !padsType.getElementType().isInteger(64))
    return nodeError(op) << "pads must be a 1-D int64 tensor";
  int64_t rank = type.getRank();
  SmallVector<int64_t> axes;
  if (Value axesIn = getInput(op, 3)) {
    auto c = getConstantInts(axesIn);
    if (!c)
      return nodeError(op) << "axes must be a constant";
    for (int64_t a : *c) {
      FailureOr<int64_t> axis = normalizeAxis(op, a, rank);
      if (failed(axis))
        return failure();
      axes.push_back(*axis);
    }
  } else {
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  int64_t n = axes.size();
  if (!padsType.isDynamicDim(0) && padsType.getDimSize(0) != 2 * n)
    return nodeError(op) << "pads has " << padsType.getDimSize(0)
                         << " entries for " << n << " axes";
  if (padsType.isDynamicDim(0))
    emitEqualSizes(op, b, tensor::getMixedSize(b, loc, padsIn, 0),
                   b.getIndexAttr(2 * n),
                   "pads must have " + Twine(2 * n) + " entries");
  std::optional<SmallVector<int64_t>> constPads = getConstantInts(padsIn);
  // Begin / end pads per dimension, as index values (constants folded).
  SmallVector<OpFoldResult> begin(rank, b.getIndexAttr(0)),
      endPad(rank, b.getIndexAttr(0));
  for (int64_t i = 0; i < n; ++i)
    for (int side = 0; side < 2; ++side) {
      OpFoldResult &slot = side ? endPad[axes[i]] : begin[axes[i]];
      if (constPads) {
        slot = b.getIndexAttr((*constPads)[side * n + i]);
        continue;
      }
      Value e = tensor::ExtractOp::create(
          b, loc, padsIn,
          ValueRange{arith::ConstantIndexOp::create(b, loc, side * n + i)});
      slot =
          arith::IndexCastOp::create(b, loc, b.getIndexType(), e).getResult();
    }
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x),
                            outSizes;
  SmallVector<int64_t> shape;
  for (int64_t d = 0; d < rank; ++d) {
    std::optional<int64_t> in = getConstantIntValue(inSizes[d]),
                           lo = getConstantIntValue(begin[d]),
                           hi = getConstantIntValue(endPad[d]);
    if (in && lo && hi) {
      if (*in + *lo + *hi < 0)
        return nodeError(op) << "pads crop dimension " << d << " below zero";
      outSizes.push_back(b.getIndexAttr(*in + *lo + *hi));
      shape.push_back(*in + *lo + *hi);
      continue;
    }
    Value sum = arith::AddIOp::create(
        b, loc, getValueOrCreateConstantIndexOp(b, loc, inSizes[d]),
        arith::AddIOp::create(
            b, loc, getValueOrCreateConstantIndexOp(b, loc, begin[d]),
            getValueOrCreateConstantIndexOp(b, loc, endPad[d])));
    outSizes.push_back(sum);
    shape.push_back(ShapedType::kDynamic);
  }
  // Every mode reads some input element per output element.
  for (int64_t d = 0; d < rank; ++d)
    if (std::optional<int64_t> in = getConstantIntValue(inSizes[d]))
      if (*in == 0 && shape[d] != 0)
        return nodeError(op) << "cannot pad empty dimension " << d;
  Value value;
  if (Value v = getInput(op, 2)) {
    SmallVector<Value> zeros(cast<RankedTensorType>(v.getType()).getRank(),
                             arith::ConstantIndexOp::create(b, loc, 0));
    value = tensor::ExtractOp::create(b, loc, v, zeros);
  } else {
    value = scalarConstant(b, loc, type.getElementType(), 0);
  }
  SmallVector<Value> beginV, lenV;
  for (int64_t d = 0; d < rank; ++d) {
    beginV.push_back(getValueOrCreateConstantIndexOp(b, loc, begin[d]));
    lenV.push_back(getValueOrCreateConstantIndexOp(b, loc, inSizes[d]));
  }
  Value init = tensor::EmptyOp::create(b, loc, outSizes, type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  Value y =
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(rank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            Value zero = arith::ConstantIndexOp::create(nb, l, 0);
            Value one = arith::ConstantIndexOp::create(nb, l, 1);
            Value inside = arith::ConstantIntOp::create(nb, l, 1, 1);
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d) {
              Value i = arith::SubIOp::create(
                  nb, l, linalg::IndexOp::create(nb, l, d), beginV[d]);
              Value len = lenV[d],
                    last = arith::SubIOp::create(nb, l, len, one);
              if (mode == "constant") {
                Value ge = arith::CmpIOp::create(
                    nb, l, arith::CmpIPredicate::sge, i, zero);
                Value lt = arith::CmpIOp::create(
                    nb, l, arith::CmpIPredicate::slt, i, len);
                inside = arith::AndIOp::create(
                    nb, l, inside, arith::AndIOp::create(nb, l, ge, lt));
                // Any in-range index for the (discarded) read outside.
                i = arith::MaxSIOp::create(
                    nb, l, zero, arith::MinSIOp::create(nb, l, i, last));
              } else if (mode == "edge") {
                i = arith::MaxSIOp::create(
                    nb, l, zero, arith::MinSIOp::create(nb, l, i, last));
              } else if (mode == "wrap") {
                Value r = arith::RemSIOp::create(nb, l, i, len);
                Value neg = arith::CmpIOp::create(
                    nb, l, arith::CmpIPredicate::slt, r, zero);
                i = arith::SelectOp::create(
                    nb, l, neg, arith::AddIOp::create(nb, l, r, len), r);
              } else { // reflect, period 2(len - 1), no edge repeat
                Value period = arith::MulIOp::create(
                    nb, l, last, arith::ConstantIndexOp::create(nb, l, 2));
                Value safe = arith::MaxSIOp::create(nb, l, period, one);
                Value r = arith::RemSIOp::create(nb, l, i, safe);
                Value neg = arith::CmpIOp::create(
                    nb, l, arith::CmpIPredicate::slt, r, zero);
                r = arith::SelectOp::create(
                    nb, l, neg, arith::AddIOp::create(nb, l, r, safe), r);
                Value over = arith::CmpIOp::create(
                    nb, l, arith::CmpIPredicate::sgt, r, last);
                i = arith::SelectOp::create(
                    nb, l, over, arith::SubIOp::create(nb, l, period, r), r);
                // A dimension of size 1 reflects onto itself.
                i = arith::MinSIOp::create(nb, l, i, last);
              }
              coords.push_back(i);
            }
            Value v = tensor::ExtractOp::create(nb, l, x, coords);
            if (mode == "constant")
              v = arith::SelectOp::create(nb, l, inside, v, value);
            linalg::YieldOp::create(nb, l, v);
          })
          .getResult(0);
  if (y.getType() != RankedTensorType::get(shape, type.getElementType()))
    y = tensor::CastOp::create(
        b, loc, RankedTensorType::get(shape, type.getElementType()), y);
  results.push_back(y);
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Constant", 13, convertConstant},
    {"", "ConstantOfShape", 9, convertConstantOfShape},
    {"", "Range", 11, convertRange},
    {"", "Shape", 13, convertShape},
    {"", "Size", 13, convertSize},
    {"", "Reshape", 13, convertReshape},
    {"", "Flatten", 13, convertFlatten},
    {"", "Squeeze", 13, convertSqueeze},
    {"", "Unsqueeze", 13, convertUnsqueeze},
    {"", "Transpose", 13, convertTranspose},
    {"", "Expand", 13, convertExpand},
    {"", "Tile", 13, convertTile},
    {"", "Concat", 13, convertConcat},
    {"", "Split", 13, convertSplit},
    {"", "Slice", 13, convertSlice},
    {"", "Trilu", 14, convertTrilu},
    {"", "Pad", 13, convertPad},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getShapeHandlers() {
  return kHandlers;
}
