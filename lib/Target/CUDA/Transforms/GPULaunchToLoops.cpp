//===- GPULaunchToLoops.cpp - Run kernels on the CPU (testing) ------------===//

#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/IR/IRMapping.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTGPULAUNCHTOLOOPSPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

static LogicalResult toLoops(gpu::LaunchOp launch) {
  if (!launch.getBody().hasOneBlock())
    return launch.emitError("qopt-gpu-launch-to-loops: a kernel body with "
                            "several blocks");
  if (launch.getAsyncToken() || !launch.getAsyncDependencies().empty() ||
      launch.hasClusterSize() || !launch.getWorkgroupAttributions().empty() ||
      !launch.getPrivateAttributions().empty())
    return launch.emitError("qopt-gpu-launch-to-loops: only synchronous "
                            "launches without clusters or attributions run "
                            "on the CPU");
  WalkResult communicates = launch.getBody().walk([](Operation *op) {
    if (isa<gpu::BarrierOp, gpu::ShuffleOp, gpu::SubgroupReduceOp,
            gpu::AllReduceOp>(op))
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  if (communicates.wasInterrupted())
    return launch.emitError("qopt-gpu-launch-to-loops: a kernel whose "
                            "threads communicate cannot run as loops");
  OpBuilder b(launch);
  Location loc = launch.getLoc();
  Value zero = arith::ConstantIndexOp::create(b, loc, 0);
  Value one = arith::ConstantIndexOp::create(b, loc, 1);
  gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
  gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
  IRMapping map;
  gpu::KernelDim3 gridArgs = launch.getGridSize(),
                  blockArgs = launch.getBlockSize();
  map.map(gridArgs.x, grid.x);
  map.map(gridArgs.y, grid.y);
  map.map(gridArgs.z, grid.z);
  map.map(blockArgs.x, block.x);
  map.map(blockArgs.y, block.y);
  map.map(blockArgs.z, block.z);
  // Blocks outermost, then threads; z, y, x from the outside in.
  gpu::KernelDim3 blockIds = launch.getBlockIds(),
                  threadIds = launch.getThreadIds();
  std::pair<Value, Value> dims[] = {
      {grid.z, blockIds.z},   {grid.y, blockIds.y},   {grid.x, blockIds.x},
      {block.z, threadIds.z}, {block.y, threadIds.y}, {block.x, threadIds.x}};
  for (auto [size, arg] : dims) {
    auto loop = scf::ForOp::create(b, loc, zero, size, one);
    map.map(arg, loop.getInductionVar());
    b.setInsertionPoint(loop.getBody()->getTerminator());
  }
  for (Operation &op : launch.getBody().front().without_terminator())
    b.clone(op, map);
  launch.erase();
  return success();
}

namespace {
struct QOptGPULaunchToLoopsPass
    : qopt::impl::QOptGPULaunchToLoopsPassBase<QOptGPULaunchToLoopsPass> {
  void runOnOperation() override {
    SmallVector<gpu::LaunchOp> launches;
    getOperation().walk([&](gpu::LaunchOp op) { launches.push_back(op); });
    for (gpu::LaunchOp launch : launches)
      if (failed(toLoops(launch)))
        return signalPassFailure();
    // gpu.thread_id and friends used inside (rather than the region's
    // arguments) have no CPU meaning.
    WalkResult left = getOperation().walk([](Operation *op) {
      if (isa<gpu::ThreadIdOp, gpu::BlockIdOp, gpu::BlockDimOp, gpu::GridDimOp>(
              op))
        return op->emitError("qopt-gpu-launch-to-loops: ")
                   << op->getName() << " outside a launch's arguments",
               WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }
};
} // namespace
