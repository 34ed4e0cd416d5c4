//===- IndexOps.cpp - ONNX GatherElements, Tile, CumSum, Einsum, ... ------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

LogicalResult convertGatherElements(ONNXNodeOp op, OpBuilder &b,
                                    SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dType = rankedType(data), iType = rankedType(indices);
  if (!dType || !iType || dType.getRank() != iType.getRank() ||
      !iType.getElementType().isSignlessInteger())
    return nodeError(op) << "needs data and integer indices of the same rank";
  int64_t rank = dType.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, getIntAttr(op, "axis", 0), rank);
  if (failed(axis))
    return failure();
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  Value axisSize = getValueOrCreateConstantIndexOp(b, loc, dataSizes[*axis]);
  if (failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))))
    return failure();
  // Along the other axes the indices' positions address the data directly.
  if (failed(checkSizesWithin(op, b, indexSizes, dataSizes, *axis)))
    return failure();
  Value init = tensor::EmptyOp::create(b, loc, indexSizes,
                                       dType.getElementType());
  SmallVector<AffineMap> maps(2, b.getMultiDimIdentityMap(rank));
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), indices, init, maps, par,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value idx = arith::IndexCastOp::create(nb, l, nb.getIndexType(), a[0]);
            Value zero = arith::ConstantIndexOp::create(nb, l, 0);
            Value neg = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, idx, zero);
            idx = arith::SelectOp::create(nb, l, neg,
                                          arith::AddIOp::create(nb, l, idx, axisSize), idx);
            SmallVector<Value> coords;
            for (int64_t d = 0; d < rank; ++d)
              coords.push_back(d == *axis ? idx
                                          : Value(linalg::IndexOp::create(nb, l, d)));
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, data, coords).getResult());
          })
          .getResult(0));
  return success();
}

LogicalResult convertTile(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> repeats = getConstantInts(op.getInputs()[1]);
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

LogicalResult convertCumSum(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> axisC = getConstantInts(op.getInputs()[1]);
  if (!type || !axisC || axisC->size() != 1)
    return nodeError(op) << "needs a ranked input and a constant axis";
  int64_t rank = type.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, (*axisC)[0], rank);
  if (failed(axis))
    return failure();
  bool exclusive = getIntAttr(op, "exclusive", 0) != 0;
  bool reverse = getIntAttr(op, "reverse", 0) != 0;
  // y[..., i, ...] = sum over j of x[..., j, ...] with j < i (or <=; or >
  // for reverse): a reduction over a second copy of the axis, masked.
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  int64_t loops = rank + 1;
  SmallVector<AffineExpr> xExprs, outExprs;
  for (int64_t d = 0; d < rank; ++d) {
    outExprs.push_back(b.getAffineDimExpr(d));
    xExprs.push_back(d == *axis ? b.getAffineDimExpr(rank) : b.getAffineDimExpr(d));
  }
  Type element = type.getElementType();
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, sizes, element).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(rank, utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  MLIRContext *ctx = b.getContext();
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), x, init,
          {AffineMap::get(loops, 0, xExprs, ctx), AffineMap::get(loops, 0, outExprs, ctx)},
          iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value i = linalg::IndexOp::create(nb, l, *axis);
            Value j = linalg::IndexOp::create(nb, l, rank);
            arith::CmpIPredicate pred =
                reverse ? (exclusive ? arith::CmpIPredicate::ugt : arith::CmpIPredicate::uge)
                        : (exclusive ? arith::CmpIPredicate::ult : arith::CmpIPredicate::ule);
            Value take = arith::CmpIOp::create(nb, l, pred, j, i);
            Value zero = scalarConstant(nb, l, element, 0);
            Value v = arith::SelectOp::create(nb, l, take, a[0], zero);
            Value r = isa<FloatType>(element)
                          ? Value(arith::AddFOp::create(nb, l, a[1], v))
                          : Value(arith::AddIOp::create(nb, l, a[1], v));
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0));
  return success();
}

/// Einsum without ellipses or repeated letters within one operand: one
/// linalg.generic, letters missing from the output summed.
LogicalResult convertEinsum(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  std::string eq = getStringAttr(op, "equation", "").str();
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  size_t arrow = eq.find("->");
  if (arrow == std::string::npos || eq.find("...") != std::string::npos)
    return nodeError(op) << "only explicit equations (with '->', without "
                            "'...') are supported";
  SmallVector<StringRef> terms;
  StringRef(eq).substr(0, arrow).split(terms, ',');
  StringRef output = StringRef(eq).substr(arrow + 2);
  if (terms.size() != op.getInputs().size())
    return nodeError(op) << "equation has " << terms.size() << " operands, the "
                         << "node " << op.getInputs().size();
  std::string letters;
  for (StringRef t : terms)
    for (char c : t)
      if (letters.find(c) == std::string::npos)
        letters.push_back(c);
  // Output letters first (parallel), then the summed ones.
  std::string order(output.str());
  for (char c : letters)
    if (order.find(c) == std::string::npos)
      order.push_back(c);
  int64_t loops = order.size();
  auto dimOf = [&](char c) { return b.getAffineDimExpr(order.find(c)); };
  SmallVector<AffineMap> maps;
  SmallVector<OpFoldResult> letterSize(loops);
  Type element;
  for (auto [t, v] : llvm::zip(terms, op.getInputs())) {
    auto type = rankedType(v);
    if (!type || (int64_t)t.size() != type.getRank())
      return nodeError(op) << "operand '" << t << "' does not match its rank";
    element = type.getElementType();
    SmallVector<AffineExpr> exprs;
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, v);
    for (auto [i, c] : llvm::enumerate(t)) {
      if (t.count(c) != 1)
        return nodeError(op) << "repeated letters (diagonals) are not supported";
      exprs.push_back(dimOf(c));
      letterSize[order.find(c)] = sizes[i];
    }
    maps.push_back(AffineMap::get(loops, 0, exprs, b.getContext()));
  }
  SmallVector<AffineExpr> outExprs;
  SmallVector<OpFoldResult> outSizes;
  for (char c : output) {
    if (letters.find(c) == std::string::npos)
      return nodeError(op) << "output letter '" << c << "' is in no operand";
    outExprs.push_back(dimOf(c));
    outSizes.push_back(letterSize[order.find(c)]);
  }
  maps.push_back(AffineMap::get(loops, 0, outExprs, b.getContext()));
  SmallVector<utils::IteratorType> iterators(output.size(),
                                             utils::IteratorType::parallel);
  iterators.append(loops - output.size(), utils::IteratorType::reduction);
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
                   .getResult(0);
  bool isFloat = isa<FloatType>(element);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), op.getInputs(), init, maps, iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value p = a[0];
            for (Value v : a.drop_front().drop_back())
              p = isFloat ? Value(arith::MulFOp::create(nb, l, p, v))
                          : Value(arith::MulIOp::create(nb, l, p, v));
            Value r = isFloat ? Value(arith::AddFOp::create(nb, l, a.back(), p))
                              : Value(arith::AddIOp::create(nb, l, a.back(), p));
            linalg::YieldOp::create(nb, l, r);
          })
          .getResult(0));
  return success();
}

/// com.microsoft SkipLayerNormalization: LayerNorm(x + skip (+ bias)).
LogicalResult convertSkipLayerNorm(ONNXNodeOp op, OpBuilder &b,
                                   SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], skip = getInput(op, 1);
  Value gamma = getInput(op, 2), beta = getInput(op, 3), bias = getInput(op, 4);
  auto type = rankedType(x);
  if (!type || !skip || !gamma || !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "needs float input, skip and gamma";
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    if (i != 3 && !op.getResult(i).use_empty())
      return nodeError(op) << "only the output and the input+skip sum may "
                              "be used";
  SmallVector<Value> terms = {x, skip};
  if (bias)
    terms.push_back(bias);
  FailureOr<Value> sum = buildElementwise(
      op, b, terms, type.getElementType(),
      [](OpBuilder &nb, Location l, ValueRange a) {
        Value s = a[0];
        for (Value v : a.drop_front())
          s = arith::AddFOp::create(nb, l, s, v);
        return s;
      });
  if (failed(sum))
    return failure();
  auto sumType = cast<RankedTensorType>(sum->getType());
  double eps = getFloatAttr(op, "epsilon", 1e-12);
  if (rankedType(gamma).getRank() != 1 || (beta && rankedType(beta).getRank() != 1))
    return nodeError(op) << "gamma and beta must be 1-D";
  Value y = LayerNormOp::create(b, loc, sumType, *sum, gamma, beta,
                                b.getF64FloatAttr(eps), b.getI64IntegerAttr(-1));
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(i == 3 ? *sum : Value());
  return success();
}


/// Resize (opset 11+): nearest or (multi)linear, the usual coordinate
/// transformations, constant scales or sizes (optionally for `axes`).
LogicalResult convertResize(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  if (!type)
    return nodeError(op) << "needs a ranked input";
  int64_t rank = type.getRank();
  StringRef mode = getStringAttr(op, "mode", "nearest");
  StringRef coord =
      getStringAttr(op, "coordinate_transformation_mode", "half_pixel");
  StringRef nearestMode = getStringAttr(op, "nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear")
    return nodeError(op) << "mode '" << mode
                         << "' is not supported (nearest and linear are)";
  if (coord != "half_pixel" && coord != "half_pixel_symmetric" &&
      coord != "pytorch_half_pixel" && coord != "align_corners" &&
      coord != "asymmetric")
    return nodeError(op) << "coordinate_transformation_mode '" << coord
                         << "' is not supported";
  if (nearestMode != "round_prefer_floor" && nearestMode != "round_prefer_ceil" &&
      nearestMode != "floor" && nearestMode != "ceil")
    return nodeError(op) << "nearest_mode '" << nearestMode << "' is unknown";
  if (getIntAttr(op, "antialias", 0))
    return nodeError(op) << "antialias is not supported";
  if (getStringAttr(op, "keep_aspect_ratio_policy", "stretch") != "stretch")
    return nodeError(op) << "keep_aspect_ratio_policy other than stretch is "
                            "not supported";
  if (mode == "linear" && !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "linear mode needs a float input";
  SmallVector<int64_t> axes;
  if (std::optional<SmallVector<int64_t>> a = getIntsAttr(op, "axes")) {
    for (int64_t axis : *a) {
      FailureOr<int64_t> n = normalizeAxis(op, axis, rank, "axes");
      if (failed(n))
        return failure();
      axes.push_back(*n);
    }
  } else {
    for (int64_t d = 0; d < rank; ++d)
      axes.push_back(d);
  }
  // Scales or sizes: constants (as exporters write them) or run-time
  // values; an empty tensor stands for an absent input.
  auto present = [](Value v) {
    auto t = rankedType(v);
    return t && !(t.hasStaticShape() && t.getNumElements() == 0);
  };
  Value scalesIn = getInput(op, 2), sizesIn = getInput(op, 3);
  if (!present(scalesIn))
    scalesIn = Value();
  if (!present(sizesIn))
    sizesIn = Value();
  if (!scalesIn == !sizesIn)
    return nodeError(op) << "needs exactly one of scales or sizes";
  Value given = scalesIn ? scalesIn : sizesIn;
  auto givenType = rankedType(given);
  if (givenType.getRank() != 1 ||
      (!givenType.isDynamicDim(0) &&
       givenType.getDimSize(0) != static_cast<int64_t>(axes.size())))
    return nodeError(op) << "needs one scale or size per resized axis ("
                         << axes.size() << ")";
  if (scalesIn && !isa<FloatType>(givenType.getElementType()))
    return nodeError(op) << "scales must be floats";
  std::optional<SmallVector<double>> scales = getConstantFloats(scalesIn);
  std::optional<SmallVector<int64_t>> sizes = getConstantInts(sizesIn);

  // Per dimension: output size and (when resized) the scale, as index
  // values / f64 values computed once outside the loop.
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes(inSizes);
  SmallVector<Value> scaleOf(rank), inLen(rank), outLen(rank);
  SmallVector<bool> resized(rank, false);
  Type f64 = b.getF64Type();
  auto toF64 = [&](OpBuilder &nb, Location l, Value index) -> Value {
    return arith::SIToFPOp::create(
        nb, l, f64, arith::IndexCastOp::create(nb, l, nb.getI64Type(), index));
  };
  auto extracted = [&](int64_t i) -> Value {
    return tensor::ExtractOp::create(
        b, loc, given, ValueRange{arith::ConstantIndexOp::create(b, loc, i)});
  };
  for (auto [i, d] : llvm::enumerate(axes)) {
    Value in = getValueOrCreateConstantIndexOp(b, loc, inSizes[d]);
    if (scalesIn) {
      Value sc;
      if (scales) {
        double s = (*scales)[i];
        if (!(s > 0))
          return nodeError(op) << "scales must be positive";
        if (s == 1.0)
          continue;
        sc = arith::ConstantOp::create(b, loc, b.getF64FloatAttr(s));
      } else {
        sc = arith::ExtFOp::create(b, loc, f64, extracted(i));
      }
      Value out = arith::FPToSIOp::create(
          b, loc, b.getI64Type(),
          math::FloorOp::create(b, loc,
                                arith::MulFOp::create(b, loc, toF64(b, loc, in), sc)));
      outSizes[d] = getAsOpFoldResult(
          arith::IndexCastOp::create(b, loc, b.getIndexType(), out).getResult());
      scaleOf[d] = sc;
    } else {
      Value out;
      if (sizes) {
        int64_t size = (*sizes)[i];
        if (size < 0)
          return nodeError(op) << "sizes must be non-negative";
        std::optional<int64_t> staticIn = getConstantIntValue(inSizes[d]);
        if (staticIn && *staticIn == size)
          continue;
        outSizes[d] = b.getIndexAttr(size);
        out = arith::ConstantIndexOp::create(b, loc, size);
      } else {
        out = arith::IndexCastOp::create(b, loc, b.getIndexType(), extracted(i));
        outSizes[d] = out;
      }
      scaleOf[d] = arith::DivFOp::create(b, loc, toF64(b, loc, out),
                                         toF64(b, loc, in));
    }
    resized[d] = true;
    inLen[d] = in;
    outLen[d] = getValueOrCreateConstantIndexOp(b, loc, outSizes[d]);
  }

  Type element = type.getElementType();
  Value init = tensor::EmptyOp::create(b, loc, outSizes, element);
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  Value result =
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(rank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            auto f = [&](double v) -> Value {
              return arith::ConstantOp::create(nb, l, nb.getF64FloatAttr(v));
            };
            Value zeroI = arith::ConstantIndexOp::create(nb, l, 0);
            Value oneI = arith::ConstantIndexOp::create(nb, l, 1);
            auto clampIndex = [&](Value i, Value len) -> Value {
              Value last = arith::SubIOp::create(nb, l, len, oneI);
              return arith::MaxSIOp::create(
                  nb, l, zeroI, arith::MinSIOp::create(nb, l, i, last));
            };
            auto floorIndex = [&](Value v) -> Value {
              Value i = arith::FPToSIOp::create(nb, l, nb.getI64Type(),
                                                math::FloorOp::create(nb, l, v));
              return arith::IndexCastOp::create(nb, l, nb.getIndexType(), i);
            };
            // Per dimension: the source coordinate (f64) of the output index.
            SmallVector<Value> index(rank), source(rank);
            for (int64_t d = 0; d < rank; ++d) {
              index[d] = linalg::IndexOp::create(nb, l, d);
              if (!resized[d])
                continue;
              Value xo = toF64(nb, l, index[d]);
              Value s = scaleOf[d];
              Value inF = toF64(nb, l, inLen[d]), outF = toF64(nb, l, outLen[d]);
              Value half = f(0.5);
              Value hp = arith::SubFOp::create(
                  nb, l,
                  arith::DivFOp::create(nb, l, arith::AddFOp::create(nb, l, xo, half), s),
                  half);
              Value src;
              if (coord == "half_pixel") {
                src = hp;
              } else if (coord == "half_pixel_symmetric") {
                Value adjust = arith::DivFOp::create(
                    nb, l, outF, arith::MulFOp::create(nb, l, s, inF));
                Value center = arith::MulFOp::create(nb, l, inF, half);
                Value offset = arith::MulFOp::create(
                    nb, l, center, arith::SubFOp::create(nb, l, f(1.0), adjust));
                src = arith::AddFOp::create(nb, l, offset, hp);
              } else if (coord == "pytorch_half_pixel") {
                Value big = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OGT,
                                                  outF, f(1.0));
                src = arith::SelectOp::create(nb, l, big, hp, f(0.0));
              } else if (coord == "align_corners") {
                Value one = arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ,
                                                  outF, f(1.0));
                // The unrounded output length (input * scale), as ONNX
                // defines it.
                Value exact = arith::MulFOp::create(nb, l, inF, s);
                Value ratio = arith::DivFOp::create(
                    nb, l, arith::SubFOp::create(nb, l, inF, f(1.0)),
                    arith::SubFOp::create(nb, l, exact, f(1.0)));
                src = arith::SelectOp::create(
                    nb, l, one, f(0.0), arith::MulFOp::create(nb, l, xo, ratio));
              } else { // asymmetric
                src = arith::DivFOp::create(nb, l, xo, s);
              }
              source[d] = src;
            }
            if (mode == "nearest") {
              SmallVector<Value> coords(index);
              for (int64_t d = 0; d < rank; ++d) {
                if (!resized[d])
                  continue;
                Value v = source[d], r;
                if (nearestMode == "floor")
                  r = math::FloorOp::create(nb, l, v);
                else if (nearestMode == "ceil")
                  r = math::CeilOp::create(nb, l, v);
                else if (nearestMode == "round_prefer_ceil")
                  r = math::FloorOp::create(nb, l, arith::AddFOp::create(nb, l, v, f(0.5)));
                else // round_prefer_floor
                  r = math::CeilOp::create(nb, l, arith::SubFOp::create(nb, l, v, f(0.5)));
                Value i = arith::IndexCastOp::create(
                    nb, l, nb.getIndexType(),
                    arith::FPToSIOp::create(nb, l, nb.getI64Type(), r));
                coords[d] = clampIndex(i, inLen[d]);
              }
              linalg::YieldOp::create(
                  nb, l, tensor::ExtractOp::create(nb, l, x, coords).getResult());
              return;
            }
            // Linear: weights (1 - t, t) between floor and floor + 1 per
            // resized axis, edges clamped; 2^k corners.
            SmallVector<int64_t> dims;
            for (int64_t d = 0; d < rank; ++d)
              if (resized[d])
                dims.push_back(d);
            SmallVector<Value> lo(rank), hi(rank), t(rank);
            for (int64_t d : dims) {
              Value fl = math::FloorOp::create(nb, l, source[d]);
              t[d] = arith::SubFOp::create(nb, l, source[d], fl);
              Value i0 = floorIndex(source[d]);
              lo[d] = clampIndex(i0, inLen[d]);
              hi[d] = clampIndex(arith::AddIOp::create(nb, l, i0, oneI), inLen[d]);
            }
            Value sum = f(0.0);
            for (int64_t corner = 0; corner < (int64_t(1) << dims.size()); ++corner) {
              SmallVector<Value> coords(index);
              Value w = f(1.0);
              for (auto [j, d] : llvm::enumerate(dims)) {
                bool upper = (corner >> j) & 1;
                coords[d] = upper ? hi[d] : lo[d];
                w = arith::MulFOp::create(
                    nb, l, w,
                    upper ? t[d] : arith::SubFOp::create(nb, l, f(1.0), t[d]).getResult());
              }
              Value v = tensor::ExtractOp::create(nb, l, x, coords);
              v = arith::ExtFOp::create(nb, l, f64, v);
              sum = arith::AddFOp::create(nb, l, sum, arith::MulFOp::create(nb, l, w, v));
            }
            linalg::YieldOp::create(nb, l, arith::TruncFOp::create(nb, l, element, sum)
                                              .getResult());
          })
          .getResult(0);
  if (result.getType() != op.getResult(0).getType() &&
      isa<RankedTensorType>(op.getResult(0).getType()))
    result = tensor::CastOp::create(b, loc, op.getResult(0).getType(), result);
  results.push_back(result);
  return success();
}

//===----------------------------------------------------------------------===//
// GatherND, ScatterND, ScatterElements
//===----------------------------------------------------------------------===//

/// `v` (an index) counted from the end when negative: v < 0 ? v + n : v.
Value wrapNegative(OpBuilder &b, Location loc, Value v, Value n) {
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value neg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, v, zero);
  return arith::SelectOp::create(b, loc, neg,
                                 arith::AddIOp::create(b, loc, v, n), v);
}

/// Checks every index tuple `indices[..., c]` against the data dimension it
/// addresses (`dataSizes[first + c]`) for c < k.
LogicalResult checkIndexTuples(ONNXNodeOp op, OpBuilder &b, Value indices,
                               ArrayRef<OpFoldResult> dataSizes, int64_t first,
                               int64_t k) {
  Location loc = op.getLoc();
  auto type = cast<RankedTensorType>(indices.getType());
  int64_t q = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, indices);
  for (int64_t c = 0; c < k; ++c) {
    Value component = indices;
    if (k > 1) {
      SmallVector<OpFoldResult> offsets(q, b.getIndexAttr(0)),
          strides(q, b.getIndexAttr(1)), partSizes(sizes);
      offsets[q - 1] = b.getIndexAttr(c);
      partSizes[q - 1] = b.getIndexAttr(1);
      component = tensor::ExtractSliceOp::create(b, loc, indices, offsets,
                                                 partSizes, strides);
    }
    if (failed(checkIndices(
            op, b, component,
            getValueOrCreateConstantIndexOp(b, loc, dataSizes[first + c]),
            "an index into axis " + Twine(first + c))))
      return failure();
  }
  return success();
}

/// Leading dimensions of the indices that must equal the data's
/// (GatherND's batch_dims).
LogicalResult checkEqualSizes(ONNXNodeOp op, OpBuilder &b,
                              ArrayRef<OpFoldResult> a,
                              ArrayRef<OpFoldResult> c, StringRef what) {
  Location loc = op.getLoc();
  for (auto [d, pair] : llvm::enumerate(llvm::zip(a, c))) {
    auto [x, y] = pair;
    std::optional<int64_t> sx = getConstantIntValue(x), sy = getConstantIntValue(y);
    if (sx && sy) {
      if (*sx != *sy)
        return nodeError(op) << what << ": dimension " << d << " is " << *sx
                             << " in one and " << *sy << " in the other";
      continue;
    }
    emitCheck(op, b,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                    getValueOrCreateConstantIndexOp(b, loc, x),
                                    getValueOrCreateConstantIndexOp(b, loc, y)),
              what + ": dimension " + Twine(d) + " differs");
  }
  return success();
}

LogicalResult convertGatherND(ONNXNodeOp op, OpBuilder &b,
                              SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1];
  auto dType = rankedType(data), iType = rankedType(indices);
  if (!dType || !iType || !iType.getElementType().isSignlessInteger(64))
    return nodeError(op) << "needs ranked data and int64 indices";
  int64_t r = dType.getRank(), q = iType.getRank();
  int64_t batch = getIntAttr(op, "batch_dims", 0);
  if (q < 1 || r < 1 || batch < 0 || batch >= std::min(q, r))
    return nodeError(op) << "batch_dims " << batch
                         << " must be less than the ranks of the data (" << r
                         << ") and the indices (" << q << ")";
  if (iType.isDynamicDim(q - 1))
    return nodeError(op) << "the last dimension of the indices must be static";
  int64_t k = iType.getDimSize(q - 1);
  if (k < 1 || k > r - batch)
    return nodeError(op) << "index tuples of length " << k
                         << " do not fit data of rank " << r
                         << " with batch_dims " << batch;
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  if (failed(checkEqualSizes(op, b, ArrayRef(indexSizes).take_front(batch),
                             ArrayRef(dataSizes).take_front(batch),
                             "the batch dimensions of data and indices")) ||
      failed(checkIndexTuples(op, b, indices, dataSizes, batch, k)))
    return failure();
  // out[i_0..i_{q-2}, j...] = data[i_0..i_{batch-1}, idx[i, 0..k-1], j...]
  SmallVector<OpFoldResult> outSizes(indexSizes.begin(), indexSizes.end() - 1);
  outSizes.append(dataSizes.begin() + batch + k, dataSizes.end());
  int64_t outRank = outSizes.size();
  Value init = tensor::EmptyOp::create(b, loc, outSizes, dType.getElementType());
  SmallVector<utils::IteratorType> par(outRank, utils::IteratorType::parallel);
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{}, init,
          {b.getMultiDimIdentityMap(outRank)}, par,
          [&](OpBuilder &nb, Location l, ValueRange) {
            SmallVector<Value> outer, coords;
            for (int64_t d = 0; d < q - 1; ++d)
              outer.push_back(linalg::IndexOp::create(nb, l, d));
            for (int64_t d = 0; d < batch; ++d)
              coords.push_back(outer[d]);
            for (int64_t c = 0; c < k; ++c) {
              SmallVector<Value> at(outer);
              at.push_back(arith::ConstantIndexOp::create(nb, l, c));
              Value v = arith::IndexCastOp::create(
                  nb, l, nb.getIndexType(),
                  tensor::ExtractOp::create(nb, l, indices, at));
              coords.push_back(wrapNegative(
                  nb, l, v,
                  getValueOrCreateConstantIndexOp(nb, l,
                                                  dataSizes[batch + c])));
            }
            for (int64_t d = q - 1; d < outRank; ++d)
              coords.push_back(linalg::IndexOp::create(nb, l, d));
            linalg::YieldOp::create(
                nb, l, tensor::ExtractOp::create(nb, l, data, coords).getResult());
          })
          .getResult(0));
  return success();
}

/// The scalar combination ScatterND / ScatterElements apply.
using Combine = Value (*)(OpBuilder &, Location, Value, Value);

template <typename FloatOp, typename IntOp>
Value combine(OpBuilder &b, Location loc, Value old, Value update) {
  if (isa<FloatType>(old.getType()))
    return FloatOp::create(b, loc, old, update);
  return IntOp::create(b, loc, old, update);
}

Value replace(OpBuilder &, Location, Value, Value update) { return update; }

FailureOr<Combine> scatterReduction(ONNXNodeOp op) {
  StringRef reduction = getStringAttr(op, "reduction", "none");
  if (reduction == "none")
    return Combine(replace);
  if (reduction == "add")
    return Combine(combine<arith::AddFOp, arith::AddIOp>);
  if (reduction == "mul")
    return Combine(combine<arith::MulFOp, arith::MulIOp>);
  if (reduction == "max")
    return Combine(combine<arith::MaximumFOp, arith::MaxSIOp>);
  if (reduction == "min")
    return Combine(combine<arith::MinimumFOp, arith::MinSIOp>);
  return (nodeError(op) << "reduction '" << reduction << "' is not one of "
                        << "none, add, mul, max, min",
          failure());
}

/// A sequential loop nest over `sizes` that threads `init` through
/// tensor.insert: `body(ivs, current)` returns the updated tensor. Writes
/// happen in index order, so duplicate indices resolve as ONNX's reference
/// does (the last wins, or every update is reduced).
Value scatterLoops(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Value init,
                   function_ref<Value(OpBuilder &, Location, ValueRange, Value)>
                       body) {
  SmallVector<Value> lbs, ubs, steps;
  for (OpFoldResult s : sizes) {
    lbs.push_back(arith::ConstantIndexOp::create(b, loc, 0));
    ubs.push_back(getValueOrCreateConstantIndexOp(b, loc, s));
    steps.push_back(arith::ConstantIndexOp::create(b, loc, 1));
  }
  scf::LoopNest nest = scf::buildLoopNest(
      b, loc, lbs, ubs, steps, ValueRange{init},
      [&](OpBuilder &nb, Location l, ValueRange ivs,
          ValueRange args) -> scf::ValueVector {
        return {body(nb, l, ivs, args[0])};
      });
  return nest.results.front();
}

LogicalResult convertScatterND(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1],
        updates = op.getInputs()[2];
  auto dType = rankedType(data), iType = rankedType(indices),
       uType = rankedType(updates);
  if (!dType || !iType || !uType ||
      !iType.getElementType().isSignlessInteger(64) ||
      uType.getElementType() != dType.getElementType())
    return nodeError(op) << "needs ranked data, int64 indices and updates of "
                            "the data's element type";
  int64_t r = dType.getRank(), q = iType.getRank();
  if (q < 1 || iType.isDynamicDim(q - 1))
    return nodeError(op) << "the last dimension of the indices must be static";
  int64_t k = iType.getDimSize(q - 1);
  if (k < 1 || k > r)
    return nodeError(op) << "index tuples of length " << k
                         << " do not fit data of rank " << r;
  if (uType.getRank() != q - 1 + r - k)
    return nodeError(op) << "updates have rank " << uType.getRank()
                         << ", expected " << q - 1 + r - k;
  auto combine = scatterReduction(op);
  if (failed(combine))
    return failure();
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  SmallVector<OpFoldResult> updateSizes = tensor::getMixedSizes(b, loc, updates);
  SmallVector<OpFoldResult> expected(indexSizes.begin(), indexSizes.end() - 1);
  expected.append(dataSizes.begin() + k, dataSizes.end());
  if (failed(checkEqualSizes(op, b, updateSizes, expected,
                             "the updates' shape and indices.shape[:-1] + "
                             "data.shape[k:]")) ||
      failed(checkIndexTuples(op, b, indices, dataSizes, 0, k)))
    return failure();
  results.push_back(scatterLoops(
      b, loc, updateSizes, data,
      [&](OpBuilder &nb, Location l, ValueRange ivs, Value current) -> Value {
        SmallVector<Value> coords;
        SmallVector<Value> outer(ivs.take_front(q - 1));
        for (int64_t c = 0; c < k; ++c) {
          SmallVector<Value> at(outer);
          at.push_back(arith::ConstantIndexOp::create(nb, l, c));
          Value v = arith::IndexCastOp::create(
              nb, l, nb.getIndexType(),
              tensor::ExtractOp::create(nb, l, indices, at));
          coords.push_back(wrapNegative(
              nb, l, v, getValueOrCreateConstantIndexOp(nb, l, dataSizes[c])));
        }
        llvm::append_range(coords, ivs.drop_front(q - 1));
        Value update = tensor::ExtractOp::create(nb, l, updates, ivs);
        Value old = tensor::ExtractOp::create(nb, l, current, coords);
        return tensor::InsertOp::create(nb, l, (*combine)(nb, l, old, update),
                                        current, coords);
      }));
  return success();
}

LogicalResult convertScatterElements(ONNXNodeOp op, OpBuilder &b,
                                     SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value data = op.getInputs()[0], indices = op.getInputs()[1],
        updates = op.getInputs()[2];
  auto dType = rankedType(data), iType = rankedType(indices),
       uType = rankedType(updates);
  if (!dType || !iType || !uType ||
      !iType.getElementType().isSignlessInteger() ||
      iType.getRank() != dType.getRank() || uType.getRank() != dType.getRank() ||
      uType.getElementType() != dType.getElementType())
    return nodeError(op) << "needs data, integer indices and updates of one "
                            "rank (updates of the data's element type)";
  int64_t rank = dType.getRank();
  FailureOr<int64_t> axis = normalizeAxis(op, getIntAttr(op, "axis", 0), rank);
  if (failed(axis))
    return failure();
  auto combine = scatterReduction(op);
  if (failed(combine))
    return failure();
  SmallVector<OpFoldResult> dataSizes = tensor::getMixedSizes(b, loc, data);
  SmallVector<OpFoldResult> indexSizes = tensor::getMixedSizes(b, loc, indices);
  SmallVector<OpFoldResult> updateSizes = tensor::getMixedSizes(b, loc, updates);
  Value axisSize = getValueOrCreateConstantIndexOp(b, loc, dataSizes[*axis]);
  if (failed(checkEqualSizes(op, b, updateSizes, indexSizes,
                             "the shapes of indices and updates")) ||
      failed(checkIndices(op, b, indices, axisSize,
                          "an index into axis " + Twine(*axis))) ||
      failed(checkSizesWithin(op, b, indexSizes, dataSizes, *axis)))
    return failure();
  results.push_back(scatterLoops(
      b, loc, indexSizes, data,
      [&](OpBuilder &nb, Location l, ValueRange ivs, Value current) -> Value {
        SmallVector<Value> coords(ivs);
        Value v = arith::IndexCastOp::create(
            nb, l, nb.getIndexType(),
            tensor::ExtractOp::create(nb, l, indices, ivs));
        coords[*axis] = wrapNegative(nb, l, v, axisSize);
        Value update = tensor::ExtractOp::create(nb, l, updates, ivs);
        Value old = tensor::ExtractOp::create(nb, l, current, coords);
        return tensor::InsertOp::create(nb, l, (*combine)(nb, l, old, update),
                                        current, coords);
      }));
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "GatherND", 11, convertGatherND},
    {"", "ScatterND", 11, convertScatterND},
    {"", "ScatterElements", 11, convertScatterElements},
    {"", "GatherElements", 13, convertGatherElements},
    {"", "Tile", 13, convertTile},
    {"", "CumSum", 14, convertCumSum},
    {"", "Resize", 11, convertResize},
    {"", "Einsum", 12, convertEinsum},
    {"com.microsoft", "SkipLayerNormalization", 1, convertSkipLayerNorm},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getIndexHandlers() { return kHandlers; }
