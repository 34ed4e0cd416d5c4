//===- Pooling.cpp - ONNX pooling operators -------------------------------===//
//
// MaxPool and AveragePool (N-D; strides, dilations, pads, ceil_mode,
// count_include_pad) as windowed linalg.generics over a -inf / zero padded
// input, and GlobalAveragePool.
//
//===----------------------------------------------------------------------===//

#include "Window.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

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
    FailureOr<SmallVector<OpFoldResult>> spatial =
        outputSizes(op, b, loc, padded, *win, false);
    if (failed(spatial))
      return failure();
    llvm::append_range(outSizes, *spatial);
  }
  // Loops: n, c, o_1..o_k, k_1..k_k; the window's extent comes from an
  // (unread) tensor of the kernel's shape.
  int64_t loops = 2 + 2 * k;
  SmallVector<AffineExpr> xExprs = {b.getAffineDimExpr(0),
                                    b.getAffineDimExpr(1)};
  SmallVector<AffineExpr> kExprs,
      outExprs = {b.getAffineDimExpr(0), b.getAffineDimExpr(1)};
  for (int64_t i = 0; i < k; ++i) {
    AffineExpr o = b.getAffineDimExpr(2 + i),
               kk = b.getAffineDimExpr(2 + k + i);
    xExprs.push_back(o * win->strides[i] + kk * win->dilations[i]);
    kExprs.push_back(kk);
    outExprs.push_back(o);
  }
  MLIRContext *ctx = b.getContext();
  Value window = tensor::EmptyOp::create(b, loc, win->kernel, element);
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                 AffineMap::get(loops, 0, kExprs, ctx),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(2 + k,
                                             utils::IteratorType::parallel);
  iterators.append(k, utils::IteratorType::reduction);
  Value init =
      linalg::FillOp::create(
          b, loc,
          arith::ConstantOp::create(b, loc, cast<TypedAttr>(padValue))
              .getResult(),
          tensor::EmptyOp::create(b, loc, outSizes, element).getResult())
          .getResult(0);
  Value y = linalg::GenericOp::create(
                b, loc, init.getType(), ValueRange{padded, window}, init, maps,
                iterators,
                [&](OpBuilder &nb, Location l, ValueRange a) {
                  Value r =
                      isMax
                          ? Value(arith::MaximumFOp::create(nb, l, a[2], a[0]))
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
            SmallVector<utils::IteratorType>(rank,
                                             utils::IteratorType::parallel),
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
                Value size =
                    getValueOrCreateConstantIndexOp(nb, l, inSizes[2 + i]);
                Value lo = includePad ? c(-win->padsBegin[i]) : c(0);
                Value hi = includePad ? Value(arith::AddIOp::create(
                                            nb, l, size, c(origPadsEnd[i])))
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
  SmallVector<AffineExpr> outExprs = {b.getAffineDimExpr(0),
                                      b.getAffineDimExpr(1)};
  outExprs.append(rank - 2, b.getAffineConstantExpr(0));
  Type element = type.getElementType();
  Type acc = accumulatorType(b, element);
  Value init = linalg::FillOp::create(
                   b, loc, scalarConstant(b, loc, acc, 0),
                   tensor::EmptyOp::create(b, loc, outSizes, acc).getResult())
                   .getResult(0);
  SmallVector<utils::IteratorType> iterators(2, utils::IteratorType::parallel);
  iterators.append(rank - 2, utils::IteratorType::reduction);
  Value sum =
      linalg::GenericOp::create(
          b, loc, init.getType(), x, init,
          {b.getMultiDimIdentityMap(rank),
           AffineMap::get(rank, 0, outExprs, b.getContext())},
          iterators,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            linalg::YieldOp::create(
                nb, l,
                arith::AddFOp::create(nb, l, a[1], castScalar(nb, l, a[0], acc))
                    .getResult());
          })
          .getResult(0);
  Value count = arith::ConstantIndexOp::create(b, loc, 1);
  for (int64_t d = 2; d < rank; ++d)
    count = arith::MulIOp::create(
        b, loc, count, getValueOrCreateConstantIndexOp(b, loc, sizes[d]));
  Value cf = arith::SIToFPOp::create(
      b, loc, acc, arith::IndexCastOp::create(b, loc, b.getI64Type(), count));
  FailureOr<Value> mean = buildElementwise(
      op, b, sum, element, [&](OpBuilder &nb, Location l, ValueRange a) {
        return castScalar(nb, l, arith::DivFOp::create(nb, l, a[0], cf),
                          element);
      });
  if (failed(mean))
    return failure();
  results.push_back(*mean);
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "MaxPool", 12, convertMaxPool},
    {"", "AveragePool", 11, convertAveragePool},
    {"", "GlobalAveragePool", 1, convertGlobalAveragePool},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getPoolingHandlers() {
  return kHandlers;
}
