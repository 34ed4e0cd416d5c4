//===- Normalization.cpp - ONNX normalization operators -------------------===//
//
// LayerNormalization, RMSNormalization (and ONNX Runtime's
// SimplifiedLayerNormalization) and com.microsoft SkipLayerNormalization as
// qopt.layer_norm / qopt.rms_norm; inference BatchNormalization.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"
#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

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
  int64_t rank = rankedType(x).getRank();
  Type f32 = b.getF32Type();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> lead(sizes.begin(), sizes.begin() + axis);
  // The same row statistics the QOpt LayerNorm lowering computes.
  Value mean = createRowMean(
      b, loc, x, axis, {},
      [](OpBuilder &, Location, Value v, ValueRange) { return v; });
  Value var =
      createRowMean(b, loc, x, axis, mean,
                    [](OpBuilder &nb, Location l, Value v, ValueRange m) {
                      Value d = arith::SubFOp::create(nb, l, v, m[0]);
                      return Value(arith::MulFOp::create(nb, l, d, d));
                    });
  SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(axis));
  SmallVector<utils::IteratorType> par(axis, utils::IteratorType::parallel);
  Value invStd =
      linalg::GenericOp::create(
          b, loc, var.getType(), var,
          tensor::EmptyOp::create(b, loc, lead, f32).getResult(), idMaps, par,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value s = math::SqrtOp::create(
                nb, l,
                arith::AddFOp::create(nb, l, a[0],
                                      scalarConstant(nb, l, f32, epsilon)));
            linalg::YieldOp::create(
                nb, l,
                arith::DivFOp::create(nb, l, scalarConstant(nb, l, f32, 1), s)
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

//===----------------------------------------------------------------------===//
// SkipLayerNormalization
//===----------------------------------------------------------------------===//

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
  FailureOr<Value> sum =
      buildElementwise(op, b, terms, type.getElementType(),
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
  if (rankedType(gamma).getRank() != 1 ||
      (beta && rankedType(beta).getRank() != 1))
    return nodeError(op) << "gamma and beta must be 1-D";
  Value y =
      LayerNormOp::create(b, loc, sumType, *sum, gamma, beta,
                          b.getF64FloatAttr(eps), b.getI64IntegerAttr(-1));
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(i == 3 ? *sum : Value());
  return success();
}

//===----------------------------------------------------------------------===//
// BatchNormalization
//===----------------------------------------------------------------------===//

LogicalResult convertBatchNorm(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  if (getIntAttr(op, "training_mode", 0) != 0)
    return nodeError(op) << "training_mode = 1 is not supported";
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    if (!op.getResult(i).use_empty())
      return nodeError(op) << "running statistics outputs are not supported";
  Value x = op.getInputs()[0];
  auto type = dyn_cast<RankedTensorType>(x.getType());
  if (!type || type.getRank() < 2 || !isa<FloatType>(type.getElementType()) ||
      op.getInputs().size() != 5)
    return nodeError(op) << "needs a float input of rank 2 or more and "
                            "scale, B, mean, var";
  double eps = getFloatAttr(op, "epsilon", 1e-5);
  int64_t rank = type.getRank();
  // scale, B, mean and var hold one value per channel (dimension 1).
  Location checkLoc = op.getLoc();
  for (unsigned i = 1; i < 5; ++i) {
    auto t = rankedType(op.getInputs()[i]);
    if (!t || t.getRank() != 1 ||
        (!t.isDynamicDim(0) && !type.isDynamicDim(1) &&
         t.getDimSize(0) != type.getDimSize(1)))
      return nodeError(op) << "input " << i
                           << " must hold one value per channel of X";
    if (t.isDynamicDim(0) || type.isDynamicDim(1))
      emitEqualSizes(
          op, b, tensor::getMixedSize(b, checkLoc, op.getInputs()[i], 0),
          tensor::getMixedSize(b, checkLoc, x, 1),
          "input " + Twine(i) + " does not hold one value per channel");
  }
  AffineMap channel =
      AffineMap::get(rank, 0, {b.getAffineDimExpr(1)}, b.getContext());
  SmallVector<AffineMap> maps = {
      b.getMultiDimIdentityMap(rank), channel, channel, channel, channel,
      b.getMultiDimIdentityMap(rank)};
  Location loc = op.getLoc();
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x),
                                       type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  // y = (x - mean) / sqrt(var + eps) * scale + B
  Value y = linalg::GenericOp::create(
                b, loc, init.getType(), op.getInputs(), init, maps, par,
                [&](OpBuilder &nb, Location l, ValueRange a) {
                  Type t = a[0].getType();
                  Value d = math::SqrtOp::create(
                      nb, l,
                      arith::AddFOp::create(nb, l, a[4],
                                            scalarConstant(nb, l, t, eps)));
                  Value n = arith::DivFOp::create(
                      nb, l, arith::SubFOp::create(nb, l, a[0], a[3]), d);
                  Value r = arith::AddFOp::create(
                      nb, l, arith::MulFOp::create(nb, l, n, a[1]), a[2]);
                  linalg::YieldOp::create(nb, l, r);
                })
                .getResult(0);
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(Value());
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "LayerNormalization", 17, convertLayerNorm},
    {"", "RMSNormalization", 23, convertRMSNorm},
    // ONNX Runtime registers it in the default domain.
    {"", "SimplifiedLayerNormalization", 1, convertRMSNorm},
    {"com.microsoft", "SkipLayerNormalization", 1, convertSkipLayerNorm},
    {"", "BatchNormalization", 15, convertBatchNorm},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getNormalizationHandlers() {
  return kHandlers;
}
