//===- Reduction.cpp - ONNX reductions, ArgMax/ArgMin, CumSum, Softmax ----===//
//
// ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceSumSquare,
// ReduceL2, ArgMax / ArgMin and CumSum as reducing linalg.generics;
// Softmax / LogSoftmax and the losses SoftmaxCrossEntropyLoss /
// NegativeLogLikelihoodLoss as mid-level ops lowered late.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <cmath>
#include <limits>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

//===----------------------------------------------------------------------===//
// Reductions
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
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x), outSizes,
                            reduced;
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
    initValue =
        isFloat ? -INFINITY : (double)std::numeric_limits<int64_t>::min();
  if (kind == ReduceKind::Min)
    initValue =
        isFloat ? INFINITY : (double)std::numeric_limits<int64_t>::max();
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
      kept.push_back(llvm::is_contained(axes, d)
                         ? OpFoldResult(b.getIndexAttr(1))
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
  Value valInit =
      linalg::FillOp::create(
          b, loc, arith::ConstantOp::create(b, loc, startAttr).getResult(),
          tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
          .getResult(0);
  Value idxInit =
      linalg::FillOp::create(
          b, loc,
          arith::ConstantOp::create(b, loc, b.getI64IntegerAttr(-1))
              .getResult(),
          tensor::EmptyOp::create(b, loc, outSizes, b.getI64Type()).getResult())
          .getResult(0);
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, b.getContext());
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank), outMap,
                                 outMap};
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{valInit.getType(), idxInit.getType()}, x,
      ValueRange{valInit, idxInit}, maps, iterators,
      [&](OpBuilder &nb, Location l, ValueRange a) {
        Value v = a[0], best = a[1], bestIdx = a[2];
        Value i = arith::IndexCastOp::create(
            nb, l, nb.getI64Type(), linalg::IndexOp::create(nb, l, *axis));
        Value better, equal;
        if (isFloat) {
          better = arith::CmpFOp::create(nb, l,
                                         isMax ? arith::CmpFPredicate::OGT
                                               : arith::CmpFPredicate::OLT,
                                         v, best);
          equal =
              arith::CmpFOp::create(nb, l, arith::CmpFPredicate::OEQ, v, best);
        } else {
          better = arith::CmpIOp::create(nb, l,
                                         isMax ? arith::CmpIPredicate::sgt
                                               : arith::CmpIPredicate::slt,
                                         v, best);
          equal =
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::eq, v, best);
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
// CumSum
//===----------------------------------------------------------------------===//

LogicalResult convertCumSum(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = rankedType(x);
  std::optional<SmallVector<int64_t>> axisC =
      getConstantInts(op.getInputs()[1]);
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
    xExprs.push_back(d == *axis ? b.getAffineDimExpr(rank)
                                : b.getAffineDimExpr(d));
  }
  Type element = type.getElementType();
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, element, 0),
                   tensor::EmptyOp::create(b, loc, sizes, element).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(rank,
                                             utils::IteratorType::parallel);
  iterators.push_back(utils::IteratorType::reduction);
  MLIRContext *ctx = b.getContext();
  results.push_back(
      linalg::GenericOp::create(
          b, loc, init.getType(), x, init,
          {AffineMap::get(loops, 0, xExprs, ctx),
           AffineMap::get(loops, 0, outExprs, ctx)},
          iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value i = linalg::IndexOp::create(nb, l, *axis);
            Value j = linalg::IndexOp::create(nb, l, rank);
            arith::CmpIPredicate pred =
                reverse ? (exclusive ? arith::CmpIPredicate::ugt
                                     : arith::CmpIPredicate::uge)
                        : (exclusive ? arith::CmpIPredicate::ult
                                     : arith::CmpIPredicate::ule);
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

//===----------------------------------------------------------------------===//
// Softmax / LogSoftmax
//===----------------------------------------------------------------------===//

/// Softmax becomes `linalg.softmax` and LogSoftmax `qopt.log_softmax`, so
/// that later passes (autodiff, fused attention, kernel selection) see
/// them; both are lowered late, per target.
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
  if (logSoftmax) {
    results.push_back(
        LogSoftmaxOp::create(b, loc, type, x, b.getI64IntegerAttr(*axis)));
    return success();
  }
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x),
                                       type.getElementType());
  auto softmaxOp =
      linalg::SoftmaxOp::create(b, loc, TypeRange{type}, x, init, *axis);
  // torch's guard Where(IsNaN(P), 0, P) on the result makes fully masked
  // rows 0: the lowering then computes them as 0 directly, so that no NaN
  // exists for the backward pass to multiply by the guard's zero adjoint.
  if (isNaNGuarded(op.getResult(0)))
    softmaxOp->setAttr(kSafeSoftmaxAttr, b.getUnitAttr());
  results.push_back(softmaxOp.getResult()[0]);
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
// SoftmaxCrossEntropyLoss / NegativeLogLikelihoodLoss
//===----------------------------------------------------------------------===//

/// Both become `qopt.cross_entropy` (NegativeLogLikelihoodLoss with
/// `log_probs`); SoftmaxCrossEntropyLoss's optional log_prob output is a
/// `qopt.log_softmax` of its own.
LogicalResult lossOp(ONNXNodeOp op, OpBuilder &b,
                     SmallVectorImpl<Value> &results, bool logProbs) {
  Location loc = op.getLoc();
  auto x = rankedType(op.getInputs()[0]);
  auto labels = rankedType(op.getInputs()[1]);
  if (!x || !isa<FloatType>(x.getElementType()) || x.getRank() < 2)
    return nodeError(op) << "needs a ranked float input of rank 2 or more "
                            "[N, C, d1…dk]";
  if (!labels || !isa<IntegerType>(labels.getElementType()) ||
      labels.getRank() != x.getRank() - 1)
    return nodeError(op) << "needs integer labels of rank " << x.getRank() - 1
                         << " [N, d1…dk]";
  for (int64_t d = 0; d < labels.getRank(); ++d) {
    int64_t ls = labels.getDimSize(d), xs = x.getDimSize(d == 0 ? 0 : d + 1);
    if (!ShapedType::isDynamic(ls) && !ShapedType::isDynamic(xs) && ls != xs)
      return nodeError(op) << "the labels' dimension " << d << " (" << ls
                           << ") differs from the input's dimension "
                           << (d == 0 ? 0 : d + 1) << " (" << xs << ")";
  }
  Value weight = getInput(op, 2);
  if (weight) {
    auto w = rankedType(weight);
    if (!w || w.getRank() != 1 || w.getElementType() != x.getElementType())
      return nodeError(op) << "weight must be 1-D of the input's type";
    if (!w.isDynamicDim(0) && !x.isDynamicDim(1) &&
        w.getDimSize(0) != x.getDimSize(1))
      return nodeError(op) << "weight has " << w.getDimSize(0)
                           << " elements for " << x.getDimSize(1) << " classes";
  }
  StringRef reduction = getStringAttr(op, "reduction", "mean");
  if (reduction != "none" && reduction != "sum" && reduction != "mean")
    return nodeError(op) << "unknown reduction '" << reduction << "'";
  IntegerAttr ignore;
  if (auto attr = op.getOnnxAttrs().getAs<IntegerAttr>("ignore_index"))
    ignore = b.getI64IntegerAttr(attr.getInt());
  auto resultType = RankedTensorType::get(
      reduction == "none" ? labels.getShape() : ArrayRef<int64_t>(),
      x.getElementType());
  Value loss = CrossEntropyOp::create(
      b, loc, resultType, op.getInputs()[0], op.getInputs()[1], weight, ignore,
      b.getStringAttr(reduction), logProbs ? b.getUnitAttr() : UnitAttr());
  // The converter joins computed and declared types (and checks what only
  // the declaration knows).
  results.push_back(loss);
  if (op.getNumResults() > 1)
    results.push_back(op.getResult(1).use_empty()
                          ? Value()
                          : LogSoftmaxOp::create(b, loc, x, op.getInputs()[0],
                                                 b.getI64IntegerAttr(1))
                                .getResult());
  return success();
}

LogicalResult convertSoftmaxCrossEntropyLoss(ONNXNodeOp op, OpBuilder &b,
                                             SmallVectorImpl<Value> &results) {
  return lossOp(op, b, results, /*logProbs=*/false);
}
LogicalResult
convertNegativeLogLikelihoodLoss(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results) {
  return lossOp(op, b, results, /*logProbs=*/true);
}

const HandlerEntry kHandlers[] = {
    {"", "ReduceSum", 13, convertReduce<ReduceKind::Sum>},
    {"", "ReduceMean", 13, convertReduce<ReduceKind::Mean>},
    {"", "ReduceMax", 13, convertReduce<ReduceKind::Max>},
    {"", "ReduceMin", 13, convertReduce<ReduceKind::Min>},
    {"", "ReduceProd", 13, convertReduce<ReduceKind::Prod>},
    {"", "ReduceSumSquare", 13, convertReduce<ReduceKind::SumSquare>},
    {"", "ReduceL2", 13, convertReduce<ReduceKind::L2>},
    {"", "ArgMax", 13, convertArgMax},
    {"", "ArgMin", 13, convertArgMin},
    {"", "CumSum", 14, convertCumSum},
    {"", "Softmax", 13, convertSoftmax},
    {"", "LogSoftmax", 13, convertLogSoftmax},
    {"", "SoftmaxCrossEntropyLoss", 12, convertSoftmaxCrossEntropyLoss},
    {"", "NegativeLogLikelihoodLoss", 12, convertNegativeLogLikelihoodLoss},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getReductionHandlers() {
  return kHandlers;
}
