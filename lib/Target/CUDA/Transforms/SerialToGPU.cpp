//===- SerialToGPU.cpp - Host code on device memory as one-thread loops ---===//

#include "LoopUtils.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTSERIALTOGPUPASS
#define GEN_PASS_DEF_QOPTSMALLLOOPSTOHOSTPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// Whether `op` is, by its kind, code a kernel can run: memory accesses,
/// static stack buffers, side-effect-free scalar arithmetic, sizes and
/// views, and loops and conditionals of those.
static bool kernelKind(Operation *op, bool nested = false) {
  if (isa<memref::LoadOp, memref::StoreOp>(op))
    return true;
  // (A stack buffer in a loop would be one per iteration; a kernel's
  // stack is small.)
  if (auto alloca = dyn_cast<memref::AllocaOp>(op))
    return !nested && alloca.getType().hasStaticShape() &&
           alloca.getType().getNumElements() <= 64;
  if (isa<scf::ForOp, scf::IfOp>(op))
    return op->walk([&](Operation *inner) {
               if (inner == op || isa<scf::YieldOp>(inner) ||
                   kernelKind(inner, /*nested=*/true))
                 return WalkResult::advance();
               return WalkResult::interrupt();
             }).wasInterrupted() == false;
  if (op->getNumRegions() || !isMemoryEffectFree(op))
    return false;
  if (isa<memref::DimOp, memref::SubViewOp, memref::CollapseShapeOp,
          memref::ExpandShapeOp, memref::CastOp>(op))
    return true;
  return isa<arith::ArithDialect, math::MathDialect, index::IndexDialect>(
      op->getDialect());
}

/// The outermost parallel loop around `op`, if any.
static scf::ParallelOp outermostParallel(Operation *op) {
  scf::ParallelOp outer;
  for (auto loop = op->getParentOfType<scf::ParallelOp>(); loop;
       loop = loop->getParentOfType<scf::ParallelOp>())
    outer = loop;
  return outer;
}

/// Whether only host code uses `buffer` (an allocation, or a view of one):
/// loads and stores outside parallel loops (but `hostLoops`, which will run
/// on the host), a reshape's shape, its deallocation, calls of host
/// functions (the deallocation helper's ownership flags), views so used.
static bool hostUsesOnly(Value buffer,
                         const llvm::SmallPtrSetImpl<Operation *> &hostLoops) {
  return llvm::all_of(buffer.getUses(), [&](OpOperand &use) {
    Operation *user = use.getOwner();
    if (scf::ParallelOp loop = outermostParallel(user);
        loop && !hostLoops.contains(loop))
      return false;
    if (auto store = dyn_cast<memref::StoreOp>(user))
      return store.getValueToStore() != buffer;
    if (auto reshape = dyn_cast<memref::ReshapeOp>(user))
      return reshape.getShape() == buffer;
    if (auto call = dyn_cast<func::CallOp>(user))
      return !call.getCallee().starts_with("qopt_cuda_");
    if (isa<memref::SubViewOp, memref::CastOp, memref::CollapseShapeOp,
            memref::ExpandShapeOp>(user))
      return hostUsesOnly(user->getResult(0), hostLoops);
    return isa<memref::LoadOp, memref::DeallocOp, memref::DimOp>(user);
  });
}

namespace {
/// The runs of one block: the operations that may move into kernels and
/// the run each belongs to.
class Runs {
public:
  Runs(Block &block, func::FuncOp func)
      : block(block), entry(&func.getBody().front()) {
    for (Operation &op : block)
      if (kernelKind(&op))
        members.insert(&op);
    // Members only leave, so this ends.
    while (form(), prune()) {
    }
  }

  /// Wraps each run that touches device memory in a one-iteration
  /// scf.parallel.
  void wrap();

private:
  /// Numbers the runs: maximal sequences of members, allocations whose
  /// sizes no member of the sequence computes, and deallocations.
  void form() {
    run.clear();
    unsigned id = 0;
    bool open = false;
    for (Operation &op : block) {
      if (members.contains(&op)) {
        if (!open)
          ++id;
        open = true;
        run[&op] = id;
        continue;
      }
      open = open && movable(&op, id);
    }
  }

  /// Whether `op`, inside run `id`, moves out of its way: an allocation
  /// before it, a deallocation after it.
  bool movable(Operation *op, unsigned id) const {
    if (isa<memref::DeallocOp>(op))
      return true;
    if (!isa<memref::AllocOp>(op))
      return false;
    return llvm::none_of(op->getOperands(), [&](Value v) {
      Operation *def = v.getDefiningOp();
      return def && run.lookup(def) == id;
    });
  }

  /// Whether every use of `buffer` but its deallocation is in run `id`.
  bool onlyIn(Value buffer, unsigned id) const {
    return llvm::all_of(buffer.getUsers(), [&](Operation *user) {
      Operation *owner = block.findAncestorOpInBlock(*user);
      return isa<memref::DeallocOp>(user) || (owner && run.lookup(owner) == id);
    });
  }

  /// Whether run `id` may access `memref` (`store`: write it) in a kernel:
  /// device memory, or a buffer only the run uses (the host's stack or
  /// not). `touchesDevice` is set for device memory that others use.
  bool accessible(Value memref, bool store, unsigned id,
                  bool &touchesDevice) const {
    Value root = qopt::rootOf(memref);
    // (The runtime passes device memory to a public function.)
    if (auto arg = dyn_cast<BlockArgument>(root)) {
      if (arg.getOwner() != entry)
        return false;
      touchesDevice = true;
      return true;
    }
    Operation *def = root.getDefiningOp();
    // (Kernels read their own copies of constants.)
    if (isa<memref::GetGlobalOp>(def))
      return !store;
    if (isa<memref::AllocaOp>(def)) {
      Operation *owner = block.findAncestorOpInBlock(*def);
      return owner && run.lookup(owner) == id && onlyIn(root, id);
    }
    if (!isa<memref::AllocOp>(def))
      return false;
    // A buffer only host code uses (qopt-gpu-host-sync moves the small
    // ones to the stack): the run's own; or loaded and stored only by runs
    // (a zero several reductions start from, a norm's partial sums), which
    // pass it on in device memory; or the host's.
    if (hostBuffer(root)) {
      if (onlyIn(root, id))
        return true;
      if (!onlyInRuns(root))
        return false;
    }
    touchesDevice = true;
    return true;
  }

  /// Whether only loads and stores of runs of this block, and its
  /// deallocation, use `buffer`.
  bool onlyInRuns(Value buffer) const {
    return llvm::all_of(buffer.getUsers(), [&](Operation *user) {
      if (isa<memref::DeallocOp>(user))
        return true;
      Operation *owner = block.findAncestorOpInBlock(*user);
      return isa<memref::LoadOp, memref::StoreOp>(user) && owner &&
             run.lookup(owner) != 0;
    });
  }

  /// Whether only host code uses allocation `buffer`.
  bool hostBuffer(Value buffer) const {
    auto [it, inserted] = hostBuffers.try_emplace(buffer, false);
    if (inserted)
      it->second = hostUsesOnly(buffer, llvm::SmallPtrSet<Operation *, 1>());
    return it->second;
  }

  /// Whether member `op` may stay in its run; `touchesDevice` is set when
  /// it accesses device memory.
  bool fits(Operation *op, bool &touchesDevice) const {
    unsigned id = run.lookup(op);
    for (Value result : op->getResults())
      for (Operation *user : result.getUsers()) {
        Operation *owner = block.findAncestorOpInBlock(*user);
        if (!owner || run.lookup(owner) != id)
          return false;
      }
    return !op->walk([&](Operation *inner) {
                Value memref;
                bool store = isa<memref::StoreOp>(inner);
                if (auto load = dyn_cast<memref::LoadOp>(inner))
                  memref = load.getMemRef();
                else if (store)
                  memref = cast<memref::StoreOp>(inner).getMemRef();
                if (memref && !accessible(memref, store, id, touchesDevice))
                  return WalkResult::interrupt();
                return WalkResult::advance();
              }).wasInterrupted();
  }

  /// Removes the members that do not fit their runs; whether any did not.
  bool prune() {
    bool changed = false;
    for (Operation &op : block) {
      bool touches = false;
      if (members.contains(&op) && !fits(&op, touches)) {
        members.erase(&op);
        changed = true;
      }
    }
    return changed;
  }

  Block &block;
  Block *entry;
  llvm::SmallPtrSet<Operation *, 32> members;
  DenseMap<Operation *, unsigned> run;
  mutable DenseMap<Value, bool> hostBuffers;
};
} // namespace

void Runs::wrap() {
  // The runs' operations, in order, with the allocations and deallocations
  // between their members.
  struct Span {
    SmallVector<Operation *> body, allocs, frees;
    bool device = false;
  };
  SmallVector<Span> spans;
  unsigned current = 0;
  SmallVector<Operation *> pending;
  for (Operation &op : block) {
    unsigned id = run.lookup(&op);
    if (id) {
      if (id != current) {
        spans.emplace_back();
        current = id;
      } else {
        for (Operation *between : pending)
          (isa<memref::AllocOp>(between) ? spans.back().allocs
                                         : spans.back().frees)
              .push_back(between);
      }
      pending.clear();
      spans.back().body.push_back(&op);
      fits(&op, spans.back().device);
      continue;
    }
    if (current && movable(&op, current))
      pending.push_back(&op);
    else
      current = 0, pending.clear();
  }
  for (Span &span : spans) {
    if (!span.device)
      continue;
    Operation *first = span.body.front(), *last = span.body.back();
    for (Operation *alloc : span.allocs)
      alloc->moveBefore(first);
    Operation *after = last;
    for (Operation *free : span.frees) {
      free->moveAfter(after);
      after = free;
    }
    OpBuilder b(first);
    Location loc = first->getLoc();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                        ValueRange{one}, ValueRange{one});
    Operation *terminator = loop.getBody()->getTerminator();
    for (Operation *op : span.body)
      op->moveBefore(terminator);
  }
}

/// Processes `block` and the host blocks nested in it (not the bodies of
/// parallel loops, which are kernels already).
static void processBlock(Block &block, func::FuncOp func) {
  for (Operation &op : block)
    if (!isa<scf::ParallelOp>(op) && !kernelKind(&op))
      for (Region &region : op.getRegions())
        for (Block &inner : region)
          processBlock(inner, func);
  Runs(block, func).wrap();
}

namespace {
struct QOptSerialToGPUPass
    : qopt::impl::QOptSerialToGPUPassBase<QOptSerialToGPUPass> {
  void runOnOperation() override {
    func::FuncOp func = getOperation();
    // A private function's memory is whatever its callers pass (the
    // deallocation helper's arrays are on the host's stack).
    if (func.isExternal() || !func.isPublic())
      return;
    processBlock(func.getBody().front(), func);
    for (Block &block : llvm::drop_begin(func.getBody()))
      processBlock(block, func);
  }
};
} // namespace

/// Replaces `loop` by sequential loops over the same iterations.
static void toSequential(scf::ParallelOp loop) {
  OpBuilder b(loop);
  IRMapping map;
  for (auto [iv, lb, ub, step] :
       llvm::zip(loop.getInductionVars(), loop.getLowerBound(),
                 loop.getUpperBound(), loop.getStep())) {
    auto inner = scf::ForOp::create(b, loop.getLoc(), lb, ub, step);
    b.setInsertionPointToStart(inner.getBody());
    map.map(iv, inner.getInductionVar());
  }
  for (Operation &op : loop.getBody()->without_terminator())
    b.clone(op, map);
  loop.erase();
}

namespace {
struct QOptSmallLoopsToHostPass
    : qopt::impl::QOptSmallLoopsToHostPassBase<QOptSmallLoopsToHostPass> {
  void runOnOperation() override {
    // Outermost loops of at most 64 iterations, sequential inside.
    llvm::SmallPtrSet<Operation *, 8> host;
    getOperation().walk([&](scf::ParallelOp loop) {
      if (outermostParallel(loop) || loop.getNumReductions())
        return;
      std::optional<int64_t> total = qopt::staticTotal(loop);
      if (!total || *total > 64)
        return;
      // Only loads, stores and side-effect-free code (a stack buffer in a
      // sequential loop would be one per iteration).
      bool plain =
          !loop.getBody()
               ->walk([](Operation *op) {
                 return isa<memref::LoadOp, memref::StoreOp, scf::ForOp,
                            scf::IfOp, scf::YieldOp, scf::ReduceOp>(op) ||
                                (!isa<memref::AllocaOp>(op) &&
                                 isMemoryEffectFree(op))
                            ? WalkResult::advance()
                            : WalkResult::interrupt();
               })
               .wasInterrupted();
      if (plain)
        host.insert(loop);
    });
    // Those storing only into buffers the host alone uses (counting the
    // loops that stay candidates as host code).
    for (bool changed = true; changed;) {
      changed = false;
      for (Operation *loop : llvm::to_vector(host)) {
        bool hostStores = !loop->walk([&](memref::StoreOp store) {
                                 Value root = qopt::rootOf(store.getMemRef());
                                 return root.getDefiningOp<memref::AllocOp>() &&
                                                hostUsesOnly(root, host)
                                            ? WalkResult::advance()
                                            : WalkResult::interrupt();
                               })
                               .wasInterrupted();
        if (!hostStores) {
          host.erase(loop);
          changed = true;
        }
      }
    }
    for (Operation *loop : host)
      toSequential(cast<scf::ParallelOp>(loop));
  }
};
} // namespace
