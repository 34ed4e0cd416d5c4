//===- Resize.cpp - ONNX Resize -------------------------------------------===//
//
// Resize (opset 11+): nearest or (multi)linear, the usual coordinate
// transformations, constant or run-time scales or sizes (optionally for
// some axes), as one linalg.generic that reads the input.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

/// Resize (opset 11+): nearest or (multi)linear, the usual coordinate
/// transformations, constant scales or sizes (optionally for `axes`).
LogicalResult convertResize(ONNXNodeOp op, OpBuilder &b,
                            SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  FailureOr<TypedValue<RankedTensorType>> input = rankedInput(op);
  if (failed(input))
    return failure();
  Value x = *input;
  auto type = input->getType();
  int64_t rank = type.getRank();
  StringRef mode = getStringAttr(op, "mode", "nearest");
  StringRef coord =
      getStringAttr(op, "coordinate_transformation_mode", "half_pixel");
  StringRef nearestMode =
      getStringAttr(op, "nearest_mode", "round_prefer_floor");
  if (mode != "nearest" && mode != "linear")
    return nodeError(op) << "mode '" << mode
                         << "' is not supported (nearest and linear are)";
  if (coord != "half_pixel" && coord != "half_pixel_symmetric" &&
      coord != "pytorch_half_pixel" && coord != "align_corners" &&
      coord != "asymmetric")
    return nodeError(op) << "coordinate_transformation_mode '" << coord
                         << "' is not supported";
  if (nearestMode != "round_prefer_floor" &&
      nearestMode != "round_prefer_ceil" && nearestMode != "floor" &&
      nearestMode != "ceil")
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
  if (givenType.isDynamicDim(0))
    emitEqualSizes(op, b, tensor::getMixedSize(b, op.getLoc(), given, 0),
                   b.getIndexAttr(axes.size()),
                   "needs one scale or size per resized axis (" +
                       Twine(axes.size()) + ")");
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
          math::FloorOp::create(
              b, loc, arith::MulFOp::create(b, loc, toF64(b, loc, in), sc)));
      outSizes[d] = getAsOpFoldResult(
          arith::IndexCastOp::create(b, loc, b.getIndexType(), out)
              .getResult());
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
        out =
            arith::IndexCastOp::create(b, loc, b.getIndexType(), extracted(i));
        outSizes[d] = out;
      }
      scaleOf[d] =
          arith::DivFOp::create(b, loc, toF64(b, loc, out), toF64(b, loc, in));
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
              Value i = arith::FPToSIOp::create(
                  nb, l, nb.getI64Type(), math::FloorOp::create(nb, l, v));
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
              Value inF = toF64(nb, l, inLen[d]),
                    outF = toF64(nb, l, outLen[d]);
              Value half = f(0.5);
              Value hp = arith::SubFOp::create(
                  nb, l,
                  arith::DivFOp::create(
                      nb, l, arith::AddFOp::create(nb, l, xo, half), s),
                  half);
              Value src;
              if (coord == "half_pixel") {
                src = hp;
              } else if (coord == "half_pixel_symmetric") {
                Value adjust = arith::DivFOp::create(
                    nb, l, outF, arith::MulFOp::create(nb, l, s, inF));
                Value center = arith::MulFOp::create(nb, l, inF, half);
                Value offset = arith::MulFOp::create(
                    nb, l, center,
                    arith::SubFOp::create(nb, l, f(1.0), adjust));
                src = arith::AddFOp::create(nb, l, offset, hp);
              } else if (coord == "pytorch_half_pixel") {
                Value big = arith::CmpFOp::create(
                    nb, l, arith::CmpFPredicate::OGT, outF, f(1.0));
                src = arith::SelectOp::create(nb, l, big, hp, f(0.0));
              } else if (coord == "align_corners") {
                Value one = arith::CmpFOp::create(
                    nb, l, arith::CmpFPredicate::OEQ, outF, f(1.0));
                // The unrounded output length (input * scale), as ONNX
                // defines it.
                Value exact = arith::MulFOp::create(nb, l, inF, s);
                Value ratio = arith::DivFOp::create(
                    nb, l, arith::SubFOp::create(nb, l, inF, f(1.0)),
                    arith::SubFOp::create(nb, l, exact, f(1.0)));
                src = arith::SelectOp::create(
                    nb, l, one, f(0.0),
                    arith::MulFOp::create(nb, l, xo, ratio));
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
                  r = math::FloorOp::create(
                      nb, l, arith::AddFOp::create(nb, l, v, f(0.5)));
                else // round_prefer_floor
                  r = math::CeilOp::create(
                      nb, l, arith::SubFOp::create(nb, l, v, f(0.5)));
                Value i = arith::IndexCastOp::create(
                    nb, l, nb.getIndexType(),
                    arith::FPToSIOp::create(nb, l, nb.getI64Type(), r));
                coords[d] = clampIndex(i, inLen[d]);
              }
              linalg::YieldOp::create(
                  nb, l,
                  tensor::ExtractOp::create(nb, l, x, coords).getResult());
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
              hi[d] =
                  clampIndex(arith::AddIOp::create(nb, l, i0, oneI), inLen[d]);
            }
            Value sum = f(0.0);
            for (int64_t corner = 0; corner < (int64_t(1) << dims.size());
                 ++corner) {
              SmallVector<Value> coords(index);
              Value w = f(1.0);
              for (auto [j, d] : llvm::enumerate(dims)) {
                bool upper = (corner >> j) & 1;
                coords[d] = upper ? hi[d] : lo[d];
                w = arith::MulFOp::create(
                    nb, l, w,
                    upper ? t[d]
                          : arith::SubFOp::create(nb, l, f(1.0), t[d])
                                .getResult());
              }
              Value v = tensor::ExtractOp::create(nb, l, x, coords);
              v = arith::ExtFOp::create(nb, l, f64, v);
              sum = arith::AddFOp::create(nb, l, sum,
                                          arith::MulFOp::create(nb, l, w, v));
            }
            linalg::YieldOp::create(
                nb, l,
                arith::TruncFOp::create(nb, l, element, sum).getResult());
          })
          .getResult(0);
  if (result.getType() != op.getResult(0).getType() &&
      isa<RankedTensorType>(op.getResult(0).getType()))
    result = tensor::CastOp::create(b, loc, op.getResult(0).getType(), result);
  results.push_back(result);
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Resize", 11, convertResize},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getResizeHandlers() {
  return kHandlers;
}
