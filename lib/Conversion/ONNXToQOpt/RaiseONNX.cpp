//===- RaiseONNX.cpp - Recognise decomposed layers in ONNX graphs ---------===//

#include "Patterns.h"
#include "qopt/Conversion/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTRAISEONNXPASS
#include "qopt/Conversion/Passes.h.inc"
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
  Attribute attr;
  if (auto node = producer(v, "Constant", false)) {
    attr = node.getOnnxAttrs().get("value");
  } else if (auto load = v ? v.getDefiningOp<LoadParamOp>() : LoadParamOp()) {
    attr = load.getInlineData();
  } else if (v) {
    matchPattern(v, m_Constant(&attr));
  }
  auto elements = dyn_cast_or_null<DenseFPElementsAttr>(attr);
  if (!elements || elements.getNumElements() != 1)
    return std::nullopt;
  return (*elements.getValues<APFloat>().begin()).convertToDouble();
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
      cast = tensor::CastOp::create(rewriter, root.getLoc(), old.getType(), value);
    rewriter.modifyOpInPlace(use.getOwner(), [&] { use.set(cast); });
  }
}

bool isRankedFloat(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && isa<FloatType>(t.getElementType());
}

} // namespace

/// MatMul(x, W [+ Add(b)]) and Gemm(x, W, b, transB=1) -> qopt.linear.
LogicalResult mlir::qopt::onnx::raiseLinear(ONNXNodeOp op,
                                            RewriterBase &rewriter,
                                            SmallVectorImpl<Operation *> &erased) {
  {
    OpBuilder::InsertionGuard guard(rewriter);
    rewriter.setInsertionPoint(op);
    if (!op.getDomain().empty() || op.getNumResults() != 1)
      return failure();
    Location loc = op.getLoc();
    if (op.getOpType() == "Gemm") {
      if (getIntAttr(op, "transB", 0) != 1 || getIntAttr(op, "transA", 0) != 0 ||
          getFloatAttr(op, "alpha", 1.0) != 1.0 ||
          getFloatAttr(op, "beta", 1.0) != 1.0 || op.getInputs().size() < 2)
        return failure();
      Value x = op.getInputs()[0];
      LoadParamOp w = paramOfRank(op.getInputs()[1], 2);
      Value b = getInput(op, 2);
      if (!w || !isRankedFloat(x) || (b && !paramOfRank(b, 1)))
        return failure();
      auto xType = cast<RankedTensorType>(x.getType());
      if (xType.getElementType() != w.getType().getElementType())
        return failure();
      SmallVector<int64_t> shape(xType.getShape().drop_back());
      shape.push_back(w.getType().getDimSize(0));
      auto type = RankedTensorType::get(shape, xType.getElementType());
      Value y = LinearOp::create(rewriter, loc, type, x, w, b);
      replaceRoot(rewriter, op, y);
      erased.push_back(op);
      rewriter.eraseOp(op);
      return success();
    }
    if (op.getOpType() != "MatMul")
      return failure();
    Value x = op.getInputs()[0];
    LoadParamOp w = paramOfRank(op.getInputs()[1], 2);
    if (!w || !isRankedFloat(x))
      return failure();
    auto xType = cast<RankedTensorType>(x.getType());
    auto wType = w.getType();
    if (xType.getElementType() != wType.getElementType() ||
        xType.getRank() < 1 ||
        (!xType.isDynamicDim(xType.getRank() - 1) &&
         xType.getDimSize(xType.getRank() - 1) != wType.getDimSize(0)))
      return failure();
    // The weight is stored K x N: qopt.linear wants N x K.
    Value init = tensor::EmptyOp::create(
        rewriter, loc, ArrayRef<int64_t>{wType.getDimSize(1), wType.getDimSize(0)},
        wType.getElementType());
    Value wt = linalg::TransposeOp::create(rewriter, loc, w, init,
                                           ArrayRef<int64_t>{1, 0})
                   .getResult()[0];
    // A following Add of a bias parameter joins the layer.
    ONNXNodeOp root = op;
    Value bias;
    Value out = op.getResult(0);
    if (out.hasOneUse()) {
      auto add = dyn_cast<ONNXNodeOp>(*out.getUsers().begin());
      if (add && add.getOpType() == "Add" && add.getDomain().empty() &&
          add.getInputs().size() == 2) {
        Value other = add.getInputs()[0] == out ? add.getInputs()[1]
                                                : add.getInputs()[0];
        LoadParamOp b = paramOfRank(other, 1);
        if (b && b.getType().getDimSize(0) == wType.getDimSize(1) &&
            b.getType().getElementType() == wType.getElementType()) {
          bias = b;
          root = add;
        }
      }
    }
    SmallVector<int64_t> shape(xType.getShape().drop_back());
    shape.push_back(wType.getDimSize(1));
    auto type = RankedTensorType::get(shape, xType.getElementType());
    rewriter.setInsertionPoint(root);
    Value y = LinearOp::create(rewriter, root.getLoc(), type, x, wt, bias);
    replaceRoot(rewriter, root, y);
    erased.push_back(root);
    rewriter.eraseOp(root);
    if (root != op) {
      erased.push_back(op);
      rewriter.eraseOp(op);
    }
    return success();
  }
}

/// x / sqrt(mean(x^2, -1) + eps) * gamma -> qopt.rms_norm, rooted at the
/// final Mul.
LogicalResult mlir::qopt::onnx::raiseRMSNorm(ONNXNodeOp op,
                                             RewriterBase &rewriter,
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
      if (!isSquare || gammaType.getElementType() != xType.getElementType() ||
          (!xType.isDynamicDim(rank - 1) &&
           xType.getDimSize(rank - 1) != gammaType.getDimSize(0)))
        continue;
      chain.append({reduce, add, sqrtNode});
      Value y = RMSNormOp::create(rewriter, op.getLoc(), xType, x, gamma,
                                  rewriter.getF64FloatAttr(*eps),
                                  rewriter.getI64IntegerAttr(-1));
      replaceRoot(rewriter, op, y);
      erased.push_back(op);
      rewriter.eraseOp(op);
      // Erase the matched nodes as they lose their last user.
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
      return success();
    }
    return failure();
  }
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

struct QOptRaiseONNXPass
    : qopt::impl::QOptRaiseONNXPassBase<QOptRaiseONNXPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseLinear, RaiseRMSNorm>(&getContext());
    GreedyRewriteConfig config;
    config.enableFolding(false);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns), config)))
      signalPassFailure();
  }
};

} // namespace
