//===- GPUHostSync.cpp - Wait for the GPU where the host touches memory ---===//

#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/LoopLikeInterface.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTGPUHOSTSYNCPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

static constexpr StringLiteral kHostSync = "qopt_cuda_host_sync";
/// Whether `op` calls the kernel library, which queues launches as a
/// gpu.launch_func does.
static bool callsLibrary(Operation *op) {
  auto call = dyn_cast<func::CallOp>(op);
  return call && (call.getCallee().starts_with("qopt_cuda_qlinear") ||
                  call.getCallee().starts_with("qopt_cuda_sgemm") ||
                  call.getCallee().starts_with("qopt_cuda_attention") ||
                  call.getCallee().starts_with("qopt_cuda_hadamard") ||
                  call.getCallee().starts_with("qopt_cuda_norm") ||
                  call.getCallee().starts_with("qopt_cuda_quantize_rows") ||
                  call.getCallee().starts_with("qopt_cuda_adamw"));
}

/// Whether `memref` is host memory no kernel uses: a stack buffer, or a
/// constant (kernels read their own copies of globals).
static bool hostOnly(Value memref) {
  Operation *def = memref.getDefiningOp();
  return def && isa<memref::AllocaOp, memref::GetGlobalOp>(def);
}

/// Whether `op` reads or writes memory a kernel may use, on the host.
static bool touchesMemory(Operation *op) {
  if (auto load = dyn_cast<memref::LoadOp>(op))
    return !hostOnly(load.getMemRef());
  if (auto store = dyn_cast<memref::StoreOp>(op))
    return !hostOnly(store.getMemRef());
  if (auto reshape = dyn_cast<memref::ReshapeOp>(op))
    return !hostOnly(reshape.getShape());
  // A function returns its results to a caller that reads them (the
  // runtime: inside the guarded run, so that a kernel's failure still frees
  // the run's buffers).
  if (isa<memref::LoadOp, memref::StoreOp, memref::ReshapeOp, func::ReturnOp>(
          op))
    return true;
  if (auto call = dyn_cast<func::CallOp>(op))
    return call.getCallee() != kHostSync && !callsLibrary(call);
  return false;
}

/// Whether `op` is, or holds, a kernel launch.
static bool launches(Operation *op) {
  auto isLaunch = [](Operation *o) {
    return isa<gpu::LaunchFuncOp>(o) || callsLibrary(o);
  };
  return op
      ->walk([&](Operation *o) {
        return isLaunch(o) ? WalkResult::interrupt() : WalkResult::advance();
      })
      .wasInterrupted();
}

/// Inserts the waits in `block` (and the regions inside it); `dirty`: a
/// launch may be queued at its start.
static void insertWaits(Block &block, bool dirty, func::FuncOp callee) {
  for (Operation &op : llvm::make_early_inc_range(block)) {
    if (touchesMemory(&op) && dirty) {
      OpBuilder b(&op);
      func::CallOp::create(b, op.getLoc(), callee, ValueRange());
      dirty = false;
    }
    // Regions run later or repeatedly: assume work is queued on entry.
    for (Region &region : op.getRegions())
      for (Block &inner : region)
        insertWaits(inner, /*dirty=*/true, callee);
    if (launches(&op))
      dirty = true;
  }
}

/// Small buffers only the host uses (reshape shapes, the deallocation's
/// ownership flags) move to the stack: they never need a wait, and cost no
/// pool allocation.
static void promoteHostBuffers(func::FuncOp func) {
  SmallVector<memref::AllocOp> allocs;
  func.walk([&](memref::AllocOp alloc) {
    MemRefType type = alloc.getType();
    if (!type.hasStaticShape() || type.getNumElements() > 64 ||
        alloc->getParentOfType<gpu::LaunchOp>())
      return;
    for (Operation *user : alloc->getUsers()) {
      bool host = isa<memref::DeallocOp>(user) ||
                  (isa<memref::LoadOp, memref::StoreOp>(user) &&
                   !isa<gpu::GPUModuleOp>(user->getParentOp())) ||
                  (isa<memref::ReshapeOp>(user) &&
                   cast<memref::ReshapeOp>(user).getShape() == alloc);
      // A stored value is data, not the buffer's address.
      if (auto store = dyn_cast<memref::StoreOp>(user))
        host &= store.getValueToStore() != alloc.getResult();
      if (!host)
        return;
    }
    // A stack buffer in a loop would grow the stack on every iteration.
    if (alloc->getParentOfType<LoopLikeOpInterface>())
      return;
    allocs.push_back(alloc);
  });
  for (memref::AllocOp alloc : allocs) {
    for (Operation *user : llvm::make_early_inc_range(alloc->getUsers()))
      if (isa<memref::DeallocOp>(user))
        user->erase();
    OpBuilder b(alloc);
    auto alloca = memref::AllocaOp::create(b, alloc.getLoc(), alloc.getType(),
                                           alloc.getAlignmentAttr());
    alloc.replaceAllUsesWith(alloca.getResult());
    alloc.erase();
  }
}

namespace {
struct QOptGPUHostSyncPass
    : qopt::impl::QOptGPUHostSyncPassBase<QOptGPUHostSyncPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto callee = module.lookupSymbol<func::FuncOp>(kHostSync);
    if (!callee) {
      OpBuilder b = OpBuilder::atBlockEnd(module.getBody());
      callee = func::FuncOp::create(b, module.getLoc(), kHostSync,
                                    b.getFunctionType({}, {}));
      callee.setPrivate();
    }
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        promoteHostBuffers(func);
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        // The runtime calls a public function with an idle stream; other
        // blocks, and private helpers, may start with launches queued.
        for (Block &block : func.getBody())
          insertWaits(block,
                      /*dirty=*/!func.isPublic() || !block.isEntryBlock(),
                      callee);
  }
};
} // namespace
