//===- DeviceChecks.cpp - Index range checks made on the device -----------===//
//
// A range check of indices (`cf.assert` marked `qopt.data_check`) reads the
// indices: on the host that is a wait for the kernel that wrote them, and a
// read through managed memory. This pass recomputes each such check right
// where it stood, into private stack buffers, and turns the assertion into
// a store of the check's code into a status word the runtime passes
// (`qopt.check_status`) and reads after the run. qopt-serial-to-gpu then
// runs the recomputation as a one-thread kernel; the host code that
// computed the check before is removed when nothing else reads it.
//
//===----------------------------------------------------------------------===//

#include "LoopUtils.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Target/CUDA/Transforms/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlowOps.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Interfaces/ViewLikeInterface.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringMap.h"

namespace mlir::qopt {
#define GEN_PASS_DEF_QOPTDEVICECHECKSPASS
#include "qopt/Target/CUDA/Transforms/Passes.h.inc"
} // namespace mlir::qopt

using namespace mlir;
using namespace mlir::qopt;

namespace {

/// A small buffer of static shape (a reduction's accumulator, a 0-d value
/// between loops): on the stack or, after bufferization, on the heap.
bool isScratch(Operation *op) {
  if (!isa_and_present<memref::AllocaOp, memref::AllocOp>(op))
    return false;
  auto type = cast<MemRefType>(op->getResult(0).getType());
  return type.hasStaticShape() && type.getNumElements() <= 64;
}

/// The scratch buffer `memref` is a view of, if it is one.
Operation *scratchRoot(Value memref) {
  Operation *def = rootOf(memref).getDefiningOp();
  return isScratch(def) ? def : nullptr;
}

/// The stores into the scratch buffer `root` and its views, and its
/// deallocations; false when something else may write it (a call, a copy)
/// or it escapes.
bool collectWriters(Operation *root, SmallVectorImpl<Operation *> &writers) {
  SmallVector<Value> buffers = {root->getResult(0)};
  while (!buffers.empty()) {
    Value buffer = buffers.pop_back_val();
    for (OpOperand &use : buffer.getUses()) {
      Operation *user = use.getOwner();
      if (auto store = dyn_cast<memref::StoreOp>(user)) {
        if (store.getMemRef() != buffer)
          return false; // the buffer itself stored somewhere
        writers.push_back(store);
      } else if (isa<memref::DeallocOp>(user)) {
        writers.push_back(user);
      } else if (auto view = dyn_cast<ViewLikeOpInterface>(user);
                 view && view.getViewSource() == buffer) {
        buffers.push_back(view->getResult(0));
      } else if (!isa<memref::LoadOp, memref::DimOp>(user)) {
        return false;
      }
    }
  }
  return true;
}

/// Whether a kernel (or the host) can recompute `op` without changing
/// anything but scratch buffers: loads, stores into scratch buffers,
/// scratch buffers, pure operations, and loops and conditionals of those.
bool recomputable(Operation *op) {
  WalkResult result = op->walk([](Operation *inner) {
    if (isa<memref::LoadOp, scf::YieldOp>(inner))
      return WalkResult::advance();
    if (auto store = dyn_cast<memref::StoreOp>(inner))
      return scratchRoot(store.getMemRef()) ? WalkResult::advance()
                                            : WalkResult::interrupt();
    if (isScratch(inner))
      return WalkResult::advance();
    if (isa<scf::ForOp, scf::IfOp>(inner))
      return WalkResult::advance();
    if (inner->getNumRegions() == 0 && isMemoryEffectFree(inner))
      return WalkResult::advance();
    return WalkResult::interrupt();
  });
  return !result.wasInterrupted();
}

/// The operations of `body` before `check` that compute `cond`: the
/// definitions of its operands, transitively, and for each scratch buffer
/// read, every store into it before `check`. Fails when one of them cannot
/// be recomputed.
FailureOr<SetVector<Operation *>> checkSlice(Block &body, Operation *check,
                                             Value cond) {
  SetVector<Operation *> slice;
  SmallVector<Operation *> work;
  bool ok = true;
  auto add = [&](Operation *op) {
    Operation *top = body.findAncestorOpInBlock(*op);
    if (!top || top == check)
      return;
    if (!top->isBeforeInBlock(check)) {
      ok = false;
      return;
    }
    // Buffers other than scratch ones (the indices, views of them) are used
    // as they are: the copy reads the same memory.
    if (top->getNumResults() == 1 &&
        isa<MemRefType>(top->getResult(0).getType()) &&
        !scratchRoot(top->getResult(0)))
      return;
    // A value read from a buffer the host passes on (a reshape's shape) is
    // used as it is: the host has it anyway.
    if (auto load = dyn_cast<memref::LoadOp>(top))
      if (Operation *root = scratchRoot(load.getMemRef())) {
        SmallVector<Operation *> writers;
        if (!collectWriters(root, writers))
          return;
      }
    if (slice.insert(top))
      work.push_back(top);
  };
  if (Operation *def = cond.getDefiningOp())
    add(def);
  while (ok && !work.empty()) {
    Operation *op = work.pop_back_val();
    if (!recomputable(op))
      return failure();
    op->walk([&](Operation *inner) {
      for (Value v : inner->getOperands())
        if (Operation *def = v.getDefiningOp())
          add(def);
      auto load = dyn_cast<memref::LoadOp>(inner);
      if (!load)
        return;
      Operation *root = scratchRoot(load.getMemRef());
      if (!root)
        return;
      SmallVector<Operation *> writers;
      if (!collectWriters(root, writers)) {
        ok = false;
        return;
      }
      for (Operation *writer : writers) {
        Operation *top = body.findAncestorOpInBlock(*writer);
        if (isa<memref::StoreOp>(writer) && top && top->isBeforeInBlock(check))
          add(top);
      }
    });
  }
  if (!ok)
    return failure();
  // In block order, as they ran.
  SmallVector<Operation *> ordered(slice.begin(), slice.end());
  llvm::sort(ordered,
             [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  // The copy reads the other buffers where the check stood: nothing
  // between the first operation that reads one and the check may write or
  // free them.
  DenseSet<Value> read;
  Operation *firstRead = check;
  for (Operation *op : llvm::reverse(ordered))
    op->walk([&](memref::LoadOp load) {
      if (!scratchRoot(load.getMemRef())) {
        read.insert(rootOf(load.getMemRef()));
        firstRead = op;
      }
    });
  for (Operation *op = firstRead; op != check; op = op->getNextNode()) {
    if (slice.contains(op))
      continue;
    WalkResult writes = op->walk([&](Operation *inner) {
      auto touches = [&](Value v) {
        return isa<MemRefType>(v.getType()) && read.contains(rootOf(v));
      };
      bool pure = isa<memref::LoadOp, memref::DimOp>(inner) ||
                  isa<ViewLikeOpInterface>(inner) ||
                  (inner->getNumRegions() == 0 && isMemoryEffectFree(inner));
      if (!pure && llvm::any_of(inner->getOperands(), touches))
        return WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (writes.wasInterrupted())
      return failure();
  }
  return SetVector<Operation *>(ordered.begin(), ordered.end());
}

/// Removes what no longer matters in `func`: pure operations and loads
/// whose values nothing live uses, scratch buffers nothing live reads (and
/// their stores and deallocation), and loops and conditionals left with
/// nothing live inside.
void removeDeadHostCode(func::FuncOp func) {
  // Scratch buffers whose every writer is known (not returned, not passed
  // to a call): only those may lose their stores.
  DenseMap<Operation *, SmallVector<Operation *>> closed; // its writers
  func.walk([&](Operation *op) {
    SmallVector<Operation *> writers;
    if (isScratch(op) && collectWriters(op, writers))
      closed[op] = std::move(writers);
  });
  auto closedRoot = [&](Value memref) {
    return closed.contains(scratchRoot(memref));
  };
  auto erasable = [&](Operation *op) {
    if (isa<memref::LoadOp, scf::ForOp, scf::IfOp>(op) || closed.contains(op))
      return true;
    if (auto store = dyn_cast<memref::StoreOp>(op))
      return closedRoot(store.getMemRef());
    if (auto dealloc = dyn_cast<memref::DeallocOp>(op))
      return closedRoot(dealloc.getMemref());
    if (isa<scf::YieldOp>(op))
      return isa<scf::ForOp, scf::IfOp>(op->getParentOp());
    return op->getNumRegions() == 0 && !op->hasTrait<OpTrait::IsTerminator>() &&
           isMemoryEffectFree(op);
  };
  DenseSet<Operation *> live;
  SmallVector<Operation *> work;
  auto mark = [&](Operation *op) {
    if (op && op != func && live.insert(op).second)
      work.push_back(op);
  };
  func.walk([&](Operation *op) {
    if (op != func && !erasable(op))
      mark(op);
  });
  while (!work.empty()) {
    Operation *op = work.pop_back_val();
    mark(op->getParentOp());
    for (Value v : op->getOperands()) {
      if (Operation *def = v.getDefiningOp())
        mark(def);
      else
        mark(cast<BlockArgument>(v).getOwner()->getParentOp());
    }
    // A live loop or conditional: its terminators pass its results.
    if (isa<scf::ForOp, scf::IfOp>(op))
      for (Region &region : op->getRegions())
        for (Block &block : region)
          mark(block.getTerminator());
    // A scratch buffer something live reads (or views): its stores and
    // deallocation matter.
    if (auto it = closed.find(op); it != closed.end())
      for (Operation *writer : it->second)
        mark(writer);
  }
  SmallVector<Operation *> dead;
  func.walk<WalkOrder::PreOrder>([&](Operation *op) {
    if (op == func || live.contains(op))
      return WalkResult::advance();
    dead.push_back(op);
    return WalkResult::skip();
  });
  for (Operation *op : dead)
    op->dropAllReferences();
  for (Operation *op : dead)
    op->dropAllDefinedValueUses();
  for (Operation *op : dead)
    op->erase();
}

struct QOptDeviceChecksPass
    : mlir::qopt::impl::QOptDeviceChecksPassBase<QOptDeviceChecksPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    QOptDialect::DataCheckAttrHelper dataCheck(ctx);
    SmallVector<func::FuncOp> entries;
    bool any = false;
    for (auto func : module.getOps<func::FuncOp>()) {
      if (!func.isPublic() || func.isExternal())
        continue;
      // (A public function the module calls would need its callers to pass
      // the status word: the checks stay on the host.)
      if (!SymbolTable::symbolKnownUseEmpty(func, module))
        return;
      entries.push_back(func);
      func.walk([&](cf::AssertOp op) { any |= dataCheck.isAttrPresent(op); });
    }
    if (!any)
      return;
    // Every entry takes the same arguments: the status word goes to all.
    auto statusType = MemRefType::get({1}, IntegerType::get(ctx, 32));
    OpBuilder b(ctx);
    auto statusAttrs = b.getDictionaryAttr(b.getNamedAttr(
        QOptDialect::CheckStatusAttrHelper::getNameStr(), b.getUnitAttr()));
    SmallVector<Attribute> messages;
    llvm::StringMap<int32_t> codes;
    SmallVector<Operation *> resets;
    for (func::FuncOp func : entries) {
      unsigned index = func.getNumArguments();
      if (failed(func.insertArgument(index, statusType, statusAttrs,
                                     func.getLoc()))) {
        func.emitError("cannot add the device checks' status argument");
        return signalPassFailure();
      }
      Value status = func.getArgument(index);
      Block &body = func.getBody().front();
      b.setInsertionPointToStart(&body);
      Location loc = func.getLoc();
      Value zero = arith::ConstantIndexOp::create(b, loc, 0);
      resets.push_back(memref::StoreOp::create(
          b, loc, arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0)),
          status, zero));
      SmallVector<cf::AssertOp> checks;
      func.walk([&](cf::AssertOp op) {
        if (dataCheck.isAttrPresent(op) && op->getBlock() == &body)
          checks.push_back(op);
      });
      bool changed = false;
      for (cf::AssertOp check : checks) {
        FailureOr<SetVector<Operation *>> slice =
            checkSlice(body, check, check.getArg());
        if (failed(slice))
          continue; // (stays a host check: correct, only slower)
        auto [it, inserted] = codes.try_emplace(
            check.getMsg(), static_cast<int32_t>(messages.size()) + 1);
        if (inserted)
          messages.push_back(b.getStringAttr(check.getMsg()));
        b.setInsertionPoint(check);
        loc = check.getLoc();
        IRMapping mapping;
        for (Operation *op : *slice) {
          // A private copy of a heap scratch buffer goes on the stack.
          if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
            auto copy =
                memref::AllocaOp::create(b, alloc.getLoc(), alloc.getType());
            copy.setAlignmentAttr(alloc.getAlignmentAttr());
            mapping.map(alloc.getResult(), copy.getResult());
            continue;
          }
          b.clone(*op, mapping);
        }
        Value ok = mapping.lookupOrDefault(check.getArg());
        Value failed = arith::XOrIOp::create(
            b, loc, ok, arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
        // The first failure's code: runs check in stream order.
        auto ifFailed = scf::IfOp::create(b, loc, failed,
                                          /*withElseRegion=*/false);
        b.setInsertionPointToStart(ifFailed.thenBlock());
        Value c0 = arith::ConstantIndexOp::create(b, loc, 0);
        Value i0 = arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(0));
        Value first = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq,
            memref::LoadOp::create(b, loc, status, c0), i0);
        auto ifFirst = scf::IfOp::create(b, loc, first,
                                         /*withElseRegion=*/false);
        b.setInsertionPointToStart(ifFirst.thenBlock());
        memref::StoreOp::create(
            b, loc,
            arith::ConstantOp::create(b, loc, b.getI32IntegerAttr(it->second)),
            status, c0);
        check.erase();
        changed = true;
      }
      if (changed)
        removeDeadHostCode(func);
    }
    if (messages.empty()) {
      // No check could move: no status word either.
      for (auto [func, reset] : llvm::zip(entries, resets)) {
        SmallVector<Operation *> operands;
        for (Value v : reset->getOperands())
          operands.push_back(v.getDefiningOp());
        reset->erase();
        for (Operation *op : operands)
          if (op && op->use_empty())
            op->erase();
        if (failed(func.eraseArgument(func.getNumArguments() - 1)))
          return signalPassFailure();
      }
      return;
    }
    QOptDialect::DeviceChecksAttrHelper(ctx).setAttr(
        module, ArrayAttr::get(ctx, messages));
  }
};

} // namespace
