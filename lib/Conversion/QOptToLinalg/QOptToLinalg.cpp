//===- QOptToLinalg.cpp - QOpt ops to linalg reference semantics ----------===//

#include "qopt/Conversion/Passes.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_CONVERTQOPTTOLINALGPASS
#include "qopt/Conversion/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

SmallVector<OpFoldResult> sizesOf(OpBuilder &b, Location loc, Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<OpFoldResult> sizes;
  for (int64_t i = 0; i < type.getRank(); ++i)
    sizes.push_back(type.isDynamicDim(i)
                        ? OpFoldResult(tensor::DimOp::create(b, loc, v, i).getResult())
                        : OpFoldResult(b.getIndexAttr(type.getDimSize(i))));
  return sizes;
}

Value f32Const(OpBuilder &b, Location loc, double v) {
  return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v));
}

Value toF32(OpBuilder &b, Location loc, Value v) {
  auto t = cast<FloatType>(v.getType());
  if (t.isF32())
    return v;
  return t.getWidth() < 32 ? Value(arith::ExtFOp::create(b, loc, b.getF32Type(), v))
                           : Value(arith::TruncFOp::create(b, loc, b.getF32Type(), v));
}

Value fromF32(OpBuilder &b, Location loc, Value v, Type t) {
  if (t.isF32())
    return v;
  return cast<FloatType>(t).getWidth() < 32
             ? Value(arith::TruncFOp::create(b, loc, t, v))
             : Value(arith::ExtFOp::create(b, loc, t, v));
}

/// f32 statistics over the dims from `axis` on: sum(f(x)) / count, with `f`
/// given the f32 element (and the leading-dims stats computed before).
Value rowMean(OpBuilder &b, Location loc, Value x, int64_t axis,
              ValueRange previous,
              function_ref<Value(OpBuilder &, Location, Value, ValueRange)> f) {
  auto type = cast<RankedTensorType>(x.getType());
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = sizesOf(b, loc, x);
  SmallVector<OpFoldResult> outSizes(sizes.begin(), sizes.begin() + axis);
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iterators;
  for (int64_t d = 0; d < rank; ++d) {
    iterators.push_back(d < axis ? utils::IteratorType::parallel
                                 : utils::IteratorType::reduction);
    if (d < axis)
      outExprs.push_back(b.getAffineDimExpr(d));
  }
  AffineMap outMap = AffineMap::get(rank, 0, outExprs, b.getContext());
  Value init = linalg::FillOp::create(
                   b, loc, f32Const(b, loc, 0),
                   tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type()).getResult())
                   .getResult(0);
  SmallVector<Value> inputs = {x};
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank)};
  for (Value p : previous) {
    inputs.push_back(p);
    maps.push_back(outMap);
  }
  maps.push_back(outMap);
  Value sum = linalg::GenericOp::create(
                  b, loc, init.getType(), inputs, init, maps, iterators,
                  [&](OpBuilder &nb, Location l, ValueRange a) {
                    Value v = f(nb, l, toF32(nb, l, a[0]),
                                a.drop_front().drop_back());
                    linalg::YieldOp::create(
                        nb, l, arith::AddFOp::create(nb, l, a.back(), v).getResult());
                  })
                  .getResult(0);
  // Divide by the number of normalised elements.
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d = axis; d < rank; ++d)
    count = arith::MulIOp::create(b, loc, count,
                                  getValueOrCreateConstantIndexOp(b, loc, sizes[d]));
  Value countF = arith::UIToFPOp::create(
      b, loc, b.getF32Type(),
      arith::IndexCastOp::create(b, loc, b.getI64Type(), count));
  SmallVector<AffineMap> idMaps(2, b.getMultiDimIdentityMap(axis));
  SmallVector<utils::IteratorType> par(axis, utils::IteratorType::parallel);
  Value out = tensor::EmptyOp::create(b, loc, outSizes, b.getF32Type());
  return linalg::GenericOp::create(
             b, loc, out.getType(), sum, out, idMaps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               linalg::YieldOp::create(
                   nb, l, arith::DivFOp::create(nb, l, a[0], countF).getResult());
             })
      .getResult(0);
}

/// y = T(normalize(x_f32, stats)) * gamma (+ beta), elementwise.
Value finish(OpBuilder &b, Location loc, Value x, int64_t axis,
             ValueRange stats, Value gamma, Value beta,
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
  maps.push_back(b.getMultiDimIdentityMap(rank));
  Value init = tensor::EmptyOp::create(b, loc, sizesOf(b, loc, x),
                                       type.getElementType());
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  unsigned numStats = stats.size();
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange a) {
               Value n = norm(nb, l, toF32(nb, l, a[0]),
                              a.slice(1, numStats));
               Value y = fromF32(nb, l, n, type.getElementType());
               y = arith::MulFOp::create(nb, l, y, a[1 + numStats]);
               if (beta)
                 y = arith::AddFOp::create(nb, l, y, a[2 + numStats]);
               linalg::YieldOp::create(nb, l, y);
             })
      .getResult(0);
}

int64_t normalizedAxis(int64_t axis, int64_t rank) {
  return axis < 0 ? axis + rank : axis;
}

struct LowerRMSNorm : OpRewritePattern<RMSNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RMSNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()),
                                  op.getInput().getType().getRank());
    double eps = op.getEpsilon().convertToDouble();
    // y = x / sqrt(mean(x^2) + eps) * gamma
    Value ms = rowMean(rewriter, loc, x, axis, {},
                       [](OpBuilder &b, Location l, Value v, ValueRange) {
                         return Value(arith::MulFOp::create(b, l, v, v));
                       });
    Value y = finish(rewriter, loc, x, axis, ms, op.getGamma(), Value(),
                     [&](OpBuilder &b, Location l, Value v, ValueRange s) {
                       Value d = math::SqrtOp::create(
                           b, l, arith::AddFOp::create(b, l, s[0], f32Const(b, l, eps)));
                       return Value(arith::DivFOp::create(b, l, v, d));
                     });
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerLayerNorm : OpRewritePattern<LayerNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LayerNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()),
                                  op.getInput().getType().getRank());
    double eps = op.getEpsilon().convertToDouble();
    // Two passes (mean, then the mean of squared deviations) for accuracy.
    Value mean = rowMean(rewriter, loc, x, axis, {},
                         [](OpBuilder &, Location, Value v, ValueRange) {
                           return v;
                         });
    Value var = rowMean(rewriter, loc, x, axis, mean,
                        [](OpBuilder &b, Location l, Value v, ValueRange s) {
                          Value d = arith::SubFOp::create(b, l, v, s[0]);
                          return Value(arith::MulFOp::create(b, l, d, d));
                        });
    Value y = finish(rewriter, loc, x, axis, {mean, var}, op.getGamma(),
                     op.getBeta(),
                     [&](OpBuilder &b, Location l, Value v, ValueRange s) {
                       Value d = math::SqrtOp::create(
                           b, l, arith::AddFOp::create(b, l, s[1], f32Const(b, l, eps)));
                       return Value(arith::DivFOp::create(
                           b, l, arith::SubFOp::create(b, l, v, s[0]), d));
                     });
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerLinear : OpRewritePattern<LinearOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LinearOp op,
                                PatternRewriter &rewriter) const override {
    auto wType = dyn_cast<RankedTensorType>(op.getWeight().getType());
    if (!wType)
      return rewriter.notifyMatchFailure(op, "quantized weights not lowered yet");
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto xType = op.getInput().getType();
    int64_t rank = xType.getRank();
    Type element = xType.getElementType();
    // y[..., n] = sum_k x[..., k] * W[n, k] (+ b[n]); loops (..., n, k).
    int64_t loops = rank + 1;
    SmallVector<AffineExpr> xExprs, outExprs;
    for (int64_t d = 0; d < rank - 1; ++d) {
      xExprs.push_back(rewriter.getAffineDimExpr(d));
      outExprs.push_back(rewriter.getAffineDimExpr(d));
    }
    AffineExpr n = rewriter.getAffineDimExpr(rank - 1),
               k = rewriter.getAffineDimExpr(rank);
    xExprs.push_back(k);
    outExprs.push_back(n);
    MLIRContext *ctx = rewriter.getContext();
    SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                   AffineMap::get(loops, 0, {n, k}, ctx),
                                   AffineMap::get(loops, 0, outExprs, ctx)};
    SmallVector<OpFoldResult> sizes = sizesOf(rewriter, loc, x);
    sizes.back() = sizesOf(rewriter, loc, op.getWeight())[0];
    Value init;
    if (Value bias = op.getBias()) {
      // Start from the bias, broadcast over the leading dims.
      SmallVector<AffineMap> bmaps = {
          AffineMap::get(rank, 0, {rewriter.getAffineDimExpr(rank - 1)}, ctx),
          rewriter.getMultiDimIdentityMap(rank)};
      Value empty = tensor::EmptyOp::create(rewriter, loc, sizes, element);
      SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
      init = linalg::GenericOp::create(
                 rewriter, loc, empty.getType(), bias, empty, bmaps, par,
                 [](OpBuilder &b, Location l, ValueRange a) {
                   linalg::YieldOp::create(b, l, a[0]);
                 })
                 .getResult(0);
    } else {
      Value zero = arith::ConstantOp::create(rewriter, loc,
                                             rewriter.getZeroAttr(element));
      init = linalg::FillOp::create(
                 rewriter, loc, zero,
                 tensor::EmptyOp::create(rewriter, loc, sizes, element).getResult())
                 .getResult(0);
    }
    SmallVector<utils::IteratorType> iterators(loops - 1,
                                               utils::IteratorType::parallel);
    iterators.push_back(utils::IteratorType::reduction);
    Value y = linalg::GenericOp::create(
                  rewriter, loc, init.getType(), ValueRange{x, op.getWeight()},
                  init, maps, iterators,
                  [](OpBuilder &b, Location l, ValueRange a) {
                    Value p = arith::MulFOp::create(b, l, a[0], a[1]);
                    linalg::YieldOp::create(
                        b, l, arith::AddFOp::create(b, l, a[2], p).getResult());
                  })
                  .getResult(0);
    if (y.getType() != op.getType())
      y = tensor::CastOp::create(rewriter, loc, op.getType(), y);
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct LowerSmooth : OpRewritePattern<SmoothOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SmoothOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    int64_t rank = op.getInput().getType().getRank();
    int64_t axis = normalizedAxis(static_cast<int64_t>(op.getAxis()), rank);
    SmallVector<AffineMap> maps = {
        rewriter.getMultiDimIdentityMap(rank),
        AffineMap::get(rank, 0, {rewriter.getAffineDimExpr(axis)},
                       rewriter.getContext()),
        rewriter.getMultiDimIdentityMap(rank)};
    Value init = tensor::EmptyOp::create(rewriter, loc, sizesOf(rewriter, loc, x),
                                         op.getInput().getType().getElementType());
    SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
    Value y = linalg::GenericOp::create(
                  rewriter, loc, init.getType(), ValueRange{x, op.getScale()},
                  init, maps, par,
                  [](OpBuilder &b, Location l, ValueRange a) {
                    linalg::YieldOp::create(
                        b, l, arith::DivFOp::create(b, l, a[0], a[1]).getResult());
                  })
                  .getResult(0);
    rewriter.replaceOp(op, y);
    return success();
  }
};

struct ConvertQOptToLinalgPass
    : qopt::impl::ConvertQOptToLinalgPassBase<ConvertQOptToLinalgPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<LowerRMSNorm, LowerLayerNorm, LowerLinear, LowerSmooth>(
        &getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
