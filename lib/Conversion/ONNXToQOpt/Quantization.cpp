//===- Quantization.cpp - ONNX quantized operators ------------------------===//
//
// QuantizeLinear / DequantizeLinear (per tensor, per axis, blocked) and
// MatMulInteger on integers; com.microsoft MatMulNBits, whose block-quantized
// weights become a !qopt.qtensor that qopt.linear consumes.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

#include <cmath>

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

/// Reinterprets an unsigned 8-bit tensor as i8 (same bytes) and reshapes it.
Value bytesAs(OpBuilder &b, Location loc, Value v, ArrayRef<int64_t> shape) {
  auto type = cast<RankedTensorType>(v.getType());
  auto i8Type = RankedTensorType::get(type.getShape(), b.getIntegerType(8));
  Value bytes = v;
  if (type.getElementType() != b.getIntegerType(8)) {
    // Constant data (inline parameters) is reinterpreted at compile time;
    // otherwise a tensor.bitcast does it.
    Attribute data;
    if (!matchPattern(v, m_Constant(&data)))
      if (auto load = v.getDefiningOp<LoadParamOp>())
        data = getInlineParamData(load);
    if (auto dense = dyn_cast_or_null<DenseElementsAttr>(data))
      bytes =
          arith::ConstantOp::create(b, loc, dense.bitcast(b.getIntegerType(8)));
    else
      bytes = tensor::BitcastOp::create(b, loc, i8Type, v);
  }
  SmallVector<OpFoldResult> sizes;
  for (int64_t d : shape)
    sizes.push_back(b.getIndexAttr(d));
  return reshapeTo(b, loc, bytes, sizes);
}

LogicalResult convertMatMulNBits(ONNXNodeOp op, OpBuilder &b,
                                 SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  int64_t k = getIntAttr(op, "K", -1), n = getIntAttr(op, "N", -1);
  int64_t bits = getIntAttr(op, "bits", 4);
  int64_t block = getIntAttr(op, "block_size", -1);
  if (k <= 0 || n <= 0 || block < 16 || (block & (block - 1)))
    return nodeError(op) << "needs positive K and N and a power-of-two "
                            "block_size of at least 16";
  if (bits != 4 && bits != 8 && bits != 2)
    return nodeError(op) << bits << "-bit weights are not supported yet";
  if (k % block != 0)
    return nodeError(op) << "K = " << k << " must be a multiple of block_size "
                         << block << " (padded blocks are not supported yet)";
  if (getInput(op, 4))
    return nodeError(op) << "g_idx (act-order) is not supported";
  Value a = op.getInputs()[0];
  auto aType = dyn_cast<RankedTensorType>(a.getType());
  if (!aType || !isa<FloatType>(aType.getElementType()))
    return nodeError(op) << "needs a ranked float input A";
  if (aType.getRank() < 1 || (!aType.isDynamicDim(aType.getRank() - 1) &&
                              aType.getDimSize(aType.getRank() - 1) != k))
    return nodeError(op) << "A's last dimension must be K (" << k << ")";
  Type element = aType.getElementType();
  int64_t blocks = k / block;
  auto checkBytes = [&](Value v, int64_t count,
                        StringRef what) -> LogicalResult {
    auto t = dyn_cast<RankedTensorType>(v ? v.getType() : Type());
    if (!t || !t.hasStaticShape() || t.getNumElements() != count ||
        !t.getElementType().isInteger(8))
      return nodeError(op) << what << " must hold " << count
                           << " (u)int8 values";
    return success();
  };
  Value bIn = op.getInputs()[1];
  if (failed(checkBytes(bIn, n * k * bits / 8, "B")))
    return failure();
  Value data = bytesAs(b, loc, bIn, {n, k * bits / 8});
  Value scalesIn = op.getInputs()[2];
  auto sType = dyn_cast<RankedTensorType>(scalesIn.getType());
  if (!sType || !sType.hasStaticShape() ||
      sType.getNumElements() != n * blocks || sType.getElementType() != element)
    return nodeError(op) << "scales must hold N * K / block_size = "
                         << n * blocks << " values of A's element type";
  Value scales =
      reshapeTo(b, loc, scalesIn, {b.getIndexAttr(n), b.getIndexAttr(blocks)});
  // Zero points: packed like B (bits per value, rows padded to bytes), or
  // 2^(bits-1) when absent; one per byte in QOpt's layout.
  Value zp;
  int64_t zpRowBytes = (blocks * bits + 7) / 8;
  auto zpType = RankedTensorType::get({n, blocks}, b.getIntegerType(8));
  if (Value zpIn = getInput(op, 3)) {
    auto zt = cast<RankedTensorType>(zpIn.getType());
    if (isa<FloatType>(zt.getElementType()))
      return nodeError(op) << "float zero points are not supported yet";
    if (failed(checkBytes(zpIn, n * zpRowBytes, "zero_points")))
      return failure();
    Value packed = bytesAs(b, loc, zpIn, {n, zpRowBytes});
    int64_t perByte = 8 / bits;
    Value init = tensor::EmptyOp::create(b, loc, zpType.getShape(),
                                         zpType.getElementType());
    SmallVector<AffineMap> maps = {
        AffineMap::get(
            2, 0,
            {b.getAffineDimExpr(0), b.getAffineDimExpr(1).floorDiv(perByte)},
            b.getContext()),
        b.getMultiDimIdentityMap(2)};
    SmallVector<utils::IteratorType> par(2, utils::IteratorType::parallel);
    zp = linalg::GenericOp::create(
             b, loc, zpType, packed, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               Value j = linalg::IndexOp::create(nb, l, 1);
               Value within = arith::RemUIOp::create(
                   nb, l, j, arith::ConstantIndexOp::create(nb, l, perByte));
               Value shift = arith::MulIOp::create(
                   nb, l,
                   arith::IndexCastOp::create(nb, l, nb.getI8Type(), within),
                   arith::ConstantOp::create(nb, l, nb.getI8IntegerAttr(bits)));
               Value v = arith::AndIOp::create(
                   nb, l, arith::ShRUIOp::create(nb, l, args[0], shift),
                   arith::ConstantOp::create(
                       nb, l, nb.getI8IntegerAttr((1 << bits) - 1)));
               linalg::YieldOp::create(nb, l, v);
             })
             .getResult(0);
  } else {
    zp = arith::ConstantOp::create(
        b, loc,
        DenseElementsAttr::get(
            zpType,
            b.getIntegerAttr(b.getIntegerType(8), int64_t(1) << (bits - 1))));
  }
  auto format = IntFormatAttr::get(b.getContext(), bits, /*isSigned=*/false,
                                   /*zeroPoint=*/true);
  auto granularity = PerGroupAttr::get(b.getContext(), 1, block);
  auto qType = QTensorType::get(b.getContext(), {n, k}, format, granularity,
                                element, false);
  Value q = AssembleOp::create(b, loc, qType, data, scales, zp, Value());
  Value bias = getInput(op, 5);
  SmallVector<int64_t> shape(aType.getShape().drop_back());
  shape.push_back(n);
  auto yType = RankedTensorType::get(shape, element);
  if (bias) {
    auto biasType = dyn_cast<RankedTensorType>(bias.getType());
    if (!biasType || biasType.getRank() != 1)
      return nodeError(op) << "bias must be 1-D";
  }
  results.push_back(LinearOp::create(b, loc, yType, a, q, bias,
                                     moduleName(op, getInput(op, 1))));
  return success();
}

//===----------------------------------------------------------------------===//
// QuantizeLinear / DequantizeLinear / MatMulInteger
//===----------------------------------------------------------------------===//

/// A scalar of an unsigned (or signed) integer type as the signless integer
/// arith computes on. The cast disappears in the LLVM lowering, where both
/// are the same integer type (reconcile-unrealized-casts).
Value signlessScalar(OpBuilder &b, Location loc, Value v) {
  auto it = dyn_cast<IntegerType>(v.getType());
  if (!it || it.isSignless())
    return v;
  return UnrealizedConversionCastOp::create(b, loc,
                                            b.getIntegerType(it.getWidth()), v)
      .getResult(0);
}

/// The inverse of signlessScalar, for results of unsigned type.
Value scalarOfType(OpBuilder &b, Location loc, Value v, Type type) {
  if (v.getType() == type)
    return v;
  return UnrealizedConversionCastOp::create(b, loc, type, v).getResult(0);
}

/// An integer scalar of a signless body argument widened to i64 as the
/// original (possibly unsigned) type says.
Value widen(OpBuilder &b, Location loc, Value v, Type original) {
  Type i64 = b.getI64Type();
  v = signlessScalar(b, loc, v);
  if (v.getType() == i64)
    return v;
  if (original.isUnsignedInteger())
    return arith::ExtUIOp::create(b, loc, i64, v);
  return arith::ExtSIOp::create(b, loc, i64, v);
}

/// Integer element types QuantizeLinear / DequantizeLinear handle here.
bool isQuantInteger(Type t) {
  auto it = dyn_cast<IntegerType>(t);
  return it && !it.isSignless()
             ? (it.getWidth() == 8 || it.getWidth() == 16)
             : it && (it.getWidth() == 8 || it.getWidth() == 16 ||
                      it.getWidth() == 32);
}

/// Builds `body(x, scale[, zero point])` (input values only) elementwise
/// over x, with scale and
/// zero point laid out per tensor, per axis or per block as ONNX says.
FailureOr<Value>
quantElementwise(ONNXNodeOp op, OpBuilder &b, Value x, Value scale, Value zp,
                 Type resultElement,
                 function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  Location loc = op.getLoc();
  auto xType = rankedType(x), sType = rankedType(scale);
  if (!xType || !sType || (zp && !rankedType(zp)))
    return nodeError(op) << "needs ranked inputs";
  if (zp && rankedType(zp).getShape() != sType.getShape())
    return nodeError(op) << "zero point and scale have different shapes";
  int64_t rank = xType.getRank();
  int64_t block = getIntAttr(op, "block_size", 0);
  bool perTensor = sType.getRank() == 0 ||
                   (sType.hasStaticShape() && sType.getNumElements() == 1);
  int64_t axis = 0;
  if (!perTensor) {
    FailureOr<int64_t> a = normalizeAxis(op, getIntAttr(op, "axis", 1), rank);
    if (failed(a))
      return failure();
    axis = *a;
  }
  SmallVector<Value> params = {scale};
  if (zp)
    params.push_back(zp);
  if (perTensor) {
    for (Value &p : params)
      p = reshapeTo(b, loc, p, {});
    SmallVector<Value> inputs = {x};
    inputs.append(params);
    return buildElementwise(op, b, inputs, resultElement, body);
  }
  if (block <= 0) {
    // Per axis: a 1-D scale of x's size along the axis.
    if (sType.getRank() != 1 ||
        (!ShapedType::isDynamic(sType.getDimSize(0)) &&
         !ShapedType::isDynamic(xType.getDimSize(axis)) &&
         sType.getDimSize(0) != xType.getDimSize(axis)))
      return nodeError(op) << "per-axis scale must be 1-D with "
                           << xType.getDimSize(axis) << " values (axis " << axis
                           << ")";
    SmallVector<OpFoldResult> sizes(rank, b.getIndexAttr(1));
    sizes[axis] = tensor::getMixedSizes(b, loc, scale)[0];
    for (Value &p : params)
      p = reshapeTo(b, loc, p, sizes);
    SmallVector<Value> inputs = {x};
    inputs.append(params);
    return buildElementwise(op, b, inputs, resultElement, body);
  }
  // Blocked: scale has x's rank, ceil(size / block) along the axis.
  if (sType.getRank() != rank)
    return nodeError(op) << "blocked scale must have the input's rank";
  // Scale (and zero point) sizes: the input's, ceil(size / block) along the
  // axis; refused when the types say otherwise, checked when they do not.
  for (Value p : params) {
    auto pType = cast<RankedTensorType>(p.getType());
    if (pType.getRank() != rank)
      return nodeError(op) << "blocked scale and zero point must have the "
                              "input's rank";
    for (int64_t d = 0; d < rank; ++d) {
      int64_t xs = xType.getDimSize(d), ps = pType.getDimSize(d);
      if (!ShapedType::isDynamic(xs) && !ShapedType::isDynamic(ps)) {
        int64_t expected = d == axis ? (xs + block - 1) / block : xs;
        if (ps != expected)
          return nodeError(op)
                 << "blocked scale or zero point has " << ps
                 << " entries in dimension " << d << ", expected " << expected;
        continue;
      }
      Value xSize = tensor::DimOp::create(b, loc, x, d);
      if (d == axis)
        xSize = arith::CeilDivSIOp::create(b, loc, xSize, idx(b, loc, block));
      emitEqualSizes(op, b, tensor::getMixedSize(b, loc, p, d), xSize,
                     "blocked scale or zero point does not match the input "
                     "in dimension " +
                         Twine(d));
    }
  }
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineExpr> exprs;
  for (int64_t d = 0; d < rank; ++d)
    exprs.push_back(d == axis ? b.getAffineDimExpr(d).floorDiv(block)
                              : b.getAffineDimExpr(d));
  AffineMap id = b.getMultiDimIdentityMap(rank);
  AffineMap blocked = AffineMap::get(rank, 0, exprs, ctx);
  SmallVector<AffineMap> maps = {id};
  for (size_t i = 0; i < params.size(); ++i)
    maps.push_back(blocked);
  maps.push_back(id);
  SmallVector<Value> inputs = {x};
  inputs.append(params);
  Value init = tensor::EmptyOp::create(b, loc, tensor::getMixedSizes(b, loc, x),
                                       resultElement);
  SmallVector<utils::IteratorType> par(rank, utils::IteratorType::parallel);
  return linalg::GenericOp::create(
             b, loc, init.getType(), inputs, init, maps, par,
             [&](OpBuilder &nb, Location l, ValueRange args) {
               linalg::YieldOp::create(nb, l, body(nb, l, args.drop_back()));
             })
      .getResult(0);
}

LogicalResult convertDequantizeLinear(ONNXNodeOp op, OpBuilder &b,
                                      SmallVectorImpl<Value> &results) {
  Value x = op.getInputs()[0], scale = op.getInputs()[1], zp = getInput(op, 2);
  auto xType = rankedType(x), sType = rankedType(scale);
  if (!xType || !sType)
    return nodeError(op) << "needs ranked inputs";
  Type xElement = xType.getElementType();
  if (!isQuantInteger(xElement))
    return nodeError(op) << "input of type " << xElement
                         << " is not supported (8-, 16- and 32-bit integers "
                            "are)";
  auto outElement = dyn_cast<FloatType>(sType.getElementType());
  if (!outElement || getIntAttr(op, "output_dtype", 0) != 0)
    return nodeError(op) << "needs a float scale (output_dtype is not "
                            "supported)";
  if (zp && rankedType(zp) && rankedType(zp).getElementType() != xElement)
    return nodeError(op) << "zero point type differs from the input's";
  // An int8 weight parameter quantized per output channel (what
  // onnxruntime's quantizer writes): a !qopt.qtensor, so that later passes
  // and kernels see the format, dequantized by its reference lowering.
  int64_t axisAttr = getIntAttr(op, "axis", 1);
  if (x.getDefiningOp<LoadParamOp>() && xElement.isSignlessInteger(8) &&
      xType.getRank() == 2 && xType.hasStaticShape() &&
      getIntAttr(op, "block_size", 0) == 0 && sType.getRank() == 1 &&
      (axisAttr == 0 || axisAttr == 1 || axisAttr == -1 || axisAttr == -2) &&
      outElement.isF32()) {
    int64_t axis = axisAttr < 0 ? axisAttr + 2 : axisAttr;
    if (sType.hasStaticShape() &&
        sType.getDimSize(0) == xType.getDimSize(axis) &&
        sType.getDimSize(0) > 1) {
      MLIRContext *ctx = b.getContext();
      auto format = IntFormatAttr::get(ctx, 8, /*isSigned=*/true,
                                       /*zeroPoint=*/zp != Value());
      auto qType = QTensorType::get(ctx, xType.getShape(), format,
                                    PerChannelAttr::get(ctx, axis),
                                    sType.getElementType(), false);
      Value q = AssembleOp::create(b, op.getLoc(), qType, x, scale,
                                   zp ? zp : Value(), Value());
      results.push_back(DequantizeOp::create(
          b, op.getLoc(), RankedTensorType::get(xType.getShape(), outElement),
          q));
      return success();
    }
  }
  FailureOr<Value> y = quantElementwise(
      op, b, x, scale, zp, outElement,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value v = widen(nb, l, a[0], xElement);
        if (a.size() > 2) // zero point present
          v = arith::SubIOp::create(nb, l, v, widen(nb, l, a[2], xElement));
        Value f = arith::SIToFPOp::create(nb, l, nb.getF32Type(), v);
        Value r = arith::MulFOp::create(
            nb, l, f, castScalar(nb, l, a[1], nb.getF32Type()));
        if (outElement != nb.getF32Type())
          r = arith::TruncFOp::create(nb, l, outElement, r);
        return r;
      });
  if (failed(y))
    return failure();
  results.push_back(*y);
  return success();
}

LogicalResult convertQuantizeLinear(ONNXNodeOp op, OpBuilder &b,
                                    SmallVectorImpl<Value> &results) {
  Value x = op.getInputs()[0], scale = op.getInputs()[1], zp = getInput(op, 2);
  auto xType = rankedType(x), sType = rankedType(scale);
  if (!xType || !sType || !isa<FloatType>(xType.getElementType()) ||
      !isa<FloatType>(sType.getElementType()))
    return nodeError(op) << "needs float input and scale";
  // The result type is the zero point's, else output_dtype's (ONNX
  // TensorProto codes), else uint8.
  Type outElement = b.getIntegerType(8, false);
  if (int64_t code = getIntAttr(op, "output_dtype", 0)) {
    switch (code) {
    case 2:
      outElement = b.getIntegerType(8, false);
      break;
    case 3:
      outElement = b.getIntegerType(8);
      break;
    case 4:
      outElement = b.getIntegerType(16, false);
      break;
    case 5:
      outElement = b.getIntegerType(16);
      break;
    default:
      return nodeError(op) << "output_dtype " << code
                           << " is not supported (8- and 16-bit integers are)";
    }
  }
  if (zp && rankedType(zp)) {
    Type zpElement = rankedType(zp).getElementType();
    if (getIntAttr(op, "output_dtype", 0) && zpElement != outElement)
      return nodeError(op) << "output_dtype and the zero point's type differ";
    outElement = zpElement;
  }
  auto outInt = dyn_cast<IntegerType>(outElement);
  if (!outInt || outInt.getWidth() > 16 || !isQuantInteger(outElement))
    return nodeError(op) << "output type " << outElement
                         << " is not supported (8- and 16-bit integers are)";
  bool isUnsigned = outInt.isUnsigned();
  unsigned bits = outInt.getWidth();
  double lo = isUnsigned ? 0 : -std::ldexp(1.0, bits - 1);
  double hi =
      isUnsigned ? std::ldexp(1.0, bits) - 1 : std::ldexp(1.0, bits - 1) - 1;
  Type storage = b.getIntegerType(bits);
  FailureOr<Value> y = quantElementwise(
      op, b, x, scale, zp, outElement,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Type f32 = nb.getF32Type();
        Value q = arith::DivFOp::create(
            nb, l, castScalar(nb, l, a[0], nb.getF32Type()),
            castScalar(nb, l, a[1], nb.getF32Type()));
        q = math::RoundEvenOp::create(nb, l, q);
        if (a.size() > 2)
          q = arith::AddFOp::create(
              nb, l, q,
              arith::SIToFPOp::create(nb, l, f32,
                                      widen(nb, l, a[2], outElement)));
        q = arith::MaximumFOp::create(nb, l, q, scalarConstant(nb, l, f32, lo));
        q = arith::MinimumFOp::create(nb, l, q, scalarConstant(nb, l, f32, hi));
        Value i = arith::FPToSIOp::create(nb, l, nb.getI32Type(), q);
        return scalarOfType(nb, l, arith::TruncIOp::create(nb, l, storage, i),
                            outElement);
      });
  if (failed(y))
    return failure();
  results.push_back(*y);
  return success();
}

/// (A - a_zero_point) @ (B - b_zero_point) in int32.
LogicalResult convertMatMulInteger(ONNXNodeOp op, OpBuilder &b,
                                   SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  SmallVector<Value> operands;
  for (unsigned i = 0; i < 2; ++i) {
    Value v = op.getInputs()[i], zp = getInput(op, i + 2);
    auto type = rankedType(v);
    if (!type || !type.getElementType().isInteger(8))
      return nodeError(op) << (i ? "B" : "A")
                           << " must be a ranked (u)int8 tensor";
    Type element = type.getElementType();
    SmallVector<Value> inputs = {v};
    if (zp) {
      auto zType = rankedType(zp);
      if (!zType || zType.getElementType() != element || zType.getRank() > 1)
        return nodeError(op)
               << (i ? "b" : "a")
               << "_zero_point must be a scalar or 1-D tensor of " << element;
      Value z = zp;
      if (zType.getRank() == 1 &&
          !(zType.hasStaticShape() && zType.getNumElements() == 1)) {
        // Per row of A ([M] -> [M, 1]) or per column of B ([N]).
        if (i == 0)
          z = reshapeTo(
              b, loc, z,
              {tensor::getMixedSizes(b, loc, z)[0], b.getIndexAttr(1)});
      } else {
        z = reshapeTo(b, loc, z, {});
      }
      inputs.push_back(z);
    }
    FailureOr<Value> shifted =
        buildElementwise(op, b, inputs, b.getI32Type(),
                         [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
                           Type i32 = nb.getI32Type();
                           auto ext = [&](Value s) -> Value {
                             s = signlessScalar(nb, l, s);
                             if (element.isUnsignedInteger())
                               return arith::ExtUIOp::create(nb, l, i32, s);
                             return arith::ExtSIOp::create(nb, l, i32, s);
                           };
                           Value r = ext(a[0]);
                           if (a.size() > 1)
                             r = arith::SubIOp::create(nb, l, r, ext(a[1]));
                           return r;
                         });
    if (failed(shifted))
      return failure();
    operands.push_back(*shifted);
  }
  return buildMatMul(op, b, operands[0], operands[1], results);
}

const HandlerEntry kHandlers[] = {
    {"com.microsoft", "MatMulNBits", 1, convertMatMulNBits},
    {"", "DequantizeLinear", 10, convertDequantizeLinear},
    {"", "QuantizeLinear", 10, convertQuantizeLinear},
    {"", "MatMulInteger", 10, convertMatMulInteger},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getQuantizationHandlers() {
  return kHandlers;
}
