//===- QuantOps.cpp - ONNX quantized operators into QOpt qtensors ---------===//
//
// com.microsoft MatMulNBits: block-quantized weights become a
// !qopt.qtensor assembled from the model's own buffers, consumed by
// qopt.linear, so quantization passes and kernels see the format.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"

#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Matchers.h"

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
        data = load.getInlineData();
    if (auto dense = dyn_cast_or_null<DenseElementsAttr>(data))
      bytes = arith::ConstantOp::create(b, loc, dense.bitcast(b.getIntegerType(8)));
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
  Type element = aType.getElementType();
  int64_t blocks = k / block;
  auto checkBytes = [&](Value v, int64_t count, StringRef what) -> LogicalResult {
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
  if (!sType || !sType.hasStaticShape() || sType.getNumElements() != n * blocks ||
      sType.getElementType() != element)
    return nodeError(op) << "scales must hold N * K / block_size = "
                         << n * blocks << " values of A's element type";
  Value scales = reshapeTo(b, loc, scalesIn,
                           {b.getIndexAttr(n), b.getIndexAttr(blocks)});
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
        AffineMap::get(2, 0, {b.getAffineDimExpr(0),
                              b.getAffineDimExpr(1).floorDiv(perByte)},
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
                   nb, l, arith::IndexCastOp::create(nb, l, nb.getI8Type(), within),
                   arith::ConstantOp::create(nb, l, nb.getI8IntegerAttr(bits)));
               Value v = arith::AndIOp::create(
                   nb, l, arith::ShRUIOp::create(nb, l, args[0], shift),
                   arith::ConstantOp::create(nb, l,
                                             nb.getI8IntegerAttr((1 << bits) - 1)));
               linalg::YieldOp::create(nb, l, v);
             })
             .getResult(0);
  } else {
    zp = arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(
                    zpType, b.getIntegerAttr(b.getIntegerType(8),
                                             int64_t(1) << (bits - 1))));
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
  results.push_back(LinearOp::create(b, loc, yType, a, q, bias));
  return success();
}

const HandlerEntry kHandlers[] = {
    {"com.microsoft", "MatMulNBits", 1, convertMatMulNBits},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getQuantHandlers() {
  return kHandlers;
}
