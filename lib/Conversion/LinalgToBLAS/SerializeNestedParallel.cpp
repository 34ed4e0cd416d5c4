//===- SerializeNestedParallel.cpp - One parallel region per loop nest ----===//

#include "qopt/Conversion/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSERIALIZENESTEDPARALLELPASS
#include "qopt/Conversion/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// scf.parallel (without reductions) → perfectly nested scf.for loops.
static LogicalResult serialize(scf::ParallelOp op) {
  if (op.getNumReductions())
    return op.emitError("internal: nested scf.parallel with reductions");
  OpBuilder b(op);
  Location loc = op.getLoc();
  SmallVector<Value> ivs;
  for (auto [lb, ub, step] :
       llvm::zip(op.getLowerBound(), op.getUpperBound(), op.getStep())) {
    auto loop = scf::ForOp::create(b, loc, lb, ub, step);
    ivs.push_back(loop.getInductionVar());
    b.setInsertionPoint(loop.getBody()->getTerminator());
  }
  IRMapping map;
  map.map(op.getInductionVars(), ivs);
  for (Operation &inner : op.getBody()->without_terminator())
    b.clone(inner, map);
  op.erase();
  return success();
}

/// A multi-dimensional scf.parallel → a 1-D scf.parallel over its first
/// dimension around scf.for loops over the others: OpenMP would otherwise
/// collapse all of them into one index and recompute every coordinate by
/// division in the innermost loop, which LLVM then cannot vectorize.
static LogicalResult keepFirstDimParallel(scf::ParallelOp op) {
  if (op.getNumLoops() < 2 || op.getNumReductions())
    return success();
  OpBuilder b(op);
  Location loc = op.getLoc();
  auto outer = scf::ParallelOp::create(
      b, loc, op.getLowerBound().take_front(), op.getUpperBound().take_front(),
      op.getStep().take_front());
  b.setInsertionPoint(outer.getBody()->getTerminator());
  SmallVector<Value> ivs = {outer.getInductionVars()[0]};
  for (auto [lb, ub, step] :
       llvm::zip(op.getLowerBound().drop_front(), op.getUpperBound().drop_front(),
                 op.getStep().drop_front())) {
    auto loop = scf::ForOp::create(b, loc, lb, ub, step);
    ivs.push_back(loop.getInductionVar());
    b.setInsertionPoint(loop.getBody()->getTerminator());
  }
  IRMapping map;
  map.map(op.getInductionVars(), ivs);
  for (Operation &inner : op.getBody()->without_terminator())
    b.clone(inner, map);
  op.erase();
  return success();
}

namespace {
struct QOptSerializeNestedParallelPass
    : qopt::impl::QOptSerializeNestedParallelPassBase<
          QOptSerializeNestedParallelPass> {
  void runOnOperation() override {
    SmallVector<scf::ParallelOp> nested;
    getOperation().walk([&](scf::ParallelOp op) {
      if (op->getParentOfType<scf::ParallelOp>())
        nested.push_back(op);
    });
    // Innermost first (post-order walk), so clones never copy a loop that
    // is still to be rewritten.
    for (scf::ParallelOp op : nested)
      if (failed(serialize(op)))
        return signalPassFailure();
    SmallVector<scf::ParallelOp> outer;
    getOperation().walk([&](scf::ParallelOp op) { outer.push_back(op); });
    for (scf::ParallelOp op : outer)
      if (failed(keepFirstDimParallel(op)))
        return signalPassFailure();
  }
};
} // namespace
