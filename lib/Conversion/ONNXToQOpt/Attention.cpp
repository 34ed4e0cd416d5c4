//===- Attention.cpp - ONNX Attention, RotaryEmbedding (opset 23) ---------===//
//
// Attention (opset 23) becomes qopt.attention, the mid-level op that
// convert-qopt-to-linalg lowers late: 3-D inputs are split into heads, the
// mask broadcast where only the run can tell, static sizes checked here.
// RotaryEmbedding becomes qopt.rotary, its half-width caches (gathered by
// position ids) expanded to the feature width.
//
//===----------------------------------------------------------------------===//

#include "Patterns.h"
#include "qopt/Conversion/Utils/LinalgBuilders.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/TypeUtilities.h"

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

FailureOr<Value> mlir::qopt::onnx::prepareAttentionMask(ONNXNodeOp op,
                                                        OpBuilder &b,
                                                        Value mask, Value q,
                                                        Value k) {
  auto mType = rankedType(mask);
  Type element = rankedType(q).getElementType();
  if (!mType || mType.getRank() > 4 ||
      !(mType.getElementType().isInteger(1) ||
        mType.getElementType() == element))
    return nodeError(op) << "attn_mask must be bool or of Q's type, rank <= 4";
  // The scores [B, Hq, S, L] and where each size comes from. Broadcast
  // numpy-style (aligned right): static sizes now; a dynamic size that may
  // be 1 is expanded as the run says.
  std::pair<Value, int64_t> scoreDims[4] = {{q, 0}, {q, 1}, {q, 2}, {k, 2}};
  int64_t offset = 4 - mType.getRank();
  for (int64_t d = 0; d < mType.getRank(); ++d) {
    auto [source, dim] = scoreDims[offset + d];
    int64_t ms = mType.getDimSize(d), ss = rankedType(source).getDimSize(dim);
    if (!ShapedType::isDynamic(ms) && !ShapedType::isDynamic(ss) && ms != 1 &&
        ms != ss)
      return nodeError(op) << "attn_mask does not broadcast to the scores";
    if (ShapedType::isDynamic(ms))
      mask = broadcastAtRunTime(op, b, mask, d, source, dim,
                                "attn_mask does not broadcast to the scores");
  }
  return mask;
}

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
  if (scale == 0.0 && ShapedType::isDynamic(headSize))
    return nodeError(op) << "needs a static head size or a scale";
  double softcap = getFloatAttr(op, "softcap", 0.0);
  bool causal = getIntAttr(op, "is_causal", 0) != 0;
  // Sizes the types say differ are refused here; qopt.attention checks
  // those they leave open at run time.
  auto sameSize = [&](Value x, int64_t i, Value y, int64_t j,
                      StringRef what) -> LogicalResult {
    int64_t xs = rankedType(x).getDimSize(i), ys = rankedType(y).getDimSize(j);
    if (!ShapedType::isDynamic(xs) && !ShapedType::isDynamic(ys) && xs != ys)
      return nodeError(op) << what << ": " << xs << " vs " << ys;
    return success();
  };
  if (failed(sameSize(q, 0, k, 0, "Q and K have different batch sizes")) ||
      failed(sameSize(k, 0, v, 0, "K and V have different batch sizes")) ||
      failed(sameSize(q, 3, k, 3, "Q and K have different head sizes")) ||
      failed(sameSize(k, 2, v, 2, "K and V have different sequence lengths")))
    return failure();
  if (mask) {
    FailureOr<Value> m = prepareAttentionMask(op, b, mask, q, k);
    if (failed(m))
      return failure();
    mask = *m;
  }
  SmallVector<int64_t> shape = {qType.getDimSize(0), qType.getDimSize(1),
                                qType.getDimSize(2), vType.getDimSize(3)};
  auto resultType = RankedTensorType::get(shape, qType.getElementType());
  Value y = AttentionOp::create(
      b, loc, resultType, q, k, v, mask, causal ? b.getUnitAttr() : UnitAttr(),
      scale != 0.0 ? b.getF64FloatAttr(scale) : FloatAttr(),
      softcap > 0 ? b.getF64FloatAttr(softcap) : FloatAttr());
  // Back to 3-D when the inputs were.
  if (rank == 3) {
    SmallVector<OpFoldResult> ys = tensor::getMixedSizes(b, loc, y);
    Value init = tensor::EmptyOp::create(b, loc, {ys[0], ys[2], ys[1], ys[3]},
                                         qType.getElementType());
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

/// RotaryEmbedding: caches [max_pos, R/2] gathered by position_ids [B, S]
/// (or given per position, [B, S, R/2]) expanded to the full width R
/// (halves repeated, or each value twice when interleaved), broadcast over
/// the heads: [B, 1, S, R] for 4-D inputs [B, H, S, D], [B, S, 1, R] for
/// 3-D ones viewed as [B, S, H, D].
LogicalResult convertRotaryEmbedding(ONNXNodeOp op, OpBuilder &b,
                                     SmallVectorImpl<Value> &results) {
  Location loc = op.getLoc();
  Value x = op.getInputs()[0], cosCache = op.getInputs()[1],
        sinCache = op.getInputs()[2], positions = getInput(op, 3);
  auto xType = rankedType(x), cType = rankedType(cosCache),
       sType = rankedType(sinCache);
  if (!xType || !isa<FloatType>(xType.getElementType()) ||
      (xType.getRank() != 3 && xType.getRank() != 4))
    return nodeError(op) << "needs a ranked float input of rank 3 or 4";
  Type element = xType.getElementType();
  int64_t cacheRank = positions ? 2 : 3;
  if (!cType || !sType || cType.getElementType() != element ||
      sType.getElementType() != element || cType.getRank() != cacheRank ||
      sType.getRank() != cacheRank)
    return nodeError(op) << "cos_cache and sin_cache must have the input's "
                            "type and rank "
                         << cacheRank
                         << (positions ? " [max_position, rotary_dim / 2]"
                                       : " [batch, sequence, rotary_dim / 2]");
  if (failed(verifyCompatibleShape(cType.getShape(), sType.getShape())))
    return nodeError(op) << "cos_cache and sin_cache have different shapes";
  bool threeD = xType.getRank() == 3;
  Value x4 = x;
  if (threeD) {
    int64_t heads = getIntAttr(op, "num_heads", 0);
    int64_t hidden = xType.getDimSize(2);
    if (heads <= 0 || ShapedType::isDynamic(hidden) || hidden % heads)
      return nodeError(op) << "3-D inputs need num_heads dividing a static "
                              "hidden size";
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(b, loc, x);
    x4 = reshapeTo(b, loc, x,
                   {sizes[0], sizes[1], b.getIndexAttr(heads),
                    b.getIndexAttr(hidden / heads)});
  }
  auto x4Type = rankedType(x4);
  int64_t headSize = x4Type.getDimSize(3);
  int64_t r = getIntAttr(op, "rotary_embedding_dim", 0);
  if (r == 0)
    r = headSize;
  if (ShapedType::isDynamic(r) || r <= 0 || r % 2 ||
      (!ShapedType::isDynamic(headSize) && r > headSize))
    return nodeError(op) << "needs an even rotary_embedding_dim of at most "
                            "the head size (or a static even head size)";
  int64_t half = cType.getDimSize(cacheRank - 1);
  if (!ShapedType::isDynamic(half) && half != r / 2)
    return nodeError(op) << "the caches' last dimension (" << half
                         << ") is not rotary_embedding_dim / 2 (" << r / 2
                         << ")";
  // Sizes the types leave open, checked at run time.
  SmallVector<OpFoldResult> xs = tensor::getMixedSizes(b, loc, x4);
  int64_t seqDim = threeD ? 1 : 2;
  OpFoldResult batch = xs[0], seq = xs[seqDim];
  SmallVector<OpFoldResult> cs = tensor::getMixedSizes(b, loc, cosCache);
  SmallVector<OpFoldResult> ss = tensor::getMixedSizes(b, loc, sinCache);
  for (int64_t d = 0; d < cacheRank; ++d)
    emitEqualSizes(op, b, cs[d], ss[d],
                   "cos_cache and sin_cache have different shapes");
  emitEqualSizes(op, b, cs[cacheRank - 1], b.getIndexAttr(r / 2),
                 "the caches' last dimension is not rotary_embedding_dim / 2");
  Value maxPos;
  if (positions) {
    auto pType = rankedType(positions);
    if (!pType || !isa<IntegerType>(pType.getElementType()) ||
        pType.getRank() != 2)
      return nodeError(op) << "position_ids must be 2-D integers [batch, "
                              "sequence]";
    SmallVector<OpFoldResult> ps = tensor::getMixedSizes(b, loc, positions);
    emitEqualSizes(op, b, ps[0], batch,
                   "position_ids' batch size differs from the input's");
    emitEqualSizes(op, b, ps[1], seq,
                   "position_ids' sequence length differs from the input's");
    maxPos = tensor::DimOp::create(b, loc, cosCache, 0);
    if (failed(checkIndices(op, b, positions, maxPos, "position_ids")))
      return failure();
  } else {
    emitEqualSizes(op, b, cs[0], batch,
                   "the caches' batch size differs from the input's");
    emitEqualSizes(op, b, cs[1], seq,
                   "the caches' sequence length differs from the input's");
  }
  bool interleaved = getIntAttr(op, "interleaved", 0) != 0;
  // full[b, (1,) s, (1,) d] = cache[pos[b, s] or (b, s), d mod R/2 or d / 2].
  auto expand = [&](Value cache) {
    SmallVector<OpFoldResult> sizes =
        threeD ? SmallVector<OpFoldResult>{batch, seq, b.getIndexAttr(1),
                                           b.getIndexAttr(r)}
               : SmallVector<OpFoldResult>{batch, b.getIndexAttr(1), seq,
                                           b.getIndexAttr(r)};
    Value init = tensor::EmptyOp::create(b, loc, sizes, element);
    SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(4)};
    SmallVector<utils::IteratorType> par(4, utils::IteratorType::parallel);
    return linalg::GenericOp::create(
               b, loc, init.getType(), ValueRange{}, init, maps, par,
               [&](OpBuilder &nb, Location l, ValueRange) {
                 Value bi = linalg::IndexOp::create(nb, l, 0);
                 Value si = linalg::IndexOp::create(nb, l, seqDim);
                 Value d = linalg::IndexOp::create(nb, l, 3);
                 Value j =
                     interleaved
                         ? arith::DivUIOp::create(nb, l, d, idx(nb, l, 2))
                               .getResult()
                         : arith::RemUIOp::create(nb, l, d, idx(nb, l, r / 2))
                               .getResult();
                 Value v;
                 if (positions) {
                   Value p = tensor::ExtractOp::create(nb, l, positions,
                                                       ValueRange{bi, si});
                   p = createWrappedIndex(nb, l, p, maxPos);
                   v = tensor::ExtractOp::create(nb, l, cache,
                                                 ValueRange{p, j});
                 } else {
                   v = tensor::ExtractOp::create(nb, l, cache,
                                                 ValueRange{bi, si, j});
                 }
                 linalg::YieldOp::create(nb, l, v);
               })
        .getResult(0);
  };
  // Named first: argument evaluation order is unspecified.
  Value cosFull = expand(cosCache);
  Value sinFull = expand(sinCache);
  Value y = RotaryOp::create(b, loc, x4Type, x4, cosFull, sinFull,
                             interleaved ? b.getUnitAttr() : UnitAttr());
  if (threeD)
    y = reshapeTo(b, loc, y, tensor::getMixedSizes(b, loc, x));
  results.push_back(y);
  return success();
}

const HandlerEntry kHandlers[] = {
    {"", "Attention", 23, convertAttention},
    {"", "RotaryEmbedding", 23, convertRotaryEmbedding},
};

} // namespace

ArrayRef<HandlerEntry> mlir::qopt::onnx::getAttentionHandlers() {
  return kHandlers;
}
