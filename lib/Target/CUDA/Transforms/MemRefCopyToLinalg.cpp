//===- MemRefCopyToLinalg.cpp - Copies as loop nests ----------------------===//

#include "LoopUtils.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/ViewLikeInterface.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMEMREFCOPYTOLINALGPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {
/// Whether the kernel library reads operand `index` of a call of `callee`
/// on the host, as it plans the launch: the Hadamard transforms' H_base
/// (packed into the launch's parameters; also their `_emulated` twins),
/// which must stay the host constant. (A device copy would be written by a
/// queued kernel the host does not wait for.)
bool readOnHost(StringRef callee, unsigned index) {
  callee.consume_back("_emulated");
  return (callee == "qopt_cuda_hadamard" ||
          callee == "qopt_cuda_hadamard_quant") &&
         index == 5;
}

/// A kernel-library call's operands that are (views of) constants, which
/// live in host memory (generated kernels read device copies of them, the
/// library would get the host pointer): copied into a fresh buffer before
/// the call (the copy becomes a kernel below), freed after it; but for
/// what the library reads on the host.
void copyConstantOperands(func::CallOp call) {
  if (!call.getCallee().starts_with("qopt_cuda_"))
    return;
  OpBuilder b(call);
  Location loc = call.getLoc();
  for (OpOperand &operand : call->getOpOperands()) {
    auto type = dyn_cast<MemRefType>(operand.get().getType());
    if (!type ||
        !qopt::rootOf(operand.get()).getDefiningOp<memref::GetGlobalOp>() ||
        readOnHost(call.getCallee(), operand.getOperandNumber()))
      continue;
    SmallVector<Value> sizes;
    for (int64_t d = 0; d < type.getRank(); ++d)
      if (type.isDynamicDim(d))
        sizes.push_back(memref::DimOp::create(b, loc, operand.get(), d));
    auto plain = MemRefType::get(type.getShape(), type.getElementType());
    Value copy = memref::AllocOp::create(b, loc, plain, sizes);
    memref::CopyOp::create(b, loc, operand.get(), copy);
    operand.set(memref::CastOp::create(b, loc, type, copy));
    OpBuilder after(call->getContext());
    after.setInsertionPointAfter(call);
    memref::DeallocOp::create(after, loc, copy);
  }
}

struct QOptMemRefCopyToLinalgPass
    : qopt::impl::QOptMemRefCopyToLinalgPassBase<QOptMemRefCopyToLinalgPass> {
  void runOnOperation() override {
    getOperation().walk(copyConstantOperands);
    SmallVector<memref::CopyOp> copies;
    getOperation().walk([&](memref::CopyOp op) { copies.push_back(op); });
    for (memref::CopyOp op : copies) {
      OpBuilder b(op);
      linalg::CopyOp::create(b, op.getLoc(), op.getSource(), op.getTarget());
      op.erase();
    }
  }
};
} // namespace
