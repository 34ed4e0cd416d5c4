//===- FuseElementwise.cpp - Elementwise fusion without recomputation -----===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "MulAddBody.h"
#include "qopt/Dialect/QOpt/IR/QOptMarkers.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/LinalgInterfaces.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Matchers.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTFUSEELEMENTWISEPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// A generic that only moves data: its body yields one of its inputs.
static bool isDataMovement(Operation *op) {
  auto generic = dyn_cast<linalg::GenericOp>(op);
  if (!generic || generic.getNumDpsInputs() != 1)
    return false;
  Block &body = generic.getRegion().front();
  auto yield = cast<linalg::YieldOp>(body.getTerminator());
  return body.getOperations().size() == 1 &&
         yield.getValues()[0] == body.getArgument(0);
}

/// Whether `op` computes exactly C += A·B: a named contraction, or a
/// generic whose body is acc + a*b (the upstream contraction check also
/// admits unary ops around the sum, e.g. negf(acc + a*b), for which
/// starting from another accumulator would change the result).
static bool isPlainContraction(linalg::LinalgOp op) {
  if (!linalg::isaContractionOpInterface(op))
    return false;
  auto generic = dyn_cast<linalg::GenericOp>(op.getOperation());
  return !generic || qopt::isMulAddBody(generic);
}

/// Whether `op` is an f32 elementwise sum of its two inputs (identity maps).
static bool isElementwiseAdd(linalg::GenericOp op) {
  if (op.getNumDpsInputs() != 2 || op.getNumDpsInits() != 1 ||
      op.getNumReductionLoops() != 0 ||
      !llvm::all_of(op.getIndexingMapsArray(),
                    [](AffineMap m) { return m.isIdentity(); }))
    return false;
  Block &body = op.getRegion().front();
  if (body.getOperations().size() != 2)
    return false;
  auto add = body.getTerminator()->getOperand(0).getDefiningOp<arith::AddFOp>();
  if (!add || !add.getType().isF32())
    return false;
  Value a = body.getArgument(0), b = body.getArgument(1);
  return (add.getLhs() == a && add.getRhs() == b) ||
         (add.getLhs() == b && add.getRhs() == a);
}

namespace {
/// add(contraction(…, outs = init), r) -> contraction(…, outs = init + r):
/// a residual or a second product's sum becomes the product's starting
/// accumulator (the kernels compute C += A·B), so the output is not read
/// and written once more. A zero-filled init is replaced by r itself.
struct FoldAddIntoAccumulator : OpRewritePattern<linalg::GenericOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(linalg::GenericOp add,
                                PatternRewriter &rewriter) const override {
    if (!add.hasPureTensorSemantics() || !isElementwiseAdd(add))
      return failure();
    // A product with a zero-filled accumulator first (nothing to add).
    for (unsigned pass = 0; pass < 4; ++pass) {
      unsigned i = pass % 2;
      bool zeroOnly = pass < 2;
      Value produced = add.getDpsInputs()[i];
      Value other = add.getDpsInputs()[1 - i];
      auto product = produced.getDefiningOp<linalg::LinalgOp>();
      if (!product || !produced.hasOneUse() || product->getNumResults() != 1 ||
          product.getNumDpsInits() != 1 || !product.hasPureTensorSemantics() ||
          !isPlainContraction(product) ||
          produced.getType() != add.getResult(0).getType() ||
          other.getType() != produced.getType())
        continue;
      if (product->getBlock() != add->getBlock())
        continue;
      auto fill =
          product.getDpsInitOperand(0)->get().getDefiningOp<linalg::FillOp>();
      bool zero = fill && matchPattern(fill.getInputs()[0], m_AnyZeroFloat());
      if (zeroOnly && !zero)
        continue;
      // The product moves down to the sum (its operands dominate it), where
      // r and the sum's output tensor are defined.
      rewriter.moveOpBefore(product, add);
      rewriter.setInsertionPoint(product);
      OpOperand *initOperand = product.getDpsInitOperand(0);
      Value init = initOperand->get();
      Value start = other;
      if (!zero) {
        // init + r, elementwise (later fused with the init's producer, e.g.
        // a broadcast bias).
        start = linalg::GenericOp::create(
                    rewriter, add.getLoc(), TypeRange{other.getType()},
                    ValueRange{init, other}, ValueRange{add.getDpsInits()[0]},
                    add.getIndexingMapsArray(), add.getIteratorTypesArray(),
                    [](OpBuilder &b, Location loc, ValueRange args) {
                      Value sum =
                          arith::AddFOp::create(b, loc, args[0], args[1]);
                      linalg::YieldOp::create(b, loc, sum);
                    })
                    .getResult(0);
      }
      rewriter.modifyOpInPlace(product, [&] { initOperand->set(start); });
      rewriter.replaceOp(add, product->getResult(0));
      return success();
    }
    return failure();
  }
};

} // namespace

namespace {
struct QOptFuseElementwisePass
    : qopt::impl::QOptFuseElementwisePassBase<QOptFuseElementwisePass> {
  void runOnOperation() override {
    // Transposes and broadcasts as generics, so that they can be folded
    // into their consumers' indexing maps.
    SmallVector<linalg::LinalgOp> named;
    getOperation().walk([&](linalg::LinalgOp op) {
      if (isa<linalg::TransposeOp, linalg::BroadcastOp>(op))
        named.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::LinalgOp op : named) {
      rewriter.setInsertionPoint(op);
      (void)linalg::generalizeNamedOp(rewriter, op);
    }

    // Sums into the products' accumulators first, so that the new
    // accumulators fuse with their producers below.
    {
      RewritePatternSet folds(&getContext());
      folds.add<FoldAddIntoAccumulator>(&getContext());
      if (failed(applyPatternsGreedily(getOperation(), std::move(folds))))
        return signalPassFailure();
    }

    RewritePatternSet patterns(&getContext());
    linalg::ControlFusionFn control = [](OpOperand *operand) {
      Operation *producer = operand->get().getDefiningOp();
      auto consumer = dyn_cast<linalg::LinalgOp>(operand->getOwner());
      if (!producer || !consumer || !producer->hasOneUse())
        return false;
      // A per-token activation quantizer stays its own loop: the products
      // it feeds may read its input instead (LinalgToBLAS).
      if (consumer->hasAttr(qopt::kPerTokenQuantAttr) ||
          producer->hasAttr(qopt::kPerTokenQuantAttr))
        return false;
      // A copy (transpose, broadcast) folds into any consumer: it becomes
      // the consumer's indexing map, e.g. a transposed weight read in place
      // by the matrix product.
      if (isDataMovement(producer))
        return true;
      // Otherwise, read once per consumer iteration and each element by one
      // iteration only: no element of the producer is computed twice.
      return consumer.getMatchingIndexingMap(operand).isPermutation();
    };
    linalg::populateElementwiseOpsFusionPatterns(patterns, control);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
  }
};
} // namespace
