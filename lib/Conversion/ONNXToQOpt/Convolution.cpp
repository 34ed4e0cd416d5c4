//===- Convolution.cpp - ONNX Conv ----------------------------------------===//
//
// N-D Conv (groups, strides, dilations, pads, auto_pad) as one
// linalg.generic over a zero-padded input, and the kernel window helpers
// (Window.h) it shares with Pooling.cpp.
//
//===----------------------------------------------------------------------===//

#include "Window.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

//===----------------------------------------------------------------------===//
// Kernel windows
//===----------------------------------------------------------------------===//

FailureOr<Window> mlir::qopt::onnx::readWindow(ONNXNodeOp op,
                                               ArrayRef<int64_t> kernel,
                                               ArrayRef<int64_t> in) {
  int64_t k = kernel.size();
  Window w;
  w.kernel.assign(kernel.begin(), kernel.end());
  w.strides = getIntsAttr(op, "strides").value_or(SmallVector<int64_t>(k, 1));
  w.dilations =
      getIntsAttr(op, "dilations").value_or(SmallVector<int64_t>(k, 1));
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
        return nodeError(op)
               << "auto_pad " << autoPad << " needs static spatial sizes";
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

Value mlir::qopt::onnx::padSpatial(OpBuilder &b, Location loc, Value x,
                                   const Window &w, Attribute value) {
  if (llvm::all_of(w.padsBegin, [](int64_t p) { return p == 0; }) &&
      llvm::all_of(w.padsEnd, [](int64_t p) { return p == 0; }))
    return x;
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<OpFoldResult> low(2, b.getIndexAttr(0)),
      high(2, b.getIndexAttr(0));
  SmallVector<int64_t> shape(type.getShape().take_front(2));
  for (size_t i = 0; i < w.padsBegin.size(); ++i) {
    low.push_back(b.getIndexAttr(w.padsBegin[i]));
    high.push_back(b.getIndexAttr(w.padsEnd[i]));
    int64_t d = type.getDimSize(i + 2);
    shape.push_back(
        ShapedType::isDynamic(d) ? d : d + w.padsBegin[i] + w.padsEnd[i]);
  }
  auto padType = RankedTensorType::get(shape, type.getElementType());
  Value pad = arith::ConstantOp::create(b, loc, cast<TypedAttr>(value));
  return tensor::PadOp::create(b, loc, padType, x, low, high, pad, false);
}

FailureOr<SmallVector<OpFoldResult>>
mlir::qopt::onnx::outputSizes(ONNXNodeOp op, OpBuilder &b, Location loc,
                              Value padded, const Window &w, bool ceilMode) {
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, padded), out;
  for (size_t i = 0; i < w.kernel.size(); ++i) {
    int64_t extent = w.dilations[i] * (w.kernel[i] - 1) + 1;
    OpFoldResult s = sizes[i + 2];
    if (std::optional<int64_t> c = getConstantIntValue(s)) {
      int64_t span = *c - extent;
      if (span < 0)
        return nodeError(op) << "the window (extent " << extent
                             << ") is larger than the padded input (" << *c
                             << ") in spatial dimension " << i;
      int64_t o = (ceilMode ? (span + w.strides[i] - 1) / w.strides[i]
                            : span / w.strides[i]) +
                  1;
      out.push_back(b.getIndexAttr(o));
      continue;
    }
    Value v = getValueOrCreateConstantIndexOp(b, loc, s);
    Value span = arith::SubIOp::create(
        b, loc, v, arith::ConstantIndexOp::create(b, loc, extent));
    emitCheck(op, b,
              arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sge, span,
                                    arith::ConstantIndexOp::create(b, loc, 0)),
              "the window (extent " + Twine(extent) +
                  ") is larger than the padded input in spatial dimension " +
                  Twine(i));
    Value stride = arith::ConstantIndexOp::create(b, loc, w.strides[i]);
    Value q = ceilMode ? Value(arith::CeilDivSIOp::create(b, loc, span, stride))
                       : Value(arith::DivSIOp::create(b, loc, span, stride));
    out.push_back(arith::AddIOp::create(
                      b, loc, q, arith::ConstantIndexOp::create(b, loc, 1))
                      .getResult());
  }
  return out;
}

//===----------------------------------------------------------------------===//
// Conv
//===----------------------------------------------------------------------===//

namespace {

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
  if (xType.isDynamicDim(1))
    emitEqualSizes(op, b, tensor::getMixedSize(b, loc, x, 1),
                   b.getIndexAttr(cg * group),
                   "X's channels differ from W's (" + Twine(cg * group) + ")");
  FailureOr<Window> win = readWindow(op, wType.getShape().drop_front(2),
                                     xType.getShape().drop_front(2));
  if (failed(win))
    return failure();
  Type element = xType.getElementType();
  Value padded = padSpatial(b, loc, x, *win, b.getZeroAttr(element));
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  SmallVector<OpFoldResult> outSizes = {sizes[0], b.getIndexAttr(m)};
  FailureOr<SmallVector<OpFoldResult>> spatial =
      outputSizes(op, b, loc, padded, *win, false);
  if (failed(spatial))
    return failure();
  llvm::append_range(outSizes, *spatial);
  // Loops: n, m, o_1..o_k (parallel); c, k_1..k_k (reduction).
  int64_t loops = 2 + k + 1 + k;
  AffineExpr n = b.getAffineDimExpr(0), mm = b.getAffineDimExpr(1),
             c = b.getAffineDimExpr(2 + k);
  int64_t mPerGroup = m / group;
  SmallVector<AffineExpr> xExprs = {n, mm.floorDiv(mPerGroup) * cg + c};
  SmallVector<AffineExpr> wExprs = {mm, c}, outExprs = {n, mm};
  for (int64_t i = 0; i < k; ++i) {
    AffineExpr o = b.getAffineDimExpr(2 + i),
               kk = b.getAffineDimExpr(3 + k + i);
    xExprs.push_back(o * win->strides[i] + kk * win->dilations[i]);
    wExprs.push_back(kk);
    outExprs.push_back(o);
  }
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps = {AffineMap::get(loops, 0, xExprs, ctx),
                                 AffineMap::get(loops, 0, wExprs, ctx),
                                 AffineMap::get(loops, 0, outExprs, ctx)};
  SmallVector<utils::IteratorType> iterators(2 + k,
                                             utils::IteratorType::parallel);
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
  Value y =
      linalg::GenericOp::create(
          b, loc, init.getType(), ValueRange{padded, w}, init, maps, iterators,
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

const HandlerEntry kHandlers[] = {
    {"", "Conv", 11, convertConv},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getConvolutionHandlers() {
  return kHandlers;
}
