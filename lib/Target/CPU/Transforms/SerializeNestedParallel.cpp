//===- SerializeNestedParallel.cpp - One parallel region per loop nest ----===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSERIALIZENESTEDPARALLELPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// Rewrites `op` (without reductions) into an scf.parallel over its first
/// `keep` dimensions around scf.for loops over the others (all of them when
/// `keep` is 0). A nested one becomes plain loops; an outer one keeps every
/// dimension but the last parallel, so that a batch of 1 still leaves the
/// rows to split, and each thread runs a plain inner loop over the last
/// (contiguous) dimension that LLVM vectorizes.
static LogicalResult toLoops(scf::ParallelOp op, unsigned keep) {
  if (op.getNumReductions())
    return op.emitError("internal: scf.parallel with reductions");
  OpBuilder b(op);
  Location loc = op.getLoc();
  SmallVector<Value> ivs;
  if (keep) {
    auto outer = scf::ParallelOp::create(
        b, loc, op.getLowerBound().take_front(keep),
        op.getUpperBound().take_front(keep), op.getStep().take_front(keep));
    llvm::append_range(ivs, outer.getInductionVars());
    b.setInsertionPoint(outer.getBody()->getTerminator());
  }
  for (unsigned d = keep; d < op.getNumLoops(); ++d) {
    auto loop = scf::ForOp::create(b, loc, op.getLowerBound()[d],
                                   op.getUpperBound()[d], op.getStep()[d]);
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
  using QOptSerializeNestedParallelPassBase::
      QOptSerializeNestedParallelPassBase;
  void runOnOperation() override {
    SmallVector<scf::ParallelOp> nested, outer;
    getOperation().walk([&](scf::ParallelOp op) {
      if (op->getParentOfType<scf::ParallelOp>())
        nested.push_back(op);
    });
    // Innermost first (post-order walk), so clones never copy a loop that
    // is still to be rewritten.
    for (scf::ParallelOp op : nested)
      if (failed(toLoops(op, /*keep=*/0)))
        return signalPassFailure();
    if (!lastDimSequential)
      return;
    getOperation().walk([&](scf::ParallelOp op) {
      if (op.getNumLoops() > 1)
        outer.push_back(op);
    });
    for (scf::ParallelOp op : outer)
      if (failed(toLoops(op, op.getNumLoops() - 1)))
        return signalPassFailure();
  }
};
} // namespace
