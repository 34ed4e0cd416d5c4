//===- LoopUtils.cpp - Shared helpers of the CUDA passes
//-------------------===//

#include "LoopUtils.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

#include <climits>

using namespace mlir;

std::optional<int64_t> mlir::qopt::staticTotal(scf::ParallelOp op) {
  int64_t total = 1;
  for (auto [lb, ub, step] :
       llvm::zip(op.getLowerBound(), op.getUpperBound(), op.getStep())) {
    std::optional<int64_t> l = getConstantIntValue(lb),
                           u = getConstantIntValue(ub),
                           s = getConstantIntValue(step);
    if (!l || !u || !s || *s <= 0)
      return std::nullopt;
    int64_t n = *u > *l ? (*u - *l + *s - 1) / *s : 0;
    if (n && total > INT64_MAX / n)
      return std::nullopt;
    total *= n;
  }
  return total;
}

Value mlir::qopt::rootOf(Value memref) {
  while (auto view = memref.getDefiningOp<ViewLikeOpInterface>())
    memref = view.getViewSource();
  return memref;
}

bool mlir::qopt::mayWrite(Value memref) {
  for (OpOperand &use : memref.getUses()) {
    Operation *user = use.getOwner();
    if (isa<memref::LoadOp, memref::DimOp>(user))
      continue;
    if (auto reshape = dyn_cast<memref::ReshapeOp>(user)) {
      if (use.get() == reshape.getShape())
        continue;
      if (mayWrite(reshape.getResult()))
        return true;
      continue;
    }
    if (auto view = dyn_cast<ViewLikeOpInterface>(user);
        view && view.getViewSource() == use.get()) {
      for (Value result : user->getResults())
        if (isa<MemRefType>(result.getType()) && mayWrite(result))
          return true;
      continue;
    }
    if (auto launch = dyn_cast<gpu::LaunchFuncOp>(user)) {
      auto kernel = SymbolTable::lookupNearestSymbolFrom<gpu::GPUFuncOp>(
          launch, launch.getKernel());
      unsigned first = launch.getKernelOperands().getBeginOperandIndex();
      if (!kernel || use.getOperandNumber() < first ||
          mayWrite(kernel.getArgument(use.getOperandNumber() - first)))
        return true;
      continue;
    }
    return true;
  }
  return false;
}
