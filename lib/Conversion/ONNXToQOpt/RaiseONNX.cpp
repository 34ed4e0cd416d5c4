//===- RaiseONNX.cpp - Recognise decomposed layers in ONNX graphs ---------===//

#include "Patterns.h"

#include "qopt/Conversion/ONNXToQOpt/Passes.h"
#include "llvm/ADT/StringSet.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/IR/TypeUtilities.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <array>
#include <cmath>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTRAISEONNXPASS
#include "qopt/Conversion/ONNXToQOpt/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;
using namespace mlir::qopt::onnx;

namespace {

/// The ONNX node of `opType` (default domain) that defines `v`, if `v` has
/// no other use than the one being matched.
ONNXNodeOp producer(Value v, StringRef opType, bool requireSingleUse = true) {
  auto node = v ? v.getDefiningOp<ONNXNodeOp>() : ONNXNodeOp();
  if (!node || node.getOpType() != opType || !node.getDomain().empty())
    return {};
  if (requireSingleUse && !v.hasOneUse())
    return {};
  return node;
}

/// The value of a scalar (rank 0 or one element) float constant.
std::optional<double> scalarValue(Value v) {
  if (auto node = producer(v, "Constant", false)) {
    auto elements =
        dyn_cast_or_null<DenseFPElementsAttr>(node.getOnnxAttrs().get("value"));
    if (!elements || elements.getNumElements() != 1)
      return std::nullopt;
    return (*elements.getValues<APFloat>().begin()).convertToDouble();
  }
  std::optional<SmallVector<double>> values = getConstantFloats(v);
  if (!values || values->size() != 1)
    return std::nullopt;
  return values->front();
}

/// A 1-D or 2-D parameter read.
LoadParamOp paramOfRank(Value v, int64_t rank) {
  auto load = v ? v.getDefiningOp<LoadParamOp>() : LoadParamOp();
  if (!load || load.getType().getRank() != rank)
    return {};
  return load;
}

/// Replaces `root`'s single result by `value`: other ONNX nodes take it as
/// is, anything else through a cast to the declared type.
void replaceRoot(RewriterBase &rewriter, ONNXNodeOp root, Value value) {
  Value old = root.getResult(0);
  Value cast;
  for (OpOperand &use : llvm::make_early_inc_range(old.getUses())) {
    if (isa<ONNXNodeOp>(use.getOwner()) || value.getType() == old.getType()) {
      rewriter.modifyOpInPlace(use.getOwner(), [&] { use.set(value); });
      continue;
    }
    if (!cast)
      cast =
          tensor::CastOp::create(rewriter, root.getLoc(), old.getType(), value);
    rewriter.modifyOpInPlace(use.getOwner(), [&] { use.set(cast); });
  }
}

bool isRankedFloat(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

/// Erases the matched nodes of `chain` as they lose their last user.
void eraseDeadChain(RewriterBase &rewriter, SmallVectorImpl<Operation *> &chain,
                    SmallVectorImpl<Operation *> &erased) {
  for (bool changed = true; changed;) {
    changed = false;
    for (Operation *&dead : chain)
      if (dead && dead->use_empty()) {
        erased.push_back(dead);
        rewriter.eraseOp(dead);
        dead = nullptr;
        changed = true;
      }
  }
}

/// Replaces `root` by `value` (replaceRoot), then erases it and the matched
/// nodes of `chain` that lost their last user.
void replaceChain(RewriterBase &rewriter, ONNXNodeOp root, Value value,
                  SmallVectorImpl<Operation *> &chain,
                  SmallVectorImpl<Operation *> &erased) {
  replaceRoot(rewriter, root, value);
  erased.push_back(root);
  rewriter.eraseOp(root);
  eraseDeadChain(rewriter, chain, erased);
}

bool near(std::optional<double> v, double expected) {
  return v && std::abs(*v - expected) <= 1e-4 * std::abs(expected);
}

/// The other operand of a commutative two-input node when one operand is
/// the scalar constant `c` (within 1e-4 relative).
Value otherThanScalar(ONNXNodeOp node, double c) {
  for (int side = 0; side < 2; ++side)
    if (near(scalarValue(node.getInputs()[side]), c))
      return node.getInputs()[1 - side];
  return {};
}

/// The ways to read a single-use Mul tree `root` as a product of three
/// values (a·b)·c, with the inner Mul.
SmallVector<std::pair<std::array<Value, 3>, ONNXNodeOp>>
productsOfThree(ONNXNodeOp root) {
  SmallVector<std::pair<std::array<Value, 3>, ONNXNodeOp>> ways;
  if (root.getOpType() != "Mul" || !root.getDomain().empty() ||
      root.getInputs().size() != 2)
    return ways;
  for (int side = 0; side < 2; ++side)
    if (auto inner = producer(root.getInputs()[side], "Mul"))
      ways.push_back({{inner.getInputs()[0], inner.getInputs()[1],
                       root.getInputs()[1 - side]},
                      inner});
  return ways;
}

/// erf(x / √2) or erf(x · (1/√2)) -> x; tanh(√(2/π) · (x + 0.044715 x³))
/// -> x. Appends the matched nodes to `chain`.
Value geluArgument(ONNXNodeOp f, bool tanhForm,
                   SmallVectorImpl<Operation *> &chain) {
  Value arg = f.getInputs()[0];
  if (!tanhForm) {
    if (auto div = producer(arg, "Div")) {
      if (near(scalarValue(div.getInputs()[1]), std::sqrt(2.0))) {
        chain.push_back(div);
        return div.getInputs()[0];
      }
    } else if (auto mul = producer(arg, "Mul")) {
      if (Value x = otherThanScalar(mul, 1.0 / std::sqrt(2.0))) {
        chain.push_back(mul);
        return x;
      }
    }
    return {};
  }
  auto scale = producer(arg, "Mul");
  if (!scale)
    return {};
  auto sum = producer(otherThanScalar(scale, std::sqrt(2.0 / M_PI)), "Add");
  if (!sum)
    return {};
  for (int side = 0; side < 2; ++side) {
    Value x = sum.getInputs()[side];
    auto cubic = producer(sum.getInputs()[1 - side], "Mul");
    if (!cubic)
      continue;
    auto pow = producer(otherThanScalar(cubic, 0.044715), "Pow");
    if (pow && pow.getInputs()[0] == x &&
        near(scalarValue(pow.getInputs()[1]), 3.0)) {
      chain.append({scale, sum, cubic, pow});
      return x;
    }
  }
  return {};
}

/// ReduceMean of `x` over the last axis with keepdims (what both norms
/// use); `rank` is x's (x itself may not have a ranked type yet).
bool isLastAxisMean(ONNXNodeOp reduce, Value x, int64_t rank) {
  if (!reduce || getIntAttr(reduce, "keepdims", 1) != 1 ||
      reduce.getInputs()[0] != x)
    return false;
  std::optional<SmallVector<int64_t>> axes =
      reduce.getInputs().size() > 1 ? getConstantInts(reduce.getInputs()[1])
                                    : getIntsAttr(reduce, "axes");
  return axes && axes->size() == 1 &&
         ((*axes)[0] == -1 || (*axes)[0] == rank - 1);
}

/// x - ReduceMean(x) over the last axis: returns x (and the two nodes).
Value centered(Value d, SmallVectorImpl<Operation *> &chain) {
  auto sub = producer(d, "Sub", /*requireSingleUse=*/false);
  if (!sub)
    return {};
  Value x = sub.getInputs()[0];
  auto mean = producer(sub.getInputs()[1], "ReduceMean");
  if (!isRankedFloat(x) ||
      !isLastAxisMean(mean, x, cast<RankedTensorType>(x.getType()).getRank()))
    return {};
  chain.append({sub, mean});
  return x;
}

} // namespace

/// The K x N weight `w` as N x K.
static Value transposed(OpBuilder &b, Location loc, Value w) {
  auto type = cast<RankedTensorType>(w.getType());
  Value init = tensor::EmptyOp::create(
      b, loc, ArrayRef<int64_t>{type.getDimSize(1), type.getDimSize(0)},
      type.getElementType());
  return linalg::TransposeOp::create(b, loc, w, init, ArrayRef<int64_t>{1, 0})
      .getResult()[0];
}

/// MatMul(x, W [+ Add(b)]) and Gemm(x, W, b) -> qopt.linear.
LogicalResult
mlir::qopt::onnx::raiseLinear(ONNXNodeOp op, RewriterBase &rewriter,
                              SmallVectorImpl<Operation *> &erased) {
  {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(op);
    if (!op.getDomain().empty() || op.getNumResults() != 1)
      return failure();
    Location loc = op.getLoc();
    // Gemm(x, W, b) with transB = 1 (torch.nn.Linear) or transB = 0
    // (GPT-2's Conv1D stores W as K x N).
    if (op.getOpType() == "Gemm") {
      int64_t transB = getIntAttr(op, "transB", 0);
      if ((transB != 0 && transB != 1) || getIntAttr(op, "transA", 0) != 0 ||
          getFloatAttr(op, "alpha", 1.0) != 1.0 ||
          getFloatAttr(op, "beta", 1.0) != 1.0 || op.getInputs().size() < 2)
        return failure();
      Value x = op.getInputs()[0];
      LoadParamOp w = paramOfRank(op.getInputs()[1], 2);
      Value b = getInput(op, 2);
      if (!w || !isRankedFloat(x) || (b && !paramOfRank(b, 1)))
        return failure();
      auto xType = cast<RankedTensorType>(x.getType());
      RankedTensorType wType = w.getType();
      int64_t n = wType.getDimSize(transB ? 0 : 1);
      int64_t k = wType.getDimSize(transB ? 1 : 0);
      // What the verifier of qopt.linear would refuse is left to the
      // conversion's Gemm, which reports it.
      if (xType.getElementType() != wType.getElementType() ||
          xType.getRank() != 2 ||
          (!xType.isDynamicDim(1) && xType.getDimSize(1) != k) ||
          (b && (cast<RankedTensorType>(b.getType()).getDimSize(0) != n ||
                 getElementTypeOrSelf(b.getType()) != wType.getElementType())))
        return failure();
      Value weight = w;
      if (!transB)
        weight = transposed(rewriter, loc, w);
      SmallVector<int64_t> shape(xType.getShape().drop_back());
      shape.push_back(n);
      auto type = RankedTensorType::get(shape, xType.getElementType());
      Value y = LinearOp::create(rewriter, loc, type, x, weight, b,
                                 moduleName(op, w));
      replaceRoot(rewriter, op, y);
      erased.push_back(op);
      rewriter.eraseOp(op);
      return success();
    }
    // Raising runs before conversion checks the node against its schema:
    // a malformed node is left for that check to report.
    if (op.getOpType() != "MatMul" || op.getInputs().size() != 2)
      return failure();
    Value x = op.getInputs()[0];
    // A weight parameter, or a dequantized one (QDQ exports:
    // MatMul(x, DequantizeLinear(W_int8)) imports W as qopt.dequantize of a
    // !qopt.qtensor).
    LoadParamOp param = paramOfRank(op.getInputs()[1], 2);
    Value w = param ? param.getResult() : Value();
    Value named = w; // what the module name may come from
    if (auto dequantize = op.getInputs()[1].getDefiningOp<DequantizeOp>()) {
      auto type = cast<RankedTensorType>(dequantize.getType());
      if (type.getRank() == 2 && type.hasStaticShape()) {
        w = dequantize;
        if (auto assemble = dequantize.getInput().getDefiningOp<AssembleOp>())
          named = assemble.getData();
      }
    }
    // Exports without constant folding keep torch's N x K parameter behind
    // an ONNX Transpose: MatMul(x, Transpose(W)).
    ONNXNodeOp transpose;
    if (!w) {
      transpose = op.getInputs()[1].getDefiningOp<ONNXNodeOp>();
      // perm absent (reverse) or [1, 0]; a malformed one is left for the
      // conversion's schema check to report.
      std::optional<SmallVector<int64_t>> perm =
          transpose ? getIntsAttr(transpose, "perm") : std::nullopt;
      bool reverses =
          transpose && (perm ? *perm == SmallVector<int64_t>{1, 0}
                             : !transpose.getOnnxAttrs().get("perm"));
      LoadParamOp nk = reverses && transpose.getOpType() == "Transpose" &&
                               transpose.getDomain().empty() &&
                               transpose.getInputs().size() == 1
                           ? paramOfRank(transpose.getInputs()[0], 2)
                           : LoadParamOp();
      if (!nk)
        transpose = {};
      w = named = nk ? nk.getResult() : Value();
    }
    if (!w || !isRankedFloat(x))
      return failure();
    auto xType = cast<RankedTensorType>(x.getType());
    auto wType = cast<RankedTensorType>(w.getType());
    int64_t k = wType.getDimSize(transpose ? 1 : 0);
    int64_t n = wType.getDimSize(transpose ? 0 : 1);
    if (xType.getElementType() != wType.getElementType() ||
        xType.getRank() < 1 ||
        (!xType.isDynamicDim(xType.getRank() - 1) &&
         xType.getDimSize(xType.getRank() - 1) != k))
      return failure();
    // The weight is stored K x N: qopt.linear wants N x K.
    Value wt = transpose ? w : transposed(rewriter, loc, w);
    // A following Add of a bias parameter joins the layer.
    ONNXNodeOp root = op;
    Value bias;
    Value out = op.getResult(0);
    if (out.hasOneUse()) {
      auto add = dyn_cast<ONNXNodeOp>(*out.getUsers().begin());
      if (add && add.getOpType() == "Add" && add.getDomain().empty() &&
          add.getInputs().size() == 2) {
        Value other =
            add.getInputs()[0] == out ? add.getInputs()[1] : add.getInputs()[0];
        LoadParamOp b = paramOfRank(other, 1);
        if (b && b.getType().getDimSize(0) == n &&
            b.getType().getElementType() == wType.getElementType()) {
          bias = b;
          root = add;
        }
      }
    }
    SmallVector<int64_t> shape(xType.getShape().drop_back());
    shape.push_back(n);
    auto type = RankedTensorType::get(shape, xType.getElementType());
    rewriter.setInsertionPoint(root);
    Value y = LinearOp::create(rewriter, root.getLoc(), type, x, wt, bias,
                               moduleName(op, named));
    replaceRoot(rewriter, root, y);
    erased.push_back(root);
    rewriter.eraseOp(root);
    if (root != op) {
      erased.push_back(op);
      rewriter.eraseOp(op);
    }
    if (transpose && transpose->use_empty()) {
      erased.push_back(transpose);
      rewriter.eraseOp(transpose);
    }
    return success();
  }
}

/// Gather(W, ids, axis = 0) of a 2-D float parameter -> qopt.embedding.
LogicalResult
mlir::qopt::onnx::raiseEmbedding(ONNXNodeOp op, RewriterBase &rewriter,
                                 SmallVectorImpl<Operation *> &erased) {
  // Raising runs before conversion checks the node against its schema.
  if (op.getOpType() != "Gather" || !op.getDomain().empty() ||
      op.getInputs().size() != 2 || op->getNumResults() != 1)
    return failure();
  LoadParamOp table = paramOfRank(op.getInputs()[0], 2);
  auto ids = rankedType(op.getInputs()[1]);
  int64_t axis = getIntAttr(op, "axis", 0);
  if (!table || !isRankedFloat(table) || !ids ||
      !ids.getElementType().isSignlessInteger() || (axis != 0 && axis != -2))
    return failure();
  SmallVector<int64_t> shape(ids.getShape());
  shape.push_back(table.getType().getDimSize(1));
  auto type = RankedTensorType::get(shape, table.getType().getElementType());
  rewriter.setInsertionPoint(op);
  Value y = EmbeddingOp::create(rewriter, op.getLoc(), type, op.getInputs()[1],
                                table, moduleName(op, table));
  replaceRoot(rewriter, op, y);
  erased.push_back(op);
  rewriter.eraseOp(op);
  return success();
}

/// The rank of `v` when its type has one, or when it is an elementwise
/// node (the broadcast of its operands) over values of known rank: for
/// values conversion has not reached yet, whose declared types TorchScript
/// exports leave unranked.
static std::optional<int64_t> knownRank(Value v, int depth = 6) {
  if (auto type = rankedType(v))
    return type.getRank();
  auto node = v.getDefiningOp<ONNXNodeOp>();
  if (!node || depth == 0 || !node.getDomain().empty() ||
      node->getNumResults() != 1)
    return std::nullopt;
  static const llvm::StringSet<> elementwise = {"Add",
                                                "Sub",
                                                "Mul",
                                                "Div",
                                                "Where",
                                                "And",
                                                "Or",
                                                "Xor",
                                                "Equal",
                                                "Less",
                                                "Greater",
                                                "LessOrEqual",
                                                "GreaterOrEqual",
                                                "Max",
                                                "Min",
                                                "Pow",
                                                "Cast",
                                                "Not",
                                                "Neg",
                                                "Abs",
                                                "Sqrt",
                                                "Exp",
                                                "Relu",
                                                "Sigmoid",
                                                "Tanh",
                                                "Identity"};
  if (!elementwise.contains(node.getOpType()))
    return std::nullopt;
  int64_t rank = 0;
  for (Value input : node.getInputs()) {
    std::optional<int64_t> r = knownRank(input, depth - 1);
    if (!r)
      return std::nullopt;
    rank = std::max(rank, *r);
  }
  return rank;
}

/// torch's decomposed scaled_dot_product_attention, as both exporters write
/// it:
///   MatMul(Mul(Q, a), Mul(Kᵀ, b)) [→ Add(·, mask)] → Softmax(axis -1)
///   → Where(IsNaN(P), 0, P) → MatMul(·, V)
/// → qopt.attention(Q, K, V, mask, scale = a·b). Started from either Mul
/// or the first MatMul. Without the NaN guard a fully masked row would be
/// NaN, not qopt.attention's 0: not raised.
LogicalResult
mlir::qopt::onnx::raiseAttention(ONNXNodeOp start, RewriterBase &rewriter,
                                 SmallVectorImpl<Operation *> &erased) {
  auto single = [](Value v) -> ONNXNodeOp {
    if (!v.hasOneUse())
      return {};
    auto user = dyn_cast<ONNXNodeOp>(*v.getUsers().begin());
    return user && user.getDomain().empty() ? user : ONNXNodeOp();
  };
  if (start->getNumResults() != 1)
    return failure();
  ONNXNodeOp scores = start;
  if (start.getOpType() == "Mul")
    scores = single(start.getResult(0));
  if (!scores || scores.getOpType() != "MatMul" ||
      scores.getInputs().size() != 2)
    return failure();
  // Q·a and Kᵀ·b with scalar constants.
  SmallVector<Operation *> chain;
  Value scaled[2];
  double scale = 1.0;
  for (int i = 0; i < 2; ++i) {
    auto mul = producer(scores.getInputs()[i], "Mul");
    if (!mul || mul.getInputs().size() != 2)
      return failure();
    std::optional<double> c = scalarValue(mul.getInputs()[1]);
    int side = 0;
    if (!c) {
      c = scalarValue(mul.getInputs()[0]);
      side = 1;
    }
    if (!c)
      return failure();
    scale *= *c;
    scaled[i] = mul.getInputs()[side];
    chain.push_back(mul);
  }
  Value q = scaled[0], kt = scaled[1];
  auto qType = rankedType(q), ktType = rankedType(kt);
  if (!qType || !ktType || qType.getRank() != 4 || ktType.getRank() != 4 ||
      !qType.getElementType().isF32() ||
      ktType.getElementType() != qType.getElementType())
    return failure();
  ONNXNodeOp next = single(scores.getResult(0));
  Value mask;
  if (next && next.getOpType() == "Add" && next.getInputs().size() == 2) {
    mask = next.getInputs()[0] == scores.getResult(0) ? next.getInputs()[1]
                                                      : next.getInputs()[0];
    chain.push_back(next);
    next = single(next.getResult(0));
  }
  ONNXNodeOp softmax = next;
  if (!softmax || softmax.getOpType() != "Softmax" ||
      static_cast<int64_t>(softmax.getOpset()) < 13 ||
      (getIntAttr(softmax, "axis", -1) != -1 &&
       getIntAttr(softmax, "axis", -1) != 3))
    return failure();
  // Where(IsNaN(P), 0, P): the softmax's two users.
  Value p = softmax.getResult(0);
  ONNXNodeOp isNaN, where;
  if (!isNaNGuarded(p, &isNaN, &where))
    return failure();
  ONNXNodeOp output = single(where.getResult(0));
  if (!output || output.getOpType() != "MatMul" ||
      output.getInputs().size() != 2 ||
      output.getInputs()[0] != where.getResult(0))
    return failure();
  Value v = output.getInputs()[1];
  auto vType = rankedType(v);
  if (!vType || vType.getRank() != 4 ||
      vType.getElementType() != qType.getElementType())
    return failure();
  // Head counts lost to run-time reshapes are dynamic: qopt.attention then
  // takes them equal (torch repeats grouped key/value heads before the
  // product) and checks that at run time.
  int64_t hq = qType.getDimSize(1), hkv = ktType.getDimSize(1),
          hv = vType.getDimSize(1);
  if (!ShapedType::isDynamic(hkv) && !ShapedType::isDynamic(hv) && hkv != hv)
    return failure();
  if (ShapedType::isDynamic(hkv))
    hkv = hv;
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv) &&
      (hkv < 1 || hq % hkv))
    return failure();
  // Where MatMul would broadcast a batch or a single head, qopt.attention
  // would not: left as it is.
  auto differ = [](int64_t a, int64_t b) {
    return !ShapedType::isDynamic(a) && !ShapedType::isDynamic(b) && a != b;
  };
  auto mayBroadcast = [](int64_t a, int64_t b) {
    return (a == 1 && ShapedType::isDynamic(b)) ||
           (b == 1 && ShapedType::isDynamic(a));
  };
  int64_t bq = qType.getDimSize(0), bk = ktType.getDimSize(0),
          bv = vType.getDimSize(0);
  if (differ(bq, bk) || differ(bk, bv) || differ(bq, bv) ||
      mayBroadcast(bq, bk) || mayBroadcast(bk, bv) || mayBroadcast(hq, hkv))
    return failure();
  std::optional<int64_t> maskRank;
  if (mask) {
    maskRank = knownRank(mask);
    if (!maskRank || *maskRank > 4 ||
        getElementTypeOrSelf(mask.getType()) != qType.getElementType())
      return failure();
    // A static size that does not broadcast to the scores' [B, Hq, S, L]
    // (checked before any IR is made: the conversion then reports it).
    if (auto mType = rankedType(mask)) {
      int64_t scores[4] = {bq, hq, qType.getDimSize(2), ktType.getDimSize(3)};
      for (int64_t d = 0; d < mType.getRank(); ++d) {
        int64_t ms = mType.getDimSize(d), ss = scores[4 - mType.getRank() + d];
        if (ms != 1 && differ(ms, ss))
          return failure();
      }
    }
  }
  Location loc = output.getLoc();
  rewriter.setInsertionPoint(output);
  // K: the input of Kᵀ's transpose where there is one, else transposed.
  Value k;
  if (auto t = kt.getDefiningOp<linalg::TransposeOp>();
      t && t.getPermutation() == ArrayRef<int64_t>{0, 1, 3, 2})
    k = t.getInput();
  else if (auto node = producer(kt, "Transpose", /*requireSingleUse=*/false);
           node &&
           getIntsAttr(node, "perm") == std::optional<SmallVector<int64_t>>(
                                            SmallVector<int64_t>{0, 1, 3, 2}) &&
           rankedType(node.getInputs()[0])) {
    k = node.getInputs()[0];
    chain.push_back(node); // erased when the product was its only reader
  }
  if (!k) {
    SmallVector<OpFoldResult> sizes = tensor::getMixedSizes(rewriter, loc, kt);
    Value init = tensor::EmptyOp::create(
        rewriter, loc, {sizes[0], sizes[1], sizes[3], sizes[2]},
        ktType.getElementType());
    k = linalg::TransposeOp::create(rewriter, loc, kt, init,
                                    ArrayRef<int64_t>{0, 1, 3, 2})
            .getResult()[0];
  }
  if (mask) {
    if (!rankedType(mask))
      mask = tensor::CastOp::create(
          rewriter, loc,
          RankedTensorType::get(
              SmallVector<int64_t>(*maskRank, ShapedType::kDynamic),
              qType.getElementType()),
          mask);
    FailureOr<Value> m = prepareAttentionMask(output, rewriter, mask, q, k);
    if (failed(m))
      return failure();
    mask = *m;
  }
  SmallVector<int64_t> shape = {qType.getDimSize(0), hq, qType.getDimSize(2),
                                vType.getDimSize(3)};
  Value y = AttentionOp::create(
      rewriter, loc, RankedTensorType::get(shape, qType.getElementType()), q, k,
      v, mask, UnitAttr(), rewriter.getF64FloatAttr(scale), FloatAttr());
  chain.append({scores, softmax, isNaN, where});
  replaceChain(rewriter, output, y, chain, erased);
  return success();
}

bool mlir::qopt::onnx::isNaNGuarded(Value p, ONNXNodeOp *isNaNOut,
                                    ONNXNodeOp *whereOut) {
  ONNXNodeOp isNaN, where;
  for (Operation *user : p.getUsers()) {
    auto node = dyn_cast<ONNXNodeOp>(user);
    if (node && node.getOpType() == "IsNaN" && !isNaN)
      isNaN = node;
    else if (node && node.getOpType() == "Where" && !where)
      where = node;
    else
      return false;
  }
  if (!isNaN || !where || where.getInputs().size() != 3 ||
      where.getInputs()[0] != isNaN.getResult(0) || where.getInputs()[2] != p ||
      !isNaN.getResult(0).hasOneUse() ||
      !near(scalarValue(where.getInputs()[1]), 0.0))
    return false;
  if (isNaNOut)
    *isNaNOut = isNaN;
  if (whereOut)
    *whereOut = where;
  return true;
}

/// The integers of a constant (an ONNX Constant node, or what conversion
/// made of one).
static std::optional<SmallVector<int64_t>> constantInts(Value v) {
  if (auto node = producer(v, "Constant", false)) {
    auto elements = dyn_cast_or_null<DenseIntElementsAttr>(
        node.getOnnxAttrs().get("value"));
    if (!elements)
      return std::nullopt;
    SmallVector<int64_t> values;
    for (const APInt &i : elements.getValues<APInt>())
      values.push_back(i.getSExtValue());
    return values;
  }
  return getConstantInts(v);
}

/// Which half of the last axis of `x` (size `dim`) the Slice `slice` takes:
/// 0 for [0, dim/2), 1 for [dim/2, dim), else none. Bounds computed at run
/// time (TorchScript's x.shape[-1] // 2) are read off the result's size.
static std::optional<int> sliceHalf(ONNXNodeOp slice, Value x, int64_t dim) {
  if (!slice || slice.getInputs().size() < 4 || slice.getInputs()[0] != x ||
      slice->getNumResults() != 1)
    return std::nullopt;
  int64_t rank = rankedType(x).getRank();
  std::optional<SmallVector<int64_t>> axes = constantInts(slice.getInputs()[3]);
  if (!axes || axes->size() != 1 ||
      ((*axes)[0] != -1 && (*axes)[0] != rank - 1))
    return std::nullopt;
  if (Value steps = getInput(slice, 4)) {
    std::optional<SmallVector<int64_t>> st = constantInts(steps);
    if (!st || st->size() != 1 || (*st)[0] != 1)
      return std::nullopt;
  }
  std::optional<SmallVector<int64_t>> starts =
      constantInts(slice.getInputs()[1]);
  std::optional<SmallVector<int64_t>> ends = constantInts(slice.getInputs()[2]);
  auto one = [](const std::optional<SmallVector<int64_t>> &v) {
    return v && v->size() == 1 ? std::optional<int64_t>(v->front())
                               : std::nullopt;
  };
  std::optional<int64_t> start = one(starts), end = one(ends);
  int64_t half = dim / 2;
  auto outType = rankedType(slice.getResult(0));
  bool halfWide = outType && outType.getDimSize(outType.getRank() - 1) == half;
  if (start == 0 && (end == half || (!end && halfWide)))
    return 0;
  bool startsHalf = start == half || start == -half;
  bool toEnd = end && *end >= dim;
  if ((startsHalf && (toEnd || halfWide)) || (!start && toEnd && halfWide))
    return 1;
  return std::nullopt;
}

/// Hugging Face's apply_rotary_pos_emb, x·cos + rotate_half(x)·sin with
/// rotate_half(x) = Concat(-x[..., D/2:], x[..., :D/2]), rooted at the Add
/// -> qopt.rotary. cos / sin dimensions that may be 1 where x's is not are
/// broadcast as the run says.
LogicalResult
mlir::qopt::onnx::raiseRotary(ONNXNodeOp add, RewriterBase &rewriter,
                              SmallVectorImpl<Operation *> &erased) {
  if (add.getOpType() != "Add" || !add.getDomain().empty() ||
      add.getInputs().size() != 2 || add->getNumResults() != 1)
    return failure();
  for (int side = 0; side < 2; ++side) {
    auto direct = producer(add.getInputs()[side], "Mul");
    auto rotatedMul = producer(add.getInputs()[1 - side], "Mul");
    if (!direct || !rotatedMul || direct.getInputs().size() != 2 ||
        rotatedMul.getInputs().size() != 2)
      continue;
    for (int r = 0; r < 2; ++r) {
      auto concat = producer(rotatedMul.getInputs()[r], "Concat");
      Value sin = rotatedMul.getInputs()[1 - r];
      if (!concat || concat.getInputs().size() != 2)
        continue;
      auto neg = producer(concat.getInputs()[0], "Neg");
      if (!neg)
        continue;
      auto second = producer(neg.getInputs()[0], "Slice");
      auto first = producer(concat.getInputs()[1], "Slice");
      if (!second || !first)
        continue;
      Value x = first.getInputs()[0];
      auto xType = rankedType(x);
      if (!xType || !isa<FloatType>(xType.getElementType()) ||
          xType.getRank() < 2)
        continue;
      int64_t rank = xType.getRank(), dim = xType.getDimSize(rank - 1);
      int64_t axis = getIntAttr(concat, "axis", 0);
      if (ShapedType::isDynamic(dim) || dim % 2 ||
          (axis != -1 && axis != rank - 1) || sliceHalf(first, x, dim) != 0 ||
          sliceHalf(second, x, dim) != 1)
        continue;
      Value cos;
      if (direct.getInputs()[0] == x)
        cos = direct.getInputs()[1];
      else if (direct.getInputs()[1] == x)
        cos = direct.getInputs()[0];
      else
        continue;
      auto cType = rankedType(cos), sType = rankedType(sin);
      if (!cType || !sType ||
          failed(verifyCompatibleShape(cType.getShape(), sType.getShape())) ||
          cType.getElementType() != xType.getElementType() ||
          sType.getElementType() != xType.getElementType() ||
          cType.getRank() != rank || cType.getDimSize(rank - 1) != dim ||
          sType.getDimSize(rank - 1) != dim)
        continue;
      // A static size other than 1 or x's would broadcast x: not a rotary.
      bool fits = true;
      for (int64_t d = 0; d + 1 < rank; ++d)
        for (auto t : {cType, sType}) {
          int64_t cs = t.getDimSize(d), xs = xType.getDimSize(d);
          if (!ShapedType::isDynamic(cs) && cs != 1 &&
              !ShapedType::isDynamic(xs) && cs != xs)
            fits = false;
        }
      if (!fits)
        continue;
      Location loc = add.getLoc();
      rewriter.setInsertionPoint(add);
      auto broadcastable = [&](Value t) {
        if (t.getType() != cType)
          t = tensor::CastOp::create(rewriter, loc, cType, t);
        for (int64_t d = 0; d + 1 < rank; ++d)
          if (cType.isDynamicDim(d))
            t = broadcastAtRunTime(
                add, rewriter, t, d, x, d,
                "cos / sin do not broadcast to the rotated input");
        return t;
      };
      Value c = broadcastable(cos), s = broadcastable(sin);
      if (c.getType() != s.getType())
        s = tensor::CastOp::create(rewriter, loc, c.getType(), s);
      Value y = RotaryOp::create(rewriter, loc, xType, x, c, s, UnitAttr());
      SmallVector<Operation *> chain = {direct, rotatedMul, concat,
                                        neg,    second,     first};
      replaceChain(rewriter, add, y, chain, erased);
      return success();
    }
  }
  return failure();
}

/// Add(stream, linear(...)) where the stream is a norm's input or output or
/// another residual add -> qopt.residual_add: a transformer's residual
/// connection, with the module path of the layer that wrote the update.
LogicalResult
mlir::qopt::onnx::raiseResidualAdd(ONNXNodeOp add, RewriterBase &rewriter,
                                   SmallVectorImpl<Operation *> &erased) {
  if (add.getOpType() != "Add" || !add.getDomain().empty() ||
      add.getInputs().size() != 2 || add->getNumResults() != 1)
    return failure();
  // The layer, through casts and reshapes (GPT-2's Conv1D works on
  // [B·S, K] rows).
  auto layerOf = [](Value v) -> Operation * {
    while (Operation *def = v.getDefiningOp()) {
      if (!isa<tensor::CastOp, tensor::ReshapeOp, tensor::ExpandShapeOp,
               tensor::CollapseShapeOp>(def) ||
          !def->getResult(0).hasOneUse())
        break;
      v = def->getOperand(0);
    }
    Operation *def = v.getDefiningOp();
    return isa_and_nonnull<LinearOp, LoRAOp>(def) ? def : nullptr;
  };
  auto isNorm = [](Operation *op) {
    if (isa<RMSNormOp, LayerNormOp>(op))
      return true;
    auto node = dyn_cast<ONNXNodeOp>(op);
    return node && (node.getOpType() == "LayerNormalization" ||
                    node.getOpType() == "RMSNormalization" ||
                    node.getOpType() == "SimplifiedLayerNormalization" ||
                    node.getOpType() == "SkipLayerNormalization");
  };
  auto isStream = [&](Value v) {
    Operation *def = v.getDefiningOp();
    if (def && (isa<ResidualAddOp, EmbeddingOp>(def) || isNorm(def)))
      return true;
    return llvm::any_of(v.getUsers(), isNorm);
  };
  for (int side = 0; side < 2; ++side) {
    Value stream = add.getInputs()[side], update = add.getInputs()[1 - side];
    Operation *layer = layerOf(update);
    auto sType = rankedType(stream), uType = rankedType(update);
    if (!layer || !sType || !uType || !isa<FloatType>(sType.getElementType()) ||
        !update.hasOneUse() || !isStream(stream) ||
        sType.getElementType() != uType.getElementType() ||
        failed(verifyCompatibleShape(sType.getShape(), uType.getShape())))
      continue;
    rewriter.setInsertionPoint(add);
    if (uType != sType)
      update = tensor::CastOp::create(rewriter, add.getLoc(), sType, update);
    auto module = layer->getAttrOfType<StringAttr>("module");
    Value y = ResidualAddOp::create(rewriter, add.getLoc(), sType, stream,
                                    update, module);
    replaceRoot(rewriter, add, y);
    erased.push_back(add);
    rewriter.eraseOp(add);
    return success();
  }
  return failure();
}

/// x / sqrt(mean(x^2, -1) + eps) * gamma -> qopt.rms_norm, rooted at the
/// final Mul.
LogicalResult
mlir::qopt::onnx::raiseRMSNorm(ONNXNodeOp op, RewriterBase &rewriter,
                               SmallVectorImpl<Operation *> &erased) {
  {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(op);
    if (op.getOpType() != "Mul" || !op.getDomain().empty() ||
        op.getInputs().size() != 2)
      return failure();
    for (int gammaSide = 0; gammaSide < 2; ++gammaSide) {
      LoadParamOp gamma = paramOfRank(op.getInputs()[gammaSide], 1);
      Value normed = op.getInputs()[1 - gammaSide];
      if (!gamma)
        continue;
      SmallVector<Operation *> chain;
      Value x, sqrtValue;
      if (auto div = producer(normed, "Div")) { // x / S
        x = div.getInputs()[0];
        sqrtValue = div.getInputs()[1];
        chain.push_back(div);
      } else if (auto mul = producer(normed, "Mul")) { // x * (1/S)
        for (int side = 0; side < 2 && !x; ++side) {
          Value r = mul.getInputs()[side];
          if (auto recip = producer(r, "Reciprocal")) {
            x = mul.getInputs()[1 - side];
            sqrtValue = recip.getInputs()[0];
            chain.append({mul, recip});
          } else if (auto d = producer(r, "Div")) {
            std::optional<double> one = scalarValue(d.getInputs()[0]);
            if (one && *one == 1.0) {
              x = mul.getInputs()[1 - side];
              sqrtValue = d.getInputs()[1];
              chain.append({mul, d});
            }
          }
        }
      }
      if (!x || !isRankedFloat(x))
        continue;
      // x - mean(x) normalised this way is a LayerNorm (raiseLayerNorm).
      SmallVector<Operation *> ignored;
      if (centered(x, ignored))
        continue;
      auto sqrtNode = producer(sqrtValue, "Sqrt");
      if (!sqrtNode)
        continue;
      auto add = producer(sqrtNode.getInputs()[0], "Add");
      if (!add)
        continue;
      std::optional<double> eps;
      Value mean;
      for (int side = 0; side < 2 && !eps; ++side) {
        eps = scalarValue(add.getInputs()[side]);
        mean = add.getInputs()[1 - side];
      }
      auto reduce = producer(mean, "ReduceMean");
      if (!eps || !reduce || getIntAttr(reduce, "keepdims", 1) != 1)
        continue;
      std::optional<SmallVector<int64_t>> axes =
          reduce.getInputs().size() > 1 ? getConstantInts(reduce.getInputs()[1])
                                        : getIntsAttr(reduce, "axes");
      int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
      if (!axes || axes->size() != 1 ||
          ((*axes)[0] != -1 && (*axes)[0] != rank - 1))
        continue;
      Value squared = reduce.getInputs()[0];
      bool isSquare = false;
      // The square is also read by nothing else.
      if (auto pow = producer(squared, "Pow")) {
        std::optional<double> two = scalarValue(pow.getInputs()[1]);
        isSquare = pow.getInputs()[0] == x && two && *two == 2.0;
        if (isSquare)
          chain.push_back(pow);
      } else if (auto sq = producer(squared, "Mul")) {
        isSquare = sq.getInputs()[0] == x && sq.getInputs()[1] == x;
        if (isSquare)
          chain.push_back(sq);
      }
      auto gammaType = gamma.getType();
      auto xType = cast<RankedTensorType>(x.getType());
      // A scale of one element broadcasts in the Mul but not in
      // qopt.rms_norm: left as it is unless the sizes are known equal.
      if (!isSquare || gammaType.getElementType() != xType.getElementType() ||
          (!xType.isDynamicDim(rank - 1) &&
           xType.getDimSize(rank - 1) != gammaType.getDimSize(0)) ||
          (xType.isDynamicDim(rank - 1) && gammaType.getDimSize(0) == 1))
        continue;
      chain.append({reduce, add, sqrtNode});
      Value y = RMSNormOp::create(rewriter, op.getLoc(), xType, x, gamma,
                                  rewriter.getF64FloatAttr(*eps),
                                  rewriter.getI64IntegerAttr(-1));
      replaceChain(rewriter, op, y, chain, erased);
      return success();
    }
    return failure();
  }
}

/// 0.5 · x · (1 + erf(x/√2)) or its tanh form, in any association of the
/// products -> qopt.gelu.
LogicalResult
mlir::qopt::onnx::raiseGelu(ONNXNodeOp op, RewriterBase &rewriter,
                            SmallVectorImpl<Operation *> &erased) {
  for (auto &[leaves, inner] : productsOfThree(op)) {
    for (int h = 0; h < 3; ++h) {
      if (!near(scalarValue(leaves[h]), 0.5))
        continue;
      for (int a = 0; a < 3; ++a) {
        if (a == h)
          continue;
        Value x = leaves[3 - h - a];
        auto add = producer(leaves[a], "Add");
        if (!add || !isRankedFloat(x))
          continue;
        Value fValue = otherThanScalar(add, 1.0);
        for (bool tanhForm : {false, true}) {
          auto f = producer(fValue, tanhForm ? "Tanh" : "Erf");
          if (!f)
            continue;
          SmallVector<Operation *> chain = {inner, add, f};
          if (geluArgument(f, tanhForm, chain) != x)
            continue;
          OpBuilder::InsertionGuard guard(rewriter);
          rewriter.setInsertionPoint(op);
          Value y = GeluOp::create(
              rewriter, op.getLoc(), x.getType(), x,
              rewriter.getStringAttr(tanhForm ? "tanh" : "none"));
          replaceChain(rewriter, op, y, chain, erased);
          return success();
        }
      }
    }
  }
  return failure();
}

/// Mul(x, Sigmoid(x)) -> qopt.silu.
LogicalResult
mlir::qopt::onnx::raiseSiLU(ONNXNodeOp op, RewriterBase &rewriter,
                            SmallVectorImpl<Operation *> &erased) {
  if (op.getOpType() != "Mul" || !op.getDomain().empty() ||
      op.getInputs().size() != 2)
    return failure();
  for (int side = 0; side < 2; ++side) {
    Value x = op.getInputs()[1 - side];
    auto sigmoid = producer(op.getInputs()[side], "Sigmoid");
    if (!sigmoid || sigmoid.getInputs()[0] != x || !isRankedFloat(x))
      continue;
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(op);
    Value y = SiLUOp::create(rewriter, op.getLoc(), x.getType(), x);
    SmallVector<Operation *> chain = {sigmoid};
    replaceChain(rewriter, op, y, chain, erased);
    return success();
  }
  return failure();
}

/// ((x - mean(x)) / sqrt(mean((x - mean(x))²) + eps)) · gamma [+ beta], as
/// pre-opset-17 exports write LayerNorm -> qopt.layer_norm.
LogicalResult
mlir::qopt::onnx::raiseLayerNorm(ONNXNodeOp op, RewriterBase &rewriter,
                                 SmallVectorImpl<Operation *> &erased) {
  if (!op.getDomain().empty() || op.getInputs().size() != 2)
    return failure();
  ONNXNodeOp scaled = op;
  LoadParamOp beta;
  if (op.getOpType() == "Add") {
    for (int side = 0; side < 2 && !beta; ++side)
      if ((beta = paramOfRank(op.getInputs()[side], 1)))
        scaled = producer(op.getInputs()[1 - side], "Mul");
    if (!beta || !scaled)
      return failure();
  } else if (op.getOpType() != "Mul") {
    return failure();
  }
  for (int side = 0; side < 2; ++side) {
    LoadParamOp gamma = paramOfRank(scaled.getInputs()[side], 1);
    auto div = producer(scaled.getInputs()[1 - side], "Div");
    if (!gamma || !div)
      continue;
    SmallVector<Operation *> chain = {div};
    if (scaled != op)
      chain.push_back(scaled);
    Value d = div.getInputs()[0];
    Value x = centered(d, chain);
    auto sqrtNode = producer(div.getInputs()[1], "Sqrt");
    auto add =
        sqrtNode ? producer(sqrtNode.getInputs()[0], "Add") : ONNXNodeOp();
    if (!x || !add)
      continue;
    std::optional<double> eps;
    Value var;
    for (int s = 0; s < 2 && !eps; ++s) {
      eps = scalarValue(add.getInputs()[s]);
      var = add.getInputs()[1 - s];
    }
    auto varMean = producer(var, "ReduceMean");
    if (!eps || !varMean)
      continue;
    auto pow = producer(varMean.getInputs()[0], "Pow");
    if (!pow || pow.getInputs()[0] != d ||
        !near(scalarValue(pow.getInputs()[1]), 2.0) ||
        !isLastAxisMean(varMean, pow.getResult(0),
                        cast<RankedTensorType>(x.getType()).getRank()) ||
        !d.hasNUses(2))
      continue;
    auto xType = cast<RankedTensorType>(x.getType());
    int64_t rank = xType.getRank();
    int64_t n = gamma.getType().getDimSize(0);
    if (gamma.getType().getElementType() != xType.getElementType() ||
        (beta && (beta.getType().getElementType() != xType.getElementType() ||
                  beta.getType().getDimSize(0) != n)) ||
        (!xType.isDynamicDim(rank - 1) && xType.getDimSize(rank - 1) != n) ||
        (xType.isDynamicDim(rank - 1) && n == 1))
      continue;
    chain.append({sqrtNode, add, varMean, pow});
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(op);
    Value y = LayerNormOp::create(
        rewriter, op.getLoc(), xType, x, gamma, beta ? Value(beta) : Value(),
        rewriter.getF64FloatAttr(*eps), rewriter.getI64IntegerAttr(-1));
    replaceChain(rewriter, op, y, chain, erased);
    return success();
  }
  return failure();
}

ONNXNodeOp mlir::qopt::onnx::findRMSNormRoot(ONNXNodeOp square) {
  // Forward along single uses: square -> ReduceMean -> Add -> Sqrt ->
  // (Div | Reciprocal -> Mul | Div(1, .) -> Mul) -> Mul(gamma).
  auto next = [](Operation *op) -> ONNXNodeOp {
    if (!op || op->getNumResults() != 1 || !op->getResult(0).hasOneUse())
      return {};
    return dyn_cast<ONNXNodeOp>(*op->getResult(0).getUsers().begin());
  };
  ONNXNodeOp reduce = next(square);
  if (!reduce || reduce.getOpType() != "ReduceMean")
    return {};
  ONNXNodeOp add = next(reduce), sqrtNode = next(add);
  if (!add || !sqrtNode || sqrtNode.getOpType() != "Sqrt")
    return {};
  ONNXNodeOp op = next(sqrtNode);
  if (!op)
    return {};
  ONNXNodeOp normed; // the node producing x / sqrt(...)
  if (op.getOpType() == "Div" && op.getInputs()[1] == sqrtNode.getResult(0) &&
      op.getInputs()[0] != sqrtNode.getResult(0))
    normed = op; // Div(x, S)
  else if (op.getOpType() == "Reciprocal" || op.getOpType() == "Div")
    normed = next(op); // Mul(x, Reciprocal(S)) or Mul(x, Div(1, S))
  ONNXNodeOp root = next(normed);
  return root && root.getOpType() == "Mul" ? root : ONNXNodeOp();
}

namespace {

struct RaiseLinear : OpRewritePattern<ONNXNodeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ONNXNodeOp op,
                                PatternRewriter &rewriter) const override {
    SmallVector<Operation *> erased;
    return raiseLinear(op, rewriter, erased);
  }
};

struct RaiseRMSNorm : OpRewritePattern<ONNXNodeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ONNXNodeOp op,
                                PatternRewriter &rewriter) const override {
    SmallVector<Operation *> erased;
    return raiseRMSNorm(op, rewriter, erased);
  }
};

template <LogicalResult (*Raise)(ONNXNodeOp, RewriterBase &,
                                 SmallVectorImpl<Operation *> &)>
struct RaisePattern : OpRewritePattern<ONNXNodeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ONNXNodeOp op,
                                PatternRewriter &rewriter) const override {
    SmallVector<Operation *> erased;
    return Raise(op, rewriter, erased);
  }
};

struct QOptRaiseONNXPass
    : qopt::impl::QOptRaiseONNXPassBase<QOptRaiseONNXPass> {
  void runOnOperation() override {
    ParamLookupScope symbols;
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseLinear, RaiseRMSNorm, RaisePattern<raiseGelu>,
                 RaisePattern<raiseSiLU>, RaisePattern<raiseEmbedding>,
                 RaisePattern<raiseAttention>, RaisePattern<raiseRotary>,
                 RaisePattern<raiseResidualAdd>>(&getContext());
    // Before RMSNorm, which would otherwise take the final Mul of a
    // LayerNorm without beta.
    patterns.add<RaisePattern<raiseLayerNorm>>(&getContext(), /*benefit=*/2);
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(
            applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};

} // namespace
