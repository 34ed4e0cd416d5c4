//===- GroupParallelLoops.cpp - Same-space loops next to each other ------===//

#include "LoopUtils.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTGROUPPARALLELLOOPSPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {

/// The buffers a loop reads and writes (as the buffers they are views of).
struct Footprint {
  llvm::SmallSetVector<Value, 8> reads, writes;
  bool known = true; // false: an operation with other memory effects
};

Footprint footprintOf(scf::ParallelOp loop) {
  Footprint f;
  loop->walk([&](Operation *op) {
    if (auto load = dyn_cast<memref::LoadOp>(op))
      f.reads.insert(qopt::rootOf(load.getMemRef()));
    else if (auto store = dyn_cast<memref::StoreOp>(op))
      f.writes.insert(qopt::rootOf(store.getMemRef()));
    else if (!isa<scf::ParallelOp, scf::ForOp, scf::IfOp, scf::YieldOp,
                  scf::ReduceOp, scf::ReduceReturnOp>(op) &&
             !isMemoryEffectFree(op) &&
             !isa<ViewLikeOpInterface, memref::CastOp, memref::DimOp>(op))
      f.known = false;
  });
  return f;
}

/// Whether `a` and `b` may be the same memory.
bool mayAlias(Value a, Value b) {
  if (a == b)
    return true;
  bool aAlloc = a.getDefiningOp<memref::AllocOp>() != nullptr;
  bool bAlloc = b.getDefiningOp<memref::AllocOp>() != nullptr;
  // (A function's argument: other block arguments, a loop's iter_args or a
  // branch's, may be any buffer, an allocation here included.)
  auto isArg = [](Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && arg.getOwner()->isEntryBlock() &&
           isa<FunctionOpInterface>(arg.getOwner()->getParentOp());
  };
  if (aAlloc && bAlloc)
    return false;
  if ((aAlloc && isArg(b)) || (bAlloc && isArg(a)))
    return false;
  return true;
}

bool overlaps(const llvm::SmallSetVector<Value, 8> &x,
              const llvm::SmallSetVector<Value, 8> &y) {
  for (Value a : x)
    for (Value b : y)
      if (mayAlias(a, b))
        return true;
  return false;
}

/// Whether the loops can run in either order.
bool independent(const Footprint &a, const Footprint &b) {
  return a.known && b.known && !overlaps(a.writes, b.writes) &&
         !overlaps(a.writes, b.reads) && !overlaps(a.reads, b.writes);
}

/// Whether `op` may sit in a run of loops being regrouped.
bool inRun(Operation &op) {
  return isa<scf::ParallelOp, memref::AllocOp, memref::DeallocOp>(op) ||
         (isMemoryEffectFree(&op) && op.getNumRegions() == 0);
}

bool sameBounds(scf::ParallelOp a, scf::ParallelOp b) {
  return a.getLowerBound() == b.getLowerBound() &&
         a.getUpperBound() == b.getUpperBound() && a.getStep() == b.getStep();
}

/// Moves `loop` to just after `target` (earlier in the block) if it is
/// independent of the loops in between and everything it uses is defined
/// before `target` or is an allocation in between that can move too.
bool moveAfter(scf::ParallelOp loop, scf::ParallelOp target,
               DenseMap<Operation *, Footprint> &footprints) {
  auto footprint = [&](Operation *op) -> const Footprint * {
    auto it = footprints.find(op);
    return it == footprints.end() ? nullptr : &it->second;
  };
  const Footprint *mine = footprint(loop);
  if (!mine || !mine->known)
    return false;
  SmallVector<Operation *> allocs; // in between, used by the loop
  llvm::SmallPtrSet<Operation *, 8> between;
  for (Operation *op = target->getNextNode(); op != loop.getOperation();
       op = op->getNextNode()) {
    between.insert(op);
    if (auto other = dyn_cast<scf::ParallelOp>(op)) {
      const Footprint *theirs = footprint(other);
      if (!theirs || !independent(*mine, *theirs))
        return false;
    }
  }
  // Values the loop uses, defined outside it.
  bool ok = true;
  loop->walk([&](Operation *op) {
    for (Value v : op->getOperands()) {
      Operation *def = v.getDefiningOp();
      if (!def || !between.contains(def))
        continue;
      auto alloc = dyn_cast<memref::AllocOp>(def);
      if (!alloc) {
        ok = false;
        continue;
      }
      for (Value size : alloc->getOperands())
        if (Operation *d = size.getDefiningOp(); d && between.contains(d))
          ok = false;
      if (!llvm::is_contained(allocs, def))
        allocs.push_back(def);
    }
  });
  if (!ok)
    return false;
  for (Operation *alloc : allocs)
    alloc->moveBefore(target);
  loop->moveAfter(target);
  return true;
}

struct QOptGroupParallelLoopsPass
    : qopt::impl::QOptGroupParallelLoopsPassBase<QOptGroupParallelLoopsPass> {
  void runOnOperation() override {
    getOperation()->walk([&](Block *block) {
      DenseMap<Operation *, Footprint> footprints;
      // Loops of the current run, in block order (after moves).
      SmallVector<scf::ParallelOp> run;
      for (Operation &op : llvm::make_early_inc_range(*block)) {
        if (!inRun(op)) {
          run.clear();
          continue;
        }
        auto loop = dyn_cast<scf::ParallelOp>(op);
        if (!loop)
          continue;
        footprints[loop] = footprintOf(loop);
        // The nearest earlier loop of the run with the same bounds.
        for (auto it = run.rbegin(); it != run.rend(); ++it) {
          if (!sameBounds(*it, loop))
            continue;
          if (moveAfter(loop, *it, footprints)) {
            // Keep `run` in block order: the loop now follows *it.
            run.insert(it.base(), loop);
            loop = nullptr;
          }
          break;
        }
        if (loop)
          run.push_back(loop);
      }
    });
  }
};
} // namespace
