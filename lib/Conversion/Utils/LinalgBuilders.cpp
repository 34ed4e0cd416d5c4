//===- LinalgBuilders.cpp - linalg builders the conversions share ---------===//

#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "qopt/Dialect/QOpt/IR/QOptMarkers.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"

#include <cmath>
#include <limits>

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

Value mlir::qopt::createExpFlushed(OpBuilder &b, Location loc, Value v) {
  // exp(-87.33654) is the smallest normal float.
  Value tiny = arith::CmpFOp::create(
      b, loc, arith::CmpFPredicate::OLT, v,
      arith::ConstantOp::create(b, loc, b.getF32FloatAttr(-87.33654f)));
  return arith::SelectOp::create(
      b, loc, tiny, arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0)),
      math::ExpOp::create(b, loc, v));
}

Value mlir::qopt::createFlushSubnormal(OpBuilder &b, Location loc, Value v) {
  Value tiny = arith::CmpFOp::create(
      b, loc, arith::CmpFPredicate::OLT, math::AbsFOp::create(b, loc, v),
      arith::ConstantOp::create(
          b, loc, b.getF32FloatAttr(std::numeric_limits<float>::min())));
  return arith::SelectOp::create(
      b, loc, tiny, arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0)), v);
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
    ArrayRef<AffineMap> mapsIn, ArrayRef<utils::IteratorType> iterators) {
  // A transposed operand is read through a permuted map instead: no copy
  // of it (the tied LM head's transposed embedding table is 150 MB).
  SmallVector<AffineMap> maps(mapsIn);
  auto lookThrough = [&](Value &v, AffineMap &map) {
    auto transpose = v.getDefiningOp<linalg::TransposeOp>();
    if (!transpose)
      return;
    ArrayRef<int64_t> perm = transpose.getPermutation();
    SmallVector<AffineExpr> results(perm.size());
    for (auto [j, p] : llvm::enumerate(perm))
      results[p] = map.getResult(j);
    map = AffineMap::get(map.getNumDims(), 0, results, b.getContext());
    v = transpose.getInput();
  };
  lookThrough(lhs, maps[0]);
  lookThrough(rhs, maps[1]);
  auto element = [](Value v) { return getElementTypeOrSelf(v.getType()); };
  bool floats = isa<FloatType>(element(lhs)) && isa<FloatType>(element(rhs)) &&
                isa<FloatType>(element(init));
  // Reductions exactly over the dimensions no output map names, as
  // linalg.contract infers them.
  // linalg.contract also wants a dimension both inputs share and the output
  // lacks, and none that only one input has and the output lacks.
  bool inferable = true, shared = false;
  for (auto [d, iterator] : llvm::enumerate(iterators)) {
    bool inLhs = maps[0].isFunctionOfDim(d), inRhs = maps[1].isFunctionOfDim(d);
    bool inOut = maps[2].isFunctionOfDim(d);
    inferable &= (iterator == utils::IteratorType::parallel) == inOut;
    inferable &= inOut || (inLhs && inRhs);
    shared |= inLhs && inRhs && !inOut;
  }
  inferable &= shared;
  if (floats && inferable && llvm::all_of(maps, [](AffineMap m) {
        return m.isProjectedPermutation();
      })) {
    MLIRContext *ctx = b.getContext();
    AffineExpr d0, d1, d2, d3;
    bindDims(ctx, d0, d1, d2, d3);
    auto mapsAre = [&](unsigned loops, ArrayRef<SmallVector<AffineExpr>> e) {
      return maps.size() == 3 && maps[0].getNumDims() == loops &&
             llvm::all_of(llvm::seq<size_t>(0, 3), [&](size_t i) {
               return maps[i] == AffineMap::get(loops, 0, e[i], ctx);
             });
    };
    if (mapsAre(3, {{d0, d2}, {d2, d1}, {d0, d1}}))
      return linalg::MatmulOp::create(b, loc, init.getType(),
                                      ValueRange{lhs, rhs}, init)
          .getResult(0);
    if (mapsAre(4, {{d0, d1, d3}, {d0, d3, d2}, {d0, d1, d2}}))
      return linalg::BatchMatmulOp::create(b, loc, init.getType(),
                                           ValueRange{lhs, rhs}, init)
          .getResult(0);
    return linalg::ContractOp::create(b, loc, init.getType(),
                                      ValueRange{lhs, rhs}, init,
                                      b.getAffineMapArrayAttr(maps))
        .getResult(0);
  }
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

Value mlir::qopt::createSoftmax(OpBuilder &b, Location loc, Value x,
                                int64_t axis, bool log, bool safe) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> rowSizes;
  SmallVector<AffineExpr> rowExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(d == axis ? utils::IteratorType::reduction
                                  : utils::IteratorType::parallel);
    if (d != axis) {
      rowSizes.push_back(sizes[d]);
      rowExprs.push_back(b.getAffineDimExpr(d));
    }
  }
  AffineMap id = b.getMultiDimIdentityMap(rank);
  AffineMap row = AffineMap::get(rank, 0, rowExprs, b.getContext());
  // An f32 reduction along the axis, one value per row.
  auto reduceRows =
      [&](Value in, double initValue,
          function_ref<Value(OpBuilder &, Location, Value, Value)> fn) {
        Value init = createFilledTensor(b, loc, rowSizes, f32, initValue);
        return linalg::GenericOp::create(
                   b, loc, init.getType(), in, init,
                   ArrayRef<AffineMap>{id, row}, iterators,
                   [&](OpBuilder &nb, Location l, ValueRange a) {
                     linalg::YieldOp::create(
                         nb, l, fn(nb, l, castToF32(nb, l, a[0]), a[1]));
                   })
            .getResult(0);
      };
  Value max = reduceRows(
      x, -INFINITY, [](OpBuilder &nb, Location l, Value v, Value acc) -> Value {
        return arith::MaximumFOp::create(nb, l, v, acc);
      });
  // A shift the result does not depend on: no gradient.
  max.getDefiningOp()->setAttr(kNoGradientAttr, b.getUnitAttr());
  // Each step rounds to the element type as the ONNX reference does
  // (x - max, its exponential, the sum, the quotient); only the sum
  // accumulates in f32.
  Type element = type.getElementType();
  auto round = [&](OpBuilder &nb, Location l, Value v) {
    return castToF32(nb, l, castFromF32(nb, l, v, element));
  };
  // The safe form's guard: `v` (f32), or `with` where it equals `value`.
  auto replaceIfEqual = [](OpBuilder &nb, Location l, Value v, float value,
                           float with) -> Value {
    Value equal = arith::CmpFOp::create(
        nb, l, arith::CmpFPredicate::OEQ, v,
        arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(value)));
    return arith::SelectOp::create(
        nb, l, equal,
        arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(with)), v);
  };
  Value shifted = createElementwise(
      b, loc, x, {x, max}, {id, row},
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        // Safe: a row of -inf gives x - 0 = -inf, whose exponential is 0.
        Value m = safe ? replaceIfEqual(nb, l, a[1], -INFINITY, 0.0f) : a[1];
        return castFromF32(
            nb, l, arith::SubFOp::create(nb, l, castToF32(nb, l, a[0]), m),
            element);
      });
  Value e = createElementwise(
      b, loc, x, {shifted}, {id},
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        return castFromF32(
            nb, l, createExpFlushed(nb, l, castToF32(nb, l, a[0])), element);
      });
  Value sum = reduceRows(
      e, 0.0, [](OpBuilder &nb, Location l, Value v, Value acc) -> Value {
        return arith::AddFOp::create(nb, l, acc, v);
      });
  if (log)
    return createElementwise(
        b, loc, x, {shifted, sum}, {id, row},
        [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
          Value logSum =
              round(nb, l, math::LogOp::create(nb, l, round(nb, l, a[1])));
          return castFromF32(
              nb, l,
              arith::SubFOp::create(nb, l, castToF32(nb, l, a[0]), logSum),
              element);
        });
  return createElementwise(
      b, loc, x, {e, sum}, {id, row},
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        // Safe: a row of -inf sums to 0, divided as 0 / 1.
        Value s = round(nb, l, a[1]);
        if (safe)
          s = replaceIfEqual(nb, l, s, 0.0f, 1.0f);
        return castFromF32(
            nb, l,
            createFlushSubnormal(
                nb, l, arith::DivFOp::create(nb, l, castToF32(nb, l, a[0]), s)),
            element);
      });
}

/// Where `indices` is start + i · delta over one dimension (ONNX Range's
/// lowering: position ids), start and delta defined outside: the two.
static std::optional<std::pair<Value, Value>> progression(Value indices) {
  auto generic = indices.getDefiningOp<linalg::GenericOp>();
  if (!generic || generic.getNumDpsInputs() != 0 ||
      generic->getNumResults() != 1 || generic.getNumLoops() != 1 ||
      generic.getNumReductionLoops() != 0)
    return std::nullopt;
  Block &body = generic.getRegion().front();
  Value y = cast<linalg::YieldOp>(body.getTerminator()).getOperand(0);
  auto outside = [&](Value v) {
    return !generic.getRegion().isAncestor(v.getParentRegion());
  };
  // (Either operand order.)
  auto split = [&](Operation *op, Value &inner, Value &other) {
    if (!op || op->getNumOperands() != 2)
      return false;
    Value l = op->getOperand(0), r = op->getOperand(1);
    if (outside(l) && !outside(r))
      std::swap(l, r);
    if (!outside(r) || outside(l))
      return false;
    inner = l, other = r;
    return true;
  };
  Value product, start, asInt, delta;
  if (!split(y.getDefiningOp<arith::AddIOp>(), product, start) ||
      !split(product.getDefiningOp<arith::MulIOp>(), asInt, delta))
    return std::nullopt;
  auto toInt = asInt.getDefiningOp<arith::IndexCastOp>();
  auto index = toInt ? toInt.getIn().getDefiningOp<linalg::IndexOp>() : nullptr;
  if (!index || index.getDim() != 0)
    return std::nullopt;
  return std::make_pair(start, delta);
}

Value mlir::qopt::createIndicesInRange(OpBuilder &b, Location loc,
                                       Value indices, Value size,
                                       bool *readsData) {
  if (readsData)
    *readsData = false;
  auto type = cast<RankedTensorType>(indices.getType());
  auto element = cast<IntegerType>(type.getElementType());
  Value negSize = arith::SubIOp::create(
      b, loc, arith::ConstantIndexOp::create(b, loc, 0), size);
  auto within = [&](Value lo, Value hi) -> Value {
    lo = arith::IndexCastOp::create(b, loc, b.getIndexType(), lo);
    hi = arith::IndexCastOp::create(b, loc, b.getIndexType(), hi);
    return arith::AndIOp::create(
        b, loc,
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, lo, negSize),
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, hi, size));
  };
  // A progression's least and greatest values are its ends: the check
  // reads no data (on a GPU, no wait for the kernel that writes it).
  if (auto ends = progression(indices)) {
    auto [start, delta] = *ends;
    Value n = tensor::DimOp::create(b, loc, indices, 0);
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value steps = arith::IndexCastOp::create(
        b, loc, element,
        arith::SubIOp::create(b, loc, n,
                              arith::ConstantIndexOp::create(b, loc, 1)));
    Value last = arith::AddIOp::create(
        b, loc, start, arith::MulIOp::create(b, loc, steps, delta));
    Value rising = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::sge, delta,
        arith::ConstantOp::create(b, loc, b.getIntegerAttr(element, 0)));
    Value lo = arith::SelectOp::create(b, loc, rising, start, last);
    Value hi = arith::SelectOp::create(b, loc, rising, last, start);
    // (No ids: nothing to check.)
    Value empty =
        arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, n, zero);
    return arith::OrIOp::create(b, loc, empty, within(lo, hi));
  }
  if (readsData)
    *readsData = true;
  auto scalarType = RankedTensorType::get({}, element);
  auto fill = [&](int64_t v) {
    Value c = arith::ConstantOp::create(b, loc, b.getIntegerAttr(element, v));
    Value init = tensor::EmptyOp::create(b, loc, ArrayRef<int64_t>{}, element);
    return linalg::FillOp::create(b, loc, c, init).getResult(0);
  };
  unsigned width = element.getWidth();
  int64_t maxValue = width >= 64 ? std::numeric_limits<int64_t>::max()
                                 : (int64_t(1) << (width - 1)) - 1;
  int64_t minValue = width >= 64 ? std::numeric_limits<int64_t>::min()
                                 : -(int64_t(1) << (width - 1));
  int64_t rank = type.getRank();
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank),
                                 AffineMap::get(rank, 0, {}, b.getContext()),
                                 AffineMap::get(rank, 0, {}, b.getContext())};
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::reduction);
  auto reduce = linalg::GenericOp::create(
      b, loc, TypeRange{scalarType, scalarType}, indices,
      ValueRange{fill(maxValue), fill(minValue)}, maps, iterators,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        linalg::YieldOp::create(
            nb, l,
            ValueRange{arith::MinSIOp::create(nb, l, a[0], a[1]),
                       arith::MaxSIOp::create(nb, l, a[0], a[2])});
      });
  return within(tensor::ExtractOp::create(b, loc, reduce.getResult(0)),
                tensor::ExtractOp::create(b, loc, reduce.getResult(1)));
}

Value mlir::qopt::createWrappedIndex(OpBuilder &b, Location loc, Value index,
                                     Value size) {
  Value i = index.getType().isIndex()
                ? index
                : arith::IndexCastOp::create(b, loc, b.getIndexType(), index);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value negative =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, i, zero);
  Value wrapped = arith::SelectOp::create(
      b, loc, negative, arith::AddIOp::create(b, loc, i, size), i);
  // (An empty table: 0, as good as any; the check fails the run.)
  Value last = arith::SubIOp::create(b, loc, size,
                                     arith::ConstantIndexOp::create(b, loc, 1));
  return arith::MaxSIOp::create(
      b, loc, arith::MinSIOp::create(b, loc, wrapped, last), zero);
}
