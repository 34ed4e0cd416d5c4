//===- ConvOps.cpp - ONNX convolution, pooling, batch norm, pad -----------===//
//
// N-D Conv (groups, strides, dilations, pads, auto_pad), MaxPool and
// AveragePool as windowed linalg.generics over a zero/-inf padded input,
// GlobalAveragePool, inference BatchNormalization and constant-mode Pad.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

struct Window {
  SmallVector<int64_t> kernel, strides, dilations, padsBegin, padsEnd;
};

/// Reads kernel/strides/dilations/pads/auto_pad for `spatial` dims of input
/// sizes `in` (static where auto_pad needs them).
FailureOr<Window> readWindow(ONNXNodeOp op, ArrayRef<int64_t> kernel,
                             ArrayRef<int64_t> in) {
  int64_t k = kernel.size();
  Window w;
  w.kernel.assign(kernel.begin(), kernel.end());
  w.strides = getIntsAttr(op, "strides").value_or(SmallVector<int64_t>(k, 1));
  w.dilations = getIntsAttr(op, "dilations").value_or(SmallVector<int64_t>(k, 1));
  SmallVector<int64_t> pads =
      getIntsAttr(op, "pads").value_or(SmallVector<int64_t>(2 * k, 0));
  if ((int64_t)w.strides.size() != k || (int64_t)w.dilations.size() != k ||
      (int64_t)pads.size() != 2 * k)
    return nodeError(op) << "strides, dilations and pads must match the "
                            "kernel's "
                         << k << " spatial dimensions";
  w.padsBegin.assign(pads.begin(), pads.begin() + k);
  w.padsEnd.assign(pads.begin() + k, pads.end());
  StringRef autoPad = getStringAttr(op, "auto_pad", "NOTSET");
  if (autoPad == "VALID") {
    std::fill(w.padsBegin.begin(), w.padsBegin.end(), 0);
    std::fill(w.padsEnd.begin(), w.padsEnd.end(), 0);
  } else if (autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER") {
    for (int64_t i = 0; i < k; ++i) {
      if (ShapedType::isDynamic(in[i]))
        return nodeError(op) << "auto_pad " << autoPad
                             << " needs static spatial sizes";
      int64_t out = (in[i] + w.strides[i] - 1) / w.strides[i];
      int64_t extent = (w.kernel[i] - 1) * w.dilations[i] + 1;
      int64_t total =
          std::max<int64_t>(0, (out - 1) * w.strides[i] + extent - in[i]);
      int64_t small = total / 2, large = total - small;
      w.padsBegin[i] = autoPad == "SAME_UPPER" ? small : large;
      w.padsEnd[i] = autoPad == "SAME_UPPER" ? large : small;
    }
  } else if (autoPad != "NOTSET") {
    return nodeError(op) << "unknown auto_pad '" << autoPad << "'";
  }
  return w;
}

/// Pads the spatial dims (from 2 on) of `x` with `value`.
Value padSpatial(OpBuilder &b, Location loc, Value x, const Window &w,
                 Attribute value) {
  if (llvm::all_of(w.padsBegin, [](int64_t p) { return p == 0; }) &&
      llvm::all_of(w.padsEnd, [](int64_t p) { return p == 0; }))
    return x;
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<OpFoldResult> low(2, b.getIndexAttr(0)), high(2, b.getIndexAttr(0));
  SmallVector<int64_t> shape(type.getShape().take_front(2));
  for (size_t i = 0; i < w.padsBegin.size(); ++i) {
    low.push_back(b.getIndexAttr(w.padsBegin[i]));
    high.push_back(b.getIndexAttr(w.padsEnd[i]));
    int64_t d = type.getDimSize(i + 2);
    shape.push_back(ShapedType::isDynamic(d) ? d
                                             : d + w.padsBegin[i] + w.padsEnd[i]);
  }
  auto padType = RankedTensorType::get(shape, type.getElementType());
  Value pad = arith::ConstantOp::create(b, loc, cast<TypedAttr>(value));
  return tensor::PadOp::create(b, loc, padType, x, low, high, pad, false);
}

/// Output spatial sizes: floor or ceil of
/// (padded - dilation * (kernel - 1) - 1) / stride + 1.
SmallVector<OpFoldResult> outputSizes(OpBuilder &b, Location loc, Value padded,
                                      const Window &w, bool ceilMode) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, padded), out;
  for (size_t i = 0; i < w.kernel.size(); ++i) {
    int64_t extent = w.dilations[i] * (w.kernel[i] - 1) + 1;
    OpFoldResult s = sizes[i + 2];
    if (std::optional<int64_t> c = getConstantIntValue(s)) {
      int64_t span = *c - extent;
      int64_t o = (ceilMode ? (span + w.strides[i] - 1) / w.strides[i]
                            : span / w.strides[i]) + 1;
      out.push_back(b.getIndexAttr(o));
      continue;
    }
    Value v = getValueOrCreateConstantIndexOp(b, loc, s);
    Value span = arith::SubIOp::create(b, loc, v,
                                       arith::ConstantIndexOp::create(b, loc, extent));
    Value stride = arith::ConstantIndexOp::create(b, loc, w.strides[i]);
    Value q = ceilMode ? Value(arith::CeilDivSIOp::create(b, loc, span, stride))
                       : Value(arith::DivSIOp::create(b, loc, span, stride));
    out.push_back(arith::AddIOp::create(b, loc, q,
                                        arith::ConstantIndexOp::create(b, loc, 1))
                      .getResult());
  }
  return out;
}

LogicalResult convertConv(ONNXNodeOp op, OpBuilder &b,
                          SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], w = op.getInputs()[1], bias = getInput(op, 2);
  auto xType = dyn_cast<RankedTensorType>(x.getType());
  auto wType = dyn_cast<RankedTensorType>(w.getType());
  if (!xType || !wType || xType.getRank() < 3 ||
      wType.getRank() != xType.getRank() || !wType.hasStaticShape() ||
      !isa<FloatType>(xType.getElementType()))
    return nodeError(op) << "needs float X of rank 3 or more and a static W "
                            "of the same rank";
  int64_t k = xType.getRank() - 2;
  int64_t group = getIntAttr(op, "group", 1);
  int64_t m = wType.getDimSize(0), cg = wType.getDimSize(1);
  if (group < 1 || m % group != 0 ||
      (!xType.isDynamicDim(1) && xType.getDimSize(1) != cg * group))
    return nodeError(op) << "channels do not match: X has "
                         << xType.getDimSize(1) << ", W expects " << cg
                         << " x group " << group;
  FailureOr<Window> win =
      readWindow(op, wType.getShape().drop_front(2), xType.getShape().drop_front(2));
  if (failed(win))
    return failure();
  Type element = xType.getElementType();
  Value padded = padSpatial(b, loc, x, *win, b.getZeroAttr(element));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes = {sizes[0], b.getIndexAttr(m)};
  llvm::append_range(outSizes, outputSizes(b, loc, padded, *win, false));
  // Loops: n, m, o_1..o_k (parallel); c, k_1..k_k (reduction).
  int64_t loops = 2 + k + 1 + k;
  AffineExpr n = b.getAffineDimExpr(0), mm = b.getAffineDimExpr(1),
             c = b.getAffineDimExpr(2 + k);
  int64_t mPerGroup = m / group;
  SmallVector<AffineExpr> xExprs = {n, mm.floorDiv(mPerGroup) * cg + c};
  SmallVector<AffineExpr> wExprs = {mm, c}, outExprs = {n, mm};
  for (int64_t i = 0; i < k; ++i) {
    AffineExpr o = b.getAffineDimExpr(2 + i), kk = b.getAffineDimExpr(3 + k + i);
    xExprs.push_back(o * win->strides[i] + kk * win->dilations[i]);
    wExprs.push_back(kk);
    outExprs.push_back(o);
  }
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                 AffineMap::get(loops, 0, wExprs, ctx),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(2 + k, utils::IteratorType::parallel);
  iterators.append(1 + k, utils::IteratorType::reduction);
  Type acc = accumulatorType(b, element);
  Value init = tensor::EmptyOp::create(b, loc, outSizes, acc);
  if (bias) {
    int64_t rank = 2 + k;
    SmallVector<AffineMap> bmaps = {
        AffineMap::get(rank, 0, {b.getAffineDimExpr(1)}, ctx),
        b.getMultiDimIdentityMap(rank)};
    SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
    init = linalg::GenericOp::create(
               b, loc, init.getType(), bias, init, bmaps, par,
               [&](OpBuilder &nb, Location l, ValueRange a) {
                 linalg::YieldOp::create(nb, l, castScalar(nb, l, a[0], acc));
               })
               .getResult(0);
  } else {
    init = linalg::FillOp::create(b, loc, scalarConstant(b, loc, acc, 0), init)
               .getResult(0);
  }
  Value y = linalg::GenericOp::create(
                b, loc, init.getType(), ValueRange{padded, w}, init, maps,
                iterators,
                [&](OpBuilder &nb, Location l, ValueRange a) {
                  Value p = arith::MulFOp::create(nb, l, castScalar(nb, l, a[0], acc),
                                                  castScalar(nb, l, a[1], acc));
                  linalg::YieldOp::create(
                      nb, l, arith::AddFOp::create(nb, l, a[2], p).getResult());
                })
                .getResult(0);
  results.push_back(fromAccumulator(b, loc, y, element));
  return success();
}

LogicalResult pool(ONNXNodeOp op, OpBuilder &b, SmallVectorImpl<Value> &results,
                   bool isMax) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto xType = dyn_cast<RankedTensorType>(x.getType());
  if (!xType || xType.getRank() < 3 || !isa<FloatType>(xType.getElementType()))
    return nodeError(op) << "needs a float input of rank 3 or more";
  if (op.getNumResults() > 1 && !op.getResult(1).use_empty())
    return nodeError(op) << "the Indices output is not supported";
  std::optional<SmallVector<int64_t>> kernel = getIntsAttr(op, "kernel_shape");
  int64_t k = xType.getRank() - 2;
  if (!kernel || (int64_t)kernel->size() != k)
    return nodeError(op) << "needs kernel_shape with " << k << " entries";
  bool ceilMode = getIntAttr(op, "ceil_mode", 0) != 0;
  FailureOr<Window> win =
      readWindow(op, *kernel, xType.getShape().drop_front(2));
  if (failed(win))
    return failure();
  // ceil_mode: partial windows at the end count, except one that would
  // start in the end padding (ONNX / PyTorch). They read extra padding,
  // which the pooling then ignores (-inf, or left out of the divisor).
  SmallVector<int64_t> origPadsEnd(win->padsEnd), ceilOut;
  if (ceilMode) {
    for (int64_t i = 0; i < k; ++i) {
      int64_t in = xType.getDimSize(2 + i);
      if (ShapedType::isDynamic(in))
        return nodeError(op) << "ceil_mode = 1 needs static spatial sizes";
      int64_t padded = in + win->padsBegin[i] + win->padsEnd[i];
      int64_t extent = win->dilations[i] * (win->kernel[i] - 1) + 1;
      int64_t span = padded - extent, s = win->strides[i];
      if (span < 0)
        return nodeError(op) << "the window is larger than the padded input";
      int64_t o = (span + s - 1) / s + 1;
      if ((o - 1) * s >= in + win->padsBegin[i])
        --o;
      ceilOut.push_back(o);
      win->padsEnd[i] += std::max<int64_t>(0, (o - 1) * s + extent - padded);
    }
  }
  Type element = xType.getElementType();
  bool includePad = getIntAttr(op, "count_include_pad", 0) != 0;
  Attribute padValue =
      isMax ? b.getFloatAttr(element, -INFINITY) : b.getZeroAttr(element);
  Value padded = padSpatial(b, loc, x, *win, padValue);
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes = {sizes[0], sizes[1]};
  if (ceilMode) {
    for (int64_t o : ceilOut)
      outSizes.push_back(b.getIndexAttr(o));
  } else {
    llvm::append_range(outSizes, outputSizes(b, loc, padded, *win, false));
  }
  // Loops: n, c, o_1..o_k, k_1..k_k; the window's extent comes from an
  // (unread) tensor of the kernel's shape.
  int64_t loops = 2 + 2 * k;
  SmallVector<AffineExpr> xExprs = {b.getAffineDimExpr(0), b.getAffineDimExpr(1)};
  SmallVector<AffineExpr> kExprs, outExprs = {b.getAffineDimExpr(0),
                                              b.getAffineDimExpr(1)};
  for (int64_t i = 0; i < k; ++i) {
    AffineExpr o = b.getAffineDimExpr(2 + i), kk = b.getAffineDimExpr(2 + k + i);
    xExprs.push_back(o * win->strides[i] + kk * win->dilations[i]);
    kExprs.push_back(kk);
    outExprs.push_back(o);
  }
  MLIRContext *ctx = b.getContext();
  Value window = tensor::EmptyOp::create(b, loc, win->kernel, element);
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                 AffineMap::get(loops, 0, kExprs, ctx),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(2 + k, utils::IteratorType::parallel);
  iterators.append(k, utils::IteratorType::reduction);
  Value init = linalg::FillOp::create(
                   b, loc,
                   arith::ConstantOp::create(b, loc, cast<TypedAttr>(padValue))
                       .getResult(),
                   tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
                   .getResult(0);
  Value y = linalg::GenericOp::create(
                b, loc, init.getType(), ValueRange{padded, window}, init, maps,
                iterators,
                [&](OpBuilder &nb, Location l, ValueRange a) {
                  Value r = isMax ? Value(arith::MaximumFOp::create(nb, l, a[2], a[0]))
                                  : Value(arith::AddFOp::create(nb, l, a[2], a[0]));
                  linalg::YieldOp::create(nb, l, r);
                })
                .getResult(0);
  if (!isMax) {
    // Divide by the window size, or by the number of real (unpadded)
    // elements it covers: per output index and dim, the overlap of
    // [o*s - pb, o*s - pb + k) with [0, size).
    int64_t rank = 2 + k;
    SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x);
    y = linalg::GenericOp::create(
            b, loc, y.getType(), ValueRange{y},
            tensor::EmptyOp::create(b, loc, outSizes, element).getResult(),
            SmallVector<AffineMap>(2, b.getMultiDimIdentityMap(rank)),
            SmallVector<utils::IteratorType>(rank, utils::IteratorType::parallel),
            [&](OpBuilder &nb, Location l, ValueRange a) {
              Value count = arith::ConstantIndexOp::create(nb, l, 1);
              for (int64_t i = 0; i < k; ++i) {
                // Taps start + j·dilation (j < k) inside the input, or with
                // count_include_pad inside the input and its declared pads
                // (not the extra end padding of ceil_mode):
                // j in [ceil((lo - start) / d), ceil((hi - start) / d)).
                auto c = [&](int64_t v) -> Value {
                  return arith::ConstantIndexOp::create(nb, l, v);
                };
                Value o = linalg::IndexOp::create(nb, l, 2 + i);
                Value start = arith::SubIOp::create(
                    nb, l, arith::MulIOp::create(nb, l, o, c(win->strides[i])),
                    c(win->padsBegin[i]));
                Value size = getValueOrCreateConstantIndexOp(nb, l, inSizes[2 + i]);
                Value lo = includePad ? c(-win->padsBegin[i]) : c(0);
                Value hi = includePad
                               ? Value(arith::AddIOp::create(nb, l, size,
                                                             c(origPadsEnd[i])))
                               : size;
                Value d = c(win->dilations[i]);
                Value jMin = arith::MaxSIOp::create(
                    nb, l, c(0),
                    arith::CeilDivSIOp::create(
                        nb, l, arith::SubIOp::create(nb, l, lo, start), d));
                Value jMax = arith::MinSIOp::create(
                    nb, l, c(win->kernel[i]),
                    arith::CeilDivSIOp::create(
                        nb, l, arith::SubIOp::create(nb, l, hi, start), d));
                Value len = arith::MaxSIOp::create(
                    nb, l, c(0), arith::SubIOp::create(nb, l, jMax, jMin));
                count = arith::MulIOp::create(nb, l, count, len);
              }
              Value cf = arith::SIToFPOp::create(
                  nb, l, element,
                  arith::IndexCastOp::create(nb, l, nb.getI64Type(), count));
              linalg::YieldOp::create(
                  nb, l, arith::DivFOp::create(nb, l, a[0], cf).getResult());
            })
            .getResult(0);
  }
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(Value());
  return success();
}

LogicalResult convertMaxPool(ONNXNodeOp op, OpBuilder &b,
                             SmallVectorImpl<Value> &results) {
  return pool(op, b, results, true);
}
LogicalResult convertAveragePool(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results) {
  return pool(op, b, results, false);
}

LogicalResult convertGlobalAveragePool(ONNXNodeOp op, OpBuilder &b,
                                       SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = dyn_cast<RankedTensorType>(x.getType());
  if (!type || type.getRank() < 3 || !isa<FloatType>(type.getElementType()))
    return nodeError(op) << "needs a float input of rank 3 or more";
  // mean over the spatial dims, kept as size 1.
  int64_t rank = type.getRank();
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes = {sizes[0], sizes[1]};
  outSizes.append(rank - 2, b.getIndexAttr(1));
  SmallVector<AffineExpr> outExprs = {b.getAffineDimExpr(0), b.getAffineDimExpr(1)};
  outExprs.append(rank - 2, b.getAffineConstantExpr(0));
  Type element = type.getElementType();
  Type acc = accumulatorType(b, element);
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, acc, 0),
                   tensor::EmptyOp::create(b, loc, outSizes, acc).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(2, utils::IteratorType::parallel);
  iterators.append(rank - 2, utils::IteratorType::reduction);
  Value sum = linalg::GenericOp::create(
                  b, loc, init.getType(), x, init,
                  {b.getMultiDimIdentityMap(rank),
                   AffineMap::get(rank, 0, outExprs, b.getContext())},
                  iterators,
                  [&](OpBuilder &nb, Location l, ValueRange a) {
                    linalg::YieldOp::create(
                        nb, l, arith::AddFOp::create(nb, l, a[1],
                                                     castScalar(nb, l, a[0], acc))
                                   .getResult());
                  })
                  .getResult(0);
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d = 2; d < rank; ++d)
    count = arith::MulIOp::create(b, loc, count,
                                  getValueOrCreateConstantIndexOp(b, loc, sizes[d]));
  Value cf = arith::SIToFPOp::create(
      b, loc, acc, arith::IndexCastOp::create(b, loc, b.getI64Type(), count));
  FailureOr<Value> mean = buildElementwise(
      op, b, sum, element, [&](OpBuilder &nb, Location l, ValueRange a) {
        return castScalar(nb, l, arith::DivFOp::create(nb, l, a[0], cf), element);
      });
  if (failed(mean))
    return failure();
  results.push_back(*mean);
  return success();
}

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
  AffineMap channel = AffineMap::get(rank, 0, {b.getAffineDimExpr(1)},
                                     b.getContext());
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank), channel,
                                 channel, channel, channel,
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
                      arith::AddFOp::create(nb, l, a[4], scalarConstant(nb, l, t, eps)));
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

/// Pad in every mode (constant, edge, reflect, wrap), with constant or
/// run-time pads (negative ones crop), as a gather: output index o reads
/// input index o - pad_begin, mapped into range as the mode says.
LogicalResult convertPad(ONNXNodeOp op, OpBuilder &b,
                         SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0];
  auto type = dyn_cast<RankedTensorType>(x.getType());
  if (!type)
    return nodeError(op) << "needs a ranked input";
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
      slot = arith::IndexCastOp::create(b, loc, b.getIndexType(), e).getResult();
    }
  SmallVector<OpFoldResult> inSizes = tensor::getMixedSizes(b, loc, x), outSizes;
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
        arith::AddIOp::create(b, loc, getValueOrCreateConstantIndexOp(b, loc, begin[d]),
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
              Value len = lenV[d], last = arith::SubIOp::create(nb, l, len, one);
              if (mode == "constant") {
                Value ge = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sge, i, zero);
                Value lt = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, i, len);
                inside = arith::AndIOp::create(
                    nb, l, inside, arith::AndIOp::create(nb, l, ge, lt));
                // Any in-range index for the (discarded) read outside.
                i = arith::MaxSIOp::create(nb, l, zero,
                                           arith::MinSIOp::create(nb, l, i, last));
              } else if (mode == "edge") {
                i = arith::MaxSIOp::create(nb, l, zero,
                                           arith::MinSIOp::create(nb, l, i, last));
              } else if (mode == "wrap") {
                Value r = arith::RemSIOp::create(nb, l, i, len);
                Value neg = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, r, zero);
                i = arith::SelectOp::create(nb, l, neg,
                                            arith::AddIOp::create(nb, l, r, len), r);
              } else { // reflect, period 2(len - 1), no edge repeat
                Value period = arith::MulIOp::create(
                    nb, l, last, arith::ConstantIndexOp::create(nb, l, 2));
                Value safe = arith::MaxSIOp::create(nb, l, period, one);
                Value r = arith::RemSIOp::create(nb, l, i, safe);
                Value neg = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::slt, r, zero);
                r = arith::SelectOp::create(nb, l, neg,
                                            arith::AddIOp::create(nb, l, r, safe), r);
                Value over = arith::CmpIOp::create(nb, l, arith::CmpIPredicate::sgt, r, last);
                i = arith::SelectOp::create(nb, l, over,
                                            arith::SubIOp::create(nb, l, period, r), r);
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
    y = tensor::CastOp::create(b, loc, RankedTensorType::get(shape, type.getElementType()), y);
  results.push_back(y);
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Conv", 11, convertConv},
    {"", "MaxPool", 12, convertMaxPool},
    {"", "AveragePool", 11, convertAveragePool},
    {"", "GlobalAveragePool", 1, convertGlobalAveragePool},
    {"", "BatchNormalization", 15, convertBatchNorm},
    {"", "Pad", 13, convertPad},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getConvHandlers() { return kHandlers; }
