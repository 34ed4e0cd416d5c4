//===- LinalgBuilders.cpp - linalg builders the conversions share ---------===//

#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

using namespace mlir;

Value mlir::qopt::createFilledTensor(OpBuilder &b, Location loc,
                                     ArrayRef<OpFoldResult> sizes, Type element,
                                     double value) {
  Value empty = tensor::EmptyOp::create(b, loc, sizes, element);
  TypedAttr attr =
      isa<FloatType>(element)
          ? TypedAttr(b.getFloatAttr(element, value))
          : TypedAttr(b.getIntegerAttr(element, static_cast<int64_t>(value)));
  Value fill = arith::ConstantOp::create(b, loc, attr);
  return linalg::FillOp::create(b, loc, fill, empty).getResult(0);
}

Value mlir::qopt::castToF32(OpBuilder &b, Location loc, Value v) {
  auto t = cast<FloatType>(v.getType());
  if (t.isF32())
    return v;
  return t.getWidth() < 32
             ? Value(arith::ExtFOp::create(b, loc, b.getF32Type(), v))
             : Value(arith::TruncFOp::create(b, loc, b.getF32Type(), v));
}

Value mlir::qopt::castFromF32(OpBuilder &b, Location loc, Value v, Type t) {
  if (t.isF32())
    return v;
  return cast<FloatType>(t).getWidth() < 32
             ? Value(arith::TruncFOp::create(b, loc, t, v))
             : Value(arith::ExtFOp::create(b, loc, t, v));
}

void mlir::qopt::buildMulAddBody(OpBuilder &b, Location loc, ValueRange args) {
  Value acc = args[2];
  Type accType = acc.getType();
  auto convert = [&](Value v) -> Value {
    if (v.getType() == accType)
      return v;
    return convertScalarToDtype(b, loc, v, accType, /*isUnsignedCast=*/false);
  };
  Value lhs = convert(args[0]), rhs = convert(args[1]);
  Value r;
  if (isa<FloatType>(accType))
    r = arith::AddFOp::create(b, loc, acc,
                              arith::MulFOp::create(b, loc, lhs, rhs));
  else
    r = arith::AddIOp::create(b, loc, acc,
                              arith::MulIOp::create(b, loc, lhs, rhs));
  linalg::YieldOp::create(b, loc, r);
}

Value mlir::qopt::createMulAddContraction(
    OpBuilder &b, Location loc, Value lhs, Value rhs, Value init,
    ArrayRef<AffineMap> maps, ArrayRef<utils::IteratorType> iterators) {
  return linalg::GenericOp::create(b, loc, init.getType(), ValueRange{lhs, rhs},
                                   init, maps, iterators, buildMulAddBody)
      .getResult(0);
}

Value mlir::qopt::createContractLast(OpBuilder &b, Location loc, Value x,
                                     Value w, Value init) {
  auto xType = cast<RankedTensorType>(x.getType());
  int64_t rank = xType.getRank();
  int64_t loops = rank + 1;
  SmallVector<AffineExpr> xExprs, outExprs;
  for (int64_t d = 0; d < rank - 1; ++d) {
    xExprs.push_back(b.getAffineDimExpr(d));
    outExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineExpr n = b.getAffineDimExpr(rank - 1), k = b.getAffineDimExpr(rank);
  xExprs.push_back(k);
  outExprs.push_back(n);
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                 AffineMap::get(loops, 0, {n, k}, ctx),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  if (!init) {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
    sizes.back() = tensor::getMixedSizes(b, loc, w)[0];
    init = createFilledTensor(b, loc, sizes, xType.getElementType(), 0);
  }
  SmallVector<utils::IteratorType> iterators(loops - 1,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  return createMulAddContraction(b, loc, x, w, init, maps, iterators);
}

Value mlir::qopt::createTrailingReduction(
    OpBuilder &b, Location loc, Value x, int64_t axis, bool keepDims,
    ValueRange extra, double initValue,
    function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes(sizes.begin(), sizes.begin() + axis);
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(d < axis ? utils::IteratorType::parallel
                                 : utils::IteratorType::reduction);
    if (d < axis) {
      outExprs.push_back(b.getAffineDimExpr(d));
    } else if (keepDims) {
      outExprs.push_back(b.getAffineConstantExpr(0));
      outSizes.push_back(b.getIndexAttr(1));
    }
  }
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, b.getContext());
  Value init = createFilledTensor(b, loc, outSizes, b.getF32Type(), initValue);
  SmallVector<Value> inputs = {x};
  inputs.append(extra.begin(), extra.end());
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  maps.append(extra.size(), outMap);
  maps.push_back(outMap);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, iterators,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(nb, l, body(nb, l, a));
             })
      .getResult(0);
}

Value mlir::qopt::createRowMean(
    OpBuilder &b, Location loc, Value x, int64_t axis, ValueRange previous,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange)> f) {
  int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
  Value sum = createTrailingReduction(
      b, loc, x, axis, /*keepDims=*/false, previous, 0.0,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value v = f(nb, l, castToF32(nb, l, a[0]), a.drop_front().drop_back());
        return arith::AddFOp::create(nb, l, a.back(), v);
      });
  // Divide by the number of normalised elements.
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d = axis; d < rank; ++d)
    count = arith::MulIOp::create(
        b, loc, count, getValueOrCreateConstantIndexOp(b, loc, sizes[d]));
  Value countF = arith::UIToFPOp::create(
      b, loc, b.getF32Type(),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), count));
  SmallVector<OpFoldResult> outSizes(sizes.begin(), sizes.begin() + axis);
  SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(axis));
  SmallVector<utils::IteratorType> par(axis, utils::IteratorType::parallel);
  Value out = tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type());
  return linalg::GenericOp::create(
             b, loc, out.getType(), sum, out, idMaps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(
                   nb, l,
                   arith::DivFOp::create(nb, l, a[0], countF).getResult());
             })
      .getResult(0);
}

Value mlir::qopt::createNormalizedRows(
    OpBuilder &b, Location loc, Value x, int64_t axis, ValueRange stats,
    Value gamma, Value beta,
    function_ref<Value(OpBuilder &, Location, Value, ValueRange)> norm) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<AffineExpr> statExprs, paramExprs;
  for (int64_t d = 0; d < rank; ++d)
    (d < axis ? statExprs : paramExprs).push_back(b.getAffineDimExpr(d));
  AffineMap statMap = AffineMap::get(rank, 0, statExprs, b.getContext());
  AffineMap paramMap = AffineMap::get(rank, 0, paramExprs, b.getContext());
  SmallVector<Value> inputs = {x};
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  for (Value s : stats) {
    inputs.push_back(s);
    maps.push_back(statMap);
  }
  inputs.push_back(gamma);
  maps.push_back(paramMap);
  if (beta) {
    inputs.push_back(beta);
    maps.push_back(paramMap);
  }
  unsigned numStats = stats.size();
  return createElementwise(
      b, loc, x, inputs, maps, [&](OpBuilder &nb, Location l, ValueRange a) {
        Value n = norm(nb, l, castToF32(nb, l, a[0]), a.slice(1, numStats));
        Value y = castFromF32(nb, l, n, type.getElementType());
        y = arith::MulFOp::create(nb, l, y, a[1 + numStats]);
        if (beta)
          y = arith::AddFOp::create(nb, l, y, a[2 + numStats]);
        return y;
      });
}

Value mlir::qopt::createElementwise(
    OpBuilder &b, Location loc, Value like, ValueRange inputs,
    ArrayRef<AffineMap> inputMaps,
    function_ref<Value(OpBuilder &, Location, ValueRange)> fn) {
  auto type = cast<RankedTensorType>(like.getType());
  int64_t rank = type.getRank();
  SmallVector<AffineMap> maps(inputMaps);
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, like), type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(nb, l, fn(nb, l, a.drop_back()));
             })
      .getResult(0);
}
