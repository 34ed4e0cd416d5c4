//===- GPUHostSync.cpp - Wait for the GPU where the host touches memory ---===//

#include "LoopUtils.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Interfaces/LoopLikeInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <functional>

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

/// bufferization-lower-deallocations' helper: it reads and writes only the
/// arrays it is given (base addresses as integers, ownership flags), never
/// the buffers whose addresses they hold.
static constexpr StringLiteral kDeallocHelper = "dealloc_helper";
static bool callsDeallocHelper(Operation *op) {
  auto call = dyn_cast<func::CallOp>(op);
  return call && call.getCallee() == kDeallocHelper;
}

/// Whether the host may access `memref` without waiting: host memory no
/// kernel uses — a stack buffer, a constant (kernels read their own copies
/// of globals) — or a view of it, or one of `hostArgs` (a helper's
/// arguments that every caller passes such memory; a public function's
/// arguments that nothing in it writes, which kernels only read).
static bool hostOnly(Value memref, const DenseSet<Value> &hostArgs) {
  if (hostArgs.contains(memref))
    return true;
  Operation *def = memref.getDefiningOp();
  if (auto view = dyn_cast_or_null<ViewLikeOpInterface>(def);
      view && !isa<memref::ReshapeOp>(def))
    return hostOnly(view.getViewSource(), hostArgs);
  return def && isa<memref::AllocaOp, memref::GetGlobalOp>(def);
}

/// Whether every memref operand of `call` is host-only.
static bool passesHostMemory(func::CallOp call,
                             const DenseSet<Value> &hostArgs) {
  return llvm::all_of(call.getOperands(), [&](Value v) {
    return !isa<MemRefType>(v.getType()) || hostOnly(v, hostArgs);
  });
}

/// Whether `op` reads or writes memory a kernel may use, on the host.
static bool touchesMemory(Operation *op, const DenseSet<Value> &hostArgs) {
  if (auto load = dyn_cast<memref::LoadOp>(op))
    return !hostOnly(load.getMemRef(), hostArgs);
  if (auto store = dyn_cast<memref::StoreOp>(op))
    return !hostOnly(store.getMemRef(), hostArgs);
  if (auto reshape = dyn_cast<memref::ReshapeOp>(op))
    return !hostOnly(reshape.getShape(), hostArgs);
  if (callsDeallocHelper(op) &&
      passesHostMemory(cast<func::CallOp>(op), hostArgs))
    return false;
  // (The host-only deallocation helper returns nothing and launches
  // nothing: its caller keeps its own account of queued work.)
  if (auto ret = dyn_cast<func::ReturnOp>(op)) {
    auto func = ret->getParentOfType<func::FuncOp>();
    if (func && func.getName() == kDeallocHelper &&
        func.getNumArguments() > 0 &&
        llvm::all_of(func.getArguments(),
                     [&](Value arg) { return hostArgs.contains(arg); }))
      return false;
  }
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
static void insertWaits(Block &block, bool dirty, func::FuncOp callee,
                        const DenseSet<Value> &hostArgs) {
  for (Operation &op : llvm::make_early_inc_range(block)) {
    if (touchesMemory(&op, hostArgs) && dirty) {
      OpBuilder b(&op);
      func::CallOp::create(b, op.getLoc(), callee, ValueRange());
      dirty = false;
    }
    // Regions run later or repeatedly: assume work is queued on entry.
    for (Region &region : op.getRegions())
      for (Block &inner : region)
        insertWaits(inner, /*dirty=*/true, callee, hostArgs);
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
    // Whether only host code uses `v` (the allocation, or a view of it:
    // shape values gathered into parts of one buffer).
    std::function<bool(Value)> hostUses = [&](Value v) {
      return llvm::all_of(v.getUsers(), [&](Operation *user) {
        // (The deallocation's address and flag arrays reach its helper
        // through a cast to a dynamic size.)
        auto toHelper = dyn_cast<memref::CastOp>(user);
        // (Only the allocation's own deallocation goes with it.)
        bool host = (isa<memref::DeallocOp>(user) && v == alloc.getResult()) ||
                    (isa<memref::LoadOp, memref::StoreOp>(user) &&
                     !isa<gpu::GPUModuleOp>(user->getParentOp())) ||
                    (isa<memref::ReshapeOp>(user) &&
                     cast<memref::ReshapeOp>(user).getShape() == v) ||
                    (toHelper &&
                     llvm::all_of(toHelper->getUsers(), callsDeallocHelper)) ||
                    (isa<memref::SubViewOp, memref::CollapseShapeOp,
                         memref::ExpandShapeOp>(user) &&
                     hostUses(user->getResult(0)));
        // A stored value is data, not the buffer's address.
        if (auto store = dyn_cast<memref::StoreOp>(user))
          host &= store.getValueToStore() != v;
        return host;
      });
    };
    if (!hostUses(alloc.getResult()))
      return;
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

/// Whether the host code of `func` reads and writes only host memory
/// (stack buffers, constants; not even its arguments), calling nothing but
/// the kernel library, the deallocation helper and the wait: what it
/// queues then depends on the shapes of the arguments only, and a CUDA
/// graph captured once replays it for any data of those shapes.
static bool graphSafe(func::FuncOp func) {
  auto host = [](Value memref) { return hostOnly(memref, {}); };
  WalkResult result = func.walk([&](Operation *op) {
    if (op == func ||
        isa<gpu::LaunchFuncOp, func::ReturnOp, cf::AssertOp>(op) ||
        callsLibrary(op) || callsDeallocHelper(op))
      return WalkResult::advance();
    if (auto call = dyn_cast<func::CallOp>(op))
      return call.getCallee() == kHostSync ? WalkResult::advance()
                                           : WalkResult::interrupt();
    if (auto reshape = dyn_cast<memref::ReshapeOp>(op))
      return host(reshape.getShape()) ? WalkResult::advance()
                                      : WalkResult::interrupt();
    if (op->hasTrait<OpTrait::HasRecursiveMemoryEffects>())
      return WalkResult::advance(); // (what is inside decides)
    auto effects = dyn_cast<MemoryEffectOpInterface>(op);
    if (!effects)
      return WalkResult::interrupt();
    SmallVector<MemoryEffects::EffectInstance> list;
    effects.getEffects(list);
    for (const MemoryEffects::EffectInstance &effect : list) {
      if (isa<MemoryEffects::Allocate, MemoryEffects::Free>(effect.getEffect()))
        continue;
      Value value = effect.getValue();
      if (!value || !isa<MemRefType>(value.getType()) || !host(value))
        return WalkResult::interrupt();
    }
    return WalkResult::advance();
  });
  return !result.wasInterrupted();
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
    // The deallocation helper's arguments are host memory where every call
    // passes it so (its arrays on the stack): it then needs no waits.
    DenseSet<Value> hostArgs;
    if (auto helper = module.lookupSymbol<func::FuncOp>(kDeallocHelper);
        helper && !helper.isExternal() && !helper.isPublic()) {
      std::optional<SymbolTable::UseRange> uses =
          SymbolTable::getSymbolUses(helper, module);
      bool host = uses && llvm::all_of(*uses, [&](SymbolTable::SymbolUse use) {
                    auto call = dyn_cast<func::CallOp>(use.getUser());
                    return call && passesHostMemory(call, {});
                  });
      if (host)
        for (BlockArgument arg : helper.getArguments())
          hostArgs.insert(arg);
    }
    // A public function's arguments that nothing writes (the model's
    // inputs: token ids, a mask, a random key): kernels only read them, so
    // the host reads them without waiting (a run-time check of the ids).
    // (Only where the runtime is the caller, which passes distinct
    // buffers: a call in the module could pass one buffer twice.)
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal() && func.isPublic() &&
          SymbolTable::symbolKnownUseEmpty(func, module))
        for (BlockArgument arg : func.getArguments())
          if (isa<MemRefType>(arg.getType()) && !qopt::mayWrite(arg))
            hostArgs.insert(arg);
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal())
        // The runtime calls a public function with an idle stream; other
        // blocks, and private helpers, may start with launches queued.
        for (Block &block : func.getBody())
          insertWaits(block,
                      /*dirty=*/!func.isPublic() || !block.isEntryBlock(),
                      callee, hostArgs);
    SmallVector<Attribute> graphs;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal() && func.isPublic() && graphSafe(func))
        graphs.push_back(FlatSymbolRefAttr::get(func.getSymNameAttr()));
    qopt::QOptDialect::CudaGraphsAttrHelper(module.getContext())
        .setAttr(module, ArrayAttr::get(module.getContext(), graphs));
  }
};
} // namespace
