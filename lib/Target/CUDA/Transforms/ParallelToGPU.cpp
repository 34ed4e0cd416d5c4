//===- ParallelToGPU.cpp - One kernel launch per parallel loop nest -------===//

#include "LoopUtils.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <functional>

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTPARALLELTOGPUPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

/// The iterations of `op`'s dimensions, as `type` (index, or i32 when the
/// whole space is known to fit), and their product.
static std::pair<SmallVector<Value>, Value>
tripCounts(OpBuilder &b, Location loc, scf::ParallelOp op) {
  SmallVector<Value> counts;
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value total = arith::ConstantIndexOp::create(b, loc, 1);
  for (auto [lb, ub, step] :
       llvm::zip(op.getLowerBound(), op.getUpperBound(), op.getStep())) {
    Value span = arith::MaxSIOp::create(
        b, loc, arith::SubIOp::create(b, loc, ub, lb), zero);
    Value n = arith::CeilDivUIOp::create(b, loc, span, step);
    counts.push_back(n);
    total = arith::MulIOp::create(b, loc, total, n);
  }
  return {counts, total};
}

static LogicalResult toLaunch(scf::ParallelOp op, unsigned blockSize) {
  if (op.getNumReductions())
    return op.emitError("qopt-parallel-to-gpu: an scf.parallel with "
                        "reductions (expected none after "
                        "convert-linalg-to-parallel-loops)");
  // A failed check in a kernel (__assertfail) would leave the GPU context
  // unusable; the conversions hoist their checks out of loop nests.
  WalkResult check = op.getBody()->walk([](cf::AssertOp assert) {
    assert.emitError("qopt-parallel-to-gpu: a run-time check inside a loop "
                     "nest cannot run in a GPU kernel");
    return WalkResult::interrupt();
  });
  if (check.wasInterrupted())
    return failure();
  WalkResult nested = op.getBody()->walk(
      [](scf::ParallelOp) { return WalkResult::interrupt(); });
  if (nested.wasInterrupted())
    return op.emitError("qopt-parallel-to-gpu: nested scf.parallel (run "
                        "qopt-serialize-nested-parallel first)");
  OpBuilder b(op);
  Location loc = op.getLoc();
  auto [counts, total] = tripCounts(b, loc, op);
  // 32-bit index arithmetic where the space is known to fit: a 64-bit
  // division is a long instruction sequence on a GPU.
  std::optional<int64_t> known = qopt::staticTotal(op);
  bool narrow = known && *known < (int64_t(1) << 31);
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value nonEmpty =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt, total, zero);
  auto ifOp = scf::IfOp::create(b, loc, nonEmpty, /*withElseRegion=*/false);
  b.setInsertionPointToStart(ifOp.thenBlock());
  // (A few iterations known at compile time, one thread for
  // qopt-serial-to-gpu's loops: one warp, not a whole block.)
  int64_t width = blockSize;
  if (known && *known < width)
    width = std::max<int64_t>(32, llvm::alignTo(*known, 32));
  Value threads = arith::ConstantIndexOp::create(b, loc, width);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  Value grid = arith::CeilDivUIOp::create(b, loc, total, threads);
  auto launch =
      gpu::LaunchOp::create(b, loc, grid, one, one, threads, one, one);
  Block &body = launch.getBody().front();
  b.setInsertionPointToEnd(&body);
  auto terminator = gpu::TerminatorOp::create(b, loc);
  b.setInsertionPoint(terminator);
  Value linear = arith::AddIOp::create(
      b, loc, arith::MulIOp::create(b, loc, launch.getBlockIds().x, threads),
      launch.getThreadIds().x);
  Value inRange =
      arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, linear, total);
  auto guard = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
  b.setInsertionPointToStart(guard.thenBlock());
  // Delinearize, the last dimension fastest.
  Type i32 = b.getI32Type();
  auto cast = [&](Value v) -> Value {
    return narrow ? arith::IndexCastUIOp::create(b, loc, i32, v).getResult()
                  : v;
  };
  auto widen = [&](Value v) -> Value {
    return narrow ? arith::IndexCastUIOp::create(b, loc, b.getIndexType(), v)
                        .getResult()
                  : v;
  };
  unsigned rank = op.getNumLoops();
  SmallVector<Value> ivs(rank);
  Value rest = cast(linear);
  for (unsigned d = rank; d-- > 0;) {
    Value local = rest;
    if (d > 0) {
      Value n = cast(counts[d]);
      local = arith::RemUIOp::create(b, loc, rest, n);
      rest = arith::DivUIOp::create(b, loc, rest, n);
    }
    Value scaled = arith::MulIOp::create(b, loc, widen(local), op.getStep()[d]);
    ivs[d] = arith::AddIOp::create(b, loc, op.getLowerBound()[d], scaled);
  }
  IRMapping map;
  map.map(op.getInductionVars(), ivs);
  for (Operation &inner : op.getBody()->without_terminator())
    b.clone(inner, map);
  op.erase();
  return success();
}

/// Whether `memref` is an argument of a public function that nothing in it
/// writes (the runtime's inputs, such as the random key; it passes distinct
/// buffers).
static bool readOnlyArgument(Value memref) {
  auto arg = dyn_cast<BlockArgument>(memref);
  auto func =
      arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp()) : nullptr;
  return func && func.isPublic() && arg.getOwner()->isEntryBlock() &&
         !qopt::mayWrite(arg);
}

namespace {
struct QOptParallelToGPUPass
    : qopt::impl::QOptParallelToGPUPassBase<QOptParallelToGPUPass> {
  using QOptParallelToGPUPassBase::QOptParallelToGPUPassBase;
  void runOnOperation() override {
    if (blockSize == 0 || blockSize % 32 || blockSize > 1024) {
      getOperation().emitError()
          << "qopt-parallel-to-gpu: block-size=" << unsigned(blockSize)
          << " is not a multiple of 32 between 32 and 1024";
      return signalPassFailure();
    }
    SmallVector<scf::ParallelOp> outer;
    getOperation().walk([&](scf::ParallelOp op) {
      if (!op->getParentOfType<scf::ParallelOp>() &&
          !op->getParentOfType<gpu::LaunchOp>())
        outer.push_back(op);
    });
    for (scf::ParallelOp op : outer)
      if (failed(toLaunch(op, blockSize)))
        return signalPassFailure();
    // Constant tensors (memref.global) are read by the kernel itself, so
    // that outlining copies the globals into the kernels' module (device
    // memory); their host addresses mean nothing to a GPU.
    // Views of them (subview, reshape, cast) are rebuilt inside too.
    getOperation().walk([](gpu::LaunchOp launch) {
      OpBuilder b(launch.getContext());
      b.setInsertionPointToStart(&launch.getBody().front());
      IRMapping sunk;
      // The global or view `v` (outside the launch) rebuilt inside, or null
      // when `v` is not a view of a global.
      std::function<Value(Value)> sink = [&](Value v) -> Value {
        if (Value done = sunk.lookupOrNull(v))
          return done;
        Operation *def = v.getDefiningOp();
        if (!def || launch->isProperAncestor(def))
          return nullptr;
        if (!isa<memref::GetGlobalOp>(def)) {
          auto view = dyn_cast<ViewLikeOpInterface>(def);
          if (!view || !sink(view.getViewSource()))
            return nullptr;
        }
        b.clone(*def, sunk); // maps def's results
        return sunk.lookup(v);
      };
      // Scalars the host would read from an argument nothing writes (the
      // random key's words, which dropout's streams take) are read by the
      // kernel itself, with what the host computed from them: the host
      // then reads no device memory, and a CUDA graph replays the launch
      // with the next run's key.
      DenseSet<Value> kept;
      std::function<Value(Value)> sinkRead = [&](Value v) -> Value {
        if (Value done = sunk.lookupOrNull(v))
          return done;
        Operation *def = v.getDefiningOp();
        if (kept.contains(v) || !def || launch->isProperAncestor(def) ||
            def->getNumResults() != 1 || def->getNumRegions())
          return nullptr;
        bool sinks = false;
        if (auto load = dyn_cast<memref::LoadOp>(def)) {
          sinks = readOnlyArgument(load.getMemRef());
        } else if (isMemoryEffectFree(def)) {
          for (Value operand : def->getOperands())
            sinks |= sinkRead(operand) != nullptr;
        }
        if (!sinks) {
          kept.insert(v);
          return nullptr;
        }
        b.clone(*def, sunk);
        return sunk.lookup(v);
      };
      launch.getBody().walk([&](Operation *op) {
        for (OpOperand &use : op->getOpOperands()) {
          Value inside = isa<MemRefType>(use.get().getType())
                             ? sink(use.get())
                             : sinkRead(use.get());
          if (inside)
            use.set(inside);
        }
      });
    });
  }
};
} // namespace
