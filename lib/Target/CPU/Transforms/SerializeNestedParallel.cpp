//===- SerializeNestedParallel.cpp - One parallel region per loop nest ----===//

#include "qopt/Target/CPU/Transforms/Passes.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSERIALIZENESTEDPARALLELPASS
#include "qopt/Target/CPU/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// Rewrites `op` (without reductions) into a 1-D scf.parallel over its
/// first dimension when `keepFirst`, around scf.for loops over the others
/// (all of them when not). A nested one becomes plain loops; a
/// multi-dimensional outer one keeps one parallel dimension because OpenMP
/// would otherwise collapse them into one index and recompute every
/// coordinate by division in the innermost loop, which LLVM then cannot
/// vectorize.
static LogicalResult toLoops(scf::ParallelOp op, bool keepFirst) {
  if (op.getNumReductions())
    return op.emitError("internal: scf.parallel with reductions");
  OpBuilder b(op);
  Location loc = op.getLoc();
  SmallVector<Value> ivs;
  unsigned first = 0;
  if (keepFirst) {
    auto outer = scf::ParallelOp::create(
        b, loc, op.getLowerBound().take_front(),
        op.getUpperBound().take_front(), op.getStep().take_front());
    ivs.push_back(outer.getInductionVars()[0]);
    b.setInsertionPoint(outer.getBody()->getTerminator());
    first = 1;
  }
  for (unsigned d = first; d < op.getNumLoops(); ++d) {
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
  void runOnOperation() override {
    SmallVector<scf::ParallelOp> nested, outer;
    getOperation().walk([&](scf::ParallelOp op) {
      if (op->getParentOfType<scf::ParallelOp>())
        nested.push_back(op);
    });
    // Innermost first (post-order walk), so clones never copy a loop that
    // is still to be rewritten.
    for (scf::ParallelOp op : nested)
      if (failed(toLoops(op, /*keepFirst=*/false)))
        return signalPassFailure();
    getOperation().walk([&](scf::ParallelOp op) {
      if (op.getNumLoops() > 1)
        outer.push_back(op);
    });
    for (scf::ParallelOp op : outer)
      if (failed(toLoops(op, /*keepFirst=*/true)))
        return signalPassFailure();
  }
};
} // namespace
