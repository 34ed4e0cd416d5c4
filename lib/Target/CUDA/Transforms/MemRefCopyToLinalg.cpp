//===- MemRefCopyToLinalg.cpp - Copies as loop nests ----------------------===//

#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTMEMREFCOPYTOLINALGPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;

namespace {
struct QOptMemRefCopyToLinalgPass
    : qopt::impl::QOptMemRefCopyToLinalgPassBase<QOptMemRefCopyToLinalgPass> {
  void runOnOperation() override {
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
