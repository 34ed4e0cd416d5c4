//===- FuseElementwise.cpp - Elementwise fusion without recomputation -----===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/IR/BuiltinOps.h"
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

    RewritePatternSet patterns(&getContext());
    linalg::ControlFusionFn control = [](OpOperand *operand) {
      Operation *producer = operand->get().getDefiningOp();
      auto consumer = dyn_cast<linalg::LinalgOp>(operand->getOwner());
      if (!producer || !consumer || !producer->hasOneUse())
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
