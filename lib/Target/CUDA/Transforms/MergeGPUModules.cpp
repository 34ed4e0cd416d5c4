//===- MergeGPUModules.cpp - All kernels in one gpu.module ----------------===//

#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMERGEGPUMODULESPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {
struct QOptMergeGPUModulesPass
    : qopt::impl::QOptMergeGPUModulesPassBase<QOptMergeGPUModulesPass> {
  using QOptMergeGPUModulesPassBase::QOptMergeGPUModulesPassBase;
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<gpu::GPUModuleOp> modules(module.getOps<gpu::GPUModuleOp>());
    if (modules.empty())
      return;
    if (module.lookupSymbol(moduleName) &&
        !isa<gpu::GPUModuleOp>(module.lookupSymbol(moduleName))) {
      module.emitError() << "qopt-merge-gpu-modules: '" << moduleName
                         << "' names another symbol";
      return signalPassFailure();
    }
    OpBuilder b(modules.front());
    auto merged =
        gpu::GPUModuleOp::create(b, modules.front().getLoc(), "qopt_merge_tmp");
    SymbolTable mergedTable(merged);
    // Old module name -> (old kernel name -> new kernel name).
    llvm::StringMap<llvm::StringMap<StringAttr>> renamed;
    for (gpu::GPUModuleOp old : modules) {
      if (old.getTargetsAttr())
        merged.setTargetsAttr(old.getTargetsAttr());
      for (Operation &op :
           llvm::make_early_inc_range(old.getBody()->getOperations())) {
        if (op.hasTrait<OpTrait::IsTerminator>())
          continue;
        auto symbol = dyn_cast<SymbolOpInterface>(op);
        StringAttr oldName = symbol ? symbol.getNameAttr() : StringAttr();
        // Outlining copies each global a kernel reads into its module: the
        // copies of one host global are the same.
        if (isa<memref::GlobalOp>(op) && mergedTable.lookup(oldName)) {
          op.erase();
          continue;
        }
        op.moveBefore(merged.getBody(), merged.getBody()->end());
        if (symbol) {
          // Insert renames clashing symbols (uses inside the kernel's own
          // module are updated with it).
          StringAttr name = mergedTable.insert(&op);
          renamed[old.getName()][oldName.getValue()] = name;
        }
      }
    }
    WalkResult result = module.walk([&](gpu::LaunchFuncOp launch) {
      auto byModule = renamed.find(launch.getKernelModuleName().getValue());
      if (byModule == renamed.end())
        return WalkResult::advance();
      auto kernel = byModule->second.find(launch.getKernelName().getValue());
      if (kernel == byModule->second.end()) {
        launch.emitError("qopt-merge-gpu-modules: kernel not found");
        return WalkResult::interrupt();
      }
      launch.setKernelAttr(
          SymbolRefAttr::get(b.getContext(), moduleName,
                             {FlatSymbolRefAttr::get(kernel->second)}));
      return WalkResult::advance();
    });
    if (result.wasInterrupted())
      return signalPassFailure();
    for (gpu::GPUModuleOp old : modules)
      old.erase();
    merged.setName(moduleName);
  }
};
} // namespace
