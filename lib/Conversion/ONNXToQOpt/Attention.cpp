//===- Attention.cpp - ONNX Attention (opset 23) --------------------------===//
//
// Attention: softmax(softcap(Q·Kᵀ · scale) + mask) · V on tensors; grouped-
// query heads read through h / group, 3-D inputs split into heads. Without a
// grouped head both products are plain contractions (qopt-linalg-to-blas).
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

/// [B, S, H·D] -> [B, H, S, D].
Value splitHeads(OpBuilder &b, Location loc, Value x, int64_t heads) {
  auto type = cast<RankedTensorType>(x.getType());
  SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
  int64_t hidden = type.getDimSize(2);
  Value r = reshapeTo(b, loc, x,
                      {sizes[0], sizes[1], b.getIndexAttr(heads),
                       b.getIndexAttr(hidden / heads)});
  SmallVector<OpFoldResult> tSizes = tensor::getMixedSizes(b, loc, r);
  Value init = tensor::EmptyOp::create(
      b, loc, {tSizes[0], tSizes[2], tSizes[1], tSizes[3]},
      type.getElementType());
  return linalg::TransposeOp::create(b, loc, r, init,
                                     ArrayRef<int64_t>{0, 2, 1, 3})
      .getResult()[0];
}

/// out[b, h, i, n] = Σ_k lhs[b, h, i, k] · rhs[b, h / group, (k, n) or
/// (n, k)], accumulated from zero.
Value headProduct(OpBuilder &b, Location loc, Value lhs, Value rhs,
                  int64_t group, bool rhsTransposed, OpFoldResult nSize) {
  MLIRContext *ctx = b.getContext();
  SmallVector<OpFoldResult> ls = tensor::getMixedSizes(b, loc, lhs);
  AffineExpr bd = b.getAffineDimExpr(0), h = b.getAffineDimExpr(1),
             i = b.getAffineDimExpr(2), n = b.getAffineDimExpr(3),
             k = b.getAffineDimExpr(4);
  AffineExpr kvHead = group == 1 ? h : h.floorDiv(group);
  SmallVector<AffineMap> maps = {
      AffineMap::get(5, 0, {bd, h, i, k}, ctx),
      AffineMap::get(5, 0,
                     rhsTransposed ? ArrayRef<AffineExpr>{bd, kvHead, n, k}
                                   : ArrayRef<AffineExpr>{bd, kvHead, k, n},
                     ctx),
      AffineMap::get(5, 0, {bd, h, i, n}, ctx)};
  Value init = createFilledTensor(b, loc, {ls[0], ls[1], ls[2], nSize},
                                  b.getF32Type(), 0);
  SmallVector<utils::IteratorType> it(4, utils::IteratorType::parallel);
  it.push_back(utils::IteratorType::reduction);
  return createMulAddContraction(b, loc, lhs, rhs, init, maps, it);
}

/// A reduction over the last of 4 dimensions, keeping it (size 1).
Value rowReduce(OpBuilder &b, Location loc, Value x, ValueRange extra,
                double initValue,
                function_ref<Value(OpBuilder &, Location, ValueRange)> body) {
  return createTrailingReduction(b, loc, x, /*axis=*/3, /*keepDims=*/true,
                                 extra, initValue, body);
}

LogicalResult convertAttention(ONNXNodeOp op, OpBuilder &b,
                               SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value q = op.getInputs()[0], k = op.getInputs()[1], v = op.getInputs()[2];
  Value mask = getInput(op, 3);
  for (unsigned i = 4; i < op.getInputs().size(); ++i)
    if (getInput(op, i))
      return nodeError(op) << "past key/value and nonpad_kv_seqlen inputs are "
                              "not supported yet";
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    if (!op.getResult(i).use_empty())
      return nodeError(op) << "present key/value and qk_matmul_output "
                              "outputs are not supported yet";
  if (getIntAttr(op, "qk_matmul_output_mode", 0) != 0)
    return nodeError(op) << "qk_matmul_output_mode is not supported yet";
  if (getIntAttr(op, "left_window_size", -1) != -1 ||
      getIntAttr(op, "right_window_size", -1) != -1)
    return nodeError(op) << "sliding windows are not supported yet";
  auto qType = rankedType(q), kType = rankedType(k), vType = rankedType(v);
  if (!qType || !kType || !vType || !qType.getElementType().isF32() ||
      kType.getElementType() != qType.getElementType() ||
      vType.getElementType() != qType.getElementType())
    return nodeError(op) << "needs ranked f32 Q, K and V";
  int64_t rank = qType.getRank();
  if ((rank != 3 && rank != 4) || kType.getRank() != rank ||
      vType.getRank() != rank)
    return nodeError(op) << "needs Q, K and V all 3-D or all 4-D";
  if (rank == 3) {
    int64_t qHeads = getIntAttr(op, "q_num_heads", 0),
            kvHeads = getIntAttr(op, "kv_num_heads", 0);
    if (qHeads <= 0 || kvHeads <= 0 ||
        ShapedType::isDynamic(qType.getDimSize(2)) ||
        ShapedType::isDynamic(kType.getDimSize(2)) ||
        ShapedType::isDynamic(vType.getDimSize(2)) ||
        qType.getDimSize(2) % qHeads || kType.getDimSize(2) % kvHeads ||
        vType.getDimSize(2) % kvHeads)
      return nodeError(op) << "3-D inputs need q_num_heads and kv_num_heads "
                              "dividing static hidden sizes";
    q = splitHeads(b, loc, q, qHeads);
    k = splitHeads(b, loc, k, kvHeads);
    v = splitHeads(b, loc, v, kvHeads);
    qType = rankedType(q), kType = rankedType(k), vType = rankedType(v);
  }
  int64_t qHeads = qType.getDimSize(1), kvHeads = kType.getDimSize(1);
  if (ShapedType::isDynamic(qHeads) || ShapedType::isDynamic(kvHeads) ||
      kvHeads <= 0 || qHeads % kvHeads || vType.getDimSize(1) != kvHeads)
    return nodeError(op) << "needs static head counts, Q's a multiple of K's "
                            "and V's";
  int64_t headSize = qType.getDimSize(3);
  double scale = getFloatAttr(op, "scale", 0.0);
  if (scale == 0.0) {
    if (ShapedType::isDynamic(headSize))
      return nodeError(op) << "needs a static head size or a scale";
    scale = 1.0 / std::sqrt(static_cast<double>(headSize));
  }
  double softcap = getFloatAttr(op, "softcap", 0.0);
  bool causal = getIntAttr(op, "is_causal", 0) != 0;
  int64_t group = qHeads / kvHeads;
  // The products assume these sizes agree: refused when the types say they
  // differ, checked at run time where they leave it open.
  auto sameSize = [&](Value x, int64_t i, Value y, int64_t j,
                      StringRef what) -> LogicalResult {
    int64_t xs = rankedType(x).getDimSize(i), ys = rankedType(y).getDimSize(j);
    if (!ShapedType::isDynamic(xs) && !ShapedType::isDynamic(ys)) {
      if (xs != ys)
        return nodeError(op) << what << ": " << xs << " vs " << ys;
      return success();
    }
    if (sizeSource(x, i) != sizeSource(y, j))
      emitEqualSizes(op, b, tensor::getMixedSize(b, loc, x, i),
                     tensor::getMixedSize(b, loc, y, j), what);
    return success();
  };
  if (failed(sameSize(q, 0, k, 0, "Q and K have different batch sizes")) ||
      failed(sameSize(k, 0, v, 0, "K and V have different batch sizes")) ||
      failed(sameSize(q, 3, k, 3, "Q and K have different head sizes")) ||
      failed(sameSize(k, 2, v, 2, "K and V have different sequence lengths")))
    return failure();

  // scores = Q·Kᵀ (f32), then scale, softcap, mask, causal.
  OpFoldResult kvLen = tensor::getMixedSizes(b, loc, k)[2];
  Value scores =
      headProduct(b, loc, q, k, group, /*rhsTransposed=*/true, kvLen);
  SmallVector<Value> inputs = {scores};
  Type maskElement;
  if (mask) {
    auto mType = rankedType(mask);
    if (!mType || mType.getRank() > 4 ||
        !(mType.getElementType().isInteger(1) ||
          mType.getElementType() == qType.getElementType()))
      return nodeError(op)
             << "attn_mask must be bool or of Q's type, rank <= 4";
    maskElement = mType.getElementType();
    inputs.push_back(mask);
  }
  double negInf = -std::numeric_limits<double>::infinity();
  FailureOr<Value> masked = buildElementwise(
      op, b, inputs, b.getF32Type(),
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        auto c = [&](double d) -> Value {
          return arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(d));
        };
        Value s = arith::MulFOp::create(nb, l, a[0], c(scale));
        if (softcap > 0)
          s = arith::MulFOp::create(
              nb, l,
              math::TanhOp::create(nb, l,
                                   arith::DivFOp::create(nb, l, s, c(softcap))),
              c(softcap));
        if (a.size() > 1) {
          if (maskElement.isInteger(1))
            s = arith::SelectOp::create(nb, l, a[1], s, c(negInf));
          else
            s = arith::AddFOp::create(nb, l, s, a[1]);
        }
        if (causal) {
          Value i = linalg::IndexOp::create(nb, l, 2);
          Value j = linalg::IndexOp::create(nb, l, 3);
          Value allowed =
              arith::CmpIOp::create(nb, l, arith::CmpIPredicate::ule, j, i);
          s = arith::SelectOp::create(nb, l, allowed, s, c(negInf));
        }
        return s;
      });
  if (failed(masked))
    return failure();
  // The mask may broadcast scores up; the result keeps scores' shape only
  // when it does not (checked: ranks and static sizes).
  auto mt = cast<RankedTensorType>(masked->getType());
  auto st = cast<RankedTensorType>(scores.getType());
  if (mt.getRank() != 4)
    return nodeError(op) << "attn_mask does not broadcast to the scores";
  for (int64_t d = 0; d < 4; ++d)
    if (!mt.isDynamicDim(d) && !st.isDynamicDim(d) &&
        mt.getDimSize(d) != st.getDimSize(d))
      return nodeError(op) << "attn_mask does not broadcast to the scores";
  // … and where the types leave it open, the run checks it.
  for (int64_t d = 0; d < 4; ++d)
    if (mt.isDynamicDim(d) || st.isDynamicDim(d))
      if (failed(sameSize(*masked, d, scores, d,
                          "attn_mask does not broadcast to the scores")))
        return failure();

  // Softmax over keys; fully masked rows give 0 (as the ONNX reference).
  Value x = *masked;
  Value rowMax =
      rowReduce(b, loc, x, {}, negInf,
                [](OpBuilder &nb, Location l, ValueRange a) -> Value {
                  return arith::MaximumFOp::create(nb, l, a[0], a[1]);
                });
  auto safeMax = [](OpBuilder &nb, Location l, Value m) -> Value {
    Value isInf = arith::CmpFOp::create(
        nb, l, arith::CmpFPredicate::OEQ, m,
        arith::ConstantOp::create(
            nb, l,
            nb.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
    return arith::SelectOp::create(
        nb, l, isInf, arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(0)),
        m);
  };
  Value rowSum = rowReduce(
      b, loc, x, {rowMax}, 0.0,
      [&](OpBuilder &nb, Location l, ValueRange a) -> Value {
        Value e = math::ExpOp::create(
            nb, l, arith::SubFOp::create(nb, l, a[0], safeMax(nb, l, a[1])));
        return arith::AddFOp::create(nb, l, a[2], e);
      });
  MLIRContext *ctx = b.getContext();
  AffineExpr d0 = b.getAffineDimExpr(0), d1 = b.getAffineDimExpr(1),
             d2 = b.getAffineDimExpr(2), d3 = b.getAffineDimExpr(3);
  AffineMap full = AffineMap::get(4, 0, {d0, d1, d2, d3}, ctx);
  AffineMap row =
      AffineMap::get(4, 0, {d0, d1, d2, b.getAffineConstantExpr(0)}, ctx);
  Value pEmpty = tensor::EmptyOp::create(
      b, loc, tensor::getMixedSizes(b, loc, x), b.getF32Type());
  SmallVector<utils::IteratorType> par(4, utils::IteratorType::parallel);
  Value probs =
      linalg::GenericOp::create(
          b, loc, pEmpty.getType(), ValueRange{x, rowMax, rowSum}, pEmpty,
          {full, row, row, full}, par,
          [&](OpBuilder &nb, Location l, ValueRange a) {
            Value e = math::ExpOp::create(
                nb, l,
                arith::SubFOp::create(nb, l, a[0], safeMax(nb, l, a[1])));
            Value zero =
                arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(0));
            Value isZero = arith::CmpFOp::create(
                nb, l, arith::CmpFPredicate::OEQ, a[2], zero);
            Value sum = arith::SelectOp::create(
                nb, l, isZero,
                arith::ConstantOp::create(nb, l, nb.getF32FloatAttr(1)), a[2]);
            linalg::YieldOp::create(
                nb, l, arith::DivFOp::create(nb, l, e, sum).getResult());
          })
          .getResult(0);

  // Y = P·V, back to 3-D when the inputs were.
  OpFoldResult vDim = tensor::getMixedSizes(b, loc, v)[3];
  Value y = headProduct(b, loc, probs, v, group, /*rhsTransposed=*/false, vDim);
  if (rank == 3) {
    SmallVector<OpFoldResult> ys = tensor::getMixedSizes(b, loc, y);
    Value init = tensor::EmptyOp::create(b, loc, {ys[0], ys[2], ys[1], ys[3]},
                                         b.getF32Type());
    y = linalg::TransposeOp::create(b, loc, y, init,
                                    ArrayRef<int64_t>{0, 2, 1, 3})
            .getResult()[0];
    SmallVector<OpFoldResult> ts = tensor::getMixedSizes(b, loc, y);
    std::optional<int64_t> h = getConstantIntValue(ts[2]),
                           e = getConstantIntValue(ts[3]);
    y = reshapeTo(b, loc, y, {ts[0], ts[1], b.getIndexAttr(*h * *e)});
  }
  Type declared = op.getResult(0).getType();
  if (y.getType() != declared && isa<RankedTensorType>(declared))
    y = tensor::CastOp::create(b, loc, declared, y);
  results.push_back(y);
  for (unsigned i = 1; i < op.getNumResults(); ++i)
    results.push_back(Value());
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Attention", 23, convertAttention},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getAttentionHandlers() {
  return kHandlers;
}
